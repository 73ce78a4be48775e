"""The tiny random-weight SAM 3 models, loaded back from disk, run every prompt path on CPU in float32.

These tests also pin down the transformers 5.23 calling conventions the predictor relies on: argument and output
names, mask shapes, how precomputed vision features are passed back in, and how points/boxes are nested.
"""

import numpy as np
import pytest
import torch
from transformers import AutoProcessor, Sam3Model, Sam3TrackerModel, Sam3TrackerVideoModel, Sam3VideoModel

from medsam3.model.sam3.tiny_models import TINY_IMAGE_SIZE, TINY_LOW_RES_MASK_SIZE, build_tiny_configs, save_tiny_models

FRAME_HEIGHT, FRAME_WIDTH = 100, 150  # not square and not the model size: outputs must come back at this size
NUM_FRAMES = 8
NUM_QUERIES = build_tiny_configs()["sam3"].detr_decoder_config.num_queries
LOW_RES = TINY_LOW_RES_MASK_SIZE


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (NUM_FRAMES, FRAME_HEIGHT, FRAME_WIDTH, 3), dtype=np.uint8)


def load(tiny_dirs, key, model_class, **config_overrides):
    model = model_class.from_pretrained(tiny_dirs[key], **config_overrides).eval()
    return model, AutoProcessor.from_pretrained(tiny_dirs[key])


def test_saved_set_is_reused(tiny_dirs):
    directory = tiny_dirs["sam3"].parent
    before = {key: (path / "model.safetensors").stat().st_mtime_ns for key, path in tiny_dirs.items()}
    assert save_tiny_models(directory) == tiny_dirs
    assert {key: (path / "model.safetensors").stat().st_mtime_ns for key, path in tiny_dirs.items()} == before


def test_sam3_text_prompt_on_one_image(tiny_dirs, frames):
    model, processor = load(tiny_dirs, "sam3", Sam3Model)
    inputs = processor(images=frames[0], text="liver", return_tensors="pt")
    assert inputs["pixel_values"].shape == (1, 3, TINY_IMAGE_SIZE, TINY_IMAGE_SIZE)
    assert inputs["input_ids"].shape == inputs["attention_mask"].shape == (1, 32)
    assert inputs["original_sizes"].tolist() == [[FRAME_HEIGHT, FRAME_WIDTH]]

    with torch.no_grad():
        outputs = model(**inputs)
    assert outputs.pred_masks.shape == (1, NUM_QUERIES, LOW_RES, LOW_RES)  # mask logits per query
    assert outputs.pred_logits.shape == (1, NUM_QUERIES)
    assert outputs.pred_boxes.shape == (1, NUM_QUERIES, 4)  # normalised xyxy
    assert outputs.presence_logits.shape == (1, 1)
    assert outputs.semantic_seg.shape == (1, 1, LOW_RES, LOW_RES)

    results = processor.post_process_instance_segmentation(
        outputs, threshold=0.0, mask_threshold=0.5, target_sizes=inputs["original_sizes"].tolist()
    )
    assert results[0]["masks"].shape == (NUM_QUERIES, FRAME_HEIGHT, FRAME_WIDTH)
    assert results[0]["scores"].shape == (NUM_QUERIES,)
    assert results[0]["boxes"].shape == (NUM_QUERIES, 4)


