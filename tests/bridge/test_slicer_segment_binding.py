"""Binding a segmentation to the volume the model writes on, without a model (segment_io, issue 23): a segment is
never resampled onto another grid or moved under another transform behind the user's back, a refusal says in one
line what to do and changes nothing, an empty segmentation simply follows the volume, and a write lands exactly in
its segment even when that segment shares a labelmap layer with another one."""

from __future__ import annotations

import numpy as np
import pytest
import vtk

from slicer_scene import add_linear_transform, load_volume_node, new_scene, slicer

from medsam3.errors import VolumeError
from medsam3.geometry.volume import Volume
from medsam3.interaction.session import MaskUpdate

from MedicalSAM3SlicerLib.segment_io import (SourceRepresentationError, apply_update, bind_to_volume,
                                             convert_to_labelmap, labelmap_modified_time, segment_mask)

SHAPE = (6, 8, 10)  # K, J, I
WHOLE = (0, SHAPE[0], 0, SHAPE[1], 0, SHAPE[2])
BINARY_LABELMAP, CLOSED_SURFACE = "Binary labelmap", "Closed surface"
GEOMETRY = slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()


def volume_node(scene, directory, name, spacing=(1.0, 1.0, 2.0)):
    return load_volume_node(scene, Volume(np.zeros(SHAPE, np.int16), np.diag([*spacing, 1.0]), modality="CT",
                                          name=name), directory, name=name)


def block(k, j, i) -> np.ndarray:
    mask = np.zeros(SHAPE, dtype=bool)
    mask[k, j, i] = True
    return mask


def drawn_segmentation(scene, volume, *masks):
    """A segmentation bound to ``volume`` with one segment per mask, drawn through apply_update."""
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "seg")
    bind_to_volume(node, volume)
    ids = []
    for number, mask in enumerate(masks):
        ids.append(node.GetSegmentation().AddEmptySegment("", f"drawn {number}"))
        apply_update(MaskUpdate(0, WHOLE, mask), node, ids[-1], volume)
    return node, ids


def sphere_surface():
    source = vtk.vtkSphereSource()
    source.SetCenter(4.0, 4.0, 6.0)
    source.SetRadius(2.5)
    source.Update()
    return source.GetOutput()


def test_a_segment_drawn_on_another_grid_is_refused_and_keeps_its_voxels(tmp_path):
    scene = new_scene()
    first, second = volume_node(scene, tmp_path, "first"), volume_node(scene, tmp_path, "second", (1.0, 1.0, 1.0))
    drawn = block(slice(1, 3), slice(2, 5), slice(3, 7))
    segmentation, (segment_id,) = drawn_segmentation(scene, first, drawn)
    geometry = segmentation.GetSegmentation().GetConversionParameter(GEOMETRY)

    with pytest.raises(VolumeError) as refused:
        bind_to_volume(segmentation, second)

    assert str(refused.value) == ("The segmentation 'seg' was drawn on another voxel grid than 'second'. "
                                  "Choose a new segmentation for this volume.")
    assert segmentation.GetSegmentation().GetConversionParameter(GEOMETRY) == geometry
    np.testing.assert_array_equal(segment_mask(segmentation, segment_id, first), drawn)


def test_a_segment_under_another_transform_is_refused_and_stays_where_it_was(tmp_path):
    scene = new_scene()
    volume = volume_node(scene, tmp_path, "ct")
    drawn = block(2, slice(1, 4), slice(0, 5))
    segmentation, (segment_id,) = drawn_segmentation(scene, volume, drawn)
    moved = np.eye(4)
    moved[:3, 3] = [5.0, 0.0, 0.0]
    volume.SetAndObserveTransformNodeID(add_linear_transform(scene, moved, "moved").GetID())  # the user moved it

    with pytest.raises(VolumeError) as refused:
        bind_to_volume(segmentation, volume)

    assert str(refused.value) == ("The segmentation 'seg' is under another transform than 'ct'. Put both under the "
                                  "same transform, or choose a new segmentation.")
    assert segmentation.GetTransformNodeID() is None
    np.testing.assert_array_equal(segment_mask(segmentation, segment_id, volume), drawn)


