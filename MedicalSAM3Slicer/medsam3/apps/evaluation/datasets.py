"""Labelled data in the three formats ``medsam3 evaluate`` reads, as cases of (volume, label array, names).

- an nnU-Net / Medical Segmentation Decathlon folder: ``imagesTr/``, ``labelsTr/`` and ``dataset.json`` with the
  label names (MSD's ``{"1": "spleen"}`` or nnU-Net v2's ``{"spleen": 1}``), the first channel of each image;
- a folder of image/label pairs: ``images/`` and ``labels/`` with matching file names, and a label-name file
  ``labels.json`` (``{"1": "liver"}``) or ``labels.txt`` (``1 liver`` per line);
- in both folder formats a label file may be a Slicer segmentation (``NAME.seg.nrrd``): its segments are matched to
  the label names by segment name (without a label-name file, the first one's segments name the structures);
- the CVPR challenge's ``.npz`` files (``imgs`` and ``gts`` as (D, H, W), ``spacing`` as (x, y, z) mm, optional
  ``direction`` / ``origin`` as SimpleITK writes them, optional ``text_prompts``), a folder of them or one file.
Label names can always be given or overridden with ``--labels`` (a file as above, or ``1=liver,2=spleen``).
Cases are read one at a time, when the run reaches them.
"""

from __future__ import annotations

import json
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ...errors import MedSam3Error
from ...geometry.volume import LPS_TO_RAS, Volume
from ...files.seg_nrrd import SEG_NRRD_SUFFIX, read_seg_nrrd, read_segment_names
from ...files.image_files import DATA_SET_DESCRIPTION, IMAGE_SUFFIXES, is_data_set
from ...files.volume_io import ijk_to_ras_from_image, read_image

LABEL_FILES = ("labels.json", "labels.txt")
_MR_CHANNELS = re.compile(r"\b(mr|mri|t1|t1w|t1c|t1gd|t2|t2w|flair|adc|dwi|pd|bold|lge)\b", re.IGNORECASE)


class DatasetError(MedSam3Error):
    """Labelled data that cannot be evaluated as given."""


@dataclass(frozen=True)
class Structure:
    value: int
    name: str


@dataclass
class LoadedCase:
    case_id: str
    volume: Volume
    labels: np.ndarray  # (K, J, I) integers on the volume's grid
    spacing_kji: tuple[float, float, float]  # mm per numpy axis, for surface distances


@dataclass(frozen=True)
class CaseSource:
    case_id: str
    load: Callable[[], LoadedCase]


@dataclass
class Dataset:
    path: Path
    format: str  # "nnunet", "pairs", "npz"
    structures: list[Structure]
    cases: list[CaseSource]


def _stem(path: Path) -> str:
    for suffix in (SEG_NRRD_SUFFIX,) + IMAGE_SUFFIXES + (".npz",):
        if path.name.endswith(suffix):
            return path.name[:-len(suffix)]
    return path.stem


