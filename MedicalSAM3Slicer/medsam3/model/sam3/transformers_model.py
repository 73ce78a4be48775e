"""The Medical SAM3 network through Hugging Face transformers' SAM 3 classes (no re-implementation).

- ``Sam3TrackerModel``: points, boxes and masks on one slice, decoded from a cached slice encoding.
- ``Sam3Model``: text phrases on one slice (every instance with its score), from a cached encoding.
- ``Sam3TrackerVideoModel``: one object propagated through the slices of a volume.
- ``Sam3VideoModel``: a text concept detected and followed through the slices.

Each class is loaded on first use from one transformers-format location (a directory holding one model for all
classes, as ``facebook/sam3`` does, or one sub-directory per class). Inputs arrive in model space (see
:mod:`medsam3.model.segmentation_model`), so the processors' resizing is never needed: images are already S x S and
points / boxes are in S-pixel coordinates.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ...errors import CheckpointError, ModelNotFoundError
from .meta_parity import add_class_token_to_text_prompts, class_token_box_prompt, tracker_image_embeddings
from .model_classes import MODEL_CLASSES, PROCESSOR_CLASSES
from .precision import apply_precision, autocast_context, choose_precision
from .rotary_tables import cache_rotary_tables
from ..segmentation_model import FrameMasks, MaskLogits, ModelPrompt
from ..capabilities import (BOX_EXEMPLARS, PROPAGATION, TEXT_ON_SLICE, TEXT_THROUGH_VOLUME, TRACKER_PROMPTS,
                           capabilities_from_weights)
from ..text_protocol import DEFAULT_PROTOCOL, VolumeTextProtocol
from .transformers_patches import (attributes_set, backbone_replaced, check_transformers_version,
                                   detector_features_from, drop_unused_outputs, feed_video_session,
                                   set_processor_target_size)
from .weight_sharing import WeightRegistry, release_loading_memory

log = logging.getLogger("medsam3.timings")
_ROLE_USE = {"sam3": "text prompts on a slice", "sam3_tracker": "points and boxes on a slice",
             "sam3_tracker_video": "propagation of points and boxes", "sam3_video": "text through the volume"}
ROLE_CAPABILITIES = {"sam3": (TEXT_ON_SLICE, BOX_EXEMPLARS), "sam3_tracker": (TRACKER_PROMPTS,),
                     "sam3_tracker_video": (PROPAGATION,), "sam3_video": (TEXT_THROUGH_VOLUME,)}
MASK_PROMPT_LOGIT = 20.0  # a 0..1 mask prompt becomes logits of +-10, as SAM feeds previous masks
TEXT_CANDIDATE_SCORE = 0.05  # instances below this score are not even returned to the engine


def location_of(root: Path, role: str) -> Path:
    """Where a class's weights live: ``root/<role>`` when present, else ``root`` (one model for all)."""
    sub = Path(root) / role
    return sub if (sub / "config.json").exists() else Path(root)


def read_image_size(root: Path) -> int:
    """The input size the checkpoint was configured for (the tracker's, which every class shares)."""
    import json

    for role in ("sam3_tracker", "sam3", "sam3_video", "sam3_tracker_video"):
        config_path = location_of(root, role) / "config.json"
        if config_path.exists():
            config = json.loads(config_path.read_text())
            for candidate in (config, config.get("tracker_config") or {}, config.get("detector_config") or {}):
                vision = candidate.get("vision_config") or {}
                size = candidate.get("image_size") or vision.get("image_size") or \
                    (vision.get("backbone_config") or {}).get("image_size")
                if size:
                    return int(size)
    return 1008


