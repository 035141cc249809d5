"""HA's layer gate: the paper's sees each layer's [CLS] mean over D; the projection gate sees the whole vector."""

from __future__ import annotations

import torch

from spp_scl.heads.config import SPPSCLConfig
from spp_scl.heads.hierarchical_attention import HierarchicalAttention
from spp_scl.heads.model import SPPSCLHead


def _zero_mean_first_tokens(batch=32, layers=4, dim=48):
    # Like a sentence encoder's [CLS] vectors: varied, but with a per-vector mean of about zero.
    x = torch.randn(batch, layers, dim, generator=torch.Generator().manual_seed(0))
    return x - x.mean(dim=-1, keepdim=True)


def test_the_mean_gate_cannot_tell_zero_mean_vectors_apart_and_the_projection_gate_can():
    torch.manual_seed(0)
    first = _zero_mean_first_tokens()
    mean_gate = HierarchicalAttention(4, 48).layer_weights(first)
    assert torch.allclose(mean_gate, torch.full_like(mean_gate, 0.5))  # sigmoid(0): the same for every post
    projection_gate = HierarchicalAttention(4, 48, gate_input="projection").layer_weights(first)
    assert projection_gate.std(dim=0).min() > 1e-3  # per-post weights that differ


def test_the_paper_gate_keeps_the_checkpoint_keys():
    default = SPPSCLHead(SPPSCLConfig(), 6, 8, 4, 3).state_dict().keys()
    projection = SPPSCLHead(SPPSCLConfig(ha_gate="projection"), 6, 8, 4, 3).state_dict().keys()
    assert not any("layer_summary" in key for key in default)
    assert sorted(projection - default) == [
        "text_encoder.layer_summary.0.bias",
        "text_encoder.layer_summary.0.weight",
        "text_encoder.layer_summary.1.bias",
        "text_encoder.layer_summary.1.weight",
    ]