def _image_files(folder: Path) -> list[Path]:
    """Images, and label files (a ``.seg.nrrd`` among them)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                  and p.name.endswith(IMAGE_SUFFIXES))


def clean_name(name: str) -> str:
    """A label name as one typed phrase (commas and semicolons would split it into several)."""
    return " ".join(re.sub(r"[,;\n]", " ", str(name)).split())


def _structures_from_mapping(mapping: dict, source: str) -> list[Structure]:
    if not isinstance(mapping, dict):
        raise DatasetError(f"{source}: the label names must be a mapping such as {{\"1\": \"liver\"}}, not a "
                           f"{type(mapping).__name__}.")
    structures = {}
    for key, value in mapping.items():
        number, name = (key, value) if str(key).strip().lstrip("-").isdigit() else (value, key)
        if isinstance(number, (list, tuple)):
            continue  # an nnU-Net region (several labels), not one structure
        try:
            number = int(number)
        except (TypeError, ValueError) as error:
            raise DatasetError(f"{source}: label {key!r}: {value!r} is not a number and a name; write it as "
                               '{"1": "liver"}.') from error
        if number != 0 and clean_name(name) and clean_name(name).lower() != "background":
            structures[number] = Structure(number, clean_name(name))
    if not structures:
        raise DatasetError(f"{source} names no label other than background: give names such as 1=liver.")
    return [structures[n] for n in sorted(structures)]


def parse_label_names(text_or_file: str | Path) -> list[Structure]:
    """``labels.json``, ``labels.txt`` (``1 liver`` or ``1,liver`` per line) or inline ``1=liver,2=spleen``."""
    path = Path(text_or_file)
    if path.is_file():
        text = _read_text(path, 'label names ({"1": "liver"}, or "1 liver" per line)')
        if path.suffix == ".json":
            try:
                mapping = json.loads(text)
            except ValueError as error:
                raise DatasetError(f"{path} is not valid JSON ({error}).") from error
            return _structures_from_mapping(mapping.get("labels", mapping) if isinstance(mapping, dict)
                                            else mapping, str(path))
        pairs = [re.split(r"[\s,=:]+", line.strip(), maxsplit=1) for line in text.splitlines()
                 if line.strip() and not line.startswith("#")]
        return _structures_from_mapping({p[0]: p[1] if len(p) > 1 else "" for p in pairs}, str(path))
    if "=" not in str(text_or_file):
        raise DatasetError(f"--labels {text_or_file!r} is neither a file nor names like 1=liver,2=spleen.")
    pairs = [item.split("=", 1) for item in str(text_or_file).split(",") if item.strip()]
    if any(len(pair) != 2 for pair in pairs):
        raise DatasetError(f"--labels {text_or_file!r}: write every label as number=name, e.g. 1=liver,2=spleen.")
    return _structures_from_mapping({k.strip(): v.strip() for k, v in pairs}, "--labels")


def _modality_from_channel(channel: str) -> str | None:
    if re.search(r"\bct\b", channel, re.IGNORECASE):
        return "CT"
    if _MR_CHANNELS.search(channel):
        return "MR"
    return None


def _read_first_channel(path: Path, modality: str | None) -> Volume:
    """An image file as a volume; of a 4D (multi-channel) image, the first channel."""
    import SimpleITK as sitk

    image = read_image(path)
    if image.GetDimension() == 4:
        size = list(image.GetSize())
        image = sitk.Extract(image, size[:3] + [0], [0, 0, 0, 0])
    if image.GetDimension() != 3:
        raise DatasetError(f"{path} is a {image.GetDimension()}D image; a 3D volume is needed.")
    array = sitk.GetArrayFromImage(image)
    if array.ndim == 4:
        array = array[..., 0]
    if modality is None:
        modality = "CT" if array.dtype.kind in "if" and array.min() <= -900 else "MR"
    return Volume(array, ijk_to_ras_from_image(image), modality=modality, name=path.name)


def _reordering(image: Volume, labels: Volume) -> tuple[tuple[int, int, int], tuple[bool, bool, bool]] | None:
    """How to reorder a label array stored in another index order onto the image's voxels: for each image axis
    (i, j, k), the label axis holding it and whether it runs backwards. None unless both files hold the very same
    voxel centres (axes swapped or flipped only, as when one tool writes LPS and another RAS)."""
    mapping = np.linalg.inv(labels.ijk_to_ras) @ image.ijk_to_ras  # image ijk -> label ijk
    rotation, offset = mapping[:3, :3], mapping[:3, 3]
    signed = np.rint(rotation)
    if not (np.allclose(rotation, signed, atol=1e-3) and np.allclose(offset, np.rint(offset), atol=1e-3)
            and sorted(np.abs(signed).sum(axis=0)) == [1, 1, 1] and sorted(np.abs(signed).sum(axis=1)) == [1, 1, 1]):
        return None
    axes, flips = [], []
    for image_axis in range(3):
        label_axis = int(np.flatnonzero(signed[:, image_axis])[0])
        backwards = signed[label_axis, image_axis] < 0
        size = image.shape_ijk[image_axis]
        if labels.shape_ijk[label_axis] != size or round(offset[label_axis]) != (size - 1 if backwards else 0):
            return None
        axes.append(label_axis)
        flips.append(bool(backwards))
    return tuple(axes), tuple(flips)


def _labels_on_image_grid(image: Volume, labels: Volume, label_path: Path) -> np.ndarray:
    """The label values at the image's voxels, as a (K, J, I) array. A label file holding the same voxels in
    another index order is reordered exactly (no interpolation); any other grid is refused."""
    tolerance = 1e-3 * float(np.max(image.spacing)) + 1e-4
    if image.array.shape == labels.array.shape and np.allclose(image.ijk_to_ras, labels.ijk_to_ras,
                                                                 atol=tolerance):
        return labels.array
    reordering = _reordering(image, labels)
    if reordering is None:
        if sorted(image.array.shape) != sorted(labels.array.shape):
            raise DatasetError(f"{label_path} has {labels.shape_ijk} voxels but its image has {image.shape_ijk}: "
                               "resample the label onto the image grid.")
        raise DatasetError(f"{label_path} has another origin, spacing or direction than its image: resample the "
                           "label onto the image grid (the masks would otherwise be compared at the wrong place).")
    axes, flips = reordering
    values = labels.array.transpose(2, 1, 0).transpose(axes)  # label (i, j, k) -> image axes
    values = values[tuple(slice(None, None, -1) if flip else slice(None) for flip in flips)]
    return np.ascontiguousarray(values.transpose(2, 1, 0))


def _segments_as_labels(label_path: Path, structures: list[Structure], voxel_count: int) -> Volume:
    """A .seg.nrrd as label values: each segment named as a structure gets that structure's value (a file whose
    header declares another number of voxels than the image's is refused before it is inflated)."""
    segmentation = read_seg_nrrd(label_path, voxel_count=voxel_count)
    by_name = {structure.name.casefold(): structure.value for structure in structures}
    values = np.zeros(segmentation.labels.array.shape, dtype=np.int32)
    found = []
    for number, name in enumerate(segmentation.segment_names, start=1):
        value = by_name.get(clean_name(name).casefold())
        if value is not None:
            values[segmentation.labels.array == number] = value
            found.append(name)
    if not found:
        raise DatasetError(f"{label_path}: none of its segments ({', '.join(segmentation.segment_names)}) is named "
                           f"as a label ({', '.join(s.name for s in structures)}); rename them or give --labels.")
    return Volume(values, segmentation.labels.ijk_to_ras, modality="OT", name=label_path.name)


