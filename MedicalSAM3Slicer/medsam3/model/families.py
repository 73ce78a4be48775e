"""Model families as plugs: one registry from a family's name to what the family owns.

Every catalogue entry (``model_catalogue.json``) names its ``family``; a local model folder may name one in a
``medsam3_family.json`` file (``{"family": "bright-region"}``; a folder without it is a transformers SAM 3 folder). A
family's plug (:class:`ModelFamily`) says everything the engine used to know about SAM 3:

- ``load``: the model from a catalogue entry or a source (a :class:`~.segmentation_model.SegmentationModel`);
- ``choose_preprocessing`` / ``preprocessing_key``: the grey levels the model sees (intensity windows; the model
  frame's input size is the loaded model's ``image_size``, defaulting to the catalogue's);
- ``vocabulary``: the names the family was trained on, mapped onto the one terminology table (None: the
  terminology's name for what was typed, else the phrase as typed);
- ``prompt_kinds``: the most any model of the family serves (an entry's ``serves`` is a subset of it).

The interaction engine, the transports and the applications ask the plug (:func:`family`, :func:`family_of_source`)
and import no family's code. Adding a family: a package ``medsam3/model/<family>/`` with a ``plug.py`` defining
``FAMILY``, one line in :data:`_PLUGS`, and catalogue entries naming it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..errors import ModelNotFoundError
from .family_plug import LoadRequest, ModelFamily  # noqa: F401  (the plug's interface, re-exported)

if TYPE_CHECKING:  # pragma: no cover
    from .model_sources import CatalogueEntry

DEFAULT_FAMILY = "sam3"
FOLDER_FAMILY_FILE = "medsam3_family.json"  # {"family": "<name>"} in a local model folder


class UnknownFamilyError(ModelNotFoundError):
    """A catalogue entry or a model folder names a family this installation does not know."""


def _sam3() -> ModelFamily:
    from .sam3.plug import FAMILY

    return FAMILY


def _bright_region() -> ModelFamily:
    from .bright_region.plug import FAMILY

    return FAMILY


_PLUGS: dict[str, Callable[[], ModelFamily]] = {"sam3": _sam3, "bright-region": _bright_region}


def known_families() -> tuple[str, ...]:
    return tuple(_PLUGS)


def check_family_name(name: str, where: str) -> str:
    """``name`` when it is a known family, else :class:`UnknownFamilyError` in one line naming the known ones."""
    if name not in _PLUGS:
        raise UnknownFamilyError(f"{where} names the model family {name!r}, which this medsam3 does not know; known "
                                 f"families: {', '.join(_PLUGS)}. Fix the family name (or update medsam3).")
    return name


def family(name: str = DEFAULT_FAMILY, where: str = "The model") -> ModelFamily:
    return _PLUGS[check_family_name(name, where)]()


def default_family() -> ModelFamily:
    return family(DEFAULT_FAMILY)


def folder_family_name(path: Path) -> str | None:
    """The family a local model folder names in ``medsam3_family.json``, or None when it names none."""
    marker = Path(path) / FOLDER_FAMILY_FILE
    if not marker.is_file():
        return None
    try:
        name = json.loads(marker.read_text(encoding="utf-8")).get("family")
    except (ValueError, AttributeError) as error:
        raise UnknownFamilyError(f"{marker} is not a JSON object with a \"family\" name ({error}); write "
                                 f"{{\"family\": \"<one of {', '.join(_PLUGS)}>\"}}.") from error
    return check_family_name(str(name), str(marker))


def family_of_source(source: str) -> tuple[ModelFamily, "CatalogueEntry | None"]:
    """The family of a model source and its catalogue entry: a catalogue name's ``family``, a local folder's
    ``medsam3_family.json``, else SAM 3 (Hub ids, Meta ``.pt`` files and transformers folders)."""
    from .model_sources import catalogue_entry

    entry = catalogue_entry(source)
    if entry is not None:
        return family(entry.family, f"The catalogue entry {entry.name!r}"), entry
    path = Path(source).expanduser()
    named = folder_family_name(path) if path.is_dir() else None
    return family(named or DEFAULT_FAMILY), None
