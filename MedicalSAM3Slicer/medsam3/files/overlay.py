"""A picture for a person to look at: three orthogonal slices through a segmentation, each mask outlined.

The slices are cut and oriented as Slicer shows them (the engine's :class:`SliceGeometry`), shown at their true
physical aspect ratio, through the centre of the segmented voxels (the volume centre when nothing was found).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from ..model.preprocessing import choose_preprocessing
from .segment_colours import segment_colour
from ..geometry.slicing import SliceAxis, SliceGeometry
from ..geometry.volume import Volume

PANEL_SIZE = 360  # pixels along the longer side of each slice panel
CAPTION_HEIGHT = 18
OUTLINE_WIDTH = 2


def overlay_centre(labels: np.ndarray) -> tuple[int, int, int]:
    """(k, j, i) of the voxel the three slices pass through."""
    if labels.any():
        return tuple(int(round(c)) for c in ndimage.center_of_mass(labels > 0))
    return tuple(n // 2 for n in labels.shape)


def _panel(volume: Volume, labels: np.ndarray, axis: SliceAxis, centre_kji: tuple[int, int, int],
           grey_map, colour_of) -> Image.Image:
    geometry = SliceGeometry.for_volume(volume, axis)
    centre_ijk = centre_kji[::-1]
    index = int(centre_ijk[geometry.normal_axis])
    grey = (grey_map(geometry.slice_image(volume.array, index)) * 255).astype(np.uint8)
    label_slice = np.ascontiguousarray(geometry.slice_image(labels, index))
    rows, columns = geometry.image_shape
    row_mm, column_mm = geometry.pixel_spacing
    scale = PANEL_SIZE / max(rows * row_mm, columns * column_mm)
    size = (max(1, round(columns * column_mm * scale)), max(1, round(rows * row_mm * scale)))  # (width, height)
    picture = np.asarray(Image.fromarray(np.ascontiguousarray(grey)).resize(size, Image.BILINEAR).convert("RGB")).copy()
    shown_labels = np.asarray(Image.fromarray(label_slice.astype(np.int32)).resize(size, Image.NEAREST))
    for value in np.unique(shown_labels[shown_labels > 0]):
        region = shown_labels == value
        outline = region & ~ndimage.binary_erosion(region, iterations=OUTLINE_WIDTH)
        picture[outline] = colour_of(int(value) - 1)
    return Image.fromarray(picture)


def render_overlay(volume: Volume, labels: np.ndarray, path: str | Path, title: str = "",
                   colours: Sequence[Sequence[float]] | None = None) -> Path:
    """Write a PNG of axial, coronal and sagittal slices with every label outlined in its segment colour.

    ``labels`` is a (K, J, I) integer array, label ``n`` drawn in ``colours[n - 1]`` (0-1 RGB, the colours the
    segmentation files give the segments), else in ``segment_colour(n - 1)``.
    """
    def colour_of(index: int) -> tuple[int, int, int]:
        if colours is not None and index < len(colours):
            return tuple(int(float(c) * 255 + 0.5) for c in colours[index])
        return segment_colour(index)

    preprocessing = choose_preprocessing(volume)
    centre = overlay_centre(labels)
    panels = [(axis, _panel(volume, labels, axis, centre, preprocessing.apply, colour_of)) for axis in SliceAxis]
    width = sum(p.width for _, p in panels) + 4 * (len(panels) + 1)
    height = max(p.height for _, p in panels) + 2 * CAPTION_HEIGHT + 8
    canvas = Image.new("RGB", (width, height), (0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 2), title, fill=(255, 255, 255))
    x = 4
    for axis, panel in panels:
        draw.text((x, CAPTION_HEIGHT + 2), axis.value, fill=(255, 255, 255))
        canvas.paste(panel, (x, 2 * CAPTION_HEIGHT + 4))
        x += panel.width + 4
    path = Path(path)
    canvas.save(path)
    return path
