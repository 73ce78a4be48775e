"""SAM 3's detector losses, written from their definitions in Meta's ``sam3`` package (``sam3/train/matcher.py``,
``sam3/train/loss/loss_fns.py``, ``sam3_loss.py``), with the weights of its released training recipe.

Meta's module cannot be imported on every platform the project supports (it imports ``triton``, which has no
Windows or macOS wheel, and ``torchmetrics``); ``tests/engine/training/test_losses_match_meta.py`` runs Meta's
classes on the same predictions and targets and compares the numbers.

- **Matching** (``BinaryHungarianMatcherV2``, ``focal=True``): cost = 2 x focal classification cost + 5 x box L1
  (centre-size boxes) + 2 x (-GIoU), solved per image with the Hungarian algorithm; images without a target match
  nothing.
- **Boxes**: L1 on (cx, cy, w, h) and 1 - GIoU on the matched pairs, summed, divided by the number of targets.
- **IoU-aware classification** (``IABCEMdetr``, ``weak_loss=False``, ``use_presence=True``): matched queries are
  pulled towards ``t = p^0.25 IoU^0.75`` (weight 10), the others pushed to 0 with a ``p^2`` focal factor; images
  without any target get no query loss, only the **presence** term: a sigmoid focal loss (alpha 0.5, gamma 0) of
  the presence logit against "this image holds the concept".
- **Masks**: the matched masks, upsampled bilinearly to the target's size, with sigmoid focal loss (alpha 0.25,
  gamma 2) and dice.
- **Total**: 5 L1 + 2 GIoU + 20 classification + 20 presence + 200 focal + 10 dice, times sqrt(batch size).

Only the final decoder layer's one-to-one queries are supervised (transformers' ``Sam3Model`` returns no auxiliary
or one-to-many outputs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

# The released recipe (sam3 training configs: matcher, loss_fns_find).
MATCH_COSTS = {"class": 2.0, "bbox": 5.0, "giou": 2.0}
MATCH_ALPHA, MATCH_GAMMA = 0.25, 2.0
LOSS_WEIGHTS = {"loss_bbox": 5.0, "loss_giou": 2.0, "loss_ce": 20.0, "presence_loss": 20.0,
                "loss_mask": 200.0, "loss_dice": 10.0}
POSITIVE_WEIGHT = 10.0
IOU_AWARE_ALPHA, NEGATIVE_GAMMA = 0.25, 2.0
PAD_QUERIES = 200
PRESENCE_ALPHA, PRESENCE_GAMMA = 0.5, 0.0
MASK_ALPHA, MASK_GAMMA = 0.25, 2.0


@dataclass
class Predictions:
    """One batch of ``Sam3Model`` outputs: ``logits`` (B, Q), ``boxes_xyxy`` (B, Q, 4) in 0..1, ``presence``
    (B,) logits, ``masks`` (B, Q, h, w) logits."""

    logits: torch.Tensor
    boxes_xyxy: torch.Tensor
    presence: torch.Tensor
    masks: torch.Tensor


@dataclass
class Targets:
    """One image's instances: ``boxes_xyxy`` (T, 4) in 0..1 and ``masks`` (T, H, W) of 0/1 (T may be 0)."""

    boxes_xyxy: torch.Tensor
    masks: torch.Tensor


def xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], dim=-1)


