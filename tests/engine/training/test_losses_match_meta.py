"""medsam3.training.losses computes SAM 3's matching and losses as Meta's own ``sam3.train`` code does, on the
same predictions and targets (Meta's module imported with stand-ins only for triton and torchmetrics:
tests/support/meta_losses.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from meta_losses import import_meta_losses
from medsam3.training.losses import LOSS_WEIGHTS, Predictions, Targets, hungarian_match, sam3_losses


def _random_batch(queries: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    counts = (2, 1, 0)  # the last image holds no instance: only its presence term counts
    corners = torch.rand(len(counts), queries, 2, generator=generator) * 0.6
    sizes = 0.05 + torch.rand(len(counts), queries, 2, generator=generator) * 0.35
    predictions = Predictions(logits=torch.randn(len(counts), queries, generator=generator) * 2,
                              boxes_xyxy=torch.cat([corners, corners + sizes], dim=-1),
                              presence=torch.randn(len(counts), generator=generator),
                              masks=torch.randn(len(counts), queries, 16, 16, generator=generator) * 3)
    targets = []
    for count in counts:
        corner = torch.rand(count, 2, generator=generator) * 0.5
        boxes = torch.cat([corner, corner + 0.1 + torch.rand(count, 2, generator=generator) * 0.3], dim=-1)
        masks = (torch.rand(count, 32, 32, generator=generator) > 0.6).float()
        targets.append(Targets(boxes, masks))
    return predictions, targets


def _meta_inputs(predictions: Predictions, targets: list[Targets]):
    from sam3.model.box_ops import box_xyxy_to_cxcywh

    counts = [len(t.boxes_xyxy) for t in targets]
    longest = max(counts)
    boxes_xyxy = torch.cat([t.boxes_xyxy for t in targets])
    padded = torch.zeros(len(targets), longest, 4)
    ids = torch.full((len(targets), longest), -1)
    for image, target in enumerate(targets):
        padded[image, :len(target.boxes_xyxy)] = box_xyxy_to_cxcywh(target.boxes_xyxy)
        ids[image, :len(target.boxes_xyxy)] = torch.arange(len(target.boxes_xyxy))
    meta_targets = {"boxes": box_xyxy_to_cxcywh(boxes_xyxy), "boxes_xyxy": boxes_xyxy,
                    "num_boxes": torch.tensor(counts), "boxes_padded": padded, "object_ids_padded": ids,
                    "masks": torch.cat([t.masks for t in targets]).bool(),
                    "is_valid_mask": torch.ones(sum(counts), dtype=torch.bool),
                    "is_exhaustive": torch.ones(len(targets), dtype=torch.bool)}
    outputs = {"pred_logits": predictions.logits[..., None], "pred_boxes_xyxy": predictions.boxes_xyxy,
               "pred_boxes": box_xyxy_to_cxcywh(predictions.boxes_xyxy),
               "presence_logit_dec": predictions.presence[:, None], "pred_masks": predictions.masks}
    return outputs, meta_targets


@pytest.mark.parametrize("queries", [8, 200])  # fewer than Meta's 200 padded queries (the tiny model), and 200
def test_matching_and_every_loss_term_equal_metas(monkeypatch, queries):
    loss_fns, matcher = import_meta_losses(monkeypatch)
    predictions, targets = _random_batch(queries, seed=queries)
    outputs, meta_targets = _meta_inputs(predictions, targets)

    meta_matcher = matcher.BinaryHungarianMatcherV2(focal=True, cost_class=2.0, cost_bbox=5.0, cost_giou=2.0,
                                                    alpha=0.25, gamma=2, stable=False)
    meta_indices = meta_matcher(outputs, meta_targets)
    ours = hungarian_match(predictions, targets)
    assert meta_indices[0].tolist() == [i for i, (q, _) in enumerate(ours) for _ in q]
    assert meta_indices[1].tolist() == [int(q) for queries_, _ in ours for q in queries_]

    num_boxes = torch.clamp(meta_targets["num_boxes"].sum().float(), min=1)
    meta = {}
    for loss in (loss_fns.Boxes(weight_dict={"loss_bbox": 5.0, "loss_giou": 2.0}),
                 loss_fns.IABCEMdetr(pos_weight=10.0, weak_loss=False, alpha=0.25, gamma=2, use_presence=True,
                                     pos_focal=False, pad_n_queries=200, pad_scale_pos=1.0,
                                     weight_dict={"loss_ce": 20.0, "presence_loss": 20.0}),
                 loss_fns.Masks(focal_alpha=0.25, focal_gamma=2.0, weight_dict={"loss_mask": 200.0,
                                                                                 "loss_dice": 10.0})):
        terms = loss(outputs=outputs, targets=meta_targets, indices=meta_indices, num_boxes=num_boxes)
        meta.setdefault("total", 0.0)
        meta["total"] = meta["total"] + terms.pop(loss_fns.CORE_LOSS_KEY)
        meta.update(terms)
    meta["total"] = meta["total"] * len(targets) ** 0.5  # scale_by_find_batch_size: True in the recipe

    computed = sam3_losses(predictions, targets)
    for key in (*LOSS_WEIGHTS, "total"):
        print(f"{key}: ours {float(computed[key]):.6f}, Meta {float(meta[key]):.6f}")
        np.testing.assert_allclose(float(computed[key]), float(meta[key]), rtol=1e-5, atol=1e-6, err_msg=key)
    assert float(computed["loss_mask"]) > 0 and float(computed["presence_loss"]) > 0
