"""Meta-format SAM 3 checkpoints convert to transformers directories that load and compute the same thing.

Round trips run on the tiny random-weight models; the name mapping is checked against the full-size
architecture on the meta device (nothing allocated), both from transformers' side and from Meta's own model
as built by Meta's ``sam3`` package.
"""

import contextlib
import gzip
import re
import warnings

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode
from transformers import AutoProcessor

from medsam3.errors import CheckpointError, ModelNotFoundError
from medsam3.model.sam3.meta_checkpoint import (
    TARGET_MODEL_CLASSES,
    convert_meta_checkpoint,
    export_meta_state_dict,
    full_size_config,
    load_meta_state_dict,
    map_meta_state_dict,
    normalize_meta_keys,
)

TRAINING_JUNK = {
    "optimizer": {
        "state": {0: {"exp_avg": torch.ones(4), "step": torch.tensor(7.0)}},
        "param_groups": [{"lr": 1e-4, "params": [0]}],
    },
    "epoch": 3,
    "loss": {"core_loss": 0.25},
}
# A Meta tensor transformers has no place for (a rotary table it recomputes); real checkpoints hold 32 of them.
ROTARY_TABLE = "detector.backbone.vision_backbone.trunk.blocks.0.attn.freqs_cis"
# Meta tensors with no transformers counterpart: 32 rotary tables (one per ViT block) and 3 point projections.
FREQS_CIS = re.compile(r"detector\.backbone\.vision_backbone\.trunk\.blocks\.\d+\.attn\.freqs_cis")
POINT_PROJECTIONS = re.compile(r"detector\.geometry_encoder\.points_\w+\.(weight|bias)")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def frames():
    return np.random.default_rng(1).integers(0, 256, (3, 90, 120, 3), dtype=np.uint8)


def full_size_on_meta_device(target):
    """The full-size model of a target class, with the configuration the converter writes, on the meta device."""
    with torch.device("meta"):
        return TARGET_MODEL_CLASSES[target](full_size_config(target))


def save_meta_checkpoint(path, meta_state_dict, image_layout=False):
    """Write a checkpoint as Meta's trainer does: weights under "model", optimizer state beside them."""
    if image_layout:  # Meta's image model: detector names without the "detector." prefix
        meta_state_dict = {name.removeprefix("detector."): tensor for name, tensor in meta_state_dict.items()}
    torch.save({"model": meta_state_dict, **TRAINING_JUNK}, path)
    return path


# ---------------------------------------------------------------- round trips through Meta's format (tiny models)


def predict(key, model, processor, frames):
    """The raw mask logits the model gives for a fixed prompt on fixed frames."""
    with torch.no_grad():
        if key == "sam3":
            return [model(**processor(images=frames[0], text="liver", return_tensors="pt")).pred_masks]
        if key == "sam3_tracker":
            inputs = processor(images=frames[0], input_points=[[[[30, 40]]]], input_labels=[[[1]]], return_tensors="pt")
            return [model(**inputs).pred_masks]
    session = processor.init_video_session(video=list(frames), inference_device="cpu", dtype=torch.float32)
    if key == "sam3_tracker_video":
        processor.add_inputs_to_inference_session(
            inference_session=session, frame_idx=0, obj_ids=[1], input_points=[[[[30, 40]]]], input_labels=[[[1]]]
        )
        model(inference_session=session, frame_idx=0)
        return [output.pred_masks for output in model.propagate_in_video_iterator(session, start_frame_idx=0)]
    processor.add_text_prompt(session, "liver")
    return [
        torch.stack([output.obj_id_to_mask[obj_id] for obj_id in sorted(output.obj_id_to_mask)])
        for output in model.propagate_in_video_iterator(session, start_frame_idx=0)
    ]


def in_fresh_memory(model):
    """The model with every weight copied out of its memory-mapped file.

    CPU kernels may round differently depending on where a tensor's data sits, so two models loaded from
    different files can differ in the last bits (about 1e-9 here) even with equal weights.
    """
    for tensor in [*model.parameters(), *model.buffers()]:
        tensor.data = tensor.data.clone()
    return model


