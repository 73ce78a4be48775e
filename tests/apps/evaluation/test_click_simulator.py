"""The simulated user of ``medsam3 evaluate``: its clicks against a brute-force "deepest point" in millimetres (the
image edge counting as boundary), ties and 26-connected error regions, boxes at the image edge, other views, and
the prompts and descriptions it hands on."""

from __future__ import annotations

import numpy as np
import pytest

from medsam3.apps.evaluation.click_simulator import Box, Click, ClickSimulator
from medsam3.geometry.slicing import SliceAxis
from medsam3.geometry.volume import Volume


def _deepest_by_brute_force(region: np.ndarray, spacing: tuple[float, float]) -> tuple[int, int]:
    """The region pixel farthest (mm) from every pixel outside it, the image's surroundings included; the first
    in row-major order on a tie."""
    rows, columns = region.shape
    padded = np.pad(region, 1)
    outside = np.argwhere(~padded) - 1
    best, where = -1.0, None
    for r, c in np.argwhere(region):
        depth = np.sqrt((((outside - (r, c)) * spacing) ** 2).sum(axis=1)).min()
        if depth > best + 1e-9:
            best, where = depth, (int(r), int(c))
    return where


def _simulator(shape=(6, 20, 40), spacing=(0.5, 3.0, 2.0), axis="axial") -> tuple[ClickSimulator, Volume]:
    volume = Volume(np.zeros(shape, np.int16), np.diag([*spacing, 1.0]))
    return ClickSimulator(volume, axis), volume


def test_the_first_click_is_the_deepest_point_in_millimetres_not_in_pixels():
    simulator, volume = _simulator()  # rows 3 mm, columns 0.5 mm
    assert simulator.geometry.pixel_spacing == (3.0, 0.5)
    truth = np.zeros(volume.array.shape, bool)
    stack = simulator.geometry.as_slice_stack(truth)
    stack[2, 2:9, 2:9] = True  # 7 x 7 pixels = 21 x 3.5 mm: deepest 2 mm in pixels' terms, shallow in mm
    stack[2, 12:17, 5:36] = True  # 5 x 31 pixels = 15 x 15.5 mm: the deepest in mm
    click = simulator.first_click(truth)
    row, column = _deepest_by_brute_force(stack[2], simulator.geometry.pixel_spacing)
    assert 12 <= row < 17  # in the wide block
    assert (click.slice_index, tuple(simulator.geometry.ijk_to_slice([click.ijk])[0].round().astype(int))) == (
        2, (2, row, column))
    assert click.positive and click.region_voxels == 49 + 155 and truth[click.ijk[::-1]]


def test_the_edge_of_the_image_counts_as_boundary():
    simulator, volume = _simulator(spacing=(1.0, 1.0, 1.0))
    truth = np.zeros(volume.array.shape, bool)
    truth[3, 0:9, 0:40] = True  # a band along the image's top edge, 9 rows deep
    click = simulator.first_click(truth)
    assert click.ijk[1] == 4 == _deepest_by_brute_force(truth[3], (1.0, 1.0))[0]  # the middle row, not the edge


def test_an_empty_structure_is_refused_with_a_clear_message():
    simulator, volume = _simulator()
    empty = np.zeros(volume.array.shape, bool)
    with pytest.raises(ValueError, match=r"^The structure is empty: there is nothing to click on\.$"):
        simulator.first_click(empty)
    with pytest.raises(ValueError, match=r"^The structure is empty: there is nothing to draw a box around\.$"):
        simulator.box(empty)


