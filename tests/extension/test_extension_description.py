"""The extension description file passes the checks the Slicer ExtensionsIndex runs on a submission.

The index (github.com/Slicer/ExtensionsIndex, scripts/check_description_files.py and
schemas/slicer-extension-catalog-entry-schema-v1.0.2.json) takes a JSON file named after the extension and checks:
its schema and LF line endings; an extension name that does not start with "Slicer" but a repository name that
does; a known category; an https or git scm_url; a top-level CMakeLists.txt whose project() is the extension name
and which sets EXTENSION_ICONURL and a non-empty EXTENSION_SCREENSHOTURLS, each URL an image; a licence file at the
repository root; a repository under 100 MB; build dependencies that are extensions of the index. Re-implemented
here offline: the URLs must be raw.githubusercontent.com addresses of image files in this repository at the
described revision. (The index also wants the GitHub topic "3d-slicer-extension" on the repository, which no
file can show.)
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
DESCRIPTION = ROOT / "MedicalSAM3Slicer.json"
SCHEMA_URL = "https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/slicer-extension-catalog-entry-schema-v1.0.2.json#"
# schema v1.0.2: property -> accepted type
PROPERTIES = {"$schema": str, "category": str, "scm_url": str, "scm_revision": str, "scm_type": str,
              "build_dependencies": list, "dicom_support_rule": str, "build_subdirectory": str, "enabled": bool,
              "tier": int}
REQUIRED = {"$schema", "category", "scm_url"}
REPOSITORY_PREFIXES = ("Slicer", "Slicer-", "Slicer_", "SlicerExtension-", "SlicerExtension_")
LICENCE_NAMES = ("LICENSE", "LICENCE", "License.txt", "license.txt", "LICENSE.txt", "COPYING", "COPYING.txt")
EXTENSIONS_IN_THE_INDEX = {"PyTorch"}  # PyTorch.json is in the index
SIZE_LIMIT_BYTES = 100 * 1024 * 1024
IMAGE_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF8")


@pytest.fixture(scope="module")
def description() -> dict:
    return json.loads(DESCRIPTION.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def cmake() -> str:
    return (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")


def test_schema_and_file_format(description):
    assert description["$schema"] == SCHEMA_URL
    assert REQUIRED <= set(description), REQUIRED - set(description)
    assert set(description) <= set(PROPERTIES), set(description) - set(PROPERTIES)
    for key, value in description.items():
        assert isinstance(value, PROPERTIES[key]) and not (PROPERTIES[key] is int and isinstance(value, bool)), key
    assert all(isinstance(item, str) for item in description.get("build_dependencies", []))
    assert description.get("scm_type", "git") in ("git", "local")
    assert 1 <= description.get("tier", 1) <= 5
    raw = DESCRIPTION.read_bytes()
    assert b"\r" not in raw, "the index accepts LF line endings only"


def test_names_category_and_repository(description, cmake):
    extension = DESCRIPTION.stem
    assert not extension.lower().startswith("slicer")
    assert description["category"] == "Segmentation"  # one of the index's accepted categories
    scm = urlsplit(description["scm_url"])
    assert "://" in description["scm_url"] and scm.scheme in ("git", "https")
    repository = Path(scm.path.strip("/")).name.removesuffix(".git")
    assert repository.startswith(REPOSITORY_PREFIXES), repository
    project = re.findall(r"project\s*\(\s*([^\s)]+)", cmake, re.IGNORECASE)
    assert project and project[0].strip("\"'") == extension
    assert set(description.get("build_dependencies", [])) <= EXTENSIONS_IN_THE_INDEX
    depends = re.search(r'set\s*\(EXTENSION_DEPENDS\s*"([^"]*)"', cmake)
    assert depends and set(depends.group(1).split()) == set(description.get("build_dependencies", []))


def _repository_file(url: str, description: dict) -> Path:
    """The file of this repository a raw.githubusercontent.com URL of the described repository and revision names."""
    parts = urlsplit(url)
    assert parts.scheme == "https" and parts.netloc == "raw.githubusercontent.com", url
    owner, repository, revision, *path = parts.path.strip("/").split("/")
    described = urlsplit(description["scm_url"]).path.strip("/").removesuffix(".git").split("/")
    assert [owner, repository] == described, url
    assert revision == description.get("scm_revision", "main"), url
    return ROOT.joinpath(*path)


def test_icon_and_screenshot_urls_are_images_in_this_repository(description, cmake):
    icon = re.findall(r'set\s*\(EXTENSION_ICONURL\s*"([^"]+)"[ ]*\)', cmake, re.IGNORECASE)
    screenshots = re.findall(r'set\s*\(EXTENSION_SCREENSHOTURLS\s*"([^"]+)"\)', cmake, re.IGNORECASE)
    assert icon, "EXTENSION_ICONURL is not set"
    assert screenshots and screenshots[0].split(), "EXTENSION_SCREENSHOTURLS is empty"
    for url in [icon[0].strip(), *screenshots[0].split()]:
        path = _repository_file(url, description)
        assert path.is_file(), f"{url}: no such file in the repository ({path.relative_to(ROOT)})"
        assert path.read_bytes().startswith(IMAGE_SIGNATURES), f"{url} is not an image"
    from PIL import Image

    with Image.open(_repository_file(icon[0].strip(), description)) as image:
        assert image.size == (128, 128)  # the size Slicer's extension catalog shows
    # Where Slicer's extension template keeps them: the extension icon, named after the extension, at the repository
    # root beside the top-level CMakeLists.txt (Utilities/Templates/Extensions/Default/TemplateKey.png), as do
    # SlicerTotalSegmentator (TotalSegmentator.png, Screenshot01.jpg); the module's own icon stays in its
    # Resources/Icons, where slicerMacroBuildScriptedModule installs it.
    assert _repository_file(icon[0].strip(), description) == ROOT / "MedicalSAM3Slicer.png"
    assert all(_repository_file(url, description).parent == ROOT for url in screenshots[0].split())


def test_licence_at_the_repository_root_is_the_projects():
    licences = [ROOT / name for name in LICENCE_NAMES if (ROOT / name).is_file()]
    assert licences, "no licence file at the repository root"
    text = licences[0].read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0" in text
    assert 'license = { text = "Apache-2.0" }' in (ROOT / "pyproject.toml").read_text()


def test_repository_is_smaller_than_the_index_allows():
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    total = sum((ROOT / name).stat().st_size for name in listed.decode().split("\0")
                if name and (ROOT / name).is_file())
    assert total < SIZE_LIMIT_BYTES, f"{total / 2**20:.1f} MB"


# --- what the catalogue promises, the help link and the CMake minimum (issue 17, catalogue) ---------------------

SLICER_5_10_TEMPLATE_MINIMUM = "3.20.6...3.22.6"  # Utilities/Templates/Extensions/Default/CMakeLists.txt, v5.10.0


def test_the_cmake_minimum_is_the_slicer_5_10_extension_templates(cmake):
    minimum = re.search(r"cmake_minimum_required\(VERSION (\S+) FATAL_ERROR\)", cmake)
    assert minimum and minimum.group(1) == SLICER_5_10_TEMPLATE_MINIMUM


def test_the_description_says_what_dicom_seg_needs_on_5_10_and_that_a_server_needs_no_torch(cmake):
    text = re.search(r'set\(EXTENSION_DESCRIPTION "([^"]*)"\)', cmake).group(1)
    assert "DICOM SEG" in text and "5.10" in text and "QuantitativeReporting" in text
    assert "server" in text and "httpx" in text


def test_the_help_text_links_to_the_documentation_in_this_repository(cmake):
    import ast

    homepage = re.search(r'set\(EXTENSION_HOMEPAGE "([^"]*)"\)', cmake).group(1)
    module = (ROOT / "MedicalSAM3Slicer" / "MedicalSAM3Slicer.py").read_text(encoding="utf-8")
    url = next(node.value.value for node in ast.parse(module).body if isinstance(node, ast.Assign)
               and getattr(node.targets[0], "id", "") == "DOCUMENTATION_URL")
    assert url.startswith(homepage + "/blob/") and url.endswith("docs/slicer.md")
    assert (ROOT / "docs" / "slicer.md").is_file()
    assert '<a href="{DOCUMENTATION_URL}">' in module
