"""Reading and writing volumes as files (NIfTI, NRRD, MHA, DICOM series) with SimpleITK.

SimpleITK describes images in LPS; the engine works in RAS as Slicer does. The conversion is a sign flip of the
first two world axes, done here and nowhere else.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import VolumeError
from ..geometry.volume import LPS_TO_RAS, Volume


def _sitk():
    import SimpleITK as sitk  # imported on use: Slicer has its own copy, the engine core does not need it

    return sitk


def ijk_to_ras_from_image(image) -> np.ndarray:
    """The IJK-to-RAS matrix of a SimpleITK image."""
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    matrix = np.eye(4)
    matrix[:3, :3] = direction * np.asarray(image.GetSpacing(), dtype=np.float64)
    matrix[:3, 3] = image.GetOrigin()
    return LPS_TO_RAS @ matrix


def set_image_geometry(image, ijk_to_ras: np.ndarray) -> None:
    """Give a SimpleITK image the geometry of an IJK-to-RAS matrix."""
    lps = LPS_TO_RAS @ np.asarray(ijk_to_ras, dtype=np.float64)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetDirection(tuple(float(v) for v in (lps[:3, :3] / spacing).reshape(-1)))
    image.SetOrigin(tuple(float(v) for v in lps[:3, 3]))


def _guess_modality(path: Path, reader_metadata: dict[str, str]) -> str:
    modality = reader_metadata.get("0008|0060", "").strip().upper()
    if modality in ("CT", "MR"):
        return modality
    return "OT"


@contextmanager
def itk_warnings_off() -> Iterator[None]:
    """ITK prints warnings straight to stderr (e.g. "No Series were found"); the caller reports problems itself,
    in one line."""
    sitk = _sitk()
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)


_NIFTI_FLOAT_TYPES = {16: "f4", 64: "f8", 32: "f4", 1792: "f8"}  # float32, float64, complex64/128 (as two floats)


class _NonFiniteCounter:
    """Counts NaN and infinite values among a NIfTI's floating-point voxels as the file streams past: SimpleITK's
    NIfTI reader turns them into 0 without a word (NRRD and MHA keep them, and the engine refuses them)."""

    def __init__(self, offset: int, dtype: np.dtype, voxel_bytes: int) -> None:
        self.skip, self.dtype, self.remaining = offset, dtype, voxel_bytes
        self.rest, self.count = b"", 0

    def feed(self, chunk: bytes) -> None:
        if self.skip:
            cut = min(self.skip, len(chunk))
            chunk, self.skip = chunk[cut:], self.skip - cut
        data = (self.rest + chunk)[:self.remaining] if self.rest else chunk[:self.remaining]
        whole = len(data) // self.dtype.itemsize * self.dtype.itemsize
        values = np.frombuffer(data[:whole], dtype=self.dtype)
        self.count += int(values.size - np.count_nonzero(np.isfinite(values)))
        self.rest, self.remaining = data[whole:], self.remaining - whole


def _nifti_layout(header: bytes) -> tuple[int, int, _NonFiniteCounter | None] | None:
    """(bytes the file must hold, voxel offset, a counter of non-finite float voxels or None) from a NIfTI-1 or
    NIfTI-2 header; None if the header is unreadable."""
    for order in "<>":
        if len(header) >= 348 and struct.unpack(order + "i", header[:4])[0] == 348:
            dims = struct.unpack(order + "8h", header[40:56])
            datatype, bitpix = struct.unpack(order + "2h", header[70:74])
            offset = int(struct.unpack(order + "f", header[108:112])[0])
            break
        if len(header) >= 540 and struct.unpack(order + "i", header[:4])[0] == 540:
            datatype, bitpix = struct.unpack(order + "2h", header[12:16])
            dims = struct.unpack(order + "8q", header[16:80])
            offset = struct.unpack(order + "q", header[168:176])[0]
            break
    else:
        return None
    if not 1 <= dims[0] <= 7 or bitpix <= 0:
        return None
    voxels = int(np.prod([max(1, int(d)) for d in dims[1:dims[0] + 1]], dtype=np.int64))
    offset = max(offset, len(header) if len(header) < 540 else 348)
    voxel_bytes = voxels * bitpix // 8
    counter = None
    if datatype in _NIFTI_FLOAT_TYPES:
        counter = _NonFiniteCounter(offset, np.dtype(order + _NIFTI_FLOAT_TYPES[datatype]), voxel_bytes)
    return offset + voxel_bytes, offset, counter


def _nifti_bytes_needed(header: bytes) -> int | None:
    """Header plus voxel bytes a NIfTI-1 or NIfTI-2 file must hold, from its header (None if unreadable)."""
    layout = _nifti_layout(header)
    return None if layout is None else layout[0]


_MET_SIZES = {"MET_UCHAR": 1, "MET_CHAR": 1, "MET_USHORT": 2, "MET_SHORT": 2, "MET_UINT": 4, "MET_INT": 4,
              "MET_ULONG": 4, "MET_LONG": 4, "MET_ULONG_LONG": 8, "MET_LONG_LONG": 8, "MET_FLOAT": 4, "MET_DOUBLE": 8}


def _check_metaimage_complete(path: Path) -> None:
    """Refuse a single-file MetaImage (.mha) whose voxel data is shorter than its header declares (MetaIO would
    print its own warning to the terminal before failing)."""
    with path.open("rb") as stream:
        head = stream.read(1 << 16)
    end = head.find(b"ElementDataFile")
    line_end = head.find(b"\n", end)
    if end < 0 or line_end < 0:
        return
    fields = {}
    for line in head[:line_end].decode("latin-1").splitlines():
        key, _, value = line.partition("=")
        fields[key.strip()] = value.strip()
    if fields.get("ElementDataFile") != "LOCAL" or fields.get("ElementType") not in _MET_SIZES:
        return
    try:
        voxels = int(np.prod([int(n) for n in fields.get("DimSize", "").split()], dtype=np.int64))
        needed = voxels * _MET_SIZES[fields["ElementType"]] * int(fields.get("ElementNumberOfChannels", "1"))
    except ValueError:
        return
    total = 0
    with path.open("rb") as stream:
        stream.seek(line_end + 1)
        inflater = zlib.decompressobj() if fields.get("CompressedData", "").lower() == "true" else None
        try:
            while total <= needed and (chunk := stream.read(1 << 22)):
                total += len(inflater.decompress(chunk, needed + 1 - total)) if inflater else len(chunk)
        except zlib.error as error:
            raise VolumeError(f"{path} is truncated or corrupt ({error}): copy or download it again.") from None
    if total < needed:
        raise VolumeError(f"{path} is truncated: its header describes {needed:,} bytes of image but the file holds "
                          f"{total:,}. Copy or download it again.")


def check_file_complete(path: Path) -> None:
    """Refuse a truncated file that the image reader would accept and zero-fill: a gzip stream that ends early
    (any .gz), or a NIfTI shorter than its header's voxel count says; and a NIfTI with NaN or infinite voxels,
    which the reader would silently read as 0."""
    with path.open("rb") as probe:
        is_gzip = probe.read(2) == b"\x1f\x8b"
    name = path.name.lower()
    if name.endswith(".mha"):
        _check_metaimage_complete(path)
    is_nifti = name.endswith((".nii", ".nii.gz"))
    if not (is_gzip or is_nifti):
        return
    layout, counter = None, None
    try:
        with (gzip.open(path, "rb") if is_gzip else path.open("rb")) as stream:
            header = stream.read(540)
            total = len(header)
            layout = _nifti_layout(header) if is_nifti else None
            counter = layout[2] if layout is not None else None
            if counter is not None:
                counter.feed(header)
            while chunk := stream.read(1 << 22):
                total += len(chunk)
                if counter is not None:
                    counter.feed(chunk)
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise VolumeError(f"{path} is truncated or corrupt ({error}): copy or download it again.") from None
    needed = layout[0] if layout is not None else None
    if needed is not None and total < needed:
        raise VolumeError(f"{path} is truncated: its header describes {needed:,} bytes of image but the file holds "
                          f"{total:,}. Copy or download it again.")
    if counter is not None and counter.count:
        raise VolumeError(f"{path} has {counter.count:,} NaN or infinite voxels, which the NIfTI reader would "
                          "silently read as 0: replace them with the background value (e.g. numpy.nan_to_num) and "
                          "save it again.")


def dicom_series_files(folder: str | Path) -> tuple[str, ...]:
    """The files of the DICOM series in ``folder`` that :func:`read_image` reads (the one with the most files), in
    slice order."""
    sitk = _sitk()
    reader = sitk.ImageSeriesReader()
    with itk_warnings_off():
        series = reader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise VolumeError(f"{folder} is a folder without a DICOM series: give a DICOM folder or an image file.")
    return tuple(max((reader.GetGDCMSeriesFileNames(str(folder), s) for s in series), key=len))


def read_image(path: str | Path) -> "object":
    """A SimpleITK image from a file or a DICOM folder (the series with the most files)."""
    sitk = _sitk()
    path = Path(path)
    if not path.exists() and path.is_symlink():
        raise VolumeError(f"{path} is a symbolic link that loops or leads nowhere: point it at the image file.")
    if not path.exists():
        raise VolumeError(f"{path} does not exist: give the path of a NIfTI, NRRD or MHA file or a DICOM folder.")
    try:
        if path.is_dir():
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(dicom_series_files(path))
            reader.MetaDataDictionaryArrayUpdateOn()
            reader.LoadPrivateTagsOn()
            with itk_warnings_off():
                image = reader.Execute()
            image.SetMetaData("0008|0060", reader.GetMetaData(0, "0008|0060") if reader.HasMetaDataKey(0, "0008|0060")
                              else "")
            return image
        check_file_complete(path)
        with itk_warnings_off():
            return sitk.ReadImage(str(path))
    except RuntimeError as error:
        lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
        useful = [line for line in lines if not line.startswith(("Reason:", "ImageIO", "itk::", "sitk::"))]
        first_line = (useful or lines or ["unknown error"])[-1]
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
