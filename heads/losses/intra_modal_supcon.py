"""Intra-modal supervised contrastive loss (Khosla et al. 2020): L_cli on v, L_clt on t.

Within one modality, each sample (anchor) is pulled towards the other samples of the batch with the
same label and pushed from all the rest:

    loss_i = - mean_{p in P(i)} log( exp(s_ip / tau) / sum_{a != i} exp(s_ia / tau) )

with s the cosine similarity and P(i) the other same-label samples. Anchors with no positive are
skipped and the loss is the mean over the remaining anchors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def intra_modal_supcon_loss(embeddings: torch.Tensor, labels: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """embeddings [B, d], labels [B] -> scalar loss.

    When no anchor has a positive (a batch of one, or all labels distinct) the loss is a zero that
    is still connected to `embeddings`, so backward works and yields zero gradients, never NaN.
    """
    batch_size = embeddings.shape[0]
    same_label = labels.unsqueeze(0) == labels.unsqueeze(1)
    is_self = torch.eye(batch_size, dtype=torch.bool, device=embeddings.device)
    positives = same_label & ~is_self
    positive_counts = positives.sum(dim=1)
    has_positive = positive_counts > 0
    if not bool(has_positive.any()):
        # Also covers B == 1, where the denominator below would be an empty sum (log 0).
        return embeddings.sum() * 0.0

    unit = F.normalize(embeddings, dim=1)
    logits = unit @ unit.transpose(0, 1) / temperature
    # The anchor is not its own candidate. With B >= 2 every row keeps at least one finite entry, so
    # logsumexp (which subtracts the row max internally) stays finite and its gradient too.
    denominators = torch.logsumexp(logits.masked_fill(is_self, float("-inf")), dim=1, keepdim=True)
    log_prob = logits - denominators
    # Sum only the positives' log-probabilities (selecting, not multiplying by a 0/1 mask).
    positive_log_prob = torch.where(positives, log_prob, torch.zeros_like(log_prob)).sum(dim=1)
    mean_positive_log_prob = positive_log_prob[has_positive] / positive_counts[has_positive]
    return -mean_positive_log_prob.mean()
