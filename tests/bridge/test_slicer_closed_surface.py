"""A segmentation whose segments are closed surfaces (STL / OBJ models, RTSTRUCT, .seg.vtm) is never changed behind the
user's back (issue 17, High 2): a prompt is refused in one line and leaves it untouched; the explicit conversion
the module offers makes the labelmap on the source volume's grid, after saving the undo state."""

from __future__ import annotations

import numpy as np
import pytest
import vtk

from slicer_scene import add_points, load_volume_node, new_scene, slicer, world_of_voxel

from medsam3.geometry.volume import Volume

from MedicalSAM3SlicerLib.segment_io import SourceRepresentationError, segment_mask

from slicer_patients import GroundTruthOracle, logic_with

CLOSED_SURFACE = "Closed surface"
SHAPE = (30, 40, 40)  # K, J, I
SPACING = (1.0, 1.0, 1.5)
CENTRE, RADIUS = (20.0, 20.0, 22.0), 10.0  # world RAS, mm


def sphere_volume(scene, directory):
    """A CT with the sphere bright, so the stand-in model finds it too."""
    inside = expected_sphere_mask()
    array = np.where(inside, 1000, -1000).astype(np.int16)
    return load_volume_node(scene, Volume(array, np.diag([*SPACING, 1.0]), modality="CT", name="ct"), directory)


def expected_sphere_mask() -> np.ndarray:
    """The voxels whose centres lie inside the sphere."""
    k, j, i = np.indices(SHAPE).astype(float)
    x, y, z = i * SPACING[0], j * SPACING[1], k * SPACING[2]
    return (x - CENTRE[0]) ** 2 + (y - CENTRE[1]) ** 2 + (z - CENTRE[2]) ** 2 <= RADIUS ** 2


def closed_surface_segmentation(scene, directory=None):
    """A segmentation whose source representation is a closed surface: a sphere, as an STL model imports; with a
    directory, written as .seg.vtm and read back through Slicer's segmentation storage node."""
    source = vtk.vtkSphereSource()
    source.SetCenter(*CENTRE)
    source.SetRadius(RADIUS)
    source.SetThetaResolution(48)
    source.SetPhiResolution(48)
    source.Update()
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "sphere model")
    node.GetSegmentation().SetSourceRepresentationName(CLOSED_SURFACE)
    node.AddSegmentFromClosedSurfaceRepresentation(source.GetOutput(), "sphere")
    if directory is None:
        return node
    path = str(directory / "sphere.seg.vtm")
    writer = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    writer.SetFileName(path)
    assert writer.WriteData(node)
    scene.RemoveNode(node)
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "sphere model")
    reader = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    reader.SetFileName(path)
    assert reader.ReadData(node)
    assert node.GetSegmentation().GetSourceRepresentationName() == CLOSED_SURFACE
    return node


def snapshot(segmentation_node) -> tuple:
    """What the user would notice changed: the source representation, each segment's representations and surface,
    the reference geometry and the transform."""
    segmentation = segmentation_node.GetSegmentation()
    segments = []
    for n in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(n)
        surface = segment.GetRepresentation(CLOSED_SURFACE)
        segments.append((segmentation.GetNthSegmentID(n), segment.GetRepresentation("Binary labelmap") is None,
                         surface.GetNumberOfPoints() if surface is not None else -1))
    parameter = slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
    return (segmentation.GetSourceRepresentationName(), segments, segmentation.GetConversionParameter(parameter),
            segmentation_node.GetTransformNodeID())


@pytest.mark.parametrize("from_file", [False, True], ids=["surface", "seg.vtm"])
def test_a_prompt_on_a_closed_surface_segmentation_is_refused_and_changes_nothing(tmp_path, from_file):
    scene = new_scene()
    volume = sphere_volume(scene, tmp_path)
    segmentation = closed_surface_segmentation(scene, tmp_path if from_file else None)
    before = snapshot(segmentation)
    logic = logic_with(GroundTruthOracle())
    clicks = add_points(scene, world_of_voxel(volume, (20, 20, 15)))

    with pytest.raises(SourceRepresentationError) as refused:
        logic.prepare(volume, segmentation, positive_points=clicks, view="axial")

    message = str(refused.value)
    assert "\n" not in message and "sphere model" in message and "closed surface" in message
    assert snapshot(segmentation) == before


