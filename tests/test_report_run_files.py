"""`spp-scl report` reads a run folder's metrics.json and log.jsonl only once they have the shape `spp-scl train`
writes: an edited, cut or foreign file is one line naming it (and the line of log.jsonl), status 3, never a
traceback or a bare key."""

from __future__ import annotations

import json
import shutil

import pytest

from spp_scl.cli import main as spp_scl
from spp_scl.core.errors import EXIT_INPUT, InputError
from spp_scl.runs.report.run_files import read_log, read_metrics
from tests.tiny_run import tiny_run

CLASSES = ["positive", "neutral", "negative"]


def _metrics(**changes) -> dict:
    split = {
        "accuracy": 0.5,
        "f1_weighted": 0.4,
        "f1_macro": 0.3,
        "records": 12,
        "confusion_matrix": [[1, 2, 1], [0, 4, 0], [1, 1, 2]],
        "per_class": {name: {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 4} for name in CLASSES},
    }
    return {"selected_epoch": 2, "selection_metric": "f1_weighted", "dev": split, "test": split, **changes}


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("[]", "not a JSON object"),
        ('{"dev": 3}', "dev is not an object"),
        (json.dumps(_metrics(dev={**_metrics()["dev"], "accuracy": "high"})), "dev.accuracy is not a number"),
        (json.dumps(_metrics(test={**_metrics()["test"], "confusion_matrix": "none"})), "test.confusion_matrix"),
        (json.dumps(_metrics(dev={**_metrics()["dev"], "per_class": {}})), "lacks the precision, recall, F1"),
        ('{"dev": ', "is not JSON"),
    ],
)
def test_a_metrics_file_not_written_by_train_is_one_line_naming_it(tmp_path, content, problem):
    path = tmp_path / "metrics.json"
    path.write_text(content)
    with pytest.raises(InputError, match=r"metrics\.json") as raised:
        read_metrics(path, CLASSES)
    assert problem in str(raised.value) and "\n" not in str(raised.value)
    path.write_text(json.dumps(_metrics()))
    assert read_metrics(path, CLASSES)["selected_epoch"] == 2


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("[1, 2]", "not a JSON object"),
        ('{"epoch": "x", "dev_accuracy": 1, "dev_f1_weighted": 1, "dev_f1_macro": 1}', "epoch is not a whole number"),
        ('{"epoch": 2}', "dev_accuracy is not a number"),
        ('{"epoch": 2, "dev_accuracy": 1, "dev_f1_weighted": 1, "dev_f1_macro": 1, "ce": {}}', "ce is neither"),
        ("not json", "is not JSON"),
    ],
)
def test_a_log_line_not_written_by_train_is_named_by_its_number(tmp_path, line, problem):
    good = '{"epoch": 1, "dev_accuracy": 0.5, "dev_f1_weighted": 0.4, "dev_f1_macro": 0.3, "ha_weight_mean": [1.0]'
    good += ', "ha_weight_std": [0.0], "selected": true}'
    path = tmp_path / "log.jsonl"
    path.write_text(good + "\n" + line + "\n")
    with pytest.raises(InputError, match=r"log\.jsonl: line 2 ") as raised:
        read_log(path)
    assert problem in str(raised.value) and "\n" not in str(raised.value)
    path.write_text(good + "\n")
    assert [line["epoch"] for line in read_log(path)] == [1]


@pytest.mark.slow
def test_report_on_a_run_with_a_damaged_log_is_exit_3_and_one_line(tiny, tmp_path_factory, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run(tiny, tmp_path_factory), run_dir)
    (run_dir / "log.jsonl").write_text("[1, 2]\n")  # not covered by finished.json's checksums: read as it is
    assert spp_scl(["report", str(run_dir), "--no-tsne"]) == EXIT_INPUT
    error = capsys.readouterr().err.strip().splitlines()
    assert error[-1] == (
        f"error: {run_dir}: {run_dir}/log.jsonl: line 1 is not an epoch line written by `spp-scl train` (not a JSON "
        "object)"
    )
    assert not any("Traceback" in line for line in error)
