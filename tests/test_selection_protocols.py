"""The selection protocol is a recorded choice: dev (the default), k-fold over train+dev (the test split never
read), and the authors' (a checkpoint every 5 epochs, the best on test: optimistic, and labelled so)."""

from __future__ import annotations

import json

import pytest

from spp_scl.cache.reader import CachedSplit
from spp_scl.core.errors import InputError
from spp_scl.heads.presets import resolve_config
from spp_scl.runs.train.trainer import train

SMALL = {"train": 48, "dev": 16, "test": 16}
SETTINGS = dict(layers=2, dim=16, map_shape=(8, 2, 2), mean_tokens=5, signal=0.6, seed=2)


@pytest.fixture(scope="module")
def cache(synthetic_cache):
    return synthetic_cache(SMALL, **SETTINGS)


def test_the_authors_protocol_selects_the_best_test_checkpoint_of_every_fifth_epoch(cache, tmp_path):
    quiet = lambda *_: None  # noqa: E731
    config = resolve_config("mvsa-single", batch_size=8, selection="authors", selection_metric="accuracy")
    at_five = train(cache, config.replace(epochs=5), tmp_path / "five", log=quiet)
    at_seven = train(cache, config.replace(epochs=7), tmp_path / "seven", log=quiet)
    assert at_five.selected_epoch == 5 and at_seven.selected_epoch in (5, 7)  # checkpoints: 5, and the last
    assert at_seven.metrics["selection"] == "authors"  # the protocol beside the numbers
    # The first five epochs of both runs are the same training: epoch 5's test accuracy is at_five's.
    assert at_seven.metrics["test"]["accuracy"] >= at_five.metrics["test"]["accuracy"]
    if at_seven.selected_epoch == 5:
        assert at_seven.metrics["test"] == at_five.metrics["test"]
    selected = [json.loads(line)["selected"] for line in (tmp_path / "seven" / "log.jsonl").read_text().splitlines()]
    assert [epoch for epoch, chosen in enumerate(selected, 1) if chosen][0] == 5  # nothing before the first one


def test_the_authors_protocol_without_a_test_split_is_one_line(synthetic_cache, tmp_path):
    no_test = synthetic_cache({"train": 24, "dev": 8}, **SETTINGS)
    config = resolve_config("mvsa-single", epochs=5, batch_size=8, selection="authors")
    with pytest.raises(InputError) as error:
        train(no_test, config, tmp_path / "run", log=lambda *_: None)
    assert str(error.value) == f"{no_test}: selection authors picks its checkpoint on the test split; there is none"


@pytest.mark.slow
def test_compare_with_folds_pairs_rows_fold_by_fold_and_never_reads_test(cache, tmp_path, monkeypatch):
    from spp_scl.cli import main

    read = set()
    original = CachedSplit.batch
    monkeypatch.setattr(CachedSplit, "batch", lambda self, indices: read.add(self.split) or original(self, indices))
    out = tmp_path / "compare"
    argv = ["compare", "--cache", f"mvsa-single={cache}", "--seeds", "2", "--folds", "2", "--methods",
            "spp-scl,text-only", "--set", "epochs=2", "--set", "batch_size=8", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    assert read == {"train", "dev"}
    summary = json.loads((out / "comparison.json").read_text())["datasets"][0]
    assert summary["split_note"] == "held-out parts of 2-fold selection over train+dev; the test split never opened"
    reference = next(method for method in summary["methods"] if method["key"] == "spp-scl")
    text = (out / "comparison.md").read_text()
    assert "held-out parts of 2-fold selection over train+dev" in text
    tests = summary["tests"]
    (seed_test,) = [test["seeds"]["accuracy"] for test in tests.values()]
    assert seed_test["seeds"] == ["42/0", "42/1", "43/0", "43/1"]  # paired over seeds and folds
    items = next(iter(tests.values()))["items"]
    assert items["p"] is not None  # both rows' fold ensembles cover train+dev: the items test has its items
    assert reference["ensemble"]["seeds"] == 2  # each fold's 2-seed ensemble on its part, the parts joined
    assert reference["ensemble"]["accuracy"] == items["reference_accuracy"]
    assert [entry["seed"] for entry in reference["per_seed"]] == ["42/0", "42/1", "43/0", "43/1"]


def test_folds_below_two_are_refused_by_the_option(cache, tmp_path, capsys):
    from spp_scl.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["tables", "--cache", f"mvsa-single={cache}", "--folds", "1", "--out", str(tmp_path)])
    assert exit_.value.code == 2
    assert "expected a number of folds, at least 2; got '1'" in capsys.readouterr().err


