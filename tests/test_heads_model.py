"""SPPSCLHead: shapes for every switch, padding invariance, and (in)dependence on batch-mates."""

import pytest
import torch

from spp_scl.heads.config import FUSION_KINDS
from spp_scl.heads.model import SPPSCLHead
from spp_scl.heads.presets import resolve_config

CHANNELS, TEXT_DIM, LAYERS, CLASSES = 6, 10, 4, 3


def random_inputs(batch_size, total_length=9, seed=0, max_length=6):
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, max_length + 1, (batch_size,), generator=generator)
    mask = torch.arange(total_length).unsqueeze(0) < lengths.unsqueeze(1)
    states = torch.randn(batch_size, LAYERS, total_length, TEXT_DIM, generator=generator)
    return {
        "image_maps": torch.randn(batch_size, CHANNELS, 3, 2, generator=generator),
        "first_token": torch.randn(batch_size, LAYERS, TEXT_DIM, generator=generator),
        "token_states": states * mask[:, None, :, None],
        "token_mask": mask,
    }


def build(seed=0, **overrides):
    torch.manual_seed(seed)
    return SPPSCLHead(resolve_config(**overrides), CHANNELS, TEXT_DIM, LAYERS, CLASSES)


def trained_statistics(model, steps=3):
    # A few train-mode forwards give BatchNorm non-trivial running statistics for eval-mode tests.
    model.train()
    with torch.no_grad():
        for seed in range(steps):
            model(**random_inputs(16, seed=100 + seed))
    return model.eval()


def take(inputs, rows):
    return {name: value[rows] for name, value in inputs.items()}


@pytest.mark.parametrize(
    "overrides, fused_width",
    [
        ({"fusion": "cmf-bank"}, 4 * 32),
        ({"fusion": "cmf-batch"}, 4 * 32),
        ({"fusion": "concat"}, 2 * 32),
        ({"modality": "text"}, 32),
        ({"modality": "image"}, 32),
        ({"fusion": "concat", "embed_dim": 8}, 2 * 8),
    ],
)
def test_output_shapes_per_switch(overrides, fused_width):
    model = build(**overrides)
    out = model(**random_inputs(5))
    d = model.config.embed_dim
    assert out["logits"].shape == (5, CLASSES)
    assert out["fused"].shape == (5, fused_width)
    modality = model.config.modality
    assert (out["t"] is None) == (modality == "image") and (out["v"] is None) == (modality == "text")
    for key in ("t", "v"):
        if out[key] is not None:
            assert out[key].shape == (5, d)


def test_unused_branch_is_not_built_and_its_input_may_be_missing():
    text_only = build(modality="text")
    assert text_only.image_encoder is None and text_only.image_projection is None and text_only.fusion is None
    inputs = random_inputs(4)
    inputs.pop("image_maps")
    assert text_only(**inputs)["logits"].shape == (4, CLASSES)

    image_only = build(modality="image")
    assert image_only.text_encoder is None and image_only.text_projection is None
    assert image_only(image_maps=random_inputs(4)["image_maps"])["logits"].shape == (4, CLASSES)


@pytest.mark.parametrize("last", [1, 2, 3])
def test_text_layers_last_reads_only_the_last_layers(last):
    model = build(text_layers_last=last).eval()
    inputs = random_inputs(5)
    out = model(**inputs)
    assert out["text_layer_weights"].shape == (5, last)
    # Rewriting the earlier cached layers must not change anything.
    changed = dict(inputs)
    changed["first_token"] = inputs["first_token"].clone()
    changed["token_states"] = inputs["token_states"].clone()
    changed["first_token"][:, : LAYERS - last] = 7.0
    changed["token_states"][:, : LAYERS - last] += 3.0
    torch.testing.assert_close(model(**changed)["logits"], out["logits"], atol=0, rtol=0)


def test_text_layers_last_beyond_the_cache_is_rejected():
    with pytest.raises(ValueError, match="text_layers_last"):
        build(text_layers_last=LAYERS + 1)


@pytest.mark.parametrize("fusion", FUSION_KINDS)
def test_extra_padding_changes_nothing_in_eval_mode(fusion):
    model = trained_statistics(build(fusion=fusion))
    tight = random_inputs(7, total_length=6)
    loose = {name: value.clone() for name, value in tight.items()}
    extra = 5
    loose["token_states"] = torch.nn.functional.pad(tight["token_states"], (0, 0, 0, extra))
    loose["token_mask"] = torch.nn.functional.pad(tight["token_mask"], (0, extra))
    a, b = model(**tight), model(**loose)
    for key in ("t", "v", "fused", "logits"):
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=0)


def test_default_fusion_is_batch_independent_in_eval_mode():
    model = trained_statistics(build())
    assert model.config.fusion == "cmf-bank"
    batch = random_inputs(12, seed=1)
    other_batch = random_inputs(12, seed=2)
    # Row 0 of `mixed` is sample 3 of `batch`; the rest come from another batch.
    mixed = {name: torch.cat([batch[name][3:4], other_batch[name][:5]]) for name in batch}
    with torch.no_grad():
        in_batch = torch.softmax(model(**batch)["logits"], dim=1)
        in_mixed = torch.softmax(model(**mixed)["logits"], dim=1)
        for i in range(12):
            alone = torch.softmax(model(**take(batch, slice(i, i + 1)))["logits"], dim=1)
            torch.testing.assert_close(alone[0], in_batch[i], atol=1e-5, rtol=0)
    torch.testing.assert_close(in_mixed[0], in_batch[3], atol=1e-5, rtol=0)


def test_paper_fusion_is_batch_dependent_so_the_check_can_see_dependence():
    model = trained_statistics(build(fusion="cmf-batch"))
    batch = random_inputs(12, seed=1)
    with torch.no_grad():
        in_batch = torch.softmax(model(**batch)["logits"], dim=1)
        alone = torch.cat([torch.softmax(model(**take(batch, slice(i, i + 1)))["logits"], dim=1) for i in range(12)])
    assert (alone - in_batch).abs().max() > 1e-4


def test_bank_fusion_has_learned_slots():
    model = build(bank_size=5)
    names = {name for name, _ in model.named_parameters()}
    assert {
        "fusion.image_bank.keys",
        "fusion.image_bank.values",
        "fusion.text_bank.keys",
        "fusion.text_bank.values",
    } <= names
    assert model.fusion.image_bank.keys.shape == (5, 32)