@pytest.mark.parametrize("key", list(TARGET_MODEL_CLASSES))
def test_meta_checkpoint_of_a_tiny_model_converts_back_to_the_same_model(key, tiny_dirs, frames, tmp_path):
    model_class = TARGET_MODEL_CLASSES[key]
    original = in_fresh_memory(model_class.from_pretrained(tiny_dirs[key]).eval())
    processor = AutoProcessor.from_pretrained(tiny_dirs[key])
    meta_state_dict = export_meta_state_dict(original) | {ROTARY_TABLE: torch.zeros(16, 4, dtype=torch.complex64)}
    checkpoint = save_meta_checkpoint(tmp_path / "meta.pt", meta_state_dict, image_layout=key == "sam3")

    report = convert_meta_checkpoint(
        checkpoint, tmp_path / "converted", target=key, processor=processor, config=original.config
    )
    converted = in_fresh_memory(model_class.from_pretrained(report.output_dir).eval())

    assert report.unmapped_keys == report.unused_by_target == ()
    assert list(report.without_counterpart) == [ROTARY_TABLE.removeprefix("detector.")]
    assert report.training_state_entries == tuple(TRAINING_JUNK)
    assert report.converted_parameters == len(original.state_dict())
    converted_state = converted.state_dict()
    for name, tensor in original.state_dict().items():
        assert torch.equal(converted_state[name], tensor), name
    reloaded_processor = AutoProcessor.from_pretrained(report.output_dir)
    for expected, actual in zip(
        predict(key, original, processor, frames), predict(key, converted, reloaded_processor, frames), strict=True
    ):
        assert torch.equal(expected, actual)


def test_conversion_to_bfloat16(tiny_dirs, tmp_path):
    original = TARGET_MODEL_CLASSES["sam3"].from_pretrained(tiny_dirs["sam3"])
    checkpoint = save_meta_checkpoint(tmp_path / "meta.pt", export_meta_state_dict(original))
    report = convert_meta_checkpoint(
        checkpoint,
        tmp_path / "bf16",
        target="sam3",
        processor=AutoProcessor.from_pretrained(tiny_dirs["sam3"]),
        config=original.config,
        dtype=torch.bfloat16,
    )
    converted = TARGET_MODEL_CLASSES["sam3"].from_pretrained(report.output_dir)
    weight = "detr_decoder.query_embed.weight"
    assert converted.state_dict()[weight].dtype == torch.bfloat16
    assert torch.equal(converted.state_dict()[weight], original.state_dict()[weight].to(torch.bfloat16))


def test_parts_the_target_lacks_are_reported_and_missing_parts_are_an_error(tiny_dirs, tmp_path):
    video = TARGET_MODEL_CLASSES["sam3_video"].from_pretrained(tiny_dirs["sam3_video"])
    checkpoint = save_meta_checkpoint(tmp_path / "video.pt", export_meta_state_dict(video))
    detector_processor = AutoProcessor.from_pretrained(tiny_dirs["sam3"])
    report = convert_meta_checkpoint(
        checkpoint,
        tmp_path / "detector",
        target="sam3",
        processor=detector_processor,
        config=video.config.detector_config,
    )
    assert report.unused_by_target and all(
        name.startswith(("tracker.", "backbone.vision_backbone.sam2_convs.")) for name in report.unused_by_target
    )

    detector_only = save_meta_checkpoint(
        tmp_path / "detector.pt",
        export_meta_state_dict(TARGET_MODEL_CLASSES["sam3"].from_pretrained(tiny_dirs["sam3"])),
    )
    tracker_config = TARGET_MODEL_CLASSES["sam3_tracker"].config_class.from_pretrained(tiny_dirs["sam3_tracker"])
    with pytest.raises(CheckpointError, match=r"has no values for \d+ parameters of Sam3TrackerModel"):
        convert_meta_checkpoint(
            detector_only,
            tmp_path / "tracker",
            target="sam3_tracker",
            processor=AutoProcessor.from_pretrained(tiny_dirs["sam3_tracker"]),
            config=tracker_config,
        )


def test_target_defaults_to_the_parts_the_checkpoint_holds(tiny_dirs, tmp_path):
    video = TARGET_MODEL_CLASSES["sam3_video"].from_pretrained(tiny_dirs["sam3_video"])
    detector = TARGET_MODEL_CLASSES["sam3"].from_pretrained(tiny_dirs["sam3"])
    with_tracker = save_meta_checkpoint(tmp_path / "video.pt", export_meta_state_dict(video))
    without_tracker = save_meta_checkpoint(tmp_path / "image.pt", export_meta_state_dict(detector), image_layout=True)

    video_report = convert_meta_checkpoint(with_tracker, tmp_path / "video", config=video.config)
    image_report = convert_meta_checkpoint(without_tracker, tmp_path / "image", config=detector.config)

    assert (video_report.target, image_report.target) == ("sam3_video", "sam3")
    assert not (video_report.output_dir / "processor_config.json").exists()  # no processor given, none written
    for model_class in TARGET_MODEL_CLASSES.values():  # one video directory serves all four classes
        _, loading_info = model_class.from_pretrained(video_report.output_dir, output_loading_info=True)
        assert not loading_info["missing_keys"], model_class.__name__


