"""Do the bfloat16 path's masks agree with a float32 run of the same weights?

Real slices (a CT spleen slice and a brain MRI tumour slice from ``../shared/data``) and a fixed set of prompts
made from their reference masks (a click at the object's centre, that click with a negative one outside, the
object's bounding box, the box with the centre click). Each prompt is answered through the engine's own code
path (slice -> model frame -> mask on the slice grid), first on the float32 path, then with the same weights
converted in place to the bfloat16 path. Reported per prompt: Dice between the two slice masks and the largest
absolute difference of the mask logits.

With random weights this measures numerical drift of the arithmetic, not segmentation quality: the masks of a
random network mean nothing, but two precisions of one network should still draw the same ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ...interaction.engine import SegmentationEngine
from ...interaction.prompts import BoxPrompt, PointPrompt, SlicePrompt, resolve_slice_prompt
from ...geometry.volume import Volume
from ...model.sam3.transformers_patches import attributes_set

SHARED_DATA = Path(__file__).resolve().parents[4].parent / "shared" / "data"
AGREEMENT_SLICES = {  # name: (image, reference mask, modality)
    "CT spleen": ("ct/spleen_msd_crop/image.nii.gz", "ct/spleen_msd_crop/label_spleen.nii.gz", "CT"),
    "MRI brain tumour": ("mr/brats2013/brats_2013_pat0001_1/Flair_subtrMeanDivStd.nii.gz",
                         "mr/brats2013/brats_2013_pat0001_1/OTMultiClass.nii.gz", "MR"),
}


@dataclass(frozen=True)
class PromptAgreement:
    slice_name: str
    prompt_name: str
    dice: float
    max_logit_difference: float
    max_reference_logit: float  # largest |float32 logit|: the scale the difference is read against
    reference_pixels: int  # pixels in the float32 mask

    @property
    def relative_logit_difference(self) -> float:
        return self.max_logit_difference / max(self.max_reference_logit, 1e-12)


def load_agreement_volumes(data: Path = SHARED_DATA) -> dict[str, tuple[Volume, np.ndarray]]:
    from ...files.volume_io import read_volume

    volumes = {}
    for name, (image, label, modality) in AGREEMENT_SLICES.items():
        volume = read_volume(data / image, modality=modality)
        volumes[name] = (volume, read_volume(data / label).array > 0)
    return volumes


def fixed_prompts(mask: np.ndarray) -> dict[str, SlicePrompt]:
    """Axial prompts on the slice where the object is largest, from its (K, J, I) reference mask."""
    k = int(np.argmax(mask.sum(axis=(1, 2))))
    j_indices, i_indices = np.nonzero(mask[k])
    centre = (float(np.median(i_indices)), float(np.median(j_indices)), float(k))
    if not mask[k, int(centre[1]), int(centre[0])]:  # a concave object: take an inside pixel near the median
        nearest = int(np.argmin((i_indices - centre[0]) ** 2 + (j_indices - centre[1]) ** 2))
        centre = (float(i_indices[nearest]), float(j_indices[nearest]), float(k))
    low = (float(i_indices.min()), float(j_indices.min()), float(k))
    high = (float(i_indices.max()), float(j_indices.max()), float(k))
    outside = (max(0.0, low[0] - 5), max(0.0, low[1] - 5), float(k))
    box = BoxPrompt(low, high)
    return {"click": SlicePrompt("axial", points=(PointPrompt(centre),)),
            "click + negative click": SlicePrompt("axial", points=(PointPrompt(centre),
                                                                   PointPrompt(outside, positive=False))),
            "box": SlicePrompt("axial", box=box),
            "box + click": SlicePrompt("axial", points=(PointPrompt(centre),), box=box)}


def _answers(model, volumes: dict[str, tuple[Volume, np.ndarray]], fallbacks: tuple[bool, ...]) -> dict:
    """{(stability fallback, slice, prompt): (slice mask, logits)}; each slice encoded once."""
    engine = SegmentationEngine(model)
    decoder = model.component("sam3_tracker")[0].mask_decoder
    shipped = decoder.dynamic_multimask_via_stability
    answers = {}
    for fallback in fallbacks:
        with attributes_set(decoder, {"dynamic_multimask_via_stability": shipped and fallback}, "stability_fallback"):
            for slice_name, (volume, mask) in volumes.items():
                for prompt_name, prompt in fixed_prompts(mask).items():
                    resolved = resolve_slice_prompt(volume, prompt)
                    frames = engine.frames(volume, prompt.axis)
                    embedding = model.encoding(frames, resolved.slice_index, "prompts")
                    prediction = model.segment_with_prompt(embedding, frames.model_prompt(resolved))
                    answers[fallback, slice_name, prompt_name] = (frames.slice_mask(prediction), prediction.logits)
    return answers


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def measure_agreement(tracker: torch.nn.Module, processor, image_size: int,
                      volumes: dict[str, tuple[Volume, np.ndarray]] | None = None,
                      fast_precision: str = "bfloat16", stability_fallback: bool = True) -> list[PromptAgreement]:
    """float32 answers, then ``fast_precision`` answers of the same ``Sam3TrackerModel`` (converted in place:
    pass a model you no longer need in float32).

    ``stability_fallback`` False turns off the mask decoder's one discrete decision: for a single-mask answer
    SAM falls back to its best multi-mask candidate when the mask's stability score (area above +0.05 over area
    above -0.05) is under 0.98. With random weights that score sits near the threshold, so a drift of 0.1 in
    the logits can switch the whole answer to another candidate (seen once in 8 prompts: Dice 0.71 with the
    fallback, 0.999 without). Without it the comparison measures the arithmetic's drift alone."""
    return measure_agreements(tracker, processor, image_size, volumes, (stability_fallback,),
                              fast_precision)[stability_fallback]


