"""The page's drawing tools in a real browser (headless Debian chromium through Playwright): a box dragged on a slice
view segments what it encloses, and the file tools around it.

The phantom's blocks are found in the view's own pixels, as a user finds them; every result is checked in the scene
(the test-only state endpoint, loopback only) or in the downloaded file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from web_harness import (CHROMIUM, playwright_or_skip, mask_from_seg_nrrd, running_web, sha, unsegmented_blocks,
                         view_pixels, write_phantom)

playwright_api = playwright_or_skip()

pytestmark = pytest.mark.slow


def open_page(playwright, web):
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
    page = browser.new_page(viewport={"width": 1400, "height": 850}, accept_downloads=True)
    page.goto(web.url)
    page.wait_for_selector("#medsam3-target")
    return browser, page


def view(page, name: str):
    """The streamed image of a view: Red (axial), Green (coronal), Yellow (sagittal)."""
    locator = page.locator(f"div:has(> .medsam3-view-{name}) img.image-display-area")
    locator.wait_for()
    return locator


def drag(page, locator, start_xy, end_xy, steps: int = 8) -> None:
    """Press the left button at ``start_xy`` of the element, move to ``end_xy`` and release (element pixels)."""
    box = locator.bounding_box()
    page.mouse.move(box["x"] + float(start_xy[0]), box["y"] + float(start_xy[1]))
    page.mouse.down()
    page.mouse.move(box["x"] + float(end_xy[0]), box["y"] + float(end_xy[1]), steps=steps)
    page.mouse.up()


def choose_tool(page, web, element: str, tool: str) -> None:
    """Press a tool button and wait until the server has it: the page sends it asynchronously, and the mouse
    events in a view travel on another channel."""
    page.click(f"#medsam3-{element}")
    web.wait_for_state(lambda s: s["tool"] == tool)


def block_extent(rgb: np.ndarray, centre) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) on screen of the white block whose centre is ``centre``."""
    from scipy import ndimage

    labels, _ = ndimage.label(rgb.min(axis=2) > 200)
    ys, xs = np.nonzero(labels == labels[int(centre[0]), int(centre[1])])
    return int(ys.min()), int(ys.max()), int(xs.min()), int(xs.max())


def test_a_box_dragged_on_a_slice_view_segments_what_it_encloses(tmp_path):
    phantom = write_phantom(tmp_path)
    with running_web(tmp_path, str(phantom.path), "--stand-in-model", "--expose-state") as web, \
            playwright_api.sync_playwright() as playwright:
        browser, page = open_page(playwright, web)
        axial = view(page, "Red")
        page.click("#medsam3-whole-volume")  # Whole volume -> This slice
        choose_tool(page, web, "box", "box")
        rgb = view_pixels(axial)
        blocks = unsegmented_blocks(rgb)
        assert len(blocks) == 1, blocks  # the middle axial slice crosses the upper block only
        y0, y1, x0, x1 = block_extent(rgb, blocks[0])

        # 1. A box around the whole block on screen: exactly the block's voxels on that slice.
        drag(page, axial, (x0 - 8, y0 - 8), (x1 + 8, y1 + 8))
        state = web.wait_for_state(lambda s: len(s["segments"]) == 1)
        boxed = state["segments"][0]
        (_, _), (_, _), (k0, k1) = boxed["ijk_bounds"]
        assert k0 == k1
        expected = np.zeros_like(phantom.upper)
        expected[k0] = phantom.upper[k0]
        assert phantom.upper[k0].any() and boxed["mask_sha256"] == sha(expected), boxed

        # 2. A box over the left part of the block only, as a new segment: only voxels of the block, fewer of them,
        # all on the side the box covered.
        page.click("#medsam3-new-segment")
        web.wait_for_state(lambda s: not any(row["selected"] for row in s["segments"]))
        middle = (x0 + x1) // 2
        drag(page, axial, (x0 - 8, y0 - 8), (middle, y1 + 8))
        state = web.wait_for_state(lambda s: len(s["segments"]) == 2)
        part = state["segments"][1]
        assert 0 < part["voxels"] < boxed["voxels"], part
        (pi0, pi1), (pj0, pj1), (pk0, pk1) = part["ijk_bounds"]
        (bi0, bi1), (bj0, bj1), _ = boxed["ijk_bounds"]
        assert (pk0, pk1) == (k0, k1) and (pj0, pj1) == (bj0, bj1)  # the full height of the block, on that slice
        assert (pi0 == bi0) != (pi1 == bi1)  # one side of the block, not its middle, not all of it
        assert state["segments"][0]["mask_sha256"] == boxed["mask_sha256"]  # the first segment is untouched
        browser.close()


