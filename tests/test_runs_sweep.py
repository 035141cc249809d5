"""Sweeps and the paper's tables: grid expansion, resume without repeating trials, dev-only selection, the
Markdown tables, the plots."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from spp_scl.heads.presets import resolve_config
from spp_scl.runs.protocols.paper_tables import PAPER, render_table, table_rows
from spp_scl.runs.sweep.grid import expand, parse_space, summarise
from spp_scl.runs.trials.executor import Trial, read_results, run_trials


@pytest.fixture(scope="module")
def small_cache(synthetic_cache):
    return synthetic_cache(
        {"train": 64, "dev": 32, "test": 32},
        layers=2,
        dim=16,
        map_shape=(8, 2, 2),
        mean_tokens=6,
        signal=0.8,
        seed=2,
    )


def test_grid_expansion_types_names_and_random_points():
    base = resolve_config("mvsa-single")
    space = parse_space(["tau=0.05,0.1", "theta=0.5,0.8", "lambda=3,5", "two_step=true,false"], base)
    assert space == {
        "temperature": [0.05, 0.1],
        "theta": [0.5, 0.8],
        "ce_weight": [3.0, 5.0],
        "two_step": [True, False],
    }
    trials = expand(space, seeds=[42, 43])
    assert len(trials) == 2 * 2 * 2 * 2 * 2
    assert len({(t.name, t.seed) for t in trials}) == len(trials)
    assert trials[0].overrides == {"temperature": 0.05, "theta": 0.5, "ce_weight": 3.0, "two_step": True}
    assert trials[0].name == "temperature=0.05 theta=0.5 ce_weight=3 two_step=True"
    drawn = expand(space, seeds=[1], random_points=5, sample_seed=0)
    assert len(drawn) == 5 and len({t.name for t in drawn}) == 5
    assert [t.name for t in drawn] == [t.name for t in expand(space, seeds=[1], random_points=5, sample_seed=0)]
    with pytest.raises(ValueError, match=r"unknown field 'temprature'; did you mean 'temperature'\?"):
        parse_space(["temprature=0.1"], base)
    with pytest.raises(ValueError, match="seeds are set with --seeds"):
        parse_space(["seed=1,2"], base)
    with pytest.raises(ValueError, match="expected true or false"):
        parse_space(["two_step=maybe"], base)


def test_summary_selects_on_dev_only():
    """The point with the best test score but a worse dev score is not chosen; the chosen point's test
    metrics are reported as mean +- std over its seeds."""

    def row(name, seed, dev, test):
        metrics = lambda value: {"accuracy": value, "f1_weighted": value, "f1_macro": value}  # noqa: E731
        return {"name": name, "overrides": {"theta": name}, "seed": seed, "dev": metrics(dev), "test": metrics(test)}

    rows = [row("a", 1, 0.70, 0.90), row("a", 2, 0.72, 0.92), row("b", 1, 0.75, 0.60), row("b", 2, 0.73, 0.64)]
    summary = summarise(rows, "f1_weighted")
    assert [p["name"] for p in summary["points"]] == ["b", "a"]
    assert summary["best"]["name"] == "b"
    assert summary["best"]["test"]["accuracy"]["mean"] == pytest.approx(0.62)
    assert summary["best"]["test"]["accuracy"]["std"] == pytest.approx(0.0282842712, rel=1e-6)
    assert summary["best"]["test"]["accuracy"]["ci95"] == pytest.approx(
        [0.62 - 12.7062047 * 0.02, 0.62 + 12.7062047 * 0.02]
    )
    assert summary["tests"]["a"]["seeds"]["f1_weighted"]["mean_difference"] == pytest.approx(0.03)


def test_table_writer_against_a_hand_made_results_file():
    rows = [
        {
            "name": label,
            "seed": seed,
            "dev": {"accuracy": acc, "f1_weighted": acc - 0.01, "f1_macro": 0.0},
            "test": None,
        }
        for label, accuracies in (
            ("SPP-SCL (two-step, intra + inter, CMF, HA over all cached layers)", (0.80, 0.82)),
            ("one-step (all losses summed)", (0.70, 0.70)),
        )
        for seed, acc in zip((1, 2), accuracies)
    ]
    text = render_table(4, {"mvsa-single": rows}, seeds=2)
    assert (
        "### mvsa-single (dev split (the cache has no test split), dev-selected checkpoints; ours over 2 seeds; "
        "the paper's F1 is weighted)" in text
    )
    # mean +- std [95% t interval]: 0.81 +- 0.0141, half width t(0.975, 1) * 0.0141 / sqrt(2) = 12.706 * 0.01
    assert (
        "| SPP-SCL (two-step, intra + inter, CMF, HA over all cached layers) | 2 | 0.8100 +- 0.0141 [0.6829, 0.9371] | "
        "0.8000 +- 0.0141 [0.6729, 0.9271] | 0.0000 +- n/a | 0.8133 | 0.8015 |  |"
    ) in text
    # Two seeds with the same value: no spread to show, so n/a rather than +- 0.0000.
    assert (
        "| one-step (all losses summed) | 2 | 0.7000 +- n/a | 0.6900 +- n/a | 0.0000 +- n/a | 0.7956 | 0.7684 |" in text
    )
    assert "paired t-test over matched seeds (scipy.stats.ttest_rel)" in text
    # No run folders here: the test over items cannot be made, and says so.
    assert text.count("| n/a |") >= 1 and "| one-step (all losses summed) | +0.1100 |" in text
    assert PAPER["HA last 2"]["mvsa-single"] == (0.8222, 0.8181)
    assert [label for label, _, _ in table_rows([4, 5])][1:] == [
        "one-step (all losses summed)",
        "without L_cli, L_clt (intra)",
        "without L_clm (inter)",
    ]


def test_trials_resume_without_repeating(small_cache, tmp_path):
    base = resolve_config("mvsa-single", epochs=2, batch_size=16)
    trials = [Trial("a", {"theta": 0.5}, 1), Trial("a", {"theta": 0.5}, 2), Trial("b", {"theta": 0.9}, 1)]
    results = tmp_path / "results.jsonl"
    first = run_trials(small_cache, base, trials[:2], results, tmp_path / "trials", log=lambda *_: None)
    results.write_text(results.read_text() + '{"key": "cut-off line')  # as a kill mid-write would leave it
    messages = []
    rows = run_trials(small_cache, base, trials, results, tmp_path / "trials", log=messages.append)
    assert messages[0] == f"2 of 3 trials already in {results}"
    assert [r["seconds"] for r in rows[:2]] == [r["seconds"] for r in first]  # reused, not rerun
    assert len(read_results(results)) == 3
    assert run_trials(small_cache, base, trials, results, tmp_path / "trials", log=messages.append) == rows
    assert len(read_results(results)) == 3
    # Another command's trial of the same config and seed (compare's "SPP-SCL" is tables' full model) is reused,
    # and reported under the name asked for now: the table groups its rows by that name.
    renamed = run_trials(small_cache, base, [Trial("full", {"theta": 0.5}, 2)], results, tmp_path / "trials",
                         log=lambda *_: None)  # fmt: skip
    assert renamed == [{**rows[1], "name": "full"}] and len(read_results(results)) == 3
    # A changed base config makes new trials: results of other settings are never reused.
    other = run_trials(
        small_cache, base.replace(lr=5e-4), trials[:1], results, tmp_path / "trials", log=lambda *_: None
    )
    assert other[0]["config"]["lr"] == 5e-4 and len(read_results(results)) == 4


def test_finished_trials_of_a_cache_rebuilt_at_the_same_path_are_refused(tmp_path):
    """A trial's key names its config, not its data: results made on the cache before it was rebuilt at the same
    path would be mixed into the new ones. They are refused, naming what changed."""
    from spp_scl.cache.synthetic import write_synthetic_cache
    from spp_scl.core.errors import Refused

    def cache(seed):
        return write_synthetic_cache(tmp_path / "c.h5", {"train": 16, "dev": 8}, layers=2, dim=8, map_shape=(4, 2, 2),
                                     mean_tokens=4, seed=seed)  # fmt: skip

    base, trials = resolve_config("mvsa-single", epochs=1, batch_size=8), [Trial("a", {}, 1)]
    run_trials(cache(1), base, trials, tmp_path / "results.jsonl", tmp_path / "trials", log=lambda *_: None)
    cache(2)  # rebuilt at the same path
    with pytest.raises(Refused) as refused:
        run_trials(tmp_path / "c.h5", base, trials, tmp_path / "results.jsonl", tmp_path / "trials", log=print)
    message = str(refused.value)
    assert message.startswith(f"{tmp_path / 'results.jsonl'}: trial a seed 1 was trained on another cache than ")
    assert "synthetic.seed: trained on 1, the cache has 2" in message and "use another --out" in message


def test_tables_command_writes_each_table(small_cache, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "spp_scl",
            "tables",
            "--cache",
            f"mvsa-single={small_cache}",
            "--tables",
            "4,6",
            "--seeds",
            "2",
            "--set",
            "epochs=2",
            "--set",
            "batch_size=16",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr
    table4, table6 = (tmp_path / "table4.md").read_text(), (tmp_path / "table6.md").read_text()
    assert (tmp_path / "table4-mvsa-single.png").read_bytes().startswith(b"\x89PNG")  # the table's figure
    assert "one-step (all losses summed)" in table4 and "| 0.7956 | 0.7684 |" in table4
    assert (
        "(test split, dev-selected checkpoints; ours over 2 seeds" in table4
        and "Paired tests of **SPP-SCL (two-step" in table4
    )
    record = json.loads((tmp_path / "tables.json").read_text())
    rows = record["datasets"]["mvsa-single"]["rows"]
    full = rows["SPP-SCL (two-step, intra + inter, CMF, HA over all cached layers)"]
    assert full["seeds"] == [42, 43] and set(full["per_seed"][0]["per_class_f1"]) == {"class0", "class1", "class2"}
    assert record["data_note"] is None and not table4.startswith("## [")
    # The cache holds 2 layers: HA over the last 3 cannot be trained and is left out, the last 1 is there.
    assert "HA over the last 3 layers" not in table6 and "HA over the last 1 layer" in table6
    # full, one-step, HA over the last 2 and the last 1, two seeds each
    assert len(read_results(tmp_path / "mvsa-single" / "results.jsonl")) == 4 * 2


def test_parallel_trials_match_serial_ones(small_cache, tmp_path):
    """Two worker processes give each trial the result it gets alone, and each is recorded exactly once."""
    import torch

    base = resolve_config("mvsa-single", epochs=2, batch_size=16)
    trials = [Trial("a", {"theta": 0.5}, 1), Trial("b", {"temperature": 0.1}, 2), Trial("c", {"ce_weight": 3.0}, 3)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers' setting on a 2-core machine, so both sides compute alike
    try:
        serial = run_trials(small_cache, base, trials, tmp_path / "serial.jsonl", tmp_path / "s", log=lambda *_: None)
    finally:
        torch.set_num_threads(threads)
    parallel = run_trials(
        small_cache, base, trials, tmp_path / "parallel.jsonl", tmp_path / "p", jobs=2, log=lambda *_: None
    )
    assert [r["key"] for r in parallel] == [r["key"] for r in serial]
    assert sorted(r["key"] for r in read_results(tmp_path / "parallel.jsonl")) == sorted(r["key"] for r in serial)
    for one, other in zip(serial, parallel):
        assert one["selected_epoch"] == other["selected_epoch"]
        for metric, value in one["dev"].items():
            assert other["dev"][metric] == pytest.approx(value, abs=1e-6)