def test_an_empty_segmentation_follows_the_next_volume_its_grid_and_its_transform(tmp_path):
    """Emptied (its segments deleted) after use on another volume, even one of STL surfaces: nothing to lose."""
    scene = new_scene()
    first = volume_node(scene, tmp_path, "first")
    second = volume_node(scene, tmp_path, "second", (0.5, 0.75, 1.25))
    second.SetAndObserveTransformNodeID(add_linear_transform(scene, np.diag([1.0, -1.0, 1.0, 1.0]), "flip").GetID())
    segmentation, (segment_id,) = drawn_segmentation(scene, first, block(1, 1, 1))
    segmentation.GetSegmentation().RemoveSegment(segment_id)
    segmentation.GetSegmentation().SetSourceRepresentationName(CLOSED_SURFACE)

    bind_to_volume(segmentation, second)

    assert segmentation.GetSegmentation().GetSourceRepresentationName() == BINARY_LABELMAP
    assert segmentation.GetTransformNodeID() == second.GetTransformNodeID()
    segment_id = segmentation.GetSegmentation().AddEmptySegment("", "new")
    drawn = block(slice(3, 5), 6, slice(2, 9))
    apply_update(MaskUpdate(0, WHOLE, drawn), segmentation, segment_id, second)
    labelmap = segmentation.GetSegmentation().GetSegment(segment_id).GetRepresentation(BINARY_LABELMAP)
    np.testing.assert_allclose(labelmap.GetSpacing(), (0.5, 0.75, 1.25))
    np.testing.assert_array_equal(segment_mask(segmentation, segment_id, second), drawn)


def test_a_write_into_a_segment_sharing_its_layer_changes_only_that_segment(tmp_path):
    """Segments that do not overlap share one labelmap layer, as Slicer keeps them in a .seg.nrrd it read."""
    scene = new_scene()
    volume = volume_node(scene, tmp_path, "ct")
    kept, replaced = block(slice(0, 2), slice(0, 3), slice(0, 4)), block(slice(3, 6), slice(4, 8), slice(5, 10))
    segmentation, (kept_id, replaced_id) = drawn_segmentation(scene, volume, kept, replaced)
    segmentation.GetSegmentation().CollapseBinaryLabelmaps(False)
    assert segmentation.GetSegmentation().GetNumberOfLayers() == 1

    new = block(slice(2, 5), slice(2, 6), slice(3, 8))  # overlaps the old box, outside the kept segment
    apply_update(MaskUpdate(0, WHOLE, new), segmentation, replaced_id, volume)

    np.testing.assert_array_equal(segment_mask(segmentation, replaced_id, volume), new)
    np.testing.assert_array_equal(segment_mask(segmentation, kept_id, volume), kept)


def test_a_write_slicer_refuses_names_the_segment(tmp_path):
    scene = new_scene()
    volume = volume_node(scene, tmp_path, "ct")
    segmentation, _ = drawn_segmentation(scene, volume)
    with pytest.raises(RuntimeError) as refused:
        apply_update(MaskUpdate(0, WHOLE, block(1, 1, 1)), segmentation, "gone", volume)
    assert str(refused.value) == "Slicer refused to write into segment 'gone' of 'seg'."


def test_converting_surfaces_under_another_transform_is_refused_and_changes_nothing(tmp_path):
    scene = new_scene()
    volume = volume_node(scene, tmp_path, "ct")
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "model")
    segmentation.GetSegmentation().SetSourceRepresentationName(CLOSED_SURFACE)
    segment_id = segmentation.AddSegmentFromClosedSurfaceRepresentation(sphere_surface(), "sphere")
    segmentation.SetAndObserveTransformNodeID(add_linear_transform(scene, np.diag([2.0, 1, 1, 1]), "scaled").GetID())

    with pytest.raises(VolumeError) as refused:
        convert_to_labelmap(segmentation, volume)

    assert str(refused.value) == ("The segmentation 'model' is under another transform than 'ct'. Put both under "
                                  "the same transform, then convert it.")
    assert segmentation.GetSegmentation().GetSourceRepresentationName() == CLOSED_SURFACE
    assert segmentation.GetSegmentation().GetSegment(segment_id).GetRepresentation(BINARY_LABELMAP) is None


def test_an_emptied_surface_segmentation_under_another_transform_converts(tmp_path):
    scene = new_scene()
    volume = volume_node(scene, tmp_path, "ct")
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "model")
    segmentation.GetSegmentation().SetSourceRepresentationName(CLOSED_SURFACE)
    segmentation.SetAndObserveTransformNodeID(add_linear_transform(scene, np.eye(4), "other").GetID())

    convert_to_labelmap(segmentation, volume)

    assert segmentation.GetSegmentation().GetSourceRepresentationName() == BINARY_LABELMAP


