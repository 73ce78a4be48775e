"""Names, colours and SNOMED CT codes of the segments a batch writes.

Typed names are looked up in the extension's terminology table (``Resources/Terminology/TypedNames.json``, the
same table the Slicer module uses, so a batch result opens in Slicer exactly like an interactive one). Where the
engine is installed without the Slicer module beside it, every segment gets the generic "Tissue" code and the
engine's palette colour.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import lru_cache

from ...files.segment_colours import segment_colour

Code = tuple[str, str, str]  # coding scheme designator, code value, code meaning
CONTEXT = "Segmentation category and type - 3D Slicer General Anatomy list"
_TISSUE: Code = ("SCT", "85756007", "Tissue")


@dataclass(frozen=True)
class SegmentCode:
    name: str
    colour: tuple[float, float, float]  # 0-1 RGB
    category: Code
    type: Code
    modifier: Code = ("", "", "")

    def slicer_terminology(self) -> str:
        """The segment's terminology entry in the serialized form Slicer keeps in a .seg.nrrd."""
        def concept(code: Code) -> str:
            return f"{code[0]}^{code[1]}^{code[2]}"

        return f"{CONTEXT}~{concept(self.category)}~{concept(self.type)}~{concept(self.modifier)}~~^^~^^"


@lru_cache(maxsize=1)
def _terminology_table():
    try:  # the Slicer module's table sits beside the engine in the extension (no Slicer needed to read it)
        return importlib.import_module("MedicalSAM3SlicerLib.terminology").default_table()
    except (ImportError, OSError, ValueError):
        return None


def segment_code(name: str, index: int) -> SegmentCode:
    """The code of the ``index``-th segment (0-based), typed as ``name`` (named as the table names it, e.g. "left
    kidney" -> "Left kidney", as in the Slicer module)."""
    table = _terminology_table()
    fallback_colour = tuple(c / 255.0 for c in segment_colour(index))
    if table is None:
        return SegmentCode(name, fallback_colour, _TISSUE, _TISSUE)
    resolved = table.resolve(name)
    colour = fallback_colour if resolved.is_generic else resolved.colour
    return SegmentCode(resolved.name, colour, resolved.category, resolved.type, resolved.modifier)
