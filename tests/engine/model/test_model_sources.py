"""Where weights come from: each way of failing gives one clear message saying what to do."""

import pytest

from medsam3.model import model_sources
from medsam3.errors import ModelAccessError, ModelNotFoundError
from medsam3.model.model_sources import list_models, resolve_model


def test_catalogue_names_the_default_and_every_model_has_a_licence():
    names = [entry.name for entry in list_models()]
    assert model_sources.DEFAULT_MODEL_SOURCE == "medical-sam3-3d"  # detector + tracker: every prompt kind
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


class HubAnswer:
    """The part of an HTTP response huggingface_hub's errors read."""

    headers: dict = {}
    request = None

    def __init__(self, status_code: int):
        self.status_code = status_code

    def json(self):
        return {}


def hub_refusing_with(monkeypatch, error):
    import huggingface_hub

    def refuse(*args, **kwargs):
        raise error

    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse)


def test_gated_repository_without_token_says_to_accept_the_licence(monkeypatch, tmp_path):
    from huggingface_hub import errors

    hub_refusing_with(monkeypatch, errors.GatedRepoError("Access to model facebook/sam3 is restricted.",
                                                         response=HubAnswer(403)))
    with pytest.raises(ModelAccessError, match="gated.*HF_TOKEN"):
        resolve_model("sam3", cache_dir=tmp_path)


def test_missing_repository_is_named(monkeypatch, tmp_path):
    from huggingface_hub import errors

    hub_refusing_with(monkeypatch, errors.RepositoryNotFoundError("404 Client Error", response=HubAnswer(404)))
    with pytest.raises(ModelNotFoundError, match="No model 'someone/nothing-here'"):
        resolve_model("someone/nothing-here", cache_dir=tmp_path)
