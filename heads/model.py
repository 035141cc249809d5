"""SPPSCLHead: everything SPP-SCL trains, on top of cached (frozen) encoder outputs.

text:  HierarchicalAttention -> ModalityProjection -> t [B, d]
image: ImageReduction        -> ModalityProjection -> v [B, d]
both:  fusion(v, t) -> SentimentClassifier -> logits

In the unimodal ablations (`modality="text"` / `"image"`) the unused branch and the fusion are not
built and the classifier reads t or v directly.

BatchNorm in train mode cannot normalise a batch of one sample; training batches must hold at
least two samples (the trainer drops a final batch of one). Evaluation mode has no such limit.
"""

from __future__ import annotations

import torch
from torch import nn

from spp_scl.heads.classifier import SentimentClassifier
from spp_scl.heads.config import SPPSCLConfig
from spp_scl.heads.fusion import build_fusion
from spp_scl.heads.hierarchical_attention import HierarchicalAttention
from spp_scl.heads.image_reduction import ImageReduction
from spp_scl.heads.projection import ModalityProjection


class SPPSCLHead(nn.Module):
    """The trained part of SPP-SCL for feature maps with `image_channels` channels and text states of
    width `text_dim` from `num_layers_cached` encoder layers (of which `config.text_layers_last` are used)."""

    def __init__(
        self,
        config: SPPSCLConfig,
        image_channels: int,
        text_dim: int,
        num_layers_cached: int,
        num_classes: int,
    ) -> None:
        super().__init__()
        self.config = config
        self.uses_text = config.modality in ("both", "text")
        self.uses_image = config.modality in ("both", "image")

        layers_used = config.text_layers_last or num_layers_cached
        if layers_used > num_layers_cached:
            raise ValueError(
                f"text_layers_last={config.text_layers_last} but only {num_layers_cached} layers are cached"
            )
        self.num_layers_cached = num_layers_cached
        self.text_layers_used = layers_used

        self.text_encoder: HierarchicalAttention | None = None
        self.text_projection: ModalityProjection | None = None
        if self.uses_text:
            self.text_encoder = HierarchicalAttention(
                layers_used, text_dim, config.lstm_hidden, config.ha_gate, config.text_pooling
            )
            self.text_projection = ModalityProjection(self.text_encoder.out_dim, config.embed_dim, config.dropout)

        self.image_encoder: ImageReduction | None = None
        self.image_projection: ModalityProjection | None = None
        if self.uses_image:
            self.image_encoder = ImageReduction(image_channels, config.image_reduced_channels, config.dropout)
            self.image_projection = ModalityProjection(self.image_encoder.out_dim, config.embed_dim, config.dropout)

        self.fusion: nn.Module | None = build_fusion(config) if config.modality == "both" else None
        classifier_in = self.fusion.out_dim if self.fusion is not None else config.embed_dim
        self.classifier = SentimentClassifier(classifier_in, num_classes, config.fusion_hidden, config.dropout)

    def forward(
        self,
        image_maps: torch.Tensor | None = None,
        first_token: torch.Tensor | None = None,
        token_states: torch.Tensor | None = None,
        token_mask: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor | None]:
        """Inputs that the configured modality does not use may be None.

        Returns t and v (aligned embeddings [B, d], None for a modality that is off), fused (the
        classifier input), logits [B, num_classes] and text_layer_weights ([B, k] HA weights or None).
        """
        t = layer_weights = None
        if self.uses_text:
            if first_token is None or token_states is None or token_mask is None:
                raise ValueError(f"modality {self.config.modality!r} needs first_token, token_states and token_mask")
            if first_token.shape[1] != self.num_layers_cached or token_states.shape[1] != self.num_layers_cached:
                raise ValueError(
                    f"built for {self.num_layers_cached} cached layers, got first_token {tuple(first_token.shape)} "
                    f"and token_states {tuple(token_states.shape)}"
                )
            # The cache holds the last K layers in order; the ablation keeps the last k of them.
            first_token = first_token[:, -self.text_layers_used :]
            token_states = token_states[:, -self.text_layers_used :]
            text_vector, layer_weights = self.text_encoder(first_token, token_states, token_mask)
            t = self.text_projection(text_vector)

        v = None
        if self.uses_image:
            if image_maps is None:
                raise ValueError(f"modality {self.config.modality!r} needs image_maps")
            v = self.image_projection(self.image_encoder(image_maps))

        if self.fusion is not None:
            fused = self.fusion(v, t)
        else:
            fused = t if t is not None else v
        return {"t": t, "v": v, "fused": fused, "logits": self.classifier(fused), "text_layer_weights": layer_weights}
