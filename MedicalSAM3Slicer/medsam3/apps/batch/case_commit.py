"""A case's result folder, committed whole: its files are written into a hidden staging folder beside it, and the
staging folder is then renamed onto the case's folder. A kill at any point leaves either the earlier folder, or
no folder (a rerun redoes the case), never files of two runs side by side. The log records each file's SHA-256,
and a rerun trusts a case only while its files still hash to what the log says (:func:`outputs_match`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path

STAGING_PREFIX = ".staging-"
REPLACED_PREFIX = ".replaced-"


def file_sha256(path: Path) -> str:
    with open(path, "rb") as stream:
        return hashlib.file_digest(stream, hashlib.sha256).hexdigest()


def remove_leftovers(folder: Path) -> None:
    """Remove the staging and replaced folders a killed run of this case left beside ``folder``."""
    if not folder.parent.is_dir():
        return
    for prefix in (STAGING_PREFIX, REPLACED_PREFIX):
        for leftover in folder.parent.glob(f"{prefix}{folder.name}-*"):
            shutil.rmtree(leftover, ignore_errors=True)


def staging_folder(folder: Path) -> Path:
    """A new, empty hidden folder beside ``folder`` (on the same file system, so a rename moves it)."""
    remove_leftovers(folder)
    staging = folder.with_name(f"{STAGING_PREFIX}{folder.name}-{uuid.uuid4().hex}")
    staging.mkdir(parents=True)
    return staging


def commit_case_folder(staging: Path, folder: Path, written: list[Path]) -> dict[str, str]:
    """Move ``staging`` onto ``folder`` (an earlier result folder is moved aside first and then removed); returns
    {final path: SHA-256} of the ``written`` files (paths inside ``staging``)."""
    hashes = {str(folder / Path(p).relative_to(staging)): file_sha256(Path(p)) for p in written}
    replaced = None
    if folder.exists() or folder.is_symlink():
        replaced = folder.with_name(f"{REPLACED_PREFIX}{folder.name}-{uuid.uuid4().hex}")
        os.rename(folder, replaced)
    os.rename(staging, folder)
    if replaced is not None:
        shutil.rmtree(replaced, ignore_errors=True) if replaced.is_dir() and not replaced.is_symlink() \
            else replaced.unlink()
    return hashes


def outputs_match(record: dict) -> bool:
    """Whether every file a ``done`` log record lists is still there with the bytes the record hashed."""
    hashes = record.get("output_sha256")
    outputs = record.get("outputs")
    if not isinstance(hashes, dict) or not outputs or set(hashes) != set(outputs):
        return False
    try:
        return all(Path(p).is_file() and file_sha256(Path(p)) == hashes[p] for p in outputs)
    except OSError:
        return False
