"""The fast text and image branches compute what the plain PyTorch modules compute, within float32 rounding.

heads/token_lstm.py replaces nn.LSTM on a packed sequence by one GEMM for the input projection and a written-out
recurrence; heads/image_reduction.py computes the 1x1 convolution as a GEMM on a channels-last view. Both only
reorder float32 sums, so they must match the reference modules (the same parameters, run the standard way) to
float32 rounding: observed differences are below 1e-6 relative; the tolerance here, rtol 1e-5 with atol 1e-6
(or 1e-5 on the gradient of a 768-wide input projection, a sum over up to 3 * 64 * L products), leaves room
for BLAS kernels that block sums differently, and is far below anything training could notice (a change of
1e-5 in a weight is one AdamW step at lr 1e-5). Padding must never be read, dropout must draw the same masks
from the same random stream, BatchNorm must end with the same statistics, and a forward without gradients
must equal one with gradients bit for bit (the two-step rule decides on such a forward).
"""

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from spp_scl.heads.hierarchical_attention import HierarchicalAttention
from spp_scl.heads.image_reduction import ImageReduction
from spp_scl.heads.model import SPPSCLHead
from spp_scl.heads.presets import resolve_config
from spp_scl.heads.token_lstm import TokenSchedule, bidirectional_lstm_mean
from spp_scl.heads.training_step import spp_scl_step, step_one_losses

TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}


def reference_lstm_mean(tokens, lengths, lstm):
    """The packed nn.LSTM, outputs averaged over the real tokens: what the text branch computed before."""
    packed = pack_padded_sequence(tokens, lengths.cpu(), batch_first=True, enforce_sorted=False)
    out, _ = lstm(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=tokens.shape[1])
    return out.sum(dim=1) / lengths.unsqueeze(1).to(out.dtype)


def reference_hierarchical_attention(module, first_token, token_states, token_mask):
    weights = module.layer_weights(first_token)
    mixed = torch.einsum("bk,bkld->bld", weights, token_states)
    return reference_lstm_mean(mixed, token_mask.sum(dim=1), module.lstm), weights


def reference_image_reduction(module, image_maps):
    """The nn.Sequential (Conv2d, BatchNorm2d, ReLU, Dropout) on contiguous maps, then the mean over positions."""
    return module.reduce(image_maps.contiguous()).mean(dim=(2, 3))


def padded_batch(lengths, total_length, dim, layers=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    mask = torch.arange(total_length).unsqueeze(0) < lengths.unsqueeze(1)
    states = torch.randn(len(lengths), layers, total_length, dim, generator=generator)
    # Garbage (not zeros) past each length: it must never be read.
    states = torch.where(mask[:, None, :, None], states, torch.full_like(states, 1e4))
    return torch.randn(len(lengths), layers, dim, generator=generator), states, mask


@pytest.mark.parametrize("lengths", [[5, 1, 9, 9, 3, 2, 7], [1], [4, 4, 4], [1, 12, 2]])
def test_lstm_mean_matches_packed_nn_lstm_values_and_gradients(lengths):
    torch.manual_seed(0)
    lengths = torch.tensor(lengths)
    lstm = nn.LSTM(24, 16, batch_first=True, bidirectional=True, bias=False)
    tokens = torch.randn(len(lengths), int(lengths.max()) + 2, 24, requires_grad=True)
    grad = torch.randn(len(lengths), 32)
    reference = reference_lstm_mean(tokens, lengths, lstm)
    expected = torch.autograd.grad(reference, [tokens, *lstm.parameters()], grad)

    schedule = TokenSchedule.from_lengths(lengths)
    flat = tokens.reshape(-1, 24).index_select(0, schedule.batch_rows * tokens.shape[1] + schedule.steps)
    fast = bidirectional_lstm_mean(flat, schedule, lstm)
    got = torch.autograd.grad(fast, [tokens, *lstm.parameters()], grad)
    torch.testing.assert_close(fast, reference, **TOLERANCE)
    for name, a, b in zip(["tokens", *dict(lstm.named_parameters())], got, expected):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=name)


def test_schedule_visits_each_real_token_once_per_direction():
    lengths = torch.tensor([2, 5, 1, 5, 3])
    schedule = TokenSchedule.from_lengths(lengths)
    assert schedule.batch_sizes == [5, 4, 3, 2, 2]  # rows active per step, longest first
    assert schedule.order.tolist() == [1, 3, 4, 0, 2]  # stable: of the two 5s, row 1 first
    visited = sorted(zip(schedule.batch_rows.tolist(), schedule.steps.tolist()))
    assert visited == sorted((row, step) for row, n in enumerate(lengths.tolist()) for step in range(n))
    # The backward direction reads, at step s of a text of length n, its token n - 1 - s.
    reverse_steps = schedule.steps[schedule.reverse_positions]
    reverse_rows = schedule.batch_rows[schedule.reverse_positions]
    assert torch.equal(reverse_rows, schedule.batch_rows)
    assert torch.equal(reverse_steps, lengths[schedule.batch_rows] - 1 - schedule.steps)


