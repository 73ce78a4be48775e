"""The family registry (medsam3/model/families.py): every catalogue entry names a family whose plug loads it and owns
its preprocessing, vocabulary and prompt kinds; an unknown family, in the catalogue or in a local model folder, is
one line naming the known families, before anything is loaded."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medsam3.interaction.engine import SegmentationEngine
from medsam3.model import model_sources
from medsam3.model.families import UnknownFamilyError, family, family_of_source, known_families
from medsam3.transports.model_loading import load_backend

from cases import load_case


def test_every_catalogue_entry_names_a_known_family_and_serves_what_its_family_can():
    for entry in model_sources.list_models():
        assert entry.capabilities <= family(entry.family).prompt_kinds, entry.name
    assert {entry.family for entry in model_sources.list_models()} == set(known_families()) == {"sam3",
                                                                                              "bright-region"}


def test_a_catalogue_entry_of_an_unknown_family_is_one_line_naming_the_known_ones(tmp_path, monkeypatch):
    catalogue = json.loads(model_sources.CATALOGUE_PATH.read_text())
    catalogue["models"].append({**catalogue["models"][0], "name": "voxtell-v1", "family": "voxtell"})
    path = tmp_path / "model_catalogue.json"
    path.write_text(json.dumps(catalogue))
    monkeypatch.setattr(model_sources, "CATALOGUE_PATH", path)
    with pytest.raises(UnknownFamilyError) as refused:
        load_backend("voxtell-v1", cache_dir=tmp_path / "cache", progress=False)
    message = str(refused.value)
    assert "\n" not in message and "'voxtell-v1'" in message and "'voxtell'" in message
    assert "known families: sam3, bright-region" in message
    assert not (tmp_path / "cache").exists()  # nothing was downloaded, converted or cached


def test_a_local_folder_names_its_family(tmp_path):
    folder = tmp_path / "my-stand-in"
    folder.mkdir()
    (folder / "medsam3_family.json").write_text(json.dumps({"family": "bright-region"}))
    backend = load_backend(str(folder), progress=False)
    assert backend.info().model == "my-stand-in" and backend.engine.family.name == "bright-region"

    (folder / "medsam3_family.json").write_text(json.dumps({"family": "voxtell"}))
    with pytest.raises(UnknownFamilyError) as refused:
        family_of_source(str(folder))
    assert "\n" not in str(refused.value) and "known families: sam3, bright-region" in str(refused.value)


def test_the_family_owns_the_vocabulary_mapped_onto_the_one_terminology():
    engine = load_backend("bright-region", progress=False).engine
    assert engine.model_text("sin kidney").model_text == "Left kidney"  # terminology side word -> family's name
    assert engine.model_text("SPLEEN").model_text == "Spleen"
    unknown = engine.model_text("glowing thing")
    assert unknown.model_text == "glowing thing" and "bright-region stand-in" in unknown.note
    # the SAM 3 family keeps Medical SAM3's training names
    assert SegmentationEngine(engine.model).model_text("liver tumour").model_text == "Liver tumors"


def test_the_family_owns_the_preprocessing():
    """The same CT and target: the bright-region family sees HU above 40 as bright whatever the target; the SAM 3
    family chooses the CT window from the target, as Medical SAM3's training data was windowed."""
    volume = load_case("spleen").volume
    bright = load_backend("bright-region", progress=False).engine
    frames = bright.frames(volume, "axial", target_text="lung")
    values = volume.array[volume.array.shape[0] // 2]
    assert np.array_equal(frames.preprocessing.apply(values) > 0.5, values > 40)
    sam3 = SegmentationEngine(bright.model)
    assert sam3.frames(volume, "axial", target_text="lung").preprocessing.description == "ct-lung"


def test_models_verify_runs_the_familys_trial():
    from medsam3.transports.model_loading import verify_model

    report = verify_model("bright-region")
    assert "a test click in a bright square returned 25% of the grid" in report  # the mask is the square
    assert "serves: text on a slice, clicks and boxes (tracker), propagation through the volume" in report
    assert "checkpoint_3D_LoRA2D" not in report  # SAM 3's unsupported checkpoints are the SAM 3 family's notes
