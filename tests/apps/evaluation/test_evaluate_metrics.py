"""``medsam3 evaluate``'s measurements: Dice and NSD against an independent computation on hand-made masks
(empty cases included), NoC and the area under the Dice curve, and the simulated user's clicks and boxes on
constructed cases (inside missed regions, outside extra ones, at their centres)."""

from __future__ import annotations

import numpy as np
import pytest

from medsam3.apps.evaluation.click_simulator import ClickSimulator
from medsam3.apps.evaluation.metrics import area_under_curve, clicks_to_reach, dice, normalised_surface_distance
from medsam3.geometry.volume import Volume


# --- an independent computation: sets of voxels and brute-force distances ----------------------------------------
def _voxels(mask: np.ndarray) -> set[tuple[int, ...]]:
    return set(map(tuple, np.argwhere(mask)))


def _dice_by_counting(truth: np.ndarray, prediction: np.ndarray) -> float | None:
    a, b = _voxels(truth), _voxels(prediction)
    return None if not a and not b else 2 * len(a & b) / (len(a) + len(b))


def _nsd_by_monai(truth, prediction, spacing, tolerance) -> float | None:
    """MONAI's surface Dice with sub-voxel surface areas (DeepMind's / the challenge's definition), on the whole
    arrays (no crop), with the project's rule for empty masks (both empty: not scored)."""
    import torch
    from monai.metrics import compute_surface_dice

    if not truth.any() and not prediction.any():
        return None

    def one_hot(mask):
        return torch.from_numpy(np.stack([~mask, mask])[None].astype(np.float32))

    value = compute_surface_dice(one_hot(prediction), one_hot(truth), [tolerance], include_background=False,
                                 spacing=list(spacing), use_subvoxels=True)
    return float(value[0, 0])


def _hand_made_pairs():
    shape = (6, 12, 12)
    cube = np.zeros(shape, bool)
    cube[1:5, 2:8, 2:8] = True
    shifted = np.roll(cube, 2, axis=2)
    smaller = np.zeros(shape, bool)
    smaller[2:4, 3:7, 3:6] = True
    ring = cube.copy()
    ring[1:5, 4:6, 4:6] = False
    far = np.zeros(shape, bool)
    far[0:2, 9:12, 9:12] = True
    empty = np.zeros(shape, bool)
    eroded = np.zeros(shape, bool)
    eroded[2:4, 3:7, 3:7] = True  # the cube eroded by one voxel
    one_slice_shift = np.roll(cube, 1, axis=0)
    two_components = far | smaller
    one_voxel = np.zeros(shape, bool)
    one_voxel[3, 5, 5] = True
    return {"identical": (cube, cube), "shifted": (cube, shifted), "inside": (cube, smaller),
            "eroded by one voxel": (cube, eroded), "one slice shift": (cube, one_slice_shift),
            "two components": (cube | far, two_components), "one voxel object": (one_voxel, cube),
            "one voxel each": (one_voxel, np.roll(one_voxel, 1, axis=2)),
            "with a hole": (cube, ring), "disjoint": (cube, far), "touching the edge": (far, cube | far),
            "both empty": (empty, empty), "empty prediction": (cube, empty), "empty ground truth": (empty, far)}


@pytest.mark.parametrize("name", list(_hand_made_pairs()))
@pytest.mark.parametrize("spacing, tolerance", [((1.0, 1.0, 1.0), 1.0), ((5.0, 0.8, 0.8), 2.0),
                                                ((2.5, 0.7, 0.9), 2.0)])
def test_dice_and_nsd_agree_with_counting_and_with_monai(name, spacing, tolerance):
    """NSD is area-weighted in physical spacing (issue 19): MONAI's compute_surface_dice(use_subvoxels=True),
    which equals the challenge's SurfaceDice.py, within 1e-6, on anisotropic 5 x 0.8 x 0.8 mm voxels too."""
    truth, prediction = _hand_made_pairs()[name]
    expected_dice = _dice_by_counting(truth, prediction)
    expected_nsd = _nsd_by_monai(truth, prediction, spacing, tolerance)
    measured_dice = dice(truth, prediction)
    measured_nsd = normalised_surface_distance(truth, prediction, spacing, tolerance)
    if expected_dice is None:
        assert measured_dice is None and measured_nsd is None  # both empty: not scored
    else:
        assert measured_dice == pytest.approx(expected_dice, abs=1e-12)
        assert measured_nsd == pytest.approx(expected_nsd, abs=1e-6)
    if name in ("empty prediction", "empty ground truth"):
        assert measured_dice == 0.0 and measured_nsd == 0.0
    if name == "identical":
        assert measured_dice == 1.0 and measured_nsd == 1.0


