"""The converted model computes what Meta's own SAM 3 computes, on a real CT slice, at full size.

Meta's image model (with its interactive tracker) and video model are built with Meta's ``sam3`` package, every
parameter redrawn from a seeded generator (so no zero or identity initialisation can hide a transposed matrix,
a swapped query/key or a wrong rotary layout), saved as Meta checkpoints, converted with ``medsam3 models
convert`` and run beside Meta's models in float32:

- a text prompt through the detector at 1008 px: mask logits, boxes, scores and the presence logit;
- a click through the interactive tracker at 1008 px: the low-resolution mask logits;
- a positive and a negative click on slice 0 propagated to slices 1 and 2 with the video model at 504 px (the 3D
  checkpoint's resolution; the tracker's object score shifted so that the object is seen, see
  ``make_tracker_see_the_object``), and text through the video model's detector at 504 px (its score logits both alone and joined with the presence
  logit, as Meta's video detector returns them).

Largest absolute differences are printed (``pytest -s``). Models are built, compared and freed one at a time
(peak about 7 GB). Meta's code runs on the CPU with two patches, both marked "CPU patch" below.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import shutil
import warnings

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from cases import load_case
from clip_vocabulary import write_clip_vocabulary
from medsam3.apps.bench.propagation_agreement import redraw_every_parameter
from medsam3.apps.cli import run as run_cli
from medsam3.model.segmentation_model import ModelPrompt
from medsam3.model.sam3.meta_parity import class_token_box_prompt
from medsam3.model.sam3.transformers_model import TransformersSegmentationModel

pytestmark = pytest.mark.slow

TOLERANCE = 1e-3  # largest absolute logit difference allowed, float32 on both sides
# Meta clamps the tracker's mask logits to [-32, 32] before returning them (sam1_task_predictor.py, and the video
# tracker's outputs); random weights give logits beyond that, so both sides are compared clamped.
META_LOGIT_CLAMP = 32.0
TEXT = "spleen"
OBJECT_SCORE_SHIFT = 4.0  # see make_tracker_see_the_object
# Propagation differs from Meta's tracker as built in two places, both in transformers' Sam3TrackerVideoModel, not
# in our converter or adapter (see the video test): the order of resizing and sigmoid for the memory mask (from
# slice 1 on) and Meta's memory selection (from slice 2 on). With both undone on Meta's side every slice agrees to
# 1e-3; Meta as built is checked too, within the documented size of each difference (docs/conversion.md,
# "Differences that remain"; measured with the seeded random weights, 2026-12-03):
MEMORY_SELECTION_TOLERANCE = 0.02  # slice 2, Meta without memory selection undone: measured 0.011
AS_BUILT_TOLERANCE = 0.05  # slices 1-2, Meta as built: the memory-mask order, measured 0.032 (slice 1), 0.019 (2)
# The counterfactuals (a fix of ours left out) must be told apart from the fixed path: each must differ by at least
# this much, a fraction of what was measured, so that the comparison is shown to see the fix.
MIN_UNSATURATED = 0.9  # fraction of the compared propagated logits that must lie strictly inside +-32
SEED = 7


# --------------------------------------------------------------------------------------------------- inputs


@functools.lru_cache(maxsize=None)
def ct_slices(size: int, count: int = 2) -> np.ndarray:
    """``count`` neighbouring axial slices through the spleen of a real CT, soft-tissue window, resized to
    ``size`` x ``size`` grey values 0..255 (uint8): the same pixels go to both models."""
    case = load_case("spleen")
    index = int(np.argmax(case.mask.sum(axis=(1, 2))))
    hounsfield = case.volume.array[index : index + count].astype(np.float32)
    grey = np.clip((hounsfield + 160.0) / 400.0, 0.0, 1.0) * 255.0
    resized = torch.nn.functional.interpolate(torch.from_numpy(grey)[:, None], size=(size, size), mode="bilinear")
    return resized[:, 0].round().clamp(0, 255).to(torch.uint8).numpy()


class SliceFrames:
    """The engine's frame source for a few slices: images in model space (0..1) and an encoding cache."""

    def __init__(self, images: np.ndarray):
        self.images, self.cache = images, {}

    def __len__(self) -> int:
        return len(self.images)

    def image(self, index: int) -> np.ndarray:
        return self.images[index].astype(np.float32) / 255.0

    def embedding(self, index, compute, role=""):
        if (index, role) not in self.cache:
            self.cache[index, role] = compute(self.image(index))
        return self.cache[index, role]


