"""Slices are oriented by the patient's anatomy (RAS), not by the order of the array's axes."""

import numpy as np
import pytest

from medsam3.interaction.engine import SegmentationEngine
from medsam3.geometry.model_frame import ModelFrame
from medsam3.interaction.prompts import PointPrompt, SlicePrompt
from medsam3.geometry.slicing import SliceGeometry
from medsam3.geometry.volume import Volume

from cases import VARIANTS, load_case
from oracle import GroundTruthOracle, ground_truth_volume


@pytest.mark.parametrize("variant", ["flipped", "oblique"])
@pytest.mark.parametrize("axis", ["axial", "coronal", "sagittal"])
def test_a_view_shows_the_same_picture_however_the_volume_is_stored(variant, axis):
    original = load_case("spleen")
    stored_otherwise = VARIANTS[variant](original)
    expected = SliceGeometry.for_volume(original.volume, axis).as_slice_stack(original.volume.array)
    seen = SliceGeometry.for_volume(stored_otherwise.volume, axis).as_slice_stack(stored_otherwise.volume.array)
    # Slice numbers are voxel indices, so a reversed normal axis reverses their order; each picture is the same.
    assert seen.shape == expected.shape
    assert np.array_equal(seen, expected) or np.array_equal(seen, expected[::-1])


def test_axial_picture_has_patient_left_on_the_right_and_anterior_at_the_top():
    # an LPS-stored volume (i runs to patient left, j to posterior), like most DICOM CT
    matrix = np.diag([-1.0, -1.0, 2.0, 1.0])
    array = np.zeros((3, 4, 5), dtype=np.int16)
    array[1, 0, 4] = 7  # i = 4: furthest left; j = 0: most anterior
    geometry = SliceGeometry.for_volume(Volume(array, matrix), "axial")
    image = geometry.slice_image(array, 1)
    assert image.shape == (4, 5)
    assert image[0, 4] == 7  # top right of the picture
    # and an RAS-stored one shows the same anatomy at the same place of the picture
    ras_matrix = np.diag([1.0, 1.0, 2.0, 1.0])
    ras_array = array[:, ::-1, ::-1]
    ras_geometry = SliceGeometry.for_volume(Volume(ras_array, ras_matrix), "axial")
    np.testing.assert_array_equal(ras_geometry.slice_image(ras_array, 1), image)


def test_sagittal_picture_has_superior_at_the_top_and_anterior_on_the_left():
    matrix = np.diag([1.0, 1.0, 1.0, 1.0])  # RAS
    array = np.zeros((6, 5, 4), dtype=np.int16)
    array[5, 4, 2] = 3  # k = 5 most superior, j = 4 most anterior
    geometry = SliceGeometry.for_volume(Volume(array, matrix), "sagittal")
    image = geometry.slice_image(array, 2)
    assert image.shape == (6, 5)
    assert image[0, 0] == 3


@pytest.mark.parametrize("spacing", [(0.8, 0.8, 5.0), (1.0, 1.0, 1.0), (0.5, 2.0, 1.0)])
def test_small_off_centre_object_is_recovered_voxel_exactly(spacing):
    """A one-voxel shift anywhere between the volume and the model would break this."""
    array = np.zeros((20, 40, 30), dtype=bool)
    array[10, 25:29, 5:9] = True  # 4 x 4 voxels, far from the centre
    array[10, 8:11, 20:24] = True  # a second object that must not be picked
    matrix = np.diag([*spacing, 1.0])
    volume = ground_truth_volume(Volume(array.astype(np.int16), matrix), array)
    result = SegmentationEngine(GroundTruthOracle()).predict_slice(
        volume, SlicePrompt("axial", points=(PointPrompt((6.0, 26.0, 10.0)),)))
    expected = np.zeros_like(array)
    expected[10, 25:29, 5:9] = True
    np.testing.assert_array_equal(result.mask, expected)


def test_anisotropic_slice_keeps_its_true_aspect_in_the_model_image():
    frame = ModelFrame.fit((26, 164), (5.0, 0.795), 1008)
    # 26 rows of 5 mm = 130 mm; 164 columns of 0.795 mm = 130.4 mm: nearly square in the model image
    assert abs(frame.content_shape[0] - frame.content_shape[1]) <= 5
    corners = frame.slice_to_model_xy([[0, 0], [25, 163]])
    back = frame.model_xy_to_slice(corners)
    np.testing.assert_allclose(back, [[0, 0], [25, 163]], atol=1e-9)


