"""The module's self-test fixture: a phantom scene and a deterministic stand-in network (numpy only: no torch,
no download), so the self-test runs inside Slicer before any model is installed.

It implements :class:`medsam3.segmentation_model.SegmentationModel` by answering "the bright region under the
prompt" in model space, like the test suite's ground-truth oracle. A phantom whose object is bright therefore
checks the whole path (MRML -> engine -> model space -> segment) inside a real Slicer in a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Mapping

import numpy as np

from medsam3.segmentation_model import FrameMasks, MaskLogits, ModelPrompt, frames_in_order

_BRIGHT = 0.5
_LOGIT_SCALE = 20.0


def _grow(seed: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """The 4-connected part of ``allowed`` reachable from ``seed``."""
    region = seed & allowed
    while True:
        grown = region.copy()
        grown[1:] |= region[:-1]
        grown[:-1] |= region[1:]
        grown[:, 1:] |= region[:, :-1]
        grown[:, :-1] |= region[:, 1:]
        grown &= allowed
        if np.array_equal(grown, region):
            return region
        region = grown


class BrightRegionModel:
    """Segments the bright connected region under positive clicks or inside a box."""

    name = "bright-region-self-test"

    def __init__(self, image_size: int = 256, mask_grid: int = 64):
        self.image_size = image_size
        self.mask_input_size = mask_grid
        self._factor = image_size // mask_grid

    def _logits(self, mask: np.ndarray) -> MaskLogits:
        grid = mask.reshape(self.mask_input_size, self._factor, self.mask_input_size, self._factor).mean(axis=(1, 3))
        return MaskLogits(((grid - 0.5) * _LOGIT_SCALE).astype(np.float32), 1.0 if mask.any() else 0.0)

    def encode_for_prompts(self, image: np.ndarray) -> np.ndarray:
        return np.asarray(image) > _BRIGHT

    encode_for_text = encode_for_prompts

    def _mask(self, bright: np.ndarray, prompt: ModelPrompt) -> np.ndarray:
        seed = np.zeros(bright.shape, dtype=bool)
        size = bright.shape[0]
        for (x, y), label in zip(prompt.points_xy, prompt.point_labels):
            row, column = int(round(y)), int(round(x))
            if label == 1 and 0 <= row < size and 0 <= column < size:
                seed[row, column] = True
        if prompt.box_xyxy is not None:
            x0, y0, x1, y1 = (int(round(v)) for v in prompt.box_xyxy)
            seed[max(0, y0):y1 + 1, max(0, x0):x1 + 1] = True
        return _grow(seed, bright)

    def segment_with_prompt(self, embedding: np.ndarray, prompt: ModelPrompt) -> MaskLogits:
        return self._logits(self._mask(embedding, prompt))

    def segment_with_text(self, embedding: np.ndarray, text: str) -> list[MaskLogits]:
        return [self._logits(embedding)] if embedding.any() else []

    def track(self, frames, prompts: Mapping[int, ModelPrompt], start_index: int,
              reverse: bool) -> Iterator[FrameMasks]:
        previous = None
        for index in frames_in_order(len(frames), start_index, reverse):
            bright = frames.embedding(index, self.encode_for_prompts, role="prompts")
            if index in prompts:
                mask = self._mask(bright, prompts[index])
            elif previous is not None:
                mask = _grow(previous, bright)
            else:
                mask = np.zeros(bright.shape, dtype=bool)
            previous = mask
            yield FrameMasks(index, {1: self._logits(mask)})

    def track_text(self, frames, text: str, start_index: int, reverse: bool) -> Iterator[FrameMasks]:
        for index in frames_in_order(len(frames), start_index, reverse):
            bright = frames.embedding(index, self.encode_for_text, role="text")
            yield FrameMasks(index, {1: self._logits(bright)} if bright.any() else {})


@dataclass
class Phantom:
    """A scene set up for the self-test: an oblique volume under a rotation, a click on its bright block."""

    volume_node: object
    clicks_node: object
    expected: np.ndarray  # (K, J, I) bool: the bright block


def make_phantom(scene) -> Phantom:
    """Adds the phantom volume (with its transform) and a click at the block's centre, in world coordinates."""
    import vtk
    from vtk.util import numpy_support

    voxels = np.full((30, 60, 50), -1000, dtype=np.int16)
    voxels[10:20, 20:40, 15:30] = 1000
    image = vtk.vtkImageData()
    image.SetDimensions(voxels.shape[::-1])
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(voxels.reshape(-1), deep=True))
    volume_node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "MedicalSAM3 phantom")
    volume_node.SetAndObserveImageData(image)
    ijk_to_ras = vtk.vtkMatrix4x4()
    for row, values in enumerate([[0.8, 0.1, 0.0, -20.0], [-0.1, 0.8, 0.0, 10.0], [0.0, 0.0, 2.5, 5.0]]):
        for column, value in enumerate(values):
            ijk_to_ras.SetElement(row, column, value)
    volume_node.SetIJKToRASMatrix(ijk_to_ras)
    rotation = vtk.vtkTransform()
    rotation.RotateWXYZ(20, 0.3, 1.0, 0.2)
    rotation.Translate(5.0, -3.0, 8.0)
    transform_node = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "MedicalSAM3 phantom rotation")
    transform_node.SetMatrixTransformToParent(rotation.GetMatrix())
    volume_node.SetAndObserveTransformNodeID(transform_node.GetID())

    local = ijk_to_ras.MultiplyPoint([22.0, 30.0, 15.0, 1.0])[:3]
    world = rotation.TransformPoint(local)
    clicks_node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "MedicalSAM3 phantom click")
    clicks_node.AddControlPointWorld(*world)
    return Phantom(volume_node, clicks_node, voxels > 0)
