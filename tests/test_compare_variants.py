"""`compare --variant`: SPP-SCL rows with settings of their own, tested against the SPP-SCL row; and every row's
seed ensemble (its seeds' mean probabilities) in the table and the JSON."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from spp_scl.cli import main
from spp_scl.cli.compare import parse_variants
from spp_scl.heads.presets import resolve_config

SETTINGS = dict(layers=2, dim=16, map_shape=(8, 2, 2), mean_tokens=5, signal=0.6, seed=2)


@pytest.fixture(scope="module")
def compared(synthetic_cache, tmp_path_factory):
    cache = synthetic_cache({"train": 48, "dev": 16, "test": 16}, **SETTINGS)
    out = tmp_path_factory.mktemp("compare")
    argv = ["compare", "--cache", f"mvsa-single={cache}", "--seeds", "2", "--methods", "spp-scl,text-only",
            "--variant", "averaged:weight_average=0.9,lr=3e-3", "--set", "epochs=2", "--set", "batch_size=8",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads((out / "comparison.json").read_text())["datasets"][0]
    rows = [json.loads(line) for line in (out / "mvsa-single" / "results.jsonl").read_text().splitlines()]
    return out, summary, rows


def test_a_variant_row_trains_spp_scl_with_its_settings_and_is_tested_against_spp_scl(compared):
    out, summary, rows = compared
    label = "SPP-SCL averaged (weight_average=0.9, lr=0.003)"
    assert [method["label"] for method in summary["methods"]] == [
        "SPP-SCL (cmf-bank fusion, batch-independent)",
        label,  # right after the row it is tested against
        "text only (SPP-SCL text branch)",
    ]
    variant_runs = [row for row in rows if row["name"] == label]
    assert sorted(row["seed"] for row in variant_runs) == [42, 43]
    for row in variant_runs:
        config = json.loads((Path(row["run_dir"]) / "config.json").read_text())["config"]
        assert (config["weight_average"], config["lr"], config["epochs"], config["head"]) == (0.9, 3e-3, 2, "spp-scl")
    assert set(summary["tests"]) == {label, "text only (SPP-SCL text branch)"}
    assert f"| {label} | 2 |" in (out / "comparison.md").read_text()


def test_the_seed_ensemble_is_the_argmax_of_the_seeds_mean_probabilities(compared):
    out, summary, rows = compared
    reference = summary["methods"][0]
    probabilities, labels = [], None
    for row in sorted((row for row in rows if row["name"] == reference["label"]), key=lambda row: row["seed"]):
        with (Path(row["run_dir"]) / "predictions.csv").open(newline="") as handle:
            lines = sorted((line for line in csv.DictReader(handle) if line["split"] == "test"), key=lambda x: x["id"])
        classes = [name for name in lines[0] if name.startswith("p_")]
        probabilities.append(np.array([[float(line[name]) for name in classes] for line in lines]))
        labels = [classes.index(f"p_{line['label']}") for line in lines]
    predicted = np.mean(probabilities, axis=0).argmax(axis=1)
    ensemble = reference["ensemble"]
    assert ensemble["seeds"] == 2
    assert ensemble["accuracy"] == pytest.approx(accuracy_score(labels, predicted))
    assert ensemble["f1_macro"] == pytest.approx(f1_score(labels, predicted, average="macro", labels=[0, 1, 2]))
    cell = " / ".join(f"{ensemble[key]:.4f}" for key in ("accuracy", "f1_weighted", "f1_macro")) + " (2 seeds)"
    assert cell in (out / "comparison.md").read_text()


def test_a_comma_separates_settings_only_before_a_field():
    base = resolve_config("mvsa-single")
    variants = parse_variants(["b:betas=0.8,0.9, lr=1e-3", "layers:betas=0.9,0.99"], base)
    assert variants == {"b": {"betas": (0.8, 0.9), "lr": 1e-3}, "layers": {"betas": (0.9, 0.99)}}


@pytest.mark.parametrize(
    "variant, message",
    [
        ("no-settings", "--variant 'no-settings': expected NAME:FIELD=VALUE[,FIELD=VALUE...]"),
        (":lr=1e-3", "--variant ':lr=1e-3': expected NAME:FIELD=VALUE[,FIELD=VALUE...]"),
        ("x:epoch=3", "--variant 'x': 'epoch=3': "),
    ],
)
def test_a_bad_variant_is_an_option_error_naming_it(variant, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["compare", "--cache", f"mvsa-single={tmp_path / 'x.h5'}", "--variant", variant])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_a_variant_name_given_twice_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(
            [
                "compare",
                "--cache",
                f"mvsa-single={tmp_path / 'x.h5'}",
                "--variant",
                "a:lr=1e-3",
                "--variant",
                "a:lr=1e-2",
            ]
        )
    assert "--variant 'a:lr=1e-2': the name 'a' is given twice" in capsys.readouterr().err


def test_progress_counts_the_trials_of_this_run_only(compared, capsys):
    """results.jsonl holds 6 trials of the first run; a second run of 3 trials counts to 3, not past it."""
    out, summary, rows = compared
    cache = json.loads((Path(rows[0]["run_dir"]) / "config.json").read_text())["cache"]
    argv = ["compare", "--cache", f"mvsa-single={cache}", "--seeds", "3", "--methods", "spp-scl", "--set", "epochs=2",
            "--set", "batch_size=8", "--out", str(out)]  # fmt: skip
    capsys.readouterr()
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "2 of 3 trials already in" in err and "[3/3] SPP-SCL (cmf-bank fusion, batch-independent) seed 44" in err
