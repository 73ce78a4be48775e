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


def test_a_label_mask_of_numbers_scores_as_the_same_mask_of_booleans():
    """Masks read from files are uint8 0 / 1, 0 / 255 or label values: Dice and NSD count voxels, not values."""
    truth, prediction = _hand_made_pairs()["inside"]
    as_bytes = dice(truth.astype(np.uint8) * 255, prediction.astype(np.uint8) * 255)
    assert as_bytes == dice(truth, prediction) == pytest.approx(_dice_by_counting(truth, prediction))
    assert dice(truth.astype(np.uint8) * 7, truth) == 1.0 and dice(truth, truth.astype(np.int16) * 3) == 1.0
    as_numbers = normalised_surface_distance(truth.astype(np.uint8) * 255, prediction.astype(np.int16) * 3,
                                             (2.0, 0.8, 0.8))
    assert as_numbers == normalised_surface_distance(truth, prediction, (2.0, 0.8, 0.8)) < 1.0


def test_clicks_to_reach_and_area_under_the_dice_curve():
    curve = [0.5, 0.8, 0.86, 0.91, 0.95]
    assert clicks_to_reach(curve, 0.85, 5) == 3 and clicks_to_reach(curve, 0.90, 5) == 4
    assert clicks_to_reach([0.5, 0.9, 0.95], 0.9, 5) == 2  # reaching the target exactly counts
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


# --- the text track's instance F1 against a brute-force matching --------------------------------------------------
def _pieces(mask: np.ndarray) -> list[set]:
    """6-connected pieces of a mask as sets of voxels, by flood fill (independent of scipy's labelling)."""
    left, pieces = _voxels(mask), []
    while left:
        piece, todo = set(), [left.pop()]
        while todo:
            voxel = todo.pop()
            piece.add(voxel)
            for axis in range(3):
                for step in (-1, 1):
                    near = tuple(v + step * (a == axis) for a, v in enumerate(voxel))
                    if near in left:
                        left.remove(near)
                        todo.append(near)
        pieces.append(piece)
    return pieces


def _instance_f1_by_brute_force(truth: np.ndarray, prediction: np.ndarray, threshold: float = 0.5) -> dict:
    """Every one-to-one matching tried: the most pairs at IoU >= threshold, then the highest total IoU."""
    from itertools import permutations

    truths, predictions = _pieces(truth), _pieces(prediction)
    best: tuple = (-1, -1.0, [])
    small, large = (truths, predictions) if len(truths) <= len(predictions) else (predictions, truths)
    for chosen in permutations(range(len(large)), len(small)):
        pairs = [(a, b) if small is truths else (b, a) for a, b in zip(small, (large[c] for c in chosen))]
        ious = [len(a & b) / len(a | b) for a, b in pairs]
        kept = [(p, v) for p, v in zip(pairs, ious) if v >= threshold]
        if (len(kept), sum(v for _, v in kept)) > best[:2]:
            best = (len(kept), sum(v for _, v in kept), [p for p, _ in kept])
    tp = max(best[0], 0)
    fp, fn = len(predictions) - tp, len(truths) - tp
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    dice_tp = float(np.mean([2 * len(a & b) / (len(a) + len(b)) for a, b in best[2]])) if best[2] else 0.0
    return {"f1": f1, "tp": tp, "fp": fp, "fn": fn, "dice_tp": dice_tp}


