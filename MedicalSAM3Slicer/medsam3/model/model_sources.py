"""Where model weights come from: one resolver for the Slicer module, the command line and the server.

A model source is one of
- a catalogue name (``medical-sam3-2d``, ``medical-sam3-3d``, ``sam3``, ``tiny-random``);
- a Hugging Face Hub repository id (``owner/name``, optionally ``owner/name:file.pt`` for a Meta-format file),
  downloaded through ``huggingface_hub`` and its cache (``HF_TOKEN``, ``HF_HUB_OFFLINE`` and ``HF_HOME`` are
  honoured; a download shows progress);
- a local directory in transformers format;
- a Meta-format ``.pt`` / ``.pth`` checkpoint file, converted once into a transformers-format directory in the
  engine's cache and loaded from there afterwards.
``tiny-random`` builds tiny random-weight models and is used only when asked for by name.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import CheckpointError, MedSam3Error, ModelAccessError, ModelNotFoundError

CATALOGUE_PATH = Path(__file__).with_name("model_catalogue.json")
TINY_RANDOM = "tiny-random"
META_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")


@dataclass(frozen=True)
class CatalogueEntry:
    name: str
    description: str
    family: str  # a name in medsam3.model.families (the plug that loads it)
    format: str  # how its family finds the weights: "meta-checkpoint" | "transformers" | "tiny-random" | "built-in"
    image_size: int
    repository: str = ""
    filename: str = ""
    download_bytes: int = 0
    licence: str = ""
    licence_url: str = ""
    serves: tuple[str, ...] = ()  # prompt kinds, keys of medsam3.model.capabilities.CATALOGUE_KEYS
    volume_text_protocol: str = ""  # a name in medsam3.model.text_protocol.PROTOCOLS ("" = the default)
    training_vocabulary: bool = True  # typed names are mapped to Medical SAM3's training names (vocabulary.py)

    @property
    def source(self) -> str:
        return self.name

    @property
    def capabilities(self) -> frozenset[str]:
        from .prompt_kinds import from_catalogue

        return from_catalogue(self.serves)


@dataclass(frozen=True)
class ResolvedModel:
    """A model ready to load: a transformers-format directory and what it is."""

    name: str
    path: Path
    image_size: int | None
    origin: str  # "catalogue", "hub", "local directory", "meta checkpoint", "tiny-random"


def _catalogue() -> dict:
    return json.loads(CATALOGUE_PATH.read_text())


def list_models() -> list[CatalogueEntry]:
    """The models the extension knows by name (each entry's family is checked when it is loaded:
    :func:`medsam3.model.families.family_of_source`)."""
    return [CatalogueEntry(**{**entry, "serves": tuple(entry.get("serves", ()))}) for entry in _catalogue()["models"]]


DEFAULT_MODEL_SOURCE: str = _catalogue()["default"]


def catalogue_entry(name: str) -> CatalogueEntry | None:
    return next((entry for entry in list_models() if entry.name == name), None)


def cache_directory(cache_dir: str | Path | None = None) -> Path:
    """The engine's own cache (converted checkpoints, tiny models): ``cache_dir``, ``$MEDSAM3_CACHE`` or
    ``~/.cache/medsam3``. Hub downloads stay in the Hugging Face cache."""
    path = Path(cache_dir or os.environ.get("MEDSAM3_CACHE") or Path.home() / ".cache" / "medsam3")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _is_transformers_directory(path: Path) -> bool:
    return (path / "config.json").exists() or any((path / role / "config.json").exists() for role in
                                                  ("sam3", "sam3_tracker", "sam3_tracker_video", "sam3_video"))


def _file_identity(path: Path) -> str:
    """A short digest naming a checkpoint file's conversion (path, size and modification time: hashing 10 GB
    on every start would cost minutes)."""
    stat = path.stat()
    text = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def convert_checkpoint(pt_path: str | Path, out_dir: str | Path | None = None, dtype: str = "float32",
                       cache_dir: str | Path | None = None, image_size: int | None = None, tokenizer=None,
                       tokenizer_dir: str | Path | None = None) -> Path:
    """Convert a Meta-format checkpoint into a transformers-format directory (weights and processor files) once;
    later calls reuse it. ``tokenizer`` defaults to SAM 3's CLIP tokenizer from ``tokenizer_dir`` (a folder of
    CLIP tokenizer files), else from the Hugging Face cache or the Hub; without one nothing is converted."""
    from .sam3.meta_checkpoint import convert_meta_checkpoint
    from .sam3.processors import load_clip_tokenizer, write_processor_files

    pt_path = Path(pt_path)
    if not pt_path.is_file():
        raise ModelNotFoundError(f"Checkpoint {pt_path} does not exist.")
    if out_dir is None:
        out_dir = cache_directory(cache_dir) / "converted" / f"{pt_path.stem}-{_file_identity(pt_path)}-{dtype}"
    out_dir = Path(out_dir)
    if tokenizer is None and not (out_dir / "processor_config.json").exists():
        tokenizer = load_clip_tokenizer(tokenizer_dir)  # before the heavy work: refuse early, write nothing
    if not ((out_dir / "config.json").exists() and (out_dir / "model.safetensors").exists()):
        import torch

        torch_dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}.get(dtype)
        if torch_dtype is None:
            raise CheckpointError(f"Unknown dtype {dtype!r} for conversion; use float32, float16 or bfloat16.")
        convert_meta_checkpoint(pt_path, out_dir, dtype=torch_dtype)
    if not (out_dir / "processor_config.json").exists():
        write_processor_files(out_dir, image_size or 1008, tokenizer)
    return out_dir


def _hub_error(error: Exception, repository: str) -> Exception:
    """Turn huggingface_hub's exceptions into one clear message saying what to do."""
    from huggingface_hub import errors as hub_errors

    if isinstance(error, hub_errors.GatedRepoError):
        return ModelAccessError(f"{repository} is gated: accept its licence on the Hugging Face Hub with your "
                                "account, then set HF_TOKEN to an access token of that account.")
    if isinstance(error, hub_errors.RepositoryNotFoundError):
        hint = "" if os.environ.get("HF_TOKEN") else " (if it is private, set HF_TOKEN)"
        return ModelNotFoundError(f"No model {repository!r} on the Hugging Face Hub{hint}. Check the name, or give "
                                  "a local directory or a .pt checkpoint file.")
    if isinstance(error, (hub_errors.OfflineModeIsEnabled, hub_errors.LocalEntryNotFoundError)) or \
            "connect" in type(error).__name__.lower() or "timeout" in type(error).__name__.lower():
        return ModelAccessError(f"{repository} is not in the local cache and cannot be downloaded (no network, or "
                                "HF_HUB_OFFLINE is set). Download it on a machine with internet access "
                                "('medsam3 models download'), copy the cache, or give a local directory or .pt file.")
    if isinstance(error, hub_errors.EntryNotFoundError):
        return ModelNotFoundError(f"{repository} has no such file: {error}.")
    return ModelAccessError(f"Could not download {repository}: {error}")


