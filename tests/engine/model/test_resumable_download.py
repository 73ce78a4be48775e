"""The first model download (issue 17, item 7): progress in bytes with the time left, Stop keeps what arrived, and
the next Load asks the server only for the rest. A real HTTP server on loopback serves the file, honouring Range
requests as the Hub's file servers do."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from medsam3.errors import Cancelled
from medsam3.model.model_sources import hub_download_path
from medsam3.model.resumable_download import DownloadStopped, download_resumable, partial_path

SIZE = 3_000_000


@contextmanager
def file_server(content: bytes, honour_range: bool = True):
    """Serves ``content`` at /weights.pt; records each request's Range header and the bytes it sent."""
    log = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802  (http.server's name)
            start = 0
            requested = self.headers.get("Range")
            if requested and honour_range:
                start = int(requested.split("=", 1)[1].split("-", 1)[0])
            body = content[start:]
            self.send_response(206 if start else 200)
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(content) - 1}/{len(content)}")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            sent = 0
            try:
                for offset in range(0, len(body), 65536):
                    self.wfile.write(body[offset:offset + 65536])
                    sent += len(body[offset:offset + 65536])
            except (BrokenPipeError, ConnectionResetError):
                pass
            log.append((requested, sent))

        def do_HEAD(self):  # noqa: N802  (what huggingface_hub's get_hf_file_metadata asks the Hub)
            self.send_response(200)
            self.send_header("ETag", '"0123abcd"')
            self.send_header("X-Repo-Commit", "0" * 40)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/weights.pt", log
    finally:
        server.shutdown()
        server.server_close()


def content() -> bytes:
    return np.random.default_rng(17).integers(0, 256, SIZE, dtype=np.uint8).tobytes()


def test_stop_keeps_the_partial_download_and_the_next_load_fetches_only_the_rest(tmp_path):
    data = content()
    destination = tmp_path / "cache" / "weights.pt"
    seen = []

    def stop_after_a_third():
        return bool(seen) and seen[-1].done >= SIZE // 3

    with file_server(data) as (url, log):
        with pytest.raises(DownloadStopped) as stopped:
            download_resumable(url, destination, expected_size=SIZE, progress=seen.append,
                               should_stop=stop_after_a_third, chunk_bytes=65536)
        assert isinstance(stopped.value, Cancelled) and "resumes" in str(stopped.value)
        assert not destination.exists()  # never a half file under the final name
        kept = partial_path(destination).read_bytes()
        assert SIZE // 3 <= len(kept) < SIZE and kept == data[:len(kept)]

        resumed = []
        path = download_resumable(url, destination, expected_size=SIZE, progress=resumed.append, chunk_bytes=65536)
    assert path == destination and destination.read_bytes() == data and not partial_path(destination).exists()
    assert log[-1] == (f"bytes={len(kept)}-", SIZE - len(kept))  # only the missing bytes were sent
    # progress counts bytes on disk, of the whole file, up to the end; the first report already has a time left
    assert resumed[0].done > len(kept) and resumed[-1].done == SIZE and all(p.total == SIZE for p in resumed)
    assert [p.done for p in resumed] == sorted(p.done for p in resumed)
    assert "of 3.0 MB" in resumed[0].describe()
    assert resumed[-1].seconds_left == 0 and "left" in resumed[-1].describe()


def test_a_server_that_ignores_the_range_gives_a_whole_correct_file(tmp_path):
    data = content()
    destination = tmp_path / "weights.pt"
    partial_path(destination).write_bytes(data[:1000])
    with file_server(data, honour_range=False) as (url, log):
        download_resumable(url, destination, expected_size=SIZE)
    assert destination.read_bytes() == data and log == [("bytes=1000-", SIZE)]


def test_a_complete_download_is_not_fetched_again(tmp_path):
    data = content()
    destination = tmp_path / "weights.pt"
    with file_server(data) as (url, log):
        download_resumable(url, destination, expected_size=SIZE)
        download_resumable(url, destination, expected_size=SIZE)
    assert len(log) == 1 and destination.read_bytes() == data


def test_first_load_asks_with_size_and_licence_then_downloads_through_the_hub_resumably(tmp_path, monkeypatch):
    """The catalogue's default model, from a stand-in Hub on loopback (HF_ENDPOINT): the notice shows the size and
    the licence status; a stopped download resumes; afterwards the notice is empty and the model resolver uses the
    downloaded file without asking the Hub again."""
    from medsam3.model import model_sources

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))  # an empty Hugging Face cache
    entry = model_sources.catalogue_entry(model_sources.DEFAULT_MODEL_SOURCE)
    notice = model_sources.download_notice(None, tmp_path)
    assert f"{entry.download_bytes / 1e9:.1f} GB" in notice and "no licence file" in notice
    assert "MIT" in notice and "SAM License" in notice and "resumes" in notice
    data = content()
    with file_server(data) as (url, log):
        monkeypatch.setenv("HF_ENDPOINT", url.rsplit("/", 1)[0])
        with pytest.raises(DownloadStopped):
            model_sources.download_catalogue_file(None, tmp_path, should_stop=lambda: True)
        assert model_sources.download_notice(None, tmp_path)  # still to do
        progress = []
        path = model_sources.download_catalogue_file(None, tmp_path, progress=progress.append)
        requests = len(log)
        assert model_sources.download_model(entry.name, tmp_path) == path  # resolve_model's step: no Hub call
        assert len(log) == requests
    assert path == hub_download_path(entry.repository, entry.filename, tmp_path)
    assert path.read_bytes() == data and progress[-1].done == SIZE
    assert model_sources.download_notice(None, tmp_path) == ""
