"""The grouped trainer (runs/train/grouped_trainer.py) against training alone (runs/trainer.train): a trial trained in a
group gives the same weights, per-epoch log (losses, two-step decisions, dev metrics, selection), metrics and
predictions as the same trial trained alone.

Tolerance: none. The stacked head runs, for each trial, the kernels its modules run alone on the same shapes (one
GEMM per trial, not one batched or widened GEMM, which BLAS blocks and so rounds differently: on the Intel CPU of
2026-12-05 those differed by ~1e-6 in the forward and the trials then drifted apart over the epochs), so a trial's
weights, per-epoch log, metrics and predictions are bit for bit those of the trial trained alone, here with
two-step decisions that sit near their threshold too. (That a BLAS gives the same result for the same product on
the same shapes wherever it sits in memory is what this relies on; a test failure here on a new CPU means it does
not, and `python -m bench.grouped_drift` then measures how far groups drift there.)
"""

from __future__ import annotations

import csv
import json

import pytest
import torch
from safetensors.torch import load_file

from spp_scl.cache.synthetic import write_synthetic_cache
from spp_scl.heads.config import SPPSCLConfig, resolve_config
from spp_scl.heads.stacked.model import StackedSPPSCLHead
from spp_scl.runs.train.checkpoint import build_head, load_head
from spp_scl.runs.train.grouped_trainer import group_key, train_group, ungroupable_reason
from spp_scl.runs.train.trainer import open_splits, train
from spp_scl.runs.train.trial_run import head_shapes
from spp_scl.runs.train.view_feed import feature_inputs


@pytest.fixture(scope="module")
def cache(synthetic_cache):
    return synthetic_cache(
        {"train": 66, "dev": 24, "test": 24},  # 66 = 4 batches of 16 and a batch of 2
        layers=3,
        dim=16,
        map_shape=(12, 3, 3),
        mean_tokens=6,
        signal=0.6,
        seed=1,
    )


def _config(**overrides):
    return resolve_config("mvsa-single", **{"epochs": 2, "batch_size": 16, "lr": 2e-3, "lr_step_size": 1, **overrides})


# Decisions of both kinds in every group: theta 0 (aligned at every iteration: no step two) and ALWAYS (c <= B * B <
# ALWAYS * P, as P >= B: step two at every iteration). The paper's theta, whose decisions sit near their threshold
# (a float order that rounded differently would flip some), is tested over more epochs below.
ALWAYS = 17.0  # > the batch size 16

# Trials that differ in every per-trial field: tau, theta, lambda, lr, weight decay, dropout, seed, epochs, patience.
TRIALS = [
    {"temperature": 0.07, "seed": 1, "theta": 0.0},
    {"temperature": 0.2, "theta": ALWAYS, "seed": 1, "dropout": 0.3},
    {"ce_weight": 2.0, "seed": 2, "weight_decay": 1e-2, "theta": ALWAYS},
    {"theta": 0.0, "lr": 5e-3, "seed": 3, "dropout": 0.0, "epochs": 1},
]


