"""What a batch's inputs are: one :class:`Case` per image file or DICOM series.

Inputs may be image files (NIfTI, NRRD, MHA), folders (searched recursively: every image file and every DICOM
series in them), DICOM study folders (one case per series) and MSD-style ``dataset.json`` files (their
``training`` images and ``test`` entries). Case ids come from file / folder names and are stable: the same
inputs give the same ids, so a rerun finds its earlier results.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ...errors import VolumeError
from ...files.image_files import DATA_SET_LABELS, image_stem, is_data_set, is_image_file
from ...geometry.volume import Volume
from .journal import JOURNAL_NAME

RESERVED_NAMES = frozenset({JOURNAL_NAME.lower()})  # names the batch writes beside the case folders

_SKIPPED_FILE_SUFFIXES = (".json", ".csv", ".txt", ".md", ".jsonl", ".png", ".jpg", ".raw", ".zraw", ".gz", ".py",
                          ".h5", ".npz", ".xml", ".html", ".pdf")


def resolved(path: str | Path) -> str:
    """The path with links followed; as given (made absolute) when a link loops."""
    try:
        return str(Path(path).resolve())
    except (OSError, RuntimeError):  # "Symlink loop" (RuntimeError before Python 3.13)
        return os.path.abspath(path)


@dataclass(frozen=True)
class Case:
    """One volume to segment: an image file, or the files of one DICOM series."""

    case_id: str
    source: str  # the image file, or the folder holding the series
    files: tuple[str, ...] = ()  # the series' files in slice order (DICOM); empty for an image file
    series_uid: str = ""

    @property
    def is_dicom(self) -> bool:
        return bool(self.files)

    def describe(self) -> str:
        return f"{self.source} (DICOM series {self.series_uid}, {len(self.files)} files)" if self.is_dicom \
            else self.source

    def stat_digest(self) -> str:
        """A cheap digest of the input files' paths, sizes and modification times: when it is unchanged since a
        run that hashed the bytes, that hash is reused instead of reading every file again."""
        stats = [(resolved(name), os.stat(name).st_size, os.stat(name).st_mtime_ns)
                 for name in self.files or (self.source,)]
        return hashlib.sha256(json.dumps(stats).encode()).hexdigest()

    def fingerprint(self) -> str:
        """SHA-256 of the input's bytes (every file of a series, in order): equal only for the same input."""
        digest = hashlib.sha256()
        for name in self.files or (self.source,):
            digest.update(Path(name).name.encode() + b"\0")
            with open(name, "rb") as stream:
                for block in iter(lambda: stream.read(1 << 20), b""):
                    digest.update(block)
        return digest.hexdigest()


def _dicom_series(folder: Path) -> list[tuple[str, tuple[str, ...]]]:
    """(series UID, files in slice order) of every DICOM series directly in ``folder``."""
    import SimpleITK as sitk

    from ...files.volume_io import itk_warnings_off

    reader = sitk.ImageSeriesReader
    with itk_warnings_off():  # a README or other non-DICOM file beside the images makes GDCM print warnings
        return [(uid, tuple(reader.GetGDCMSeriesFileNames(str(folder), uid)))
                for uid in sorted(reader.GetGDCMSeriesIDs(str(folder)))]


def _is_file(entry: os.DirEntry) -> bool:
    """Whether a folder entry is a file; False for a link that loops or leads nowhere."""
    try:
        return entry.is_file()
    except OSError:
        return False


def _may_hold_dicom(folder: Path) -> bool:
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return False
    return any(_is_file(entry) and not entry.name.startswith(".") and
               (entry.name.lower().endswith(".dcm") or not entry.name.lower().endswith(_SKIPPED_FILE_SUFFIXES))
               and not is_image_file(Path(entry.path)) for entry in entries)


def _result_folders(folder: Path, files: list[str]) -> set[str]:
    """The case folders of a batch whose output is ``folder`` (it holds the batch's log): results, not inputs,
    also when the output folder is the input folder or inside it."""
    if JOURNAL_NAME not in files:
        return set()
    from .journal import Journal

    return {str(record.get("case")) for record in Journal(folder).records()}


def _from_folder(folder: Path) -> list[tuple[str, str, tuple[str, ...], str]]:
    found = []
    for root, directories, files in os.walk(folder):
        results = _result_folders(Path(root), files)
        if is_data_set(root):  # an nnU-Net / MSD folder: its images are cases, its labels the ground truth
            results |= set(DATA_SET_LABELS)
        directories[:] = sorted(d for d in directories if not d.startswith(".") and d not in results)
        root_path = Path(root)
        found += [(image_stem(root_path / f), str(root_path / f), (), "") for f in sorted(files)
                  if is_image_file(root_path / f)]
        if _may_hold_dicom(root_path):
            series = _dicom_series(root_path)
            for uid, series_files in series:
                name = root_path.name if len(series) == 1 else f"{root_path.name}_{uid.split('.')[-1]}"
                found.append((name, str(root_path), series_files, uid))
    return found


def _inside_data_set(dataset_json: Path, image: str) -> Path:
    """An image a dataset.json lists, as a path inside its folder; an absolute path or one that climbs out of the
    folder (``../..``, ``/etc/hostname``) is refused: a data set names its own files only."""
    folder = Path(os.path.abspath(dataset_json.parent))
    entry = Path(os.path.normpath(folder / image))
    if Path(image).is_absolute() or not entry.is_relative_to(folder):
        raise VolumeError(f"{dataset_json} lists {image!r}, which lies outside its folder {folder}: list the images "
                          "by paths inside the data set (e.g. ./imagesTr/case_001.nii.gz).")
    return entry