def meta_pixels(image: np.ndarray) -> torch.Tensor:
    """Meta's preprocessing of an image already at the model's size: grey to RGB, 0..1, mean 0.5, std 0.5."""
    rgb = torch.from_numpy(image).float().div(255.0)[None].expand(3, -1, -1)
    return ((rgb - 0.5) / 0.5)[None]


@pytest.fixture(scope="module")
def vocabulary(tmp_path_factory):
    """(CLIP tokenizer folder for our converter, Meta's merge list): the same 49408-token vocabulary."""
    folder = tmp_path_factory.mktemp("clip")
    return folder, write_clip_vocabulary(folder)


# --------------------------------------------------------------------------------------------------- Meta side


def make_tracker_see_the_object(tracker: torch.nn.Module) -> None:
    """After ``redraw_every_parameter``: the video tracker's object-score head gets OBJECT_SCORE_SHIFT added to
    its last bias (the weights are saved afterwards, so both sides share it; the detector is untouched).

    With the plain redraw the object score came out at -0.1 to -0.4 on every slice, so Meta's tracker (and ours)
    replaced every mask logit by NO_OBJ_SCORE = -1024 (sam3_tracker_base.py, ``_forward_sam_heads``): the
    propagation comparison saw one constant and checked only the sign of the object score, not the mask decoder,
    the memory attention, the mask-memory encoder or the object pointers. With the shift the object scores are
    3.6 to 3.9 and the mask logits lie within +-12.3 (measured with Meta's model: none at the +-32 clamp)."""
    with torch.no_grad():
        tracker.sam_mask_decoder.pred_obj_score_head.layers[-1].bias += OBJECT_SCORE_SHIFT


class CudaTensorsOnCpu(TorchFunctionMode):
    """CPU patch, active while Meta's code builds and runs: tensors Meta's code puts on the GPU stay on the CPU.

    - ``device="cuda"``: constant tensors made by the builders (position-encoding caches in position_encoding.py,
      the box-bias coordinates in decoder.py) are made on the CPU;
    - ``Tensor.cuda()``: the video tracker moves stored memories back to the GPU (sam3_tracker_base.py,
      ``_prepare_memory_conditioned_features``; sam3_tracking_predictor.py): they stay where they are;
    - ``Tensor.pin_memory()`` needs a CUDA driver (geometry_encoders.py ``_encode_boxes``, sam3_tracker_base.py):
      the tensor stays unpinned.

    None of these changes a value."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in (torch.Tensor.pin_memory, torch.Tensor.cuda):
            return args[0]
        if str(kwargs.get("device", "")).startswith("cuda"):
            kwargs["device"] = "cpu"
        return func(*args, **kwargs)


@contextlib.contextmanager
def meta_package():
    with warnings.catch_warnings():  # Meta's package warns about torch.jit and CUDA-only autocast
        warnings.simplefilter("ignore")
        from sam3 import model_builder

        with CudaTensorsOnCpu():
            yield model_builder


@contextlib.contextmanager
def meta_built_at(model_builder, image_size: int):
    """Build Meta's models for another input size, as the Medical SAM3 authors' fork does for the 3D checkpoint
    (``build_sam3_video_model(..., image_size=504)``): the ViT's rotary tables, the detector's box bias grid, the
    tracker's image size and its mask-memory input (16 pixels per feature) follow the size; no weight changes."""
    if image_size == 1008:
        yield
        return
    grid = image_size // 14
    originals = {name: getattr(model_builder, name) for name in
                 ("ViT", "TransformerDecoder", "Sam3TrackerPredictor", "SimpleMaskDownSampler",
                  "Sam3VideoInferenceWithInstanceInteractivity")}
    overrides = {"ViT": {"img_size": image_size}, "TransformerDecoder": {"resolution": image_size},
                 "Sam3TrackerPredictor": {"image_size": image_size},
                 "SimpleMaskDownSampler": {"interpol_size": [16 * grid, 16 * grid]},
                 "Sam3VideoInferenceWithInstanceInteractivity": {"image_size": image_size}}
    def forced(original, keywords):  # the builder passes these keywords itself: ours must win
        return lambda *args, **kwargs: original(*args, **{**kwargs, **keywords})

    for name, keywords in overrides.items():
        setattr(model_builder, name, forced(originals[name], keywords))
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(model_builder, name, original)


