"""`medsam3 web` driven end to end by a real browser (headless Debian chromium through Playwright).

A user types a target and gets a segment, clicks inside the other block in the coronal view and sees the segment
grow there, undoes it, exports a .seg.nrrd and downloads it, then starts a second, named segment with a click and
opens another image through the page's upload. Every step is checked in the scene (the test-only state
endpoint the server opens with --expose-state, loopback only) and the download is read back with slicerio; the
click lands where the block is on screen, found in the view's own pixels as a user finds it.

Timings (click to mask on screen, start time) and the process memory are printed for the record, never asserted.
``MEDSAM3_WEB_SCREENSHOT=docs/images/web_annotation.png`` also copies the page's screenshot there (the README's).
"""

from __future__ import annotations

import os
import shutil
import time

import numpy as np
import pytest

from web_harness import (CHROMIUM, playwright_or_skip, mask_from_seg_nrrd, running_web, sha, unsegmented_blocks,
                         view_pixels, write_phantom)

playwright_api = playwright_or_skip()

pytestmark = pytest.mark.slow
KEY = "browser-test-key-0123456789"


def test_type_click_undo_export_in_a_real_browser(tmp_path):
    phantom = write_phantom(tmp_path)
    with running_web(tmp_path, str(phantom.path), "--stand-in-model", "--expose-state", key=KEY) as web, \
            playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 850}, accept_downloads=True)
        page.goto(f"{web.url}?key={KEY}")  # as a user given the key opens it; the websocket then uses the cookie
        page.wait_for_selector("#medsam3-target")
        coronal = page.locator("div:has(> .medsam3-view-Green) img.image-display-area")
        coronal.wait_for()

        # 1. Typed target on this slice (the axial view's): a coded "Liver" segment, only on that slice.
        page.click("#medsam3-whole-volume")  # Whole volume -> This slice
        page.fill("#medsam3-target", "liver")
        page.click("#medsam3-segment")
        state = web.wait_for_state(lambda s: len(s["segments"]) == 1)
        liver = state["segments"][0]
        assert liver["name"] == "Liver" and liver["visible"]
        page.get_by_text("Liver", exact=True).wait_for()  # in the page's segment list
        (i0, i1), (j0, j1), (k0, k1) = liver["ijk_bounds"]
        assert k0 == k1 and phantom.upper[k0].any()  # one axial slice, through the upper block
        typed = np.zeros_like(phantom.upper)
        typed[k0] = phantom.upper[k0]
        assert liver["mask_sha256"] == sha(typed)  # exactly the block's voxels on that slice
        visibility = page.locator(".medsam3-segment input[type=checkbox]").first
        visibility.click()  # hide it from the segment list ...
        hidden = web.wait_for_state(lambda s: not s["segments"][0]["visible"])
        assert hidden["segments"][0]["selected"]  # still the segment clicks refine
        visibility.click()  # ... and show it again
        web.wait_for_state(lambda s: s["segments"][0]["visible"])

        # 2. + Point inside the lower block where the coronal view shows it (whole volume): the segment grows there.
        page.click("#medsam3-whole-volume")  # back to Whole volume
        page.click("#medsam3-point-positive")
        blocks = unsegmented_blocks(view_pixels(coronal))
        assert len(blocks) >= 2, blocks  # the upper block (split by its coloured row) and the lower block
        y, x = blocks[-1]  # the lowest on screen: the inferior block
        clicked = time.perf_counter()
        coronal.click(position={"x": x, "y": y})
        state = web.wait_for_state(lambda s: s["segments"][0]["mask_sha256"] != liver["mask_sha256"])
        grown = state["segments"][0]
        click_to_written = grown_timing(state)
        assert grown["voxels"] > int(phantom.lower.sum())
        (gi0, gi1), (gj0, gj1), (gk0, gk1) = grown["ijk_bounds"]
        assert (gi1, gj1, gk0) == (53, 39, 2)  # it reaches the lower block's far corner: the click landed on it
        while view_pixels(coronal)[int(y), int(x)].min() > 200:  # still white: not yet coloured on screen
            assert time.perf_counter() - clicked < 60, "the mask never appeared on screen"
            time.sleep(0.02)
        click_to_screen = time.perf_counter() - clicked
        playwright_api.expect(page.locator("#medsam3-stop")).to_be_disabled()  # the page knows the model is done
        page.wait_for_timeout(400)  # the buttons' enable animation, for a clean screenshot
        screenshot = tmp_path / "web_annotation.png"
        page.screenshot(path=str(screenshot))

        # 3. Undo: the segment is exactly what the typed target gave.
        page.click("#medsam3-undo")
        state = web.wait_for_state(lambda s: s["segments"][0]["mask_sha256"] == liver["mask_sha256"])
        assert state["segments"][0]["voxels"] == liver["voxels"]

        # 4. Export .seg.nrrd and download it: it reads back equal to the scene.
        page.click("#medsam3-export-seg")
        with page.expect_download() as download_info:
            page.click("#medsam3-download")
        downloaded = tmp_path / download_info.value.suggested_filename
        download_info.value.save_as(downloaded)
        assert downloaded.name == "phantom.seg.nrrd"
        from medsam3.files.seg_nrrd import read_seg_nrrd

        assert read_seg_nrrd(downloaded).segment_names == ("Liver",)
        assert sha(mask_from_seg_nrrd(downloaded, phantom.path)) == state["segments"][0]["mask_sha256"]

        # 5. New segment: a click with a typed name starts a segment named and coloured from the terminology.
        page.click("#medsam3-new-segment")
        page.fill("#medsam3-target", "left kidney")
        web.wait_for_state(lambda s: s["target"] == "left kidney")  # the page sends the typed text asynchronously
        coronal.click(position={"x": x, "y": y})
        state = web.wait_for_state(lambda s: len(s["segments"]) == 2)
        kidney = state["segments"][1]
        assert kidney["name"] == "Left kidney" and kidney["colour"] != liver["colour"]
        assert kidney["voxels"] == int(phantom.lower.sum())  # whole volume: exactly the lower block
        assert state["segments"][0]["mask_sha256"] == liver["mask_sha256"]  # the liver is untouched

        # 6. Open another image from the page (upload): the scene holds it, without the first image's segments.
        second = tmp_path / "upload" / "second.nii.gz"
        second.parent.mkdir()
        shutil.copyfile(phantom.path, second)
        page.set_input_files("#medsam3-upload", str(second))
        state = web.wait_for_state(lambda s: (s["volume"] or "").startswith("second"))
        assert state["segments"] == []
        browser.close()
        rss = web.state()["rss_bytes"]

    print(f"\nmedsam3 web: ready {web.ready_seconds:.1f} s after start; click -> mask written "
          f"{click_to_written}; click -> mask on screen {click_to_screen:.2f} s; process RSS {rss / 2**30:.2f} GB")
    if os.environ.get("MEDSAM3_WEB_SCREENSHOT"):
        shutil.copyfile(screenshot, os.environ["MEDSAM3_WEB_SCREENSHOT"])


def grown_timing(state) -> str:
    seconds = state["timing"].get("placed_to_written_s")
    return f"{seconds:.2f} s" if seconds is not None else "n/a"
