"""Does a propagation on the bfloat16 path draw the float32 path's masks, slice after slice?

The bfloat16 path also changes the video tracker's memory attention (:mod:`medsam3.model.sam3.bfloat16_attention`),
so the click-only agreement (:mod:`.precision_agreement`) does not cover it. Here one click at the object's centre
on the slice where it is largest (a CT spleen, a brain MRI tumour, from ``../shared/data``) is propagated forward
through the next slices, first on the float32 path, then with the same weights on the fast path; each tracked
slice gives a Dice and the largest logit difference, against the float32 logits' scale.

Random weights, as everywhere in the bench, but drawn so that the comparison can see the memory: the plain
initialisation makes the tracker's object score negative on every tracked slice, and SAM then replaces every
logit of that slice by one constant (-1024), which no arithmetic changes. :func:`tracking_that_reads_its_memory`
redraws the weights at a scale that carries activations through the layers and shifts the object score, so that
tracked slices have real masks that depend on the memory attention (tested: an attention answering zeros moves
the logits by far more than the tolerance).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ...geometry.volume import Volume
from ...interaction.engine import SegmentationEngine
from ...interaction.prompts import PointPrompt, SlicePrompt, resolve_slice_prompt
from .precision_agreement import PromptAgreement, dice, fixed_prompts, load_agreement_volumes
from .propagation import clip_from

OBJECT_SCORE_SHIFT = 4.0  # object scores about +4 instead of about -1: tracked slices keep their masks


def redraw_every_parameter(model: torch.nn.Module, seed: int) -> None:
    """Every parameter from a seeded normal distribution: matrices scaled by their fan-in (activations keep their
    size through 32 blocks), norm scales around one, biases and embeddings small but never zero."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            if parameter.ndim >= 2 and parameter.shape[0] > 1 and "pos_embed" not in name:
                parameter.copy_(noise / math.sqrt(parameter[0].numel()))
            elif parameter.ndim == 1 and name.endswith("weight"):
                parameter.copy_(1.0 + 0.1 * noise)
            else:
                parameter.copy_(0.02 * noise)


def tracking_that_reads_its_memory(video_tracker: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """A ``Sam3TrackerVideoModel``'s weights redrawn (in place) so that its tracked slices have masks that depend
    on what it remembers (see the module's description)."""
    redraw_every_parameter(video_tracker, seed)
    with torch.no_grad():
        video_tracker.mask_decoder.pred_obj_score_head.proj_out.bias.add_(OBJECT_SCORE_SHIFT)
    return video_tracker


def clicked_clips(volumes: dict, slices: int) -> dict[str, tuple[Volume, SlicePrompt]]:
    """Name -> (the ``slices`` slices from the one where the object is largest, a click at its centre there)."""
    clips = {}
    for name, (volume, mask) in volumes.items():
        i, j, k = fixed_prompts(mask)["click"].points[0].ijk
        clip, first = clip_from(volume, int(k), slices)
        clips[name] = (clip, SlicePrompt("axial", points=(PointPrompt((i, j, k - first)),)))
    return clips


def tracked_logits(model, clip: Volume, prompt: SlicePrompt) -> dict[int, np.ndarray]:
    """Slice index in the clip -> the model-square logits of every slice a forward propagation visits."""
    frames = SegmentationEngine(model).frames(clip, "axial")
    start = int(round(prompt.points[0].ijk[2]))
    model_prompt = {start: frames.model_prompt(resolve_slice_prompt(clip, prompt))}
    return {masks.frame_index: masks.masks[1].logits for masks in model.track(frames, model_prompt, start, False)}


def measure_propagation_agreement(video, image_size: int, volumes: dict | None = None,
                                  fast_precision: str = "bfloat16", slices: int = 10) -> list[PromptAgreement]:
    """``video``: a (Sam3TrackerVideoModel, processor) pair with :func:`tracking_that_reads_its_memory` weights,
    converted in place to the fast path after the float32 run (pass a model you no longer need in float32).
    One :class:`PromptAgreement` per tracked slice, named "slice +n" (n slices after the clicked one)."""
    from ...model.sam3.transformers_model import TransformersSegmentationModel

    clips = clicked_clips(volumes if volumes is not None else load_agreement_volumes(), slices)
    answers = {}
    for precision in ("float32", fast_precision):
        model = TransformersSegmentationModel.from_components({"sam3_tracker_video": video},
                                                              f"agreement-{precision}", image_size,
                                                              precision=precision)
        answers[precision] = {name: tracked_logits(model, clip, prompt) for name, (clip, prompt) in clips.items()}
    results = []
    for name, (_, prompt) in clips.items():
        start = int(round(prompt.points[0].ijk[2]))
        reference, fast = answers["float32"][name], answers[fast_precision][name]
        for index in sorted(set(reference) - {start}):
            results.append(PromptAgreement(name, f"slice +{index - start}", dice(reference[index] > 0, fast[index] > 0),
                                           float(np.abs(reference[index] - fast[index]).max()),
                                           float(np.abs(reference[index]).max()), int((reference[index] > 0).sum())))
    return results
