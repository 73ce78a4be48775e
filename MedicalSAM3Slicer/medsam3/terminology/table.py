"""Typed target names as proper segments: a name, a colour and SNOMED CT codes (``terminology.json``).

Spellings are matched after normalisation: case, punctuation and word order do not matter, and a side word anywhere
in the phrase ("L kidney", "kidney left", "sin kidney", "Left Kidney") becomes the type modifier of a lateral
structure. A term that is not in the table still runs the model; its segment gets the generic "Tissue" code and
the resolution carries a note for the user.

Codes, meanings and colours are Slicer's own: an entry of the 3D Slicer General Anatomy list where that list has
the concept, else of the DICOM master list Slicer ships beside it (both in Slicer's
``Modules/Loadable/Terminologies/Resources/SegmentationCategoryTypeModifier-*.json``); each entry's context names
the list it comes from, so Slicer's terminology selector finds it. A concept in neither list (Lesion) keeps its
SNOMED CT code with no context name. No Slicer is needed: :meth:`Terminology.serialized` writes Slicer's
serialized terminology entry (the form a ``.seg.nrrd`` and a colour table keep) as plain text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

TABLE_PATH = Path(__file__).with_name("terminology.json")

Code = tuple[str, str, str]  # coding scheme designator, code value, code meaning
EMPTY_CODE: Code = ("", "", "")


def _concept(code: Code) -> str:
    return "^".join(code)


@dataclass(frozen=True)
class Terminology:
    """What a typed target becomes: the segment's name, colour (0-1 RGB) and codes; ``model_text`` is the name the
    model is asked for (the entry's name, lower case; the phrase as typed when unknown); ``note`` is non-empty when
    the user should be told something (an unknown term)."""

    name: str
    model_text: str
    colour: tuple[float, float, float]
    context: str
    category: Code
    type: Code
    modifier: Code = EMPTY_CODE
    note: str = ""

    @property
    def is_generic(self) -> bool:
        return bool(self.note)

    def serialized(self) -> str:
        """Slicer's serialized terminology entry, ``context~category~type~modifier~anatomic context~region~region
        modifier`` with each concept ``scheme^value^meaning`` (vtkSlicerTerminologiesModuleLogic::
        SerializeTerminologyEntry writes the same string)."""
        return (f"{self.context}~{_concept(self.category)}~{_concept(self.type)}~{_concept(self.modifier)}"
                f"~~{_concept(EMPTY_CODE)}~{_concept(EMPTY_CODE)}")


def parse_serialized(serialized: str) -> tuple[str, Code, Code, Code] | None:
    """(context, category, type, modifier) of a serialized Slicer terminology entry; None when it holds no type."""
    parts = (serialized or "").split("~")
    if len(parts) < 4:
        return None

    def code(text: str) -> Code:
        values = (text.split("^") + ["", "", ""])[:3]
        return (values[0], values[1], values[2])

    context, category, type_, modifier = parts[0], code(parts[1]), code(parts[2]), code(parts[3])
    if not type_[1]:
        return None
    return context, category, type_, modifier


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
        self.sides: dict[str, str] = {}  # spelling -> side name ("left" / "right")
        self._side_codes: dict[str, Code] = {}
        for side, spec in table["sides"].items():
            self._side_codes[side] = tuple(spec["code"])
            for spelling in spec["spellings"]:
                self.sides[spelling] = side
        self.entries: list[dict] = list(table["entries"])
        self._entries = {}  # sorted words of a spelling -> entry
        for entry in self.entries:
            for spelling in [entry["name"], *entry["spellings"]]:
                self._entries.setdefault(_key(_normalise(spelling)), entry)

    def _context_name(self, entry: dict) -> str:
        """The Slicer terminology context an entry comes from ("" for a concept in no Slicer list)."""
        key = entry.get("context")
        return self._contexts[key] if key else ""

    @classmethod
    def load(cls, path: Path = TABLE_PATH) -> "TerminologyTable":
        return cls(json.loads(Path(path).read_text(encoding="utf-8")))

    def _terminology(self, entry: dict, side: str | None) -> Terminology:
        name = entry["name"]
        modifier = EMPTY_CODE
        if side is not None:
            name = f"{side.capitalize()} {name[0].lower()}{name[1:]}"
            modifier = self._side_codes[side]
        return Terminology(name=name, model_text=name.lower(), colour=tuple(c / 255.0 for c in entry["colour"]),
                           context=self._context_name(entry), category=tuple(entry["category"]),
                           type=tuple(entry["type"]), modifier=modifier)

    def lookup(self, typed: str) -> Terminology | None:
        """The table's entry for a typed phrase (with its side), or None when the table does not know it."""
        words = _normalise(typed)
        entry = self._entries.get(_key(words))
        if entry is not None:
            return self._terminology(entry, None)
        side_words = [w for w in words if w in self.sides]
        rest = [w for w in words if w not in self.sides]
        if len(side_words) == 1 and rest:
            entry = self._entries.get(_key(rest))
            if entry is not None and entry.get("lateral"):
                return self._terminology(entry, self.sides[side_words[0]])
        return None

    def resolve(self, typed: str) -> Terminology:
        """The terminology of one typed target phrase: its entry, else the generic code with a note."""
        found = self.lookup(typed)
        if found is not None:
            return found
        phrase = " ".join(typed.split())
        generic = self._generic
        return Terminology(name=phrase[:1].upper() + phrase[1:], model_text=phrase,
                           colour=tuple(c / 255.0 for c in generic["colour"]), context=self.context,
                           category=tuple(generic["category"]), type=tuple(generic["type"]),
                           note=f"'{phrase}' is not in the terminology table: the segment was made and coded "
                                f"generically as '{generic['type'][2]}' (SNOMED CT {generic['type'][1]}). "
                                "Set its terminology in the Segment Editor if it should carry a specific code.")

    def is_side(self, text: str) -> bool:
        """Whether a fragment is only side words ("left", "R", "sin", ...), as in a terminology name "Kidney, left"."""
        words = _normalise(text)
        return bool(words) and all(word in self.sides for word in words)

    def spellings(self) -> list[str]:
        """Every spelling the table knows, each lateral one also with each side word before it."""
        found = []
        for entry in self.entries:
            for spelling in [entry["name"], *entry["spellings"]]:
                found.append(spelling)
                if entry.get("lateral"):
                    found.extend(f"{side} {spelling}" for side in self.sides)
        return found


@lru_cache(maxsize=1)
def default_table() -> TerminologyTable:
    return TerminologyTable.load()
