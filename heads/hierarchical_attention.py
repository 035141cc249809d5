"""Hierarchical Attention (HA): the text branch of SPP-SCL.

The K cached encoder layers are weighted by a small gate computed from their [CLS] vectors, the
weighted token states go through a bias-free BiLSTM, and the LSTM outputs are averaged over the real
tokens into one text vector. `pooling="lstm+mean"` (beyond the paper) puts the mean of the mixed token states
themselves beside it: a skip around the LSTM, so that the text branch sees at least what a linear probe on
mean-pooled states sees (sentence encoders such as MPNet are trained for that mean).

Unlike the authors' code, padding is kept out of the computation: the layers are mixed and the LSTM
runs on the real tokens only (heads/token_lstm.py: one GEMM for the input projection, then the
recurrence over the real tokens of both directions at once) and the mean divides by the real length.
A sample's text vector therefore does not depend on how far its batch was padded.
"""

from __future__ import annotations

import torch
from torch import nn

from spp_scl.heads.config import TEXT_POOLINGS
from spp_scl.heads.token_lstm import TokenSchedule, bidirectional_lstm_mean


class HierarchicalAttention(nn.Module):
    """first_token [B, K, D], token_states [B, K, L, D], token_mask [B, L] -> [B, 2 * lstm_hidden] (pooling "lstm")
    or [B, 2 * lstm_hidden + D] (pooling "lstm+mean")."""

    def __init__(
        self, num_layers: int, text_dim: int, lstm_hidden: int = 64, gate_input: str = "mean", pooling: str = "lstm"
    ) -> None:
        super().__init__()
        if pooling not in TEXT_POOLINGS:
            raise ValueError(f"text pooling must be {' or '.join(map(repr, TEXT_POOLINGS))}, got {pooling!r}")
        self.pooling = pooling
        self.num_layers = num_layers
        # What the gate sees of each layer's first-token vector: its mean over D (the paper's), or a learned
        # projection of it after LayerNorm. The mean of a sentence encoder's [CLS] vector is ~1e-3 for every
        # layer (MPNet layers 9-12), so the paper's gate gets almost the same input for every post and layer.
        self.layer_summary = (
            nn.Sequential(nn.LayerNorm(text_dim), nn.Linear(text_dim, 1)) if gate_input == "projection" else None
        )
        # Bias-free so that the gate depends on the [CLS] summaries alone (as in the paper).
        self.layer_gate = nn.Sequential(
            nn.Linear(num_layers, num_layers, bias=False),
            nn.ReLU(),
            nn.Linear(num_layers, num_layers, bias=False),
            nn.Sigmoid(),
        )
        self.lstm = nn.LSTM(
            input_size=text_dim, hidden_size=lstm_hidden, batch_first=True, bidirectional=True, bias=False
        )
        self.out_dim = 2 * lstm_hidden + (text_dim if pooling == "lstm+mean" else 0)

    def layer_weights(self, first_token: torch.Tensor) -> torch.Tensor:
        """Per-sample, per-layer weights in (0, 1): [B, K]. Independent sigmoids, not a softmax."""
        if self.layer_summary is None:
            return self.layer_gate(first_token.mean(dim=-1))
        return self.layer_gate(self.layer_summary(first_token).squeeze(-1))

    def forward(
        self, first_token: torch.Tensor, token_states: torch.Tensor, token_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (text vector [B, 2H], layer weights [B, K])."""
        if first_token.shape[1] != self.num_layers or token_states.shape[1] != self.num_layers:
            raise ValueError(
                f"expected {self.num_layers} layers, got first_token {tuple(first_token.shape)} "
                f"and token_states {tuple(token_states.shape)}"
            )
        schedule = TokenSchedule.from_lengths(real_token_lengths(token_mask))
        dtype = self.lstm.weight_ih_l0.dtype  # the cached inputs may come in their stored float16
        weights = self.layer_weights(first_token.to(dtype))
        # Only the real tokens are gathered [N, K, D] and mixed over the layer axis: padding is never read, and
        # the cached states (which need no gradient) are read once, forward and backward. The reader stores a
        # batch as [B, L, K, D], so [B * L, K, D] is a view and the gather copies whole tokens.
        batch, layers, length, dim = token_states.shape
        by_token = token_states.transpose(1, 2).reshape(batch * length, layers, dim)
        real_tokens = by_token.index_select(0, schedule.batch_rows * length + schedule.steps).to(dtype)
        mixed = torch.bmm(weights.index_select(0, schedule.batch_rows).unsqueeze(1), real_tokens).squeeze(1)
        text_vector = bidirectional_lstm_mean(mixed, schedule, self.lstm)
        if self.pooling == "lstm+mean":
            sums = mixed.new_zeros(batch, dim).index_add_(0, schedule.batch_rows, mixed)
            token_mean = sums / schedule.lengths.unsqueeze(1).to(sums.dtype)
            text_vector = torch.cat([text_vector, token_mean.to(text_vector.dtype)], dim=1)
        return text_vector, weights


def real_token_lengths(token_mask: torch.Tensor) -> torch.Tensor:
    """Number of real tokens per row; the mask must mark a non-empty prefix of each row."""
    if token_mask.dtype != torch.bool:
        token_mask = token_mask.bool()
    lengths = token_mask.sum(dim=1)
    if bool((lengths < 1).any()):
        raise ValueError("every text needs at least one real token (token_mask row of all False)")
    positions = torch.arange(token_mask.shape[1], device=token_mask.device)
    # The recurrence reads the first `length` positions of each row; a mask with holes would be silently misread.
    if not torch.equal(positions.unsqueeze(0) < lengths.unsqueeze(1), token_mask):
        raise ValueError("token_mask must mark the real tokens as a prefix of each row (right padding)")
    return lengths
