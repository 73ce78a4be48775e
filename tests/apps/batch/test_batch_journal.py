"""What the batch's log says a rerun may skip, read back from damaged and mixed logs, and what it keys a case on
(issue 23, mutation testing of batch_journal): only a case whose latest ``done`` line still describes its files is
trusted; lines cut short, damaged or of another shape are passed over; a folder where the log belongs is one clear
error; every setting a result depends on changes the case's key."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from medsam3.apps.batch import case_commit
from medsam3.apps.batch.journal import JOURNAL_NAME, Journal, case_key
from medsam3.apps.segment_pipeline import SegmentRequest
from medsam3.errors import VolumeError


def done(case: str, *files: Path, **extra) -> dict:
    return {"case": case, "status": "done", "outputs": [str(f) for f in files],
            "output_sha256": {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}, **extra}


def result_file(folder: Path, name: str, content: bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def test_the_latest_done_line_of_each_case_counts_and_damaged_lines_are_passed_over(tmp_path):
    first = result_file(tmp_path / "out" / "a", "labelmap.nii.gz", b"run one")
    journal = Journal(tmp_path / "out" / "new" / "folder")  # appending creates the folders
    journal.append(done("a", first, key="old"))
    journal.append({"case": "a", "status": "failed", "error": "boom"})  # a failure later: the done line stands
    journal.append(done("a", first, key="new"))
    journal.append({"case": "b", "status": "skipped"})
    journal.append(done(7, first))  # not a case name
    journal.append(done("e", first, key="e"))
    journal.append({"case": "e", "status": "failed", "outputs": [], "output_sha256": {}})  # a later --redo failed
    with open(journal.path, "ab") as stream:
        stream.write(b'[1, 2]\n"text"\n{"case": "c", "status": "done", "outp\xff\xfe')  # damaged, cut short by a kill
    with open(journal.path, "a", encoding="utf-8") as stream:
        stream.write("\n" + json.dumps(done("d", first, key="d")) + "\n")  # a line after the damage still counts
    finished = journal.finished_with()
    assert sorted(finished) == ["a", "d", "e"] and finished["a"]["key"] == "new" and finished["e"]["key"] == "e"
    assert [r.get("case") for r in journal.records()] == ["a", "a", "a", "b", 7, "e", "e", "d"]
    assert Journal(tmp_path / "nothing here").records() == [] == list(Journal(tmp_path / "none").finished_with())


def test_each_appended_line_is_one_whole_json_record(tmp_path):
    journal = Journal(tmp_path)
    records = [{"case": "a", "status": "done", "notes": ["line\nbreak"], "z": 1, "b": 2}, {"case": "b"}]
    for record in records:
        journal.append(record)
    lines = journal.path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == records
    assert list(json.loads(lines[0])) == ["case", "status", "notes", "z", "b"]  # fields in the order written


def test_a_folder_where_the_log_belongs_is_one_clear_error(tmp_path):
    (tmp_path / JOURNAL_NAME).mkdir()
    with pytest.raises(VolumeError) as raised:
        Journal(tmp_path).finished_with()
    message = str(raised.value)
    assert message == (f"{tmp_path / JOURNAL_NAME} is a folder, where the run keeps its log: move it away or give "
                       "another --output.")


def test_a_case_is_trusted_only_while_every_file_its_line_lists_is_there_unchanged(tmp_path):
    labels = result_file(tmp_path / "a", "labelmap.nii.gz", b"labels")
    seg = result_file(tmp_path / "a", "segmentation.seg.nrrd", b"segments")
    record = done("a", labels, seg)
    assert case_commit.outputs_match(record)
    assert not case_commit.outputs_match({**record, "outputs": []})
    assert not case_commit.outputs_match({**record, "outputs": [], "output_sha256": {}})  # a line listing no file
    too_long = str(tmp_path / ("x" * 300))  # a damaged line whose path the system cannot even look up
    assert not case_commit.outputs_match({**record, "outputs": [too_long], "output_sha256": {too_long: "0" * 64}})
    assert not case_commit.outputs_match({**record, "output_sha256": None})
    assert not case_commit.outputs_match({**record, "outputs": [str(labels)]})  # a file the hashes do not list
    assert not case_commit.outputs_match({k: v for k, v in record.items() if k != "outputs"})
    seg.write_bytes(b"segments of another run")
    assert not case_commit.outputs_match(record)
    seg.unlink()
    seg.mkdir()  # a folder in the file's place
    assert not case_commit.outputs_match(record)
    seg.rmdir()
    assert not case_commit.outputs_match(record)


def test_every_setting_a_result_depends_on_changes_the_cases_key():
    request = SegmentRequest(text="spleen")
    key = case_key("ab" * 32, request, "medsam3")
    assert key == case_key("ab" * 32, SegmentRequest(text="spleen"), "medsam3")  # the same settings: the same key
    others = {case_key("cd" * 32, request, "medsam3"), case_key("ab" * 32, SegmentRequest(text="liver"), "medsam3"),
              case_key("ab" * 32, request, "another-model"), case_key("ab" * 32, request, None)}
    assert key not in others and len(others) == 4
    assert case_key("ab" * 32, request, None) == case_key("ab" * 32, request, "default")  # no --model: the default


def test_leftovers_of_a_killed_run_never_stop_the_case_from_being_written_again(tmp_path):
    folder = tmp_path / "out" / "breast"
    (tmp_path / "out").mkdir()
    left_folder = tmp_path / "out" / f"{case_commit.STAGING_PREFIX}breast-dead"
    result_file(left_folder, "labelmap.nii.gz", b"half written")
    left_file = result_file(tmp_path / "out", f"{case_commit.REPLACED_PREFIX}breast-0001", b"not a folder")
    other_case = result_file(tmp_path / "out" / f"{case_commit.STAGING_PREFIX}breastfeeding-1", "x", b"keep")
    staging = case_commit.staging_folder(folder)
    assert staging.parent == folder.parent and staging.name.startswith(".staging-breast-") and staging.is_dir()
    assert not left_folder.exists() and other_case.exists()  # another case's staging folder is not this case's
    written = result_file(staging, "labelmap.nii.gz", b"new")
    hashes = case_commit.commit_case_folder(staging, folder, [written])
    assert hashes == {str(folder / "labelmap.nii.gz"): hashlib.sha256(b"new").hexdigest()}
    assert (folder / "labelmap.nii.gz").read_bytes() == b"new" and not staging.exists()
    # the stray file named like a leftover folder (rmtree refuses it) was passed over, not fatal


@pytest.mark.parametrize("earlier", ["folder", "file", "link to a folder"])
def test_a_committed_case_replaces_the_earlier_result_and_leaves_nothing_beside_it(tmp_path, earlier):
    out = tmp_path / "out"
    folder = out / "breast"
    elsewhere = result_file(tmp_path / "user data", "keep.txt", b"the user's")
    if earlier == "folder":
        result_file(folder, "labelmap.nii.gz", b"old")
    elif earlier == "file":
        result_file(out, "breast", b"a file where the case folder goes")
    else:
        out.mkdir()
        folder.symlink_to(elsewhere.parent, target_is_directory=True)
    staging = case_commit.staging_folder(folder)
    written = result_file(staging, "labelmap.nii.gz", b"new")
    case_commit.commit_case_folder(staging, folder, [written])
    assert sorted(p.name for p in out.iterdir()) == ["breast"] and not folder.is_symlink()
    assert [p.name for p in folder.iterdir()] == ["labelmap.nii.gz"]
    assert (folder / "labelmap.nii.gz").read_bytes() == b"new"
    assert elsewhere.read_bytes() == b"the user's"  # a link is replaced, never followed into the user's folder


def test_an_earlier_result_that_cannot_be_removed_does_not_fail_the_case(tmp_path, monkeypatch):
    """Removing the moved-aside earlier result can fail (a file in it held open, a permission): the new result is in
    place by then, so the case is committed all the same, and the next run of the case removes the leftover."""
    folder = tmp_path / "out" / "breast"
    result_file(folder, "labelmap.nii.gz", b"old")
    remove = shutil.rmtree

    def refusing(path, ignore_errors=False, **options):  # rmtree on a folder it may not remove
        if not Path(path).name.startswith(case_commit.REPLACED_PREFIX):
            return remove(path, ignore_errors=ignore_errors, **options)
        if not ignore_errors:
            raise PermissionError(f"cannot remove {path}")

    monkeypatch.setattr(shutil, "rmtree", refusing)
    staging = case_commit.staging_folder(folder)
    hashes = case_commit.commit_case_folder(staging, folder, [result_file(staging, "labelmap.nii.gz", b"new")])
    assert hashes == {str(folder / "labelmap.nii.gz"): hashlib.sha256(b"new").hexdigest()}
    assert (folder / "labelmap.nii.gz").read_bytes() == b"new"
    monkeypatch.undo()
    next_staging = case_commit.staging_folder(folder)  # the case's next run
    assert sorted(p.name for p in folder.parent.iterdir()) == sorted(["breast", next_staging.name])
