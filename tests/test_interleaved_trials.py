"""Interleaved trials (runs/train/interleaved_trials.py) against training alone (runs/train/trainer.train): a trial
that takes turns with others on batches read once gives the weights, per-epoch log (losses, two-step decisions, dev
metrics, selection), metrics and predictions of the same trial trained alone, bit for bit, for every head kind.

Tolerance: none. Each trial is the loop's own TrialTraining, with its own random stream put in place around its
work, running the same kernels on the same shapes as alone: only the order of the trials' steps differs.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from spp_scl.core.errors import Diverged
from spp_scl.heads.presets import resolve_config
from spp_scl.runs.train.checkpoint import load_head
from spp_scl.runs.train.interleaved_trials import interleave_key, train_interleaved
from spp_scl.runs.train.trainer import train


@pytest.fixture(scope="module")
def cache(synthetic_cache):
    return synthetic_cache(
        {"train": 66, "dev": 24, "test": 24},  # 66 = 4 batches of 16 and a batch of 2 (skipped: BatchNorm)
        layers=3,
        dim=16,
        map_shape=(12, 3, 3),
        mean_tokens=6,
        signal=0.6,
        seed=1,
    )


def _config(**overrides):
    return resolve_config("mvsa-single", **{"epochs": 2, "batch_size": 16, "lr": 2e-3, "lr_step_size": 1, **overrides})


ALWAYS = 17.0  # theta above the batch size: step two at every iteration

# Trials of one seed that differ in every per-trial field, decisions of both kinds (theta 0: never step two).
TRIALS = [
    {"temperature": 0.07, "theta": 0.0},
    {"temperature": 0.2, "theta": ALWAYS, "dropout": 0.3},
    {"ce_weight": 2.0, "weight_decay": 1e-2, "theta": ALWAYS, "ha_gate": "projection"},
    {"theta": 0.0, "lr": 5e-3, "dropout": 0.0, "epochs": 1, "fusion": "concat"},
]


def _log(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def _assert_same_run(interleaved, alone):
    weights, weights_alone = load_file(interleaved / "model.safetensors"), load_file(alone / "model.safetensors")
    assert weights.keys() == weights_alone.keys()
    for name, tensor in weights_alone.items():
        assert torch.equal(weights[name], tensor), name
    lines, lines_alone = _log(interleaved), _log(alone)
    assert len(lines) == len(lines_alone)
    for line, line_alone in zip(lines, lines_alone):
        line.pop("seconds"), line_alone.pop("seconds")
        assert line == line_alone, line_alone["epoch"]
    assert json.loads((interleaved / "metrics.json").read_text()) == json.loads((alone / "metrics.json").read_text())
    assert (interleaved / "predictions.csv").read_bytes() == (alone / "predictions.csv").read_bytes()
    config = json.loads((interleaved / "config.json").read_text())["config"]
    assert config == json.loads((alone / "config.json").read_text())["config"]
    load_head(interleaved)  # a checkpoint runs/train/checkpoint.py serves


def _interleaved_against_alone(cache, tmp_path, configs, **kwargs):
    dirs = [tmp_path / f"interleaved-{i}" for i in range(len(configs))]
    results = train_interleaved(cache, configs, dirs, log=lambda *_: None, **kwargs)
    for i, config in enumerate(configs):
        alone = train(cache, config, tmp_path / f"alone-{i}", log=lambda *_: None)
        _assert_same_run(dirs[i], tmp_path / f"alone-{i}")
        assert (results[i].selected_epoch, results[i].epochs_run) == (alone.selected_epoch, alone.epochs_run)
    return results


@pytest.mark.parametrize(
    "variant",
    [
        {},  # SPP-SCL: two-step, cmf-bank
        {"two_step": False, "fusion": "cmf-batch"},
        {"modality": "text", "text_layers_last": 2},
        {"text_pooling": "lstm+mean", "second_step_moves_all": True},
        {"input_dropout": 0.1, "input_noise": 0.05},  # noise from each trial's own stream
        {"weight_average": 0.9},
        {"precision": "bfloat16"},
    ],
    ids=lambda v: ",".join(f"{k}={x}" for k, x in v.items()) or "two-step",
)
def test_an_interleaved_spp_scl_trial_trains_as_alone(cache, tmp_path, variant):
    if variant.get("precision") == "bfloat16":
        from spp_scl.heads.precision import fast_bfloat16

        if not fast_bfloat16("cpu"):
            pytest.skip("bfloat16 is refused on this CPU")
    configs = [_config(**{**trial, **variant}) for trial in TRIALS]
    assert len({interleave_key(config) for config in configs}) == 1
    _interleaved_against_alone(cache, tmp_path, configs)


def test_clmlf_mdse_and_spp_scl_trials_interleave_and_train_as_alone(cache, tmp_path):
    """Trials of other head kinds read the same batches: one group of three kinds, each as alone."""
    configs = [_config(head="clmlf", dropout=0.3), _config(head="mdse"), _config(theta=ALWAYS)]
    assert len({interleave_key(config) for config in configs}) == 1
    _interleaved_against_alone(cache, tmp_path, configs)


def test_patience_and_a_pruner_stop_an_interleaved_trial_where_they_stop_it_alone(cache, tmp_path):
    """Patience 1 at a rate that overshoots, and a caller's hook (a sweep's pruner) that fires at epoch 2 for one
    trial: each stops at the epoch it stops alone, the others go on, and a stopped trial is not asked again."""
    configs = [
        _config(epochs=6, patience=1, lr=5e-2),
        _config(epochs=6, theta=ALWAYS),
        _config(epochs=6, patience=2, lr=3e-2, theta=0.0),
    ]
    prune_at = {1: 2}  # trial index -> the epoch its pruner fires
    calls, finished = [], []

    def hook(index, epoch, dev):
        calls.append((index, epoch))
        return prune_at.get(index) == epoch

    dirs = [tmp_path / f"interleaved-{i}" for i in range(len(configs))]
    results = train_interleaved(
        cache, configs, dirs, log=lambda *_: None, on_epoch=hook, on_finish=lambda i, r: finished.append(i)
    )
    for i, config in enumerate(configs):
        pruner = lambda epoch, dev, i=i: prune_at.get(i) == epoch  # noqa: E731
        alone = train(cache, config, tmp_path / f"alone-{i}", log=lambda *_: None, on_epoch=pruner)
        _assert_same_run(dirs[i], tmp_path / f"alone-{i}")
        assert results[i].epochs_run == alone.epochs_run
    assert results[1].epochs_run == 2  # the pruner stopped it
    assert [r.epochs_run for r, c in zip(results, configs) if c.patience and r.epochs_run < c.epochs]
    assert max(epoch for index, epoch in calls if index == 1) == 2  # not asked again after it stopped
    assert finished == sorted(range(3), key=lambda i: (results[i].epochs_run, i))  # each told as it finished


def test_a_trial_that_diverges_leaves_and_the_others_train_as_alone(cache, tmp_path):
    configs = [_config(lr=1e9, epochs=3), _config(theta=ALWAYS, epochs=3)]
    dirs = [tmp_path / "diverges", tmp_path / "interleaved-1"]
    results = train_interleaved(cache, configs, dirs, log=lambda *_: None)
    assert isinstance(results[0], Diverged)
    with pytest.raises(Diverged) as alone_error:
        train(cache, configs[0], tmp_path / "alone-0", log=lambda *_: None)
    assert str(results[0]) == str(alone_error.value)
    train(cache, configs[1], tmp_path / "alone-1", log=lambda *_: None)
    _assert_same_run(dirs[1], tmp_path / "alone-1")


def test_from_the_file_trials_share_each_read_and_train_as_alone(cache, tmp_path):
    """The train split and the dev split read from the cache file (the case interleaving is for)."""
    from spp_scl.runs.train.trainer import open_splits

    configs = [_config(**trial) for trial in TRIALS[:3]]
    splits = open_splits(cache, configs[0], in_memory=False)
    assert not splits["train"].in_memory and not splits["dev"].in_memory
    _interleaved_against_alone(cache, tmp_path, configs, splits=splits)


def test_which_trials_interleave():
    """Trials interleave when their batches are the same ones: one train split, batch size and seed."""
    assert interleave_key(_config(head="probe")) is None
    assert interleave_key(_config(train_views="epoch")) is None  # stored views are drawn per trial
    same = interleave_key(_config())
    assert interleave_key(_config(temperature=0.5, theta=0.1, lr=1e-3, patience=3, fusion="concat")) == same
    assert interleave_key(_config(head="clmlf")) == same
    for other in ({"seed": 9}, {"batch_size": 32}, {"text_layers_last": 2}, {"selection": "folds", "fold": 1}):
        assert interleave_key(_config(**other)) != same, other
    with pytest.raises(ValueError, match="one interleave_key"):
        train_interleaved("unused.h5", [_config(), _config(seed=9)], ["a", "b"])


# --- runs/trials/executor.py: groups when asked (group_size > 1), the same rows and run folders as alone, resume ---


def _trials():
    from spp_scl.runs.trials.executor import Trial

    return [
        Trial("short", {"epochs": 1}, 1),
        Trial("tau", {"temperature": 0.2}, 1),
        Trial("one-step", {"two_step": False, "head": "mdse"}, 1),
        Trial("theta", {"theta": 0.3}, 2),  # another seed: other batches, alone (a group of one)
        Trial("probe", {"head": "probe"}, 1),  # fitted in closed form: alone
    ]


def _comparable(row):
    return {key: value for key, value in row.items() if key not in ("seconds", "seconds_per_epoch", "run_dir")}


def test_run_trials_in_groups_gives_the_rows_of_alone(cache, tmp_path):
    from spp_scl.runs.trials.executor import plan_groups, run_trials

    base, trials = _config(), _trials()
    groups, alone = plan_groups(base, trials, 27)
    assert [[t.name for t in group] for group in groups] == [["short", "tau", "one-step"]]
    assert [t.name for t in alone] == ["probe", "theta"]
    assert plan_groups(base, trials, 1) == ([], trials)
    # With two jobs a key's trials make at least two groups (one job each), here one of two and one alone.
    groups, alone = plan_groups(base, trials, 27, jobs=2)
    assert [[t.name for t in group] for group in groups] == [["short", "tau"]]
    assert [t.name for t in alone] == ["probe", "one-step", "theta"]
    grouped = run_trials(cache, base, trials, tmp_path / "g.jsonl", tmp_path / "g", log=lambda *_: None, group_size=27)
    single = run_trials(cache, base, trials, tmp_path / "a.jsonl", tmp_path / "a", log=lambda *_: None, group_size=1)
    assert [_comparable(row) for row in grouped] == [_comparable(row) for row in single]
    for row_grouped, row_alone in zip(grouped[:3], single[:3]):
        _assert_same_run(tmp_path / "g" / row_grouped["key"], tmp_path / "a" / row_alone["key"])


def test_the_default_group_size_follows_where_the_train_split_is_read_from(cache, monkeypatch):
    """Left to the tool, trials train alone when every job can hold the train split in memory (or map one shared
    copy) and interleaved when they read it from the file batch by batch (whichever trained faster; the results are
    the same either way)."""
    import h5py

    import spp_scl.cache.reader as reader
    from spp_scl.cache.reader import CachedSplit, feature_bytes, fits_in_memory
    from spp_scl.runs.trials.split_storage import AUTO_GROUP_SIZE, resolve_group_size

    with h5py.File(cache, "r") as file:
        needed = feature_bytes(file["train"])
    held = CachedSplit(cache, "train", in_memory=True, dtype=None)  # what the prediction stands for
    assert needed == sum(array.nbytes for array in held._arrays.values())
    assert fits_in_memory(cache, "train", processes=2, budget=2 * needed)
    assert not fits_in_memory(cache, "train", processes=2, budget=2 * needed - 1)
    assert resolve_group_size(3, cache, jobs=2) == 3  # asked for: kept
    monkeypatch.setattr(reader, "memory_budget", lambda: 2 * needed)
    messages = []
    assert resolve_group_size(None, cache, jobs=2, log=messages.append) == 1
    assert messages == ["group size 1: the train split will be held in memory (--group-size sets it)"]
    monkeypatch.setattr(reader, "memory_budget", lambda: needed - 1)
    assert resolve_group_size(None, cache, jobs=1) == AUTO_GROUP_SIZE


def test_a_split_without_its_features_is_named_when_the_group_size_is_decided(tmp_path):
    import h5py

    from spp_scl.cache.reader import fits_in_memory
    from spp_scl.cache.synthetic import write_synthetic_cache
    from spp_scl.core.errors import InputError

    path = write_synthetic_cache(tmp_path / "c.h5", {"train": 4, "dev": 2}, layers=1, dim=4, map_shape=(2, 1, 1))
    with h5py.File(path, "a") as file:
        del file["train/image_maps"]
    with pytest.raises(InputError, match=r"c\.h5: split train has no image_maps"):
        fits_in_memory(path, "train")


class _Interrupt(Exception):
    pass


def test_an_interrupted_group_resumes_with_its_unfinished_trials_only(cache, tmp_path):
    from spp_scl.runs.trials.executor import read_results, run_trials

    base, trials = _config(), _trials()[:3]
    results = tmp_path / "results.jsonl"

    def stop_after_the_first(message):
        if message.startswith("[1/"):  # the line run_trials logs when it has recorded a trial
            raise _Interrupt

    with pytest.raises(_Interrupt):
        run_trials(cache, base, trials, results, tmp_path / "trials", log=stop_after_the_first, group_size=27)
    assert [row["name"] for row in read_results(results)] == ["short"]  # recorded as soon as it finished
    first = read_results(results)[0]
    first_log = (tmp_path / "trials" / first["key"] / "log.jsonl").read_text()
    messages = []
    rows = run_trials(cache, base, trials, results, tmp_path / "trials", log=messages.append, group_size=27)
    assert any("1 of 3 trials already in" in m for m in messages)
    assert sorted(row["name"] for row in read_results(results)) == ["one-step", "short", "tau"]  # none twice
    assert rows[0] == first and (tmp_path / "trials" / first["key"] / "log.jsonl").read_text() == first_log
    for trial, row in zip(trials[1:], rows[1:]):
        train(cache, trial.config(base), tmp_path / f"alone-{trial.name}", log=lambda *_: None)
        _assert_same_run(tmp_path / "trials" / row["key"], tmp_path / f"alone-{trial.name}")


# --- sweeps (runs/sweep/worker.py): a worker trains the waiting grid points of one seed interleaved ---


def test_a_grouped_sweep_trains_each_point_once_with_the_metrics_of_alone(cache, tmp_path, monkeypatch):
    import spp_scl.runs.train.interleaved_trials as interleaved_trials
    from spp_scl.heads.config import SPPSCLConfig
    from spp_scl.runs.sweep.driver import run_sweep
    from spp_scl.runs.sweep.grid import parse_space
    from spp_scl.runs.sweep.study import SweepPlan

    base = _config()
    plan = SweepPlan(cache, base, parse_space(["tau=0.05,0.2", f"theta=0,{ALWAYS}"], base), [1, 2])
    group_sizes = []
    real = interleaved_trials.train_interleaved

    def spy(cache, configs, *args, **kwargs):
        group_sizes.append(len(configs))
        return real(cache, configs, *args, **kwargs)

    monkeypatch.setattr(interleaved_trials, "train_interleaved", spy)
    run_sweep(plan, tmp_path, heartbeat=1, log=lambda *_: None, group_size=27)
    assert group_sizes == [4, 4]  # one worker claimed the whole grid: one group per seed
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert sorted(row["key"] for row in rows) == sorted({row["key"] for row in rows}) and len(rows) == 8
    for row in rows[:2]:  # trained in the group, against the same trial alone
        config = SPPSCLConfig.from_dict(
            json.loads((tmp_path / "trials" / row["key"] / "config.json").read_text())["config"]
        )
        train(cache, config, tmp_path / f"alone-{row['key']}", log=lambda *_: None)
        _assert_same_run(tmp_path / "trials" / row["key"], tmp_path / f"alone-{row['key']}")
