"""`medsam3 web` with a real transformers model (`--model tiny-random`: the Sam3 classes with random weights), driven
by a real browser (headless Debian chromium through Playwright), not the bright-region stand-in.

The user waits for the model to load, types a target and runs it on This slice. Random weights may find the target
or not; either way the outcome must be one a user can rely on, checked in the scene (the test-only state endpoint,
loopback only) and in the file the page downloads, after Undo and Redo of the click:
- found: the page lists the segment, its voxels lie on the prompted axial slice only, and the .seg.nrrd downloaded
  from the page reads back voxel-equal to the scene's segment;
- not found: the page says so, and no segment (no voxel) was written.

Click -> done time and the process memory are printed for the record, never asserted.
"""

from __future__ import annotations

import re
import time

import numpy as np
import pytest

from web_harness import (CHROMIUM, playwright_or_skip, mask_from_seg_nrrd, running_web, sha, unsegmented_blocks,
                         view_pixels, write_phantom)

playwright_api = playwright_or_skip()

pytestmark = pytest.mark.slow
MODEL_LOAD_SECONDS = 300  # building and saving the tiny model on a busy 2-core machine (usually well under a minute)


def test_a_typed_target_on_this_slice_through_the_tiny_transformers_model(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # a tiny model gains nothing from threads on a shared 2-core machine
    phantom = write_phantom(tmp_path)
    with running_web(tmp_path, str(phantom.path), "--model", "tiny-random", "--expose-state") as web, \
            playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 850}, accept_downloads=True)
        page.goto(web.url)
        page.wait_for_selector("#medsam3-target")
        axial = page.locator("div:has(> .medsam3-view-Red) img.image-display-area")
        axial.wait_for()

        # The model loads while the page is open: the page says which model, and Segment becomes usable.
        loaded = web.wait_for_state(lambda s: "loaded" in s["status"], timeout=MODEL_LOAD_SECONDS)
        assert loaded["status"].startswith("Model tiny-random loaded") and loaded["segments"] == [], loaded
        playwright_api.expect(page.locator("#medsam3-status")).to_contain_text("loaded", timeout=30_000)
        playwright_api.expect(page.locator("#medsam3-segment")).to_be_enabled()
        blocks = unsegmented_blocks(view_pixels(axial))
        assert len(blocks) == 1, blocks  # the axial view shows a slice through the upper block, as a user sees it

        # A typed target on This slice (the axial view's), through the tiny transformers model.
        page.click("#medsam3-whole-volume")  # Whole volume -> This slice
        page.fill("#medsam3-target", "liver")
        clicked = time.perf_counter()
        page.click("#medsam3-segment")
        state = web.wait_for_state(lambda s: s["status"] != loaded["status"] and s["status"] != "Segmenting…",
                                   timeout=120)
        click_to_done = time.perf_counter() - clicked
        status = state["status"]
        assert not status.startswith("Failed") and "error" not in status.lower(), status  # the model path ran
        playwright_api.expect(page.locator("#medsam3-status")).to_have_text(status)  # the page says the same

        if state["segments"]:  # the model found something: one coded segment, on the prompted slice only
            assert status.startswith("Done (text"), status
            assert [row["name"] for row in state["segments"]] == ["Liver"], state
            page.get_by_text("Liver", exact=True).wait_for()  # in the page's segment list
            (_, _), (_, _), (prompted, k1) = state["segments"][0]["ijk_bounds"]
            assert prompted == k1 and state["segments"][0]["voxels"] > 0, state  # one axial slice
            typed = f"found {state['segments'][0]['voxels']} voxels"
        else:  # nothing found: the page says so, on which slice, and no segment (no voxel) was written
            found = re.fullmatch(r"No liver was found on axial slice (\d+); no segment was added\.", status)
            assert found, status
            prompted = int(found.group(1))
            assert page.locator(".medsam3-segment").count() == 0  # the page's segment list stays empty
            typed = "nothing found"
        assert phantom.upper[prompted].any()  # the slice the axial view shows (it crosses the upper block only)

        before = state
        # A + point on the block in the axial view (This slice): it refines the found segment, or starts one (also
        # when the model finds nothing there) -- so there is always one segment to export.
        page.click("#medsam3-point-positive")
        web.wait_for_state(lambda s: s["tool"] == "positive")  # the page sends the tool asynchronously
        (y, x), = blocks  # where the block was on screen before anything was coloured
        clicked = time.perf_counter()
        axial.click(position={"x": x, "y": y})
        state = web.wait_for_state(lambda s: s["status"] != status and s["status"] != "Segmenting…"
                                   and len(s["segments"]) == 1, timeout=120)
        point_to_done = time.perf_counter() - clicked
        assert state["status"].startswith("Done (point"), state["status"]  # through the model, not an error
        segment = state["segments"][0]
        page.get_by_text(segment["name"], exact=True).wait_for()  # the page lists the segment the scene holds
        if segment["voxels"]:
            (_, _), (_, _), (k0, k1) = segment["ijk_bounds"]
            assert k0 == k1 == prompted, segment  # the prompted slice only
        else:
            assert segment["ijk_bounds"] is None, segment

        # Undo returns the scene to exactly what it held before the click (the typed target's voxels, or an empty
        # segment where the click started it); Redo brings the click's result back, voxel for voxel.
        before_click = [row["mask_sha256"] for row in before["segments"]] or [sha(np.zeros_like(phantom.upper))]
        page.click("#medsam3-undo")
        undone = web.wait_for_state(lambda s: s["status"].startswith("Done (undo"), timeout=120)
        assert [row["mask_sha256"] for row in undone["segments"]] == before_click, undone
        playwright_api.expect(page.locator("#medsam3-redo")).to_be_enabled()
        page.click("#medsam3-redo")
        redone = web.wait_for_state(lambda s: s["status"].startswith("Done (redo"), timeout=120)
        assert redone["segments"][0]["mask_sha256"] == segment["mask_sha256"], redone

        # Export .seg.nrrd from the page and download it: it reads back voxel-equal to the scene's segment.
        page.click("#medsam3-export-seg")
        link = page.locator("#medsam3-download")
        playwright_api.expect(link).to_contain_text(".seg.nrrd", timeout=30_000)
        with page.expect_download() as download_info:
            link.click()
        downloaded = tmp_path / download_info.value.suggested_filename
        download_info.value.save_as(downloaded)
        from medsam3.files.seg_nrrd import read_seg_nrrd

        assert read_seg_nrrd(downloaded).segment_names == (segment["name"],)
        written = mask_from_seg_nrrd(downloaded, phantom.path)
        assert sha(written) == segment["mask_sha256"] and int(written.sum()) == segment["voxels"]
        assert set(np.nonzero(written)[0].tolist()) <= {prompted}
        outcome = (f"typed target: {typed} on axial slice {prompted} (click -> done {click_to_done:.2f} s); + point: "
                   f"{segment['voxels']} voxels in '{segment['name']}' (click -> done {point_to_done:.2f} s); "
                   "undo / redo exact; the download reads back equal")
        browser.close()
        rss = web.state()["rss_bytes"]

    print(f"\nmedsam3 web --model tiny-random: ready {web.ready_seconds:.1f} s after start; {outcome}; "
          f"process RSS {rss / 2**30:.2f} GB")
