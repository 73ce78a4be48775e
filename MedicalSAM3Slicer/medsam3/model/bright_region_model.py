"""A stand-in network that segments "the bright region under the prompt", in model space.

It sees only what a network sees (model-space images and prompts), so when a volume carries its ground truth as
intensity (inside the object bright, outside dark) its answers are the ground truth, found through the engine's
whole geometric path. The test suite uses it as a ground-truth oracle, the Slicer module's self-test as a model
that needs no download: any transposed, flipped or shifted coordinate between the volume and the model moves the
prompt off the object or the mask off the ground truth.
"""

from __future__ import annotations

from typing import Iterator, Mapping

import numpy as np
from scipy import ndimage

from .segmentation_model import FrameMasks, MaskLogits, ModelPrompt, frames_in_order

LOGIT_SCALE = 20.0


class BrightRegionModel:
    """Implements :class:`medsam3.model.segmentation_model.SegmentationModel` by reading the object off the image."""

    name = "bright-region"

    def __init__(self, image_size: int = 1008, mask_grid: int = 252):
        if image_size % mask_grid:
            raise ValueError("image_size must be a multiple of mask_grid")
        self.image_size = image_size
        self.mask_input_size = mask_grid
        self.mask_grid = mask_grid
        self.encoded = 0

    # --- helpers -----------------------------------------------------------------------------------------
    def _to_logits(self, mask: np.ndarray) -> np.ndarray:
        factor = self.image_size // self.mask_grid
        fraction = mask.reshape(self.mask_grid, factor, self.mask_grid, factor).mean(axis=(1, 3))
        return ((fraction - 0.5) * LOGIT_SCALE).astype(np.float32)

    @staticmethod
    def _components(image: np.ndarray) -> tuple[np.ndarray, int]:
        return ndimage.label(image > 0.5)

    def _kept_part(self, shape: tuple[int, int], x: float, y: float):
        """The part of a clicked (or boxed) region a prompt at model pixel (x, y) keeps: all of it here; the sided
        stand-in (sided_region_model.py) keeps one side."""
        return True

    def _mask_from_prompt(self, image: np.ndarray, prompt: ModelPrompt) -> np.ndarray:
        labels, _ = self._components(image)
        chosen = np.zeros(image.shape, dtype=bool)
        size = image.shape[0]
        for (x, y), label in zip(prompt.points_xy, prompt.point_labels):
            col, row = int(round(x)), int(round(y))
            if 0 <= row < size and 0 <= col < size and labels[row, col] > 0:
                component = labels == labels[row, col]
                if label == 1:
                    chosen = chosen | (component & self._kept_part(image.shape, x, y))
                else:
                    chosen = chosen & ~component
        if prompt.box_xyxy is not None:
            x0, y0, x1, y1 = prompt.box_xyxy
            inside_box = np.zeros(image.shape, dtype=bool)
            inside_box[max(0, int(np.floor(y0))):int(np.ceil(y1)) + 1, max(0, int(np.floor(x0))):int(np.ceil(x1)) + 1] = True
            chosen |= (labels > 0) & inside_box & self._kept_part(image.shape, (x0 + x1) / 2, (y0 + y1) / 2)
        if prompt.mask is not None and not chosen.any():
            factor = image.shape[0] / prompt.mask.shape[0]
            seed = ndimage.zoom(prompt.mask.astype(np.float32), factor, order=1)[:image.shape[0], :image.shape[1]] > 0.5
            hit = np.unique(labels[seed & (labels > 0)])
            chosen = np.isin(labels, hit[hit > 0])
        return chosen

    # --- SegmentationModel ----------------------------------------------------------------------------------
    def _encode(self, image: np.ndarray) -> np.ndarray:
        assert image.shape == (self.image_size, self.image_size), image.shape
        self.encoded += 1
        return image.copy()

    def encoding(self, frames, index: int, use: str) -> np.ndarray:
        return frames.embedding(index, self._encode, role="image")

    def segment_with_prompt(self, embedding: np.ndarray, prompt: ModelPrompt) -> MaskLogits:
        mask = self._mask_from_prompt(embedding, prompt)
        return MaskLogits(self._to_logits(mask), 1.0 if mask.any() else 0.0)

    def segment_with_text(self, embedding: np.ndarray, text: str) -> list[MaskLogits]:
        labels, count = self._components(embedding)
        return [MaskLogits(self._to_logits(labels == n), 0.9) for n in range(1, count + 1)]

    def track(self, frames, prompts: Mapping[int, ModelPrompt], start_index: int, reverse: bool) -> Iterator[FrameMasks]:
        previous = None
        for index in frames_in_order(len(frames), start_index, reverse):
            image = self.encoding(frames, index, "tracking")
            if index in prompts:
                mask = self._mask_from_prompt(image, prompts[index])
            elif previous is not None and previous.any():
                labels, _ = self._components(image)
                hit = np.unique(labels[previous & (labels > 0)])
                mask = np.isin(labels, hit[hit > 0])
            else:
                mask = np.zeros(image.shape, dtype=bool)
            previous = mask
            yield FrameMasks(index, {1: MaskLogits(self._to_logits(mask), 1.0 if mask.any() else 0.0)})

    def track_text(self, frames, text: str, start_index: int, reverse: bool) -> Iterator[FrameMasks]:
        for index in frames_in_order(len(frames), start_index, reverse):
            image = self.encoding(frames, index, "tracking")
            yield FrameMasks(index, {n: m for n, m in enumerate(self.segment_with_text(image, text), start=1)})