def hub_download_path(repository: str, filename: str, cache_dir: str | Path | None = None) -> Path:
    """Where :func:`download_catalogue_file` keeps a Hub file: the engine's cache, one folder per repository."""
    return cache_directory(cache_dir) / "downloads" / repository.replace("/", "--") / filename


def _downloaded_file(repository: str, filename: str, cache_dir: str | Path | None = None) -> Path | None:
    """A Hub file already on this machine: in the engine's resumable-download cache or the Hugging Face cache."""
    ours = hub_download_path(repository, filename, cache_dir)
    if ours.is_file():
        return ours
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    cached = try_to_load_from_cache(repository, filename, cache_dir=os.environ.get("HF_HUB_CACHE") or None)
    return Path(cached) if isinstance(cached, str) else None


def download_notice(source: str | None = None, cache_dir: str | Path | None = None) -> str:
    """What the first load of a catalogue model will download, with its size and licence status, to ask the user
    before it starts; "" when nothing needs downloading (not a catalogue model, or already here)."""
    entry = catalogue_entry((source or DEFAULT_MODEL_SOURCE).strip())
    if entry is None or not entry.repository:
        return ""
    if _downloaded_file(entry.repository, entry.filename or "config.json", cache_dir) is not None:
        return ""
    from .resumable_download import format_bytes

    what = f"{entry.repository}/{entry.filename}" if entry.filename else entry.repository
    converted = " and converts it once (a few minutes)" if entry.format == "meta-checkpoint" else ""
    return (f"The model '{entry.name}' is not on this computer yet. Loading it first downloads "
            f"{format_bytes(entry.download_bytes)} from the Hugging Face Hub ({what}){converted}. "
            f"Stop cancels the download; the next 'Load model' resumes it.\n"
            f"Licence: {entry.licence}" + (f" ({entry.licence_url})" if entry.licence_url else "") + "\nDownload now?")