def test_a_conversion_slicer_cannot_do_restores_the_previous_grid(tmp_path):
    """Planar contours (RTSTRUCT) without SlicerRT's rules: refused, and the grid the segmentation had is kept."""
    scene = new_scene()
    volume, earlier = volume_node(scene, tmp_path, "ct"), volume_node(scene, tmp_path, "earlier", (2.0, 2.0, 2.0))
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "rtstruct")
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(earlier)
    geometry = segmentation.GetSegmentation().GetConversionParameter(GEOMETRY)
    segmentation.GetSegmentation().SetSourceRepresentationName("Planar contour")
    segment = slicer.vtkSegment()
    segment.AddRepresentation("Planar contour", sphere_surface())
    segmentation.GetSegmentation().AddSegment(segment, "contour")

    with pytest.raises(SourceRepresentationError) as refused:
        convert_to_labelmap(segmentation, volume)

    assert str(refused.value) == (
        "Slicer cannot convert the planar contour of 'rtstruct' to a binary labelmap (for RTSTRUCT contours install "
        "the SlicerRT extension); nothing was changed: choose a new segmentation.")
    assert segmentation.GetSegmentation().GetConversionParameter(GEOMETRY) == geometry
    assert segmentation.GetSegmentation().GetSourceRepresentationName() == "Planar contour"
    assert segment.GetRepresentation(BINARY_LABELMAP) is None


def surface_segmentation(scene, name="model"):
    """A segmentation of one closed-surface sphere, as an STL model imports."""
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    segmentation.GetSegmentation().SetSourceRepresentationName(CLOSED_SURFACE)
    return segmentation, segmentation.AddSegmentFromClosedSurfaceRepresentation(sphere_surface(), "sphere")


def test_converting_remakes_a_labelmap_left_on_another_grid_and_shows_the_labelmap_in_2d(tmp_path):
    scene = new_scene()
    volume, earlier = volume_node(scene, tmp_path, "ct"), volume_node(scene, tmp_path, "earlier", (2.0, 2.0, 2.0))
    segmentation, segment_id = surface_segmentation(scene)
    segmentation.CreateDefaultDisplayNodes()
    segmentation.GetDisplayNode().SetPreferredDisplayRepresentationName2D(CLOSED_SURFACE)
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(earlier)  # a labelmap made before, 2 mm voxels
    assert segmentation.GetSegmentation().CreateRepresentation(BINARY_LABELMAP)

    convert_to_labelmap(segmentation, volume)

    labelmap = segmentation.GetSegmentation().GetSegment(segment_id).GetRepresentation(BINARY_LABELMAP)
    np.testing.assert_allclose(labelmap.GetSpacing(), (1.0, 1.0, 2.0))  # remade on the volume's grid
    assert segmentation.GetDisplayNode().GetPreferredDisplayRepresentationName2D() == BINARY_LABELMAP
    assert segment_mask(segmentation, segment_id, volume).any()


def test_a_segment_without_voxels_reads_as_an_empty_mask_and_a_missing_one_is_named(tmp_path):
    scene = new_scene()
    volume = volume_node(scene, tmp_path, "ct")
    segmentation, segment_id = surface_segmentation(scene)  # a surface only: no labelmap yet
    mask = segment_mask(segmentation, segment_id, volume)
    assert mask.dtype == bool and mask.shape == SHAPE and not mask.any()
    with pytest.raises(VolumeError) as refused:
        segment_mask(segmentation, "gone", volume)
    assert str(refused.value) == "There is no segment 'gone' in 'model'."


def test_the_labelmap_counter_is_zero_without_voxels_and_moves_when_they_change(tmp_path):
    scene = new_scene()
    volume = volume_node(scene, tmp_path, "ct")
    surface, surface_id = surface_segmentation(scene)
    assert labelmap_modified_time(surface, surface_id) == 0
    assert labelmap_modified_time(surface, "gone") == 0
    segmentation, (segment_id,) = drawn_segmentation(scene, volume, block(1, 1, 1))
    before = labelmap_modified_time(segmentation, segment_id)
    apply_update(MaskUpdate(0, WHOLE, block(2, 2, 2)), segmentation, segment_id, volume)
    assert labelmap_modified_time(segmentation, segment_id) > before > 0
