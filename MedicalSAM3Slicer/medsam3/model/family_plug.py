"""What a model family's plug is (:class:`ModelFamily`) and what its loader gets (:class:`LoadRequest`); the registry
of families is :mod:`.families`. Plugs import this module, never the registry."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # pragma: no cover
    from ..geometry.volume import Volume
    from .model_sources import CatalogueEntry
    from .preprocessing import Preprocessing
    from .segmentation_model import SegmentationModel
    from .vocabulary import Vocabulary


@dataclass(frozen=True)
class LoadRequest:
    """What a family's ``load`` gets: the source as given, its catalogue entry (None for a Hub id, a file or a
    folder), the device (already checked, for families that run on one), and the loading options."""

    source: str
    entry: "CatalogueEntry | None"
    device: str
    image_size: int | None = None
    cache_dir: str | Path | None = None
    progress: bool = True
    bf16_autocast: bool | None = None


@dataclass(frozen=True)
class ModelFamily:
    """A family's plug: how its models load, what they see, which words they know, which prompts they serve."""

    name: str
    description: str
    prompt_kinds: frozenset[str]
    load: Callable[[LoadRequest], "SegmentationModel"]
    choose_preprocessing: Callable[["Volume", str], "Preprocessing"]
    preprocessing_key: Callable[["Volume", str], object]  # targets with equal keys share the preprocessing
    vocabulary: Callable[["CatalogueEntry | None"], "Vocabulary | None"]
    runs_on_device: bool = True  # the model needs a torch device (choose_device checks the request)
    packages: tuple[str, ...] = ()  # modules whose __version__ the backend reports
    notes: Callable[["SegmentationModel", "str | Path | None"], tuple[str, ...]] = field(
        default=lambda model, cache_dir: ())  # what the user is told once the model is loaded
    trial: Callable[["SegmentationModel"], str] | None = None  # ``medsam3 models verify``: run one prompt
    verify_notes: tuple[str, ...] = ()  # what ``medsam3 models verify`` adds (sources the family cannot load)
