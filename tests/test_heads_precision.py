"""config.precision is the one precision setting: float32, bfloat16 where it is fast, float16 on a GPU with a loss
scale. The loss-scaled optimiser must be the plain one whenever no gradient overflows, and skip a step that does."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from spp_scl.core.errors import InputError
from spp_scl.heads.precision import LossScaledOptimizer, check_precision, scaled_for
from spp_scl.heads.training_step import spp_scl_step
from tests.conftest import ROOT_DIR
from tests.test_heads_training_step import new_model, synthetic_batch


def test_float16_is_refused_on_a_cpu_with_the_setting_to_use():
    with pytest.raises(InputError) as error:
        check_precision("float16", "cpu")
    assert str(error.value).startswith("precision float16 needs a GPU;")
    assert "use precision float32" in str(error.value)
    check_precision("float32", "cpu")  # always allowed


def test_only_float16_gets_a_loss_scaled_optimiser():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    assert scaled_for("float32", optimizer, "cpu") is optimizer
    assert scaled_for("bfloat16", optimizer, "cpu") is optimizer
    assert isinstance(scaled_for("float16", optimizer, "cpu"), LossScaledOptimizer)


def test_loss_scaled_two_step_training_equals_plain_training_bit_for_bit():
    """The scale is a power of two: scaling and unscaling the gradients is exact, so three SPP-SCL iterations
    (both steps, two optimiser steps each) give the plain run's weights exactly."""
    plain, plain_optimizer, config = new_model(seed=3, theta=0.99)
    scaled, scaled_optimizer, _ = new_model(seed=3, theta=0.99)
    stepper = LossScaledOptimizer(scaled_optimizer, "cpu")
    for seed in range(3):
        batch = synthetic_batch(16, torch.Generator().manual_seed(seed))
        torch.manual_seed(seed)
        plain_report = spp_scl_step(plain, batch, plain_optimizer, config)
        torch.manual_seed(seed)
        scaled_report = spp_scl_step(scaled, batch, stepper, config, backward=stepper.backward)
        assert scaled_report == plain_report
    assert plain_report["step_two_ran"] == 1.0  # the second optimiser step was taken through the scaler too
    for (name, a), (_, b) in zip(plain.state_dict().items(), scaled.state_dict().items()):
        assert torch.equal(a, b), name


def test_a_step_whose_gradient_overflowed_is_skipped_and_the_scale_halved():
    weight = torch.nn.Parameter(torch.ones(2))
    stepper = LossScaledOptimizer(torch.optim.SGD([weight], lr=0.1), "cpu")
    scale = stepper.scaler.get_scale()
    stepper.zero_grad()
    stepper.backward((weight * torch.tensor([float("inf"), 1.0])).sum())
    stepper.step()
    assert torch.equal(weight.detach(), torch.ones(2))
    assert stepper.scaler.get_scale() == scale / 2


def test_the_deprecated_mixed_precision_option_warns_and_sets_the_precision(tmp_path):
    """--mixed-precision bf16 is --precision bfloat16 with a warning (refused here on a CPU without fast bfloat16,
    or trained where it is fast: either way the warning names the new option)."""
    command = [sys.executable, "-m", "spp_scl", "train", "--cache", str(tmp_path / "none.h5"), "--mixed-precision",
               "bf16"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT_DIR)
    assert "warning: --mixed-precision is deprecated and goes in 0.12: use --precision bfloat16" in done.stderr


@pytest.mark.parametrize("major, fast", [(7, False), (8, True), (9, True)])
def test_bfloat16_counts_as_fast_from_ampere_on_not_on_a_v100_or_t4(monkeypatch, major, fast):
    from types import SimpleNamespace

    from spp_scl.heads.precision import fast_bfloat16

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: SimpleNamespace(major=major))
    monkeypatch.setattr(torch.cuda, "_check_bf16_tensor_supported", lambda device: True)  # emulation would pass
    monkeypatch.setattr(torch.version, "hip", None)
    assert fast_bfloat16("cuda") is fast
