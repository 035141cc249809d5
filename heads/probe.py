"""The linear probe: logistic regression on pooled cached features, the bar every trained head must clear.

Features per record: the mean over its real tokens of each used text layer's token states (K layers of width D,
concatenated) and the global average of its image map (C channels); `config.modality` keeps both or one of them.
They are standardised with the training split's mean and standard deviation, then a linear layer gives the
logits. The head is fitted by `spp_scl.runs.train.probe.fit_probe` (L2-regularised logistic regression, its inverse strength C
chosen on dev), not by gradient steps; as an nn.Module it is saved, loaded and served like every other head.
"""

from __future__ import annotations

import torch
from torch import nn

from spp_scl.heads.config import SPPSCLConfig


class LinearProbeHead(nn.Module):
    def __init__(
        self, config: SPPSCLConfig, image_channels: int, text_dim: int, num_layers_cached: int, num_classes: int
    ):
        super().__init__()
        layers_used = config.text_layers_last or num_layers_cached
        if layers_used > num_layers_cached:
            raise ValueError(
                f"text_layers_last={config.text_layers_last} but only {num_layers_cached} layers are cached"
            )
        self.modality = config.modality
        self.uses_text = config.modality in ("both", "text")
        self.uses_image = config.modality in ("both", "image")
        self.layers_used = layers_used
        width = (layers_used * text_dim if config.modality in ("both", "text") else 0) + (
            image_channels if config.modality in ("both", "image") else 0
        )
        # Standardisation of the pooled features, fitted on the training split (buffers: saved with the weights).
        self.register_buffer("feature_mean", torch.zeros(width))
        self.register_buffer("feature_scale", torch.ones(width))
        self.classifier = nn.Linear(width, num_classes)

    def pooled(
        self, image_maps: torch.Tensor | None, token_states: torch.Tensor | None, token_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """[B, width]: per-layer means over real tokens (padding excluded), then the image map's spatial mean.
        Inputs of the modality the probe does not use may be None."""
        parts = []
        if self.uses_text:
            states = token_states[:, -self.layers_used :].float()  # [B, K, L, D]
            mask = token_mask[:, None, :, None].to(states.dtype)
            means = (states * mask).sum(2) / mask.sum(2).clamp_min(1.0)  # [B, K, D]
            parts.append(means.flatten(1))
        if self.uses_image:
            parts.append(image_maps.float().mean(dim=(2, 3)))
        return torch.cat(parts, dim=1)

    def forward(
        self,
        image_maps: torch.Tensor | None = None,
        first_token: torch.Tensor | None = None,
        token_states: torch.Tensor | None = None,
        token_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        features = (self.pooled(image_maps, token_states, token_mask) - self.feature_mean) / self.feature_scale
        return {"fused": features, "logits": self.classifier(features)}
