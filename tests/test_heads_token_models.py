"""The CLMLF- and MDSE-style heads: shapes, the head selector and presets, padding invariance and
independence from batch-mates in eval mode, and which text layer they read."""

import json

import pytest
import torch

from spp_scl.heads.clmlf import CLMLFHead, clmlf_step
from spp_scl.heads.config import SPPSCLConfig
from spp_scl.heads.head_kinds import build_head_model, report_keys_for, training_step_for
from spp_scl.heads.mdse import MDSEHead, mdse_step
from spp_scl.heads.model import SPPSCLHead
from spp_scl.heads.presets import PRESETS, resolve_config
from spp_scl.heads.training_step import spp_scl_step
from tests.test_heads_model import CHANNELS, CLASSES, LAYERS, TEXT_DIM, random_inputs, take, trained_statistics

TOKEN_HEADS = ("clmlf", "mdse")
SMALL = {"model_dim": 16, "attention_heads": 2, "feedforward_dim": 24}


def build(head, seed=0, **overrides):
    torch.manual_seed(seed)
    return build_head_model(resolve_config(head=head, **{**SMALL, **overrides}), CHANNELS, TEXT_DIM, LAYERS, CLASSES)


def test_selector_builds_and_steps_each_head():
    assert isinstance(build_head_model(resolve_config(), CHANNELS, TEXT_DIM, LAYERS, CLASSES), SPPSCLHead)
    assert isinstance(build("clmlf"), CLMLFHead) and isinstance(build("mdse"), MDSEHead)
    assert training_step_for(resolve_config()) is spp_scl_step
    assert training_step_for(resolve_config(head="clmlf")) is clmlf_step
    assert training_step_for(resolve_config(head="mdse")) is mdse_step
    assert "lbcl" in report_keys_for(resolve_config(head="clmlf"))
    assert "macl" in report_keys_for(resolve_config(head="mdse"))


@pytest.mark.parametrize("dataset, depths", [("mvsa-single", (3, 2)), ("mvsa-multiple", (4, 2)), ("hfm", (5, 1))])
def test_clmlf_depths_follow_the_dataset_however_the_head_is_chosen(dataset, depths):
    by_preset = resolve_config(f"{dataset}+clmlf")
    by_override = resolve_config(dataset, head="clmlf")
    by_replace = resolve_config(dataset).replace(head="clmlf")  # what a sweep axis head=clmlf does
    for config in (by_preset, by_override, by_replace):
        assert (config.clmlf_fusion_layers, config.clmlf_image_layers) == depths
        assert config.lr == PRESETS[dataset]["lr"] and config.batch_size == PRESETS[dataset]["batch_size"]
    assert resolve_config(dataset, head="clmlf", clmlf_fusion_layers=2).clmlf_fusion_layers == 2
    restored = SPPSCLConfig.from_dict(json.loads(json.dumps(by_preset.to_dict())))
    assert restored == by_preset


def test_head_presets_and_defaults():
    assert resolve_config("clmlf").head == "clmlf" and resolve_config("mdse").head == "mdse"
    assert (resolve_config("clmlf").clmlf_fusion_layers, resolve_config("clmlf").clmlf_image_layers) == (3, 2)
    assert resolve_config("hfm+mdse").selection_metric == "f1_macro"
    default = SPPSCLConfig()
    assert default.head == "spp-scl" and default.clmlf_fusion_layers is None


def test_bad_head_settings_are_rejected():
    with pytest.raises(ValueError, match="head must be one of"):
        resolve_config(head="mult")
    with pytest.raises(ValueError, match="modality"):
        resolve_config(head="mdse", modality="text")
    with pytest.raises(ValueError, match="multiple of attention_heads"):
        resolve_config(head="clmlf", model_dim=30, attention_heads=4)
    with pytest.raises(ValueError, match="token_layer"):
        build("mdse", token_layer=LAYERS)