def _log(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def _predictions(run_dir):
    with open(run_dir / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    classes = [row["prediction"] for row in rows]
    keys = [row["split"] + row["id"] for row in rows]
    probabilities = torch.tensor([[float(v) for k, v in row.items() if k.startswith("p_")] for row in rows])
    return keys, classes, probabilities


def _assert_same_run(grouped, alone):
    weights_grouped, weights_alone = load_file(grouped / "model.safetensors"), load_file(alone / "model.safetensors")
    assert weights_grouped.keys() == weights_alone.keys()
    for name, tensor in weights_alone.items():
        assert torch.equal(weights_grouped[name], tensor), name
    lines_grouped, lines_alone = _log(grouped), _log(alone)
    assert len(lines_grouped) == len(lines_alone)
    for line_grouped, line_alone in zip(lines_grouped, lines_alone):
        line_grouped.pop("seconds"), line_alone.pop("seconds")
        assert line_grouped == line_alone, line_alone["epoch"]
    assert json.loads((grouped / "metrics.json").read_text()) == json.loads((alone / "metrics.json").read_text())
    keys_grouped, classes_grouped, probabilities_grouped = _predictions(grouped)
    keys_alone, classes_alone, probabilities_alone = _predictions(alone)
    assert keys_grouped == keys_alone and classes_grouped == classes_alone
    assert torch.equal(probabilities_grouped, probabilities_alone)
    assert (
        json.loads((grouped / "config.json").read_text())["config"]
        == json.loads((alone / "config.json").read_text())["config"]
    )
    load_head(grouped)  # a checkpoint runs/train/checkpoint.py serves


def _group_against_alone(cache, tmp_path, configs):
    results = train_group(cache, configs, [tmp_path / f"group-{i}" for i in range(len(configs))], log=lambda *_: None)
    for i, config in enumerate(configs):
        alone = train(cache, config, tmp_path / f"alone-{i}", log=lambda *_: None)
        _assert_same_run(tmp_path / f"group-{i}", tmp_path / f"alone-{i}")
        assert results[i].selected_epoch == alone.selected_epoch
        assert results[i].epochs_run == alone.epochs_run
    return results


@pytest.mark.parametrize(
    "variant",
    [
        {},  # two-step, cmf-bank
        {"two_step": False},
        {"fusion": "concat", "text_layers_last": 2},
        {"modality": "text"},
        {"modality": "image"},
        {"intra_loss": False},
        {"inter_loss": False},
        {"fusion": "cmf-batch"},
        {"ha_gate": "projection", "second_step_moves_all": True},
    ],
    ids=lambda v: ",".join(f"{k}={x}" for k, x in v.items()) or "two-step",
)
def test_a_trial_in_a_group_trains_as_alone(cache, tmp_path, variant):
    configs = [_config(**variant, **trial) for trial in TRIALS]
    assert len({group_key(config) for config in configs}) == 1
    _group_against_alone(cache, tmp_path, configs)


def test_trials_with_the_papers_theta_train_as_alone_over_many_epochs(cache, tmp_path):
    """Four epochs at theta 2/3: step two runs in some iterations and not in others, each decision a comparison of
    counts that rounding would flip where an entry of S sits within rounding of the diagonal's mean."""
    trials = [{"seed": 1}, {"seed": 1, "temperature": 0.2}, {"seed": 2, "ce_weight": 2.0}, {"seed": 3, "dropout": 0.3}]
    configs = [_config(ha_gate="projection", epochs=4, **trial) for trial in trials]
    assert all(config.theta == pytest.approx(2 / 3, abs=1e-3) for config in configs)
    _group_against_alone(cache, tmp_path, configs)
    rates = {line["step_two_rate"] for i in range(len(configs)) for line in _log(tmp_path / f"alone-{i}")}
    assert len(rates - {0.0, 1.0}) > 0  # some epochs mixed runs of step two with skips: decisions were close


def test_patience_and_a_pruner_stop_a_grouped_trial_where_they_stop_it_alone(cache, tmp_path):
    """Patience 1 at a rate that overshoots (the dev metric stops improving within a few epochs), and a caller's
    hook (a sweep's pruner) that fires at epoch 2 for one trial: each trial stops at the epoch it stops alone, with
    the same run folder, while the others go on."""
    configs = [
        _config(epochs=6, patience=1, lr=5e-2, seed=1),
        _config(epochs=6, seed=2, theta=ALWAYS),
        _config(epochs=6, patience=2, lr=3e-2, seed=3, theta=0.0),
    ]
    prune_at = {1: 2}  # trial index -> the epoch its pruner fires

    def pruner(index):
        return lambda epoch, dev: prune_at.get(index) == epoch

    calls = []

    def grouped_hook(index, epoch, dev):
        calls.append((index, epoch))
        return pruner(index)(epoch, dev)

    dirs = [tmp_path / f"group-{i}" for i in range(len(configs))]
    results = train_group(cache, configs, dirs, log=lambda *_: None, on_epoch=grouped_hook)
    for i, config in enumerate(configs):
        alone = train(cache, config, tmp_path / f"alone-{i}", log=lambda *_: None, on_epoch=pruner(i))
        _assert_same_run(dirs[i], tmp_path / f"alone-{i}")
        assert results[i].epochs_run == alone.epochs_run
    assert results[1].epochs_run == 2  # the pruner stopped it
    stopped_by_patience = [r for r, c in zip(results, configs) if c.patience and r.epochs_run < c.epochs]
    assert stopped_by_patience, "no trial stopped early by patience: the test lost its subject"
    assert max(epoch for index, epoch in calls if index == 1) == 2  # not asked again after it stopped


def test_dropout_masks_are_the_ones_drawn_alone(cache):
    """A stacked forward in train mode, from per-trial generators, gives each trial's outputs bit for bit as its
    module gives them from the global generator (the masks are the same draws)."""
    configs = [_config(seed=1, dropout=0.4), _config(seed=1, dropout=0.0), _config(seed=2, dropout=0.2)]
    split = open_splits(cache, configs[0])["train"]
    shapes = head_shapes(split)
    models, generators, states = [], [], []
    for config in configs:
        torch.manual_seed(config.seed)
        models.append(build_head(config, shapes).train())
        generators.append(torch.Generator().set_state(torch.get_rng_state()))
        states.append(torch.get_rng_state())
    stacked = StackedSPPSCLHead([_copy(model, config, shapes) for model, config in zip(models, configs)], generators)
    inputs = {
        seed: feature_inputs(
            next(split.batches(16, shuffle=True, generator=torch.Generator().manual_seed(seed))), "cpu"
        )
        for seed in (1, 2)
    }
    for _ in range(2):  # two forwards: each trial's stream goes on as alone
        outputs = stacked([(range(0, 2), inputs[1]), (range(2, 3), inputs[2])])
        for trial, (model, config) in enumerate(zip(models, configs)):
            torch.set_rng_state(states[trial])
            alone = model(**{k: v for k, v in inputs[config.seed].items() if k != "labels"})
            states[trial] = torch.get_rng_state()
            for name in ("t", "v", "logits"):
                assert torch.equal(outputs[name][trial], alone[name]), (trial, name)


def _copy(model, config, shapes):
    twin = build_head(config, shapes)
    twin.load_state_dict(model.state_dict())
    return twin


def test_what_trains_alone():
    assert ungroupable_reason(_config()) is None
    assert "head" in ungroupable_reason(_config(head="clmlf"))
    assert ungroupable_reason(_config(train_views="epoch")) == "stored views"
    assert ungroupable_reason(_config(input_dropout=0.1)) == "input noise"
    assert "text pooling" in ungroupable_reason(_config(text_pooling="lstm+mean"))
    assert group_key(_config(head="probe")) is None
    # Per-trial fields do not split a group; architecture and batch size do.
    assert group_key(_config(temperature=0.5, theta=0.1, ce_weight=1.0, lr=1e-3, seed=9, patience=3)) == group_key(
        _config()
    )
    assert group_key(_config(fusion="cmf-batch")) != group_key(_config())
    assert group_key(_config(batch_size=32)) != group_key(_config())
    assert group_key(_config(two_step=False)) != group_key(_config())


# --- runs/trials/executor.py: groups when asked (group_size > 1), the same rows and run folders as alone, resume ---------------------------


def _trials():
    from spp_scl.runs.trials.executor import Trial

    return [
        Trial("short", {"epochs": 1}, 1),
        Trial("tau", {"temperature": 0.2}, 1),
        Trial("theta", {"theta": 0.3}, 2),
        Trial("one-step", {"two_step": False}, 1),  # another architecture key: alone (a group of one)
    ]


def _comparable(row):
    return {key: value for key, value in row.items() if key not in ("seconds", "seconds_per_epoch", "run_dir")}


def test_run_trials_in_groups_gives_the_rows_of_alone(cache, tmp_path):
    from spp_scl.runs.trials.executor import plan_groups, run_trials

    base, trials = _config(), _trials()
    groups, alone = plan_groups(base, trials, 27)
    assert [[t.name for t in group] for group in groups] == [["short", "tau", "theta"]]
    assert [t.name for t in alone] == ["one-step"]
    assert plan_groups(base, trials, 1) == ([], trials)
    # With two jobs a key's trials make at least two groups (one job each), here one of two and one alone.
    groups, alone = plan_groups(base, trials, 27, jobs=2)
    assert [[t.name for t in group] for group in groups] == [["short", "tau"]]
    assert [t.name for t in alone] == ["theta", "one-step"]
    grouped = run_trials(cache, base, trials, tmp_path / "g.jsonl", tmp_path / "g", log=lambda *_: None, group_size=27)
    single = run_trials(cache, base, trials, tmp_path / "a.jsonl", tmp_path / "a", log=lambda *_: None, group_size=1)
    assert [_comparable(row) for row in grouped] == [_comparable(row) for row in single]
    for row_grouped, row_alone in zip(grouped, single):
        _assert_same_run(tmp_path / "g" / row_grouped["key"], tmp_path / "a" / row_alone["key"])


def test_the_default_group_size_follows_where_the_train_split_is_read_from(cache, monkeypatch):
    """Left to the tool, trials train alone when every job can hold the train split in memory and in groups when
    they read it from the file batch by batch (whichever trained faster; the results are the same either way)."""
    import h5py

    import spp_scl.cache.reader as reader
    from spp_scl.cache.reader import feature_bytes, fits_in_memory
    from spp_scl.runs.trials.executor import AUTO_GROUP_SIZE, resolve_group_size

    with h5py.File(cache, "r") as file:
        needed = feature_bytes(file["train"])
    assert needed == sum(file_size for file_size in _feature_sizes(cache, "train"))
    assert fits_in_memory(cache, "train", processes=2, budget=2 * needed)
    assert not fits_in_memory(cache, "train", processes=2, budget=2 * needed - 1)
    assert resolve_group_size(3, cache, jobs=2) == 3  # asked for: kept
    monkeypatch.setattr(reader, "memory_budget", lambda: 2 * needed)
    messages = []
    assert resolve_group_size(None, cache, jobs=2, log=messages.append) == 1
    assert messages == ["group size 1: the train split will be held in memory (--group-size sets it)"]
    assert resolve_group_size(None, cache, jobs=3) == AUTO_GROUP_SIZE
    monkeypatch.setattr(reader, "memory_budget", lambda: 0)
    assert resolve_group_size(None, cache, jobs=1) == AUTO_GROUP_SIZE


def test_a_split_without_its_features_is_named_when_the_group_size_is_decided(tmp_path):
    import h5py

    from spp_scl.cache.reader import fits_in_memory
    from spp_scl.core.errors import InputError

    path = write_synthetic_cache(tmp_path / "c.h5", {"train": 4, "dev": 2}, layers=1, dim=4, map_shape=(2, 1, 1))
    with h5py.File(path, "a") as file:
        del file["train/image_maps"]
    with pytest.raises(InputError, match=r"c\.h5: split train has no image_maps"):
        fits_in_memory(path, "train")


def _feature_sizes(path, split):
    """The features' bytes, from a CachedSplit that read them into memory: what the prediction stands for."""
    from spp_scl.cache.reader import CachedSplit

    held = CachedSplit(path, split, in_memory=True, dtype=None)
    return [array.nbytes for array in held._arrays.values()]


def test_a_group_holds_trials_of_one_seed_where_it_can():
    """A table's rows come seed after seed; grouped by seed, the trials of a group read the same batches (one data
    group: inputs read and gathered once for all of them)."""
    from spp_scl.runs.trials.executor import Trial, plan_groups

    rows = [Trial(name, overrides, seed) for name, overrides in (("full", {}), ("tau", {"temperature": 0.2}))
            for seed in (42, 43)]  # fmt: skip
    groups, alone = plan_groups(_config(), rows, 8, jobs=2)
    assert [[(t.name, t.seed) for t in group] for group in groups] == [
        [("full", 42), ("tau", 42)],
        [("full", 43), ("tau", 43)],
    ]
    assert alone == []


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
    assert [row["name"] for row in read_results(results)] == ["short", "tau", "theta"]  # nothing trained twice
    assert rows[0] == first and (tmp_path / "trials" / first["key"] / "log.jsonl").read_text() == first_log
    for trial, row in zip(trials[1:], rows[1:]):
        train(cache, trial.config(base), tmp_path / f"alone-{trial.name}", log=lambda *_: None)
        _assert_same_run(tmp_path / "trials" / row["key"], tmp_path / f"alone-{trial.name}")


# --- sweeps (runs/sweep/worker.py): a worker trains the waiting grid points as a group -----------------------------


def test_a_grouped_sweep_trains_each_point_once_with_the_metrics_of_alone(cache, tmp_path, monkeypatch):
    import spp_scl.runs.train.grouped_trainer as grouped_trainer
    from spp_scl.runs.sweep.driver import run_sweep
    from spp_scl.runs.sweep.grid import parse_space
    from spp_scl.runs.sweep.study import SweepPlan

    base = _config()
    plan = SweepPlan(cache, base, parse_space(["tau=0.05,0.2", f"theta=0,{ALWAYS}"], base), [1, 2])
    group_sizes = []
    real_train_group = grouped_trainer.train_group

    def spy(cache, configs, *args, **kwargs):
        group_sizes.append(len(configs))
        return real_train_group(cache, configs, *args, **kwargs)

    monkeypatch.setattr(grouped_trainer, "train_group", spy)
    run_sweep(plan, tmp_path, heartbeat=1, log=lambda *_: None, group_size=27)
    assert group_sizes == [8]  # one worker claimed the whole grid and trained it as one group
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert sorted(row["key"] for row in rows) == sorted({row["key"] for row in rows}) and len(rows) == 8
    for row in rows[:2]:  # trained in the group, against the same trial alone
        config = SPPSCLConfig.from_dict(
            json.loads((tmp_path / "trials" / row["key"] / "config.json").read_text())["config"]
        )
        train(cache, config, tmp_path / f"alone-{row['key']}", log=lambda *_: None)
        _assert_same_run(tmp_path / "trials" / row["key"], tmp_path / f"alone-{row['key']}")
