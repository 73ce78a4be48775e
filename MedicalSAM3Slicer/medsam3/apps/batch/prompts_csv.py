"""Clicks and boxes per case from a CSV file.

One prompt per row; a header row names the columns::

    case,kind,x,y,z,x2,y2,z2,space
    spleen_ct,point,-80.5,20,112,,,,ras
    spleen_ct,negative_point,-60,25,112,,,,ras
    brain1,box,40,60,12,90,110,12,ijk

``case`` is a case id (as the batch names it), an input file or folder name, or its path. ``kind`` is ``point``,
``negative_point`` or ``box`` (a box's second corner in x2, y2, z2). ``space`` is ``ras`` (millimetres, the
default) or ``ijk`` (voxel indices); the prompts of one case share one space. An optional ``name`` column names
the clicked object when no text is typed.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ...errors import PromptError
from ..segment_pipeline import PlacedPrompt, Triple
from .cases import Case, resolved

_KINDS = ("point", "negative_point", "box")


@dataclass(frozen=True)
class CasePrompts(PlacedPrompt):
    """One case's clicks and box (the CSV's ``space`` is ``coordinates_ijk``) and the clicked object's name."""

    name: str = ""


def _triple(row: dict, keys: Sequence[str], where: str) -> Triple:
    try:
        values = tuple(float(row.get(k) or "") for k in keys)
    except ValueError:
        raise PromptError(f"{where}: {', '.join(keys)} must be numbers, got "
                          f"{', '.join(repr(row.get(k)) for k in keys)}.") from None
    if not all(abs(v) < float("inf") for v in values):
        raise PromptError(f"{where}: coordinates must be finite numbers.")
    return values  # type: ignore[return-value]


def read_prompts_csv(path: str | Path) -> dict[str, CasePrompts]:
    """The CSV's prompts by the ``case`` value they were given for."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as stream:
            rows = list(csv.DictReader(stream))
    except OSError as error:
        raise PromptError(f"Cannot read the prompts CSV {path}: {error.strerror or error}.") from error
    except (UnicodeDecodeError, csv.Error) as error:
        raise PromptError(f"{path} is not a CSV text file ({error}): save it as CSV (UTF-8) with the columns "
                          "case,kind,x,y,z.") from None
    required = {"case", "kind", "x", "y", "z"}
    if not rows or not required <= set(rows[0]):
        raise PromptError(f"{path}: the header must name the columns case,kind,x,y,z (and x2,y2,z2 for boxes, "
                          "space for ras / ijk).")
    gathered: dict[str, dict] = {}
    for number, row in enumerate(rows, start=2):
        where = f"{path.name} line {number}"
        case, kind = (row.get("case") or "").strip(), (row.get("kind") or "").strip().lower()
        space = (row.get("space") or "ras").strip().lower()
        if not case:
            raise PromptError(f"{where}: the case column is empty.")
        if kind not in _KINDS:
            raise PromptError(f"{where}: kind must be one of {', '.join(_KINDS)}, got {kind!r}.")
        if space not in ("ras", "ijk"):
            raise PromptError(f"{where}: space must be ras or ijk, got {space!r}.")
        entry = gathered.setdefault(case, {"point": [], "negative_point": [], "box": [], "space": space, "name": ""})
        if entry["space"] != space:
            raise PromptError(f"{where}: the prompts of case {case!r} mix ras and ijk; give them all in one space.")
        corner = _triple(row, ("x", "y", "z"), where)
        entry[kind].append((corner, _triple(row, ("x2", "y2", "z2"), where)) if kind == "box" else corner)
        if len(entry["box"]) > 1:
            raise PromptError(f"{where}: case {case!r} has more than one box; one box per case.")
        entry["name"] = (row.get("name") or "").strip() or entry["name"]
    return {case: CasePrompts(tuple(e["point"]), tuple(e["negative_point"]), e["box"][0] if e["box"] else None,
                              e["space"] == "ijk", e["name"]) for case, e in gathered.items()}


def prompts_for_cases(prompts: dict[str, CasePrompts], cases: Sequence[Case]) -> dict[str, CasePrompts]:
    """The prompts by case id; a CSV row naming no case is an error (a typo would silently drop clicks)."""
    by_case: dict[str, CasePrompts] = {}
    for key, value in prompts.items():
        matches = [c for c in cases if key in (c.case_id, Path(c.source).name, c.source)
                   or resolved(key) == resolved(c.source)]
        if len(matches) != 1:
            problem = "matches no case" if not matches else f"matches {len(matches)} cases"
            raise PromptError(f"The prompts CSV names case {key!r}, which {problem}; use a case id: "
                              f"{', '.join(c.case_id for c in cases[:8])}{' …' if len(cases) > 8 else ''}.")
        by_case[matches[0].case_id] = value
    return by_case
