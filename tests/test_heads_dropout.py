"""heads/dropout.py is F.dropout on the CPU, bit for bit: the same output, the same gradient and the same random draws
(the generator's state afterwards), so that a seed gives the masks nn.Dropout gave."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spp_scl.heads.dropout import Dropout, dropout, dropout_noise


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("p", [0.0, 0.1, 0.2, 0.5, 0.9, 1.0])
def test_dropout_equals_functional_dropout_and_draws_the_same(dtype, p):
    x = torch.randn(3, 17, 5, generator=torch.Generator().manual_seed(1)).to(dtype)
    torch.manual_seed(7)
    expected = F.dropout(x, p, training=True)
    state_after_expected = torch.get_rng_state()
    torch.manual_seed(7)
    got = dropout(x, p, training=True)
    assert got.dtype == expected.dtype
    assert torch.equal(got, expected)
    assert torch.equal(torch.get_rng_state(), state_after_expected)  # the next draw is the same too


@pytest.mark.parametrize(
    "layout",
    ["permuted", "channels_last", "transposed", "expanded", "sliced"],
)
def test_non_contiguous_inputs_get_the_masks_functional_dropout_gives_them(layout):
    """The draws go in the input's memory order: a batch's permuted maps and tokens (cache/reader.py), input
    dropout's inputs, get the masks they got from F.dropout."""
    base = torch.randn(4, 5, 6, 7, generator=torch.Generator().manual_seed(4))
    x = {
        "permuted": base.permute(0, 3, 1, 2),
        "channels_last": base.contiguous(memory_format=torch.channels_last),
        "transposed": base[0, 0].t(),
        "expanded": base[0, 0, :, :1].expand(6, 9),
        "sliced": base[:, :, ::2],
    }[layout]
    torch.manual_seed(8)
    expected = F.dropout(x, 0.3, training=True)
    state = torch.get_rng_state()
    torch.manual_seed(8)
    assert torch.equal(dropout(x, 0.3, training=True), expected)
    assert torch.equal(torch.get_rng_state(), state)


def test_gradient_equals_functional_dropout():
    weights = torch.randn(64, 40)
    grads = []
    for function in (F.dropout, dropout):
        x = torch.randn(64, 40, generator=torch.Generator().manual_seed(3), requires_grad=True)
        torch.manual_seed(11)
        (function(x, 0.2, True) * weights).sum().backward()
        grads.append(x.grad)
    assert torch.equal(grads[0], grads[1])
    assert (grads[1] == 0).any() and (grads[1] != 0).any()


def test_inplace_and_eval_mode():
    x = torch.randn(8, 9)
    torch.manual_seed(5)
    expected = F.dropout(x.clone(), 0.3, True, inplace=True)
    torch.manual_seed(5)
    y = x.clone()
    out = dropout(y, 0.3, True, inplace=True)
    assert out is y and torch.equal(y, expected)
    state = torch.get_rng_state()
    assert dropout(x, 0.3, training=False) is x
    assert torch.equal(torch.get_rng_state(), state)  # nothing drawn in eval mode


def test_noise_from_a_generator_equals_bernoulli_from_the_same_generator():
    """What the grouped trainer draws per trial: the generator's own stream, not the global one."""
    shape = (4, 128, 7, 7)
    first, second = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    for _ in range(3):  # consecutive draws stay in step
        expected = torch.empty(shape).bernoulli_(0.8, generator=first).div_(0.8)
        got = dropout_noise(shape, 0.2, generator=second)
        assert torch.equal(got, expected)
    assert torch.equal(first.get_state(), second.get_state())


def test_module_equals_nn_dropout_and_keeps_its_interface():
    reference, fast = nn.Dropout(0.25), Dropout(0.25)
    assert fast.state_dict() == {} and repr(fast) == "Dropout(p=0.25, inplace=False)"
    x = torch.randn(32, 16)
    torch.manual_seed(2)
    expected = reference(x)
    torch.manual_seed(2)
    assert torch.equal(fast(x), expected)
    fast.eval()
    assert fast(x) is x