@pytest.mark.parametrize("variant", ["original", "flipped", "oblique"])
@pytest.mark.parametrize("axis", ["axial", "coronal", "sagittal"])
def test_slice_pixels_and_voxels_map_back_and_forth_exactly(variant, axis):
    """Each picture pixel is the voxel ijk_to_slice says it is, slice_to_ijk takes it back there, and a slice stack
    written back (a mask drawn on the pictures) lands on the voxels it was read from."""
    case = VARIANTS[variant](load_case("brats_tumour"))
    array = case.volume.array
    geometry = SliceGeometry.for_volume(case.volume, axis)
    stack = geometry.as_slice_stack(array)
    rng = np.random.default_rng(5)
    k, j, i = (rng.integers(0, n, 50) for n in array.shape)
    ijk = np.stack([i, j, k], axis=1).astype(float)

    slice_row_column = geometry.ijk_to_slice(ijk)
    s, r, c = slice_row_column.round().astype(int).T
    np.testing.assert_array_equal(stack[s, r, c], array[k, j, i])
    np.testing.assert_array_equal(geometry.slice_to_ijk(slice_row_column), ijk)
    np.testing.assert_array_equal(geometry.slice_image(array, int(s[0]))[r[0], c[0]], array[k[0], j[0], i[0]])
    np.testing.assert_array_equal(geometry.from_slice_stack(np.ascontiguousarray(stack)), array)
    assert geometry.image_shape == stack.shape[1:] and geometry.slice_count == stack.shape[0]


@pytest.mark.parametrize("typed, axis", [
    ("axial", "axial"), ("ax", "axial"), ("Red", "axial"), (" transverse ", "axial"),
    ("coronal", "coronal"), ("cor", "coronal"), ("GREEN", "coronal"),
    ("sagittal", "sagittal"), ("sag", "sagittal"), ("yellow", "sagittal")])
def test_every_name_of_a_view_that_slicer_or_a_radiologist_uses_is_understood(typed, axis):
    from medsam3.geometry.slicing import SliceAxis

    assert SliceAxis.parse(typed) is SliceAxis(axis)


def test_an_unknown_view_name_and_a_slice_off_the_volume_are_refused_in_one_line():
    from medsam3.errors import PromptError
    from medsam3.geometry.slicing import SliceAxis

    with pytest.raises(PromptError, match=r"^Unknown slice axis 'oblique'; use axial, coronal or sagittal\.$"):
        SliceAxis.parse("oblique")
    volume = Volume(np.zeros((5, 4, 3), dtype=np.int16), np.eye(4))
    geometry = SliceGeometry.for_volume(volume, "axial")
    assert [geometry.check_slice_index(i) for i in (0, 4)] == [0, 4]  # the first and the last slice
    for outside in (-1, 5):
        with pytest.raises(PromptError, match=rf"^Slice {outside} is outside the volume: the axial view has slices "
                                              r"0 to 4\.$"):
            geometry.check_slice_index(outside)


@pytest.mark.parametrize("degrees", [20.0, 40.0])
@pytest.mark.parametrize("axis", ["axial", "coronal", "sagittal"])
def test_a_strongly_oblique_volume_is_sliced_along_the_voxel_axes_closest_to_the_view(axis, degrees):
    """Each view's normal, rows and columns are the voxel axes closest to Slicer's normal, down and right, worked
    out independently (tests/support/sided.py), also when a wrong assignment of axes scores close to the right one
    (40 degrees, stored with permuted axes)."""
    from cases import _rotation
    from sided import screen_axes
    from placement import normal_ijk_axis

    matrix = np.eye(4)
    matrix[:3, :3] = _rotation(np.array([1.0, 0.5, 0.2]), degrees) @ np.diag([0.8, 0.9, 3.0])[:, [2, 0, 1]]
    volume = Volume(np.zeros((6, 7, 8), dtype=np.int16), matrix)
    geometry = SliceGeometry.for_volume(volume, axis)
    (down_axis, down_sign), (right_axis, right_sign) = screen_axes(matrix, axis)
    assert geometry.normal_axis == normal_ijk_axis(matrix, axis)
    assert (geometry.row_axis, geometry.row_flipped) == (down_axis, down_sign < 0)
    assert (geometry.column_axis, geometry.column_flipped) == (right_axis, right_sign < 0)
