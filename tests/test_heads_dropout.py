"""heads/dropout.py is F.dropout on the CPU, bit for bit: the same output, the same gradient and the same random draws
(the generator's state afterwards), so that a seed gives the masks nn.Dropout gave."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from heads.dropout import Dropout, dropout, dropout_noise


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


def test_noise_refuses_probabilities_that_draw_nothing():
    for p in (0.0, 1.0):
        with pytest.raises(ValueError, match="0 < p < 1"):
            dropout_noise((2, 3), p)
