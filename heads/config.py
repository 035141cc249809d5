"""Hyper-parameters of the heads and the ablation switches (the presets: heads/presets.py).

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
import math
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

Fusion = Literal["cmf-bank", "cmf-batch", "concat"]
Modality = Literal["both", "text", "image"]
HeadKind = Literal["spp-scl", "clmlf", "mdse", "probe"]
SelectionMetric = Literal["f1_weighted", "f1_macro", "accuracy"]
Selection = Literal["dev", "folds", "authors"]
Precision = Literal["float32", "bfloat16", "float16"]
TrainViews = Literal["clean", "epoch", "forward"]
ViewParts = Literal["both", "text", "image"]
TextPooling = Literal["lstm", "lstm+mean"]
# Widths of the head's layers: past this, one weight matrix takes gigabytes (the encoders' own are 768-2048).
LAYER_WIDTHS = ("embed_dim", "lstm_hidden", "image_reduced_channels", "fusion_hidden", "model_dim", "feedforward_dim")
MAX_LAYER_WIDTH = 16384
FUSION_KINDS: tuple[str, ...] = get_args(Fusion)
MODALITIES: tuple[str, ...] = get_args(Modality)
HEAD_KINDS: tuple[str, ...] = get_args(HeadKind)
SELECTION_METRICS: tuple[str, ...] = get_args(SelectionMetric)
PRECISIONS: tuple[str, ...] = get_args(Precision)
TRAIN_VIEWS: tuple[str, ...] = get_args(TrainViews)
VIEW_PARTS: tuple[str, ...] = get_args(ViewParts)
TEXT_POOLINGS: tuple[str, ...] = get_args(TextPooling)

# CLMLF's (fusion Transformer layers, image Transformer layers) per dataset, as its paper chose them.
# MVSA-Single's serve when the preset names no dataset, as for every other default here.
CLMLF_LAYERS: dict[str, tuple[int, int]] = {
    "mvsa-single": (3, 2),
    "mvsa-multiple": (4, 2),
    "hfm": (5, 1),
    "mmsd2": (5, 1),  # HFM's depths: the same posts
}


# Config fields added after trial keys and sweep studies were first written (SPPSCLConfig.identity leaves them out
# at their default). Every new field goes here; tests/test_heads_config.py fails on one that is not.
FIELDS_ADDED_AFTER_KEYS: tuple[str, ...] = ("text_pooling", "selection", "folds", "fold")


def option(default: Any, help: str) -> Any:
    """A config field with its command-line help: the `spp-scl` options are generated from these fields."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class SPPSCLConfig:
    # --- architecture -------------------------------------------------------------------------
    embed_dim: int = option(32, "d: size of the aligned embeddings t and v, where the contrastive losses act")
    lstm_hidden: int = option(64, "BiLSTM width per direction (the text vector is twice as wide)")
    image_reduced_channels: int = option(128, "1x1 convolution output channels; matches the text vector width")
    fusion_hidden: int = option(64, "hidden width of the classifier after fusion")
    dropout: float = option(0.2, "dropout probability of every head layer that has one")
    input_dropout: float = option(
        0.0, "dropout on the cached input features while training, drawn anew at every forward (heads/input_noise.py)"
    )
    input_noise: float = option(
        0.0, "Gaussian noise on the cached inputs while training, as a multiple of each input's standard deviation"
    )
    ha_gate: Literal["mean", "projection"] = option(
        "mean",
        "what HA's layer gate sees of each layer's first-token vector: its mean over D (the paper's) or a learned "
        "projection after LayerNorm",
    )
    text_pooling: TextPooling = option(
        "lstm",
        "HA's text vector: the mean of the BiLSTM outputs over the real tokens (the paper's), or that beside the "
        "mean of the layer-mixed token states themselves (a skip around the LSTM; beyond the paper)",
    )
    bank_size: int = option(32, "learned key/value slots per modality (fusion cmf-bank only)")
    train_views: TrainViews = option(
        "clean",
        "what the heads see in training: the cached clean features; 'epoch' = one stored view per record, drawn "
        "anew each epoch (both forwards of the two-step rule see it); 'forward' = a new stored view at every "
        "forward (step one and step two each their own, as the authors' encoders in train mode gave). Needs a cache "
        "made with `spp-scl extract --views V`; dev, test, predict and the linear probe always see clean features",
    )
    view_parts: ViewParts = option(
        "both",
        "the parts of a drawn view that replace the clean inputs (the others stay clean): both, text or image "
        "(image = CLMLF's and MDSE's augmented image beside the original text)",
    )
    dbcl_weight: float = option(
        1.0,
        "weight of CLMLF's data-based contrastive loss between each post and a second stored view of it (head "
        "clmlf, when train_views is not clean: L = L_ce + L_lbcl + this * L_dbcl; 0 = off)",
    )

    # --- losses and the two-step rule ---------------------------------------------------------
    temperature: float = option(0.07, "tau, the temperature of the supervised contrastive losses")
    theta: float = option(2.0 / 3.0, "the modalities count as aligned (step two skipped) when c >= theta * P")
    ce_weight: float = option(5.0, "lambda, the weight of the cross-entropy loss")

    # --- optimisation -------------------------------------------------------------------------
    lr: float = option(1e-4, "AdamW learning rate")
    betas: tuple[float, float] = option((0.9, 0.999), "AdamW betas, two numbers: 0.9,0.999")
    eps: float = option(1e-8, "AdamW epsilon")
    weight_decay: float = option(1e-6, "AdamW weight decay")
    lr_step_size: int = option(10, "StepLR step, in epochs")
    lr_gamma: float = option(0.5, "StepLR factor")
    batch_size: int = option(64, "training batch size (also the size of the fixed evaluation batches)")
    epochs: int = option(150, "training epochs (the most, with patience)")
    seed: int = option(42, "seed of the weights, the data order and the dropout masks")
    precision: Precision = option(
        "float32",
        "bfloat16 = autocast of the matrix products to bfloat16 in training and evaluation, where it is fast: a GPU, "
        "or a CPU with AVX512-BF16 or AMX (elsewhere refused: bfloat16 GEMMs run tens of times slower than "
        "float32); float16 = the same with float16 and a loss scale, on a GPU only (for GPUs without bfloat16); "
        "weights, optimiser and the LSTM recurrence stay float32",
    )
    weight_average: float = option(
        0.0,
        "decay d of an exponential moving average of the weights and BatchNorm statistics, updated after every "
        "iteration; dev selection, checkpoints and predictions use the average (runs/train/weight_average.py); 0 = off",
    )
    patience: int | None = option(None, "stop after this many epochs without a better dev metric; none = never")
    selection: Selection = option(
        "dev",
        "how the checkpoint is chosen: dev = the best epoch on the dev split (test is only evaluated); folds = "
        "k-fold over train+dev, the best epoch on the held-out part (`folds`, `fold`; test is never opened); "
        "authors = the authors' protocol, a checkpoint every 5 epochs and the best on TEST (optimistic)",
    )
    folds: int = option(5, "k of selection folds: stratified parts of train+dev, drawn once per cache")
    fold: int = option(0, "selection folds: the held-out part, 0 to folds - 1 (the others train)")
    selection_metric: SelectionMetric = option(
        "f1_weighted",
        "the dev metric that selects the checkpoint (the papers': weighted F1 for MVSA, macro F1 for HFM)",
    )

    # --- ablation switches --------------------------------------------------------------------
    two_step: bool = option(True, "the two-step rule; false = the paper's one-step ablation (all losses summed)")
    intra_loss: bool = option(True, "the intra-modal losses L_cli and L_clt")
    inter_loss: bool = option(True, "the inter-modal loss L_clm (and with it, step two)")
    second_step_moves_all: bool = option(
        False,
        "every parameter takes step two's AdamW step, zero gradients included (the authors' torch 1.8 semantics); "
        "false = only the parameters L_clm reaches",
    )
    fusion: Fusion = option("cmf-bank", "cmf-bank (batch-independent), cmf-batch (the paper's), or concat")
    modality: Modality = option("both", "both modalities, or one branch alone (the unimodal rows of table 7)")
    text_layers_last: int | None = option(None, "use only the last k cached text layers; none = all")

    # --- head selector and the token-level heads (clmlf, mdse) ----------------------------------
    head: HeadKind = option(
        "spp-scl", "the trained head: SPP-SCL, the CLMLF- or MDSE-style compared heads, or the linear probe baseline"
    )
    model_dim: int = option(128, "width of the token-level heads (text and image tokens are projected to it)")
    attention_heads: int = option(4, "attention heads of the token-level heads")
    feedforward_dim: int = option(256, "hidden width of the token-level heads' feed-forward blocks")
    token_layer: int = option(
        -1, "the text layer a token-level head reads, an index into the layers it is given; -1 = the last"
    )
    clmlf_fusion_layers: int | None = option(None, "CLMLF fusion Transformer depth; none = CLMLF's for the dataset")
    clmlf_image_layers: int | None = option(None, "CLMLF image Transformer depth; none = CLMLF's for the dataset")
    contrastive_weight: float = option(
        1.0, "weight of the token-level head's contrastive term (LBCL for clmlf, MACL for mdse); CE has weight 1"
    )

    # --- the linear probe (head "probe"): logistic regression on pooled features, C chosen on dev ---------------
    probe_cs: tuple[float, ...] = option(
        (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0),
        "the probe's inverse L2 strengths C to fit, comma-separated; the best on dev is kept",
    )

    # Name of the preset this config was resolved from, kept so a run folder says where it came from.
    preset: str | None = option(None, "the preset this config was resolved from (set by --preset)")

    def __post_init__(self) -> None:
        # JSON has no tuples; accept a list so from_dict(to_dict()) is an exact round trip.
        object.__setattr__(self, "betas", tuple(self.betas))
        object.__setattr__(self, "probe_cs", tuple(float(c) for c in self.probe_cs))
        if self.fusion not in FUSION_KINDS:
            raise ValueError(f"fusion must be one of {FUSION_KINDS}, got {self.fusion!r}")
        if self.modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {self.modality!r}")
        if self.head not in HEAD_KINDS:
            raise ValueError(f"head must be one of {HEAD_KINDS}, got {self.head!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.train_views not in TRAIN_VIEWS or self.view_parts not in VIEW_PARTS:
            raise ValueError(
                f"train_views must be one of {TRAIN_VIEWS} and view_parts one of {VIEW_PARTS}, "
                f"got {self.train_views!r} and {self.view_parts!r}"
            )
        if self.dbcl_weight < 0:
            raise ValueError(f"dbcl_weight must be >= 0, got {self.dbcl_weight}")
        if self.head in ("clmlf", "mdse"):
            self._check_token_head()
        if not self.probe_cs or any(c <= 0 for c in self.probe_cs):
            raise ValueError(f"probe_cs must hold positive numbers, got {self.probe_cs!r}")
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
        self._check_bounds()
        if not 0 <= self.fold < self.folds or self.folds < 2:
            raise ValueError(f"fold must be in 0..folds - 1 and folds >= 2, got fold {self.fold} of {self.folds}")
        if self.selection not in ("dev", "folds", "authors"):
            raise ValueError(f"selection must be dev, folds or authors, got {self.selection!r}")
        if self.selection_metric not in ("accuracy", "f1_weighted", "f1_macro"):
            raise ValueError(
                f"selection_metric must be accuracy, f1_weighted or f1_macro, got {self.selection_metric!r}"
            )
        if not 0.0 <= self.weight_average < 1.0:
            raise ValueError(f"weight_average must be in [0, 1), got {self.weight_average}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 <= self.input_dropout < 1.0 or self.input_noise < 0:
            raise ValueError(
                f"input_dropout must be in [0, 1) and input_noise >= 0, got {self.input_dropout} and {self.input_noise}"
            )

    def _check_bounds(self) -> None:
        """Values the optimiser or the allocator would stop on later, with a traceback or after gigabytes."""
        for name in ("lr", "weight_decay"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {getattr(self, name)}")
        if not all(0.0 <= beta < 1.0 for beta in self.betas):
            raise ValueError(f"betas must be in [0, 1), got {self.betas!r}")
        if not math.isfinite(self.temperature):
            raise ValueError(f"temperature must be a finite number > 0, got {self.temperature}")
        for name in LAYER_WIDTHS:
            if getattr(self, name) > MAX_LAYER_WIDTH:
                raise ValueError(
                    f"{name} must be at most {MAX_LAYER_WIDTH} (a layer that wide takes gigabytes), got "
                    f"{getattr(self, name)}"
                )

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
            from spp_scl.heads.presets import preset_dataset  # the presets build configs: imported here

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

    @property
    def uses_dbcl(self) -> bool:
        """CLMLF's data-based contrastive loss is on: a CLMLF-style head trained on stored views."""
        return self.head == "clmlf" and self.train_views != "clean" and self.dbcl_weight > 0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (betas becomes a list)."""
        values = dataclasses.asdict(self)
        values["betas"] = list(self.betas)
        values["probe_cs"] = list(self.probe_cs)
        return values

    def identity(self) -> dict[str, Any]:
        """What identifies a training (trial keys, sweep studies): to_dict() without the fields added since keys
        existed while they hold their default, so that a sweep made by an earlier version resumes after an upgrade
        rather than training every trial again."""
        return {
            name: value
            for name, value in self.to_dict().items()
            if not (name in FIELDS_ADDED_AFTER_KEYS and value == self.__dataclass_fields__[name].default)
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SPPSCLConfig:
        """Inverse of to_dict; an unknown key is an error, so a stale or mistyped file is caught."""
        _reject_unknown_fields(values)
        return cls(**values)

    def replace(self, **changes: Any) -> SPPSCLConfig:
        _reject_unknown_fields(changes)
        return dataclasses.replace(self, **changes)


def _reject_unknown_fields(values: dict[str, Any]) -> None:
    known = {f.name for f in dataclasses.fields(SPPSCLConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(
            f"unknown SPPSCLConfig field(s): {', '.join(repr(name) for name in unknown)}; "
            f"known fields: {', '.join(sorted(known))}"
        )
