"""Medical SAM3's 3D text protocol through the real transformers classes (tiny random weights): independent
4-slice clips with a fresh state per clip and label, text entering on slices 0, 4, 8, ..., hot start off, and
labels fused per voxel by score with a 0.5 floor (AIM-Research-Lab/Medical-SAM3 medical/inference_3d.py)."""

import numpy as np
import pytest
from transformers import Sam3VideoModel, Sam3VideoProcessor

from medsam3.interaction.engine import SegmentationEngine
from medsam3.model.text_protocol import LONG_TRACK, MEDICAL_SAM3_CLIPS, LabelFusion, VolumeTextProtocol
from medsam3.model.sam3.transformers_model import TransformersSegmentationModel

from cases import load_case

SLICES = 10  # clips [0, 4), [4, 8), [8, 10)


@pytest.fixture(scope="module")
def volume():
    spleen = load_case("spleen").volume
    return type(spleen)(spleen.array[:SLICES].copy(), spleen.ijk_to_ras, modality="CT", name="spleen-10")


@pytest.fixture()
def recorded(monkeypatch):
    """What the video model was asked: text prompts added to which session, and each propagation's session,
    start, length, state and hot-start settings; every frame it returned."""
    calls = {"text": [], "runs": [], "frames": [], "sessions": []}  # sessions held so that no id() is reused
    add_text_prompt = Sam3VideoProcessor.add_text_prompt
    propagate = Sam3VideoModel.propagate_in_video_iterator

    def spy_text(self, session, text):
        calls["sessions"].append(session)
        calls["text"].append((id(session), text))
        return add_text_prompt(self, session, text)

    def spy_propagate(self, session, start_frame_idx=0, max_frame_num_to_track=None, reverse=False, **kwargs):
        calls["runs"].append({"session": id(session), "start": start_frame_idx, "length": max_frame_num_to_track,
                              "objects_before": len(session.obj_ids), "prompts": dict(session.prompts),
                              "hotstart": (self.hotstart_delay, self.hotstart_unmatch_thresh,
                                           self.hotstart_dup_thresh),
                              "recondition": self.recondition_every_nth_frame, "reverse": reverse})
        for output in propagate(self, session, start_frame_idx, max_frame_num_to_track, reverse, **kwargs):
            calls["frames"].append(int(output.frame_idx))
            yield output

    monkeypatch.setattr(Sam3VideoProcessor, "add_text_prompt", spy_text)
    monkeypatch.setattr(Sam3VideoModel, "propagate_in_video_iterator", spy_propagate)
    return calls


def _model(tiny_dirs, protocol):
    model = TransformersSegmentationModel(tiny_dirs["sam3"].parent, "tiny-random", text_protocol=protocol,
                                          bf16_autocast=False)
    return model


def test_clips_of_four_with_a_fresh_state_and_the_text_on_each_clip_first_slice(tiny_dirs, volume, recorded,
                                                                               one_torch_thread):
    model = _model(tiny_dirs, MEDICAL_SAM3_CLIPS)
    [result] = SegmentationEngine(model).propagate_text(volume, "spleen", "axial", score_threshold=0.0)

    runs = recorded["runs"]
    assert [run["start"] for run in runs] == [0, 4, 8]  # the text goes in on slices 0, 4, 8 only
    assert [run["length"] for run in runs] == [3, 3, 1]  # forward to the clip's last slice, never beyond
    assert len({run["session"] for run in runs}) == 3  # a new state for every clip ...
    assert all(run["objects_before"] == 0 for run in runs)  # ... holding nothing from the clip before
    assert [session for session, _ in recorded["text"]] == [run["session"] for run in runs]
    assert all(list(run["prompts"].values()) == ["Spleen"] for run in runs)  # the training name (vocabulary.py)
    assert all(run["hotstart"] == (0, 0, 0) and run["recondition"] == 16 and not run["reverse"] for run in runs)
    assert recorded["frames"] == list(range(SLICES))  # each slice once, in order
    assert result.visited_slices == list(range(SLICES))
    # the shared video model is left as it was for other protocols
    video, _ = model.component("sam3_video")
    assert (video.hotstart_delay, video.hotstart_unmatch_thresh, video.hotstart_dup_thresh) == (15, 8, 8)


