"""Noise on the cached inputs: fresh at every training forward, absent in eval mode, reproducible per seed."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spp_scl.heads.config import SPPSCLConfig
from spp_scl.heads.input_noise import attach_input_noise


class Recorder(nn.Module):
    """Keeps what its forward receives."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, image_maps=None, first_token=None, token_states=None, token_mask=None):
        self.seen.append(
            {
                "image_maps": image_maps,
                "first_token": first_token,
                "token_states": token_states,
                "token_mask": token_mask,
            }
        )
        return {}


def _inputs():
    generator = torch.Generator().manual_seed(0)
    return {
        "image_maps": torch.randn(16, 32, 3, 3, generator=generator),
        "first_token": torch.randn(16, 4, 64, generator=generator),
        "token_states": torch.randn(16, 4, 10, 64, generator=generator),
        "token_mask": torch.ones(16, 10, dtype=torch.bool),
    }


def test_dropout_is_drawn_anew_at_every_training_forward_and_never_in_eval():
    model = Recorder()
    attach_input_noise(model, SPPSCLConfig(input_dropout=0.25))
    inputs = _inputs()
    model.train()
    model(**inputs)
    model(**inputs)
    first, second = model.seen
    for name in ("image_maps", "first_token", "token_states"):
        zeroed = (first[name] == 0).float().mean().item()
        assert zeroed == pytest.approx(0.25, abs=0.03), name
        kept = first[name] != 0
        torch.testing.assert_close(first[name][kept], inputs[name][kept] / 0.75)  # inverted dropout's scaling
        assert not torch.equal(first[name], second[name])  # the second forward draws its own mask
    assert torch.equal(first["token_mask"], inputs["token_mask"])  # the mask is never touched
    model.eval()
    model(**inputs)
    for name, value in inputs.items():
        assert torch.equal(model.seen[-1][name], value)


def test_gaussian_noise_scales_with_each_inputs_spread_and_follows_the_seed():
    model = Recorder()
    attach_input_noise(model, SPPSCLConfig(input_noise=0.5))
    inputs = _inputs()
    inputs["image_maps"] = inputs["image_maps"] * 10
    model.train()
    torch.manual_seed(7)
    model(**inputs)
    torch.manual_seed(7)
    model(**inputs)
    for name in ("image_maps", "first_token", "token_states"):
        added = model.seen[0][name] - inputs[name]
        assert added.std().item() == pytest.approx(0.5 * inputs[name].std().item(), rel=0.1), name
        assert torch.equal(model.seen[0][name], model.seen[1][name])  # same seed, same noise


def test_no_noise_attaches_nothing():
    assert attach_input_noise(Recorder(), SPPSCLConfig()) is None
    with pytest.raises(ValueError, match="input_dropout must be in"):
        SPPSCLConfig(input_dropout=1.0)