def test_hierarchical_attention_matches_the_packed_reference_and_ignores_padding():
    torch.manual_seed(1)
    module = HierarchicalAttention(num_layers=3, text_dim=20, lstm_hidden=8)
    lengths = torch.tensor([3, 11, 1, 6, 11, 2])
    first_token, states, mask = padded_batch(lengths, 13, 20)
    first_token.requires_grad_()
    reference_states = states * mask[:, None, :, None]  # the reference's einsum reads padding, so give it zeros
    expected, expected_weights = reference_hierarchical_attention(module, first_token, reference_states, mask)
    expected_grads = torch.autograd.grad(expected.square().sum(), [first_token, *module.parameters()])
    got, weights = module(first_token, states, mask)
    got_grads = torch.autograd.grad(got.square().sum(), [first_token, *module.parameters()])
    torch.testing.assert_close(got, expected, **TOLERANCE)
    torch.testing.assert_close(weights, expected_weights, rtol=0, atol=0)
    for name, a, b in zip(["first_token", *dict(module.named_parameters())], got_grads, expected_grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=name)


@pytest.mark.parametrize("channels_last", [True, False])
def test_image_reduction_matches_conv_batchnorm_dropout_and_draws_the_same_masks(channels_last):
    torch.manual_seed(2)
    fast = ImageReduction(in_channels=40, out_channels=16, dropout=0.3)
    reference = ImageReduction(in_channels=40, out_channels=16, dropout=0.3)
    reference.load_state_dict(fast.state_dict())
    maps = torch.randn(6, 40, 3, 4)
    if channels_last:  # the layout the cache reader gives
        maps = maps.contiguous(memory_format=torch.channels_last)
    results = []
    for run in (lambda: fast(maps), lambda: reference_image_reduction(reference, maps)):
        torch.manual_seed(7)
        out = run()
        results.append((out, torch.rand(3)))  # the random stream after the forward: the same draws were made
    (got, got_next), (expected, expected_next) = results
    torch.testing.assert_close(got, expected, **TOLERANCE)
    assert torch.equal(got_next, expected_next)
    grads = [
        torch.autograd.grad(out.square().sum(), list(module.parameters()))
        for out, module in ((got, fast), (expected, reference))
    ]
    for name, a, b in zip(dict(fast.named_parameters()), *grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=name)
    for name, buffer in fast.named_buffers():
        torch.testing.assert_close(buffer, dict(reference.named_buffers())[name], **TOLERANCE, msg=name)
    fast.eval(), reference.eval()
    torch.testing.assert_close(fast(maps), reference_image_reduction(reference, maps), **TOLERANCE)


def test_forward_without_gradients_is_bit_identical():
    torch.manual_seed(3)
    model = SPPSCLHead(resolve_config(), image_channels=12, text_dim=20, num_layers_cached=3, num_classes=3).train()
    lengths = torch.tensor([4, 9, 1, 9, 2, 5, 3, 7])
    first_token, states, mask = padded_batch(lengths, 9, 20)
    maps = torch.randn(8, 12, 2, 2)
    outputs = []
    for grad in (True, False):
        torch.manual_seed(0)
        with torch.set_grad_enabled(grad):
            outputs.append(model(maps, first_token, states, mask))
    for name in ("t", "v", "logits"):
        assert torch.equal(outputs[0][name], outputs[1][name]), name


def two_step_batch(dtype=torch.float32):
    lengths = torch.tensor([6, 2, 9, 4, 9, 1, 3, 5, 7, 2])
    first_token, states, mask = padded_batch(lengths, 9, 20)
    return {
        "image_maps": torch.randn(10, 12, 3, 3, generator=torch.Generator().manual_seed(5)).to(dtype),
        "first_token": first_token.to(dtype),
        "token_states": (states * mask[:, None, :, None]).to(dtype),
        "token_mask": mask,
        "labels": torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0]),
    }


def train_steps(config, batch, fast, monkeypatch, dtype=torch.float32, steps=6):
    """`steps` iterations of spp_scl_step from the same initial weights, with the fast or the reference branches;
    returns the model, the reports and the next random draw (equal draws = equal dropout masks consumed)."""
    if not fast:
        monkeypatch.setattr(HierarchicalAttention, "forward", reference_hierarchical_attention)
        monkeypatch.setattr(ImageReduction, "forward", reference_image_reduction)
    torch.manual_seed(0)
    model = SPPSCLHead(config, image_channels=12, text_dim=20, num_layers_cached=3, num_classes=3).to(dtype).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr)
    reports = [spp_scl_step(model, batch, optimizer, config) for _ in range(steps)]
    monkeypatch.undo()
    return model, reports, torch.rand(3)


