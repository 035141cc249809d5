"""An exponential moving average (EMA) of a head's weights, kept beside the weights the optimiser moves.

Why: on a few thousand posts and frozen features every head here peaks within a few epochs at lr 1e-3 and then
overfits, and the dev metric jumps by a point or more from one epoch to the next; an average of the weights over
the last few hundred steps is a cheap stand-in for an ensemble along the trajectory (Polyak averaging). With
`config.weight_average` = d > 0, after every training iteration (both optimiser steps of the two-step rule)

    average <- d * average + (1 - d) * weights

for the parameters and for the BatchNorm running statistics (so the averaged head is normalised by statistics
that match it). Dev selection, the checkpoint, the dev/test predictions and the served head are the average;
the optimiser, the loss curve and the two-step rule see the trained weights only. d = 0.99 averages over about
100 steps (two epochs of MVSA-Single at batch 64).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def weight_average(model: nn.Module, decay: float) -> AveragedModel | None:
    """The EMA of `model` (its first update copies the weights), or None when `decay` is 0 (off)."""
    if decay <= 0:
        return None
    if decay >= 1:
        raise ValueError(f"weight_average must be in [0, 1), got {decay}")
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def evaluated_head(model: nn.Module, average: AveragedModel | None) -> nn.Module:
    """The head that dev selection, checkpoints and predictions use."""
    return model if average is None else average.module


@torch.no_grad()
def update_average(average: AveragedModel | None, model: nn.Module) -> None:
    if average is not None:
        average.update_parameters(model)