def _segment_structures(label_paths: list[Path]) -> list[Structure] | None:
    """Label names from the first .seg.nrrd label file: its segments, numbered in their order."""
    first = next((p for p in label_paths if p.name.endswith(SEG_NRRD_SUFFIX)), None)
    if first is None:
        return None
    names = read_segment_names(first)  # the header only: the voxels are read with the case, against its image
    return _structures_from_mapping({str(n): name for n, name in enumerate(names, start=1)}, str(first))


def _file_case(case_id: str, image_path: Path, label_path: Path, modality: str | None,
               structures: list[Structure] = ()) -> CaseSource:
    def load() -> LoadedCase:
        volume = _read_first_channel(image_path, modality)
        if label_path.name.endswith(SEG_NRRD_SUFFIX):
            labels = _segments_as_labels(label_path, structures, volume.array.size)
        else:
            labels = _read_first_channel(label_path, "OT")
        values = _labels_on_image_grid(volume, labels, label_path)
        spacing = volume.spacing
        values = values if values.dtype.kind in "iu" else np.rint(values).astype(np.int32)
        return LoadedCase(case_id, volume, values, (float(spacing[2]), float(spacing[1]), float(spacing[0])))

    return CaseSource(case_id, load)


def _read_text(path: Path, holds: str) -> str:
    """A text file's content; one line naming the file when it is unreadable or not UTF-8 text."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path} cannot be read as UTF-8 text ({error}): save it as UTF-8 text with the "
                           f"{holds}.") from None


def _nnunet(folder: Path, names: list[Structure] | None) -> Dataset:
    try:
        description = json.loads(_read_text(folder / DATA_SET_DESCRIPTION, "data set's description"))
    except ValueError as error:
        raise DatasetError(f"{folder / 'dataset.json'} is not valid JSON ({error}).") from None
    if not isinstance(description, dict):
        raise DatasetError(f"{folder / 'dataset.json'} must hold an object with \"labels\" "
                           '({"background": 0, "spleen": 1}), not a ' + f"{type(description).__name__}.")
    structures = names or _structures_from_mapping(description.get("labels", {}), str(folder / "dataset.json"))
    channels = description.get("channel_names") or description.get("modality") or {}
    first_channel = str(channels.get("0", "")) if isinstance(channels, dict) else ""
    modality = _modality_from_channel(first_channel)
    images = {}
    for path in _image_files(folder / "imagesTr"):
        stem = _stem(path)
        base = re.sub(r"_0000$", "", stem)
        if base == stem and re.search(r"_\d{4}$", stem):
            continue  # another channel of a multi-channel nnU-Net case
        images[base] = path
    cases = []
    for label_path in _image_files(folder / "labelsTr"):
        case_id = _stem(label_path)
        if case_id not in images:
            raise DatasetError(f"{label_path} has no image {case_id}_0000 or {case_id} in {folder / 'imagesTr'}.")
        cases.append(_file_case(case_id, images[case_id], label_path, modality, structures))
    return Dataset(folder, "nnunet", structures, cases)


def _names_file(folder: Path) -> list[Structure] | None:
    for name in LABEL_FILES:
        if (folder / name).is_file():
            return parse_label_names(folder / name)
    return None


def _pairs(folder: Path, names: list[Structure] | None) -> Dataset:
    structures = names or _names_file(folder) or _segment_structures(_image_files(folder / "labels"))
    if structures is None:
        raise DatasetError(f"{folder} has no label-name file: add labels.json ({{\"1\": \"liver\"}}) or "
                           "labels.txt (\"1 liver\" per line), or give --labels 1=liver.")
    images = {re.sub(r"_0000$", "", _stem(p)): p for p in _image_files(folder / "images")}
    cases = []
    for label_path in _image_files(folder / "labels"):
        case_id = _stem(label_path)
        if case_id not in images:
            raise DatasetError(f"{label_path} has no image of the same name in {folder / 'images'}.")
        cases.append(_file_case(case_id, images[case_id], label_path, None, structures))
    return Dataset(folder, "pairs", structures, cases)


def npz_volume(arrays: dict, name: str) -> tuple[Volume, tuple[float, float, float]]:
    """A challenge .npz's image as a volume: spacing and (if stored) direction and origin are SimpleITK's (LPS,
    x-y-z); without them the array is taken as SimpleITK would give it with an identity direction."""
    spacing = np.asarray(arrays["spacing"], dtype=np.float64).reshape(-1)
    if spacing.size != 3 or not np.all(spacing > 0):
        raise DatasetError(f"{name}: 'spacing' must be three positive numbers (x, y, z mm); got {spacing}.")
    direction = np.asarray(arrays.get("direction", np.eye(3)), dtype=np.float64).reshape(3, 3)
    origin = np.asarray(arrays.get("origin", np.zeros(3)), dtype=np.float64).reshape(3)
    lps = np.eye(4)
    lps[:3, :3] = direction * spacing
    lps[:3, 3] = origin
    ijk_to_ras = LPS_TO_RAS @ lps
    images = np.asarray(arrays["imgs"])
    if images.ndim != 3:
        raise DatasetError(f"{name}: 'imgs' must be a 3D array (D, H, W); got shape {images.shape}.")
    modality = "CT" if images.dtype.kind in "if" and images.min() <= -900 else "OT"
    return Volume(images, ijk_to_ras, modality=modality, name=name), (spacing[2], spacing[1], spacing[0])


def _npz_case(path: Path) -> CaseSource:
    def load() -> LoadedCase:
        try:  # never unpickled: a file that is no zip of arrays (np.load would take it for a pickle) is refused
            with np.load(path, allow_pickle=False) as stored:
                arrays = {k: stored[k] for k in stored.files
                          if k in ("imgs", "gts", "spacing", "direction", "origin")}
        except (ValueError, OSError, zipfile.BadZipFile, EOFError):
            raise DatasetError(f"{path} is not a challenge .npz (a zip of the numpy arrays imgs, gts and spacing, "
                               "as numpy.savez writes it): convert it, or remove it from the data set.") from None
        missing = {"imgs", "gts", "spacing"} - set(arrays)
        if missing:
            raise DatasetError(f"{path} lacks {', '.join(sorted(missing))}: a challenge .npz holds imgs, gts and "
                               "spacing.")
        volume, spacing = npz_volume(arrays, path.name)
        if arrays["gts"].shape != volume.array.shape:
            raise DatasetError(f"{path}: 'gts' has shape {arrays['gts'].shape} but 'imgs' {volume.array.shape}.")
        labels = np.asarray(arrays["gts"])
        if labels.dtype.kind not in "iu":
            labels = np.rint(labels).astype(np.int32)
        return LoadedCase(_stem(path), volume, labels, spacing)

    return CaseSource(_stem(path), load)


class _NamesOnlyUnpickler(pickle.Unpickler):
    """A pickle reader that builds nothing but numpy's own array shell: it refuses every other class or function,
    so a pickled object can never run code (``builtins.open``, ``os.system`` ... are refused, not called)."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refused {module}.{name}")
        return super().find_class(module, name)


