"""Shared test fixtures. Test data lives in ../shared/data (see tests/support/cases.py).

The tests sit in folders by the subject they test (engine/<package>, apps/<application>, bridge, extension); the
helpers they share (cases, oracle, placement, slicer_scene, server_harness, ...) sit in tests/support, which is put
on the path so that a test imports a helper by its module name from any folder. No test imports another test
module: a helper two test files need lives in tests/support, a fixture they share here."""

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS / "support"))


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


@pytest.fixture(scope="session")
def one_folder_model(tmp_path_factory):
    """A tiny SAM 3 model with all four classes in one folder, as facebook/sam3 and converted checkpoints are."""
    from tiny_one_folder import save_one_folder_tiny_model

    return save_one_folder_tiny_model(tmp_path_factory.mktemp("one_folder"))
