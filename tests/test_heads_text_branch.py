"""Hierarchical attention reads real tokens only and weights layers per sample."""

import pytest
import torch

from spp_scl.heads.hierarchical_attention import HierarchicalAttention

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


def test_lstm_plus_mean_pooling_adds_the_mean_of_the_layer_mixed_real_tokens():
    torch.manual_seed(0)
    paper = HierarchicalAttention(num_layers=3, text_dim=10, lstm_hidden=6, gate_input="projection")
    skip = HierarchicalAttention(num_layers=3, text_dim=10, lstm_hidden=6, gate_input="projection", pooling="lstm+mean")
    skip.load_state_dict(paper.state_dict())  # the skip adds no parameters
    first_token, states, mask = padded_text(LENGTHS, total_length=7)
    lstm_vector, weights = paper(first_token, states, mask)
    text_vector, skip_weights = skip(first_token, states, mask)
    assert skip.out_dim == 12 + 10 and text_vector.shape == (5, 22)
    torch.testing.assert_close(text_vector[:, :12], lstm_vector, atol=0, rtol=0)
    torch.testing.assert_close(skip_weights, weights, atol=0, rtol=0)
    for b, length in enumerate(LENGTHS.tolist()):  # a naive loop: weight each layer, average the real tokens
        expected = sum(weights[b, k] * states[b, k, :length].mean(dim=0) for k in range(3))
        torch.testing.assert_close(text_vector[b, 12:], expected, atol=1e-6, rtol=1e-5)


def test_lstm_plus_mean_pooling_ignores_padding():
    torch.manual_seed(0)
    encoder = HierarchicalAttention(num_layers=3, text_dim=10, lstm_hidden=6, pooling="lstm+mean")
    first_token, states, mask = padded_text(LENGTHS, total_length=8)
    garbage = states + torch.randn_like(states) * 100.0 * (~mask)[:, None, :, None]
    tight = encoder(*padded_text(LENGTHS, total_length=5))[0]
    torch.testing.assert_close(encoder(first_token, garbage, mask)[0], tight, atol=1e-6, rtol=0)


def test_unknown_text_pooling_is_rejected():
    with pytest.raises(ValueError, match="text pooling must be 'lstm' or 'lstm\\+mean'"):
        HierarchicalAttention(num_layers=3, text_dim=10, pooling="mean")
