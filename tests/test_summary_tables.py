"""Rows over seeds read from run folders, the paired tests between rows, and what compare, tables and sweep summaries
write from them: per-seed and per-class values in the JSON, the footer naming its tests, the collapse flag and the
demo's stamp."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import f1_score

from spp_scl.extract.demo import DEMO_STAMP
from spp_scl.runs.protocols.comparison import METHODS, render_comparison, summarise_dataset
from spp_scl.runs.protocols.paper_tables import FULL, render_table, write_tables
from spp_scl.runs.sweep.grid import summarise, write_summary
from spp_scl.runs.train.metrics import classification_metrics
from spp_scl.runs.train.trial_run import write_predictions
from spp_scl.runs.trials.seed_summary import compare_rows

CLASSES = ["positive", "neutral", "negative"]
LABELS = np.random.default_rng(0).integers(0, 3, size=60)
SEEDS = (42, 43, 44)


def run_folder(folder, seed: int, name: str, right: float, collapsed: bool = False) -> dict:
    """A run folder with metrics.json and predictions.csv as a trial writes them, and its results row: the head is
    right on about `right` of the items (seeded), or says 'positive' for every item when collapsed."""
    rng = np.random.default_rng(seed * 100 + int(right * 100))
    predictions = np.where(rng.random(LABELS.size) < right, LABELS, (LABELS + rng.integers(1, 3, LABELS.size)) % 3)
    if collapsed:
        predictions = np.zeros_like(LABELS)
    probabilities = np.full((LABELS.size, 3), 0.1)
    probabilities[np.arange(LABELS.size), predictions] = 0.8 - rng.random(LABELS.size) * 0.2
    run_dir = folder / f"{name}-{seed}"
    run_dir.mkdir(parents=True)
    ids = [str(i) for i in range(LABELS.size)]
    metrics = {"selected_epoch": 1}
    rows = {}
    for split in ("dev", "test"):
        metrics[split] = classification_metrics(LABELS, probabilities.argmax(1), CLASSES)
        rows[split] = (ids, LABELS, probabilities)
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    write_predictions(run_dir / "predictions.csv", rows, CLASSES)
    headline = {key: metrics["test"][key] for key in ("accuracy", "f1_weighted", "f1_macro")}
    return {
        "name": name,
        "overrides": {"theta": right},
        "seed": seed,
        "dev": dict(headline),
        "test": dict(headline),
        "run_dir": str(run_dir),
        "seconds_per_epoch": 1.0,
        "epochs_run": 2,
        "selected_epoch": 1,
    }


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs")
    made = {
        "ours": [run_folder(folder, seed, "ours", 0.85) for seed in SEEDS],
        "other": [run_folder(folder, seed, "other", 0.55) for seed in SEEDS],
        "collapsed": [run_folder(folder, seed, "collapsed", 0.5, collapsed=True) for seed in SEEDS],
        "gone": [run_folder(folder, seed, "gone", 0.6) for seed in SEEDS],
    }
    for row in made["gone"]:
        row["run_dir"] = str(folder / "deleted")
    return made


def test_rows_hold_per_seed_and_per_class_values(rows):
    compared = compare_rows(rows, "ours", "test")
    ours = compared["rows"]["ours"]
    assert ours["seeds"] == list(SEEDS)
    assert [entry["accuracy"] for entry in ours["per_seed"]] == [row["test"]["accuracy"] for row in rows["ours"]]
    assert ours["accuracy"]["mean"] == pytest.approx(np.mean([row["test"]["accuracy"] for row in rows["ours"]]))
    predictions = [
        np.loadtxt(row["run_dir"] + "/predictions.csv", delimiter=",", skiprows=1, usecols=(4, 5, 6))
        for row in rows["ours"]
    ]
    first = f1_score(LABELS, predictions[0][: LABELS.size].argmax(1), average=None, labels=[0, 1, 2])
    assert list(ours["per_seed"][0]["per_class_f1"].values()) == pytest.approx(first.tolist(), abs=1e-9)
    assert set(ours["per_class_f1"]) == set(CLASSES) and ours["per_class_f1"]["neutral"]["n"] == 3
    assert compared["rows"]["gone"]["per_seed"][0]["per_class_f1"] is None  # no run folder: not made up


def test_paired_tests_against_a_direct_computation(rows):
    tests = compare_rows(rows, "ours", "test")["tests"]
    assert set(tests) == {"other", "collapsed", "gone"}
    seeds = tests["other"]["seeds"]["f1_macro"]
    expected = stats.ttest_rel(
        [r["test"]["f1_macro"] for r in rows["ours"]], [r["test"]["f1_macro"] for r in rows["other"]]
    )
    assert seeds["p"] == pytest.approx(expected.pvalue)

    def ensemble_right(group):
        probabilities = [
            np.loadtxt(row["run_dir"] + "/predictions.csv", delimiter=",", skiprows=1, usecols=(4, 5, 6))[LABELS.size :]
            for row in group
        ]  # the test split's lines follow the dev split's
        return np.mean(probabilities, axis=0).argmax(1) == LABELS

    ours, other = ensemble_right(rows["ours"]), ensemble_right(rows["other"])
    only_ours, only_other = int(np.sum(ours & ~other)), int(np.sum(~ours & other))
    items = tests["other"]["items"]
    assert (items["only_reference_right"], items["only_other_right"]) == (only_ours, only_other)
    assert items["p"] == pytest.approx(stats.binomtest(only_ours, only_ours + only_other).pvalue)
    assert items["holds_at_5pct"] and items["p"] < 0.05  # 0.85 against 0.55 right on 60 items
    assert tests["gone"]["items"]["p"] is None and "not available" in tests["gone"]["items"]["note"]


def test_collapsed_rows_are_flagged(rows):
    compared = compare_rows(rows, "ours", "test")
    assert compared["rows"]["collapsed"]["collapsed_seeds"] == list(SEEDS)
    assert compared["rows"]["ours"]["collapsed_seeds"] == []
    groups = {method.label: [] for method in METHODS[:2]}
    for key, label in (("ours", METHODS[0].label), ("collapsed", METHODS[2].label)):
        groups[label] = [{**row, "name": label} for row in rows[key]]
    summary = summarise_dataset("mvsa-single", list(METHODS[:3]), [row for group in groups.values() for row in group])
    table = render_comparison([summary], "2 epochs")
    collapsed_line = next(line for line in table.splitlines() if line.startswith(f"| {METHODS[2].label} | 3 |"))
    assert "**collapsed** (3 of 3 seeds: predicts one class)" in collapsed_line
    ours_line = next(line for line in table.splitlines() if line.startswith(f"| {METHODS[0].label} | 3 |"))
    assert "collapsed" not in ours_line


def test_comparison_footer_names_its_tests_and_the_demo_is_stamped(rows):
    labelled = [{**row, "name": METHODS[0].label} for row in rows["ours"]]
    labelled += [{**row, "name": METHODS[2].label} for row in rows["other"]]
    summary = summarise_dataset("mvsa-single", list(METHODS), labelled)
    assert summary["reference"] == METHODS[0].label and [m["key"] for m in summary["methods"]] == ["spp-scl", "clmlf"]
    method = summary["methods"][1]
    assert {"accuracy", "f1_weighted", "f1_macro", "per_class_f1", "per_seed"} <= set(method)
    assert method["accuracy"]["ci95"] is not None and len(method["per_seed"]) == 3
    table = render_comparison([summary], "2 epochs", DEMO_STAMP)
    assert table.startswith("# [DEMO: generated data, not MVSA] SPP-SCL and the methods")
    assert "paired t-test over matched seeds (scipy.stats.ttest_rel)" in table
    assert "exact McNemar test over items on the seed ensembles (scipy.stats.binomtest" in table
    assert "holds at 5% (p < 0.05)" in table
    footer = next(line for line in table.splitlines() if line.startswith(f"| {METHODS[2].label} | +"))
    assert footer.endswith(" * |")  # the test over items holds
    assert f"| {METHODS[2].label} | 43 |" in table  # the per-seed table


def test_tables_write_json_with_per_seed_values_and_the_stamp(rows, tmp_path):
    results = {"mvsa-single": [{**row, "name": FULL[0]} for row in rows["ours"]]}
    results["mvsa-single"] += [{**row, "name": "one-step (all losses summed)"} for row in rows["other"]]
    write_tables([3, 4], results, 3, tmp_path, DEMO_STAMP)
    table4 = (tmp_path / "table4.md").read_text()
    assert table4.startswith("## [DEMO: generated data, not MVSA] Table 4: Two-step vs one-step training")
    assert "| one-step (all losses summed) | 3 |" in table4 and "| 0.7956 | 0.7684 |" in table4
    assert "scipy.stats.ttest_rel" in table4 and "McNemar" in table4
    assert "Paired tests" not in (tmp_path / "table3.md").read_text()  # the full model alone: nothing to test
    record = json.loads((tmp_path / "tables.json").read_text())
    assert record["data_note"] == DEMO_STAMP and record["tables"]["4"][0] == FULL[0]
    dataset = record["datasets"]["mvsa-single"]
    assert dataset["reference"] == FULL[0] and dataset["split"] == "test"
    assert len(dataset["rows"][FULL[0]]["per_seed"]) == 3 and "negative" in dataset["rows"][FULL[0]]["per_class_f1"]
    assert "one-step (all losses summed)" in dataset["tests"]
    assert not render_table(4, results, 3).startswith("## [")  # without a note, no stamp
    assert (tmp_path / "table4-mvsa-single.png").read_bytes().startswith(b"\x89PNG")  # each table as a figure


def test_sweep_summary_tests_the_best_point_and_carries_the_stamp(rows, tmp_path):
    sweep_rows = [*rows["ours"], *rows["other"]]
    summary = summarise(sweep_rows, "f1_weighted")
    assert [point["name"] for point in summary["points"]] == ["ours", "other"]
    assert summary["points"][0]["dev"]["per_seed"][0]["seed"] == 42
    assert summary["best"]["test"]["f1_macro"]["ci95"] is not None
    assert set(summary["tests"]) == {"other"} and summary["tests"]["other"]["items"]["p"] is not None
    summary["data_note"] = DEMO_STAMP
    write_summary(summary, tmp_path)
    text = (tmp_path / "summary.md").read_text()
    assert text.startswith("# [DEMO: generated data, not MVSA] Sweep summary")
    assert "Paired tests of **ours** against each row (dev split)" in text and "ttest_rel" in text
    assert json.loads((tmp_path / "summary.json").read_text())["data_note"] == DEMO_STAMP


def test_one_seed_rows_show_n_a(rows, tmp_path):
    summary = summarise([rows["ours"][0], rows["other"][0]], "accuracy")
    write_summary(summary, tmp_path)
    text = (tmp_path / "summary.md").read_text()
    assert "+- n/a" in text and "+- 0.0000" not in text
    assert summary["points"][0]["dev_std"] is None


def test_the_demo_passes_its_stamp_to_every_table_and_summary(tmp_path, monkeypatch):
    from spp_scl.cli import demo

    stages = []

    def fake_stage(name, argv, log_file=None):
        stages.append(argv)
        if argv[0] in ("sweep", "compare"):
            out = tmp_path / "demo" / {"sweep": "sweep", "compare": "compare"}[argv[0]]
            out.mkdir(parents=True, exist_ok=True)
            (out / "summary.md").write_text("# t\n\nBest point by dev: **x** (seeds [42])\n\n- dev: accuracy 1\n")
            (out / "comparison.md").write_text("# t\n")

    monkeypatch.setattr(demo, "_stage", fake_stage)
    monkeypatch.setattr("spp_scl.extract.demo.prepare_demo", lambda *args, **kwargs: None)
    from spp_scl.cli import build_parser

    args = build_parser().parse_args(["demo", "--dir", str(tmp_path / "demo")])
    assert demo.run(args) == 0
    verbs = {argv[0]: argv for argv in stages}
    assert set(verbs) == {"extract", "sweep", "tables", "compare"}
    for verb in ("sweep", "tables", "compare"):
        argv = verbs[verb]
        assert argv[argv.index("--data-note") + 1] == DEMO_STAMP


def test_the_run_report_flags_a_collapsed_split():
    from spp_scl.runs.report.run_report import _metrics_section

    metrics = {
        "selected_epoch": 3,
        "selection_metric": "f1_weighted",
        "dev": classification_metrics(LABELS, np.zeros_like(LABELS), CLASSES),
        "test": classification_metrics(LABELS, LABELS, CLASSES),
    }
    text = "\n".join(_metrics_section(metrics, CLASSES))
    assert "dev **collapsed**: predicts one class; test ok." in text
