"""Mean over the real positions of a padded token sequence."""

from __future__ import annotations

import torch


def masked_mean(tokens: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """tokens [B, L, d], mask [B, L] bool (True = real; None = all real) -> [B, d].

    Padded positions are selected out (not multiplied by zero), so whatever they hold, even NaN from
    an attention row with nothing to attend to, cannot reach the mean.
    """
    if mask is None:
        return tokens.mean(dim=1)
    kept = torch.where(mask.unsqueeze(-1), tokens, torch.zeros_like(tokens))
    return kept.sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp(min=1).to(tokens.dtype)
