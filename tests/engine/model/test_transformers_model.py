"""The real loading path with tiny random-weight models of the four transformers SAM 3 classes."""

import numpy as np
import pytest

from medsam3.errors import ModelNotFoundError
from medsam3.transports.model_loading import load_backend
from medsam3.model.model_sources import resolve_model
from medsam3.interaction.prompts import BoxPrompt, PointPrompt, SlicePrompt

from medsam3.files.volume_io import read_volume

from cases import data_path, load_case


@pytest.fixture(scope="module")
def tiny_backend(tmp_path_factory):
    return load_backend("tiny-random", device="cpu", cache_dir=tmp_path_factory.mktemp("cache"), progress=False)


def test_tiny_models_load_through_the_resolver_and_report_device(tiny_backend):
    info = tiny_backend.info()
    assert info.model == "tiny-random" and info.device.startswith("cpu") and info.image_size == 224
    assert any("plumbing" in note for note in info.notes)


@pytest.mark.parametrize("image", ["ct/spleen_msd_crop/image.nii.gz", "mr/pyradiomics/brain1_image.nrrd"])
def test_point_box_text_and_propagation_return_masks_in_the_volume_grid(tiny_backend, image):
    volume = read_volume(data_path(image))
    engine = tiny_backend.engine
    i, j, k = (n // 2 for n in volume.shape_ijk)
    clicked = engine.predict_slice(volume, SlicePrompt("axial", points=(PointPrompt((i, j, k)),)))
    assert clicked.mask.shape == volume.array.shape and clicked.visited_slices == [k]
    assert not clicked.mask[np.arange(volume.array.shape[0]) != k].any()

    boxed = engine.predict_slice(volume, SlicePrompt("sagittal", box=BoxPrompt((i, j - 5, k - 3), (i, j + 5, k + 3))))
    assert boxed.visited_slices == [i] and not boxed.mask[:, :, np.arange(volume.shape_ijk[0]) != i].any()

    text = engine.segment_text_on_slice(volume, "liver, kidney", "coronal", j, score_threshold=0.0)
    assert [r.phrase for r in text] == ["liver", "kidney"]
    assert all(r.mask.shape == volume.array.shape and r.visited_slices == [j] for r in text)
    assert all(inst.mask.shape == volume.array.shape for r in text for inst in r.instances)

    propagated = engine.propagate(volume, [SlicePrompt("axial", points=(PointPrompt((i, j, k)),))],
                                  stop_after_empty=0)
    assert propagated.visited_slices == list(range(volume.shape_ijk[2]))
    texts = engine.propagate_text(volume, "liver", "axial", score_threshold=0.0)
    assert texts[0].visited_slices == list(range(volume.shape_ijk[2]))
    assert texts[0].mask.shape == volume.array.shape


def test_clicks_after_the_first_on_a_slice_reuse_its_encoding(tiny_backend):
    case = load_case("spleen")
    engine = tiny_backend.engine
    engine.cache.clear()
    prompt = SlicePrompt("axial", points=(PointPrompt((80, 80, 10)),))
    engine.predict_slice(case.volume, prompt)
    misses = engine.cache.misses
    engine.predict_slice(case.volume, SlicePrompt("axial", points=(PointPrompt((60, 70, 10)),)))
    assert engine.cache.misses == misses  # second click on slice 10: no new encoding
    engine.propagate(case.volume, [prompt], stop_after_empty=0)
    tracked = engine.cache.misses
    engine.propagate(case.volume, [prompt, SlicePrompt("axial", points=(PointPrompt((70, 70, 12)),))],
                     stop_after_empty=0)
    assert engine.cache.misses == tracked  # a correction re-propagates from cached encodings


def test_unknown_model_names_say_what_to_use(tmp_path):
    with pytest.raises(ModelNotFoundError, match="Unknown model"):
        resolve_model("no-such-model", cache_dir=tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelNotFoundError, match="config.json"):
        resolve_model(str(empty), cache_dir=tmp_path)
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_model(str(tmp_path / "missing.pt"), cache_dir=tmp_path)


def test_input_size_is_selectable_and_masks_stay_in_the_volume_grid(tmp_path):
    from medsam3.model.sam3.transformers_model import TransformersSegmentationModel
    from medsam3.interaction.engine import SegmentationEngine

    directory = resolve_model("tiny-random", cache_dir=tmp_path).path
    half = TransformersSegmentationModel(directory, "tiny-random", image_size=112)  # as 1008 -> 504
    assert half.image_size == 112 and half.mask_input_size == 32
    volume = load_case("spleen").volume
    engine = SegmentationEngine(half)
    result = engine.predict_slice(volume, SlicePrompt("coronal", points=(PointPrompt((80, 90, 12)),)))
    assert result.mask.shape == volume.array.shape and result.visited_slices == [90]
    assert half.component("sam3_video")[0].low_res_mask_size == 32
    text = engine.propagate_text(volume, "liver", "axial", score_threshold=0.0)[0]
    assert text.mask.shape == volume.array.shape and len(text.visited_slices) == volume.shape_ijk[2]
