"""User mistakes in ``medsam3 evaluate``, ``medsam3 batch`` and the client's TLS set-up that used to end in
"internal error" or in a library's raw text (issue 18 L-1): each is one line on stderr that names the file or
option and says what to do, with exit status 1, and nothing is written."""

from __future__ import annotations

import io
import contextlib
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from medsam3.apps.cli import main

from batch_backends import oracle_backend_factory


def image(path: Path, labels: bool = False) -> Path:
    array = np.zeros((4, 24, 24), np.uint8) if labels else np.full((4, 24, 24), -1000, np.int16)
    array[1:3, 6:18, 6:18] = 1 if labels else 1000
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    return path


def pairs(root: Path, labels_json: bytes | None = b'{"1": "liver"}') -> Path:
    image(root / "images" / "c1.nii.gz")
    image(root / "labels" / "c1.nii.gz", labels=True)
    if labels_json is not None:
        (root / "labels.json").write_bytes(labels_json)
    return root


def nnunet(root: Path, description: bytes) -> Path:
    image(root / "imagesTr" / "c1_0000.nii.gz")
    image(root / "labelsTr" / "c1.nii.gz", labels=True)
    (root / "dataset.json").write_bytes(description)
    return root


def batch_dataset(root: Path, content: bytes) -> Path:
    root.mkdir(parents=True)
    (root / "dataset.json").write_bytes(content)
    return root / "dataset.json"


def written(root: Path, name: str, content: bytes) -> Path:
    (root / name).write_bytes(content)
    return root / name


def evaluate(tmp, data, *more):
    return ["evaluate", data, "--output", tmp / "out", "--quiet", *more]


def batch(tmp, inputs, *more):
    return ["batch", inputs, "--output", tmp / "out", *more]


def segment_https(tmp, *more):
    return ["segment", image(tmp / "ct.nrrd"), "--text", "liver", "--server", "https://127.0.0.1:9", "-o",
            tmp / "out", *more]


MISTAKES = {
    "labels.json is a list": (lambda t: evaluate(t, pairs(t / "d", b"[1, 2]")), "must be a mapping"),
    "labels.json is not UTF-8": (lambda t: evaluate(t, pairs(t / "d", b"\xff\xfe liver")), "UTF-8"),
    "--labels item without =": (lambda t: evaluate(t, pairs(t / "d"), "--labels", "1=liver,spleen"),
                                "number=name"),
    "nnU-Net dataset.json not JSON": (lambda t: evaluate(t, nnunet(t / "d", b"{not json")), "not valid JSON"),
    "nnU-Net dataset.json labels a list": (lambda t: evaluate(t, nnunet(t / "d", b'{"labels": ["a", "b"]}')),
                                           "must be a mapping"),
    "nnU-Net dataset.json a list": (lambda t: evaluate(t, nnunet(t / "d", b"[1, 2]")), "must hold an object"),
    ".npz that is no zip": (lambda t: evaluate(t, written(t, "bad.npz", b"not a zip"), "--labels", "1=lesion"),
                            "not a challenge .npz"),
    "evaluate --output is a file": (lambda t: ["evaluate", pairs(t / "d"), "--output", written(t, "f", b"x")],
                                    "give another output path"),
    "prompts CSV not UTF-8": (lambda t: batch(t, image(t / "a.nrrd"), "--prompts",
                                              written(t, "p.csv", b"\xff\xfe\x00\x01")), "save it as CSV (UTF-8)"),
    "batch dataset.json a list": (lambda t: batch(t, batch_dataset(t / "d", b"[1, 2]"), "--text", "liver"),
                                  "not an MSD-style dataset.json"),
    "batch dataset.json training a number": (lambda t: batch(t, batch_dataset(t / "d", b'{"training": 5}'),
                                                             "--text", "liver"), "must be a list of images"),
    "batch dataset.json not UTF-8": (lambda t: batch(t, batch_dataset(t / "d", b"\xff\xfe"), "--text", "liver"),
                                     "not a readable dataset.json"),
    "batch --output is a file": (lambda t: ["batch", image(t / "a.nrrd"), "--text", "liver", "--output",
                                            written(t, "f", b"x")], "give a folder"),
    "batch log is a folder": (lambda t: (t / "out" / "batch-log.jsonl").mkdir(parents=True) or
                              batch(t, image(t / "a.nrrd"), "--text", "liver"), "move it away"),
    "--ca-file not PEM": (lambda t: segment_https(t, "--ca-file", written(t, "ca.pem", b"not a pem")),
                          "holds no certificate in PEM form"),
    "--ca-file empty": (lambda t: segment_https(t, "--ca-file", written(t, "ca.pem", b"")),
                        "holds no certificate in PEM form"),
    "SSL_CERT_FILE not PEM": (lambda t: segment_https(t), "SSL_CERT_FILE="),
}


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_a_user_mistake_is_one_line_that_says_what_to_do(tmp_path, monkeypatch, mistake):
    arguments, says = MISTAKES[mistake]
    monkeypatch.chdir(tmp_path)  # anything written to a default place would land here
    if mistake == "SSL_CERT_FILE not PEM":
        monkeypatch.setenv("SSL_CERT_FILE", str(written(tmp_path, "env.pem", b"-----BEGIN nothing")))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([str(a) for a in arguments(tmp_path)], backend_factory=oracle_backend_factory)
    lines = err.getvalue().strip().splitlines()
    assert status in (1, 2)
    assert len(lines) == 1, err.getvalue()
    assert "internal error" not in lines[0] and "Traceback" not in lines[0] and "_ssl.c" not in lines[0]
    assert says in lines[0]
    assert not (tmp_path / "out" / "batch-log.jsonl").is_file()
    assert not (tmp_path / "medsam3-evaluation").exists()


def test_a_damaged_line_in_the_batch_log_is_skipped(tmp_path, capsys):
    """A log line that is not UTF-8 (a disk error, an editor) is ignored like a line cut short by a kill."""
    output = tmp_path / "out"
    output.mkdir()
    (output / "batch-log.jsonl").write_bytes(b"\xff\xfe not json\n")
    status = main(["batch", str(image(tmp_path / "a.nrrd")), "--text", "liver", "--output", str(output)],
                  backend_factory=oracle_backend_factory)
    assert status == 0, capsys.readouterr().err
    assert json.loads((output / "batch-log.jsonl").read_bytes().splitlines()[-1])["status"] == "done"