def _plain(value, depth: int = 0) -> bool:
    """Whether ``value`` is made only of dict / list / str / int (label names and numbers), not too deep."""
    if depth > 4:
        return False
    if isinstance(value, (str, int, np.integer)) and not isinstance(value, bool):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(_plain(k, depth + 1) and _plain(v, depth + 1) for k, v in value.items())
    return False


def _read_text_prompts(path: Path):
    """The ``text_prompts`` entry of a challenge .npz, read without unpickling anything but names: a plain string
    array through numpy (no pickle), a pickled object array through :class:`_NamesOnlyUnpickler`. None if absent."""
    with zipfile.ZipFile(path) as archive:
        if "text_prompts.npy" not in archive.namelist():
            return None
        with archive.open("text_prompts.npy") as stream:
            version = np.lib.format.read_magic(stream)
            reader = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                      else np.lib.format.read_array_header_2_0)
            shape, _, dtype = reader(stream)
            if not dtype.hasobject:
                stream.close()
                with np.load(path, allow_pickle=False) as stored:
                    return stored["text_prompts"].tolist()
            if archive.getinfo("text_prompts.npy").file_size > 1 << 20:
                raise pickle.UnpicklingError("larger than 1 MiB")
            array = _NamesOnlyUnpickler(stream).load()
    if not isinstance(array, np.ndarray):
        raise pickle.UnpicklingError("not an array")
    value = array.item() if array.ndim == 0 else array.tolist()
    if not _plain(value):
        raise pickle.UnpicklingError("holds something other than names and numbers")
    return value