def test_sam3_reuses_precomputed_vision_and_text_features(tiny_dirs, frames):
    model, processor = load(tiny_dirs, "sam3", Sam3Model)
    inputs = processor(images=frames[0], text="tumor", return_tensors="pt")
    with torch.no_grad():
        direct = model(**inputs)
        vision_embeds = model.get_vision_features(pixel_values=inputs["pixel_values"])
        text_embeds = model.get_text_features(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        cached = model(vision_embeds=vision_embeds, text_embeds=text_embeds, attention_mask=inputs["attention_mask"])
    assert torch.equal(direct.pred_masks, cached.pred_masks)
    assert torch.equal(direct.pred_logits, cached.pred_logits)


def test_sam3_exemplar_box_prompt(tiny_dirs, frames):
    model, processor = load(tiny_dirs, "sam3", Sam3Model)
    # boxes: [image][box][x1, y1, x2, y2] in original pixels; labels: [image][box], 1 positive / 0 negative
    inputs = processor(
        images=frames[0], input_boxes=[[[10, 20, 80, 90]]], input_boxes_labels=[[1]], return_tensors="pt"
    )
    assert inputs["input_boxes"].shape == (1, 1, 4)  # normalised cx, cy, w, h
    assert torch.allclose(inputs["input_boxes"], torch.tensor([[[45 / 150, 55 / 100, 70 / 150, 70 / 100]]]))
    with torch.no_grad():
        outputs = model(**inputs)  # the processor filled in the text "visual"
    assert outputs.pred_masks.shape == (1, NUM_QUERIES, LOW_RES, LOW_RES)


def test_tracker_points_and_box_on_one_image(tiny_dirs, frames):
    model, processor = load(tiny_dirs, "sam3_tracker", Sam3TrackerModel)
    # points: [image][object][point][x, y] in original pixels; labels: [image][object][point], 1 fg / 0 bg
    inputs = processor(
        images=frames[0], input_points=[[[[30, 40], [60, 50]]]], input_labels=[[[1, 0]]], return_tensors="pt"
    )
    scale_x, scale_y = TINY_IMAGE_SIZE / FRAME_WIDTH, TINY_IMAGE_SIZE / FRAME_HEIGHT
    assert torch.allclose(
        inputs["input_points"], torch.tensor([[[[30 * scale_x, 40 * scale_y], [60 * scale_x, 50 * scale_y]]]])
    )
    with torch.no_grad():
        points_out = model(**inputs)  # multimask_output=True by default: 3 candidate masks
    assert points_out.pred_masks.shape == (1, 1, 3, LOW_RES, LOW_RES)
    assert points_out.iou_scores.shape == (1, 1, 3)
    assert points_out.object_score_logits.shape == (1, 1, 1)
    masks = processor.post_process_masks(points_out.pred_masks, inputs["original_sizes"])
    assert masks[0].shape == (1, 3, FRAME_HEIGHT, FRAME_WIDTH) and masks[0].dtype == torch.bool

    # boxes: [image][object][x1, y1, x2, y2]; two boxes = two objects
    box_inputs = processor(images=frames[0], input_boxes=[[[10, 20, 80, 90], [50, 30, 140, 95]]], return_tensors="pt")
    with torch.no_grad():
        box_out = model(**box_inputs, multimask_output=False)
        image_embeddings = model.get_image_embeddings(box_inputs["pixel_values"])
        cached_out = model(
            image_embeddings=image_embeddings, input_boxes=box_inputs["input_boxes"], multimask_output=False
        )
    assert box_out.pred_masks.shape == (1, 2, 1, LOW_RES, LOW_RES)
    assert box_out.iou_scores.shape == (1, 2, 1)
    assert [tuple(level.shape[-2:]) for level in image_embeddings] == [(64, 64), (32, 32), (16, 16)]
    assert torch.equal(box_out.pred_masks, cached_out.pred_masks)


def run_point_tracking(model, processor, frames, injected_features=None):
    session = processor.init_video_session(
        video=list(frames), inference_device="cpu", dtype=torch.float32, max_vision_features_cache_size=NUM_FRAMES
    )
    for frame_idx, features in (injected_features or {}).items():
        session.cache.cache_vision_features(frame_idx, features)
    processor.add_inputs_to_inference_session(
        inference_session=session,
        frame_idx=0,
        obj_ids=[1, 2],
        input_points=[[[[30, 40]], [[100, 60]]]],  # [image][object][point][x, y]
        input_labels=[[[1], [1]]],
    )
    first = model(inference_session=session, frame_idx=0)
    propagated = list(model.propagate_in_video_iterator(session, start_frame_idx=0))
    return session, first, propagated


def test_tracker_video_propagates_points_through_frames(tiny_dirs, frames):
    model, processor = load(tiny_dirs, "sam3_tracker_video", Sam3TrackerVideoModel)
    session, first, propagated = run_point_tracking(model, processor, frames)
    assert first.object_ids == [1, 2]
    assert first.pred_masks.shape == (2, 1, LOW_RES, LOW_RES)
    assert [output.frame_idx for output in propagated] == list(range(NUM_FRAMES))
    for output in propagated:
        assert output.pred_masks.shape == (2, 1, LOW_RES, LOW_RES)
        assert output.object_score_logits.shape == (2, 1)
        full = processor.post_process_masks(
            [output.pred_masks], original_sizes=[[session.video_height, session.video_width]], binarize=False
        )[0]
        assert full.shape == (2, 1, FRAME_HEIGHT, FRAME_WIDTH)


def test_tracker_video_accepts_vision_features_computed_outside(tiny_dirs, frames):
    model, processor = load(tiny_dirs, "sam3_tracker_video", Sam3TrackerVideoModel)
    _, _, reference = run_point_tracking(model, processor, frames)
    pixel_values = processor.video_processor(videos=list(frames), return_tensors="pt").pixel_values_videos[0]
    features = {}
    with torch.no_grad():
        for frame_idx in range(NUM_FRAMES):
            image_features = model.get_image_features(pixel_values[frame_idx : frame_idx + 1])
            features[frame_idx] = {
                "vision_feats": image_features.fpn_hidden_states,
                "vision_pos_embeds": image_features.fpn_position_encoding,
            }
    model.vision_encoder.forward = None  # any call to the vision encoder would now fail
    _, _, injected = run_point_tracking(model, processor, frames, injected_features=features)
    for expected, actual in zip(reference, injected, strict=True):
        assert torch.equal(expected.pred_masks, actual.pred_masks)


def test_video_propagates_text_through_frames(tiny_dirs, frames):
    model, processor = load(tiny_dirs, "sam3_video", Sam3VideoModel)
    session = processor.init_video_session(video=list(frames), inference_device="cpu", dtype=torch.float32)
    session = processor.add_text_prompt(session, "liver")
    outputs = list(model.propagate_in_video_iterator(session, start_frame_idx=0))
    assert [output.frame_idx for output in outputs] == list(range(NUM_FRAMES))
    assert outputs[0].object_ids, "the tiny config detects with threshold 0, so frame 0 has objects"
    for output in outputs:
        assert set(output.obj_id_to_mask) == set(output.object_ids)
        for mask in output.obj_id_to_mask.values():
            assert mask.shape == (1, LOW_RES, LOW_RES)
        assert set(output.object_ids) <= set(output.obj_id_to_score)  # scores may also list removed objects
        result = processor.postprocess_outputs(session, output)
        count = len(result["object_ids"])
        assert result["masks"].shape == (count, FRAME_HEIGHT, FRAME_WIDTH)
        assert result["scores"].shape == (count,)
        assert result["boxes"].shape == (count, 4)
    assert len(processor.postprocess_outputs(session, outputs[0])["object_ids"]) > 0