def _from_dataset_json(path: Path) -> list[tuple[str, str, tuple[str, ...], str]]:
    try:
        dataset = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:  # ValueError: not JSON, or not UTF-8 text
        raise VolumeError(f"{path} is not a readable dataset.json ({error}): give an MSD-style dataset.json "
                          "(UTF-8 JSON with a 'training' list of {\"image\": ...} entries).") from None
    if not isinstance(dataset, dict):
        raise VolumeError(f"{path} is not an MSD-style dataset.json (it holds a {type(dataset).__name__}, not an "
                          "object with 'training' / 'test' lists of images).")
    entries = []
    for group in ("training", "validation", "test"):
        listed = dataset.get(group) or []
        if not isinstance(listed, list):
            raise VolumeError(f"{path}: '{group}' must be a list of images (e.g. [{{\"image\": "
                              f"\"./imagesTr/case_001.nii.gz\"}}]), not a {type(listed).__name__}.")
        for entry in listed:
            image = entry.get("image") if isinstance(entry, dict) else entry
            if isinstance(image, list):  # multi-channel datasets list one file per channel: take the first
                image = image[0] if image else None
            if isinstance(image, str):
                entries.append(_inside_data_set(path, image))
    if not entries:
        raise VolumeError(f"{path} lists no images under 'training', 'validation' or 'test'.")
    missing = [str(e) for e in entries if not e.exists()]
    if missing:
        raise VolumeError(f"{path} lists {len(missing)} images that do not exist, e.g. {missing[0]}.")
    return [(image_stem(e), str(e), (), "") for e in entries]


def _unique_ids(found: list[tuple[str, str, tuple[str, ...], str]]) -> list[Case]:
    """Cases with distinct ids: a name two inputs share gets its parent folder, then a short hash of its path; a
    name the batch itself uses (its log) gets ``_case``."""
    def clean(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "case"

    names = [clean(name) for name, *_ in found]
    names = [f"{name}_case" if name.lower() in RESERVED_NAMES else name for name in names]
    for attempt in range(2):
        counts = {n: names.count(n) for n in names}
        for index, (name, source, files, uid) in enumerate(found):
            if counts[names[index]] > 1:
                key = source + uid
                names[index] = (clean(f"{Path(source).parent.name}_{names[index]}") if attempt == 0
                                else f"{names[index]}_{hashlib.sha1(key.encode()).hexdigest()[:8]}")
    return [Case(name, source, files, uid) for name, (_, source, files, uid) in zip(names, found)]


def discover_cases(inputs: Sequence[str | Path]) -> list[Case]:
    """Every case in ``inputs``, in a stable order; a clear error for an input that holds none."""
    found: list[tuple[str, str, tuple[str, ...], str]] = []
    for given in inputs:
        path = Path(given)
        if not path.exists():
            raise VolumeError(f"{path} does not exist: give image files, folders, DICOM folders or a dataset.json.")
        if path.is_dir():
            cases = _from_folder(path)
            if not cases:
                raise VolumeError(f"{path} holds no image files and no DICOM series.")
            found += cases
        elif path.name.lower().endswith(".json"):
            found += _from_dataset_json(path)
        else:
            found.append((image_stem(path), str(path), (), ""))
    seen, unique = set(), []
    for entry in found:  # the same file given twice (e.g. a file and its folder) is one case
        key = (resolved(entry[1]), entry[3])
        if key not in seen:
            seen.add(key)
            unique.append(entry)
    return _unique_ids(unique)


# --- reading a case ----------------------------------------------------------------------------------------------
def read_dicom_series(files: Iterable[str], name: str) -> Volume:
    """One DICOM series (its files in slice order) as a :class:`Volume`."""
    import SimpleITK as sitk

    from ...files.volume_io import ijk_to_ras_from_image

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(list(files))
    reader.MetaDataDictionaryArrayUpdateOn()
    try:
        image = reader.Execute()
    except RuntimeError as error:
        lines = str(error).strip().splitlines()
        raise VolumeError(f"Could not read the DICOM series in {name}: {lines[-1] if lines else error}.") from error
    if image.GetDimension() != 3:
        raise VolumeError(f"The DICOM series in {name} is not a 3D volume.")
    array = sitk.GetArrayFromImage(image)
    if array.ndim == 4:
        array = array[..., 0]
    modality = reader.GetMetaData(0, "0008|0060").strip().upper() if reader.HasMetaDataKey(0, "0008|0060") else ""
    modality = modality if modality in ("CT", "MR") else "OT"
    if modality == "OT" and array.dtype.kind in "if" and array.min() <= -900:
        modality = "CT"
    return Volume(array, ijk_to_ras_from_image(image), modality=modality, name=name)


def read_case_volume(case: Case) -> Volume:
    from ...files.volume_io import read_volume

    if case.is_dicom:
        return read_dicom_series(case.files, case.case_id)
    volume = read_volume(case.source)
    if not np.all(np.isfinite(volume.ijk_to_ras)):
        raise VolumeError(f"{case.source} has no valid geometry.")
    return volume
