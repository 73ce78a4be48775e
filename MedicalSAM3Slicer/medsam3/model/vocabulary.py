"""Typed target names -> the class names Medical SAM3 was trained on (``model_vocabulary.json``).

Medical SAM3's authors train on about 80 short class names ("Liver", "Left kidney", "Liver tumors", ...) and
report that prompts outside that list fail (AIM-Research-Lab/Medical-SAM3 at commit 57c2d35,
``medical/evaluation/eval_common.py`` ``_TRAIN_QUERY_VOCAB``, the 82 names copied verbatim into
``model_vocabulary.json``; ``medical/evaluation/docs/RESULTS.md``: 371 of 2145 validation volumes dropped because
their text could not be mapped to a training name). So the engine's text path sends the model the training name
for what the user typed: synonyms, abbreviations, plurals, British spellings and Slicer terminology names
("L kidney", "kidney, left", "hepatic tumour") all reach it. The user's segment keeps the typed name; a name with
no match is sent as typed, with a one-line note listing the nearest training names.

The vocabulary maps onto the one terminology (:mod:`medsam3.terminology`): its side words are the terminology's, and
a typed name the terminology knows is matched by the terminology's name for it ("sin kidney" -> "left kidney" ->
"Left kidney"), so the class the model is asked for and the code the segment gets always agree. A class that has a
terminology entry takes its synonyms from there; ``model_vocabulary.json`` lists synonyms only for the others, and
loading refuses a synonym that would code a segment differently from the class it asks for.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..terminology import TerminologyTable, default_table

VOCABULARY_PATH = Path(__file__).parent / "sam3" / "model_vocabulary.json"
_FILLER_WORDS = {"the", "of", "and", "a", "an", "s"}


@dataclass(frozen=True)
class VocabularyMatch:
    """What the model is asked for a typed phrase, and a note for the user when it is not a training name."""

    typed: str
    model_text: str
    note: str = ""

    @property
    def known(self) -> bool:
        return not self.note


def _singular(word: str) -> str:
    if word.endswith("ae") and len(word) > 4:  # vertebrae
        return word[:-1]
    if word.endswith("ies") and len(word) > 4:  # arteries, hyperintensities, primaries
        return word[:-3] + "y"
    if word.endswith("s") and len(word) > 3 and not word.endswith(("ss", "us", "is", "as")):
        return word[:-1]
    return word


class Vocabulary:
    """Matches typed phrases against the training names: exactly after normalisation, then ignoring words
    such as "gland" or "cavity" when that leaves one candidate."""

    def __init__(self, table: dict, terminology: TerminologyTable | None = None, label: str = "Medical SAM3",
                 source: str = VOCABULARY_PATH.name):
        """``label`` names the model in notes ("... not one of the class names <label> was trained on"); ``source``
        names the file in errors."""
        self.names: list[str] = list(table["names"])
        self.label, self.source = label, source
        self.terminology = terminology or default_table()
        self._sides = dict(self.terminology.sides)  # spelling -> "left" / "right"
        self._words = dict(table["word_synonyms"])
        self._optional = set(table["optional_words"])
        self._exact: dict[tuple[str, ...], str] = {}
        self._loose: dict[tuple[str, ...], set[str]] = {}
        spellings = [(name, name) for name in self.names]
        spellings += [(spelling, name) for name, alternatives in table["synonyms"].items() for spelling in alternatives]
        for spelling, name in spellings:
            if name not in self.names:
                raise ValueError(f"{self.source}: synonym target {name!r} is not a training name")
            self._check_coded_alike(spelling, name)
            key = self.key(spelling)
            self._exact.setdefault(key, name)  # the first spelling of a key wins ("Left Atrium" / "Left atrium")
            self._loose.setdefault(self._without_optional(key), set()).add(name)

    def _check_coded_alike(self, spelling: str, name: str) -> None:
        """A synonym of a class the terminology codes must be coded the same (else the segment would carry another
        code than the class the model is asked for): it belongs in the terminology's spellings of that entry."""
        if spelling == name:
            return
        concept = self.terminology.lookup(name)
        found = self.terminology.lookup(spelling)
        if concept is not None and (found is None or (found.type, found.modifier) != (concept.type, concept.modifier)):
            raise ValueError(f"{self.source}: synonym {spelling!r} of {name!r} belongs in the terminology's "
                             f"spellings of {concept.name!r} (medsam3/terminology/terminology.json)")

    @classmethod
    def load(cls, path: Path = VOCABULARY_PATH, label: str = "Medical SAM3") -> "Vocabulary":
        return cls(json.loads(Path(path).read_text(encoding="utf-8")), label=label, source=Path(path).name)

    def key(self, text: str) -> tuple[str, ...]:
        """Lower case, punctuation and filler words out, British spellings and adjectives to one word, plurals
        to singular, side words to "left" / "right"; order does not matter."""
        words = re.sub(r"[^a-z0-9]+", " ", text.lower()).split()
        normalised = set()
        for word in words:
            if word in self._sides:
                normalised.add(self._sides[word])
                continue
            word = self._words.get(word, word)
            word = self._words.get(_singular(word), _singular(word))
            if word not in _FILLER_WORDS:
                normalised.add(word)
        return tuple(sorted(normalised))

    def _without_optional(self, key: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(word for word in key if word not in self._optional)

    def match(self, typed: str) -> VocabularyMatch:
        """The training name for a typed phrase, or the phrase itself with a note naming the nearest names. A phrase
        the terminology knows is matched by the terminology's name for it first."""
        typed = " ".join(typed.split())
        concept = self.terminology.lookup(typed)
        if concept is None:
            return self._match_spelling(typed)
        named = self._match_spelling(concept.model_text)  # what the Slicer module sends for it, too
        return VocabularyMatch(typed, named.model_text, named.note)

    def _match_spelling(self, typed: str) -> VocabularyMatch:
        key = self.key(typed)
        if key in self._exact:
            return VocabularyMatch(typed, self._exact[key])
        candidates = self._loose.get(self._without_optional(key), set())
        if len(candidates) == 1:
            return VocabularyMatch(typed, next(iter(candidates)))
        nearest = sorted(candidates) if candidates else self.nearest(typed)
        return VocabularyMatch(typed, typed, f"'{typed}' is not one of the class names {self.label} was trained "
                                             f"on, so the model may find nothing; it was sent as typed. Nearest "
                                             f"trained names: {', '.join(nearest)}.")

    def nearest(self, typed: str, count: int = 3) -> list[str]:
        """The training names closest to a phrase: shared normalised words first, then spelling similarity."""
        key = set(self.key(typed))
        text = " ".join(sorted(key))

        def closeness(name: str) -> tuple[float, float]:
            words = set(self.key(name))
            shared = len(key & words) / max(1, len(key | words))
            return shared, difflib.SequenceMatcher(None, text, " ".join(sorted(words))).ratio()

        return sorted(self.names, key=closeness, reverse=True)[:count]

    def is_side(self, text: str) -> bool:
        """Whether a fragment is only a side word ("left", "R", ...), as in a terminology name "Kidney, left"."""
        return self.terminology.is_side(text)


@lru_cache(maxsize=1)
def medical_sam3_vocabulary() -> Vocabulary:
    return Vocabulary.load()
