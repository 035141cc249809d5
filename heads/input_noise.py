"""Noise on the cached inputs while training: a cheap stand-in for the stochastic features the authors' encoders
gave (BERT's dropout and ResNet's batch statistics drew new features at every forward; a cache does not).

`attach_input_noise(model, config)` registers a forward pre-hook, so every head gets it unchanged and every forward
draws its own noise (both forwards of the two-step rule, as the authors' encoders did), from the global random
stream the trainer seeds. In eval mode the hook does nothing: dev, test and predict see the clean features.
- input_dropout p: each cached value is zeroed with probability p (the others scaled by 1 / (1 - p)).
- input_noise s: Gaussian noise with standard deviation s times the tensor's own standard deviation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from spp_scl.heads.config import SPPSCLConfig

NOISY_INPUTS = ("image_maps", "first_token", "token_states")


def perturb(x: torch.Tensor, dropout: float, noise: float) -> torch.Tensor:
    if x.dtype in (torch.float16, torch.bfloat16):  # a batch that kept the cache's float16: noise in float32
        x = x.float()
    if dropout > 0:
        x = F.dropout(x, dropout, training=True)
    if noise > 0:
        x = x + noise * x.detach().float().std().to(x.dtype) * torch.randn_like(x)
    return x


def attach_input_noise(model: nn.Module, config: SPPSCLConfig):
    """The hook's handle (`.remove()` detaches it), or None when the config asks for no noise."""
    if config.input_dropout <= 0 and config.input_noise <= 0:
        return None

    def hook(module: nn.Module, args: tuple, kwargs: dict):
        if not module.training:
            return None
        kwargs = {
            name: perturb(value, config.input_dropout, config.input_noise)
            if name in NOISY_INPUTS and value is not None
            else value
            for name, value in kwargs.items()
        }
        return args, kwargs

    return model.register_forward_pre_hook(hook, with_kwargs=True)
