"""One ViT pass per slice serves clicks, text and propagation when every class comes from one folder
(as facebook/sam3 and converted Medical SAM3 checkpoints do), with the same answers as separate passes."""

import numpy as np
import pytest
import torch

from medsam3.interaction.engine import SegmentationEngine
from medsam3.interaction.prompts import PointPrompt, SlicePrompt
from medsam3.model.segmentation_model import ModelPrompt
from medsam3.model.sam3.transformers_model import TransformersSegmentationModel

from cases import load_case


def _models(folder):
    shared = TransformersSegmentationModel(folder, "one-folder")
    separate = TransformersSegmentationModel(folder, "one-folder-separate")
    separate.shares_backbone = False
    return shared, separate


def test_shared_backbone_gives_the_same_clicks_text_and_tracking(one_folder_model):
    shared, separate = _models(one_folder_model)
    assert shared.shares_backbone
    volume = load_case("spleen").volume
    prompt = ModelPrompt(np.array([[100.0, 120.0]]), np.array([1]))
    for model in (shared, separate):
        model.frames = SegmentationEngine(model).frames(volume, "axial")
    a = shared.segment_with_prompt(shared.encoding(shared.frames, 12, "prompts"), prompt)
    b = separate.segment_with_prompt(separate.encoding(separate.frames, 12, "prompts"), prompt)
    np.testing.assert_allclose(a.logits, b.logits, atol=1e-4)
    text_a = shared.segment_with_text(shared.encoding(shared.frames, 12, "text"), "liver")
    text_b = separate.segment_with_text(separate.encoding(separate.frames, 12, "text"), "liver")
    assert len(text_a) == len(text_b) and len(text_a) > 0
    np.testing.assert_allclose(text_a[0].logits, text_b[0].logits, atol=1e-4)
    track_a = shared.encoding(shared.frames, 12, "tracking")
    track_b = separate.encoding(separate.frames, 12, "tracking")
    for x, y in zip(track_a["vision_feats"], track_b["vision_feats"]):
        torch.testing.assert_close(x, y, atol=1e-4, rtol=1e-4)


def test_one_backbone_pass_per_slice_serves_every_use(one_folder_model):
    shared, _ = _models(one_folder_model)
    engine = SegmentationEngine(shared)
    volume = load_case("spleen").volume
    # the same target, so the same CT window: the slice images are identical for the three uses
    engine.predict_slice(volume, SlicePrompt("axial", points=(PointPrompt((80, 80, 12)),)), target_text="liver")
    engine.segment_text_on_slice(volume, "liver", "axial", 12, score_threshold=0.0)
    engine.propagate(volume, [SlicePrompt("axial", points=(PointPrompt((80, 80, 12)),))], target_text="liver",
                     stop_after_empty=0)
    backbone_passes = sum(1 for key in engine.cache._entries if key.model.endswith("/backbone"))
    assert backbone_passes == volume.shape_ijk[2]  # one per slice, although slice 12 served all three uses


def test_text_through_the_volume_shares_the_backbone_and_leaves_every_slice_ready_for_clicks(one_folder_model):
    shared, separate = _models(one_folder_model)
    volume = load_case("spleen").volume
    answers = [SegmentationEngine(model).propagate_text(volume, "liver", "axial", score_threshold=0.0)[0]
               for model in (shared, separate)]
    np.testing.assert_array_equal(answers[0].mask, answers[1].mask)
    assert answers[0].slice_scores == pytest.approx(answers[1].slice_scores, abs=1e-4)

    engine = SegmentationEngine(shared)
    engine.propagate_text(volume, "liver", "axial", score_threshold=0.0)
    passes = engine.cache.misses
    for k in (0, 12, 25):  # clicks anywhere afterwards decode from the slices text propagation encoded
        engine.predict_slice(volume, SlicePrompt("axial", points=(PointPrompt((80, 80, k)),)), target_text="liver")
    backbone_keys = [key for key in engine.cache._entries if key.model.endswith("/backbone")]
    assert len(backbone_keys) == volume.shape_ijk[2]
    assert engine.cache.misses == passes + 3  # three click decodings derived, no new backbone pass