def measure_agreements(tracker: torch.nn.Module, processor, image_size: int,
                       volumes: dict[str, tuple[Volume, np.ndarray]] | None, fallbacks: tuple[bool, ...],
                       fast_precision: str = "bfloat16") -> dict[bool, list[PromptAgreement]]:
    """:func:`measure_agreement` with and / or without the stability fallback, each slice encoded once per
    precision."""
    from ...model.sam3.transformers_model import TransformersSegmentationModel

    volumes = volumes if volumes is not None else load_agreement_volumes()
    components = {"sam3_tracker": (tracker, processor)}
    reference = _answers(TransformersSegmentationModel.from_components(
        components, "agreement-float32", image_size, precision="float32"), volumes, fallbacks)
    fast = _answers(TransformersSegmentationModel.from_components(
        components, f"agreement-{fast_precision}", image_size, precision=fast_precision), volumes, fallbacks)
    results: dict[bool, list[PromptAgreement]] = {fallback: [] for fallback in fallbacks}
    for (fallback, slice_name, prompt_name), (reference_mask, reference_logits) in reference.items():
        fast_mask, fast_logits = fast[fallback, slice_name, prompt_name]
        results[fallback].append(PromptAgreement(
            slice_name, prompt_name, dice(reference_mask, fast_mask),
            float(np.abs(reference_logits - fast_logits).max()), float(np.abs(reference_logits).max()),
            int(reference_mask.sum())))
    return results


def summarise(results: list[PromptAgreement]) -> dict:
    return {"prompts": len(results), "dice_min": round(min(r.dice for r in results), 4),
            "dice_mean": round(float(np.mean([r.dice for r in results])), 4),
            "max_logit_difference": round(max(r.max_logit_difference for r in results), 4),
            "max_relative_logit_difference": round(max(r.relative_logit_difference for r in results), 4),
            "per_prompt": [{"slice": r.slice_name, "prompt": r.prompt_name, "dice": round(r.dice, 4),
                            "max_logit_difference": round(r.max_logit_difference, 4),
                            "max_float32_logit": round(r.max_reference_logit, 4),
                            "float32_mask_pixels": r.reference_pixels} for r in results]}


RANDOM_LOGIT_GAIN = 1000.0


def give_random_logits_a_trained_scale(tracker: torch.nn.Module, gain: float = RANDOM_LOGIT_GAIN) -> None:
    """Freshly initialised, the mask decoder's logits stay within about +-0.02, where SAM's stability test (a
    0.05 margin around 0) and the 0 threshold are decided by rounding noise. Scaling the last layer of its mask
    hypernetworks puts them at about +-15, a trained model's scale, so that Dice compares masks, not noise."""
    with torch.no_grad():
        for mlp in tracker.mask_decoder.output_hypernetworks_mlps:
            mlp.proj_out.weight.mul_(gain)
            mlp.proj_out.bias.mul_(gain)


def mid_size_tracker(image_size: int = 336, vit_width: int = 256, vit_layers: int = 4, seed: int = 0):
    """A Sam3TrackerModel with the full-size prompt encoder, mask decoder and neck width (256) and a narrower,
    shallower ViT, random weights (logits scaled, see :func:`give_random_logits_a_trained_scale`): the same
    classes and code paths as the full-size model at a fraction of its cost (bfloat16 is emulated, and slow, on
    CPUs without native bfloat16)."""
    from transformers import Sam3TrackerConfig, Sam3ViTConfig

    from ...model.sam3.processors import build_processor
    from ...model.sam3.transformers_model import resize_config

    full = Sam3TrackerConfig().to_dict()
    backbone = Sam3ViTConfig(hidden_size=vit_width, intermediate_size=4 * vit_width, num_hidden_layers=vit_layers,
                             num_attention_heads=max(1, vit_width // 64), global_attn_indexes=[vit_layers - 1],
                             image_size=image_size).to_dict()
    full["vision_config"]["backbone_config"] = backbone
    full["vision_config"]["backbone_channel_list"] = full["vision_config"].get("backbone_channel_list")
    config = Sam3TrackerConfig.from_dict(resize_config(full, image_size))
    torch.manual_seed(seed)
    from transformers import Sam3TrackerModel

    tracker = Sam3TrackerModel(config).eval()
    give_random_logits_a_trained_scale(tracker)
    return tracker, build_processor("sam3_tracker", image_size)