def test_regions_touching_at_a_corner_are_one_error_and_a_tie_goes_to_the_missed_region():
    simulator, volume = _simulator(spacing=(1.0, 1.0, 1.0))
    truth = np.zeros(volume.array.shape, bool)
    truth[0:2, 0:2, 0:2] = truth[2:4, 2:4, 2:4] = True  # two 8-voxel cubes meeting at one corner: 16 voxels
    extra = np.zeros_like(truth)
    extra[0:2, 10:13, 20:22] = True  # 12 voxels: smaller than the two cubes together, larger than either
    click = simulator.next_click(truth, extra)
    i, j, k = click.ijk
    assert click.positive and truth[k, j, i] and click.region_voxels == 16
    same_size = np.zeros_like(truth)
    same_size[0:2, 10:14, 20:22] = True  # 16 voxels too: the missed region wins the tie
    click = simulator.next_click(truth, same_size)
    assert click.positive and click.region_voxels == 16
    bigger = np.zeros_like(truth)
    bigger[0:2, 10:15, 20:22] = True  # 20 voxels: a negative click in it, on its largest slice
    click = simulator.next_click(truth, bigger)
    i, j, k = click.ijk
    assert not click.positive and bigger[k, j, i] and click.region_voxels == 20 and click.slice_index == 0


def test_the_correction_goes_to_the_deepest_point_of_the_largest_slice_of_the_largest_error():
    simulator, volume = _simulator()
    truth = np.zeros(volume.array.shape, bool)
    stack = simulator.geometry.as_slice_stack(truth)
    stack[1, 2:9, 2:9] = True
    stack[3, 12:17, 5:36] = True
    stack[4, 12:14, 5:10] = True
    prediction = np.zeros_like(truth)
    simulator.geometry.as_slice_stack(prediction)[1, 2:9, 2:9] = True  # the first block found: the rest missed
    click = simulator.next_click(truth, prediction)
    row, column = _deepest_by_brute_force(stack[3], simulator.geometry.pixel_spacing)
    assert click.slice_index == 3 and click.region_voxels == 155 + 10
    assert tuple(simulator.geometry.ijk_to_slice([click.ijk])[0].round().astype(int)) == (3, row, column)


def test_a_box_of_a_thin_structure_grows_inside_the_image_only():
    simulator, volume = _simulator(spacing=(1.0, 1.0, 1.0))  # 20 rows, 40 columns
    for row, column, rows, columns in [(0, 0, [0, 1], [0, 1]), (19, 39, [18, 19], [38, 39]),
                                       (7, 12, [6, 8], [11, 13])]:
        dot = np.zeros(volume.array.shape, bool)
        dot[2, row, column] = True
        box = simulator.box(dot)
        corners = np.array([box.corner_a, box.corner_b])
        assert sorted(corners[:, 1]) == rows and sorted(corners[:, 0]) == columns and box.slice_index == 2
    line = np.zeros(volume.array.shape, bool)
    line[2, 3:11, 5] = True  # 8 rows, one column: only the columns grow
    corners = np.array([simulator.box(line).corner_a, simulator.box(line).corner_b])
    assert sorted(corners[:, 1]) == [3, 10] and sorted(corners[:, 0]) == [4, 6]
    two_wide = line.copy()
    two_wide[2, 3:11, 6] = True  # two columns already span two voxels: the box is the structure's own
    corners = np.array([simulator.box(two_wide).corner_a, simulator.box(two_wide).corner_b])
    assert sorted(corners[:, 1]) == [3, 10] and sorted(corners[:, 0]) == [5, 6]


def test_in_the_coronal_view_the_click_and_box_are_on_coronal_slices():
    simulator, volume = _simulator(shape=(12, 10, 16), spacing=(1.0, 1.0, 1.0), axis="coronal")
    assert simulator.axis is SliceAxis.CORONAL
    truth = np.zeros(volume.array.shape, bool)
    truth[2:9, 6, 3:12] = True  # the largest coronal cross-section: j = 6
    truth[4:6, 5, 6:8] = True
    click, box = simulator.first_click(truth), simulator.box(truth)
    assert click.ijk[1] == 6 and box.corner_a[1] == box.corner_b[1] == 6
    row, column = _deepest_by_brute_force(simulator.geometry.as_slice_stack(truth)[6], (1.0, 1.0))
    assert tuple(simulator.geometry.ijk_to_slice([click.ijk])[0].round().astype(int)) == (6, row, column)
    assert truth[click.ijk[::-1]] and click.ijk[2] == 5
    assert sorted([box.corner_a[0], box.corner_b[0]]) == [3, 11]
    assert sorted([box.corner_a[2], box.corner_b[2]]) == [2, 8]