def _npz_text_prompts(path: Path) -> list[Structure] | None:
    """Label names from a challenge .npz's ``text_prompts`` (``{"1": "lesion"}``); never runs pickled code."""
    try:
        prompts = _read_text_prompts(path)
    except (pickle.UnpicklingError, ValueError, EOFError, OSError, zipfile.BadZipFile, AttributeError,
            TypeError, IndexError, KeyError) as error:
        raise DatasetError(f"{path}: its text_prompts entry is not a plain mapping of label numbers to names "
                           f"({error}), and it is not read further: give the names with --labels 1=lesion or a "
                           "labels.json beside the file.") from None
    return _structures_from_mapping(dict(prompts), f"{path} text_prompts") if isinstance(prompts, dict) else None


def _npz(path: Path, names: list[Structure] | None, names_needed: bool = True) -> Dataset:
    files = [path] if path.is_file() else sorted(p for p in path.glob("*.npz") if not p.name.startswith("."))
    folder = path.parent if path.is_file() else path
    structures = names or _names_file(folder) or _npz_text_prompts(files[0])
    if structures is None and not names_needed:
        structures = []  # cvpr25 alone scores the label values present; it types no name
    if structures is None:
        raise DatasetError(f"No label names for {path}: add labels.json ({{\"1\": \"lesion\"}}) beside the .npz "
                           "files or give --labels 1=lesion.")
    return Dataset(path, "npz", structures, [_npz_case(f) for f in files])


def open_dataset(path: str | Path, labels: str | None = None, names_needed: bool = True) -> Dataset:
    """The dataset at ``path`` in whichever of the three formats it is; ``labels`` overrides label names. Without
    ``names_needed`` (only the cvpr25 protocol runs) challenge .npz files need no label names."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path} does not exist: give an nnU-Net/MSD folder, a folder with images/ and "
                           "labels/, or challenge .npz files.")
    names = parse_label_names(labels) if labels else None
    if path.is_file() and path.suffix == ".npz" or path.is_dir() and any(path.glob("*.npz")):
        dataset = _npz(path, names, names_needed)
    elif is_data_set(path) and (path / "labelsTr").is_dir():
        dataset = _nnunet(path, names)
    elif path.is_dir() and (path / "images").is_dir() and (path / "labels").is_dir():
        dataset = _pairs(path, names)
    else:
        raise DatasetError(f"{path} is not a dataset medsam3 reads: an nnU-Net/MSD folder (imagesTr/, labelsTr/, "
                           "dataset.json), a folder with images/, labels/ and labels.json, or challenge .npz files.")
    if not dataset.cases:
        raise DatasetError(f"{path} holds no labelled case.")
    return dataset
