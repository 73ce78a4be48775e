"""Typed target names as proper segments: a name, a colour and SNOMED CT codes.

The table is ``Resources/Terminology/TypedNames.json``. Spellings are matched after normalisation: case,
punctuation and word order do not matter, and a side word anywhere in the phrase ("L kidney", "kidney left",
"left kidney", "Left Kidney") becomes the type modifier of a lateral structure. A term that is not in the table
still runs the model; its segment gets the generic "Tissue" code and the resolution carries a note for the user.

Codes, meanings and colours are Slicer's own: an entry of the 3D Slicer General Anatomy list where that list has
the concept, else of the DICOM master list Slicer ships beside it (both in Slicer's
``Modules/Loadable/Terminologies/Resources/SegmentationCategoryTypeModifier-*.json``); each entry's terminology
tag names the list it comes from, so Slicer's terminology selector finds it. A concept in neither list (Lesion)
keeps its SNOMED CT code with no context name.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

TABLE_PATH = Path(__file__).resolve().parents[1] / "Resources" / "Terminology" / "TypedNames.json"
TERMINOLOGY_TAG = "TerminologyEntry"

Code = tuple[str, str, str]  # coding scheme designator, code value, code meaning
_EMPTY_CODE: Code = ("", "", "")


@dataclass(frozen=True)
class Terminology:
    """What a typed target becomes: the segment's name, colour (0-1 RGB) and codes; ``model_text`` is what the
    model is asked for; ``note`` is non-empty when the user should be told something (unknown term)."""

    name: str
    model_text: str
    colour: tuple[float, float, float]
    context: str
    category: Code
    type: Code
    modifier: Code = _EMPTY_CODE
    note: str = ""

    @property
    def is_generic(self) -> bool:
        return bool(self.note)

    def slicer_tag(self) -> str:
        """The segment tag value in Slicer's terminology-entry format (context~category~type~modifier~...)."""
        import slicer  # only this method needs Slicer; resolution works without it

        category, type_, modifier = self.category, self.type, self.modifier
        return slicer.vtkSlicerTerminologiesModuleLogic.SerializeTerminologyEntry(
            self.context, category[1], category[0], category[2], type_[1], type_[0], type_[2],
            modifier[1], modifier[0], modifier[2], "", "", "", "", "", "", "")


def _normalise(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9 ]+", " ", text.lower()).split()


def _key(words: list[str]) -> tuple[str, ...]:
    return tuple(sorted(words))


class TerminologyTable:
    """Resolves typed names against the table."""

    def __init__(self, table: dict):
        self._contexts = table["contexts"]
        self._generic = table["generic"]
        self.context = self._context_name(self._generic)
        self._sides = {}  # spelling -> (side name, code)
        for side, spec in table["sides"].items():
            for spelling in spec["spellings"]:
                self._sides[spelling] = (side, tuple(spec["code"]))
        self._entries = {}  # sorted words of a spelling -> entry
        for entry in table["entries"]:
            for spelling in [entry["name"], *entry["spellings"]]:
                self._entries[_key(_normalise(spelling))] = entry

    def _context_name(self, entry: dict) -> str:
        """The Slicer terminology context an entry comes from ("" for a concept in no Slicer list)."""
        key = entry.get("context")
        return self._contexts[key] if key else ""

    @classmethod
    def load(cls, path: Path = TABLE_PATH) -> "TerminologyTable":
        return cls(json.loads(Path(path).read_text(encoding="utf-8")))

    def _terminology(self, entry: dict, side: tuple[str, Code] | None) -> Terminology:
        name = entry["name"]
        modifier = _EMPTY_CODE
        if side is not None:
            name = f"{side[0].capitalize()} {name[0].lower()}{name[1:]}"
            modifier = side[1]
        return Terminology(name=name, model_text=name.lower(), colour=tuple(c / 255.0 for c in entry["colour"]),
                           context=self._context_name(entry), category=tuple(entry["category"]),
                           type=tuple(entry["type"]),
                           modifier=modifier)

    def resolve(self, typed: str) -> Terminology:
        """The terminology of one typed target phrase."""
        words = _normalise(typed)
        entry = self._entries.get(_key(words))
        if entry is not None:
            return self._terminology(entry, None)
        side_words = [w for w in words if w in self._sides]
        rest = [w for w in words if w not in self._sides]
        if len(side_words) == 1 and rest:
            entry = self._entries.get(_key(rest))
            if entry is not None and entry.get("lateral"):
                return self._terminology(entry, self._sides[side_words[0]])
        phrase = " ".join(typed.split())
        generic = self._generic
        return Terminology(name=phrase[:1].upper() + phrase[1:], model_text=phrase,
                           colour=tuple(c / 255.0 for c in generic["colour"]), context=self.context,
                           category=tuple(generic["category"]), type=tuple(generic["type"]),
                           note=f"'{phrase}' is not in the terminology table: the segment was made and coded "
                                f"generically as '{generic['type'][2]}' (SNOMED CT {generic['type'][1]}). "
                                "Set its terminology in the Segment Editor if it should carry a specific code.")


@lru_cache(maxsize=1)
def default_table() -> TerminologyTable:
    return TerminologyTable.load()


def apply_to_segment(segment, terminology: Terminology) -> None:
    """Name, colour and terminology tag of a vtkSegment."""
    segment.SetName(terminology.name)
    segment.SetColor(*terminology.colour)
    segment.SetTag(TERMINOLOGY_TAG, terminology.slicer_tag())


def segment_tag(segment) -> str:
    """A vtkSegment's terminology tag ("" when it has none)."""
    import vtk

    value = vtk.reference("")
    segment.GetTag(TERMINOLOGY_TAG, value)
    return str(value)


def codes_of_tag(serialized: str) -> tuple[Code, Code, Code] | None:
    """(category, type, modifier) codes of a serialized Slicer terminology entry; None when there is none."""
    import slicer

    if not serialized:
        return None
    entry = slicer.vtkSlicerTerminologyEntry()
    if not slicer.vtkSlicerTerminologiesModuleLogic.DeserializeTerminologyEntry(serialized, entry):
        return None

    def code(concept) -> Code:
        return (concept.GetCodingSchemeDesignator() or "", concept.GetCodeValue() or "", concept.GetCodeMeaning() or "")

    return code(entry.GetCategoryObject()), code(entry.GetTypeObject()), code(entry.GetTypeModifierObject())