def test_unknown_weights_are_refused_unless_allowed(tiny_dirs, tmp_path):
    original = TARGET_MODEL_CLASSES["sam3"].from_pretrained(tiny_dirs["sam3"])
    weights = export_meta_state_dict(original) | {"detector.lora_adapter.A.weight": torch.zeros(2, 2)}
    checkpoint = save_meta_checkpoint(tmp_path / "meta.pt", weights)
    processor = AutoProcessor.from_pretrained(tiny_dirs["sam3"])
    with pytest.raises(CheckpointError, match=re.escape("lora_adapter.A.weight")):
        convert_meta_checkpoint(
            checkpoint, tmp_path / "refused", target="sam3", processor=processor, config=original.config
        )
    report = convert_meta_checkpoint(
        checkpoint,
        tmp_path / "allowed",
        target="sam3",
        processor=processor,
        config=original.config,
        allow_unmapped=True,
    )
    assert report.unmapped_keys == ("lora_adapter.A.weight",)


# ---------------------------------------------------------------- reading checkpoints


class NotATensor:
    """Anything that only full unpickling could rebuild."""


def test_loading_strips_the_model_wrapper_the_detector_prefix_and_training_state(tmp_path):
    weights = {
        "detector.transformer.decoder.query_embed.weight": torch.ones(2, 3),
        "tracker.no_obj_ptr": torch.zeros(1, 3),
        "inst_interactive_predictor.model.no_mem_embed": torch.zeros(1, 1, 3),
    }
    loaded = load_meta_state_dict(save_meta_checkpoint(tmp_path / "meta.pt", weights))
    assert set(loaded) == {"transformer.decoder.query_embed.weight", "tracker.no_obj_ptr", "tracker.no_mem_embed"}
    assert torch.equal(loaded["transformer.decoder.query_embed.weight"], torch.ones(2, 3))


def test_checkpoint_needing_arbitrary_unpickling_is_refused(tmp_path):
    path = tmp_path / "unsafe.pt"
    torch.save({"model": {"tracker.no_obj_ptr": torch.zeros(1)}, "config": NotATensor()}, path)
    with pytest.raises(CheckpointError, match="not a plain weights checkpoint"):
        load_meta_state_dict(path)


@pytest.mark.parametrize("keep_fraction", [0.5, 0.99, 0.0])
def test_truncated_checkpoint_is_reported_as_corrupt(tmp_path, keep_fraction):
    whole = save_meta_checkpoint(tmp_path / "whole.pt", {"tracker.no_obj_ptr": torch.zeros(64)})
    data = whole.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: int(len(data) * keep_fraction)])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_meta_state_dict(truncated)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(ModelNotFoundError):
        load_meta_state_dict(tmp_path / "absent.pt")


# ---------------------------------------------------------------- full-size names, transformers side (meta device)


@pytest.mark.parametrize("target", list(TARGET_MODEL_CLASSES))
def test_full_size_names_map_to_meta_and_back(target):
    model = full_size_on_meta_device(target)
    meta_names = normalize_meta_keys(export_meta_state_dict(model))
    mapping = map_meta_state_dict(meta_names, model)
    assert mapping.unmapped_keys == mapping.unused_by_target == mapping.missing_parameters == ()
    assert mapping.shape_mismatches == {} and mapping.without_counterpart == {}
    expected = {name: tensor.shape for name, tensor in model.state_dict().items()}
    assert {name: tensor.shape for name, tensor in mapping.state_dict.items()} == expected


# ---------------------------------------------------------------- full-size names, Meta side (Meta's sam3 package)


