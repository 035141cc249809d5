"""Cross-entropy on the classifier output, scaled by lambda (`config.ce_weight`).

The weight is what balances classification against the contrastive terms in step one
(L1 = lambda * L_ce + L_cli + L_clt); the paper uses 5, 5 and 10 for MVSA-S, MVSA-M and HFM.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def weighted_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, weight: float) -> torch.Tensor:
    """logits [B, C], labels [B] -> weight * mean cross-entropy."""
    return weight * F.cross_entropy(logits, labels)
