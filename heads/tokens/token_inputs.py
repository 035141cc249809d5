"""The cached inputs of a token-level head, checked and turned into token sequences of the head's width."""

from __future__ import annotations

import torch
from torch import nn


def token_inputs(
    head: str,
    text_tokens: nn.Module,
    image_tokens: nn.Module,
    image_maps: torch.Tensor | None,
    token_states: torch.Tensor | None,
    token_mask: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(text tokens [B, L, d], image tokens [B, h*w, d], bool token mask [B, L]). The first-token states are not
    needed: the token states hold the first token too."""
    if image_maps is None or token_states is None or token_mask is None:
        raise ValueError(f"the {head} head needs image_maps, token_states and token_mask")
    return text_tokens(token_states), image_tokens(image_maps), token_mask.bool()
