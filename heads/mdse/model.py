"""MDSEHead: MDSE's shared and private features on cached features.

text states of one layer (the last by default) -> text tokens;  image map -> one token per position
dual cross-modal interaction: one co-attention layer each way -> shared text tokens, shared image tokens
private features per modality: reversed-similarity weighting, self-attention + feed-forward, pooling
per modality: shared (pooled) + private -> t (text) and v (image) embeddings [B, model_dim]
fused = fusion(v, t) -> classifier -> logits;  MACL acts on v, t and fused (3B samples)

Differences from the paper, forced or chosen for a frozen-feature comparison: frozen, cached encoders;
a narrow width (model_dim, 128 by default) so that an epoch takes seconds on a CPU; SPP-SCL's classifier
(heads/classifier.py) is used by every head so that their differences lie in what comes before it. MDSE's
training augments its images (RandAugment 2 x 14 and a flip, as CLMLF's): a clean cache has fixed features, so
then there are none; on a cache with stored views and train_views other than clean the head is fed them
(`--view-parts image` for MDSE's own setting: augmented images, original texts; runs/train/view_feed.py).

Padded text positions are masked as attention keys, in the similarity softmax and in every pooling. In
eval mode nothing crosses samples (the classifier's BatchNorm uses its running statistics).
"""

from __future__ import annotations

import torch
from torch import nn

from spp_scl.heads.classifier import SentimentClassifier
from spp_scl.heads.config import SPPSCLConfig
from spp_scl.heads.mdse.pair_fusion import PairFusion
from spp_scl.heads.mdse.private_features import PrivateFeatures
from spp_scl.heads.tokens import AttentionBlock, ImageTokens, TextTokens, masked_mean, token_inputs


class MDSEHead(nn.Module):
    """Same constructor and inputs as SPPSCLHead; returns t, v, fused [B, model_dim], logits [B, C],
    text_private_weights [B, L], image_private_weights [B, h*w], text_layer_weights = None."""

    def __init__(
        self, config: SPPSCLConfig, image_channels: int, text_dim: int, num_layers_cached: int, num_classes: int
    ) -> None:
        super().__init__()
        if config.head != "mdse":
            raise ValueError(f"MDSEHead needs head='mdse', got {config.head!r}")
        self.config = config
        dim, heads, hidden, dropout = config.model_dim, config.attention_heads, config.feedforward_dim, config.dropout
        self.text_tokens = TextTokens(text_dim, dim, num_layers_cached, config.token_layer, dropout)
        self.image_tokens = ImageTokens(image_channels, dim, dropout)
        # Dual cross-modal interaction: one co-attention layer each way gives the "shared" tokens.
        self.text_over_image = AttentionBlock(dim, heads, hidden, dropout)
        self.image_over_text = AttentionBlock(dim, heads, hidden, dropout)
        self.text_private = PrivateFeatures(dim, heads, hidden, dropout)
        self.image_private = PrivateFeatures(dim, heads, hidden, dropout)
        self.text_fusion = PairFusion(dim, dropout)
        self.image_fusion = PairFusion(dim, dropout)
        self.pair_fusion = PairFusion(dim, dropout)
        self.classifier = SentimentClassifier(dim, num_classes, config.fusion_hidden, dropout)

    def forward(
        self,
        image_maps: torch.Tensor,
        first_token: torch.Tensor | None,
        token_states: torch.Tensor,
        token_mask: torch.Tensor,
    ) -> dict[str, torch.Tensor | None]:
        """first_token is accepted, unused, so that every head takes the same four inputs."""
        text, image, token_mask = token_inputs(
            "mdse", self.text_tokens, self.image_tokens, image_maps, token_states, token_mask
        )
        shared_text = self.text_over_image(text, image)  # every map position is real: no mask
        shared_image = self.image_over_text(image, text, context_padding=~token_mask)
        text_private, text_weights = self.text_private(text, shared_text, token_mask)
        image_private, image_weights = self.image_private(image, shared_image)
        t = self.text_fusion(masked_mean(shared_text, token_mask), text_private)
        v = self.image_fusion(shared_image.mean(dim=1), image_private)
        fused = self.pair_fusion(v, t)
        return {
            "t": t,
            "v": v,
            "fused": fused,
            "logits": self.classifier(fused),
            "text_private_weights": text_weights,
            "image_private_weights": image_weights,
            "text_layer_weights": None,
        }
