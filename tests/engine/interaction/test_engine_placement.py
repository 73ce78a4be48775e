"""Masks land where the user prompted, on every view and every volume geometry (ground-truth oracle)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from medsam3.interaction.engine import SegmentationEngine
from medsam3.geometry.model_frame import ModelFrame
from medsam3.interaction.prompts import BoxPrompt, PointPrompt, SlicePrompt

from cases import VARIANTS, load_case
from oracle import GroundTruthOracle, ground_truth_volume
from placement import click_in_object, dice, normal_ijk_axis, placement_dice

CASES = ["spleen", "liver", "brats_tumour"]


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("case_name", CASES)
@pytest.mark.parametrize("axis", ["axial", "coronal", "sagittal"])
def test_click_mask_lands_on_the_object(case_name, variant, axis):
    case = VARIANTS[variant](load_case(case_name))
    volume = ground_truth_volume(case.volume, case.mask)
    engine = SegmentationEngine(GroundTruthOracle())
    ijk, expected = click_in_object(case.mask, normal_ijk_axis(volume.ijk_to_ras, axis))

    result = engine.predict_slice(volume, SlicePrompt(axis, points=(PointPrompt(ijk),)))

    assert dice(result.mask, expected) >= placement_dice(case_name, axis)
    assert not (result.mask & ~result.visited_region()).any()


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("case_name", CASES)
def test_box_mask_lands_on_the_object(case_name, variant):
    case = VARIANTS[variant](load_case(case_name))
    volume = ground_truth_volume(case.volume, case.mask)
    engine = SegmentationEngine(GroundTruthOracle())
    ijk, expected = click_in_object(case.mask, normal_ijk_axis(volume.ijk_to_ras, "coronal"))
    corners = np.argwhere(expected)  # (k, j, i) rows
    low, high = corners.min(axis=0)[::-1], corners.max(axis=0)[::-1]
    in_box = np.zeros_like(expected)
    in_box[low[2]:high[2] + 1, low[1]:high[1] + 1, low[0]:high[0] + 1] = True

    result = engine.predict_slice(volume, SlicePrompt("coronal", box=BoxPrompt(tuple(low), tuple(high))))

    # a box takes every bright voxel inside it: the object's other pieces that poke into the box too
    assert dice(result.mask, case.mask & in_box) >= placement_dice(case_name, "coronal")


def test_propagation_from_one_click_reproduces_the_spleen():
    case = load_case("spleen")
    volume = ground_truth_volume(case.volume, case.mask)
    oracle = GroundTruthOracle()
    engine = SegmentationEngine(oracle)
    ijk, _ = click_in_object(case.mask, normal_ijk_axis(volume.ijk_to_ras, "axial"))

    result = engine.propagate(volume, [SlicePrompt("axial", points=(PointPrompt(ijk),))])

    assert dice(result.mask, case.mask) >= 0.999
    # every slice of the spleen is reached, the end slices too, and none beyond them
    np.testing.assert_array_equal(np.flatnonzero(result.mask.any(axis=(1, 2))),
                                  np.flatnonzero(case.mask.any(axis=(1, 2))))
    assert result.slice_scores[int(ijk[2])] == 1.0
    # each slice is encoded once although two directions pass the prompted slice
    assert oracle.encoded == len(result.slice_scores)


@pytest.mark.parametrize("mistake", ["transpose", "flip", "shift"])
def test_placement_check_catches_geometry_mistakes(monkeypatch, mistake):
    """Sanity of the test above: a wrong coordinate in the mask path makes the Dice fail."""
    original = ModelFrame.model_grid_to_slice

    def broken(self, grid):
        if mistake == "transpose":
            grid = grid.T
        elif mistake == "flip":
            grid = grid[::-1]
        else:
            grid = np.roll(grid, 12, axis=1)
        return original(self, grid)

    monkeypatch.setattr(ModelFrame, "model_grid_to_slice", broken)
    case = load_case("spleen")
    volume = ground_truth_volume(case.volume, case.mask)
    ijk, expected = click_in_object(case.mask, normal_ijk_axis(volume.ijk_to_ras, "axial"))
    result = SegmentationEngine(GroundTruthOracle()).predict_slice(volume, SlicePrompt("axial", points=(PointPrompt(ijk),)))
    assert dice(result.mask, expected) < 0.95


def test_existing_mask_on_a_slice_starts_the_object_in_place():
    case = load_case("liver")
    volume = ground_truth_volume(case.volume, case.mask)
    normal = normal_ijk_axis(volume.ijk_to_ras, "sagittal")
    ijk, expected = click_in_object(case.mask, normal)
    from medsam3.geometry.slicing import SliceGeometry

    geometry = SliceGeometry.for_volume(volume, "sagittal")
    index = int(ijk[normal])
    slice_seed = ndimage.binary_erosion(geometry.slice_image(expected, index), iterations=3)  # a rough start
    assert slice_seed.any()

    result = SegmentationEngine(GroundTruthOracle()).predict_slice(
        volume, SlicePrompt("sagittal", mask=slice_seed, slice_index=index))

    assert dice(result.mask, expected) >= 0.999
