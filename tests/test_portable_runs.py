"""Portable runs: predict, evaluate and report work from the run folder alone (its config.json names the
encoders; the cache is found again when it moves with the run), and `spp-scl export` writes a self-contained
folder with a model card that predict accepts as is, one run or a seed ensemble."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from spp_scl.api import load_run
from spp_scl.cli import main
from spp_scl.core.errors import EXIT_INPUT, EXIT_REFUSED
from spp_scl.runs.predict.predictor import Predictor
from spp_scl.runs.predict.run_folder import RunFolder
from tests.tiny_run import tiny_cache, tiny_run


@pytest.fixture(scope="module")
def runs(tiny, tmp_path_factory):
    """Two seeds of the tiny run, and one on the same cache with another head (for the ensemble)."""
    return [tiny_run(tiny, tmp_path_factory, seed=seed) for seed in (42, 43)]


def _pair(tiny) -> dict:
    record = json.loads((Path(tiny["data"]) / "dev.json").read_text())[0]
    return {
        "id": record["id"],
        "image": str(Path(tiny["data"]) / "images" / f"{record['id']}.jpg"),
        "text": record["text"],
    }


def _serve(run, pair) -> dict:
    """What predict serves for one pair from `run` (a folder, an export, or a list of folders: an ensemble)."""
    (result,) = Predictor(run).predict([(Path(pair["image"]), pair["text"])])
    return result.as_dict()


def test_config_json_names_the_encoders_and_where_the_cache_is_from_the_run(tiny, runs, tmp_path_factory):
    config = json.loads((runs[0] / "config.json").read_text())
    assert config["encoders"] == {
        "text": str(Path(tiny["text"]).resolve()),
        "image": str(Path(tiny["image"]).resolve()),
    }
    assert (runs[0] / config["cache_relative"]).resolve() == tiny_cache(tiny, tmp_path_factory).resolve()


def test_a_moved_run_predicts_and_reports_without_its_cache(tiny, runs, tmp_path, capsys):
    moved = tmp_path / "elsewhere" / "run"
    shutil.copytree(runs[0], moved)
    config = json.loads((moved / "config.json").read_text())
    (moved / "config.json").write_text(json.dumps({**config, "cache": str(tmp_path / "gone.h5")}))
    pair = _pair(tiny)
    here, there = _serve(runs[0], pair), _serve(moved, pair)
    assert there["prediction"] == here["prediction"]
    assert np.allclose(list(there["probabilities"].values()), list(here["probabilities"].values()))
    assert main(["report", str(moved), "--no-tsne"]) == 0
    err = capsys.readouterr().err
    assert f"its cache {tmp_path / 'gone.h5'} is not here: the report leaves out the modality distances" in err
    report = (moved / "report.md").read_text()
    assert "## Metrics" in report and "No diagnostics yet" in report


def test_a_run_moved_with_its_cache_finds_the_cache_again(tiny, tmp_path_factory, tmp_path):
    project = tmp_path / "project"
    (project / "runs").mkdir(parents=True)
    shutil.copy(tiny_cache(tiny, tmp_path_factory), project / "cache.h5")
    run = tiny_run(tiny, tmp_path_factory)
    shutil.copytree(run, project / "runs" / "r")
    config = json.loads((project / "runs" / "r" / "config.json").read_text())
    config["cache_relative"] = "../../cache.h5"  # as training in project/ would have written it
    config["cache"] = str(tmp_path / "old-place" / "cache.h5")
    (project / "runs" / "r" / "config.json").write_text(json.dumps(config))
    assert RunFolder(project / "runs" / "r").cache == project / "runs" / "r" / "../../cache.h5"
    assert main(["report", str(project / "runs" / "r"), "--no-tsne", "--splits", "dev"]) == 0
    assert "## Modality distances" in (project / "runs" / "r" / "report.md").read_text()


def test_an_export_of_one_run_is_a_run_folder_with_a_model_card(tiny, runs, tmp_path, capsys):
    out = tmp_path / "export"
    assert main(["export", str(runs[0]), str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"exported 1 run(s) to {out}; model card: {out / 'README.md'}"
    card = (out / "README.md").read_text()
    metrics = json.loads((runs[0] / "metrics.json").read_text())
    assert card.startswith("---\nlibrary_name: spp-scl\n")
    assert f"      value: {metrics['test']['accuracy']:.4f}\n" in card  # the model-index holds test accuracy
    assert "## Encoders (frozen)" in card and str(Path(tiny["text"]).resolve()) in card
    assert "| run | seed | selected epoch | epochs run | command |" in card
    assert json.loads((out / "export.json").read_text())["runs"] == ["."]
    pair = _pair(tiny)
    assert load_run(out).predict([pair]) == load_run(runs[0]).predict([pair])


def test_an_export_of_seeds_predicts_as_their_ensemble(tiny, runs, tmp_path):
    out = tmp_path / "ensemble"
    assert main(["export", *map(str, runs), str(out)]) == 0
    members = json.loads((out / "export.json").read_text())["runs"]
    assert members == [runs[0].name, runs[1].name] or members == [f"{r.name}-seed{s}" for r, s in zip(runs, (42, 43))]
    pair = _pair(tiny)
    expected = _serve(runs, pair)
    served = load_run(out).predict([pair])[0]
    assert served["prediction"] == expected["prediction"] and served["probabilities"] == expected["probabilities"]
    card = (out / "README.md").read_text()
    assert "| mean +- std [95% interval] |" in card and "| seed ensemble (what predict serves) |" in card


def test_an_export_refuses_a_used_folder_and_unfinished_runs(runs, tmp_path, capsys):
    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("mine")
    assert main(["export", str(runs[0]), str(used)]) == EXIT_REFUSED
    assert capsys.readouterr().err.strip() == (
        f"error: {used} exists and is not an empty folder: choose another OUT (an export never overwrites)"
    )
    assert (used / "notes.txt").read_text() == "mine"
    unfinished = tmp_path / "unfinished"
    shutil.copytree(runs[0], unfinished)
    (unfinished / "metrics.json").unlink()
    assert main(["export", str(unfinished), str(tmp_path / "out")]) == EXIT_INPUT
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.export-partial").exists()


def test_an_export_manifest_cannot_lead_outside_the_export(runs, tmp_path):
    out = tmp_path / "ensemble"
    assert main(["export", *map(str, runs), str(out)]) == 0
    (out / "export.json").write_text(json.dumps({"runs": ["../../elsewhere"]}))
    with pytest.raises(Exception) as error:
        Predictor(out)
    assert (
        str(error.value)
        == f"{out / 'export.json'}: field runs names '../../elsewhere', which is not a subfolder of the export"
    )
