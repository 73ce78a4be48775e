"""The training loop on transformers' ``Sam3Model``, the class the engine runs text prompts with.

What is trained (``parts``):
- ``heads`` (default): the DETR decoder (with its presence token and box head), the segmentation head
  (``mask_decoder``) and the scoring head (``dot_product_scoring``); everything else frozen and in eval mode;
- ``lora``: the heads plus LoRA adapters (``peft``) on every linear layer of the ViT and the text encoder, merged
  into the weights at the end;
- ``all``: every parameter of the detector (for GPUs with the memory for it).

A step: for each of ``accumulate`` micro-steps, one sample from the seeded sampler, the model's text-prompt forward
pass as inference calls it (the class-token box prompt of :mod:`medsam3.model.sam3.meta_parity`), SAM 3's losses
(:mod:`.losses`), backward; then gradient clipping and AdamW. Dropout draws from ``torch.manual_seed(seed, step)``
and the sampler from (seed, step), so a run resumed from a checkpoint computes the same losses as one that never
stopped. bfloat16 autocast on CUDA only.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import MedSam3Error
from .losses import Predictions, Targets, sam3_losses
from .slices import Sample, SeededSampler, SliceSet

PARTS = ("heads", "lora", "all")
HEAD_MODULES = ("detr_decoder", "mask_decoder", "dot_product_scoring")
LORA_TARGETS = r"(vision_encoder\.backbone|text_encoder)\..*\.(q_proj|k_proj|v_proj|o_proj|out_proj|fc1|fc2)"
CHECKPOINT_NAME = "checkpoint.pt"


@dataclass(frozen=True)
class TrainingSettings:
    steps: int = 500
    parts: str = "heads"
    learning_rate: float = 1e-4
    weight_decay: float = 0.01
    max_grad_norm: float = 0.1  # SAM 3's recipe clips the gradient norm at 0.1
    accumulate: int = 1
    checkpoint_every: int = 50
    seed: int = 0
    lora_rank: int = 8
    lora_alpha: int = 16


class TrainingStopped(MedSam3Error):
    """Training was asked to stop; the checkpoint written last lets ``--resume`` continue."""


def _load_detector(path: Path, image_size: int | None):
    from transformers import Sam3Model, Sam3Processor

    from ..model.sam3.transformers_model import resize_config

    from transformers.utils import logging as transformers_logging

    config = Sam3Model.config_class.from_pretrained(path)
    if image_size and image_size != config.vision_config.backbone_config.image_size:  # as the engine loads it
        config = Sam3Model.config_class.from_dict(resize_config(config.to_dict(), image_size))
    showing = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()  # its "Loading weights" bar would break the one-line errors
    try:
        model = Sam3Model.from_pretrained(path, config=config, dtype=torch.float32)
    finally:
        if showing:
            transformers_logging.enable_progress_bar()
    return model, Sam3Processor.from_pretrained(path)


class Trainer:
    """One fine-tuning run of the detector loaded from ``detector_path`` on ``slices``."""

    def __init__(self, detector_path: Path, slices: SliceSet, settings: TrainingSettings, device: str = "cpu",
                 state_dir: Path | None = None, image_size: int | None = None):
        if settings.parts not in PARTS:
            raise MedSam3Error(f"--train {settings.parts!r}: choose one of {', '.join(PARTS)}.")
        self.settings, self.slices, self.state_dir = settings, slices, state_dir
        self.device = torch.device(device)
        self.model, processor = _load_detector(detector_path, image_size)
        self.model.to(self.device)
        self.sampler = SeededSampler(slices, settings.seed)
        self._tokens = {}
        for structure in slices.structures:
            tokens = processor(text=[structure.prompt], return_tensors="pt")
            self._tokens[structure.prompt] = (tokens["input_ids"].to(self.device),
                                              tokens["attention_mask"].to(self.device))
        self.network = self._choose_parameters()
        self.trainable = {name: p for name, p in self.network.named_parameters() if p.requires_grad}
        self.optimizer = torch.optim.AdamW(self.trainable.values(), lr=settings.learning_rate,
                                           weight_decay=settings.weight_decay)
        self.step = 0
        self.losses: list[float] = []
        self.seconds_per_step: float | None = None
        self.steps_timed, self.seconds_timed = 0, 0.0  # the steps of this process, for the mean step time

    @property
    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def _choose_parameters(self) -> torch.nn.Module:
        parts = self.settings.parts
        for name, parameter in self.model.named_parameters():
            parameter.requires_grad_(parts == "all" or name.split(".")[0] in HEAD_MODULES)
        if parts != "lora":
            return self.model
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError as error:
            raise MedSam3Error(f"--train lora needs the peft package ({error}): pip install 'medsam3[finetune]' "
                               "(or requirements/finetune.txt), or train the heads only.") from None

        config = LoraConfig(r=self.settings.lora_rank, lora_alpha=self.settings.lora_alpha, lora_dropout=0.0,
                            target_modules=LORA_TARGETS)
        network = get_peft_model(self.model, config)
        for name, parameter in network.named_parameters():  # peft freezes everything but its adapters
            if any(f".{module}." in f".{name}" for module in HEAD_MODULES) and "lora_" not in name:
                parameter.requires_grad_(True)
        return network

    def _train_mode(self) -> None:
        """Dropout where parameters learn; frozen modules in eval mode (CPU attention is much slower in train mode)."""
        self.network.eval()
        if self.settings.parts == "all":
            self.network.train()
            return
        for name, module in self.model.named_children():
            if name in HEAD_MODULES:
                module.train()

    def _autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return torch.autocast("cpu", enabled=False)

    def forward(self, samples: list[Sample], network: torch.nn.Module | None = None) -> Predictions:
        """The text-prompt forward pass of ``network`` (default: the model being trained) on some samples that share
        a structure."""
        from ..model.sam3.meta_parity import class_token_box_prompt

        network = network or self.network
        prompt = self.slices.structures[samples[0].structure].prompt
        input_ids, attention_mask = self._tokens[prompt]
        images = np.stack([self.slices.image(sample) for sample in samples])
        grey = torch.from_numpy(images).to(self.device)[:, None].expand(-1, 3, -1, -1)
        pixels = (grey - 0.5) / 0.5  # the processor's mean and std (0.5), as TransformersSegmentationModel._pixels
        count = len(samples)
        with self._autocast():
            output = network(pixel_values=pixels, input_ids=input_ids.expand(count, -1),
                             attention_mask=attention_mask.expand(count, -1),
                             **class_token_box_prompt(count, self.device, torch.float32))
        return Predictions(output.pred_logits, output.pred_boxes, output.presence_logits.reshape(count),
                           output.pred_masks)

    def _targets(self, sample: Sample) -> Targets:
        boxes, masks = self.slices.instances(sample)
        return Targets(torch.from_numpy(boxes).to(self.device), torch.from_numpy(masks).to(self.device))

    def train_step(self) -> float:
        """One optimiser step (``accumulate`` samples); returns the step's mean loss."""
        settings = self.settings
        self._train_mode()
        torch.manual_seed(settings.seed * 1_000_003 + self.step)
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for micro in range(settings.accumulate):
            sample = self.sampler.draw(self.step, micro)
            loss = sam3_losses(self.forward([sample]), [self._targets(sample)])["total"] / settings.accumulate
            loss.backward()
            total += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(self.trainable.values(), settings.max_grad_norm)
        self.optimizer.step()
        self.step += 1
        self.losses.append(total)
        return total

    def run(self, on_step: Callable[["Trainer"], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> None:
        """Train up to ``settings.steps``, checkpointing every ``checkpoint_every`` steps and when asked to stop
        (then :class:`TrainingStopped` is raised after the checkpoint is on disk)."""
        while self.step < self.settings.steps:
            started = time.perf_counter()
            self.train_step()
            self.seconds_per_step = time.perf_counter() - started
            self.steps_timed, self.seconds_timed = self.steps_timed + 1, self.seconds_timed + self.seconds_per_step
            if on_step is not None:
                on_step(self)
            stopping = should_stop is not None and should_stop()
            if self.state_dir is not None and (stopping or self.step % self.settings.checkpoint_every == 0
                                               or self.step == self.settings.steps):
                self.save_checkpoint()
            if stopping and self.step < self.settings.steps:
                raise TrainingStopped(f"Stopped after step {self.step} of {self.settings.steps}; the checkpoint "
                                      f"is in {self.state_dir}: run the same command with --resume to continue.")

    # --- checkpoints ----------------------------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        """The trained parameters, the optimiser's state, the step and the losses so far, written atomically."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        path = self.state_dir / CHECKPOINT_NAME
        partial = path.with_name(path.name + ".partial")
        torch.save({"step": self.step, "losses": self.losses, "settings": asdict(self.settings),
                    "trainable": {name: p.detach().cpu() for name, p in self.trainable.items()},
                    "optimizer": self.optimizer.state_dict()}, partial)
        os.replace(partial, path)
        return path

    def load_checkpoint(self) -> None:
        path = self.state_dir / CHECKPOINT_NAME
        if not path.is_file():
            raise MedSam3Error(f"--resume: {path} does not exist; start without --resume.")
        state = torch.load(path, map_location=self.device, weights_only=True)
        recorded = dict(state["settings"])
        for key in ("parts", "seed", "accumulate", "learning_rate", "lora_rank"):
            if recorded.get(key) != getattr(self.settings, key):
                raise MedSam3Error(f"--resume: the checkpoint was made with {key}={recorded.get(key)!r}, not "
                                   f"{getattr(self.settings, key)!r}: resume with the same settings.")
        with torch.no_grad():
            for name, value in state["trainable"].items():
                self.trainable[name].copy_(value)
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.losses = int(state["step"]), list(state["losses"])

    # --- the result -------------------------------------------------------------------------------------------
    def trained_detector(self) -> torch.nn.Module:
        """The plain ``Sam3Model`` with the training in its weights (LoRA merged)."""
        if self.settings.parts == "lora":
            self.model = self.network.merge_and_unload()
            self.network = self.model
            self.settings = TrainingSettings(**{**asdict(self.settings), "parts": "merged"})
        return self.model.eval()

    @torch.no_grad()
    def held_out_dice(self, held_out: SliceSet, network: torch.nn.Module | None = None,
                      score_threshold: float = 0.5) -> dict[str, dict[str, float]]:
        """Two Dice figures per structure on held-out slices, text on each slice, on the model square:

        - ``engine``: as the engine segments text on a slice (instances scoring at least ``score_threshold``,
          score = query x presence, merged), over every slice holding the structure and as many without it;
        - ``best_instance``: the mask of the best-scoring instance, over the slices holding the structure (the
          mask quality of the detection, whatever its score)."""
        network = network or self.network
        network.eval()
        trainer_slices, self.slices = self.slices, held_out
        size = held_out.image_size
        try:
            dice = {}
            for index, structure in enumerate(held_out.structures):
                sums = {"engine": np.zeros(3), "best_instance": np.zeros(3)}  # overlap, predicted, wanted
                for sample in held_out.held_out_samples(index):
                    out = self.forward([sample], network)
                    scores = out.logits[0].float().sigmoid() * out.presence[0].float().sigmoid()
                    masks = torch.nn.functional.interpolate(out.masks[0].float()[:, None], size=(size, size),
                                                            mode="bilinear", align_corners=False)[:, 0].cpu() > 0
                    target = torch.from_numpy(held_out.target_mask(sample))
                    kept = masks[(scores >= score_threshold).cpu()].any(0)
                    predictions = {"engine": kept}
                    if target.any():
                        predictions["best_instance"] = masks[int(scores.argmax())]
                    for name, predicted in predictions.items():
                        sums[name] += [float((predicted & target).sum()), float(predicted.sum()),
                                       float(target.sum())]
                dice[structure.name] = {name: 2 * o / (p + w) if p + w else 1.0 for name, (o, p, w) in sums.items()
                                        if w > 0}
            return dice
        finally:
            self.slices = trainer_slices
