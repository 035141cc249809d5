"""Hyper-parameters of the heads, the paper's dataset presets, and the ablation switches.

Everything a run needs to be reproduced from its folder is in `SPPSCLConfig`; the trainer writes
`config.to_dict()` as JSON next to the checkpoints and `SPPSCLConfig.from_dict` reads it back.

Defaults are the paper's (table 2 and the authors' code) for MVSA-Single, except `fusion`, which
defaults to our batch-independent "cmf-bank" (see `heads/fusion/bank_cross_attention.py`); the
paper's own batch-attention fusion is `fusion="cmf-batch"`, i.e. `resolve_config(..., faithful=True)`.

`head` picks the trained model: "spp-scl" (the default), or the two methods SPP-SCL is compared
with, "clmlf" and "mdse" (token-level heads, `heads/clmlf/` and `heads/mdse/`). All heads share the
optimisation fields and the dataset presets, so one trainer, sweep and table serve them all; each
head ignores the fields of the others (the CLMLF and MDSE heads ignore fusion, two_step, theta,
ce_weight, intra_loss, inter_loss, embed_dim, lstm_hidden, image_reduced_channels and bank_size).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

FUSION_KINDS = ("cmf-bank", "cmf-batch", "concat")
MODALITIES = ("both", "text", "image")
HEAD_KINDS = ("spp-scl", "clmlf", "mdse")

# CLMLF's (fusion Transformer layers, image Transformer layers) per dataset, as its paper chose them.
# MVSA-Single's serve when the preset names no dataset, as for every other default here.
CLMLF_LAYERS: dict[str, tuple[int, int]] = {"mvsa-single": (3, 2), "mvsa-multiple": (4, 2), "hfm": (5, 1)}


@dataclass(frozen=True)
class SPPSCLConfig:
    # --- architecture -------------------------------------------------------------------------
    embed_dim: int = 32  # d: size of the aligned embeddings t and v, where the contrastive losses act
    lstm_hidden: int = 64  # per direction, so the text vector is 2 * 64 = 128 wide
    image_reduced_channels: int = 128  # 1x1 conv output; matches the text vector width
    fusion_hidden: int = 64  # hidden width of the classifier after fusion
    dropout: float = 0.2
    bank_size: int = 32  # learned key/value slots per modality, used by fusion "cmf-bank" only

    # --- losses and the two-step rule ---------------------------------------------------------
    temperature: float = 0.07  # tau of the supervised contrastive losses
    theta: float = 2.0 / 3.0  # modalities count as aligned when c >= theta * P
    ce_weight: float = 5.0  # lambda, the cross-entropy weight

    # --- optimisation -------------------------------------------------------------------------
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 1e-6
    lr_step_size: int = 10  # StepLR, in epochs
    lr_gamma: float = 0.5
    batch_size: int = 64
    epochs: int = 150
    seed: int = 42
    patience: int | None = None  # early stopping on the dev split; None = train all epochs
    # The dev metric that selects the checkpoint: weighted F1 for MVSA, macro F1 for HFM (the papers' metrics).
    selection_metric: str = "f1_weighted"

    # --- ablation switches --------------------------------------------------------------------
    two_step: bool = True  # False = the paper's "one-step" ablation: all losses summed, one backward
    intra_loss: bool = True  # L_cli and L_clt
    inter_loss: bool = True  # L_clm (and with it, step two)
    fusion: str = "cmf-bank"
    modality: str = "both"
    text_layers_last: int | None = None  # use only the last k cached text layers; None = all

    # --- head selector and the token-level heads (clmlf, mdse) ----------------------------------
    head: str = "spp-scl"
    model_dim: int = 128  # width of the token-level heads; text and image tokens are projected to it
    attention_heads: int = 4
    feedforward_dim: int = 256  # hidden width of their Transformer feed-forward blocks
    # Which of the text layers a token-level head reads (an index into the layers it is given: the
    # cached ones, or the last text_layers_last of them); -1 = the last, as in both papers.
    token_layer: int = -1
    # CLMLF's Transformer depths; None = CLMLF's choice for the preset's dataset (CLMLF_LAYERS).
    clmlf_fusion_layers: int | None = None
    clmlf_image_layers: int | None = None
    # Weight of the token-level head's contrastive term (LBCL for clmlf, MACL for mdse); their
    # cross-entropy has weight 1, as in both papers (ce_weight is SPP-SCL's lambda only).
    contrastive_weight: float = 1.0

    # Name of the preset this config was resolved from, kept so a run folder says where it came from.
    preset: str | None = field(default=None)

    def __post_init__(self) -> None:
        # JSON has no tuples; accept a list so from_dict(to_dict()) is an exact round trip.
        object.__setattr__(self, "betas", tuple(self.betas))
        if self.fusion not in FUSION_KINDS:
            raise ValueError(f"fusion must be one of {FUSION_KINDS}, got {self.fusion!r}")
        if self.modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {self.modality!r}")
        if self.head not in HEAD_KINDS:
            raise ValueError(f"head must be one of {HEAD_KINDS}, got {self.head!r}")
        if self.head != "spp-scl":
            self._check_token_head()
        if self.text_layers_last is not None and self.text_layers_last < 1:
            raise ValueError(f"text_layers_last must be None or >= 1, got {self.text_layers_last}")
        if len(self.betas) != 2:
            raise ValueError(f"betas must hold two numbers, got {self.betas!r}")
        for name in (
            "embed_dim",
            "lstm_hidden",
            "image_reduced_channels",
            "fusion_hidden",
            "bank_size",
            "batch_size",
            "epochs",
            "lr_step_size",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.selection_metric not in ("accuracy", "f1_weighted", "f1_macro"):
            raise ValueError(
                f"selection_metric must be accuracy, f1_weighted or f1_macro, got {self.selection_metric!r}"
            )
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def _check_token_head(self) -> None:
        if self.modality != "both":
            raise ValueError(
                f"head {self.head!r} fuses both modalities; modality must be 'both', got "
                f"{self.modality!r} (the unimodal rows are SPP-SCL's branches: head 'spp-scl' with "
                "modality text or image)"
            )
        for name in ("model_dim", "attention_heads", "feedforward_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.model_dim % self.attention_heads:
            raise ValueError(
                f"model_dim ({self.model_dim}) must be a multiple of attention_heads ({self.attention_heads})"
            )
        if self.contrastive_weight < 0:
            raise ValueError(f"contrastive_weight must be >= 0, got {self.contrastive_weight}")
        if self.head == "clmlf":
            # Filled here, not at build time, so that config.json shows the depths a run really used,
            # and so that base.replace(head="clmlf") (a sweep axis) picks the preset dataset's.
            fusion_layers, image_layers = CLMLF_LAYERS[preset_dataset(self.preset) or "mvsa-single"]
            if self.clmlf_fusion_layers is None:
                object.__setattr__(self, "clmlf_fusion_layers", fusion_layers)
            if self.clmlf_image_layers is None:
                object.__setattr__(self, "clmlf_image_layers", image_layers)
            if self.clmlf_fusion_layers < 1 or self.clmlf_image_layers < 0:
                raise ValueError(
                    f"clmlf_fusion_layers must be >= 1 and clmlf_image_layers >= 0, got "
                    f"{self.clmlf_fusion_layers} and {self.clmlf_image_layers}"
                )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (betas becomes a list)."""
        values = dataclasses.asdict(self)
        values["betas"] = list(self.betas)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SPPSCLConfig:
        """Inverse of to_dict; an unknown key is an error, so a stale or mistyped file is caught."""
        _reject_unknown_fields(values)
        return cls(**values)

    def replace(self, **changes: Any) -> SPPSCLConfig:
        _reject_unknown_fields(changes)
        return dataclasses.replace(self, **changes)