class _CudaToCpu(TorchFunctionMode):
    """Meta's builders create some buffers with device="cuda"; build those on the CPU instead."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if str(kwargs.get("device", "")).startswith("cuda"):
            kwargs["device"] = "cpu"
        return func(*args, **kwargs)


@contextlib.contextmanager
def parameters_on_meta_device():
    """Every registered parameter moves to the meta device, so nothing is allocated or initialised.

    (``torch.device("meta")`` cannot be used: Meta's builders call ``.item()`` on freshly made tensors.)
    """
    register_parameter = torch.nn.Module.register_parameter

    def register_on_meta(module, name, parameter):
        if parameter is not None:
            parameter = torch.nn.Parameter(parameter.to("meta"), requires_grad=parameter.requires_grad)
        register_parameter(module, name, parameter)

    torch.nn.Module.register_parameter = register_on_meta
    try:
        with _CudaToCpu():
            yield
    finally:
        torch.nn.Module.register_parameter = register_parameter


@pytest.fixture(scope="module")
def meta_models(tmp_path_factory):
    """Meta's full-size SAM 3 video model and image model (with its interactive tracker), weights on meta."""
    bpe_path = tmp_path_factory.mktemp("bpe") / "vocab.txt.gz"
    with gzip.open(bpe_path, "wt") as bpe_file:  # the tokenizer's merges do not shape any weight
        bpe_file.write("#version: tiny\n")
    with warnings.catch_warnings():  # Meta's package warns about torch.jit and CUDA-only autocast
        warnings.simplefilter("ignore")
        from sam3 import model_builder  # Meta's package, a pinned test dependency (installed without its deps)

        with parameters_on_meta_device():
            video = model_builder.build_sam3_video_model(bpe_path=str(bpe_path), load_from_HF=False, device="meta")
            image = model_builder.build_sam3_image_model(
                bpe_path=str(bpe_path), load_from_HF=False, device="cpu", enable_inst_interactivity=True
            )
    return {"video": video.state_dict(), "image": image.state_dict(), "video_model": video}


def test_meta_video_model_names_map_to_every_target_and_back(meta_models):
    meta_state = meta_models["video"]
    without_counterpart = {
        name for name in meta_state if FREQS_CIS.fullmatch(name) or POINT_PROJECTIONS.fullmatch(name)
    }
    assert len(without_counterpart) == 32 + 6

    for target in TARGET_MODEL_CLASSES:
        model = full_size_on_meta_device(target)
        mapping = map_meta_state_dict(normalize_meta_keys(meta_state), model)
        assert mapping.unmapped_keys == mapping.missing_parameters == (), target
        assert mapping.shape_mismatches == {}, target
        assert set(mapping.without_counterpart) == {name.removeprefix("detector.") for name in without_counterpart}
    assert not map_meta_state_dict(
        normalize_meta_keys(meta_state), full_size_on_meta_device("sam3_video")
    ).unused_by_target

    exported = export_meta_state_dict(full_size_on_meta_device("sam3_video"))
    assert {name: tensor.shape for name, tensor in exported.items()} == {
        name: tensor.shape for name, tensor in meta_state.items() if name not in without_counterpart
    }


def test_meta_image_model_names_match_the_video_model_names(meta_models):
    assert normalize_meta_keys(meta_models["image"]).keys() == normalize_meta_keys(meta_models["video"]).keys()
    mapping = map_meta_state_dict(normalize_meta_keys(meta_models["image"]), full_size_on_meta_device("sam3_tracker"))
    assert mapping.unmapped_keys == mapping.missing_parameters == () and mapping.shape_mismatches == {}


def layer_norm_epsilon(module):
    return getattr(module, "eps", getattr(module, "variance_epsilon", None))


def test_every_layer_norm_has_metas_epsilon(meta_models):
    """Module by module: each of Meta's LayerNorms and the converted model's LayerNorm that receives its weight
    use the same epsilon (the ViT's are 1e-5 in Meta's model; transformers' ViT config defaults to 1e-6)."""
    converted = full_size_on_meta_device("sam3_video")
    ours = dict(converted.named_modules())
    compared, different = 0, {}
    for name, module in meta_models["video_model"].named_modules():
        if "LayerNorm" not in type(module).__name__ or getattr(module, "weight", None) is None:
            continue
        meta_name = name + ".weight"
        mapped = map_meta_state_dict(normalize_meta_keys({meta_name: torch.empty(module.weight.shape)}), converted)
        (target_name,) = mapped.state_dict
        counterpart = ours[target_name.removesuffix(".weight")]
        compared += 1
        if layer_norm_epsilon(counterpart) != module.eps:
            different[meta_name] = (module.eps, layer_norm_epsilon(counterpart))
    assert compared > 100 and different == {}, different