def download(page, button: str, suffix: str, folder: Path) -> Path:
    """Press an export button, then the page's download link once it offers the file ending with ``suffix``."""
    page.click(button)
    link = page.locator("#medsam3-download")
    try:
        playwright_api.expect(link).to_contain_text(suffix, timeout=30_000)  # a loaded CI machine renders slowly
    except AssertionError:
        raise AssertionError(f"no {suffix} to download; the page says: {page.inner_text('#medsam3-status')}") from None
    with page.expect_download() as info:
        link.click()
    path = folder / info.value.suggested_filename
    info.value.save_as(path)
    return path


def seg_on_labelmap_grid(seg_path: Path, series: Path, labelmap) -> dict[str, np.ndarray]:
    """Each segment of a DICOM SEG as a (K, J, I) mask on the labelmap's grid, placed by the referenced source
    instances' positions (not by file order)."""
    import highdicom as hd
    import pydicom

    seg = hd.seg.segread(seg_path)
    sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in sorted(series.iterdir())]
    uids = [s.SOPInstanceUID for s in sources]
    lps = np.array([[float(v) for v in s.ImagePositionPatient] for s in sources])
    ijk = labelmap.ras_to_ijk_points(lps * [-1, -1, 1])
    assert np.allclose(ijk[:, :2], 0, atol=1e-3) and np.allclose(ijk[:, 2], np.round(ijk[:, 2]), atol=1e-3)
    masks = {}
    for description in seg.SegmentSequence:
        number = description.SegmentNumber
        frames = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, segment_numbers=[number])
        mask = np.zeros(labelmap.array.shape, dtype=bool)
        for k, frame in zip(np.round(ijk[:, 2]).astype(int), frames[..., 0]):
            mask[k] = frame > 0
        masks[description.SegmentLabel] = mask
    return masks


def test_dicom_seg_export_reads_back_equal_to_the_labelmap_export(tmp_path):
    from medsam3.files.volume_io import read_volume
    from web_harness import write_dicom_phantom

    phantom = write_dicom_phantom(tmp_path / "series")
    with running_web(tmp_path, str(phantom.path), "--stand-in-model", "--expose-state") as web, \
            playwright_api.sync_playwright() as playwright:
        browser, page = open_page(playwright, web)
        page.fill("#medsam3-target", "liver")
        page.click("#medsam3-segment")
        state = web.wait_for_state(lambda s: len(s["segments"]) == 1)
        assert state["segments"][0]["mask_sha256"] == sha(phantom.upper | phantom.lower)  # both bright blocks
        labelmap_path = download(page, "#medsam3-export-labelmap", ".nii.gz", tmp_path)
        seg_path = download(page, "#medsam3-export-dicom-seg", ".seg.dcm", tmp_path)
        browser.close()

    assert seg_path.name.endswith(".seg.dcm") and labelmap_path.name.endswith(".nii.gz")
    labelmap = read_volume(labelmap_path)
    masks = seg_on_labelmap_grid(seg_path, phantom.path, labelmap)
    assert list(masks) == ["Liver"]
    np.testing.assert_array_equal(masks["Liver"], labelmap.array == 1)  # the same voxels as the labelmap export
    assert masks["Liver"].sum() == (phantom.upper | phantom.lower).sum()