@pytest.mark.parametrize("head", TOKEN_HEADS)
def test_output_shapes(head):
    out = build(head)(**random_inputs(5))
    assert out["logits"].shape == (5, CLASSES)
    assert out["fused"].shape == (5, SMALL["model_dim"])
    if head == "clmlf":
        assert out["contrastive"].shape == (5, SMALL["model_dim"])
        assert out["t"] is None and out["v"] is None
    else:
        assert out["t"].shape == out["v"].shape == (5, SMALL["model_dim"])
    assert all(torch.isfinite(value).all() for value in out.values() if value is not None)


@pytest.mark.parametrize("head", TOKEN_HEADS)
def test_extra_padding_changes_nothing_in_eval_mode(head):
    model = trained_statistics(build(head))
    tight = random_inputs(7, total_length=6)
    loose = dict(tight)
    loose["token_states"] = torch.nn.functional.pad(tight["token_states"], (0, 0, 0, 5), value=0.0)
    loose["token_mask"] = torch.nn.functional.pad(tight["token_mask"], (0, 5))
    # Garbage in the padded positions must not matter either (the cache pads with zeros, others may not).
    loose["token_states"][:, :, 6:] = 100.0
    with torch.no_grad():
        a, b = model(**tight), model(**loose)
    for key in ("t", "v", "fused", "logits", "contrastive"):
        if a.get(key) is not None:
            torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=0)


def concatenate(a, b):
    """Two input batches as one, the shorter texts padded to the longer batch's length."""
    length = max(a["token_mask"].shape[1], b["token_mask"].shape[1])

    def padded(inputs):
        extra = length - inputs["token_mask"].shape[1]
        return {
            **inputs,
            "token_states": torch.nn.functional.pad(inputs["token_states"], (0, 0, 0, extra)),
            "token_mask": torch.nn.functional.pad(inputs["token_mask"], (0, extra)),
        }

    a, b = padded(a), padded(b)
    return {name: torch.cat([a[name], b[name]]) for name in a}


@pytest.mark.parametrize("head", TOKEN_HEADS)
def test_batch_independent_in_eval_mode(head):
    model = trained_statistics(build(head))
    batch = random_inputs(10, seed=1)
    other = random_inputs(10, seed=2, total_length=7)
    with torch.no_grad():
        in_batch = model(**batch)["logits"]
        for i in range(10):
            alone = model(**take(batch, slice(i, i + 1)))["logits"]
            torch.testing.assert_close(alone[0], in_batch[i], atol=1e-5, rtol=0)
        # Sample 3 among the samples of another batch.
        mixed = concatenate(take(batch, slice(3, 4)), take(other, slice(0, 4)))
        torch.testing.assert_close(model(**mixed)["logits"][0], in_batch[3], atol=1e-5, rtol=0)


@pytest.mark.parametrize("head", TOKEN_HEADS)
def test_reads_only_the_chosen_text_layer(head):
    for token_layer in (-1, 1):
        model = build(head, token_layer=token_layer).eval()
        inputs = random_inputs(4)
        with torch.no_grad():
            reference = model(**inputs)["logits"]
            changed = dict(inputs)
            changed["token_states"] = inputs["token_states"].clone()
            others = [layer for layer in range(LAYERS) if layer != token_layer % LAYERS]
            changed["token_states"][:, others] += 3.0
            changed["first_token"] = inputs["first_token"] + 7.0  # the token heads do not read it
            torch.testing.assert_close(model(**changed)["logits"], reference, atol=0, rtol=0)
            changed["token_states"][:, token_layer] += 3.0
            assert (model(**changed)["logits"] - reference).abs().max() > 1e-4


@pytest.mark.parametrize("head", TOKEN_HEADS)
def test_one_step_updates_every_parameter_and_reports_its_losses(head):
    model = build(head).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    inputs = random_inputs(8, seed=3)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    report = training_step_for(model.config)(model, {**inputs, "labels": labels}, optimizer, model.config)
    assert set(report_keys_for(model.config)) <= set(report)
    contrastive = "lbcl" if head == "clmlf" else "macl"
    assert report["loss_step_one"] == pytest.approx(report["ce"] + report[contrastive], rel=1e-5)
    assert report["step_two_ran"] == 0.0
    unchanged = [name for name, p in model.named_parameters() if torch.equal(p, before[name])]
    assert unchanged == []
