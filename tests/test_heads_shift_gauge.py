"""Shifts a following BatchNorm removes (heads/shift_gauge.py): they are what the module says, they get an exact
zero gradient, and that is what keeps two float orders of the same training in step."""

import pytest
import torch

from spp_scl.heads.model import SPPSCLHead
from spp_scl.heads.presets import resolve_config
from spp_scl.heads.shift_gauge import is_shift_gauge
from tests.test_heads_model import CHANNELS, CLASSES, LAYERS, TEXT_DIM, random_inputs

VARIANTS = [{}, {"fusion": "cmf-batch"}, {"fusion": "concat"}, {"modality": "text"}, {"modality": "image"}]


def _head(**overrides):
    torch.manual_seed(0)
    return SPPSCLHead(resolve_config(**overrides), CHANNELS, TEXT_DIM, LAYERS, CLASSES).train()


def _outputs(model, inputs):
    torch.manual_seed(7)  # the same dropout masks every time
    out = model(**inputs)
    return torch.cat([x.flatten() for x in (out["logits"], out["t"], out["v"]) if x is not None])


@pytest.mark.parametrize("overrides", VARIANTS, ids=str)
def test_the_marked_parameters_are_shifts_that_batchnorm_removes(overrides):
    model = _head(**overrides)
    gauges = [name for name, param in model.named_parameters() if is_shift_gauge(param)]
    assert gauges  # the classifier's first bias at least
    inputs = random_inputs(12, seed=3)
    before = _outputs(model, inputs)
    for name, param in model.named_parameters():
        with torch.no_grad():
            original = param.clone()
            param.add_(torch.randn_like(param))  # a large shift of this parameter alone
        moved = not torch.allclose(_outputs(model, inputs), before, atol=1e-4)
        with torch.no_grad():
            param.copy_(original)
        # Exactly the marked ones leave every training-mode output (logits, t, v) where it was.
        assert moved != (name in gauges), name


@pytest.mark.parametrize("overrides", VARIANTS, ids=str)
def test_their_gradient_is_exactly_zero_and_the_others_are_not(overrides):
    model = _head(**overrides)
    out = model(**random_inputs(12, seed=4))
    loss = torch.nn.functional.cross_entropy(out["logits"], torch.tensor([0, 1, 2] * 4))
    for embedding in (out["t"], out["v"]):  # where the contrastive losses act
        loss = loss + (0 if embedding is None else (embedding @ torch.randn(embedding.shape[1])).square().sum())
    loss.backward()
    for name, param in model.named_parameters():
        if is_shift_gauge(param):
            assert param.grad is not None and not param.grad.any(), name
        elif param.grad is not None:
            assert param.grad.any(), name


def test_without_it_adamw_moves_them_by_rounding_noise():
    # Why the module exists: the float gradient of such a bias is ~1e-9 of noise, and AdamW's step divides by its
    # own scale, so the bias moves by a sizeable share of the learning rate per step.
    model = _head()
    bias = model.classifier.layers[0].bias
    bias._backward_hooks.clear()  # the float gradient, as an unmarked parameter gets it
    optimizer = torch.optim.AdamW([bias], lr=1e-3, weight_decay=0.0)
    before = bias.detach().clone()
    out = model(**random_inputs(12, seed=5))
    torch.nn.functional.cross_entropy(out["logits"], torch.tensor([0, 1, 2] * 4)).backward()
    assert bias.grad.abs().max() < 1e-6  # zero but for rounding
    optimizer.step()
    assert (bias.detach() - before).abs().max() > 1e-5  # ... yet a step of over 1% of lr