def test_clicks_and_boxes_become_the_prompts_and_the_words_of_the_log():
    click = Click((4, 5, 6), False, 6, 30)
    prompt = click.prompt(SliceAxis.AXIAL)
    assert prompt.axis == SliceAxis.AXIAL and prompt.slice_index == 6 and prompt.box is None
    assert [(p.ijk, p.positive) for p in prompt.points] == [((4.0, 5.0, 6.0), False)]
    assert all(isinstance(v, float) for v in prompt.points[0].ijk)
    assert click.describe() == "negative click ijk=(4,5,6)"
    assert Click((1, 2, 3), True, 3, 1).describe() == "positive click ijk=(1,2,3)"
    assert Click((1, 2, 3), True, 3, 1).prompt("axial").points[0].positive
    box = Box((1, 2, 6), (9, 8, 6), 6)
    prompt = box.prompt(SliceAxis.SAGITTAL)
    assert prompt.axis == SliceAxis.SAGITTAL and prompt.slice_index == 6 and prompt.points == ()
    assert (prompt.box.corner_a, prompt.box.corner_b) == ((1.0, 2.0, 6.0), (9.0, 8.0, 6.0))
    assert all(isinstance(v, float) for v in prompt.box.corner_a + prompt.box.corner_b)
    assert box.describe() == "box ijk=(1,2,6)-(9,8,6)"


def test_a_structure_one_pixel_thin_along_the_far_edge_gets_its_click_on_it():
    simulator, volume = _simulator(spacing=(1.0, 1.0, 1.0))  # 20 rows, 40 columns
    for edge in ((slice(None), -1), (-1, slice(None))):  # the last column, the last row
        truth = np.zeros(volume.array.shape, bool)
        stack = simulator.geometry.as_slice_stack(truth)
        stack[(3, *edge)] = True
        click = simulator.first_click(truth)
        assert truth[click.ijk[::-1]] and click.slice_index == 3


def test_masks_stored_as_numbers_give_the_clicks_of_the_same_masks_as_booleans():
    """Ground truth and predictions read from files are label values (0 / 255, 0 / 2), not booleans."""
    simulator, volume = _simulator(spacing=(1.0, 1.0, 1.0))
    truth = np.zeros(volume.array.shape, bool)
    truth[2:5, 3:12, 5:20] = True
    prediction = np.zeros_like(truth)
    prediction[2:5, 3:12, 5:11] = True  # the rest missed
    prediction[1, 14:18, 25:35] = True  # and something extra
    first = simulator.first_click(truth)
    assert simulator.first_click(truth.astype(np.uint8) * 255) == first and first.region_voxels == truth.sum()
    correction = simulator.next_click(truth, prediction)
    assert simulator.next_click(truth.astype(np.uint8) * 2, prediction.astype(np.uint8) * 255) == correction
    # a label value whose bits do not all flip to 0 under ~ (2 -> 253): read as a number, the missed part would
    # take in the whole structure
    assert simulator.next_click(truth.astype(np.uint8) * 255, prediction.astype(np.uint8) * 2) == correction
    assert simulator.box(truth.astype(np.int16) * 3) == simulator.box(truth)


def test_a_single_missed_voxel_gets_the_click():
    simulator, volume = _simulator(spacing=(1.0, 1.0, 1.0))
    truth = np.zeros(volume.array.shape, bool)
    truth[2, 5:9, 5:9] = True
    prediction = truth.copy()
    prediction[2, 6, 6] = False  # one voxel missed: the only error
    click = simulator.next_click(truth, prediction)
    assert click.positive and click.region_voxels == 1 and not prediction[click.ijk[::-1]] and truth[click.ijk[::-1]]
