"""One CLMLF-style training iteration: L = L_ce + contrastive_weight * L_lbcl, one backward, one step.

CLMLF's loss also has a data-based term (DBCL) over augmented views, which a fixed cache cannot give
(see heads/clmlf/model.py). The model must be in train mode and the batch hold two or more samples
(the classifier's BatchNorm).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from heads.config import SPPSCLConfig
from heads.losses.label_based_contrastive import label_based_contrastive_loss
from heads.single_backward_step import single_backward_step

CLMLF_REPORT_KEYS = ("loss_step_one", "loss_step_two", "ce", "lbcl", "step_two_ran")


def clmlf_step(
    model: nn.Module,
    batch: Mapping[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    config: SPPSCLConfig,
    backward: Callable[[torch.Tensor], None] | None = None,
) -> dict[str, float]:
    """Same signature as heads.training_step.spp_scl_step; returns the floats of CLMLF_REPORT_KEYS."""

    def loss_terms(outputs, labels):
        return {
            "ce": (1.0, F.cross_entropy(outputs["logits"], labels)),
            "lbcl": (
                config.contrastive_weight,
                label_based_contrastive_loss(outputs["contrastive"], labels, config.temperature),
            ),
        }

    return single_backward_step(model, batch, optimizer, loss_terms, backward)