def cpu_has_fast_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 natively and faster than float32 (see :mod:`medsam3.model.sam3.precision`)."""
    return choose_precision("cpu", "auto").name == "bfloat16"


def resize_config(config_dict: dict, image_size: int, patch_size: int = 14) -> dict:
    """A config (as a dict) for another input size: every ``image_size`` and the feature-map sizes that follow
    from it. Parameter shapes do not depend on the input size (the ViT tiles its pretraining position grid), so
    the same weights load; Medical SAM3's 3D checkpoint runs this architecture at 504 px."""
    patched = {}
    for key, value in config_dict.items():
        if isinstance(value, dict):
            patched[key] = resize_config(value, image_size, patch_size)
        elif key == "image_size":
            patched[key] = image_size
        elif key == "backbone_feature_sizes":
            grid = image_size // int(config_dict.get("patch_size", patch_size))
            patched[key] = [[4 * grid, 4 * grid], [2 * grid, 2 * grid], [grid, grid]]
        elif key == "low_res_mask_size":  # Sam3VideoModel's mask grid: 4 per patch
            patched[key] = 4 * (image_size // patch_size)
        elif key == "memory_attention_rope_feat_sizes":  # the tracker's memory attention: one position per patch
            grid = image_size // patch_size
            patched[key] = [grid, grid]
        else:
            patched[key] = value
    return patched


class _LazyFrames(Mapping):
    """A video session's frames, made from the engine's frame source only when the model asks for them."""

    def __init__(self, frames, to_pixels):
        self._frames, self._to_pixels = frames, to_pixels
        self.last_index: int | None = None  # the frame the model fetched last (it encodes that one next)

    def __getitem__(self, index: int) -> torch.Tensor:
        if not 0 <= index < len(self._frames):
            raise KeyError(index)
        self.last_index = index
        return self._to_pixels(self._frames.image(index))[0]

    def __iter__(self):
        return iter(range(len(self._frames)))

    def __len__(self) -> int:
        return len(self._frames)


class _CachedBackbone(torch.nn.Module):
    """Stands in for a vision encoder's ViT backbone, returning an output computed earlier, so that the model's
    own neck and feature code run unchanged on a shared, cached backbone pass."""

    def __init__(self, output):
        super().__init__()
        self.output = output

    def forward(self, pixel_values, **kwargs):
        return self.output


class _SharedFeatureCache:
    """Stands in for a tracker video session's per-session feature cache so that every session (and every
    re-propagation after a correction) reuses the engine's cached slice encodings."""

    def __init__(self, frames, model: "TransformersSegmentationModel"):
        self._frames, self._model = frames, model

    def get_vision_features(self, frame_idx: int) -> dict:
        return self._model.encoding(self._frames, frame_idx, "tracking")

    def cache_vision_features(self, frame_idx: int, features: dict) -> None:
        """Features are always served by :meth:`get_vision_features`; nothing to store here."""

    def clear_all(self) -> None:
        """The shared cache outlives sessions."""


def _unsafe_pickle_error(path: Path, error: Exception) -> CheckpointError:
    """One line for a pickled weights file that needs code to rebuild (torch's own message suggests the unsafe
    ``weights_only=False``; this one does not)."""
    blocked = next((line.strip() for line in str(error).splitlines() if "GLOBAL" in line), "")
    return CheckpointError(
        f"{path} holds its weights in a pickle file (pytorch_model.bin) that asks to run code"
        f"{' (' + blocked.rstrip('.') + ')' if blocked else ''}, so it was refused without running it. Use the "
        "model's model.safetensors, or re-save the weights as safetensors in a trusted environment.")


class TransformersSegmentationModel:
    """A :class:`~medsam3.model.segmentation_model.SegmentationModel` backed by transformers' SAM 3 classes."""

    def __init__(self, root: str | Path, name: str, device: str = "cpu", image_size: int | None = None,
                 dtype: torch.dtype = torch.float32, bf16_autocast: bool | None = None,
                 text_protocol: VolumeTextProtocol | None = None, precision: str | None = None):
        """``precision``: "auto" (bfloat16 on CUDA and on CPUs with native bfloat16, else float32), "float32" or
        "bfloat16" (see :mod:`medsam3.model.sam3.precision`). ``bf16_autocast`` True / False is the older spelling of
        "bfloat16" / "float32". ``text_protocol``: how text runs through the volume (:mod:`.text_protocol`)."""
        self.root = Path(root)
        self.name = name
        self.device = torch.device(device)
        self.dtype = dtype
        if precision is None and bf16_autocast is not None:
            precision = "bfloat16" if bf16_autocast else "float32"
        check_transformers_version()  # one line when the installed release is not the tested one
        self.precision_plan = choose_precision(self.device, precision)
        self.bf16_autocast = self.precision_plan.name == "bfloat16"
        self._weights = WeightRegistry()  # identical tensors of the classes loaded from one folder, held once
        self._int8_layers: dict = {}  # int8 path: identical int8 layers of those classes, held once
        self.image_size = int(image_size or read_image_size(self.root))
        self._loaded: dict[str, tuple[object, object]] = {}
        self._load_lock = threading.Lock()
        self._text_features: OrderedDict[str, object] = OrderedDict()
        self._backbone_swap_lock = threading.Lock()
        self._video_detector_lock = threading.Lock()  # one text propagation at a time uses the cached features
        self._video_settings_lock = threading.RLock()
        self.text_protocol = text_protocol or DEFAULT_PROTOCOL
        # One folder for every class (facebook/sam3, converted Meta checkpoints): the detector and the trackers
        # share one ViT, so one backbone pass per slice serves clicks, text and propagation.
        self.shares_backbone = len({location_of(self.root, role) for role in _ROLE_USE}) == 1

    @classmethod
    def from_components(cls, components: dict[str, tuple[object, object]], name: str, image_size: int,
                        device: str = "cpu", bf16_autocast: bool | None = None,
                        precision: str | None = None) -> "TransformersSegmentationModel":
        """Wrap (model, processor) pairs already in memory, keyed by role (used by the benchmark, which builds
        full-size architectures with random weights instead of loading files)."""
        model = cls(Path("."), name, device=device, image_size=image_size, bf16_autocast=bf16_autocast,
                    precision=precision)
        for role, (component, _) in components.items():
            cache_rotary_tables(apply_precision(component, model.precision_plan, model._int8_layers))
            if role == "sam3_video":
                add_class_token_to_text_prompts(component.detector_model)
        model._loaded.update(components)
        model.shares_backbone = False  # separate objects: each class encodes with its own vision encoder
        model._capabilities = frozenset(kind for role, kinds in ROLE_CAPABILITIES.items() if role in components
                                        for kind in kinds)
        return model

    @property
    def capabilities(self) -> frozenset[str]:
        """The prompt kinds this checkpoint's weights serve (read from the parameter names, once)."""
        if getattr(self, "_capabilities", None) is None:
            self._capabilities = capabilities_from_weights(self.root, location_of)
        return self._capabilities

    # --- loading -----------------------------------------------------------------------------------------
    def component(self, role: str) -> tuple[object, object]:
        """(model, processor) of one class, loaded on first use."""
        with self._load_lock:
            if role not in self._loaded:
                started = time.perf_counter()
                model_class, processor_class = MODEL_CLASSES[role], PROCESSOR_CLASSES[role]
                path = location_of(self.root, role)
                config = model_class.config_class.from_pretrained(path)
                if self.image_size != read_image_size(self.root):
                    config = model_class.config_class.from_dict(resize_config(config.to_dict(), self.image_size))
                try:
                    model, loading = model_class.from_pretrained(path, config=config, dtype=self.dtype,
                                                                 output_loading_info=True)
                except pickle.UnpicklingError as error:  # torch.load(weights_only=True) met code to run
                    raise _unsafe_pickle_error(path, error) from None
                if loading["missing_keys"]:
                    raise ModelNotFoundError(
                        f"{self.name} has no weights for {model_class.__name__} ({len(loading['missing_keys'])} "
                        f"missing, e.g. {sorted(loading['missing_keys'])[0]}): this checkpoint cannot serve "
                        f"{_ROLE_USE[role]}. Choose a model that includes it (see 'medsam3 models list').")
                model = apply_precision(model.to(self.device).eval(), self.precision_plan, self._int8_layers)
                cache_rotary_tables(model)
                if self.shares_backbone:
                    self._weights.share(model)
                release_loading_memory(model, path)  # issue 22: the file mapping and freed heap go back to the system
                if role == "sam3_video":
                    add_class_token_to_text_prompts(model.detector_model)
                processor = processor_class.from_pretrained(path)
                set_processor_target_size(processor, self.image_size)  # saved at 1008, a click at 504 px landed
                # twice as far
                self._loaded[role] = (model, processor)
                seconds = time.perf_counter() - started
                log.info("load %s: %.3f s", role, seconds, extra={"stage": f"load {role}", "seconds": seconds})
            return self._loaded[role]

    @property
    def mask_input_size(self) -> int:
        model, _ = self.component("sam3_tracker")
        return int(model.prompt_encoder.mask_input_size[0])

    def _autocast(self):
        return autocast_context(self.precision_plan, self.device)

    @property
    def precision(self) -> str:
        return self.precision_plan.describe()

    def _pixels(self, image: np.ndarray, role: str) -> torch.Tensor:
        """An S x S grey 0..1 image -> normalised (1, 3, S, S) pixel values as the processor would make them."""
        _, processor = self.component(role)
        image_processor = processor.image_processor
        mean = torch.tensor(image_processor.image_mean, dtype=torch.float32).view(3, 1, 1)
        std = torch.tensor(image_processor.image_std, dtype=torch.float32).view(3, 1, 1)
        rgb = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None].expand(3, -1, -1)
        return ((rgb - mean) / std)[None].to(self.device, self.dtype)

    # --- encodings -----------------------------------------------------------------------------------------
    def encoding(self, frames, index: int, use: str) -> object:
        """The cached encoding of a slice for "prompts", "text" or "tracking" (see SegmentationModel)."""
        direct = {"prompts": self.encode_for_prompts, "text": self.encode_for_text,
                  "tracking": self._encode_for_tracking}[use]
        if not self.shares_backbone:
            return frames.embedding(index, direct, role=use)
        derive = {"prompts": self._prompts_from_backbone, "text": self._text_from_backbone,
                  "tracking": self._tracking_from_backbone}[use]
        return frames.embedding(index, lambda image: derive(frames.embedding(index, self.encode_backbone,
                                                                             role="backbone")), role=use)

    @torch.inference_mode()
    def encode_backbone(self, image: np.ndarray) -> object:
        """The ViT pass (the expensive part), shared by every class loaded from one folder."""
        model, _ = self.component("sam3")
        with self._autocast():
            output = model.vision_encoder.backbone(self._pixels(image, "sam3"))
        drop_unused_outputs(output)
        return output

    @contextlib.contextmanager
    def _on_backbone(self, vision_encoder, backbone_output):
        with self._backbone_swap_lock:
            with backbone_replaced(vision_encoder, _CachedBackbone(backbone_output)):
                yield torch.zeros(1, 3, self.image_size, self.image_size, device=self.device, dtype=self.dtype)

    @torch.inference_mode()
    def _prompts_from_backbone(self, backbone_output) -> list[torch.Tensor]:
        model, _ = self.component("sam3_tracker")
        with self._on_backbone(model.vision_encoder, backbone_output) as placeholder, self._autocast():
            return tracker_image_embeddings(model, placeholder)

    @torch.inference_mode()
    def _text_from_backbone(self, backbone_output) -> object:
        model, _ = self.component("sam3")
        with self._on_backbone(model.vision_encoder, backbone_output) as placeholder, self._autocast():
            return model.get_vision_features(pixel_values=placeholder)

    @torch.inference_mode()
    def _tracking_from_backbone(self, backbone_output) -> dict:
        model, _ = self.component("sam3_tracker_video")
        with self._on_backbone(model.vision_encoder, backbone_output) as placeholder, self._autocast():
            outputs = model.get_image_features(placeholder, return_dict=True)
        return {"vision_feats": outputs.fpn_hidden_states, "vision_pos_embeds": outputs.fpn_position_encoding}

    # --- one slice -----------------------------------------------------------------------------------------
    @torch.inference_mode()
    def encode_for_prompts(self, image: np.ndarray) -> list[torch.Tensor]:
        model, _ = self.component("sam3_tracker")
        with self._autocast():
            return tracker_image_embeddings(model, self._pixels(image, "sam3_tracker"))

    @torch.inference_mode()
    def encode_for_text(self, image: np.ndarray) -> object:
        model, _ = self.component("sam3")
        with self._autocast():
            return model.get_vision_features(pixel_values=self._pixels(image, "sam3"))

    @torch.inference_mode()
    def segment_with_prompt(self, embedding: list[torch.Tensor], prompt: ModelPrompt) -> MaskLogits:
        model, _ = self.component("sam3_tracker")
        inputs = self._prompt_tensors(prompt)
        single_point = len(prompt.points_xy) == 1 and prompt.box_xyxy is None and prompt.mask is None
        with self._autocast():
            output = model(image_embeddings=embedding, multimask_output=single_point, **inputs)
        masks = output.pred_masks[0, 0].float()  # (candidates, G, G)
        iou = output.iou_scores[0, 0].float()
        best = int(torch.argmax(iou)) if single_point else 0
        presence = torch.sigmoid(output.object_score_logits[0, 0].float()).item() \
            if output.object_score_logits is not None else 1.0
        return MaskLogits(masks[best].cpu().numpy(), float(iou[best].clamp(0, 1).item() * presence))

    def _prompt_tensors(self, prompt: ModelPrompt) -> dict[str, torch.Tensor]:
        inputs: dict[str, torch.Tensor] = {}
        if len(prompt.points_xy):
            inputs["input_points"] = torch.tensor(prompt.points_xy, dtype=self.dtype, device=self.device)[None, None]
            inputs["input_labels"] = torch.tensor(prompt.point_labels, dtype=torch.int64, device=self.device)[None, None]
        if prompt.box_xyxy is not None:
            inputs["input_boxes"] = torch.tensor(prompt.box_xyxy, dtype=self.dtype, device=self.device)[None, None]
        if prompt.mask is not None:
            logits = (np.asarray(prompt.mask, dtype=np.float32) - 0.5) * MASK_PROMPT_LOGIT
            inputs["input_masks"] = torch.from_numpy(logits)[None, None].to(self.device, self.dtype)
        return inputs

    def _text_embeddings(self, phrase: str) -> tuple[object, torch.Tensor]:
        if phrase not in self._text_features:
            model, processor = self.component("sam3")
            tokens = processor(text=[phrase], return_tensors="pt").to(self.device)
            with torch.inference_mode(), self._autocast():
                features = model.get_text_features(input_ids=tokens["input_ids"],
                                                   attention_mask=tokens["attention_mask"], return_dict=True)
            self._text_features[phrase] = (features, tokens["attention_mask"])
            while len(self._text_features) > 64:
                self._text_features.popitem(last=False)
        self._text_features.move_to_end(phrase)
        return self._text_features[phrase]

    @torch.inference_mode()
    def segment_with_text(self, embedding: object, text: str) -> list[MaskLogits]:
        model, _ = self.component("sam3")
        text_embeds, attention_mask = self._text_embeddings(text)
        with self._autocast():
            output = model(vision_embeds=embedding, text_embeds=text_embeds, attention_mask=attention_mask,
                           **class_token_box_prompt(attention_mask.shape[0], self.device, self.dtype))
        scores = torch.sigmoid(output.pred_logits[0].float())
        if output.presence_logits is not None:
            scores = scores * torch.sigmoid(output.presence_logits[0].float())
        masks = output.pred_masks[0].float()
        keep = torch.nonzero(scores >= TEXT_CANDIDATE_SCORE).flatten().tolist()
        keep.sort(key=lambda q: -float(scores[q]))
        return [MaskLogits(masks[q].cpu().numpy(), float(scores[q])) for q in keep]

    # --- through the slices -----------------------------------------------------------------------------------
    @torch.inference_mode()
    def _encode_for_tracking(self, image: np.ndarray) -> dict:
        model, _ = self.component("sam3_tracker_video")
        with self._autocast():
            outputs = model.get_image_features(self._pixels(image, "sam3_tracker_video"), return_dict=True)
        return {"vision_feats": outputs.fpn_hidden_states, "vision_pos_embeds": outputs.fpn_position_encoding}

    def _video_session(self, frames, role: str, shared_cache: bool = False):
        model, processor = self.component(role)
        session = processor.init_video_session(inference_device=self.device, dtype=self.dtype)
        feed_video_session(session, _LazyFrames(frames, lambda image: self._pixels(image, role)), self.image_size,
                           cache=_SharedFeatureCache(frames, self) if shared_cache else None)
        return model, processor, session

    def track(self, frames, prompts: Mapping[int, ModelPrompt], start_index: int, reverse: bool) -> Iterator[FrameMasks]:
        model, processor, session = self._video_session(frames, "sam3_tracker_video", shared_cache=True)
        size = (self.image_size, self.image_size)
        for index, prompt in sorted(prompts.items()):
            arguments = {}
            if len(prompt.points_xy):
                arguments["input_points"] = [[prompt.points_xy.astype(float).tolist()]]
                arguments["input_labels"] = [[prompt.point_labels.astype(int).tolist()]]
            if prompt.box_xyxy is not None:
                arguments["input_boxes"] = [[prompt.box_xyxy.astype(float).tolist()]]
            if arguments:
                processor.add_inputs_to_inference_session(session, frame_idx=index, obj_ids=1, original_size=size,
                                                          **arguments)
            if prompt.mask is not None:
                mask = torch.nn.functional.interpolate(torch.from_numpy(prompt.mask.astype(np.float32))[None, None],
                                                       size=size, mode="bilinear")[0, 0] > 0.5
                processor.add_inputs_to_inference_session(session, frame_idx=index, obj_ids=1,
                                                          input_masks=mask.numpy(), original_size=size)
            with torch.inference_mode(), self._autocast():
                model(inference_session=session, frame_idx=index)
        with torch.inference_mode(), self._autocast():
            for output in model.propagate_in_video_iterator(session, start_frame_idx=start_index, reverse=reverse):
                logits = output.pred_masks[0, 0].float().cpu().numpy()
                score = torch.sigmoid(output.object_score_logits.flatten()[0].float()).item() \
                    if output.object_score_logits is not None else 1.0
                yield FrameMasks(int(output.frame_idx), {1: MaskLogits(logits, score)})

    def track_text(self, frames, text: str, start_index: int, reverse: bool) -> Iterator[FrameMasks]:
        """Text through the slices with ``self.text_protocol``: by default Medical SAM3's independent 4-slice
        clips, each a fresh session with the text given on its first slice and propagated forward (the clips
        ignore ``start_index`` and ``reverse``); a long-track protocol runs one session from ``start_index``."""
        protocol = self.text_protocol
        model, processor = self.component("sam3_video")
        if protocol.clip_length is None:
            windows = [(start_index, None)]
        else:
            windows = [(first, end - first - 1) for first, end in protocol.clips(len(frames))]
        with self._video_model_settings(model, protocol.video_model_settings()):
            for first, frames_after_first in windows:
                _, _, session = self._video_session(frames, "sam3_video")  # a new, empty state per clip
                processor.add_text_prompt(session, text)
                with self._cached_detector_features(model, frames, session.processed_frames):
                    with torch.inference_mode(), self._autocast():
                        for output in model.propagate_in_video_iterator(
                                session, start_frame_idx=first, max_frame_num_to_track=frames_after_first,
                                reverse=reverse if frames_after_first is None else False):
                            yield self._text_frame_masks(processor, session, output)

    def _text_frame_masks(self, processor, session, output) -> FrameMasks:
        """The objects the video processor keeps on a frame, each with its low-resolution logits upsampled to
        the model square (as the processor upsamples them), agreeing in sign with the processor's final mask
        (which also removes overlaps between objects), so that sigmoid(logits) is the per-pixel probability."""
        processed = processor.postprocess_outputs(session, output)
        masks = {}
        for object_id, score, mask in zip(processed["object_ids"], processed["scores"], processed["masks"]):
            low_res = output.obj_id_to_mask[int(object_id)].float()  # (1, g, g) logits
            logits = torch.nn.functional.interpolate(low_res[None], size=tuple(mask.shape), mode="bilinear",
                                                     align_corners=False)[0, 0]
            tiny = torch.finfo(torch.float32).eps
            logits = torch.where(mask.to(logits.device), logits.clamp(min=tiny), logits.clamp(max=-tiny))
            masks[int(object_id)] = MaskLogits(logits.cpu().numpy(), float(score))
        return FrameMasks(int(output.frame_idx), masks)

    @contextlib.contextmanager
    def _video_model_settings(self, model, settings: dict):
        """Set the text protocol's attributes on the shared ``Sam3VideoModel`` for one run, then restore them."""
        with self._video_settings_lock, attributes_set(model, settings, "video_model_settings"):
            yield

    @contextlib.contextmanager
    def _cached_detector_features(self, video_model, frames, lazy_frames: _LazyFrames):
        """With a one-folder model, ``Sam3VideoModel`` encodes each frame it fetches with the same ViT and detector
        neck as text on a slice: serve those features from the engine's cache, so that text through the volume
        and every later click or correction share one backbone pass per slice. (The video model fetches a frame,
        then encodes it; ``lazy_frames.last_index`` names it.)"""
        if not self.shares_backbone:
            yield
            return
        detector = video_model.detector_model
        with self._video_detector_lock, detector_features_from(
                detector, lambda pixel_values, **kwargs: self.encoding(frames, lazy_frames.last_index, "text")):
            yield