def test_bad_probability_is_refused_as_functional_dropout_refuses_it():
    with pytest.raises(ValueError, match="between 0 and 1, but got 1.5"):
        dropout(torch.ones(2), 1.5)
    with pytest.raises(ValueError, match="between 0 and 1"):
        Dropout(-0.1)


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_noise_at_the_edges_is_functional_dropouts_on_ones_and_draws_nothing(p):
    state = torch.get_rng_state()
    expected = F.dropout(torch.ones(3, 4), p, training=True)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(dropout_noise((3, 4), p), expected)
    assert torch.equal(torch.get_rng_state(), state)


def test_where_the_draws_differ_the_masks_are_drawn_the_aten_way(monkeypatch):
    """On an ATen build whose bernoulli_ draws otherwise (the check fails), the same masks still come out."""
    import spp_scl.heads.dropout as module

    monkeypatch.setattr(module, "uniform_draws_match_bernoulli", lambda: False)
    x = torch.randn(6, 7).t()
    torch.manual_seed(3)
    expected = F.dropout(x, 0.4, training=True)
    torch.manual_seed(3)
    assert torch.equal(dropout(x, 0.4, training=True), expected)
    first, second = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(
        dropout_noise((4, 5), 0.4, generator=first), torch.empty(4, 5).bernoulli_(0.6, generator=second).div_(0.6)
    )


@pytest.mark.parametrize(
    "overrides",
    [
        {"head": "spp-scl", "input_dropout": 0.2},  # input dropout on the reader's permuted maps and tokens
        {"head": "clmlf"},  # attention blocks: dropout on nn.MultiheadAttention's transposed output
        {"head": "mdse"},
    ],
    ids=["spp-scl-input-dropout", "clmlf", "mdse"],
)
def test_heads_train_as_they_did_with_nn_dropout(overrides, tmp_path, monkeypatch):
    """A head's training forward on a real batch from the reader: the same logits and gradients with these draws as
    with nn.Dropout's, F.dropout's and the image branch's former F.dropout mask."""
    from spp_scl.cache.reader import CachedSplit
    from spp_scl.cache.synthetic import write_synthetic_cache
    from spp_scl.heads.config import resolve_config
    from spp_scl.heads.input_noise import attach_input_noise
    from spp_scl.runs.train.checkpoint import build_head
    from spp_scl.runs.train.trial_run import head_shapes
    from spp_scl.runs.train.view_feed import feature_inputs

    cache = write_synthetic_cache(
        tmp_path / "c.h5", {"train": 12, "dev": 4}, layers=2, dim=16, map_shape=(8, 3, 3), mean_tokens=5, seed=2
    )
    split = CachedSplit(cache, "train", in_memory=True, token_dtype=None)
    config = resolve_config("mvsa-single", model_dim=16, attention_heads=2, feedforward_dim=32, **overrides)
    inputs = feature_inputs(next(split.batches(12)), "cpu")
    labels = inputs.pop("labels")

    def train_step():
        torch.manual_seed(0)
        model = build_head(config, head_shapes(split))
        attach_input_noise(model, config)
        model.train()
        logits = model(**inputs)["logits"]
        F.cross_entropy(logits, labels).backward()
        return logits.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]

    logits, grads = train_step()
    import spp_scl.heads.image_reduction
    import spp_scl.heads.input_noise

    monkeypatch.setattr(Dropout, "forward", nn.Dropout.forward)
    monkeypatch.setattr(spp_scl.heads.input_noise, "functional_dropout", F.dropout)
    monkeypatch.setattr(
        spp_scl.heads.image_reduction,
        "dropout_noise",
        lambda shape, p, dtype, device: F.dropout(torch.ones(shape, dtype=dtype, device=device), p, training=True),
    )
    reference_logits, reference_grads = train_step()
    assert torch.equal(logits, reference_logits)
    assert len(grads) == len(reference_grads) and all(map(torch.equal, grads, reference_grads))
