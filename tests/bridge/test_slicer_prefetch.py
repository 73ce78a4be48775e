"""Scrolling a slice view encodes the slices around it in the background: the next clicks there cost no encoding."""

import numpy as np

from slicer_scene import add_points, add_slice_node, load_volume_node, new_scene, world_of_voxel

from medsam3.transports.backend import BackendInfo, LocalBackend
from medsam3.interaction.engine import SegmentationEngine

from MedicalSAM3SlicerLib import MedicalSAM3SlicerLogic
from MedicalSAM3SlicerLib.segment_io import segment_mask

from cases import load_case
from oracle import GroundTruthOracle, ground_truth_volume
from placement import dice


def test_slices_around_the_view_are_ready_before_the_click(tmp_path):
    case = load_case("spleen")
    scene = new_scene()
    volume_node = load_volume_node(scene, ground_truth_volume(case.volume, case.mask), tmp_path)
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    oracle = GroundTruthOracle()
    logic = MedicalSAM3SlicerLogic(LocalBackend(SegmentationEngine(oracle), BackendInfo("oracle", "cpu", 1008)))
    k = int(np.argmax(case.mask.sum(axis=(1, 2))))
    j, i = np.argwhere(case.mask[k + 1])[len(np.argwhere(case.mask[k + 1])) // 2]
    red = add_slice_node(scene, "axial", world_of_voxel(volume_node, (i, j, k)))
    try:
        assert logic.prefetch_around(volume_node, red, text="spleen")
        assert logic.wait_for_prefetch(timeout=120)
        assert oracle.encoded == 5  # slices k-2 .. k+2

        clicks = add_points(scene, [world_of_voxel(volume_node, (i, j, k + 1))])
        result = logic.segment(volume_node, segmentation, text="spleen", positive_points=clicks, view=red,
                               whole_volume=False)

        assert oracle.encoded == 5  # the click on slice k+1 decoded from the prefetched encoding
        expected = np.zeros_like(case.mask)
        expected[k + 1] = case.mask[k + 1]
        assert dice(segment_mask(segmentation, result.segment_ids[0], volume_node), expected) >= 0.95
    finally:
        logic.close()


def gated_prefetch(tmp_path, give_up_after=60):
    """A prefetch of 5 slices, held inside the encoding of its first slice."""
    from slicer_patients import A_BOX, GatedOracle, load_patient, logic_with

    scene = new_scene()
    model = GatedOracle(give_up_after)
    logic = logic_with(model)
    volume, _, centre = load_patient(scene, tmp_path / "a", A_BOX, "patient")
    assert logic.prefetch_around(volume, add_slice_node(scene, "axial", world_of_voxel(volume, centre)), radius=2)
    assert model.started.wait(60)
    return logic, model


def test_leaving_the_module_stops_the_prefetch_at_the_next_slice(tmp_path):
    """The prefetch works one slice at a time; the module's exit() cancels it, and no further slice is encoded."""
    logic, model = gated_prefetch(tmp_path)
    try:
        logic.cancel_prefetch()  # what exit() calls
        model.release.set()
        assert logic.wait_for_prefetch(60)
        assert model.encoded == 1  # only the slice that was being encoded, not the 4 around it
    finally:
        model.release.set()
        logic.close()


def test_closing_the_logic_does_not_wait_on_the_gui_thread_for_the_slice_being_encoded(tmp_path):
    """close() (scene closed, module cleaned up) tells the prefetch thread to stop and returns; it does not join the
    thread. (Had it joined, the held encoding would give up after a few seconds and the thread be gone.)"""
    logic, model = gated_prefetch(tmp_path, give_up_after=10)
    prefetcher = logic._prefetcher
    try:
        logic.close()
        assert prefetcher.running and not model.release.is_set()  # close returned while the slice was encoding
        model.release.set()
        prefetcher._thread.join(60)
        assert not prefetcher.running and model.encoded == 1  # the thread ended at the next slice boundary
    finally:
        model.release.set()


def test_a_timer_tick_lends_a_prefetch_less_time_than_a_prompt(monkeypatch):
    """The delivery-timer slot waits (GIL released) on the background prefetch for PREFETCH_WAIT_SECONDS only, less
    than on the user's own job: a prefetch leaves the GUI most of each tick (stall figure:
    scripts/measure_gui_stall.py)."""
    from MedicalSAM3SlicerLib.logic import PREFETCH_WAIT_SECONDS
    from MedicalSAM3SlicerLib.worker import DELIVERY_WAIT_SECONDS, ModelWorker

    logic = MedicalSAM3SlicerLogic()
    waits = []
    monkeypatch.setattr(logic, "wait_for_prefetch", lambda timeout=None: waits.append(timeout) or True)
    worker = ModelWorker()
    try:
        logic.deliver_and_wait(worker)
    finally:
        worker.shutdown()
    assert waits[0] == PREFETCH_WAIT_SECONDS < DELIVERY_WAIT_SECONDS