def test_long_track_option_runs_one_session_through_the_volume(tiny_dirs, volume, recorded, one_torch_thread):
    model = _model(tiny_dirs, LONG_TRACK)
    SegmentationEngine(model).propagate_text(volume, "spleen", "axial", score_threshold=0.0)
    assert [(run["start"], run["length"], run["hotstart"]) for run in recorded["runs"]] == [(0, None, (15, 8, 8))]
    assert recorded["frames"] == list(range(SLICES))


def test_two_labels_are_fused_per_voxel_by_score_above_half(tiny_dirs, volume, one_torch_thread, monkeypatch):
    """Detection thresholds 0 make the random weights find objects for both phrases; every frame each phrase
    got from the real model is kept, and the fusion is recomputed independently from them."""
    protocol = VolumeTextProtocol("test-all-detections", detection_threshold=0.0)
    model = _model(tiny_dirs, protocol)
    engine = SegmentationEngine(model)
    seen: dict[str, list] = {}
    track_text = model.track_text

    def keep(frames, text, start_index, reverse):
        for frame_masks in track_text(frames, text, start_index, reverse):
            seen.setdefault(text, []).append((frames, frame_masks))
            yield frame_masks

    monkeypatch.setattr(model, "track_text", keep)
    first, second = engine.propagate_text(volume, "spleen, liver", "axial", score_threshold=0.0)

    scores, masks = {}, {}
    for phrase, trained_name in (("spleen", "Spleen"), ("liver", "Liver")):
        scores[phrase] = np.zeros(volume.array.shape, np.float32)
        masks[phrase] = np.zeros(volume.array.shape, bool)
        for frames, frame_masks in seen[trained_name]:
            stack_scores = frames.geometry.as_slice_stack(scores[phrase])
            stack_masks = frames.geometry.as_slice_stack(masks[phrase])
            for prediction in frame_masks.masks.values():
                logits = frames.frame.model_grid_to_slice(prediction.logits)
                stack_scores[frame_masks.frame_index] = np.maximum(stack_scores[frame_masks.frame_index],
                                                                   1 / (1 + np.exp(-logits)))
                stack_masks[frame_masks.frame_index] |= logits > 0
    spleen_wins = masks["spleen"] & (scores["spleen"] > 0.5) & ~(masks["liver"] & (scores["liver"] > scores["spleen"]))
    liver_wins = masks["liver"] & (scores["liver"] > 0.5) & ~(masks["spleen"] & (scores["spleen"] >= scores["liver"]))
    both = masks["spleen"] & masks["liver"]
    assert both.sum() > 100  # the two phrases really competed for voxels
    assert (liver_wins & both).any() and (spleen_wins & both).any()  # and each won some of them
    np.testing.assert_array_equal(first.mask, spleen_wins)
    np.testing.assert_array_equal(second.mask, liver_wins)
    assert not (first.mask & second.mask).any()


def test_fusion_floor_and_ties():
    fusion = LabelFusion((1, 1, 4), floor=0.5)
    fusion.offer(1, 0, np.array([[True, True, True, False]]), np.array([[0.9, 0.6, 0.5, 0.99]]))
    fusion.offer(2, 0, np.array([[True, True, True, True]]), np.array([[0.8, 0.7, 0.5, 0.4]]))
    assert fusion.owner[0].tolist() == [[1, 2, 0, 0]]  # higher score wins; 0.5 and below stay background


def test_protocol_parameters_in_one_place():
    assert MEDICAL_SAM3_CLIPS.clips(10) == [(0, 4), (4, 8), (8, 10)]
    assert MEDICAL_SAM3_CLIPS.video_model_settings() == {"hotstart_delay": 0, "hotstart_unmatch_thresh": 0,
                                                         "hotstart_dup_thresh": 0, "recondition_every_nth_frame": 16}
    assert MEDICAL_SAM3_CLIPS.background_floor == 0.5
    assert LONG_TRACK.clips(10) == [(0, 10)]


def test_a_name_that_loses_every_voxel_to_another_says_so(volume):
    """The bright-region model finds the same region, with the same score, for every name: the first keeps it."""
    from medsam3.model.bright_region_model import BrightRegionModel

    spleen, liver = SegmentationEngine(BrightRegionModel(image_size=252, mask_grid=63)).propagate_text(
        volume, "spleen, liver", "axial")
    assert spleen.mask.any() and not spleen.note
    assert not liver.mask.any()
    assert "\n" not in liver.note and "'liver' scored higher as 'spleen'" in liver.note
