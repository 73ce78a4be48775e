"""Where weights come from: each way of failing gives one clear message saying what to do."""

import pytest

from medsam3 import model_sources
from medsam3.errors import ModelAccessError, ModelNotFoundError
from medsam3.model_sources import list_models, resolve_model


def test_catalogue_names_the_default_and_every_model_has_a_licence():
    names = [entry.name for entry in list_models()]
    assert model_sources.DEFAULT_MODEL_SOURCE == "medical-sam3-2d"
    assert {"medical-sam3-2d", "medical-sam3-3d", "sam3", "tiny-random"} <= set(names)
    assert all(entry.licence for entry in list_models())
    assert {e.name: e.image_size for e in list_models()}["medical-sam3-3d"] == 504


def test_offline_without_cached_weights_says_how_to_get_them(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelAccessError, match="cannot be downloaded.*local directory"):
        resolve_model("medical-sam3-2d", cache_dir=tmp_path)


def test_gated_repository_without_token_says_to_accept_the_licence(monkeypatch, tmp_path):
    import huggingface_hub
    from huggingface_hub import errors

    class FakeResponse:
        status_code = 403
        headers = {}
        request = None

        def json(self):
            return {}

    def gated(*args, **kwargs):
        raise errors.GatedRepoError("Access to model facebook/sam3 is restricted.", response=FakeResponse())

    monkeypatch.setattr(huggingface_hub, "snapshot_download", gated)
    with pytest.raises(ModelAccessError, match="gated.*HF_TOKEN"):
        resolve_model("sam3", cache_dir=tmp_path)


def test_missing_repository_is_named(monkeypatch, tmp_path):
    import huggingface_hub
    from huggingface_hub import errors

    class FakeResponse:
        status_code = 404
        headers = {}
        request = None

        def json(self):
            return {}

    def missing(*args, **kwargs):
        raise errors.RepositoryNotFoundError("404 Client Error", response=FakeResponse())

    monkeypatch.setattr(huggingface_hub, "snapshot_download", missing)
    with pytest.raises(ModelNotFoundError, match="No model 'someone/nothing-here'"):
        resolve_model("someone/nothing-here", cache_dir=tmp_path)
