"""A run folder is finished or refused: predict and report never serve a stopped, mixed or changed run, nor one
whose cache was rebuilt since; non-finite features are named where they enter and never counted; a setting that
trains nothing is an error, not an exit 0."""

from __future__ import annotations

import json
import shutil

import h5py
import pytest

from spp_scl.cache.synthetic import write_synthetic_cache
from spp_scl.core.errors import EXIT_INPUT, EXIT_REFUSED, InputError
from spp_scl.heads.presets import resolve_config
from spp_scl.runs.predict.run_folder import RunFolder
from spp_scl.runs.report.diagnostics import run_diagnostics
from spp_scl.runs.report.run_report import write_report
from spp_scl.runs.train.trainer import train

SIZES = {"train": 64, "dev": 24, "test": 24}


def _cache(path, seed: int = 0, sizes=SIZES):
    return write_synthetic_cache(path, sizes, layers=2, dim=16, map_shape=(8, 2, 2), mean_tokens=5, seed=seed)


def _config(**overrides):
    return resolve_config("mvsa-single", **{"epochs": 2, "batch_size": 16, "lr": 2e-3, **overrides})


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return _cache(tmp_path_factory.mktemp("syn") / "cache.h5")


@pytest.fixture(scope="module")
def finished(cache, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    train(cache, _config(), run_dir, log=lambda *_: None)
    return run_dir


@pytest.fixture
def run_copy(finished, tmp_path):
    shutil.copytree(finished, tmp_path / "run")
    return tmp_path / "run"


def _cli(args, capsys) -> tuple[int, str]:
    from spp_scl.cli import main as spp_scl

    status = spp_scl(args)
    return status, capsys.readouterr().err.strip()


def test_report_and_predict_refuse_a_run_without_metrics(run_copy, capsys):
    (run_copy / "metrics.json").unlink()  # what a training stopped at epoch 2 of 10 leaves
    with pytest.raises(InputError, match=r"is an unfinished run: its training stopped before writing metrics\.json"):
        write_report(run_copy)
    status, message = _cli(["report", str(run_copy), "--no-tsne"], capsys)
    assert status == EXIT_INPUT and "unfinished run" in message and "it restarts from epoch 1" in message
    status, message = _cli(["predict", str(run_copy), "--image", "x.jpg", "--text", "a day"], capsys)
    assert status == EXIT_INPUT and message.count("\n") == 0 and "unfinished run" in message


def test_a_training_that_starts_unmarks_the_folder_until_it_finishes(finished, run_copy, cache):
    """A rerun into a finished folder, stopped after its first epoch, must not leave the old metrics beside new
    weights."""

    def stop(epoch, dev):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cache, _config(seed=9), run_copy, log=lambda *_: None, on_epoch=stop)
    assert not (run_copy / "metrics.json").exists() and not (run_copy / "predictions.csv").exists()
    with pytest.raises(InputError, match="unfinished run"):
        RunFolder(run_copy)


def test_weights_or_metrics_that_are_not_those_the_run_finished_with_are_refused(cache, run_copy, tmp_path, capsys):
    other = tmp_path / "other"
    train(cache, _config(seed=5), other, log=lambda *_: None)
    shutil.copy(other / "model.safetensors", run_copy / "model.safetensors")  # a mixed folder
    with pytest.raises(InputError, match=r"model\.safetensors is not the file this run finished with"):
        RunFolder(run_copy).trained_head()
    status, message = _cli(["report", str(run_copy), "--no-tsne"], capsys)
    assert status == EXIT_INPUT and "model.safetensors is not the file this run finished with" in message

    shutil.copy(other / "metrics.json", run_copy / "metrics.json")
    with pytest.raises(InputError, match=r"metrics\.json is not the file this run finished with"):
        RunFolder(run_copy)


def test_a_cache_rebuilt_since_training_is_refused_naming_what_changed(tmp_path, capsys):
    cache = _cache(tmp_path / "cache.h5", seed=1)
    train(cache, _config(epochs=1), tmp_path / "run", log=lambda *_: None)
    _cache(cache, seed=2)  # rebuilt at the same path from other data
    with pytest.raises(
        InputError, match=r"is not the cache .* trained on .*synthetic\.seed: trained on 1, the cache has 2"
    ):
        run_diagnostics(tmp_path / "run", tsne=False)
    status, message = _cli(["report", str(tmp_path / "run"), "--no-tsne"], capsys)
    assert status == EXIT_REFUSED and "synthetic.seed: trained on 1, the cache has 2" in message


def test_an_edited_fingerprint_in_config_json_is_refused(run_copy):
    config = json.loads((run_copy / "config.json").read_text())
    config["cache_fingerprint"]["synthetic"]["signal"] = 0.9
    (run_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match=r"field cache_fingerprint was changed after training"):
        write_report(run_copy)


def _poison(cache, split: str, array: str, row: int, value: float = float("nan")) -> str:
    with h5py.File(cache, "r+") as file:
        data = file[split][array]
        record = data[row]
        record.flat[0] = value
        data[row] = record
        return file[split]["ids"].asstr()[row]


@pytest.mark.parametrize("split", ["train", "dev", "test"])
def test_non_finite_features_are_named_and_never_trained_on_or_counted(tmp_path, split):
    cache = _cache(tmp_path / "cache.h5")
    record = _poison(cache, split, "image_maps", 3)
    with pytest.raises(
        InputError,
        match=rf"the {split} split holds non-finite features \(record '{record}': NaN in "
        r"image_maps\)",
    ) as caught:
        train(cache, _config(), tmp_path / "run", log=lambda *_: None)
    assert caught.value.exit_code == EXIT_INPUT and "lower --lr" not in str(caught.value)
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_a_setting_that_trains_nothing_is_an_error(cache, tmp_path, capsys):
    args = ["train", "--cache", str(cache), "--preset", "mvsa-single", "--epochs", "1", "--batch-size", "1"]
    status, message = _cli([*args, "--out", str(tmp_path / "one")], capsys)
    assert status == EXIT_INPUT and "batch size 1 trains nothing" in message
    single = _cache(tmp_path / "single.h5", sizes={"train": 1, "dev": 4})
    with pytest.raises(InputError, match="epoch 1 trained nothing: no batch of the 1 training records"):
        train(single, _config(), tmp_path / "single", log=lambda *_: None)
