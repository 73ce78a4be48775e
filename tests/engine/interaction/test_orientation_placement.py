"""The picture the model sees is the right way up and the right way round, on every view and stored geometry.

The sided stand-in (:mod:`medsam3.model.sided_region_model`) keeps only the part of the clicked object up and to
the left of a slanted line through the click, so a flip, mirror or transpose of the picture fed to the model --
even one undone on the way back -- puts the mask on another part of the object. The expected part is worked out
in millimetres from the voxel grid and Slicer's view directions (tests/support/sided.py), not by the engine.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from medsam3.geometry.slicing import SliceGeometry
from medsam3.interaction.engine import SegmentationEngine
from medsam3.interaction.prompts import BoxPrompt, PointPrompt, SlicePrompt
from medsam3.model.sided_region_model import SidedRegionModel

from cases import VARIANTS, load_case
from oracle import ground_truth_volume
from placement import click_in_object, dice, normal_ijk_axis
from sided import SIDED_DICE, WRONG_PICTURE_DICE, WRONG_PICTURES, side_of_click, sided_expectation

CASES = ["spleen", "liver", "brats_tumour"]  # brats is stored with negative i and j direction cosines
AXES = ["axial", "coronal", "sagittal"]


def sided_click(case, axis):
    volume = ground_truth_volume(case.volume, case.mask)
    ijk, region = click_in_object(case.mask, normal_ijk_axis(volume.ijk_to_ras, axis))
    return volume, ijk, region, sided_expectation(region, volume.ijk_to_ras, axis, ijk)


def assert_discriminates(volume, axis, ijk, region, expected):
    """The check can fail: the part a wrong picture would keep differs from the right part on this object."""
    for name, weights in WRONG_PICTURES.items():
        wrong = region & side_of_click(volume.ijk_to_ras, axis, ijk, region.shape, weights)
        assert dice(wrong, expected) < WRONG_PICTURE_DICE, name


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("case_name", CASES)
@pytest.mark.parametrize("axis", AXES)
def test_click_keeps_the_side_of_the_object_the_picture_shows(case_name, variant, axis):
    case = VARIANTS[variant](load_case(case_name))
    volume, ijk, region, expected = sided_click(case, axis)
    assert_discriminates(volume, axis, ijk, region, expected)

    result = SegmentationEngine(SidedRegionModel()).predict_slice(volume, SlicePrompt(axis, points=(PointPrompt(ijk),)))

    assert dice(result.mask, expected) >= SIDED_DICE


@pytest.mark.parametrize("case_name", ["spleen", "brats_tumour"])
@pytest.mark.parametrize("axis", AXES)
def test_box_keeps_the_side_of_its_centre(case_name, axis):
    case = VARIANTS["flipped"](load_case(case_name))
    volume, ijk, region, _ = sided_click(case, axis)
    corners = np.argwhere(region)  # (k, j, i) rows
    low, high = corners.min(axis=0)[::-1], corners.max(axis=0)[::-1]
    in_box = np.zeros_like(region)
    in_box[low[2]:high[2] + 1, low[1]:high[1] + 1, low[0]:high[0] + 1] = True
    expected = sided_expectation(case.mask & in_box, volume.ijk_to_ras, axis, (low + high) / 2.0)

    result = SegmentationEngine(SidedRegionModel()).predict_slice(volume, SlicePrompt(axis, box=BoxPrompt(tuple(low), tuple(high))))

    assert dice(result.mask, expected) >= SIDED_DICE


def broken_geometry(mistake: str):
    """SliceGeometry.for_volume with the picture turned the wrong way -- consistently, both ways, so the
    bright-region model would not notice."""
    original = SliceGeometry.for_volume.__func__

    def for_volume(cls, volume, axis):
        geometry = original(cls, volume, axis)
        if mistake == "upside-down":
            return dataclasses.replace(geometry, row_flipped=not geometry.row_flipped)
        if mistake == "mirrored":
            return dataclasses.replace(geometry, column_flipped=not geometry.column_flipped)
        return dataclasses.replace(geometry, row_axis=geometry.column_axis, column_axis=geometry.row_axis,
                                   row_flipped=geometry.column_flipped, column_flipped=geometry.row_flipped)

    return classmethod(for_volume)


@pytest.mark.parametrize("mistake", ["upside-down", "mirrored", "transposed"])
@pytest.mark.parametrize("axis", AXES)
def test_a_picture_turned_the_wrong_way_fails_the_check(monkeypatch, mistake, axis):
    """Sanity of the tests above: each consistent mistake, undone on the way back, is caught on every view."""
    case = load_case("brats_tumour")
    volume, ijk, _, expected = sided_click(case, axis)
    monkeypatch.setattr(SliceGeometry, "for_volume", broken_geometry(mistake))

    result = SegmentationEngine(SidedRegionModel()).predict_slice(volume, SlicePrompt(axis, points=(PointPrompt(ijk),)))

    assert dice(result.mask, expected) < SIDED_DICE
