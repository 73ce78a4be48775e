"""What Slicer 5.10's Python already has (its SuperBuild's pins), and a lookup of installed versions, for the
tests of the module's dependency installer (test_dependencies.py, test_slicer_dicom_seg_route.py)."""

from __future__ import annotations

from MedicalSAM3SlicerLib import dependencies

SLICER_5_10 = {
    "numpy": "2.0.2", "scipy": "1.13.1", "pydicom": "2.4.4", "pillow": "11.2.1", "simpleitk": "2.5.2",
    "requests": "2.32.3", "certifi": "2025.4.26", "idna": "3.10", "charset-normalizer": "3.4.2", "urllib3": "2.4.0",
    "packaging": "25.0", "pyparsing": "3.2.3", "six": "1.17.0", "typing-extensions": "4.14.0",
    "python-dateutil": "2.9.0.post0", "pip": "25.1.1", "setuptools": "80.9.0", "wheel": "0.45.1",
}
OURS = {"transformers", "huggingface-hub", "safetensors", "tokenizers", "tqdm", "psutil", "httpx"}


def versions(installed: dict[str, str]):
    normalised = {dependencies.canonicalize_name(name): version for name, version in installed.items()
                  if version is not None}
    return lambda name: normalised.get(dependencies.canonicalize_name(name))
