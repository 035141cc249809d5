"""The semi-push-pull rule: are image and text already aligned enough to skip step two?

On the aligned embeddings t and v as they come out of the alignment layers (not L2-normalised),
S = sigmoid(t v^T) is a [B, B] matrix whose diagonal scores each sample's own image-text pair.
m is the mean of that diagonal and c counts the entries of S below m, i.e. the pairs that score
worse than a typical matching pair. P is the number of ordered same-label pairs (i, j), i = j
included. When c >= theta * P, most pairs already sit below the matching pairs, the modalities
count as aligned, and the inter-modal pull (step two) is skipped for this iteration.

Note that c and m do not change when S is transposed, so which modality indexes the rows is moot.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class AlignmentDecision:
    aligned: bool
    below_mean_count: int  # c
    same_label_pairs: int  # P
    diagonal_mean: float = 0.0  # m
    # Share of the entries of S that are exactly 1.0 in their float type (t_i . v_j above ~16.7 in float32): such
    # entries tie with m and never count in c, so the decision then depends on the embeddings' scale.
    saturated_fraction: float = 0.0


@torch.no_grad()
def alignment_decision(
    t: torch.Tensor, v: torch.Tensor, labels: torch.Tensor, theta: float = 2.0 / 3.0
) -> AlignmentDecision:
    """t [B, d], v [B, d], labels [B] -> AlignmentDecision(aligned = c >= theta * P, c, P, m, saturated share).

    Computed in float32 (float64 stays float64) whatever the autocast state and the embeddings' dtype: in bfloat16
    S has 8 bits of mantissa, so many entries tie with m (or saturate at 1.0) and c, hence the decision, changes."""
    dtype = torch.promote_types(t.dtype, torch.float32)
    with torch.autocast(t.device.type, enabled=False):
        similarity = torch.sigmoid(t.to(dtype) @ v.to(dtype).transpose(0, 1))
    diagonal_mean = similarity.diagonal().mean()
    below_mean_count = int((similarity < diagonal_mean).sum())
    same_label_pairs = int((labels.unsqueeze(0) == labels.unsqueeze(1)).sum())
    return AlignmentDecision(
        aligned=below_mean_count >= theta * same_label_pairs,
        below_mean_count=below_mean_count,
        same_label_pairs=same_label_pairs,
        diagonal_mean=float(diagonal_mean),
        saturated_fraction=float((similarity == 1.0).float().mean()),
    )
