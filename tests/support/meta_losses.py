"""Meta's SAM 3 matcher and losses (``sam3.train``) imported on a CPU without triton or torchmetrics.

``sam3/train/loss/loss_fns.py`` imports ``torchmetrics`` (for an F1 figure it logs) and triton kernels of the
sigmoid focal loss. Both are stood in for while it is imported: the F1 figure by zero, the triton kernels by Meta's
own torch path of the same function (``sigmoid_focal_loss(..., triton=False)``), so every number compared is
computed by Meta's code."""

from __future__ import annotations

import importlib
import sys
import types

import torch


def import_meta_losses(monkeypatch):
    """(loss_fns module, matcher module) with the stand-ins above installed through ``monkeypatch``."""
    imported = {}

    def meta_focal(inputs, targets, alpha, gamma):
        return imported["loss_fns"].sigmoid_focal_loss(inputs, targets, 1, alpha=alpha, gamma=gamma, reduce=False, triton=False)

    focal = types.ModuleType("sam3.train.loss.sigmoid_focal_loss")
    focal.triton_sigmoid_focal_loss = meta_focal
    focal.triton_sigmoid_focal_loss_reduce = lambda inputs, targets, alpha, gamma: \
        meta_focal(inputs, targets, alpha, gamma).sum()
    metrics = types.ModuleType("torchmetrics")
    metrics.functional = types.SimpleNamespace(f1_score=lambda *args, **kwargs: torch.tensor(0.0))
    monkeypatch.setitem(sys.modules, "sam3.train.loss.sigmoid_focal_loss", focal)
    monkeypatch.setitem(sys.modules, "torchmetrics", metrics)
    monkeypatch.delitem(sys.modules, "sam3.train.loss.loss_fns", raising=False)
    loss_fns = imported["loss_fns"] = importlib.import_module("sam3.train.loss.loss_fns")
    sys.modules.pop("sam3.train.loss.loss_fns")  # nobody else gets the stood-in version
    return loss_fns, importlib.import_module("sam3.train.matcher")