@pytest.mark.slow
def test_compare_sets_the_authors_protocol_beside_dev_for_the_same_seeds(cache, tmp_path):
    from spp_scl.cli import main

    out = tmp_path / "compare"
    argv = ["compare", "--cache", f"mvsa-single={cache}", "--seeds", "2", "--protocols", "dev,authors", "--methods",
            "spp-scl", "--set", "epochs=3", "--set", "batch_size=8", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads((out / "comparison.json").read_text())["datasets"][0]
    labels = [method["label"] for method in summary["methods"]]
    assert labels == [
        "SPP-SCL (cmf-bank fusion, batch-independent)",
        "SPP-SCL (cmf-bank fusion, batch-independent) [authors' protocol: checkpoint picked on test, optimistic]",
    ]
    rows = [json.loads(line) for line in (out / "mvsa-single" / "results.jsonl").read_text().splitlines()]
    authors = [row for row in rows if row["config"]["selection"] == "authors"]
    dev = [row for row in rows if row["config"].get("selection", "dev") == "dev"]
    assert len(authors) == len(dev) == 2
    (test,) = summary["tests"].values()
    assert test["seeds"]["accuracy"]["seeds"] == [42, 43]  # the inflation, paired seed by seed
    assert "[authors' protocol: checkpoint picked on test, optimistic]" in (out / "comparison.md").read_text()
    assert (out / "comparison-mvsa-single.png").read_bytes().startswith(b"\x89PNG")  # the table as a figure


def test_a_figure_tick_keeps_the_protocol_of_its_row():
    from spp_scl.runs.protocols.figures import short_label

    authors = "SPP-SCL (cmf-bank fusion, batch-independent) [authors' protocol: checkpoint picked on test, optimistic]"
    assert short_label(authors) == "SPP-SCL [authors]"
    assert short_label("SPP-SCL (cmf-bank fusion, batch-independent)") == "SPP-SCL"


def test_authors_protocol_with_folds_is_refused(cache, tmp_path, capsys):
    from spp_scl.cli import main

    with pytest.raises(SystemExit):
        main(["compare", "--cache", f"mvsa-single={cache}", "--folds", "2", "--protocols", "dev,authors"])
    assert (
        "--protocols authors picks checkpoints on the test split, which --folds never opens" in capsys.readouterr().err
    )


def test_train_with_fold_selection_and_no_fold_trains_every_fold_and_summarises(cache, tmp_path, capsys):
    from spp_scl.cli import main

    out = tmp_path / "folds"
    argv = ["train", "--cache", str(cache), "--preset", "mvsa-single", "--selection", "folds", "--folds", "3",
            "--epochs", "1", "--batch-size", "8", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    held_out = [json.loads((out / f"fold{f}" / "metrics.json").read_text())["dev"] for f in range(3)]
    assert sum(m["records"] for m in held_out) == SMALL["train"] + SMALL["dev"]  # every record held out once
    mean = sum(m["accuracy"] for m in held_out) / 3
    assert f"over 3 folds, accuracy: {mean:.4f} +- " in printed
    assert "the test split was never opened" in printed
    assert all("test" not in json.loads((out / f"fold{f}" / "metrics.json").read_text()) for f in range(3))


def test_a_sweep_with_folds_trains_each_point_per_fold_and_ranks_on_the_held_out_parts(cache, tmp_path, monkeypatch):
    from spp_scl.runs.sweep.driver import run_sweep
    from spp_scl.runs.sweep.grid import parse_space
    from spp_scl.runs.sweep.study import SweepPlan

    read = set()
    original = CachedSplit.batch
    monkeypatch.setattr(CachedSplit, "batch", lambda self, indices: read.add(self.split) or original(self, indices))
    base = resolve_config("mvsa-single", epochs=1, batch_size=8, selection="folds", folds=2)
    plan = SweepPlan(cache, base, parse_space(["theta=0.5,0.8"], base), [42])
    summary = run_sweep(plan, tmp_path / "sweep", heartbeat=1, log=lambda *_: None)
    assert read == {"train", "dev"}
    rows = [json.loads(line) for line in (tmp_path / "sweep" / "results.jsonl").read_text().splitlines()]
    assert sorted((row["name"], row["config"]["fold"]) for row in rows) == [
        ("theta=0.5", 0), ("theta=0.5", 1), ("theta=0.8", 0), ("theta=0.8", 1)
    ]  # fmt: skip
    assert [entry["seed"] for entry in summary["points"][0]["dev"]["per_seed"]] == ["42/0", "42/1"]
    assert summary["best"].get("test") is None  # no test split under fold selection
