"""What the user asks for, in the volume's own voxel (IJK) coordinates.

Points and boxes are placed on one slice of one view; the engine checks them against the volume before any
model runs, so a bad prompt costs nothing and changes nothing.
"""

from __future__ import annotations

import types
import typing
from dataclasses import Field, dataclass, field, fields

import numpy as np

from ..errors import PromptError
from ..geometry.slicing import SliceAxis, SliceGeometry
from ..geometry.volume import Volume
from ..terminology import default_table


MAX_POINTS = 1000  # clicks in one prompt (a scribble is a few hundred)
MAX_INDEX = 2**31 - 1  # a slice index (and an object id) is a signed 32-bit integer on the wire


def described(doc: str = "", **limits) -> dict:
    """A prompt field's metadata: a one-line description and the limits a message must keep (``max_items`` of
    a sequence, ``ge`` / ``le`` of a number, ``max_length`` of a string). The server's JSON schema
    (apps/server/schemas.message_model) and the wire converters (transports/wire_format) read the fields, their
    types and these limits from the dataclasses below: a field added here travels without another edit."""
    return {"doc": doc, "limits": limits}


@dataclass(frozen=True)
class PointPrompt:
    """A click at continuous voxel coordinates (i, j, k); positive adds, negative removes."""

    ijk: tuple[float, float, float] = field(metadata=described("voxel coordinates (i, j, k); voxel centres are "
                                                               "integers"))
    positive: bool = True


@dataclass(frozen=True)
class BoxPrompt:
    """A box drawn on one slice, given by two opposite corners in voxel coordinates (i, j, k).

    The corners are voxel centres at the box's edges: both corner voxels are inside the box.
    """

    corner_a: tuple[float, float, float]
    corner_b: tuple[float, float, float]


@dataclass(frozen=True)
class SlicePrompt:
    """Points, at most one box and optionally a starting mask for one object on one slice."""

    axis: SliceAxis
    points: tuple[PointPrompt, ...] = field(default=(), metadata=described(max_items=MAX_POINTS))
    box: BoxPrompt | None = None
    mask: np.ndarray | None = field(default=None, compare=False,
                                    metadata=described("a bool mask on the slice's grid to start from"))
    # derived from the points / box when not given
    slice_index: int | None = field(default=None, metadata=described(ge=0, le=MAX_INDEX))

    def __post_init__(self) -> None:
        object.__setattr__(self, "axis", SliceAxis.parse(self.axis))
        object.__setattr__(self, "points", tuple(self.points))


def prompt_fields(definition: type) -> list[tuple[Field, object]]:
    """The fields of a prompt dataclass (or a subclass of one) with their resolved types, in order."""
    hints = typing.get_type_hints(definition)
    return [(f, hints[f.name]) for f in fields(definition)]


def optional_type(kind) -> tuple[object, bool]:
    """``X | None`` as ``(X, True)``; any other type as ``(kind, False)``."""
    members = typing.get_args(kind) if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union \
        else ()
    others = [m for m in members if m is not type(None)]
    if len(members) == 2 and len(others) == 1:
        return others[0], True
    if members:
        raise TypeError(f"A prompt field may be one type or one type | None, not {kind}.")
    return kind, False


def tuple_items(kind, count: int) -> tuple:
    """The item types of ``count`` items of a ``tuple[X, ...]`` or ``tuple[X, Y, Z]`` type."""
    items = typing.get_args(kind)
    return (items[0],) * count if len(items) == 2 and items[1] is Ellipsis else items


@dataclass(frozen=True)
class ResolvedSlicePrompt:
    """A slice prompt checked against a volume and moved into slice pixel coordinates (row, column)."""

    geometry: SliceGeometry
    slice_index: int
    point_row_columns: np.ndarray  # (N, 2)
    point_labels: np.ndarray  # (N,) 1 positive, 0 negative
    box_row_columns: np.ndarray | None  # (2, 2): (row0, column0), (row1, column1) with row0 <= row1
    mask: np.ndarray | None  # (rows, columns) bool


