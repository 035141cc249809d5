"""Training that diverges stops with a Diverged error naming where, and a head with non-finite weights is never
saved, selected or loaded; a cache without the splits training needs, or a damaged one, is one line."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from spp_scl.cache.synthetic import write_synthetic_cache
from spp_scl.core.errors import EXIT_DIVERGED, EXIT_INPUT, Diverged, InputError
from spp_scl.heads.presets import resolve_config
from spp_scl.runs.train.checkpoint import CheckpointError, load_head, save_head
from spp_scl.runs.train.trainer import train


@pytest.fixture(scope="module")
def cache(synthetic_cache):
    return synthetic_cache(
        {"train": 48, "dev": 16},
        layers=2,
        dim=16,
        map_shape=(8, 2, 2),
        mean_tokens=6,
        seed=0,
    )


def _config(**overrides):
    return resolve_config("mvsa-single", **{"epochs": 2, "batch_size": 16, "lr": 2e-3, **overrides})


@pytest.mark.parametrize("head", ["spp-scl", "clmlf", "mdse"])
def test_a_diverging_run_stops_naming_the_step_and_saves_nothing(cache, tmp_path, head):
    run_dir = tmp_path / "run"
    with pytest.raises(Diverged, match=r"diverged at epoch 1, step \d+: \w+ = (nan|inf)") as caught:
        train(cache, _config(head=head, lr=1e8), run_dir, log=lambda *_: None)
    assert caught.value.exit_code == EXIT_DIVERGED
    assert not (run_dir / "model.safetensors").exists() and not (run_dir / "metrics.json").exists()


def test_non_finite_weights_are_never_saved_nor_loaded(cache, tmp_path):
    run_dir = tmp_path / "run"
    train(cache, _config(), run_dir, log=lambda *_: None)
    model, config, shapes = load_head(run_dir)
    state = load_file(str(run_dir / "model.safetensors"))
    name = next(key for key, tensor in state.items() if tensor.is_floating_point())

    with torch.no_grad():
        dict(model.named_parameters())[name].fill_(float("nan"))
    with pytest.raises(Diverged, match=name.replace(".", r"\.")):
        save_head(tmp_path, model, config, shapes)
    assert not (tmp_path / "model.safetensors").exists()

    state[name] = torch.full_like(state[name], float("inf"))  # a checkpoint written some other way
    save_file(state, str(run_dir / "model.safetensors"))
    with pytest.raises(CheckpointError, match=f"{name}.*not finite"):
        load_head(run_dir)


def test_a_cache_without_a_dev_split_is_one_line(tmp_path):
    only_train = write_synthetic_cache(
        tmp_path / "train-only.h5", {"train": 16}, layers=2, dim=8, map_shape=(4, 2, 2), mean_tokens=4
    )
    with pytest.raises(InputError, match=r"train-only\.h5 needs a train and a dev split.*has \['train'\]"):
        train(only_train, _config(), tmp_path / "run", log=lambda *_: None)


def test_a_damaged_cache_is_one_line_naming_it(cache, tmp_path):
    cut = tmp_path / "cut.h5"
    cut.write_bytes(cache.read_bytes()[:5000])
    with pytest.raises(InputError, match=r"cut\.h5 is not a readable HDF5 cache"):
        train(cut, _config(), tmp_path / "run", log=lambda *_: None)


def test_the_train_command_exits_with_the_kind_of_failure(cache, tmp_path, capsys):
    from spp_scl.cli import main as spp_scl

    common = ["train", "--cache", str(cache), "--preset", "mvsa-single", "--epochs", "2", "--batch-size", "16"]
    assert spp_scl([*common, "--lr", "1e8", "--out", str(tmp_path / "diverged")]) == EXIT_DIVERGED
    error = capsys.readouterr().err.strip().splitlines()
    assert error[-1].startswith("error: training diverged at epoch 1, step ")
    only_train = write_synthetic_cache(tmp_path / "train-only.h5", {"train": 16}, layers=2, dim=8, map_shape=(4, 2, 2))
    common[2] = str(only_train)
    assert spp_scl([*common, "--out", str(tmp_path / "run")]) == EXIT_INPUT
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(f"error: {only_train} needs a train and a dev")