# Paper table 2. Fields not listed keep the dataclass defaults (shared by all three datasets).
DATASET_PRESETS: dict[str, dict[str, Any]] = {
    "mvsa-single": {"ce_weight": 5.0, "lr": 1e-4, "lr_step_size": 10, "batch_size": 64},
    "mvsa-multiple": {"ce_weight": 5.0, "lr": 1e-4, "lr_step_size": 15, "batch_size": 128},
    "hfm": {"ce_weight": 10.0, "lr": 5e-5, "lr_step_size": 5, "batch_size": 256, "selection_metric": "f1_macro"},
}
# The compared methods train under the same protocol (optimiser, schedule, batch, epochs, dev selection)
# as SPP-SCL on each dataset, so a head preset only picks the head; dataset-specific head values (CLMLF's
# depths) follow the dataset. "clmlf" alone means MVSA-Single's values; "hfm+clmlf" those of HFM.
HEAD_PRESETS: dict[str, dict[str, Any]] = {"clmlf": {"head": "clmlf"}, "mdse": {"head": "mdse"}}
PRESETS: dict[str, dict[str, Any]] = {
    **DATASET_PRESETS,
    **HEAD_PRESETS,
    **{
        f"{dataset}+{head}": {**DATASET_PRESETS[dataset], **HEAD_PRESETS[head]}
        for dataset in DATASET_PRESETS
        for head in HEAD_PRESETS
    },
}


def preset_dataset(preset: str | None) -> str | None:
    """The dataset a preset name stands for ("hfm", "hfm+clmlf" -> "hfm"; "clmlf", None -> None)."""
    if preset is None:
        return None
    dataset = preset.split("+", 1)[0]
    return dataset if dataset in DATASET_PRESETS else None


def resolve_config(preset: str | None = None, faithful: bool = False, **overrides: Any) -> SPPSCLConfig:
    """Defaults, then the preset's values, then `faithful` (fusion "cmf-batch"), then overrides.

    Explicit overrides win over everything, including the fusion that `faithful` picks.
    """
    _reject_unknown_fields(overrides)
    values: dict[str, Any] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; known presets: {sorted(PRESETS)}")
        values.update(PRESETS[preset])
        values["preset"] = preset
    if faithful:
        values["fusion"] = "cmf-batch"
    values.update(overrides)
    return SPPSCLConfig(**values)


def _reject_unknown_fields(values: dict[str, Any]) -> None:
    known = {f.name for f in dataclasses.fields(SPPSCLConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(
            f"unknown SPPSCLConfig field(s): {', '.join(repr(name) for name in unknown)}; "
            f"known fields: {', '.join(sorted(known))}"
        )