def download_catalogue_file(source: str | None = None, cache_dir: str | Path | None = None, progress=None,
                            should_stop=None) -> Path | None:
    """Download a catalogue model's checkpoint file with progress in bytes, resumably and stoppably
    (:mod:`.resumable_download`); None for a model that is not one Hub file. :func:`resolve_model` then finds it."""
    from .resumable_download import download_hub_file

    entry = catalogue_entry((source or DEFAULT_MODEL_SOURCE).strip())
    if entry is None or not entry.repository or not entry.filename:
        return None
    found = _downloaded_file(entry.repository, entry.filename, cache_dir)
    if found is not None:
        return found
    options = {key: value for key, value in (("progress", progress), ("should_stop", should_stop)) if value}
    try:
        return download_hub_file(entry.repository, entry.filename,
                                 hub_download_path(entry.repository, entry.filename, cache_dir), **options)
    except MedSam3Error:
        raise
    except Exception as error:  # huggingface_hub raises many kinds; each becomes one clear message
        raise _hub_error(error, entry.repository) from error


def download_model(source: str, cache_dir: str | Path | None = None, progress: bool = True) -> Path:
    """Fetch a Hub model (or one file of it) into the Hugging Face cache; returns the local path. A file the
    resumable download (:func:`download_catalogue_file`) completed is used from the engine's cache."""
    from huggingface_hub import hf_hub_download, snapshot_download

    entry = catalogue_entry(source)
    repository, filename = (entry.repository, entry.filename) if entry else (source.split(":", 1) + [""])[:2]
    if not repository:
        raise ModelNotFoundError(f"{source!r} is not downloaded from the Hub.")
    if filename:
        if hub_download_path(repository, filename, cache_dir).is_file():
            return hub_download_path(repository, filename, cache_dir)
    if not progress:
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        if filename:
            return Path(hf_hub_download(repository, filename))
        return Path(snapshot_download(repository, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model"]))
    except Exception as error:  # huggingface_hub raises many kinds; each becomes one clear message
        raise _hub_error(error, repository) from error


def resolve_model(source: str | None = None, cache_dir: str | Path | None = None,
                  progress: bool = True) -> ResolvedModel:
    """Any model source -> a transformers-format directory on this machine (downloading or converting once)."""
    source = (source or DEFAULT_MODEL_SOURCE).strip()
    from .prompt_kinds import UNSUPPORTED_CHECKPOINTS

    for name, message in UNSUPPORTED_CHECKPOINTS.items():
        if source.endswith(name):
            raise CheckpointError(message)
    if source == TINY_RANDOM:
        from .sam3.tiny_models import TINY_IMAGE_SIZE, save_tiny_models

        directory = cache_directory(cache_dir) / TINY_RANDOM
        save_tiny_models(directory)
        return ResolvedModel(TINY_RANDOM, directory, TINY_IMAGE_SIZE, "tiny-random")

    entry = catalogue_entry(source)
    if entry is not None and entry.family != "sam3":
        raise ModelNotFoundError(f"{entry.name} is a {entry.family} model, not a SAM 3 folder: load it with "
                                 "medsam3.model.families.family_of_source.")
    if entry is not None:
        if entry.format == "meta-checkpoint":
            checkpoint = download_model(source, cache_dir, progress)
            return ResolvedModel(entry.name, convert_checkpoint(checkpoint, cache_dir=cache_dir,
                                                                image_size=entry.image_size), entry.image_size,
                                 "catalogue")
        return ResolvedModel(entry.name, download_model(entry.repository, cache_dir, progress), entry.image_size,
                             "catalogue")

    path = Path(source).expanduser()
    if path.is_dir():
        if not _is_transformers_directory(path):
            raise ModelNotFoundError(f"{path} is a folder without a transformers model (no config.json): give a "
                                     "folder saved with save_pretrained, a .pt checkpoint or a Hub id.")
        return ResolvedModel(path.name, path, None, "local directory")
    if path.suffix in META_CHECKPOINT_SUFFIXES:
        if not path.is_file():
            raise ModelNotFoundError(f"Checkpoint file {path} does not exist.")
        return ResolvedModel(path.stem, convert_checkpoint(path, cache_dir=cache_dir), None, "meta checkpoint")
    if source.count("/") == 1 and not path.exists() and not source.startswith((".", "/")):
        repository, _, filename = source.partition(":")
        local = download_model(source, cache_dir, progress)
        if filename:
            return ResolvedModel(source, convert_checkpoint(local, cache_dir=cache_dir), None, "hub")
        return ResolvedModel(source, local, None, "hub")
    known = ", ".join(entry.name for entry in list_models())
    raise ModelNotFoundError(f"Unknown model {source!r}: use one of {known}, a Hub id (owner/name), a local "
                             "transformers folder, or a Meta-format .pt file.")
