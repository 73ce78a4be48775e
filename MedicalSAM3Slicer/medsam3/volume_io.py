"""Reading and writing volumes as files (NIfTI, NRRD, MHA, DICOM series) with SimpleITK.

SimpleITK describes images in LPS; the engine works in RAS as Slicer does. The conversion is a sign flip of the
first two world axes, done here and nowhere else.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import VolumeError
from .volume import Volume

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _sitk():
    import SimpleITK as sitk  # imported on use: Slicer has its own copy, the engine core does not need it

    return sitk


def ijk_to_ras_from_image(image) -> np.ndarray:
    """The IJK-to-RAS matrix of a SimpleITK image."""
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    matrix = np.eye(4)
    matrix[:3, :3] = direction * np.asarray(image.GetSpacing(), dtype=np.float64)
    matrix[:3, 3] = image.GetOrigin()
    return _LPS_TO_RAS @ matrix


def set_image_geometry(image, ijk_to_ras: np.ndarray) -> None:
    """Give a SimpleITK image the geometry of an IJK-to-RAS matrix."""
    lps = _LPS_TO_RAS @ np.asarray(ijk_to_ras, dtype=np.float64)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetDirection(tuple(float(v) for v in (lps[:3, :3] / spacing).reshape(-1)))
    image.SetOrigin(tuple(float(v) for v in lps[:3, 3]))


def _guess_modality(path: Path, reader_metadata: dict[str, str]) -> str:
    modality = reader_metadata.get("0008|0060", "").strip().upper()
    if modality in ("CT", "MR"):
        return modality
    return "OT"


def read_image(path: str | Path) -> "object":
    """A SimpleITK image from a file or a DICOM folder (the series with the most files)."""
    sitk = _sitk()
    path = Path(path)
    if not path.exists():
        raise VolumeError(f"{path} does not exist: give the path of a NIfTI, NRRD or MHA file or a DICOM folder.")
    try:
        if path.is_dir():
            reader = sitk.ImageSeriesReader()
            series = reader.GetGDCMSeriesIDs(str(path))
            if not series:
                raise VolumeError(f"{path} is a folder without a DICOM series: give a DICOM folder or an image file.")
            files = max((reader.GetGDCMSeriesFileNames(str(path), s) for s in series), key=len)
            reader.SetFileNames(files)
            reader.MetaDataDictionaryArrayUpdateOn()
            reader.LoadPrivateTagsOn()
            image = reader.Execute()
            image.SetMetaData("0008|0060", reader.GetMetaData(0, "0008|0060") if reader.HasMetaDataKey(0, "0008|0060")
                              else "")
            return image
        return sitk.ReadImage(str(path))
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[-1] if str(error).strip() else "unknown error"
        raise VolumeError(f"Could not read {path}: the file is corrupt or not an image SimpleITK reads "
                          f"({first_line}).") from error


def read_volume(path: str | Path, modality: str | None = None) -> Volume:
    """A file or DICOM folder as a :class:`Volume` (scalar; the first component of a vector image)."""
    image = read_image(path)
    if image.GetDimension() != 3:
        raise VolumeError(f"{path} is a {image.GetDimension()}D image; a 3D volume is needed.")
    array = _sitk().GetArrayFromImage(image)
    if array.ndim == 4:
        array = array[..., 0]
    if modality is None:
        metadata = {k: image.GetMetaData(k) for k in image.GetMetaDataKeys()}
        modality = _guess_modality(Path(path), metadata)
        if modality == "OT" and array.dtype.kind in "if" and array.min() <= -900:
            modality = "CT"  # no header says so, but air at -1000 means Hounsfield units
    return Volume(array, ijk_to_ras_from_image(image), modality=modality, name=Path(path).name)


def write_labelmap(path: str | Path, labels: np.ndarray, reference: Volume) -> None:
    """Write a (K, J, I) label array with the reference volume's exact geometry."""
    sitk = _sitk()
    if labels.shape != reference.array.shape:
        raise VolumeError(f"Label array shape {labels.shape} differs from the volume's {reference.array.shape}.")
    image = sitk.GetImageFromArray(np.ascontiguousarray(labels))
    set_image_geometry(image, reference.ijk_to_ras)
    sitk.WriteImage(image, str(path), useCompression=True)
