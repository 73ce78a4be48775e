"""Names, colours and SNOMED CT codes of the segments a batch writes: the engine's one terminology
(:mod:`medsam3.terminology`, through :func:`medsam3.files.outputs.coded_segments`), the same table the Slicer module
and ``medsam3 segment`` use, so a batch result opens in Slicer exactly like an interactive one.
"""

from __future__ import annotations

from ...files.outputs import CodedSegment, coded_segment


def segment_code(name: str, index: int) -> CodedSegment:
    """The coded ``index``-th segment (0-based), typed as ``name`` (named as the table names it, e.g. "left
    kidney" -> "Left kidney", as in the Slicer module)."""
    return coded_segment(name, index)