def _pairwise_iou_and_union(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    top_left = torch.max(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return inter / union, union


def pairwise_giou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Generalised IoU of every box of ``a`` (N, 4) with every box of ``b`` (M, 4), both x0 y0 x1 y1."""
    iou, union = _pairwise_iou_and_union(a, b)
    enclosing = (torch.max(a[:, None, 2:], b[None, :, 2:]) - torch.min(a[:, None, :2], b[None, :, :2])).clamp(min=0)
    area = enclosing.prod(-1)
    return iou - (area - union) / area


def matched_iou_and_giou(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """IoU and GIoU of ``a[i]`` with ``b[i]`` (both (N, 4) x0 y0 x1 y1)."""
    area_a = (a[:, 2:] - a[:, :2]).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).prod(-1)
    inter = (torch.min(a[:, 2:], b[:, 2:]) - torch.max(a[:, :2], b[:, :2])).clamp(min=0).prod(-1)
    union = area_a + area_b - inter
    iou = inter / union
    enclosing = (torch.max(a[:, 2:], b[:, 2:]) - torch.min(a[:, :2], b[:, :2])).clamp(min=0).prod(-1)
    return iou, iou - (enclosing - union) / enclosing


@torch.no_grad()
def hungarian_match(predictions: Predictions, targets: list[Targets]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per image, (query indices, target indices) of the one-to-one assignment (empty for an image without
    targets), ordered by target."""
    matches = []
    for image, target in enumerate(targets):
        count = len(target.boxes_xyxy)
        if count == 0:
            matches.append((np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)))
            continue
        logits = predictions.logits[image].float()
        boxes = predictions.boxes_xyxy[image].float()
        wanted = target.boxes_xyxy.float().to(boxes.device)
        cost_bbox = torch.cdist(xyxy_to_cxcywh(boxes), xyxy_to_cxcywh(wanted), p=1)
        cost_giou = -pairwise_giou(boxes, wanted)
        probability = logits.sigmoid()
        cost_class = (-MATCH_ALPHA * (1 - probability) ** MATCH_GAMMA * F.logsigmoid(logits)
                      + (1 - MATCH_ALPHA) * probability ** MATCH_GAMMA * F.logsigmoid(-logits))
        cost = (MATCH_COSTS["bbox"] * cost_bbox + MATCH_COSTS["class"] * cost_class[:, None]
                + MATCH_COSTS["giou"] * cost_giou)
        queries, chosen = linear_sum_assignment(cost.cpu().numpy())
        order = np.argsort(chosen)
        matches.append((queries[order].astype(np.int64), chosen[order].astype(np.int64)))
    return matches


def sigmoid_focal(logits: torch.Tensor, targets: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    """RetinaNet's sigmoid focal loss per element."""
    probability = logits.sigmoid()
    loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = probability * targets + (1 - probability) * (1 - targets)
    loss = loss * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss


def dice(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1 - soft Dice per row of (N, P) logits and 0/1 targets, with SAM's +1 smoothing."""
    probability = logits.sigmoid()
    numerator = 2 * (probability * targets).sum(1)
    return 1 - (numerator + 1) / (probability.sum(-1) + targets.sum(-1) + 1)


def sam3_losses(predictions: Predictions, targets: list[Targets],
                matches: list[tuple[np.ndarray, np.ndarray]] | None = None) -> dict[str, torch.Tensor]:
    """Every term (unweighted) and ``total`` (weighted, times sqrt(batch)) for one batch."""
    matches = hungarian_match(predictions, targets) if matches is None else matches
    device = predictions.logits.device
    batch, queries = predictions.logits.shape
    number = torch.clamp(torch.tensor(float(sum(len(t.boxes_xyxy) for t in targets)), device=device), min=1)
    image_index = torch.tensor(np.concatenate([np.full(len(q), i) for i, (q, _) in enumerate(matches)]),
                               dtype=torch.long, device=device)
    query_index = torch.tensor(np.concatenate([q for q, _ in matches]), dtype=torch.long, device=device)
    wanted_boxes = torch.cat([t.boxes_xyxy[c].float().to(device) for t, (_, c) in zip(targets, matches)])

    # boxes
    boxes = predictions.boxes_xyxy[image_index, query_index].float()
    loss_bbox = F.l1_loss(xyxy_to_cxcywh(boxes), xyxy_to_cxcywh(wanted_boxes), reduction="none").sum() / number
    iou, giou = matched_iou_and_giou(boxes, wanted_boxes)
    loss_giou = (1 - giou).sum() / number

    # IoU-aware classification, and presence
    logits = predictions.logits.float()
    probability = logits.sigmoid()
    with torch.no_grad():
        positive = torch.zeros_like(logits)
        positive[image_index, query_index] = 1
        soft = positive.clone()
        quality = probability[image_index, query_index] ** IOU_AWARE_ALPHA * iou.detach() ** (1 - IOU_AWARE_ALPHA)
        soft[image_index, query_index] = torch.clamp(quality, 0.01)
    loss_ce = F.binary_cross_entropy_with_logits(logits, soft, reduction="none") * positive * POSITIVE_WEIGHT
    loss_ce = loss_ce + F.binary_cross_entropy_with_logits(logits, positive, reduction="none") * (1 - positive) * \
        probability ** NEGATIVE_GAMMA
    holds = torch.tensor([[float(len(t.boxes_xyxy) > 0)] for t in targets], device=device)
    loss_ce = loss_ce * holds
    loss_ce = loss_ce.mean() if queries >= PAD_QUERIES else loss_ce.sum() / (PAD_QUERIES * batch)
    presence = predictions.presence.float().view(batch, 1)
    presence_loss = sigmoid_focal(presence, holds, PRESENCE_ALPHA, PRESENCE_GAMMA).mean(1).sum() / batch

    # masks
    if len(query_index):
        wanted_masks = torch.cat([t.masks[c].float().to(device) for t, (_, c) in zip(targets, matches)])
        masks = predictions.masks[image_index, query_index].float()[:, None]
        masks = F.interpolate(masks, size=wanted_masks.shape[-2:], mode="bilinear", align_corners=False)
        masks, wanted_masks = masks[:, 0].flatten(1), wanted_masks.flatten(1)
        loss_mask = sigmoid_focal(masks, wanted_masks, MASK_ALPHA, MASK_GAMMA).mean(1).sum() / number
        loss_dice = dice(masks, wanted_masks).sum() / number
    else:
        loss_mask = loss_dice = predictions.masks.sum() * 0.0
    terms = {"loss_bbox": loss_bbox, "loss_giou": loss_giou, "loss_ce": loss_ce, "presence_loss": presence_loss,
             "loss_mask": loss_mask, "loss_dice": loss_dice}
    terms["total"] = sum(LOSS_WEIGHTS[key] * value for key, value in terms.items()) * batch ** 0.5
    return terms
