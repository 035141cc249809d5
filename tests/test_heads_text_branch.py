"""Hierarchical attention reads real tokens only and weights layers per sample."""

import pytest
import torch

from heads.hierarchical_attention import HierarchicalAttention

LENGTHS = torch.tensor([5, 1, 3, 5, 2])


def padded_text(lengths, total_length, num_layers=3, dim=10, seed=0):
    generator = torch.Generator().manual_seed(seed)
    first_token = torch.randn(len(lengths), num_layers, dim, generator=generator)
    tokens = torch.randn(len(lengths), num_layers, int(lengths.max()), dim, generator=generator)
    mask = torch.arange(total_length).unsqueeze(0) < lengths.unsqueeze(1)
    states = torch.zeros(len(lengths), num_layers, total_length, dim)
    states[:, :, : tokens.shape[2]] = tokens
    states = states * mask[:, None, :, None]
    return first_token, states, mask


def test_extra_zero_padding_changes_nothing():
    torch.manual_seed(0)
    encoder = HierarchicalAttention(num_layers=3, text_dim=10, lstm_hidden=6)
    tight = encoder(*padded_text(LENGTHS, total_length=5))
    loose = encoder(*padded_text(LENGTHS, total_length=13))
    for a, b in zip(tight, loose):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_values_at_padded_positions_are_never_read():
    torch.manual_seed(0)
    encoder = HierarchicalAttention(num_layers=3, text_dim=10, lstm_hidden=6)
    first_token, states, mask = padded_text(LENGTHS, total_length=8)
    garbage = states + torch.randn_like(states) * 100.0 * (~mask)[:, None, :, None]
    torch.testing.assert_close(
        encoder(first_token, states, mask)[0], encoder(first_token, garbage, mask)[0], atol=1e-6, rtol=0
    )


def test_output_shapes_and_gate_range():
    encoder = HierarchicalAttention(num_layers=3, text_dim=10, lstm_hidden=6)
    text_vector, weights = encoder(*padded_text(LENGTHS, total_length=7))
    assert text_vector.shape == (5, 12) and weights.shape == (5, 3)
    assert ((weights > 0) & (weights < 1)).all()


def test_gate_is_bias_free_k_by_k():
    encoder = HierarchicalAttention(num_layers=4, text_dim=10, lstm_hidden=6)
    linears = [m for m in encoder.layer_gate if isinstance(m, torch.nn.Linear)]
    assert [tuple(m.weight.shape) for m in linears] == [(4, 4), (4, 4)]
    assert all(m.bias is None for m in linears)
    assert not any("bias" in name for name, _ in encoder.lstm.named_parameters())


def test_mask_with_a_hole_is_rejected():
    encoder = HierarchicalAttention(num_layers=3, text_dim=10, lstm_hidden=6)
    first_token, states, mask = padded_text(LENGTHS, total_length=6)
    mask = mask.clone()
    mask[0, 1] = False
    with pytest.raises(ValueError, match="prefix"):
        encoder(first_token, states, mask)
