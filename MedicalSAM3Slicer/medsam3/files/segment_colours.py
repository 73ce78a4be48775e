"""The colours segments are shown in: the same colour for a segment in the overlay picture and the .seg.nrrd."""

from __future__ import annotations

# Saturated, distinct RGB colours (never grey, so an outline never looks like image intensity).
SEGMENT_COLOURS: tuple[tuple[int, int, int], ...] = (
    (255, 48, 48), (48, 220, 48), (64, 128, 255), (255, 200, 0), (230, 64, 230), (0, 220, 220),
    (255, 128, 0), (160, 96, 255),
)


def segment_colour(index: int) -> tuple[int, int, int]:
    """The colour of the ``index``-th segment (0-based), cycling through the palette."""
    return SEGMENT_COLOURS[index % len(SEGMENT_COLOURS)]
