"""Every change medsam3 makes to transformers' objects at run time, each with its reason: the one module that sets
attributes on them (``tests/test_layers.py`` fails on an attribute set on such an object anywhere else).

transformers' SAM 3 classes are used as they ship; what is listed in :data:`PATCHES` wraps or swaps a method or
attribute of a loaded object (never a class, never transformers' source). Each relies on an internal name of the
transformers release range :data:`TESTED_TRANSFORMERS`; :func:`check_transformers_version` says in one line when
another release is installed. The helpers that compute the wrapped answers stay where they are explained
(:mod:`.rotary_tables`, :mod:`.meta_parity`, :mod:`.precision`, :mod:`.transformers_model`).
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections import Counter
from dataclasses import dataclass

TESTED_TRANSFORMERS = ">=5.23,<5.24"  # the release the patches are proven on (pyproject.toml's range too)
log = logging.getLogger("medsam3.model.sam3.transformers_patches")


@dataclass(frozen=True)
class Patch:
    name: str
    target: str  # what is changed on a loaded object
    reason: str
    proven_by: str  # the test that shows the patch's effect


PATCHES = (
    Patch("rotary_tables", "Sam3ViTRotaryEmbedding.forward, Sam3TrackerVideoVisionRotaryEmbedding.forward",
          "cos / sin tables computed once per input size instead of in every layer on every slice",
          "tests/engine/model/test_rotary_tables.py"),
    Patch("rotary_complex_product", "modeling_sam3 / modeling_sam3_tracker_video.apply_rotary_pos_emb_2d",
          "the rotary rotation of q and k as one complex product per tensor instead of about ten elementwise passes "
          "(bit for bit the same; about a fifth of a bfloat16 ViT's time on an AVX-512 BF16 CPU)",
          "tests/engine/model/test_cpu_levers.py"),
    Patch("image_wide_positions", "Sam3Tracker*Model.get_image_wide_positional_embeddings",
          "the mask decoder's fixed positional grid computed once instead of on every click",
          "tests/engine/model/test_rotary_tables.py"),
    Patch("class_token_for_text", "Sam3VideoModel.detector_model.forward",
          "a text-only prompt gets the geometry encoder's class token, as Meta's detector computes",
          "tests/engine/model/test_meta_parity.py, test_meta_reference.py"),
    Patch("bfloat16_encoders", "Sam3ViTModel.forward, CLIPTextModelWithProjection.forward, "
          "Sam3TrackerVideoMemoryAttention.forward",
          "the two encoders and the video tracker's memory attention run under bfloat16 autocast and hand float32 "
          "on (bfloat16 path)",
          "tests/engine/model/test_precision.py"),
    Patch("norm_output_in_bfloat16", "Sam3ViTLayer.layer_norm1.forward (bfloat16 path)",
          "the norm's output, read only by the attention's three projections, is cast to bfloat16 once instead of "
          "once per projection by autocast, and windowed in half the bytes (bit for bit the same)",
          "tests/engine/model/test_cpu_levers.py"),
    Patch("memory_attention_bfloat16", "Sam3TrackerVideoRoPEAttention.config (its own copy)",
          "the video tracker's memory attention calls :mod:`.bfloat16_attention` through transformers' "
          "AttentionInterface on a CPU's bfloat16 path (2x a propagated slice; torch's CPU flash kernel gains "
          "nothing from bfloat16 at its 256-wide head)", "tests/engine/model/test_bfloat16_attention.py"),
    Patch("float32_positions", "*PositionalEmbedding.forward",
          "Fourier positional encodings of prompts keep float32 under autocast (sin / cos of large arguments)",
          "tests/engine/model/test_precision.py"),
    Patch("int8_linear_layers", "nn.Linear children of the two encoders",
          "replaced by torch's dynamic int8 Linear (int8 path); equal layers shared between classes",
          "tests/engine/model/test_int8_path.py"),
    Patch("shared_parameters", "Module._parameters of a class loaded from a shared folder",
          "equal weights of the four classes held once in memory",
          "tests/engine/model/test_weight_sharing.py"),
    Patch("processor_target_size", "Sam3*Processor.target_size",
          "prompt coordinates are rescaled to the model's input size (a processor saved at 1008 px misplaced "
          "a click at 504 px)", "tests/engine/model/test_position_encodings_504.py"),
    Patch("lean_backbone_output", "the ViT output's hidden_states, attentions",
          "a cached slice encoding keeps only what the heads read", "tests/engine/model/test_shared_backbone.py"),
    Patch("cached_backbone", "vision_encoder.backbone (for one call)",
          "one ViT pass per slice serves clicks, text and propagation of a one-folder model",
          "tests/engine/model/test_shared_backbone.py"),
    Patch("video_session_frames", "Sam3*VideoInferenceSession.processed_frames, video_height, video_width, cache",
          "slices are fetched from the engine's volume and cache when the video model asks, not all at once",
          "tests/engine/model/test_transformers_model.py"),
    Patch("video_model_settings", "Sam3VideoModel tracking thresholds (for one run)",
          "the text protocol's settings (Medical SAM3's 4-slice clips), restored after",
          "tests/engine/model/test_text_protocol.py"),
    Patch("cached_detector_features", "Sam3VideoModel.detector_model.get_vision_features (for one run)",
          "text through the volume reads the slice encodings the engine already has",
          "tests/engine/model/test_shared_backbone.py"),
    Patch("stability_fallback", "Sam3TrackerMaskDecoder.dynamic_multimask_via_stability (for one measurement)",
          "medsam3 bench compares precisions with and without SAM's stability fallback",
          "tests/engine/model/test_precision.py"),
)
APPLIED: Counter = Counter()  # patch name -> times applied in this process (tests/engine/model/test_transformers_patches.py)
_warned: list[str] = []


def check_transformers_version(version: str | None = None) -> str:
    """"" when transformers is in :data:`TESTED_TRANSFORMERS`, else one line (also logged once as a warning)."""
    from packaging.specifiers import SpecifierSet

    if version is None:
        import transformers

        version = transformers.__version__
    if SpecifierSet(TESTED_TRANSFORMERS).contains(version, prereleases=True):
        return ""
    line = (f"transformers {version} is outside the range medsam3 is tested with ({TESTED_TRANSFORMERS}): "
            f"its run-time patches (medsam3/model/sam3/transformers_patches.py) may fail; pip install "
            f"'transformers{TESTED_TRANSFORMERS}' if they do.")
    if line not in _warned:
        _warned.append(line)
        log.warning(line)
    return line


def _mark(name: str) -> None:
    APPLIED[name] += 1


# --- on loading -------------------------------------------------------------------------------------------------
_ROTARY_MARK = "_medsam3_cached_rotary"


def cache_fixed_tables(model, memoised_rotary, memoised_image_positions) -> int:
    """``rotary_tables`` and ``image_wide_positions``: wrap every fixed-table method of ``model`` (in place) with
    the memoising wrappers of :mod:`.rotary_tables`; returns how many were wrapped. Idempotent."""
    wrapped = 0
    for module in model.modules():
        if getattr(module, _ROTARY_MARK, False):
            continue
        if type(module).__name__ in ("Sam3ViTRotaryEmbedding", "Sam3TrackerVideoVisionRotaryEmbedding"):
            module.forward = memoised_rotary(module, module.forward)
            _mark("rotary_tables")
        elif hasattr(module, "get_image_wide_positional_embeddings") and hasattr(module, "prompt_encoder"):
            module.get_image_wide_positional_embeddings = memoised_image_positions(
                module, module.get_image_wide_positional_embeddings)
            _mark("image_wide_positions")
        else:
            continue
        setattr(module, _ROTARY_MARK, True)
        wrapped += 1
    return wrapped


ROTARY_ORIGINALS: dict = {}  # transformers module name -> its own apply_rotary_pos_emb_2d, once replaced


def rotate_by_complex_products(make_replacement) -> int:
    """``rotary_complex_product``: the module-level ``apply_rotary_pos_emb_2d`` of the SAM 3 ViT and of the video
    tracker's memory attention replaced by ``make_replacement(original)`` (:func:`.rotary_tables.
    rotary_as_complex_product`), once per process; returns how many were replaced. The attention classes call the
    function by its module-level name, so this one swap serves every loaded model (the answer is bit for bit
    the same, so float32 models are unaffected)."""
    from transformers.models.sam3 import modeling_sam3
    from transformers.models.sam3_tracker_video import modeling_sam3_tracker_video

    replaced = 0
    for module in (modeling_sam3, modeling_sam3_tracker_video):
        original = getattr(module, "apply_rotary_pos_emb_2d", None)
        if original is None or module.__name__ in ROTARY_ORIGINALS:
            continue
        ROTARY_ORIGINALS[module.__name__] = original
        module.apply_rotary_pos_emb_2d = make_replacement(original)
        _mark("rotary_complex_product")
        replaced += 1
    return replaced


def add_class_token_to_text_prompts(detector, with_class_token) -> None:
    """``class_token_for_text``: a ``Sam3Model``'s forward given the class-token box prompt when it has no boxes
    (``with_class_token``: :func:`.meta_parity.with_class_token`)."""
    detector.forward = with_class_token(detector.forward)
    _mark("class_token_for_text")


def _wrap_forward_once(module, wrap, patch: str) -> None:
    """``module.forward`` wrapped by ``wrap`` unless this instance's forward is wrapped already; ``patch`` is marked."""
    if "forward" not in vars(module):
        module.forward = wrap(module.forward)
        _mark(patch)


def run_in_bfloat16(encoder, wrap) -> None:
    """``bfloat16_encoders``: ``encoder.forward`` wrapped by ``wrap`` (:func:`.precision.in_bfloat16`), once."""
    _wrap_forward_once(encoder, wrap, "bfloat16_encoders")


def cast_norm_output(norm, wrap) -> None:
    """``norm_output_in_bfloat16``: ``norm.forward`` wrapped by ``wrap`` (:func:`.precision.in_autocast_dtype`),
    once."""
    _wrap_forward_once(norm, wrap, "norm_output_in_bfloat16")


def keep_in_float32(module, wrap) -> None:
    """``float32_positions``: ``module.forward`` wrapped by ``wrap`` (:func:`.precision.in_float32`), once."""
    _wrap_forward_once(module, wrap, "float32_positions")


def route_attention(modules, name: str, function) -> int:
    """``memory_attention_bfloat16``: ``function`` registered under ``name`` in transformers' ``AttentionInterface``
    (its public extension point), and each of ``modules`` given its own copy of its config naming it, so that only
    these attention modules call it (the model's config and the other modules keep SDPA). Returns how many were
    routed; idempotent."""
    from transformers import AttentionInterface

    AttentionInterface.register(name, function)
    copies: dict[int, object] = {}
    routed = 0
    for module in modules:
        if module.config._attn_implementation == name:
            continue
        config = copies.get(id(module.config))
        if config is None:
            config = copies[id(module.config)] = copy.copy(module.config)
            config._attn_implementation_internal = name  # the property's setter would reach into shared sub-configs
        module.config = config
        _mark("memory_attention_bfloat16")
        routed += 1
    return routed


def replace_linear_layer(parent, name: str, child, make_layer):
    """``int8_linear_layers``: ``parent.<name>`` (an ``nn.Linear``) replaced by ``make_layer(child)`` after the
    quantisation config is set on it; returns the new layer."""
    from torch.ao.quantization import per_channel_dynamic_qconfig

    child.qconfig = per_channel_dynamic_qconfig
    layer = make_layer(child)
    setattr(parent, name, layer)
    _mark("int8_linear_layers")
    return layer


def share_parameter(module, name: str, parameter) -> None:
    """``shared_parameters``: ``module``'s parameter ``name`` becomes the (equal) ``parameter`` already held."""
    module._parameters[name] = parameter
    _mark("shared_parameters")


def set_processor_target_size(processor, size: int) -> None:
    """``processor_target_size``: prompt coordinates are rescaled to ``size``, the model's input size."""
    if hasattr(processor, "target_size"):
        processor.target_size = size
        _mark("processor_target_size")


# --- while running ----------------------------------------------------------------------------------------------
def drop_unused_outputs(output) -> None:
    """``lean_backbone_output``: a ViT output without the per-layer states nobody reads."""
    output.hidden_states = output.attentions = None
    _mark("lean_backbone_output")


@contextlib.contextmanager
def backbone_replaced(vision_encoder, backbone):
    """``cached_backbone``: ``vision_encoder.backbone`` is ``backbone`` inside the block (callers hold a lock)."""
    original = vision_encoder.backbone
    vision_encoder.backbone = backbone
    _mark("cached_backbone")
    try:
        yield
    finally:
        vision_encoder.backbone = original


def feed_video_session(session, frames, image_size: int, cache=None) -> None:
    """``video_session_frames``: a video session reads ``frames`` (lazily) at the model's size, and with ``cache``
    the tracker's features from the engine."""
    session.processed_frames = frames
    session.video_height = session.video_width = image_size
    if cache is not None:
        session.cache = cache
    _mark("video_session_frames")


@contextlib.contextmanager
def attributes_set(target, settings: dict, patch: str):
    """``video_model_settings`` / ``stability_fallback``: ``target``'s attributes set for the block, then
    restored (callers hold a lock when ``target`` is shared)."""
    if patch not in ("video_model_settings", "stability_fallback"):
        raise ValueError(f"{patch!r} is not a listed patch that sets attributes for a block")
    saved = {name: getattr(target, name) for name in settings}
    for name, value in settings.items():
        setattr(target, name, value)
    _mark(patch)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(target, name, value)


@contextlib.contextmanager
def detector_features_from(detector, features):
    """``cached_detector_features``: ``detector.get_vision_features`` answered by ``features`` inside the block,
    then the class's own method again."""
    detector.get_vision_features = features
    _mark("cached_detector_features")
    try:
        yield
    finally:
        del detector.get_vision_features