@pytest.fixture
def full_size_folder(tmp_path):
    """A folder for a full-size checkpoint and its conversion (6.5 GB together), emptied after the test even when
    it fails: pytest keeps the folders of recent runs, and three runs' worth filled the CI machine's disk."""
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)


def save_meta_checkpoint(model: torch.nn.Module, path) -> None:
    """Weights under "model", as Meta's trainer writes them (the rotary tables included, as in real files)."""
    torch.save({"model": model.state_dict()}, path)


def convert(checkpoint, output, tokenizer_folder, image_size: int):
    """``medsam3 models convert``, as a user runs it (offline: the tokenizer comes from a folder)."""
    assert run_cli(["models", "convert", str(checkpoint), "--output", str(output), "--tokenizer",
                    str(tokenizer_folder)]) == 0
    return TransformersSegmentationModel(output, "converted", device="cpu", image_size=image_size,
                                         dtype=torch.float32, bf16_autocast=False)  # pinned: float32, no autocast


def collect() -> None:
    """After ``del``: give the memory of a full-size model back before the next one is built."""
    gc.collect()


# --------------------------------------------------------------------------------------------------- comparing


def largest_difference(expected, actual) -> float:
    expected, actual = torch.as_tensor(expected).float(), torch.as_tensor(actual).float()
    assert expected.shape == actual.shape, (expected.shape, actual.shape)
    return float((expected - actual).abs().max())


class Report:
    """Per-part largest absolute differences, printed together and checked against the tolerance."""

    def __init__(self, title: str):
        self.title, self.parts = title, {}

    def add(self, part: str, expected, actual, *, tolerance: float = TOLERANCE, at_least: float | None = None) -> None:
        """Checked: the difference is at most ``tolerance``, or, for a counterfactual, at least ``at_least``."""
        self.parts[part] = (largest_difference(expected, actual), float(torch.as_tensor(expected).float().abs().max()),
                            tolerance, at_least)

    def check(self) -> None:
        print(f"\n{self.title}: largest absolute difference (largest |value|)")
        for part, (difference, scale, tolerance, at_least) in self.parts.items():
            note = (f"  (must be at least {at_least:g})" if at_least is not None
                    else "" if tolerance == TOLERANCE else f"  (tolerance {tolerance:g})")
            print(f"  {part:<48} {difference:9.3g}  ({scale:.3g}){note}")
        failed = {part: (difference, tolerance) for part, (difference, _, tolerance, at_least) in self.parts.items()
                  if at_least is None and not difference <= tolerance}
        unseen = {part: (difference, at_least) for part, (difference, _, _, at_least) in self.parts.items()
                  if at_least is not None and not difference >= at_least}
        assert not failed, f"differences above their tolerance: {failed}"
        assert not unseen, f"a fix left out no longer makes a difference (the comparison is blind): {unseen}"


def hook_output(module: torch.nn.Module, store: dict, key: str):
    return module.register_forward_hook(lambda _module, _inputs, output: store.setdefault(key, output))


# --------------------------------------------------------------------------------------------------- image model


