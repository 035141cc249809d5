"""resolve_config: paper presets, the faithful variant, overrides, errors, and the JSON round trip."""

import dataclasses
import hashlib
import json

import pytest

from spp_scl.heads.config import FIELDS_ADDED_AFTER_KEYS, SPPSCLConfig
from spp_scl.heads.presets import PRESETS, resolve_config


def test_defaults_are_the_papers():
    config = SPPSCLConfig()
    assert (config.embed_dim, config.lstm_hidden, config.image_reduced_channels) == (32, 64, 128)
    assert (config.dropout, config.temperature, config.theta, config.ce_weight) == (0.2, 0.07, 2 / 3, 5.0)
    assert (config.lr, config.betas, config.eps, config.weight_decay) == (1e-4, (0.9, 0.999), 1e-8, 1e-6)
    assert (config.lr_step_size, config.lr_gamma, config.batch_size, config.epochs, config.seed) == (
        10,
        0.5,
        64,
        150,
        42,
    )
    assert config.patience is None and config.two_step and config.intra_loss and config.inter_loss
    assert (config.fusion, config.modality, config.text_layers_last) == ("cmf-bank", "both", None)


@pytest.mark.parametrize(
    "preset, ce_weight, lr, step, batch",
    [("mvsa-single", 5, 1e-4, 10, 64), ("mvsa-multiple", 5, 1e-4, 15, 128), ("hfm", 10, 5e-5, 5, 256)],
)
def test_presets_follow_the_paper_table(preset, ce_weight, lr, step, batch):
    config = resolve_config(preset)
    assert (config.ce_weight, config.lr, config.lr_step_size, config.batch_size) == (ce_weight, lr, step, batch)
    assert (config.lr_gamma, config.weight_decay, config.epochs, config.dropout) == (0.5, 1e-6, 150, 0.2)
    assert config.preset == preset and config.fusion == "cmf-bank"
    assert resolve_config(preset, faithful=True).fusion == "cmf-batch"


def test_the_tuned_preset_is_the_paper_preset_with_the_measured_changes():
    paper, tuned = resolve_config("mvsa-single").to_dict(), resolve_config("mvsa-single+tuned").to_dict()
    changed = {name: tuned[name] for name in tuned if tuned[name] != paper[name]}
    assert changed == {
        "lr": 1e-3,
        "ha_gate": "projection",
        "epochs": 40,
        "patience": 8,
        "weight_average": 0.99,
        "preset": "mvsa-single+tuned",
    }


def test_overrides_win_over_preset_and_faithful():
    config = resolve_config("hfm", faithful=True, lr=1e-3, fusion="concat", two_step=False)
    assert (config.lr, config.fusion, config.two_step, config.ce_weight) == (1e-3, "concat", False, 10.0)


def test_unknown_override_names_the_field():
    with pytest.raises(ValueError, match="learning_rate"):
        resolve_config("mvsa-single", learning_rate=1e-3)


def test_unknown_preset_and_bad_values_are_rejected():
    with pytest.raises(ValueError, match="twitter"):
        resolve_config("twitter")
    with pytest.raises(ValueError, match="fusion"):
        resolve_config(fusion="attention")
    with pytest.raises(ValueError, match="modality"):
        resolve_config(modality="audio")
    with pytest.raises(ValueError, match="text_layers_last"):
        resolve_config(text_layers_last=0)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_json_round_trip(preset):
    config = resolve_config(preset, faithful=True, text_layers_last=2, patience=7)
    restored = SPPSCLConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert restored == config
    assert isinstance(restored.betas, tuple)


def test_from_dict_rejects_unknown_keys():
    values = SPPSCLConfig().to_dict()
    values["lamda"] = 5
    with pytest.raises(ValueError, match="lamda"):
        SPPSCLConfig.from_dict(values)


# The fields a trial key was made from when this rule began (2026-12-05): a key made then must stay the same.
FIELDS_OF_THE_FIRST_KEYS = {
    "attention_heads", "bank_size", "batch_size", "betas", "ce_weight", "clmlf_fusion_layers", "clmlf_image_layers",
    "contrastive_weight", "dbcl_weight", "dropout", "embed_dim", "epochs", "eps", "feedforward_dim", "fusion",
    "fusion_hidden", "ha_gate", "head", "image_reduced_channels", "input_dropout", "input_noise", "inter_loss",
    "intra_loss", "lr", "lr_gamma", "lr_step_size", "lstm_hidden", "modality", "model_dim", "patience", "precision",
    "preset", "probe_cs", "second_step_moves_all", "seed", "selection_metric", "temperature", "text_layers_last",
    "theta", "token_layer", "train_views", "two_step", "view_parts", "weight_average", "weight_decay",
}  # fmt: skip


def test_every_field_added_since_the_first_keys_is_declared():
    # A new field left out of FIELDS_ADDED_AFTER_KEYS would change every trial key and study name: every sweep,
    # table and comparison made before would train all its trials again after an upgrade.
    fields = {f.name for f in dataclasses.fields(SPPSCLConfig)}
    assert fields - FIELDS_OF_THE_FIRST_KEYS == set(FIELDS_ADDED_AFTER_KEYS)


def test_a_config_at_the_new_fields_defaults_keeps_the_identity_of_an_earlier_version():
    from spp_scl.runs.trials.executor import Trial

    base = resolve_config("mvsa-single+tuned")
    earlier = {
        k: v for k, v in base.replace(seed=3, temperature=0.1).to_dict().items() if k in FIELDS_OF_THE_FIRST_KEYS
    }
    earlier_key = hashlib.sha256(json.dumps(earlier, sort_keys=True).encode()).hexdigest()[:16]
    assert Trial("t", {"temperature": 0.1}, 3).key(base) == earlier_key
    changed = base.replace(text_pooling="lstm+mean")
    assert changed.identity()["text_pooling"] == "lstm+mean"
    assert Trial("t", {"temperature": 0.1}, 3).key(changed) != earlier_key
