"""The CLMLF- and MDSE-style heads through the shared trainer (learning, determinism, checkpoints), a
sweep axis over heads, and the comparison command's table."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from spp_scl.cache.synthetic import write_synthetic_cache
from spp_scl.heads.presets import resolve_config
from spp_scl.runs.protocols.comparison import METHODS
from spp_scl.runs.sweep.grid import expand, parse_space
from spp_scl.runs.train.checkpoint import load_head
from spp_scl.runs.train.trainer import open_splits, train
from spp_scl.runs.train.trial_run import predict

# Narrow and shallow (CLMLF's depths are tested in test_heads_token_models.py) to keep the trainings short.
SMALL = {
    "model_dim": 32,
    "attention_heads": 2,
    "feedforward_dim": 64,
    "clmlf_fusion_layers": 2,
    "clmlf_image_layers": 1,
}


@pytest.fixture(scope="module")
def learnable(synthetic_cache):
    return synthetic_cache(
        {"train": 192, "dev": 72, "test": 72},
        layers=4,
        dim=32,
        map_shape=(24, 4, 4),
        mean_tokens=10,
        signal=0.6,
        seed=1,
    )


def _config(head, **overrides):
    return resolve_config(
        "mvsa-single", head=head, **{"epochs": 2, "batch_size": 32, "lr": 1e-3, "lr_step_size": 5, **SMALL, **overrides}
    )


@pytest.fixture(scope="module", params=["clmlf", "mdse"])
def trained(request, learnable, tmp_path_factory):
    return request.param, train(
        learnable, _config(request.param), tmp_path_factory.mktemp(request.param), log=lambda *_: None
    )


def test_each_head_learns_clearly_better_than_chance(trained):
    _, result = trained
    assert result.metrics["dev"]["accuracy"] > 0.7  # three balanced classes: chance is about 0.33
    assert result.metrics["test"]["accuracy"] > 0.7


def test_run_folder_logs_the_heads_own_losses_and_reloads(trained, learnable):
    head, result = trained
    log = [json.loads(line) for line in (result.run_dir / "log.jsonl").read_text().splitlines()]
    contrastive = "lbcl" if head == "clmlf" else "macl"
    assert {"loss_step_one", "ce", contrastive, "step_two_rate"} <= log[0].keys()
    assert all(line["step_two_rate"] == 0.0 for line in log)
    config = json.loads((result.run_dir / "config.json").read_text())
    assert config["config"]["head"] == head and config["trainable_parameters"] > 0
    model, loaded_config, _ = load_head(result.run_dir)
    assert loaded_config.head == head and type(model).__name__ == {"clmlf": "CLMLFHead", "mdse": "MDSEHead"}[head]
    ids, _, probabilities = predict(model, open_splits(learnable, loaded_config)["dev"], 7, "cpu")
    with (result.run_dir / "predictions.csv").open() as handle:
        saved = [row for row in csv.DictReader(handle) if row["split"] == "dev"]
    assert ids == [row["id"] for row in saved]
    stored = np.array([[float(row[f"p_class{i}"]) for i in range(3)] for row in saved])
    np.testing.assert_allclose(probabilities, stored, atol=2e-6)  # another batch size, same predictions


def test_same_seed_same_metrics(trained, learnable, tmp_path):
    head, first = trained
    second = train(learnable, _config(head), tmp_path, log=lambda *_: None)
    assert second.metrics == first.metrics
    assert (tmp_path / "predictions.csv").read_text() == (first.run_dir / "predictions.csv").read_text()


def test_a_sweep_axis_over_heads_gives_each_head_its_dataset_values():
    base = resolve_config("hfm")
    trials = expand(parse_space(["head=spp-scl,clmlf,mdse"], base), [42])
    configs = [trial.config(base) for trial in trials]
    assert [config.head for config in configs] == ["spp-scl", "clmlf", "mdse"]
    assert (configs[1].clmlf_fusion_layers, configs[1].clmlf_image_layers) == (5, 1)  # CLMLF's HFM depths
    assert len({trial.key(base) for trial in trials}) == 3


def test_compare_command_writes_its_table_and_resumes(tmp_path, capsys):
    from spp_scl.cli import main

    tiny = write_synthetic_cache(
        tmp_path / "tiny.h5",
        {"train": 48, "dev": 16, "test": 16},
        layers=2,
        dim=16,
        map_shape=(8, 2, 2),
        mean_tokens=5,
        signal=0.6,
        seed=2,
    )
    out = tmp_path / "compare"
    argv = [
        "compare",
        "--cache",
        f"mvsa-single={tiny}",
        "--cache",
        f"hfm={tmp_path / 'missing.h5'}",
        "--seeds",
        "2",
        "--set",
        "epochs=1",
        "--set",
        "batch_size=16",
        "--set",
        "model_dim=16",
        "--set",
        "feedforward_dim=16",
        "--set",
        "attention_heads=2",
        "--set",
        "clmlf_fusion_layers=1",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    assert "skipping hfm" in capsys.readouterr().err
    table = (out / "comparison.md").read_text()
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    assert "## mvsa-single: test split, dev-selected checkpoints; the paper's F1 is weighted" in table
    header = next(line for line in lines if line.startswith("| method |"))
    main_rows = [line for line in lines if line.count("|") == header.count("|") and not line.startswith("| method")]
    assert len(main_rows) == len(METHODS)
    clmlf_row = next(line for line in main_rows if line.startswith("| CLMLF-style"))
    assert "| 0.7378 | 0.7291 |" in clmlf_row  # CLMLF without DBCL (its table 3), what the CLMLF-style head is
    cells = [cell.strip() for cell in clmlf_row.strip("|").split("|")]
    # seeds; accuracy, weighted F1, macro F1 as mean +- std [interval] (or +- n/a); paper's two; parameters
    assert (
        cells[1] == "2"
        and all("+-" in cell for cell in cells[2:5])
        and cells[7].endswith("(2 seeds)")
        and int(cells[8].replace(",", "")) > 0
    )
    assert "Paired tests of **SPP-SCL (cmf-bank fusion" in table and "scipy.stats.binomtest" in table
    record = json.loads((out / "comparison.json").read_text())
    assert record["data_note"] is None and not table.startswith("# [")
    summary = record["datasets"][0]
    keys = [method["key"] for method in summary["methods"]]
    assert keys == [method.key for method in METHODS]
    clmlf = summary["methods"][keys.index("clmlf")]
    assert [entry["seed"] for entry in clmlf["per_seed"]] == [42, 43] and clmlf["per_class_f1"]
    assert set(summary["tests"]) == {method.label for method in METHODS[1:]}  # SPP-SCL against each other row
    results = (out / "mvsa-single" / "results.jsonl").read_text().splitlines()
    assert len(results) == 2 * len(METHODS)
    assert main(argv) == 0  # a second run finds every trial done
    assert (out / "mvsa-single" / "results.jsonl").read_text().splitlines() == results


def test_compare_command_rejects_unknown_methods(tmp_path):
    from spp_scl.cli import main

    with pytest.raises(SystemExit):
        main(["compare", "--cache", f"mvsa-single={tmp_path / 'x.h5'}", "--methods", "clmlf,mult"])


def test_a_two_class_comparison_shows_the_positive_class_f1(tmp_path):
    from spp_scl.cli import main

    cache = write_synthetic_cache(
        tmp_path / "two.h5", {"train": 40, "dev": 16}, num_classes=2, layers=2, dim=16, map_shape=(8, 2, 2),
        mean_tokens=5, signal=0.6, seed=3,
    )  # fmt: skip
    out = tmp_path / "compare"
    argv = ["compare", "--cache", f"mmsd2={cache}", "--seeds", "2", "--methods", "spp-scl,text-only", "--out", str(out)]
    argv += ["--set", "epochs=1", "--set", "batch_size=16"]
    assert main(argv) == 0
    table = (out / "comparison.md").read_text()
    assert (
        "## mmsd2: dev split (the cache has no test split), dev-selected checkpoints; the paper's F1 is macro" in table
    )
    header = next(line for line in table.splitlines() if line.startswith("| method |"))
    assert "| ours macro F1 | ours F1 of class1 | paper accuracy |" in header  # a generated cache's second class
    summary = json.loads((out / "comparison.json").read_text())["datasets"][0]
    text_only = next(method for method in summary["methods"] if method["key"] == "text-only")
    row = next(line for line in table.splitlines() if line.startswith(f"| {text_only['label']} | 2 |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[5].startswith(f"{text_only['per_class_f1']['class1']['mean']:.4f} +- ")