def test_image_model_text_and_click_match_meta_at_1008_px(vocabulary, full_size_folder):
    tokenizer_folder, meta_merges = vocabulary
    images = ct_slices(1008)
    click_xy = np.array([[430.0, 520.0]])
    report = Report("image model, 1008 px")
    meta = {}

    with meta_package() as model_builder:
        torch.manual_seed(SEED)
        model = model_builder.build_sam3_image_model(bpe_path=str(meta_merges), device="cpu", eval_mode=True,
                                                     load_from_HF=False, enable_inst_interactivity=True)
    redraw_every_parameter(model, SEED)
    save_meta_checkpoint(model, full_size_folder / "image.pt")
    with torch.inference_mode(), CudaTensorsOnCpu():
        from sam3.model.data_misc import FindStage

        trunk_hook = hook_output(model.backbone.vision_backbone.trunk, meta, "trunk")
        backbone_out = model.backbone.forward_image(meta_pixels(images[0]))
        trunk_hook.remove()
        backbone_out.update(model.backbone.forward_text([TEXT], device="cpu"))
        meta["detector_levels"] = [level.clone() for level in backbone_out["backbone_fpn"]]
        find = FindStage(img_ids=torch.tensor([0]), text_ids=torch.tensor([0]), input_boxes=None,
                         input_boxes_mask=None, input_boxes_label=None, input_points=None, input_points_mask=None)
        out = model.forward_grounding(backbone_out=backbone_out, find_input=find, find_target=None,
                                      geometric_prompt=model._get_dummy_prompt())
        meta.update(masks=out["pred_masks"][0], boxes_cxcywh=out["pred_boxes"][0], logits=out["pred_logits"][0, :, 0],
                    presence=out["presence_logit_dec"][0])
        sam2_out = backbone_out["sam2_backbone_out"]
        tracker = model.inst_interactive_predictor.model
        meta["tracker_levels"] = [tracker.sam_mask_decoder.conv_s0(sam2_out["backbone_fpn"][0]),
                                  tracker.sam_mask_decoder.conv_s1(sam2_out["backbone_fpn"][1]),
                                  sam2_out["backbone_fpn"][2]]
        sam2_out["backbone_fpn"][0], sam2_out["backbone_fpn"][1] = meta["tracker_levels"][:2]
        state = {"original_height": 1008, "original_width": 1008, "backbone_out": backbone_out}
        _, iou, low_res = model.predict_inst(state, point_coords=click_xy, point_labels=np.array([1]),
                                             multimask_output=True, return_logits=True)
        best = int(np.argmax(iou))
        meta["click_logits"], meta["click_iou"] = low_res[best], float(iou[best])
    meta["trunk"] = meta["trunk"][-1]
    del model, tracker, backbone_out, sam2_out, out, state
    collect()

    ours = convert(full_size_folder / "image.pt", full_size_folder / "converted-image", tokenizer_folder, 1008)
    frames = SliceFrames(images)
    sam3, processor = ours.component("sam3")
    captured = {}
    trunk_hook = hook_output(sam3.vision_encoder.backbone, captured, "trunk")
    text_encoding = ours.encoding(frames, 0, "text")
    prompt_encoding = ours.encoding(frames, 0, "prompts")
    trunk_hook.remove()
    grid = 1008 // 14
    trunk = captured["trunk"].last_hidden_state.reshape(1, grid, grid, -1).permute(0, 3, 1, 2)
    report.add("vision trunk (ViT output)", meta["trunk"], trunk)
    for level, (expected, actual) in enumerate(zip(meta["detector_levels"], text_encoding.fpn_hidden_states)):
        report.add(f"detector feature level {level}", expected, actual)
    for level, (expected, actual) in enumerate(zip(meta["tracker_levels"], prompt_encoding)):
        report.add(f"tracker feature level {level} (+ no-memory)" if level == 2 else f"tracker feature level {level}",
                   expected + (ours.component("sam3_tracker")[0].no_memory_embedding.permute(0, 2, 1)[..., None]
                               if level == 2 else 0), actual)

    with torch.inference_mode():
        tokens = processor(text=[TEXT], return_tensors="pt")
        text = sam3.get_text_features(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"],
                                      return_dict=True)
        detected = sam3(vision_embeds=text_encoding, text_embeds=text, attention_mask=tokens["attention_mask"],
                        **class_token_box_prompt(1, torch.device("cpu"), torch.float32))
    cx, cy, w, h = meta["boxes_cxcywh"].unbind(-1)
    report.add("detector mask logits (200 queries)", meta["masks"], detected.pred_masks[0])
    report.add("detector boxes (xyxy, 0..1)", torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1),
               detected.pred_boxes[0])
    report.add("detector score logits", meta["logits"], detected.pred_logits[0])
    report.add("detector presence logit", meta["presence"], detected.presence_logits[0])

    with torch.inference_mode():  # transformers' default for text alone: no geometry class token
        without_class_token = sam3(vision_embeds=text_encoding, text_embeds=text,
                                   attention_mask=tokens["attention_mask"])
    report.add("  without the class token: mask logits", meta["masks"], without_class_token.pred_masks[0],
               at_least=1.0)  # measured 4.59
    report.add("  without the class token: presence logit", meta["presence"], without_class_token.presence_logits[0],
               at_least=5 * TOLERANCE)  # measured 0.015

    instances = ours.segment_with_text(text_encoding, TEXT)  # the adapter, as the engine calls it
    scores = torch.sigmoid(meta["logits"]) * torch.sigmoid(meta["presence"])
    top = int(torch.argmax(scores))
    report.add("adapter: best instance mask logits", meta["masks"][top], instances[0].logits)
    report.add("adapter: best instance score", scores[top], instances[0].score)

    clicked = ours.segment_with_prompt(prompt_encoding, ModelPrompt(click_xy, np.array([1])))
    report.add("tracker click mask logits (clamped ±32)", meta["click_logits"],
               np.clip(clicked.logits, -META_LOGIT_CLAMP, META_LOGIT_CLAMP))
    no_memory = ours.component("sam3_tracker")[0].no_memory_embedding.permute(0, 2, 1)[..., None]
    misplaced = ours.segment_with_prompt([*prompt_encoding[:-1], prompt_encoding[-1] - no_memory],
                                         ModelPrompt(click_xy, np.array([1])))  # Sam3TrackerModel's own embeddings
    report.add("  no-memory embedding on the dropped level", meta["click_logits"],
               np.clip(misplaced.logits, -META_LOGIT_CLAMP, META_LOGIT_CLAMP), at_least=0.01)  # measured 0.057
    del ours, frames, text_encoding, prompt_encoding, detected, instances, clicked, misplaced, without_class_token
    collect()
    report.check()


