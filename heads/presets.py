"""The presets: the paper's table 2 per dataset, the compared heads, the settings tuned here, and the one own
data gets; `resolve_config` builds a config from defaults, a preset and overrides.

`train` without --preset takes `default_preset` of the cache's dataset: the paper's for a paper dataset,
"own-data" for any other, none for generated data.
"""

from __future__ import annotations

from typing import Any

from spp_scl.heads.config import SPPSCLConfig, _reject_unknown_fields

# Paper table 2. Fields not listed keep the dataclass defaults (shared by all three datasets).
DATASET_PRESETS: dict[str, dict[str, Any]] = {
    "mvsa-single": {"ce_weight": 5.0, "lr": 1e-4, "lr_step_size": 10, "batch_size": 64},
    "mvsa-multiple": {"ce_weight": 5.0, "lr": 1e-4, "lr_step_size": 15, "batch_size": 128},
    "hfm": {"ce_weight": 10.0, "lr": 5e-5, "lr_step_size": 5, "batch_size": 256, "selection_metric": "f1_macro"},
}
# MMSD2.0 (HFM's posts, cleaned of the cues that let text-only models saturate it) is not in the paper: it takes
# HFM's row, the same task and size.
DATASET_PRESETS["mmsd2"] = DATASET_PRESETS["hfm"]
# The compared methods train under the same protocol (optimiser, schedule, batch, epochs, dev selection)
# as SPP-SCL on each dataset, so a head preset only picks the head; dataset-specific head values (CLMLF's
# depths) follow the dataset. "clmlf" alone means MVSA-Single's values; "hfm+clmlf" those of HFM.
HEAD_PRESETS: dict[str, dict[str, Any]] = {"clmlf": {"head": "clmlf"}, "mdse": {"head": "mdse"}}
# Beyond the paper: what beat the paper's settings on MVSA-Single dev with the frozen stand-in encoders here, over
# 5 seeds (docs/results/mvsa-single-accuracy.md). At the paper's lr the heads were still learning after 15 epochs of the 150 asked
# (0.715 dev accuracy); at 1e-3 they peak by epoch 6-9 (0.750-0.755), so patience ends a run in minutes. The layer
# gate sees a learned projection of each layer's first-token vector: the paper's gate input, that vector's mean
# over D, is ~1e-3 for sentence encoders and leaves every layer weight at 0.5 (its gain here is within seed noise;
# it makes the gate work at all). Measured on MVSA-Single only; the other datasets keep the paper's table.
TUNED_PRESETS: dict[str, dict[str, Any]] = {
    "mvsa-single+tuned": {
        **DATASET_PRESETS["mvsa-single"],
        "lr": 1e-3,
        "ha_gate": "projection",
        "epochs": 40,
        "patience": 8,
        # Over 5 folds x 3 seeds of train+dev: +0.65 points of accuracy per run (0.7385 against 0.7320), ahead at 5%
        # in accuracy, weighted and macro F1 over the 15 paired runs; seed ensembles tie (docs/results/mvsa-single-folds.md).
        "weight_average": 0.99,
    },
}
# Data that is not one of the paper's: the settings that held on MVSA-Single (the tuned preset's), because the
# paper's lr 1e-4 with 150 epochs and no patience sits at chance on a small own set for many epochs. Measured there
# over 5 folds x 3 seeds of train+dev (without weight averaging): 0.732 accuracy against 0.715 for the paper's
# preset run to convergence, ahead at 5% in accuracy, both F1s and over posts (docs/results/mvsa-single-folds.md);
# `train` picks it when the cache's dataset is not a paper dataset.
OWN_DATA_PRESET = "own-data"
TUNED_PRESETS[OWN_DATA_PRESET] = TUNED_PRESETS["mvsa-single+tuned"]
PRESETS: dict[str, dict[str, Any]] = {
    **DATASET_PRESETS,
    **HEAD_PRESETS,
    **TUNED_PRESETS,
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


def cache_preset(cache) -> tuple[str | None, str | None]:
    """default_preset for the dataset the cache file at `cache` holds: what `train`, `sweep` and spp_scl.train use
    when given no preset."""
    from spp_scl.cache.layout import cache_dataset

    return default_preset(cache_dataset(cache))


def default_preset(dataset: str | None) -> tuple[str | None, str | None]:
    """The preset `train` uses when none is given, for a cache holding `dataset` (its fingerprint's name; None for
    a generated cache): the paper's for a paper dataset, OWN_DATA_PRESET for any other, none for generated data
    (the fields' defaults stay, and nothing is said); and the sentence that says so."""
    if dataset is None:
        return None, None
    if dataset in DATASET_PRESETS:
        return dataset, f"no --preset: the cache holds {dataset}, so its preset (the paper's table 2) is used"
    tuned = TUNED_PRESETS[OWN_DATA_PRESET]
    return OWN_DATA_PRESET, (
        f"no --preset: the cache holds {dataset!r}, not one of the paper's datasets, so the preset "
        f"{OWN_DATA_PRESET} is used (lr {tuned['lr']:g}, {tuned['ha_gate']} gate, up to {tuned['epochs']} epochs "
        f"with patience {tuned['patience']}, weight averaging {tuned['weight_average']:g}, batch {tuned['batch_size']}: "
        "the settings that held on MVSA-Single); "
        "--preset mvsa-single gives the paper's"
    )


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