def test_segments_opened_from_a_seg_nrrd_are_refined_with_clicks_and_undo_returns_to_them(tmp_path):
    from medsam3.files.seg_nrrd import write_seg_nrrd
    from medsam3.files.volume_io import read_volume

    phantom = write_phantom(tmp_path)
    saved = tmp_path / "saved" / "earlier.seg.nrrd"
    saved.parent.mkdir()
    write_seg_nrrd(saved, phantom.upper.astype(np.uint8), ["Earlier work"], read_volume(phantom.path))
    with running_web(tmp_path, str(phantom.path), "--stand-in-model", "--expose-state") as web, \
            playwright_api.sync_playwright() as playwright:
        browser, page = open_page(playwright, web)
        coronal = view(page, "Green")
        page.set_input_files("#medsam3-upload-segments", str(saved))
        state = web.wait_for_state(lambda s: len(s["segments"]) == 1)
        opened = state["segments"][0]
        assert opened["name"] == "Earlier work" and opened["selected"]
        assert opened["mask_sha256"] == sha(phantom.upper)  # the file's voxels, on the image's grid
        page.get_by_text("Earlier work", exact=True).wait_for()

        page.click("#medsam3-start-from-segment")  # as Slicer's "Start from segment"
        web.wait_for_state(lambda s: s["status"].startswith("Done"))
        choose_tool(page, web, "point-positive", "positive")
        blocks = unsegmented_blocks(view_pixels(coronal))
        assert len(blocks) == 1, blocks  # only the lower block is still white: the upper one shows as the segment
        coronal.click(position={"x": blocks[0][1], "y": blocks[0][0]})
        state = web.wait_for_state(lambda s: s["segments"][0]["mask_sha256"] != opened["mask_sha256"])
        refined = mask_from_seg_nrrd(download(page, "#medsam3-export-seg", ".seg.nrrd", tmp_path), phantom.path)
        assert sha(refined) == state["segments"][0]["mask_sha256"]
        assert (refined >= phantom.lower).all()  # the clicked block joined the segment, whole volume
        # where the tracker did not go, the file's voxels are kept (the stand-in model ignores the previous mask on
        # the slices it revisits, so only those the click's propagation never reached stay exactly as opened)
        assert (refined & phantom.upper).any() and not (refined & ~(phantom.upper | phantom.lower)).any()

        page.click("#medsam3-undo")  # back to exactly what the file held
        web.wait_for_state(lambda s: s["segments"][0]["mask_sha256"] == opened["mask_sha256"])

        bad = tmp_path / "saved" / "notes.seg.nrrd"
        bad.write_text("not a segmentation")
        page.set_input_files("#medsam3-upload-segments", str(bad))
        state = web.wait_for_state(lambda s: "could not be read" in s["status"])
        assert [row["mask_sha256"] for row in state["segments"]] == [opened["mask_sha256"]]  # nothing lost
        browser.close()


