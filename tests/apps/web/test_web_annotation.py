"""The web page's scene logic without a browser: the model never blocks the server's event loop, Stop changes
nothing, a request while the model works is refused in one line, and the labelmap export carries the names.

The views are not created here (no page), so nothing is rendered; the scene, the bridge and the model thread are the
real ones the page uses.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

pytest.importorskip("trame_slicer", reason="web test skipped: trame-slicer is not installed (requirements/web.txt; "
                                           "scripts/setup_env.sh installs it)")

from medsam3.interaction.engine import SegmentationEngine  # noqa: E402
from medsam3.model.bright_region_model import BrightRegionModel  # noqa: E402
from medsam3.transports.backend import BackendInfo, LocalBackend  # noqa: E402

from web_harness import write_phantom  # noqa: E402


class SlowBrightRegion(BrightRegionModel):
    """The stand-in, taking a while per slice, as a real model on a CPU does."""

    def _encode(self, image):
        time.sleep(0.02)
        return super()._encode(image)


@pytest.fixture
def annotation(tmp_path):
    from trame_slicer.core import SlicerApp

    from medsam3_web.annotation import Annotation

    backend = LocalBackend(SegmentationEngine(SlowBrightRegion(image_size=256, mask_grid=64)),
                           BackendInfo(model="slow stand-in", device="cpu", image_size=256))
    phantom = write_phantom(tmp_path)
    annotation = Annotation(SlicerApp(), backend)
    annotation.load([phantom.path])
    yield annotation, phantom
    annotation.close()


def test_stop_reaches_a_running_prediction_and_nothing_is_written(annotation):
    annotation, _ = annotation
    seen_busy = []

    async def user():
        work = asyncio.ensure_future(annotation.segment_text("liver"))
        while not work.done():  # the event loop runs while the model works: the user can press Stop
            if annotation.busy and annotation.progress is not None:
                seen_busy.append(annotation.progress)
                annotation.stop()
            await asyncio.sleep(0.005)
        await work

    asyncio.run(user())
    assert seen_busy  # Stop was pressed while the model was working through the volume
    assert annotation.segments() == []
    assert annotation.status == "Stopped before the end: nothing was changed."
    assert not annotation.busy


def test_a_request_while_the_model_works_is_refused_in_one_line(annotation):
    annotation, phantom = annotation
    from medsam3_web.annotation import Busy

    async def user():
        work = asyncio.ensure_future(annotation.segment_text("liver"))
        while not annotation.busy:
            await asyncio.sleep(0.001)
        with pytest.raises(Busy, match="busy: wait for it, or press Stop"):
            await annotation.segment_text("spleen")
        await work

    asyncio.run(user())
    names = [row["name"] for row in annotation.segments()]
    assert names == ["Liver"]  # the first request was written, the refused one changed nothing
    mask = annotation.segment_mask(annotation.segments()[0]["id"])
    np.testing.assert_array_equal(mask, phantom.upper | phantom.lower)  # the stand-in finds both bright blocks


def test_labelmap_export_has_the_segment_and_its_colour_table(annotation, tmp_path):
    annotation, phantom = annotation
    from medsam3.errors import MedSam3Error
    from medsam3.files.volume_io import read_volume

    with pytest.raises(MedSam3Error, match="no segment to export yet"):
        annotation.export("labelmap", tmp_path / "out")
    asyncio.run(annotation.segment_text("liver"))
    path = annotation.export("labelmap", tmp_path / "out")
    assert path.name == "phantom.nii.gz"
    np.testing.assert_array_equal(read_volume(path).array == 1, phantom.upper | phantom.lower)
    assert "Liver" in (tmp_path / "out" / "phantom.labels.csv").read_text()


def test_window_presets_are_slicers_own(annotation):
    annotation, _ = annotation
    display = annotation.volume_node.GetDisplayNode()
    annotation.set_display_preset("CT_LUNG")
    lung = (display.GetWindow(), display.GetLevel())
    assert annotation.app.volumes_logic.GetAppliedVolumeDisplayPresetId(display) == "CT_LUNG"
    annotation.set_display_preset("CT_BONE")
    assert (display.GetWindow(), display.GetLevel()) != lung
    annotation.set_display_preset("auto")
    assert display.GetAutoWindowLevel()


def test_with_server_the_model_runs_on_a_medsam3_server_through_the_same_bridge(tmp_path):
    from trame_slicer.core import SlicerApp

    from medsam3_web import options
    from medsam3_web.annotation import Annotation
    from medsam3_web.app import make_backend
    from server_harness import API_KEY, running_server

    phantom = write_phantom(tmp_path)
    served = LocalBackend(SegmentationEngine(BrightRegionModel(image_size=256, mask_grid=64)),
                          BackendInfo(model="stand-in on the server", device="cpu", image_size=256))
    with running_server(served) as url:
        args = options.parse([str(phantom.path), "--server", url, "--server-api-key", API_KEY])
        annotation = Annotation(SlicerApp(), make_backend(args))
        try:
            annotation.load(args.images)
            asyncio.run(annotation.segment_text("liver"))
            assert [row["name"] for row in annotation.segments()] == ["Liver"], annotation.status
            np.testing.assert_array_equal(annotation.segment_mask(annotation.segments()[0]["id"]),
                                          phantom.upper | phantom.lower)
            assert annotation.logic.backend.info().transport != "in-process"
        finally:
            annotation.close()


def test_opening_another_image_replaces_the_scene_and_a_bad_file_changes_nothing(annotation, tmp_path):
    annotation, phantom = annotation
    from medsam3.errors import MedSam3Error

    asyncio.run(annotation.segment_text("liver"))
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"not an image")
    with pytest.raises(MedSam3Error, match="could not be read as a volume"):
        annotation.replace_image([bad])
    assert [row["name"] for row in annotation.segments()] == ["Liver"]  # nothing the user had is lost

    second = tmp_path / "second"
    second.mkdir()
    copy = second / "second.nii.gz"
    copy.write_bytes(phantom.path.read_bytes())
    annotation.replace_image([copy])
    assert annotation.volume_node.GetName().startswith("second") and annotation.segments() == []
    assert annotation.scene.GetNodesByClass("vtkMRMLScalarVolumeNode").GetNumberOfItems() == 1
    asyncio.run(annotation.segment_text("spleen"))
    assert [row["name"] for row in annotation.segments()] == ["Spleen"]


def test_dicom_seg_of_an_image_that_cannot_be_referenced_is_refused_in_one_line(tmp_path):
    """A NIfTI has no series to reference; a series anonymised without its Frame of Reference UID cannot be
    referenced either (highdicom's own ValueError used to reach the page as an internal error)."""
    from trame_slicer.core import SlicerApp

    from medsam3.errors import MedSam3Error
    from medsam3_web.annotation import Annotation
    from web_harness import write_dicom_phantom

    backend = LocalBackend(SegmentationEngine(BrightRegionModel(image_size=256, mask_grid=64)),
                           BackendInfo(model="stand-in", device="cpu", image_size=256))
    annotation = Annotation(SlicerApp(), backend)
    try:
        annotation.load([write_phantom(tmp_path).path])
        asyncio.run(annotation.segment_text("liver"))
        with pytest.raises(MedSam3Error, match="was not loaded from DICOM"):
            annotation.export("dicom-seg", tmp_path / "nifti")
        annotation.replace_image([write_dicom_phantom(tmp_path / "series", frame_of_reference=False).path])
        asyncio.run(annotation.segment_text("liver"))
        with pytest.raises(MedSam3Error, match="no FrameOfReferenceUID") as refused:
            annotation.export("dicom-seg", tmp_path / "anonymised")
        assert "\n" not in str(refused.value) and not list((tmp_path / "anonymised").glob("*.dcm"))
        assert [row["name"] for row in annotation.segments()] == ["Liver"]  # nothing the user had is lost
    finally:
        annotation.close()
