"""Cross-Modal Fusion made batch-independent: attention over a learned memory bank.

Design. The paper's CMF lets each sample's gated query attend over the keys of its batch-mates
(see `batch_cross_attention.py`), so a prediction changes with the batch it is in. Here the
batch-mates are replaced by `bank_size` learned key/value slots per modality (nn.Parameter). Each
sample's gated query (gated by the other modality, as in the paper) attends over

    { its own gated key/value }  U  { the bank's slots },

so the attended vector is a convex mix of the sample's own value and learned prototype values.
Keeping the own slot means that when the bank draws no attention the result is the paper's at
batch size 1 (the own value). Nothing here crosses samples, so in eval mode a sample's output
depends on that sample alone, whether it is scored alone or in a batch of any size (in train
mode the only coupling left is BatchNorm's batch statistics, as in every other layer).

The bank keys live directly in the gated key space (they are not gated themselves: they stand for
"typical gated keys"). Keys and values start as random vectors of about unit norm (entries
N(0, 1/d)), the order of magnitude of the projected vectors, so that at initialisation the own slot
and the bank compete on comparable terms and no slot starts out dominant. The fused layout and
width are the paper's: [v attended, t attended, v, t] (4d).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from spp_scl.heads.fusion.gated_qkv import GatedQueryKeyValue


class AttentionBank(nn.Module):
    """Learned key/value slots for one modality, attended by gated queries together with each own slot."""

    def __init__(self, embed_dim: int, bank_size: int) -> None:
        super().__init__()
        init_std = 1.0 / math.sqrt(embed_dim)
        self.keys = nn.Parameter(torch.randn(bank_size, embed_dim) * init_std)
        self.values = nn.Parameter(torch.randn(bank_size, embed_dim) * init_std)
        self.scale = 1.0 / math.sqrt(embed_dim)

    def forward(self, query: torch.Tensor, own_key: torch.Tensor, own_value: torch.Tensor) -> torch.Tensor:
        # Row-wise dot product: each sample scores only its own key, never a batch-mate's.
        own_score = (query * own_key).sum(dim=1, keepdim=True) * self.scale  # [B, 1]
        bank_scores = query @ self.keys.transpose(0, 1) * self.scale  # [B, bank_size]
        attention = torch.softmax(torch.cat([own_score, bank_scores], dim=1), dim=1)
        return attention[:, :1] * own_value + attention[:, 1:] @ self.values


class CrossModalBankFusion(nn.Module):
    """(v [B, d], t [B, d]) -> fused [B, 4d] = [v attended, t attended, v, t]; row i depends on row i only."""

    def __init__(self, embed_dim: int, bank_size: int = 32, dropout: float = 0.2) -> None:
        super().__init__()
        self.image_qkv = GatedQueryKeyValue(embed_dim, dropout)
        self.text_qkv = GatedQueryKeyValue(embed_dim, dropout)
        self.image_bank = AttentionBank(embed_dim, bank_size)
        self.text_bank = AttentionBank(embed_dim, bank_size)
        self.out_dim = 4 * embed_dim

    def forward(self, v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        v_attended = self.image_bank(*self.image_qkv(v, t))
        t_attended = self.text_bank(*self.text_qkv(t, v))
        return torch.cat([v_attended, t_attended, v, t], dim=1)
