"""Inter-modal supervised contrastive loss L_clm: image anchors, text candidates.

Positives of image i are all texts j with y_j = y_i, its own text included; the denominator runs
over every text of the batch:

    loss_i = - mean_{j: y_j = y_i} log( exp(s_ij / tau) / sum_k exp(s_ik / tau) ),  s_ij = cos(v_i, t_j)

Every anchor has at least its own text as a positive, so no anchor is ever skipped and a batch of
one gives exactly zero.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def inter_modal_supcon_loss(
    image_embeddings: torch.Tensor, text_embeddings: torch.Tensor, labels: torch.Tensor, temperature: float = 0.07
) -> torch.Tensor:
    """image_embeddings v [B, d], text_embeddings t [B, d] (row i is pair i), labels [B] -> scalar."""
    image_unit = F.normalize(image_embeddings, dim=1)
    text_unit = F.normalize(text_embeddings, dim=1)
    logits = image_unit @ text_unit.transpose(0, 1) / temperature  # rows: images, columns: texts
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = labels.unsqueeze(1) == labels.unsqueeze(0)
    positive_log_prob = torch.where(positives, log_prob, torch.zeros_like(log_prob)).sum(dim=1)
    return -(positive_log_prob / positives.sum(dim=1)).mean()