@pytest.mark.parametrize("theta", [0.0, 1e9])  # step two never / always: no decision can flip on rounding
def test_training_steps_match_the_reference_modules_in_float64(theta, monkeypatch):
    """In float64, where rounding is negligible, the fast branches train as the reference modules: every weight,
    BatchNorm statistic and report agree to 1e-10, and the same random numbers were drawn (the same masks). The
    biases whose exact gradient is zero (see below) agree to 1e-7 only: AdamW scales even float64 rounding up."""
    config, batch = resolve_config(theta=theta, lr=1e-3), two_step_batch(torch.float64)
    fast_model, fast_reports, fast_next = train_steps(config, batch, True, monkeypatch, torch.float64)
    reference_model, reference_reports, reference_next = train_steps(config, batch, False, monkeypatch, torch.float64)
    assert [r["step_two_ran"] for r in fast_reports] == [r["step_two_ran"] for r in reference_reports]
    for a, b in zip(fast_reports, reference_reports):
        assert a["loss_step_one"] == pytest.approx(b["loss_step_one"], rel=1e-10)
    noise_driven = zero_gradient_parameters(config, batch)
    reference_state = reference_model.state_dict()
    for name, value in fast_model.state_dict().items():
        # A running mean follows the bias before its BatchNorm.
        loose = name in noise_driven or name.endswith("running_mean")
        torch.testing.assert_close(value, reference_state[name], rtol=0, atol=1e-7 if loose else 1e-10, msg=name)
    assert torch.equal(fast_next, reference_next)


def zero_gradient_parameters(config, batch) -> set[str]:
    """Parameters whose step-one gradient is zero in exact arithmetic (below 1e-12 in float64): the biases right
    before a training-mode BatchNorm, which subtracts them again (conv and linear biases, and a BatchNorm's own
    shift when a linear layer and another BatchNorm follow)."""
    torch.manual_seed(0)
    model = SPPSCLHead(config, image_channels=12, text_dim=20, num_layers_cached=3, num_classes=3).double().train()
    batch = {name: value.double() if value.is_floating_point() else value for name, value in batch.items()}
    outputs = model(**{name: batch[name] for name in ("image_maps", "first_token", "token_states", "token_mask")})
    loss = sum(step_one_losses(outputs, batch["labels"], config).values())
    grads = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
    return {name for (name, _), g in zip(model.named_parameters(), grads) if g is not None and g.abs().max() < 1e-12}


def test_float32_training_differs_only_where_rounding_noise_is_all_there_is(monkeypatch):
    """In float32 the two paths agree to rounding on every weight but one kind: parameters whose exact gradient is
    zero get pure rounding noise (~1e-9) as gradient, which AdamW divides by its own tiny running scale, so they
    take steps of up to lr in directions set by the rounding (in any two float orderings, the reference modules'
    own on 1 and 2 threads included). Training mode never sees them (BatchNorm removes them); evaluation sees
    them only as their difference from the running mean, which follows them: the eval outputs agree closely."""
    config, batch = resolve_config(theta=1e9, lr=1e-4), two_step_batch()
    fast_model, fast_reports, fast_next = train_steps(config, batch, True, monkeypatch)
    reference_model, reference_reports, reference_next = train_steps(config, batch, False, monkeypatch)
    assert torch.equal(fast_next, reference_next)
    for a, b in zip(fast_reports, reference_reports):
        assert a["loss_step_one"] == pytest.approx(b["loss_step_one"], rel=1e-5)
    noise_driven = zero_gradient_parameters(config, batch)
    assert noise_driven and all(name.endswith("bias") for name in noise_driven)
    reference_params = dict(reference_model.named_parameters())
    for name, value in fast_model.named_parameters():
        if name not in noise_driven:
            torch.testing.assert_close(value, reference_params[name], rtol=1e-4, atol=1e-5, msg=name)
    inputs = {name: batch[name] for name in ("image_maps", "first_token", "token_states", "token_mask")}
    for mode, tolerance in (("train", 1e-4), ("eval", 1e-3)):
        logits = []
        for model in (fast_model, reference_model):
            getattr(model, mode)()
            torch.manual_seed(1)
            with torch.no_grad():
                logits.append(model(**inputs)["logits"])
        torch.testing.assert_close(logits[0], logits[1], rtol=tolerance, atol=tolerance, msg=mode)
