"""One MDSE-style training iteration: L = L_ce + contrastive_weight * L_macl, one backward, one step.

MACL runs over the image, text and fused embeddings (v, t, fused) of the batch, 3B samples. The model
must be in train mode and the batch hold two or more samples (the classifier's BatchNorm). With stored views
(config.train_views), the batch is already the augmented one: MDSE's augmentations need nothing more here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from spp_scl.heads.config import SPPSCLConfig
from spp_scl.heads.losses.modality_agnostic_contrastive import modality_agnostic_contrastive_loss
from spp_scl.heads.single_backward_step import single_backward_step

MDSE_REPORT_KEYS = ("loss_step_one", "loss_step_two", "ce", "macl", "step_two_ran")


def mdse_step(
    model: nn.Module,
    batch: Mapping[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    config: SPPSCLConfig,
    backward: Callable[[torch.Tensor], None] | None = None,
) -> dict[str, float]:
    """Same signature as spp_scl.heads.training_step.spp_scl_step; returns the floats of MDSE_REPORT_KEYS."""

    def loss_terms(outputs, labels):
        macl = modality_agnostic_contrastive_loss(
            outputs["v"], outputs["t"], outputs["fused"], labels, config.temperature
        )
        return {"ce": (1.0, F.cross_entropy(outputs["logits"], labels)), "macl": (config.contrastive_weight, macl)}

    return single_backward_step(model, batch, optimizer, loss_terms, backward)