def test_converting_makes_the_labelmap_on_the_volume_grid_and_undo_brings_the_surface_back(tmp_path):
    scene = new_scene()
    volume = sphere_volume(scene, tmp_path)
    segmentation = closed_surface_segmentation(scene)
    before = snapshot(segmentation)
    history = slicer.vtkSegmentationHistory()  # what the Segment Editor's saveStateForUndo / Undo use
    history.SetSegmentation(segmentation.GetSegmentation())
    logic = logic_with(GroundTruthOracle())

    result = logic.convert_to_labelmap(volume, segmentation, save_state_for_undo=history.SaveState)

    assert result.changed and len(result.notes) == 1
    segment_id = segmentation.GetSegmentation().GetNthSegmentID(0)
    labelmap = segmentation.GetSegmentation().GetSegment(segment_id).GetRepresentation("Binary labelmap")
    np.testing.assert_allclose(labelmap.GetSpacing(), SPACING)  # the volume's grid, not a default one
    expected = expected_sphere_mask()
    voxels = segment_mask(segmentation, segment_id, volume)
    assert abs(int(voxels.sum()) - int(expected.sum())) <= 0.05 * expected.sum()
    assert 2 * (voxels & expected).sum() / (voxels.sum() + expected.sum()) >= 0.95
    assert segmentation.GetSegmentation().GetSegment(segment_id).GetRepresentation(CLOSED_SURFACE) is not None

    assert history.RestorePreviousState()  # Ctrl+Z in the Segment Editor
    restored = snapshot(segmentation)
    assert restored[1] == before[1]  # the sphere's own surface is back, with no labelmap

    # Slicer's history restores segments, not the source representation's name: the restored surfaces are still
    # recognised as such, refused, and converted again on request
    clicks = add_points(scene, world_of_voxel(volume, (20, 20, 15)))
    with pytest.raises(SourceRepresentationError):
        logic.prepare(volume, segmentation, positive_points=clicks, view="axial")
    assert snapshot(segmentation) == restored
    logic.convert_to_labelmap(volume, segmentation)
    np.testing.assert_array_equal(segment_mask(segmentation, segment_id, volume), voxels)


def test_journey_a_closed_surface_segmentation_is_converted_when_the_user_agrees_then_prompted(tmp_path):
    """Load a .seg.vtm of closed surfaces, click: refused, nothing changed. The user accepts the conversion the
    module offers; the click then adds a segment, and the sphere keeps its voxels."""
    scene = new_scene()
    volume = sphere_volume(scene, tmp_path)
    segmentation = closed_surface_segmentation(scene, tmp_path)
    logic = logic_with(GroundTruthOracle())
    clicks = add_points(scene, world_of_voxel(volume, (20, 20, 15)))
    with pytest.raises(SourceRepresentationError):
        logic.segment(volume, segmentation, positive_points=clicks, view="axial", whole_volume=False)

    logic.convert_to_labelmap(volume, segmentation)
    sphere_id = segmentation.GetSegmentation().GetNthSegmentID(0)
    sphere_voxels = segment_mask(segmentation, sphere_id, volume)
    result = logic.segment(volume, segmentation, positive_points=clicks, view="axial", whole_volume=False)

    assert result.segment_ids[0] != sphere_id
    np.testing.assert_array_equal(segment_mask(segmentation, sphere_id, volume), sphere_voxels)
    found = segment_mask(segmentation, result.segment_ids[0], volume)
    np.testing.assert_array_equal(found[15], expected_sphere_mask()[15])
