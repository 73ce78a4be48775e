"""The model worker is not starved when the main thread holds the GIL, as Slicer's main thread does.

In Slicer the main thread holds the GIL while Qt's event loop idles (PythonQt runs without thread support) and
runs the module's delivery code from a 30 ms timer. This test imitates that: the main loop idles in a C call that
sleeps *without* releasing the GIL (``ctypes.PyDLL``, unlike ``ctypes.CDLL``, keeps the GIL during the call),
then runs ``ModelWorker.deliver_finished`` as the widget's timer does. A tiny-model click prediction (propagated
through a small volume) on the worker, and a background prefetch, must run to the end under such a loop (without
the slot's GIL-releasing waits they would only run while the main thread runs Python code). Both times are
printed (``pytest -s``) but not asserted: the machine is shared (issue 23); scripts/measure_gui_stall.py prints the
GUI's longest stall during a prefetch.
"""

from __future__ import annotations

import ctypes
import time

import numpy as np
import pytest
import vtk

from slicer_scene import add_points, add_slice_node, new_scene

from medsam3.transports.model_loading import load_backend

from MedicalSAM3SlicerLib import MedicalSAM3SlicerLogic
from MedicalSAM3SlicerLib.volume_nodes import array_to_matrix
from MedicalSAM3SlicerLib.worker import ModelWorker

TIMER_INTERVAL_SECONDS = 0.030  # the widget's delivery timer (DELIVERY_INTERVAL_MS)
HANG_GUARD_SECONDS = 600  # only so that a broken wait fails instead of hanging; never a speed requirement


@pytest.fixture(scope="module")
def tiny_logic(tmp_path_factory, one_torch_thread):
    backend = load_backend("tiny-random", device="cpu", cache_dir=tmp_path_factory.mktemp("cache"), progress=False,
                           bf16_autocast=False)
    return MedicalSAM3SlicerLogic(backend)


def small_ct(scene, soft_tissue: int = 60):
    from vtk.util import numpy_support

    voxels = np.full((12, 96, 96), -1000, dtype=np.int16)
    voxels[:, 30:70, 25:60] = soft_tissue
    image = vtk.vtkImageData()
    image.SetDimensions(voxels.shape[::-1])
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(voxels.reshape(-1), deep=True))
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "ct")
    node.SetAndObserveImageData(image)
    node.SetIJKToRASMatrix(array_to_matrix(np.diag([0.8, 0.8, 2.0, 1.0])))
    return node


def click_request(logic, scene, node, segmentation, k: int):
    """A click on axial slice k propagated through the volume (each run on a new segment, so each run encodes,
    decodes and propagates the same amount)."""
    clicks = add_points(scene, [40 * 0.8, 50 * 0.8, k * 2.0], name=f"click {k}")
    return logic.prepare(node, segmentation, positive_points=clicks, view="axial", whole_volume=True)


def run_standalone(worker: ModelWorker, logic, request) -> float:
    start = time.perf_counter()
    worker.submit(lambda: logic.predict(request)).result()  # the main thread waits with the GIL released
    return time.perf_counter() - start


def run_under_gil_holding_main_loop(worker: ModelWorker, logic, request, give_up_after: float) -> float:
    """Slicer's main thread imitated: idle with the GIL held, then the module's delivery code, until delivered."""
    sleep_holding_the_gil = ctypes.PyDLL(None).usleep
    delivered = []
    start = time.perf_counter()
    worker.submit(lambda: logic.predict(request), on_done=delivered.append, on_error=delivered.append)
    next_tick = start
    while not delivered and time.perf_counter() - start < give_up_after:
        next_tick += TIMER_INTERVAL_SECONDS  # a QTimer fires every interval, however long its slot took
        idle = next_tick - time.perf_counter()
        if idle > 0:
            sleep_holding_the_gil(int(idle * 1e6))  # Qt's event loop idling until the next tick
        worker.deliver_finished()  # the widget's timer slot
    elapsed = time.perf_counter() - start
    assert delivered and not isinstance(delivered[0], BaseException), delivered
    assert isinstance(delivered[0], list) and delivered[0]  # the prediction's mask updates
    return elapsed


def test_a_prediction_is_not_starved_by_a_main_thread_that_holds_the_gil(tiny_logic):
    scene = new_scene()
    node = small_ct(scene)
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    worker = ModelWorker()
    try:
        run_standalone(worker, tiny_logic, click_request(tiny_logic, scene, node, segmentation, 2))  # warm-up
        standalone = run_standalone(worker, tiny_logic, click_request(tiny_logic, scene, node, segmentation, 5))
        request = click_request(tiny_logic, scene, node, segmentation, 8)
        held = run_under_gil_holding_main_loop(worker, tiny_logic, request, give_up_after=HANG_GUARD_SECONDS)
    finally:
        worker.shutdown()
    print(f"\ntiny-model click prediction: standalone {standalone:.3f} s, under a GIL-holding main loop "
          f"{held:.3f} s ({held / standalone:.1f}x)")


def test_background_prefetch_is_not_starved_when_the_timer_waits_on_it(tiny_logic):
    """The slices around the one on screen are encoded on the prefetcher's thread; the delivery-timer slot
    ``logic.deliver_and_wait(worker)`` waits on it (the worker being idle), releasing the GIL in the same way."""
    scene = new_scene()
    worker = ModelWorker()
    sleep_holding_the_gil = ctypes.PyDLL(None).usleep

    def prefetch(soft_tissue: int) -> tuple[object, object]:
        node = small_ct(scene, soft_tissue)  # another volume each time: nothing is cached yet
        return node, add_slice_node(scene, "axial", [30.0, 40.0, 12.0])

    tiny_logic.prefetch_around(*prefetch(70), radius=1)
    assert tiny_logic.wait_for_prefetch(60)  # warm-up
    start = time.perf_counter()
    tiny_logic.prefetch_around(*prefetch(80), radius=2)
    assert tiny_logic.wait_for_prefetch(60)
    standalone = time.perf_counter() - start

    cache = tiny_logic.backend.engine.cache
    misses = cache.misses
    start = next_tick = time.perf_counter()
    tiny_logic.prefetch_around(*prefetch(90), radius=2)
    done = False
    try:
        while not done and time.perf_counter() - start < HANG_GUARD_SECONDS:
            next_tick += TIMER_INTERVAL_SECONDS
            idle = next_tick - time.perf_counter()
            if idle > 0:
                sleep_holding_the_gil(int(idle * 1e6))
            done = not tiny_logic.deliver_and_wait(worker)  # the timer slot; False: nothing left to wait for
    finally:
        worker.shutdown()
    held = time.perf_counter() - start
    print(f"\ntiny-model prefetch of 5 slices: standalone {standalone:.3f} s, under a GIL-holding main loop "
          f"{held:.3f} s ({held / standalone:.1f}x)")
    assert done and cache.misses - misses == 5  # every slice around the view was encoded, under the held GIL
