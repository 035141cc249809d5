"""One `train` per run folder, and a stopped training resumes: a second training into the same --out is refused
naming the first; Ctrl-C or SIGTERM leaves the state of the last finished epoch, from which the same command
resumes to exactly the run an uninterrupted training writes; where it cannot, the message says a rerun restarts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from spp_scl.cache.synthetic import write_synthetic_cache
from spp_scl.core.errors import EXIT_INPUT, EXIT_INTERRUPTED, EXIT_REFUSED
from spp_scl.heads.presets import resolve_config
from spp_scl.runs.predict.run_folder import RunFolder
from spp_scl.runs.train.trainer import train

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # the same sums in every process


def _synthetic(path, train_records: int):
    sizes = {"train": train_records, "dev": 48, "test": 32}
    return write_synthetic_cache(path, sizes, layers=2, dim=16, map_shape=(8, 2, 2), mean_tokens=5, signal=0.15, seed=3)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """Big enough that a command's epochs outlast the time a test takes to signal it (about 0.1 s each)."""
    return _synthetic(tmp_path_factory.mktemp("syn") / "cache.h5", 256)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """For the trainings run in the test's own process."""
    return _synthetic(tmp_path_factory.mktemp("small") / "cache.h5", 96)


def _config(**overrides):
    return resolve_config("mvsa-single", **{"epochs": 5, "batch_size": 16, "lr": 2e-3, **overrides})


def _command(cache, out, epochs: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "spp_scl", "train", "--cache", str(cache), "--preset", "mvsa-single"] + [
        *("--epochs", str(epochs), "--batch-size", "16", "--lr", "0.002", "--seed", "1", "--out", str(out), *extra)
    ]


def _outcome(run_dir) -> dict:
    """What a finished run is: its log without wall times, metrics, predictions and selected weights, bytes."""
    lines = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return {
        "log": [{key: value for key, value in line.items() if key != "seconds"} for line in lines],
        "metrics.json": (run_dir / "metrics.json").read_text(),
        "predictions.csv": (run_dir / "predictions.csv").read_text(),
        "model.safetensors": (run_dir / "model.safetensors").read_bytes(),
    }


def _read_until(process, text: str, timeout: float = 120.0) -> list[str]:
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"no line with {text!r} in: {''.join(lines)}")