def parse_text_targets(text: str) -> list[str]:
    """Split typed text such as "liver, spleen; left kidney" into target phrases; a side word after a comma
    belongs to the phrase before it ("kidney, left")."""
    if text is None:
        raise PromptError("No text was typed: type what to segment, for example 'liver' or 'left kidney, spleen'.")
    phrases: list[str] = []
    for group in text.replace(";", "\n").split("\n"):  # a side word never joins across ";" or a new line
        joined: list[str] = []
        for piece in (" ".join(piece.split()) for piece in group.split(",")):
            if joined and piece and default_table().is_side(piece):
                joined[-1] = f"{joined[-1]}, {piece}"  # "kidney, left" (a terminology name) is one target
            elif piece:
                joined.append(piece)
        phrases += joined
    if not phrases:
        raise PromptError("The text prompt is empty: type what to segment, for example 'liver' or "
                          "'left kidney, spleen'.")
    return phrases


def refined_target(text: str | None, what: str = "Clicks and boxes refine") -> str:
    """The one rule for typed text beside clicks, boxes, scribbles or a lasso: they refine ONE typed target. Returns
    that phrase ("" when nothing is typed); several phrases are refused in one line (``medsam3 segment``,
    ``medsam3 batch`` and the Slicer module all ask here)."""
    phrases = parse_text_targets(text) if text and text.strip() else []
    if len(phrases) > 1:
        raise PromptError(f"{what} one typed target, but {len(phrases)} were typed "
                          f"({', '.join(repr(p) for p in phrases)}): type a single target name with them, or "
                          "segment the others separately.")
    return phrases[0] if phrases else ""


def _format_ijk(ijk: np.ndarray) -> str:
    return "(" + ", ".join(f"{v:.1f}" for v in ijk) + ")"


def resolve_slice_prompt(volume: Volume, prompt: SlicePrompt) -> ResolvedSlicePrompt:
    """Check a prompt against the volume and express it in the slice's pixel grid."""
    geometry = SliceGeometry.for_volume(volume, prompt.axis)
    corners = []
    if prompt.box is not None:
        corners = [np.asarray(prompt.box.corner_a, float), np.asarray(prompt.box.corner_b, float)]
    located = [np.asarray(p.ijk, dtype=np.float64) for p in prompt.points] + corners
    if not located and prompt.mask is None:
        raise PromptError("The prompt has no point, no box and no mask: click on the image or draw a box.")
    for ijk in located:
        if ijk.shape != (3,) or not np.all(np.isfinite(ijk)):
            raise PromptError(f"A prompt coordinate {ijk.tolist()} is not a finite (i, j, k) position.")
        if not volume.contains_ijk(ijk)[0]:
            raise PromptError(f"The prompt at voxel {_format_ijk(ijk)} is outside the volume, whose voxels run "
                              f"from (0, 0, 0) to {tuple(n - 1 for n in volume.shape_ijk)}. Place it on the image.")

    slice_index = prompt.slice_index
    if located:
        slice_coords = geometry.ijk_to_slice(np.stack(located))
        indices = np.unique(np.round(slice_coords[:, 0]).astype(int))
        if len(indices) > 1:
            raise PromptError(f"The points and box of one prompt lie on different {geometry.axis.value} slices "
                              f"({', '.join(map(str, indices))}); place them on one slice.")
        if slice_index is not None and int(slice_index) != int(indices[0]):
            raise PromptError(f"The prompt lies on {geometry.axis.value} slice {indices[0]}, not on slice "
                              f"{slice_index} it was sent for.")
        slice_index = int(indices[0])
    if slice_index is None:
        raise PromptError("A mask-only prompt needs a slice index.")
    slice_index = geometry.check_slice_index(slice_index)

    point_row_columns = np.zeros((0, 2))
    point_labels = np.zeros((0,), dtype=np.int64)
    if prompt.points:
        point_row_columns = geometry.ijk_to_slice(np.stack([p.ijk for p in prompt.points]))[:, 1:]
        point_labels = np.array([1 if p.positive else 0 for p in prompt.points], dtype=np.int64)

    box_row_columns = None
    if prompt.box is not None:
        rc = geometry.ijk_to_slice(np.stack(corners))[:, 1:]
        low, high = rc.min(axis=0), rc.max(axis=0)
        if np.any(high - low < 1.0):
            raise PromptError("The box is empty: drag a box that covers the object on the slice (at least two "
                              "voxels across in each direction).")
        box_row_columns = np.stack([low, high])

    mask = None
    if prompt.mask is not None:
        mask = np.asarray(prompt.mask).astype(bool)
        if mask.shape != geometry.image_shape:
            raise PromptError(f"The starting mask has shape {mask.shape}, but a {geometry.axis.value} slice of "
                              f"this volume has shape {geometry.image_shape}.")
    return ResolvedSlicePrompt(geometry, slice_index, point_row_columns, point_labels, box_row_columns, mask)
