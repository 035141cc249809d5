"""Fusion of the aligned image and text embeddings; `build_fusion` picks one by `config.fusion`."""

from __future__ import annotations

from torch import nn

from spp_scl.heads.config import SPPSCLConfig
from spp_scl.heads.fusion.bank_cross_attention import AttentionBank, CrossModalBankFusion
from spp_scl.heads.fusion.batch_cross_attention import CrossModalBatchFusion
from spp_scl.heads.fusion.concatenation import ConcatFusion
from spp_scl.heads.fusion.gated_qkv import GatedQueryKeyValue


def build_fusion(config: SPPSCLConfig) -> nn.Module:
    """A module with forward(v, t) -> fused [B, out_dim] and an `out_dim` attribute."""
    if config.fusion == "cmf-bank":
        return CrossModalBankFusion(config.embed_dim, config.bank_size, config.dropout)
    if config.fusion == "cmf-batch":
        return CrossModalBatchFusion(config.embed_dim, config.dropout)
    if config.fusion == "concat":
        return ConcatFusion(config.embed_dim)
    raise ValueError(f"unknown fusion {config.fusion!r}")


__all__ = [
    "AttentionBank",
    "ConcatFusion",
    "CrossModalBankFusion",
    "CrossModalBatchFusion",
    "GatedQueryKeyValue",
    "build_fusion",
]