def test_nsd_counts_a_one_voxel_shift_within_tolerance_and_not_beyond():
    truth = np.zeros((5, 10, 10), bool)
    truth[1:4, 2:7, 2:7] = True
    shifted = np.roll(truth, 1, axis=2)
    assert normalised_surface_distance(truth, shifted, (1, 1, 1.0), tolerance_mm=1.0) == 1.0
    assert normalised_surface_distance(truth, shifted, (1, 1, 3.0), tolerance_mm=1.0) < 1.0


def test_clicks_to_reach_and_area_under_the_dice_curve():
    curve = [0.5, 0.8, 0.86, 0.91, 0.95]
    assert clicks_to_reach(curve, 0.85, 5) == 3 and clicks_to_reach(curve, 0.90, 5) == 4
    assert clicks_to_reach([0.2, None, 0.4], 0.85, 10) == 10  # never reached: the whole budget
    assert area_under_curve(curve) == pytest.approx((0.5 + 0.8) / 2 + (0.8 + 0.86) / 2 + (0.86 + 0.91) / 2
                                                    + (0.91 + 0.95) / 2)
    assert area_under_curve([0.7]) == 0.0 and area_under_curve([None, 1.0]) == 0.5


# --- the simulated user ------------------------------------------------------------------------------------------
GEOMETRIES = {
    "LPS header": np.diag([-0.8, -0.8, 2.5, 1.0]),
    "permuted axes": np.array([[0, 0, 0.9, 0], [0.9, 0, 0, 0], [0, 3.0, 0, 0], [0, 0, 0, 1.0]]),
}


def _volume(shape, matrix) -> Volume:
    return Volume(np.zeros(shape, np.int16), matrix)


@pytest.mark.parametrize("geometry", list(GEOMETRIES))
def test_first_click_is_the_deepest_point_of_the_largest_cross_section(geometry):
    volume = _volume((24, 24, 24), GEOMETRIES[geometry])
    simulator = ClickSimulator(volume)
    stack_of = simulator.geometry.as_slice_stack
    truth = np.zeros(volume.array.shape, bool)
    stack = stack_of(truth)  # a writable view: draw in the axial slices
    stack[3, 2:7, 2:7] = True  # small cross-section
    stack[5, 4:13, 5:14] = True  # the largest: 9 x 9, centre at (8, 9)
    stack[6, 4:10, 5:10] = True
    click = simulator.first_click(truth)
    i, j, k = click.ijk
    assert click.positive and click.slice_index == 5 and truth[k, j, i]
    assert tuple(simulator.geometry.ijk_to_slice([click.ijk])[0].round().astype(int)) == (5, 8, 9)


@pytest.mark.parametrize("geometry", list(GEOMETRIES))
def test_next_click_goes_inside_the_largest_missed_region_or_outside_the_largest_extra_one(geometry):
    volume = _volume((24, 24, 24), GEOMETRIES[geometry])
    simulator = ClickSimulator(volume)
    truth = np.zeros(volume.array.shape, bool)
    stack = simulator.geometry.as_slice_stack(truth)
    stack[2:8, 2:16, 2:16] = True
    missed = np.zeros_like(truth)
    simulator.geometry.as_slice_stack(missed)[3:6, 8:15, 8:15] = True  # 3 x 7 x 7 = 147 voxels
    extra = np.zeros_like(truth)
    simulator.geometry.as_slice_stack(extra)[2:4, 17:20, 17:22] = True  # 2 x 3 x 5 = 30 voxels
    prediction = truth & ~missed | extra

    click = simulator.next_click(truth, prediction)
    i, j, k = click.ijk
    assert click.positive and missed[k, j, i] and click.region_voxels == 147
    assert tuple(simulator.geometry.ijk_to_slice([click.ijk])[0].round().astype(int))[1:] == (11, 11)

    bigger_extra = np.zeros_like(truth)
    simulator.geometry.as_slice_stack(bigger_extra)[8:12, 2:20, 17:24] = True
    click = simulator.next_click(truth, truth | bigger_extra)
    i, j, k = click.ijk
    assert not click.positive and bigger_extra[k, j, i] and not truth[k, j, i]

    assert simulator.next_click(truth, truth.copy()) is None


def test_box_is_the_ground_truth_box_on_its_largest_slice():
    volume = _volume((10, 30, 40), np.diag([-0.7, -0.7, 3.0, 1.0]))
    simulator = ClickSimulator(volume)
    truth = np.zeros(volume.array.shape, bool)
    truth[4, 5:20, 10:31] = True
    truth[5, 8:12, 12:16] = True
    box = simulator.box(truth)
    corners = np.array([box.corner_a, box.corner_b])
    assert box.slice_index == 4 and set(corners[:, 2]) == {4}
    assert sorted(corners[:, 0]) == [10, 30] and sorted(corners[:, 1]) == [5, 19]
    thin = np.zeros(volume.array.shape, bool)
    thin[2, 7, 3:9] = True  # one voxel thin: the box grows by a voxel each way so it is a box
    rows = sorted(np.array([simulator.box(thin).corner_a, simulator.box(thin).corner_b])[:, 1])
    assert rows == [6, 8]