def test_paint_and_erase_with_the_segment_editor_and_one_undo_for_strokes_and_model(tmp_path):
    phantom = write_phantom(tmp_path)
    with running_web(tmp_path, str(phantom.path), "--stand-in-model", "--expose-state") as web, \
            playwright_api.sync_playwright() as playwright:
        browser, page = open_page(playwright, web)
        axial = view(page, "Red")
        page.click("#medsam3-whole-volume")  # This slice
        rgb = view_pixels(axial)
        (centre,) = unsegmented_blocks(rgb)
        y0, y1, x0, x1 = block_extent(rgb, centre)
        page.fill("#medsam3-target", "liver")
        page.click("#medsam3-segment")
        typed = web.wait_for_state(lambda s: len(s["segments"]) == 1)["segments"][0]
        k = typed["ijk_bounds"][2][0]

        # Paint a stroke beside the block (on the axial slice): the segment gains voxels there, on that slice only.
        choose_tool(page, web, "paint", "paint")
        beside = x1 + 30
        drag(page, axial, (beside, y0), (beside, y1), steps=12)
        painted = web.wait_for_state(lambda s: s["segments"][0]["voxels"] > typed["voxels"])["segments"][0]
        assert painted["ijk_bounds"][2] == [k, k]  # the brush paints the slice on screen
        assert painted["ijk_bounds"][0] != typed["ijk_bounds"][0]  # beside the block, not in it

        # Erase across the block: voxels of the block go.
        choose_tool(page, web, "erase", "erase")
        drag(page, axial, ((x0 + x1) // 2, y0 - 5), ((x0 + x1) // 2, y1 + 5), steps=12)
        erased = web.wait_for_state(lambda s: s["segments"][0]["voxels"] < painted["voxels"])["segments"][0]

        # Undo goes back stroke by stroke, then into the model's history; Redo comes forward again.
        choose_tool(page, web, "point-off", "off")
        for expected in (painted, typed):
            page.click("#medsam3-undo")
            web.wait_for_state(lambda s: s["segments"][0]["mask_sha256"] == expected["mask_sha256"])
        page.click("#medsam3-redo")
        web.wait_for_state(lambda s: s["segments"][0]["mask_sha256"] == painted["mask_sha256"])
        page.click("#medsam3-undo")
        web.wait_for_state(lambda s: s["segments"][0]["mask_sha256"] == typed["mask_sha256"])
        page.click("#medsam3-undo")  # the typed target's result itself
        web.wait_for_state(lambda s: s["segments"][0]["voxels"] == 0)
        assert erased["voxels"] < painted["voxels"]
        browser.close()


def test_several_images_in_one_session_keep_their_own_segments(tmp_path):
    import SimpleITK as sitk

    phantom = write_phantom(tmp_path)
    b_blocks = (phantom.upper | phantom.lower)[:, :, ::-1]  # the blocks on the other side
    image = sitk.GetImageFromArray(np.where(b_blocks, 1000, -1000).astype(np.int16))
    image.SetSpacing((2.0, 2.0, 3.0))
    patient_b = tmp_path / "patient_b.nii.gz"
    sitk.WriteImage(image, str(patient_b))
    with running_web(tmp_path, str(phantom.path), str(patient_b), "--stand-in-model", "--expose-state") as web, \
            playwright_api.sync_playwright() as playwright:
        browser, page = open_page(playwright, web)
        state = web.wait_for_state(lambda s: len(s["images"]) == 2)
        assert state["volume"].startswith("phantom")
        page.fill("#medsam3-target", "liver")
        page.click("#medsam3-segment")
        liver = web.wait_for_state(lambda s: len(s["segments"]) == 1)["segments"][0]
        assert liver["mask_sha256"] == sha(phantom.upper | phantom.lower)

        def choose_image(name: str):
            page.locator(".v-select:has(#medsam3-image)").click()
            page.get_by_role("option").filter(has_text=name).click()
            return web.wait_for_state(lambda s: s["volume"].startswith(name))

        # The next patient, without restarting: no segment of the first one; what is segmented lands on B only.
        state = choose_image("patient_b")
        assert state["segments"] == []
        page.fill("#medsam3-target", "spleen")
        page.click("#medsam3-segment")
        spleen = web.wait_for_state(lambda s: len(s["segments"]) == 1)["segments"][0]
        assert spleen["name"] == "Spleen" and spleen["mask_sha256"] == sha(b_blocks)

        # Back to the first patient: its segment, exactly as it was, and only it.
        state = choose_image("phantom")
        assert [(s["name"], s["mask_sha256"]) for s in state["segments"]] == [("Liver", liver["mask_sha256"])]
        assert len(state["images"]) == 2
        browser.close()


def test_the_page_opens_while_the_model_loads_and_shows_it(tmp_path):
    """The first model load can take minutes (a download); the page is there meanwhile, with a progress bar, and
    its buttons wait. The stand-in's load lasts until the test has seen the page (a file it creates)."""
    phantom = write_phantom(tmp_path)
    gate = tmp_path / "let-the-model-load"
    with running_web(tmp_path, str(phantom.path), "--stand-in-model", "--stand-in-load-gate", str(gate),
                     "--expose-state") as web, playwright_api.sync_playwright() as playwright:
        browser, page = open_page(playwright, web)
        playwright_api.expect(page.locator("#medsam3-status")).to_contain_text("Loading the model")
        playwright_api.expect(page.locator("#medsam3-progress")).to_be_visible()
        playwright_api.expect(page.locator("#medsam3-segment")).to_be_disabled()
        buttons = ["#medsam3-undo", "#medsam3-start-from-segment", "#medsam3-export-seg", "#medsam3-export-dicom-seg"]
        while_busy = {b: page.locator(b).bounding_box() for b in buttons}
        gate.touch()
        playwright_api.expect(page.locator("#medsam3-status")).to_contain_text("loaded", timeout=60_000)
        playwright_api.expect(page.locator("#medsam3-progress")).to_be_hidden()
        # When the job ends, nothing moves under the mouse: a click aimed at a button as the bar vanishes hits it.
        assert {b: page.locator(b).bounding_box() for b in buttons} == while_busy
        page.fill("#medsam3-target", "liver")
        page.click("#medsam3-segment")
        state = web.wait_for_state(lambda s: len(s["segments"]) == 1)
        assert state["segments"][0]["mask_sha256"] == sha(phantom.upper | phantom.lower)
        browser.close()


def draw_outline(page, locator, corners, steps: int = 6) -> None:
    """Press the left button at the first corner (element pixels), move through the others and release."""
    box = locator.bounding_box()
    page.mouse.move(box["x"] + corners[0][0], box["y"] + corners[0][1])
    page.mouse.down()
    for x, y in corners[1:]:
        page.mouse.move(box["x"] + x, box["y"] + y, steps=steps)
    page.mouse.up()


def around(extent, margin: float = 10, corners: int = 24) -> list[tuple[float, float]]:
    """A closed outline around a block's (y0, y1, x0, x1) screen extent: an ellipse through many points, well
    outside the block, so that a mouse move the remote view drops (it cuts a chord) leaves the block inside."""
    y0, y1, x0, x1 = extent
    angles = np.linspace(0, 2 * np.pi, corners + 1)
    ry, rx = (y1 - y0) / 2 * np.sqrt(2) + margin, (x1 - x0) / 2 * np.sqrt(2) + margin
    return [((x0 + x1) / 2 + rx * np.cos(a), (y0 + y1) / 2 + ry * np.sin(a)) for a in angles]


def test_scribble_and_lasso_on_a_slice_view(tmp_path):
    """The stand-in answers a scribble (points) or a lasso (a mask prompt) with the bright blocks they touch, on
    the slice drawn on: so each result is known voxel for voxel from the phantom's blocks."""
    phantom = write_phantom(tmp_path)
    with running_web(tmp_path, str(phantom.path), "--stand-in-model", "--expose-state") as web, \
            playwright_api.sync_playwright() as playwright:
        browser, page = open_page(playwright, web)
        axial, coronal = view(page, "Red"), view(page, "Green")
        axial_rgb, coronal_rgb = view_pixels(axial), view_pixels(coronal)
        (centre,) = unsegmented_blocks(axial_rgb)
        y0, y1, x0, x1 = axial_block = block_extent(axial_rgb, centre)
        coronal_blocks = unsegmented_blocks(coronal_rgb)
        assert len(coronal_blocks) == 2, coronal_blocks  # the middle coronal slice crosses both blocks

        # A typed target through the whole volume: both blocks (refined with a − lasso at the end).
        page.fill("#medsam3-target", "liver")
        page.click("#medsam3-segment")
        typed = web.wait_for_state(lambda s: len(s["segments"]) == 1)["segments"][0]
        assert typed["name"] == "Liver" and typed["mask_sha256"] == sha(phantom.upper | phantom.lower), typed
        page.fill("#medsam3-target", "")  # the strokes below make segments of their own
        web.wait_for_state(lambda s: s["target"] == "")
        page.click("#medsam3-whole-volume")  # This slice
        page.click("#medsam3-new-segment")
        web.wait_for_state(lambda s: not any(row["selected"] for row in s["segments"]))

        # + Scribble across the block: the block on that slice (the scribble's points are inside it).
        choose_tool(page, web, "scribble-positive", "scribble+")
        drag(page, axial, (x0 + 3, (y0 + y1) // 2), (x1 - 3, (y0 + y1) // 2 + 2), steps=10)
        scribbled = web.wait_for_state(lambda s: len(s["segments"]) == 2)["segments"][1]
        k = scribbled["ijk_bounds"][2][0]
        expected = np.zeros_like(phantom.upper)
        expected[k] = phantom.upper[k]
        assert scribbled["mask_sha256"] == sha(expected), scribbled

        # + Lasso around the upper block in the coronal view, which shows both blocks, as a new segment: exactly
        # that block's voxels on that coronal slice, nothing of the other block (also on that slice).
        page.click("#medsam3-new-segment")
        web.wait_for_state(lambda s: not any(row["selected"] for row in s["segments"]))
        choose_tool(page, web, "lasso-positive", "lasso+")
        draw_outline(page, coronal, around(block_extent(coronal_rgb, coronal_blocks[0])))  # the top one
        state = web.wait_for_state(lambda s: len(s["segments"]) == 3)
        lassoed = state["segments"][2]
        j = lassoed["ijk_bounds"][1][0]
        expected = np.zeros_like(phantom.upper)
        expected[:, j] = phantom.upper[:, j]
        assert phantom.lower[:, j].any() and lassoed["mask_sha256"] == sha(expected), lassoed
        assert [row["mask_sha256"] for row in state["segments"][:2]] == [typed["mask_sha256"],
                                                                         scribbled["mask_sha256"]]  # untouched

        # − Lasso around the block on the axial slice (This slice) on the typed segment: exactly that block's voxels
        # on that slice go; the rest of the segment, and the other segments, stay.
        page.get_by_text("Liver", exact=True).click()
        web.wait_for_state(lambda s: s["segments"][0]["selected"])
        choose_tool(page, web, "lasso-negative", "lasso-")
        draw_outline(page, axial, around(axial_block))
        state = web.wait_for_state(lambda s: s["segments"][0]["mask_sha256"] != typed["mask_sha256"])
        expected = phantom.upper | phantom.lower
        expected[k] &= ~phantom.upper[k]
        trimmed = state["segments"][0]
        assert trimmed["mask_sha256"] == sha(expected), (trimmed, state["status"])
        assert trimmed["voxels"] == typed["voxels"] - int(phantom.upper[k].sum())
        assert [row["mask_sha256"] for row in state["segments"][1:]] == [scribbled["mask_sha256"],
                                                                        lassoed["mask_sha256"]]  # untouched
        browser.close()
