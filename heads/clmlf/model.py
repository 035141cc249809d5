"""CLMLFHead: CLMLF's multi-layer fusion on cached features.

image map -> one token per position, projected to model_dim -> Transformer encoder (clmlf_image_layers)
text states of one layer (the last by default) -> projected to model_dim
[text tokens; image tokens] -> Transformer encoder (clmlf_fusion_layers) -> attention pooling -> fused
fused -> classifier -> logits;  fused -> projection (Linear, GELU, Linear) -> the vector LBCL acts on

Depths per dataset are CLMLF's (fusion/image layers 3/2 MVSA-Single, 4/2 MVSA-Multiple, 5/1 HFM; see
heads/config.py). Differences from the paper, all forced or chosen for a frozen-feature comparison:
- The encoders are frozen and cached (CLMLF fine-tunes BERT); the head is narrower (model_dim, 128 by
  default, where CLMLF works at BERT's 768) so that an epoch on MVSA-Single takes seconds on a CPU.
- Data-based contrastive learning (DBCL) contrasts each post with an augmented view of itself (back-translated
  text, augmented image). A clean cache has no such views, so then the loss is CE + LBCL only; on a cache with
  stored views (`spp-scl extract --views V`) and `train_views` other than clean, the full loss CE + LBCL + DBCL
  (config.uses_dbcl): the second view's fused vector gets its own projection (`augment_projection`, as CLMLF
  keeps one per branch) and the output "augment_contrastive".
- The classifier is SPP-SCL's (heads/classifier.py), shared by all heads so that their differences lie
  in what comes before it. The image tokens are the map positions only (no extra pooled-image token).

Padding never reaches the result: padded text positions are masked as attention keys and in the
pooling. Nothing crosses samples except the classifier's BatchNorm in train mode, so in eval mode a
sample's output does not depend on its batch.
"""

from __future__ import annotations

import torch
from torch import nn

from spp_scl.heads.classifier import SentimentClassifier
from spp_scl.heads.config import SPPSCLConfig
from spp_scl.heads.tokens import AttentionPooling, ImageTokens, SelfAttentionEncoder, TextTokens, token_inputs


class CLMLFHead(nn.Module):
    """Same constructor and inputs as SPPSCLHead; returns fused [B, model_dim], logits [B, C], contrastive
    [B, model_dim] (the LBCL embedding), pooling_weights [B, L + h*w], and t = v = text_layer_weights = None; with
    DBCL, in training, augment_contrastive [B, model_dim] (the DBCL embedding of a second view)."""

    def __init__(
        self, config: SPPSCLConfig, image_channels: int, text_dim: int, num_layers_cached: int, num_classes: int
    ) -> None:
        super().__init__()
        if config.head != "clmlf":
            raise ValueError(f"CLMLFHead needs head='clmlf', got {config.head!r}")
        self.config = config
        dim = config.model_dim
        self.text_tokens = TextTokens(text_dim, dim, num_layers_cached, config.token_layer, config.dropout)
        self.image_tokens = ImageTokens(image_channels, dim, config.dropout)
        self.image_encoder = SelfAttentionEncoder(
            dim, config.attention_heads, config.feedforward_dim, config.clmlf_image_layers, config.dropout
        )
        self.fusion_encoder = SelfAttentionEncoder(
            dim, config.attention_heads, config.feedforward_dim, config.clmlf_fusion_layers, config.dropout
        )
        self.pooling = AttentionPooling(dim)
        self.contrastive_projection = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.augment_projection = (
            nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim)) if config.uses_dbcl else None
        )
        self.classifier = SentimentClassifier(dim, num_classes, config.fusion_hidden, config.dropout)

    def forward(
        self,
        image_maps: torch.Tensor,
        first_token: torch.Tensor | None,
        token_states: torch.Tensor,
        token_mask: torch.Tensor,
    ) -> dict[str, torch.Tensor | None]:
        """first_token is accepted, unused, so that every head takes the same four inputs."""
        text, image, token_mask = token_inputs(
            "clmlf", self.text_tokens, self.image_tokens, image_maps, token_states, token_mask
        )
        image = self.image_encoder(image)  # every map position is real: no mask
        image_mask = torch.ones(image.shape[:2], dtype=torch.bool, device=image.device)
        mask = torch.cat([token_mask, image_mask], dim=1)
        fused_tokens = self.fusion_encoder(torch.cat([text, image], dim=1), mask)
        fused, pooling_weights = self.pooling(fused_tokens, mask)
        return {
            "t": None,
            "v": None,
            "fused": fused,
            "logits": self.classifier(fused),
            "contrastive": self.contrastive_projection(fused),
            "pooling_weights": pooling_weights,
            "text_layer_weights": None,
            "augment_contrastive": self.augment_projection(fused)
            if self.augment_projection is not None and self.training
            else None,
        }