@pytest.mark.slow
def test_a_second_training_into_one_folder_is_refused_naming_the_first(cache, tmp_path, capsys):
    from spp_scl.cli import main as spp_scl

    out = tmp_path / "run"
    first = subprocess.Popen(
        _command(cache, out, 500), env=ENV, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    try:
        _read_until(first, "epoch   1/")
        status = spp_scl(_command(cache, out, 1)[3:])
        message = capsys.readouterr().err.strip()
        assert status == EXIT_REFUSED, message
        assert message.startswith("error: ") and "\n" not in message
        assert f"pid {first.pid}" in message and "being written by another training" in message
        assert first.poll() is None  # the first one goes on, unharmed
        with pytest.raises(Exception, match=rf"is being trained now \(pid {first.pid} ") as caught:
            RunFolder(out)  # predict and report: not finished, and not to be resumed by hand either
        assert caught.value.exit_code == EXIT_REFUSED
    finally:
        first.kill()  # kill -9: the kernel releases its lock, though its lock file stays
        first.wait()
    assert spp_scl(_command(cache, out, 1)[3:]) == 0, capsys.readouterr().err
    assert json.loads((out / "metrics.json").read_text())["selected_epoch"] == 1


@pytest.mark.slow
def test_sigterm_then_the_same_command_resumes_to_the_uninterrupted_run(cache, tmp_path):
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    subprocess.run(_command(cache, whole, 12), env=ENV, check=True, capture_output=True)

    process = subprocess.Popen(
        _command(cache, stopped, 12), env=ENV, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    _read_until(process, "epoch   2/")
    process.send_signal(signal.SIGTERM)
    message = process.stderr.read().strip().splitlines()[-1]
    assert process.wait(timeout=120) == EXIT_INTERRUPTED
    assert message.startswith("interrupted; the state after epoch ") and "resumes from epoch" in message
    epoch = int(message.split("the state after epoch ")[1].split()[0])
    assert 2 <= epoch < 12 and not (stopped / "metrics.json").exists()
    # Until it finishes, the folder is refused, with what a rerun does.
    with pytest.raises(Exception, match=rf"unfinished run.*resumes after epoch {epoch}") as caught:
        RunFolder(stopped)
    assert caught.value.exit_code == EXIT_INPUT

    rerun = subprocess.run(_command(cache, stopped, 12), env=ENV, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert f"resuming after epoch {epoch}" in rerun.stderr
    assert _outcome(stopped) == _outcome(whole)
    assert not (stopped / "resume").exists()


@pytest.mark.parametrize("overrides", [{}, {"weight_average": 0.9, "input_dropout": 0.1, "patience": 6}])
def test_a_stop_between_steps_resumes_to_the_same_run(small, tmp_path, overrides):
    from spp_scl.runs.train.stop_signals import TrainingInterrupted, stop_on_signals

    config = _config(epochs=4, **overrides)
    whole = train(small, config, tmp_path / "whole", log=lambda *_: None)

    def stop_after_epoch_2(epoch, dev):
        if epoch == 2:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: handled at the next step
        return False

    with stop_on_signals(), pytest.raises(TrainingInterrupted, match="state after epoch 2 is saved"):
        train(small, config, tmp_path / "stopped", log=lambda *_: None, on_epoch=stop_after_epoch_2)
    lines = []
    with stop_on_signals():
        resumed = train(small, config, tmp_path / "stopped", log=lines.append)
    assert "resuming after epoch 2 from the state saved when training stopped" in lines
    assert resumed.metrics == whole.metrics and resumed.epochs_run == whole.epochs_run
    assert _outcome(tmp_path / "stopped") == _outcome(tmp_path / "whole")


def test_a_saved_state_of_other_settings_is_not_taken_up(small, tmp_path):
    from spp_scl.runs.train.stop_signals import TrainingInterrupted, stop_on_signals

    def stop_after_epoch_2(epoch, dev):
        if epoch == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return False

    with stop_on_signals(), pytest.raises(TrainingInterrupted):
        train(small, _config(epochs=3), tmp_path / "run", log=lambda *_: None, on_epoch=stop_after_epoch_2)
    lines = []
    changed = train(small, _config(epochs=3, lr=1e-3), tmp_path / "run", log=lines.append)
    assert any(
        "not resuming" in line and "other settings (lr)" in line and "training from epoch 1" in line for line in lines
    )
    fresh = train(small, _config(epochs=3, lr=1e-3), tmp_path / "fresh", log=lambda *_: None)
    assert changed.epochs_run == 3 and changed.metrics == fresh.metrics


def test_where_nothing_can_be_resumed_the_message_says_a_rerun_restarts(small, tmp_path, capsys, monkeypatch):
    """A stop in the first epoch, and a library call outside stop_on_signals: today's 'a rerun resumes' is false."""
    from spp_scl.cli import main as spp_scl
    from spp_scl.runs.train import trainer

    real_update = trainer.update_average

    def stop_in_the_first_epoch(average, model):
        os.kill(os.getpid(), signal.SIGINT)
        real_update(average, model)

    monkeypatch.setattr(trainer, "update_average", stop_in_the_first_epoch)
    assert spp_scl(_command(small, tmp_path / "first", 3)[3:]) == EXIT_INTERRUPTED
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert (
        message == "interrupted; nothing to resume from (it stopped in its first epoch): a rerun restarts from epoch 1"
    )
    assert not (tmp_path / "first" / "resume").exists()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "train", interrupted)
    assert spp_scl(_command(small, tmp_path / "other", 3)[3:]) == EXIT_INTERRUPTED
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "interrupted; nothing to resume from: a rerun restarts from epoch 1"
    )
