"""Oblique volumes with DICOM-like direction cosines (8 decimals): a second prompt into the same segment works.

Slicer serialises the volume's IJK-to-RAS matrix as it is (vtkMRMLSegmentationNode::
SetReferenceImageGeometryParameterFromVolumeNode); a geometry rebuilt through vtkOrientedImageData renormalises
the directions, so the last digits differ for many oblique volumes. The grids are the same: the module must say so.
"""

from __future__ import annotations

import numpy as np
import vtk

from slicer_scene import add_points, new_scene

from medsam3.transports.backend import BackendInfo, LocalBackend
from medsam3.interaction.engine import SegmentationEngine

from MedicalSAM3SlicerLib import MedicalSAM3SlicerLogic
from MedicalSAM3SlicerLib.segment_io import same_geometry, segment_mask
from MedicalSAM3SlicerLib.self_test_model import self_test_model
from MedicalSAM3SlicerLib.volume_nodes import array_to_matrix

SHAPE = (20, 40, 36)  # K, J, I
BLOCK = (slice(6, 14), slice(12, 28), slice(10, 26))
SPACING = np.array([0.7, 0.7, 2.5])


def random_dicom_directions(rng: np.random.Generator) -> np.ndarray:
    """A random rotation whose columns are rounded to 8 decimals, as DICOM ImageOrientationPatient stores them."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 2] *= -1
    return np.round(q, 8)


def oblique_volume_node(scene, directions: np.ndarray):
    from vtk.util import numpy_support

    voxels = np.full(SHAPE, -1000, dtype=np.int16)
    voxels[BLOCK] = 1000
    image = vtk.vtkImageData()
    image.SetDimensions(SHAPE[::-1])
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(voxels.reshape(-1), deep=True))
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "oblique")
    node.SetAndObserveImageData(image)
    ijk_to_ras = np.eye(4)
    ijk_to_ras[:3, :3] = directions * SPACING
    ijk_to_ras[:3, 3] = [-12.345678, 23.456789, -34.567891]
    node.SetIJKToRASMatrix(array_to_matrix(ijk_to_ras))
    return node, ijk_to_ras, voxels > 0


def test_two_prompts_into_one_segment_on_random_oblique_volumes():
    rng = np.random.default_rng(8)
    model = self_test_model()
    logic = MedicalSAM3SlicerLogic(LocalBackend(SegmentationEngine(model), BackendInfo(
        model=model.name, device="cpu", image_size=model.image_size)))
    for trial in range(12):
        scene = new_scene()
        node, ijk_to_ras, expected = oblique_volume_node(scene, random_dicom_directions(rng))
        segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
        centre = ijk_to_ras @ [18.0, 20.0, 10.0, 1.0]  # (i, j, k) inside the block
        first = logic.segment(node, segmentation, positive_points=add_points(scene, centre[:3]), view="axial",
                              whole_volume=False).segment_ids[0]
        other_slice = ijk_to_ras @ [17.0, 19.0, 12.0, 1.0]
        second = logic.segment(node, segmentation, positive_points=add_points(scene, other_slice[:3], "more"),
                               view="axial", whole_volume=False, segment_id=first).segment_ids[0]
        assert second == first, trial
        mask = segment_mask(segmentation, first, node)
        assert mask[10].any() and mask[12].any(), trial  # both slices are in the one segment
        assert not (mask & ~expected).any(), trial
        logic.close()


def test_geometries_compare_numerically():
    assert same_geometry("1;0;0;0;0;1;0;0;0;0;1;0;0;0;0;1;0;9;0;9;0;9;",
                         "1.0000000000000002;0;0;0;0;1;0;0;0;0;1;0;0;0;0;1;0;9;0;9;0;9;")
    assert not same_geometry("1;0;0;0;0;1;0;0;0;0;1;0;0;0;0;1;0;9;0;9;0;9;",
                             "1;0;0;0;0;1;0;0;0;0;1;0;0;0;0;1;0;9;0;9;0;8;")  # another extent
    assert not same_geometry("1;0;0;0;0;1;0;0;0;0;1;0;0;0;0;1;0;9;0;9;0;9;",
                             "1;0;0;0.5;0;1;0;0;0;0;1;0;0;0;0;1;0;9;0;9;0;9;")  # half a voxel shifted


def _serialized(matrix, extent=(0, 99, 0, 49, 0, 9)) -> str:
    return "".join(f"{float(value)!r};" for value in [*np.asarray(matrix, float).ravel(), *extent])


def test_two_grids_are_the_same_only_when_every_corner_voxel_is_within_a_thousandth_of_a_voxel():
    grid = np.diag([0.5, 1.0, 2.0, 1.0])  # anisotropic: the tolerance is a thousandth of the smallest spacing
    for shift, same in ((0.0004, True), (0.0006, False)):
        moved = grid.copy()
        moved[:3, 3] += [0, 0, shift]
        assert same_geometry(_serialized(grid), _serialized(moved)) is same, shift
    tilted = grid.copy()
    tilted[1, 0] = 1e-5  # the same first voxel; 99 voxels along i, 0.001 mm off
    assert same_geometry(_serialized(grid), _serialized(tilted), tolerance_voxels=0.003)
    assert not same_geometry(_serialized(grid), _serialized(tilted))  # over half a thousandth of 0.5 mm at i = 99
    far = grid.copy()
    far[2, 2] = 2.0001  # 0.0009 mm off at k = 9 only
    assert not same_geometry(_serialized(grid), _serialized(far))
    assert same_geometry(_serialized(grid), _serialized(grid, (0.0, 99.0, 0, 49, 0, 9)))  # extents as Slicer writes
    assert not same_geometry(_serialized(grid), _serialized(grid, (1, 99, 0, 49, 0, 9)))
    assert not same_geometry(_serialized(grid), _serialized(grid, (0, 99, 0, 49, 0, 10)))


def test_a_geometry_that_cannot_be_read_is_the_same_only_as_the_identical_text():
    good = _serialized(np.eye(4))
    for unreadable in ("", "1;2;3;", good.replace("1.0;", "one;", 1), good + "7;"):
        assert same_geometry(unreadable, unreadable) and not same_geometry(unreadable, good), unreadable
        assert not same_geometry(good, unreadable)


def test_every_corner_counts_and_the_tolerance_follows_the_smallest_spacing_on_a_turned_grid():
    grid = np.diag([0.5, 1.0, 2.0, 1.0])
    assert same_geometry(_serialized(grid), _serialized(grid), tolerance_voxels=0)  # identical: the same, exactly
    for axis, last in ((0, 99), (1, 49), (2, 9)):  # the same at the last voxel along one axis, 0.01 mm off at 0
        pivoted = grid.copy()
        pivoted[axis, 3] += 0.01
        pivoted[axis, axis] -= 0.01 / last
        assert not same_geometry(_serialized(grid), _serialized(pivoted)), axis
    c = s = np.sqrt(0.5)
    turned = np.eye(4)
    turned[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ np.diag([0.5, 1.0, 2.0])  # 45 degrees about z
    moved = turned.copy()
    moved[2, 3] += 0.0006  # over a thousandth of the 0.5 mm voxel (the rows of the matrix are ~0.79 long)
    assert not same_geometry(_serialized(turned), _serialized(moved))
