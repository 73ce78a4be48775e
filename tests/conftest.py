"""Shared test fixtures. Test data lives in ../shared/data (see tests/support/cases.py).

The tests sit in folders by the subject they test (engine/<package>, apps/<application>, bridge, extension); the
helpers they share (cases, oracle, slicer_scene, server_harness, ...) sit in tests/support. Both are put on the path
so that a test imports a helper, or another test's fixtures, by its module name from any folder."""

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
for folder in sorted({path.parent for path in TESTS.rglob("test_*.py")}, reverse=True) + [TESTS / "support"]:
    sys.path.insert(0, str(folder))


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models gain nothing from threads, and on a busy 2-core machine two spinning threads run 10x slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    """The four tiny random-weight models saved with save_pretrained, one folder each."""
    from medsam3.model.tiny_models import save_tiny_models

    return save_tiny_models(tmp_path_factory.mktemp("tiny_models"))