# --------------------------------------------------------------------------------------------------- video model


def test_video_model_propagation_and_text_match_meta_at_504_px(vocabulary, full_size_folder):
    tokenizer_folder, meta_merges = vocabulary
    size = 504
    images = ct_slices(size, 3)
    click_xy = np.array([[215.0, 260.0], [300.0, 200.0]])  # a positive and a negative click on slice 0
    click_labels = np.array([1, 0])
    report = Report("video model, 504 px")
    meta = {}

    with meta_package() as model_builder, meta_built_at(model_builder, size):
        torch.manual_seed(SEED)
        model = model_builder.build_sam3_video_model(bpe_path=str(meta_merges), device="cpu", load_from_HF=False)
    model.eval()
    redraw_every_parameter(model, SEED + 1)
    make_tracker_see_the_object(model.tracker)
    save_meta_checkpoint(model, full_size_folder / "video.pt")  # detector.*, tracker.* names: as the 3D file
    detector, tracker = model.detector, model.tracker
    with torch.inference_mode(), CudaTensorsOnCpu():
        from sam3.model.data_misc import FindStage

        backbone_outs = [detector.backbone.forward_image(meta_pixels(image)) for image in images]
        text_out = dict(backbone_outs[0], **detector.backbone.forward_text([TEXT], device="cpu"))
        find = FindStage(img_ids=torch.tensor([0]), text_ids=torch.tensor([0]), input_boxes=None,
                         input_boxes_mask=None, input_boxes_label=None, input_points=None, input_points_mask=None)
        scoring_hook = hook_output(detector.dot_prod_scoring, meta, "scores")  # per decoder layer, before presence
        out = detector.forward_grounding(backbone_out=text_out, find_input=find, find_target=None,
                                         geometric_prompt=detector._get_dummy_prompt())
        scoring_hook.remove()
        meta.update(masks=out["pred_masks"][0], joint_logits=out["pred_logits"][0, :, 0],
                    logits=meta.pop("scores")[-1, 0, :, 0].clone(), presence=out["presence_logit_dec"][0])

        cached = {}
        for index, (image, backbone_out) in enumerate(zip(images, backbone_outs)):
            sam2_out = backbone_out["sam2_backbone_out"]
            sam2_out["backbone_fpn"][0] = tracker.sam_mask_decoder.conv_s0(sam2_out["backbone_fpn"][0])
            sam2_out["backbone_fpn"][1] = tracker.sam_mask_decoder.conv_s1(sam2_out["backbone_fpn"][1])
            cached[index] = (meta_pixels(image), {"tracker_backbone_out": sam2_out})
        def propagate():
            # CPU patch: init_state keeps its state on "cuda" unless offloaded to the CPU.
            state = tracker.init_state(video_height=size, video_width=size, num_frames=len(images),
                                       cached_features=cached, offload_state_to_cpu=True)
            tracker.add_new_points_or_box(state, frame_idx=0, obj_id=1, rel_coordinates=False,
                                          points=torch.tensor(click_xy, dtype=torch.float32),
                                          labels=torch.tensor(click_labels, dtype=torch.int32))
            return {frame: low_res[0, 0].clone() for frame, _, low_res, _, _ in
                    tracker.propagate_in_video(state, start_frame_idx=0, max_frame_num_to_track=len(images) - 1,
                                               reverse=False, propagate_preflight=True, tqdm_disable=True)}

        meta["frames"] = propagate()
        # transformers' Sam3TrackerVideoModel._encode_new_memory resizes the mask LOGITS to the mask-memory input
        # size (4 x 144 = 576 at 504 px) and then applies sigmoid (or binarises a clicked frame's mask) and the
        # scale 20 / bias -10; Meta's tracker applies sigmoid / binarisation, scale and bias at the image size (504)
        # and resizes afterwards (memory.py, SimpleMaskDownSampler.forward, antialiased bilinear). Bilinear
        # resizing and a sigmoid or a threshold do not commute: the stored memories differ along the mask's edge,
        # and so do the propagated slices (not the clicked one). Meta's run once more, its masks resized first
        # the way transformers does (Meta's own resize then has nothing to do), isolates that difference.
        downsampler = next(module for module in tracker.modules() if type(module).__name__ == "SimpleMaskDownSampler")
        encode_new_memory = tracker._encode_new_memory

        def resized_first(*args, pred_masks_high_res, **kwargs):
            resized = torch.nn.functional.interpolate(pred_masks_high_res.float(), size=downsampler.interpol_size,
                                                      mode="bilinear", align_corners=False, antialias=True)
            return encode_new_memory(*args, pred_masks_high_res=resized, **kwargs)

        tracker._encode_new_memory = resized_first
        meta["frames_resized_first"] = propagate()
        # Meta's video tracker is built with use_memory_selection (temporal disambiguation, model_builder.py), which
        # transformers does not have: frame_filter keeps the earlier slices whose eff_iou_score passes mf_threshold
        # and the object-pointer loop (_prepare_memory_conditioned_features) stops at t_diff >= len(valid_indices),
        # so on slice 2 Meta leaves out slice 1's object pointer. Run once more without it.
        tracker.use_memory_selection = False
        meta["frames_as_transformers"] = propagate()
        tracker.use_memory_selection = True
        tracker._encode_new_memory = encode_new_memory
    del model, detector, tracker, backbone_outs, text_out, out, cached
    collect()

    ours = convert(full_size_folder / "video.pt", full_size_folder / "converted-video", tokenizer_folder, size)
    frames = SliceFrames(images)
    tracked = {item.frame_index: item.masks[1].logits
               for item in ours.track(frames, {0: ModelPrompt(click_xy, click_labels)}, 0, False)}
    assert sorted(meta["frames"]) == sorted(tracked) == list(range(len(images)))
    unsaturated = []
    for frame, expected in meta["frames_resized_first"].items():
        report.add(f"propagation slice {frame} mask logits (Meta, memory mask resized first)",
                   expected.clamp(-META_LOGIT_CLAMP, META_LOGIT_CLAMP),
                   np.clip(tracked[frame], -META_LOGIT_CLAMP, META_LOGIT_CLAMP),
                   tolerance=TOLERANCE if frame < 2 else MEMORY_SELECTION_TOLERANCE)
        report.add(f"  slice {frame}: Meta resized first, without memory selection",
                   meta["frames_as_transformers"][frame].clamp(-META_LOGIT_CLAMP, META_LOGIT_CLAMP),
                   np.clip(tracked[frame], -META_LOGIT_CLAMP, META_LOGIT_CLAMP))
        report.add(f"  slice {frame}: Meta as is (memory mask resized last)",
                   meta["frames"][frame].clamp(-META_LOGIT_CLAMP, META_LOGIT_CLAMP),
                   np.clip(tracked[frame], -META_LOGIT_CLAMP, META_LOGIT_CLAMP),
                   tolerance=TOLERANCE if frame == 0 else AS_BUILT_TOLERANCE)
        inside = [float((torch.as_tensor(side).abs() < META_LOGIT_CLAMP).float().mean())
                  for side in (expected, tracked[frame])]
        positive = float((expected > 0).float().mean())
        print(f"  propagation slice {frame}: unsaturated Meta {inside[0]:.3f} ours {inside[1]:.3f}, "
              f"foreground {positive:.3f}")
        unsaturated += inside
    # The evidence must not silently degrade to comparing constants (as it did before the tracker tweak: every
    # logit was -1024 on both sides, object absent).
    assert min(unsaturated) >= MIN_UNSATURATED, f"propagated logits mostly saturated: {unsaturated}"

    video, processor = ours.component("sam3_video")
    with torch.inference_mode():  # tokenized as Sam3VideoProcessor.add_text_prompt does
        tokens = processor.tokenizer([TEXT], return_tensors="pt", padding="max_length", max_length=32)
        text = video.detector_model.get_text_features(input_ids=tokens["input_ids"],
                                                      attention_mask=tokens["attention_mask"], return_dict=True)
        detected = video.detector_model(vision_embeds=ours.encoding(frames, 0, "text"), text_embeds=text,
                                        attention_mask=tokens["attention_mask"])  # as Sam3VideoModel calls it
    report.add("video detector mask logits (text, slice 0)", meta["masks"], detected.pred_masks[0])
    report.add("video detector score logits", meta["logits"], detected.pred_logits[0])
    report.add("video detector presence logit", meta["presence"], detected.presence_logits[0])
    # Meta's video detector is built with supervise_joint_box_scores=True (model_builder.py,
    # build_sam3_video_model; sam3_image.py, _update_scores_and_boxes): its "pred_logits" are the joint score
    # inverse_sigmoid(sigmoid(score) * sigmoid(presence)), with eps 1e-3 (model_misc.py), so within +-6.9. The image
    # model's are the score alone. Sam3VideoModel ranks and thresholds by the same product (run_detection).
    # Measured 2026-12-03: score logits 2.1e-6, joint score logits 1.7e-6 (values up to 1.76), presence 6e-8, mask
    # logits 6.9e-5; Meta's joint logits against our score alone differ by 1.14 (the difference this test once
    # marked as an expected failure: a difference of output convention, not of network).
    # Propagation (object seen, all logits inside +-32, |logit| <= 12.3, foreground 97% / 4% / 2% of slices 0-2):
    # against Meta with its memory masks resized first and without memory selection: slices 0/1/2 2.1e-5, 4.6e-5,
    # 5.9e-5; memory masks resized first only: slice 2 0.011; Meta as built: slice 1 0.032, slice 2 0.019. Before the object-score shift every logit was -1024 on both sides (difference 0,
    # nothing compared); before the processors' target_size fix our clicks at 504 px landed at twice their
    # coordinates (slice 0 differed by 3.46).
    joint = detected.pred_logits[0].sigmoid() * detected.presence_logits[0].sigmoid()
    joint_logits = torch.log(joint.clamp(min=1e-3) / (1 - joint).clamp(min=1e-3))
    report.add("video detector joint score logits (x presence)", meta["joint_logits"], joint_logits)
    report.add("  Meta's joint score logits vs our score logits", meta["joint_logits"], detected.pred_logits[0],
               at_least=0.5)  # measured 1.14: the joint score is a different output convention
    with torch.inference_mode():  # the class's own forward: what Sam3VideoModel computed before the fix
        unpatched = type(video.detector_model).forward(video.detector_model, vision_embeds=ours.encoding(frames, 0, "text"),
                                                       text_embeds=text, attention_mask=tokens["attention_mask"])
    report.add("  without the class token: mask logits", meta["masks"], unpatched.pred_masks[0],
               at_least=10 * TOLERANCE)  # the image model's measured 4.59; same network
    del ours, frames, video, detected, unpatched
    collect()
    report.check()
