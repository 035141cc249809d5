"""One CLMLF-style training iteration: L = L_ce + contrastive_weight * L_lbcl (+ dbcl_weight * L_dbcl), one
backward, one step.

DBCL (CLMLF's data-based contrastive loss) needs a second view of each post: with stored views served
(config.uses_dbcl), the batch carries it as "second_view" (runs/train/view_feed.py), the model embeds it in a second
forward, and DBCL contrasts the two (heads/losses/data_based_contrastive.py). On clean features there is none and
the loss is CE + LBCL. The model must be in train mode and the batch hold two or more samples (the classifier's
BatchNorm).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from spp_scl.heads.config import SPPSCLConfig
from spp_scl.heads.losses.data_based_contrastive import data_based_contrastive_loss
from spp_scl.heads.losses.label_based_contrastive import label_based_contrastive_loss
from spp_scl.heads.single_backward_step import MODEL_INPUTS, single_backward_step

CLMLF_REPORT_KEYS = ("loss_step_one", "loss_step_two", "ce", "lbcl", "dbcl", "step_two_ran")


def clmlf_step(
    model: nn.Module,
    batch: Mapping[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    config: SPPSCLConfig,
    backward: Callable[[torch.Tensor], None] | None = None,
) -> dict[str, float]:
    """Same signature as spp_scl.heads.training_step.spp_scl_step; returns the floats of CLMLF_REPORT_KEYS (dbcl 0.0 when
    there is no second view)."""
    second = batch.get("second_view") if config.uses_dbcl else None

    def loss_terms(outputs, labels):
        terms = {
            "ce": (1.0, F.cross_entropy(outputs["logits"], labels)),
            "lbcl": (
                config.contrastive_weight,
                label_based_contrastive_loss(outputs["contrastive"], labels, config.temperature),
            ),
        }
        if second is not None:  # the augmented branch: a forward on the second view, in the same graph
            augmented = model(**{name: second.get(name) for name in MODEL_INPUTS})
            dbcl = data_based_contrastive_loss(
                outputs["contrastive"], augmented["augment_contrastive"], config.temperature
            )
            terms["dbcl"] = (config.dbcl_weight, dbcl)
        return terms

    report = single_backward_step(model, batch, optimizer, loss_terms, backward)
    report.setdefault("dbcl", 0.0)
    return report