def _lesions(centres_and_sizes, shape=(8, 40, 40)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    for (k, j, i), (dk, dj, di) in centres_and_sizes:
        mask[k:k + dk, j:j + dj, i:i + di] = True
    return mask


INSTANCE_CASES = {
    # 3 lesions; predictions: one exact, one shifted (IoU 0.6), one a quarter (IoU 0.25), one where nothing is
    "mixed": (_lesions([((1, 2, 2), (3, 6, 6)), ((1, 12, 2), (3, 6, 6)), ((1, 2, 20), (3, 6, 8))]),
              _lesions([((1, 2, 2), (3, 6, 6)), ((1, 12, 3), (3, 6, 6)), ((1, 2, 20), (3, 3, 4)),
                        ((5, 30, 30), (2, 4, 4))])),
    # more predictions than lesions, and the reverse, each lesion matched by a slightly smaller piece
    "more predicted": (_lesions([((1, 2, 2), (4, 8, 8))]),
                       _lesions([((1, 2, 2), (4, 8, 7)), ((1, 20, 20), (2, 2, 2)), ((5, 30, 2), (1, 3, 3))])),
    "more lesions": (_lesions([((1, 2, 2), (4, 8, 8)), ((1, 20, 20), (3, 6, 6)), ((5, 30, 2), (2, 5, 5)),
                               ((0, 30, 30), (2, 2, 2))]),
                     _lesions([((1, 2, 3), (4, 8, 7)), ((2, 20, 20), (2, 6, 6))])),
    # IoU exactly 0.5 counts as a match; just below does not
    "at the threshold": (_lesions([((1, 2, 2), (2, 4, 4)), ((1, 20, 2), (2, 4, 4))]),
                         _lesions([((1, 2, 2), (1, 4, 4)), ((1, 20, 2), (2, 4, 3)), ((1, 22, 30), (1, 1, 1))])),
    # one prediction over two lesions: the one-to-one rule gives it to the one with the larger IoU
    "one over two": (_lesions([((1, 2, 2), (3, 6, 6)), ((1, 9, 2), (3, 2, 6))]),
                     _lesions([((1, 2, 2), (3, 9, 6))])),
    "no lesion": (np.zeros((8, 40, 40), bool), _lesions([((1, 2, 2), (3, 6, 6)), ((1, 20, 20), (1, 1, 1))])),
}


@pytest.mark.parametrize("name", list(INSTANCE_CASES))
def test_instance_f1_equals_a_brute_force_one_to_one_matching(name):
    from medsam3.apps.evaluation.metrics import instance_f1

    truth, prediction = INSTANCE_CASES[name]
    expected = _instance_f1_by_brute_force(truth, prediction)
    measured = instance_f1(truth, prediction)
    assert set(measured) == set(expected)
    assert (measured["tp"], measured["fp"], measured["fn"]) == (expected["tp"], expected["fp"], expected["fn"])
    assert measured["f1"] == pytest.approx(expected["f1"], abs=1e-12)
    assert measured["dice_tp"] == pytest.approx(expected["dice_tp"], abs=1e-12)


def test_instance_f1_of_nothing_predicted_counts_every_lesion_missed():
    from medsam3.apps.evaluation.metrics import instance_f1

    truth = INSTANCE_CASES["more lesions"][0]
    assert instance_f1(truth, np.zeros_like(truth)) == {"f1": 0.0, "tp": 0, "fp": 0, "fn": 4, "dice_tp": 0.0}
    assert instance_f1(truth, truth, threshold=1.0)["tp"] == 4  # a perfect prediction matches at IoU 1
    assert instance_f1(truth, truth)["f1"] == 1.0  # precision equal to recall
    one, over_two = INSTANCE_CASES["one over two"]  # at IoU 0.2 both lesions qualify: the better match is kept
    assert instance_f1(one, over_two, threshold=0.2) == pytest.approx(_instance_f1_by_brute_force(one, over_two, 0.2))
    half = INSTANCE_CASES["at the threshold"]
    assert instance_f1(*half, threshold=0.75)["tp"] == 1  # only the IoU-0.75 pair is left


def _two_predictions_competing_for_two_lesions(found_exactly: int) -> tuple[np.ndarray, np.ndarray]:
    """Lesion A and prediction 1 share a 4 x 4 block; each has a 2-voxel stalk to a 2 x 5 arm of its own, and the
    other arm is prediction 2 (inside A) and lesion B (inside prediction 1). IoU(A, 1) = 16 / 40 = 0.4, while
    IoU(A, 2) = IoU(B, 1) = 10 / 28 = 0.357: pairing A-2 and B-1 has the larger total IoU (0.714 against 0.4) but
    no match at a threshold of 0.4. Beside them, ``found_exactly`` small lesions, each predicted exactly."""
    truth = np.zeros((2, 16, 8 + 3 * found_exactly), bool)
    prediction = np.zeros_like(truth)
    for mask, stalk in ((truth, slice(4, 6)), (prediction, slice(10, 12))):
        mask[0, 6:10, 1:5] = True  # the shared block
        mask[0, stalk, 1] = True
    truth[0, 2:4, 1:6] = prediction[0, 2:4, 1:6] = True  # A's arm is prediction 2
    truth[0, 12:14, 1:6] = prediction[0, 12:14, 1:6] = True  # prediction 1's arm is lesion B
    for n in range(found_exactly):
        truth[1, 1:3, 8 + 3 * n:10 + 3 * n] = prediction[1, 1:3, 8 + 3 * n:10 + 3 * n] = True
    return truth, prediction


@pytest.mark.parametrize("found_exactly", [0, 2, 5])
def test_instance_f1_takes_one_more_match_over_a_larger_total_iou(found_exactly):
    """The matching maximises the number of pairs at IoU >= threshold first; the IoU only breaks ties. With more
    lesions in the picture the IoU of the competing pair must still not outweigh one match (issue 23: the
    tie-break's weight), and a pair exactly at the threshold is a match in the matching too, not only in the count."""
    from medsam3.apps.evaluation.metrics import instance_f1

    truth, prediction = _two_predictions_competing_for_two_lesions(found_exactly)
    expected = _instance_f1_by_brute_force(truth, prediction, threshold=0.4)
    assert (expected["tp"], expected["fp"], expected["fn"]) == (found_exactly + 1, 1, 1)  # the case is as meant
    assert instance_f1(truth, prediction, threshold=0.4) == pytest.approx(expected, abs=1e-12)
    above = instance_f1(truth, prediction, threshold=0.41)  # A-1 no longer matches: the larger IoU total is free
    assert above == pytest.approx(_instance_f1_by_brute_force(truth, prediction, threshold=0.41), abs=1e-12)


def test_nsd_hides_only_monais_deprecation_notice(monkeypatch):
    """MONAI 1.6 warns (FutureWarning) about an argument it passes to itself, which says nothing about the masks:
    hidden. Any other warning MONAI gives still reaches the user."""
    import warnings

    import monai.metrics

    real = monai.metrics.compute_surface_dice

    def also_warning(*args, **kwargs):
        warnings.warn("a warning about the masks", UserWarning)
        return real(*args, **kwargs)

    truth, prediction = _hand_made_pairs()["inside"]
    expected = _nsd_by_monai(truth, prediction, (1.0, 1.0, 1.0), 2.0)
    monkeypatch.setattr(monai.metrics, "compute_surface_dice", also_warning)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = normalised_surface_distance(truth, prediction, (1.0, 1.0, 1.0))
    assert [str(w.message) for w in caught] == ["a warning about the masks"]
    assert value == pytest.approx(expected, abs=1e-6)


def test_nsd_without_monai_says_what_to_install(monkeypatch):
    import sys

    from medsam3.errors import MedSam3Error

    truth, prediction = _hand_made_pairs()["inside"]
    monkeypatch.setitem(sys.modules, "monai.metrics", None)  # an import of it now fails
    with pytest.raises(MedSam3Error, match=r'^The NSD needs monai, which is not installed: pip install "medsam3\[evaluation\]" '
                                           r"\(in a checkout: pip install -r requirements/evaluation\.txt\)$"):
        normalised_surface_distance(truth, prediction, (1.0, 1.0, 1.0))
    assert normalised_surface_distance(truth, np.zeros_like(truth), (1.0, 1.0, 1.0)) == 0.0  # no MONAI needed
