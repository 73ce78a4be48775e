"""Bad prompts get clear errors; preprocessing never touches the source; background prefetch makes clicks cheap."""

import numpy as np
import pytest

from medsam3.interaction.engine import SegmentationEngine
from medsam3.errors import PromptError, VolumeError
from medsam3.interaction.prefetch import PrefetchRequest, SlicePrefetcher
from medsam3.model.preprocessing import Preprocessing, choose_preprocessing, window_for_target
from medsam3.interaction.prompts import BoxPrompt, PointPrompt, SlicePrompt, parse_text_targets
from medsam3.geometry.volume import Volume
from medsam3.files.volume_io import read_volume

from cases import data_path, load_case
from oracle import GroundTruthOracle, ground_truth_volume


@pytest.fixture(scope="module")
def spleen():
    case = load_case("spleen")
    return case, ground_truth_volume(case.volume, case.mask)


def test_point_outside_the_volume_is_refused_with_its_extent(spleen):
    _, volume = spleen
    with pytest.raises(PromptError, match=r"outside the volume.*\(163, 165, 25\)"):
        SegmentationEngine(GroundTruthOracle()).predict_slice(volume, SlicePrompt("axial", points=(PointPrompt((200, 10, 5)),)))


def test_empty_box_empty_text_and_split_prompts_are_refused(spleen):
    _, volume = spleen
    engine = SegmentationEngine(GroundTruthOracle())
    with pytest.raises(PromptError, match="box is empty"):
        engine.predict_slice(volume, SlicePrompt("axial", box=BoxPrompt((50, 50, 10), (50, 80, 10))))
    with pytest.raises(PromptError, match="text prompt is empty"):
        engine.segment_text_on_slice(volume, " , ;", "axial", 10)
    with pytest.raises(PromptError, match="different axial slices"):
        engine.predict_slice(volume, SlicePrompt("axial", points=(PointPrompt((50, 50, 10)), PointPrompt((50, 50, 12)))))
    with pytest.raises(PromptError, match="no point, no box"):
        engine.predict_slice(volume, SlicePrompt("axial"))
    with pytest.raises(PromptError, match="Unknown slice axis"):
        SlicePrompt("oblique", points=(PointPrompt((1, 1, 1)),))
    with pytest.raises(PromptError, match="Slice 40 is outside"):
        engine.segment_text_on_slice(volume, "spleen", "axial", 40)


def test_text_is_split_into_phrases():
    assert parse_text_targets("liver, spleen;  left   kidney\n") == ["liver", "spleen", "left kidney"]


def test_bad_volumes_are_refused_clearly(tmp_path):
    with pytest.raises(VolumeError, match="must be 3D"):
        Volume(np.zeros((4, 4)), np.eye(4))
    with pytest.raises(VolumeError, match="singular"):
        Volume(np.zeros((2, 2, 2)), np.diag([1.0, 0.0, 1.0, 1.0]))
    corrupt = tmp_path / "broken.nii.gz"
    corrupt.write_bytes(b"\x1f\x8b not really a gzip file")
    with pytest.raises(VolumeError, match="corrupt"):
        read_volume(corrupt)
    with pytest.raises(VolumeError, match="does not exist"):
        read_volume(tmp_path / "missing.nrrd")


def test_ct_window_follows_the_typed_target_and_mri_uses_percentiles():
    ct = load_case("spleen").volume
    assert window_for_target("left lung upper lobe") == "lung"
    assert window_for_target("L3 vertebra") == "bone"
    # abdominal targets get the training data's soft-tissue window (see tests/engine/model/test_preprocessing_parity.py)
    assert choose_preprocessing(ct, "liver").description == "ct-soft_tissue"
    assert choose_preprocessing(ct, "spleen").description == "ct-soft_tissue"
    mri = read_volume(data_path("mr/brats2013/brats_2013_pat0001_1/Flair_subtrMeanDivStd.nii.gz"), modality="MR")
    before = mri.array.copy()
    preprocessing = choose_preprocessing(mri, "tumour")
    scaled = preprocessing.apply(mri.array)
    assert preprocessing.description.startswith("percentile")
    assert 0.0 <= scaled.min() and scaled.max() <= 1.0 and np.mean(scaled[mri.array != 0] > 0.99) < 0.02
    np.testing.assert_array_equal(mri.array, before)  # the source is never modified
    assert Preprocessing.ct_window("bone").apply(np.array([-1000, 400, 3000])).tolist() == \
        [0.0, np.float32(127) / np.float32(255), 1.0]  # uint8 steps, truncated, as the training data


def test_background_prefetch_makes_the_next_clicks_use_cached_encodings(spleen):
    case, volume = spleen
    oracle = GroundTruthOracle()
    engine = SegmentationEngine(oracle)
    prefetcher = SlicePrefetcher(engine)
    try:
        prefetcher.request(PrefetchRequest(volume, "axial", centre=12, radius=2))
        assert prefetcher.wait_idle(timeout=60)
        assert oracle.encoded == 5
        for k in (10, 11, 12, 13, 14):
            ijk = np.argwhere(case.mask[k])
            if len(ijk):
                j, i = ijk[len(ijk) // 2]
                engine.predict_slice(volume, SlicePrompt("axial", points=(PointPrompt((i, j, k)),)))
        assert oracle.encoded == 5  # every click hit the cache
    finally:
        prefetcher.close()
