"""The Python API (spp_scl.api, re-exported by spp_scl) end to end on the tiny encoders and generated data:
extract -> train -> load_run -> predict -> evaluate; and `spp-scl evaluate` on a labelled CSV, with its errors."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import spp_scl
from spp_scl.core.errors import InputError, Refused
from spp_scl.runs.train.metrics import classification_metrics

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def api_run(tiny, tmp_path_factory):
    base = tmp_path_factory.mktemp("api")
    cache = spp_scl.extract(
        tiny["data"],
        base / "cache.h5",
        dataset="mvsa-single",
        text_encoder=tiny["text"],
        image_encoder=tiny["image"],
        shard_size=16,
        text_batch_size=8,
        image_batch_size=8,
        progress=False,
    )
    run = spp_scl.train(cache, base / "run", "mvsa-single", epochs=2, batch_size=8, lr=2e-3)
    return cache, run


def labelled_pairs(tiny, split="test"):
    """The split's records as predict's dicts, with their labels."""
    data = tiny["data"]
    rows = json.loads((Path(data) / f"{split}.json").read_text())
    return [
        {"id": row["id"], "image": f"{data}/images/{row['id']}.jpg", "text": row["text"], "label": row["emotion_label"]}
        for row in rows
    ]


def test_extract_train_load_predict_evaluate(api_run, tiny):
    cache, run = api_run
    assert cache.is_file() and run.path.is_dir()
    loaded = spp_scl.load_run(run.path)
    assert loaded.config == run.config and loaded.metrics == run.metrics
    assert set(loaded.metrics) >= {"dev", "test"} and 0 <= loaded.metrics["test"]["accuracy"] <= 1
    assert loaded.config.epochs == 2 and loaded.config.lr == 2e-3

    pairs = labelled_pairs(tiny)
    results = loaded.predict(pairs)
    assert [r["id"] for r in results] == [p["id"] for p in pairs]
    assert all(r["prediction"] in loaded.class_names for r in results)
    assert loaded.predict([(pairs[0]["image"], pairs[0]["text"])])[0]["prediction"] == results[0]["prediction"]

    expected = classification_metrics(
        np.array([p["label"] for p in pairs]),  # the generated labels are class indices
        np.array([loaded.class_names.index(r["prediction"]) for r in results]),
        loaded.class_names,
    )
    # The same pairs as a list of dicts, and as the CLMLF split file (emotion_label, images/<id>.jpg).
    for source in (pairs, f"{tiny['data']}/test.json"):
        metrics = spp_scl.evaluate(loaded, source)
        assert {key: metrics[key] for key in expected} == expected
        assert metrics["pairs"] == len(pairs) and metrics["not_predicted"] == metrics["unlabelled"] == 0
    # The test split is the one the trainer scored: its metrics.json agrees.
    assert metrics["accuracy"] == pytest.approx(loaded.metrics["test"]["accuracy"])


def test_unserved_and_unlabelled_pairs_are_counted(api_run, tiny):
    _, run = api_run
    pairs = labelled_pairs(tiny)[:4]
    pairs[1] = {**pairs[1], "image": "no/such.jpg"}
    pairs[2] = {**pairs[2], "label": "postive"}
    metrics = spp_scl.evaluate(str(run.path), pairs)
    assert (metrics["pairs"], metrics["records"], metrics["not_predicted"], metrics["unlabelled"]) == (4, 2, 1, 1)
    assert metrics["not_predicted_examples"][0]["id"] == pairs[1]["id"]
    assert "'postive' is not one of" in metrics["unlabelled_examples"][0]["error"]


def test_bad_calls_are_one_line_errors(api_run, tiny, tmp_path):
    cache, run = api_run
    with pytest.raises(InputError, match="no pair has a 'label' field"):
        spp_scl.evaluate(run, [{k: v for k, v in p.items() if k != "label"} for p in labelled_pairs(tiny)[:2]])
    with pytest.raises(Refused, match="holds a finished run"):
        spp_scl.train(cache, run.path, epochs=1)
    with pytest.raises(InputError, match="did you mean 'text_layers'"):
        spp_scl.extract(tiny["data"], tmp_path / "x.h5", text_layer=[1])
    with pytest.raises(InputError, match="did you mean 'device'"):
        run.predict([], devices="cpu")


def write_csv(path, pairs, label=True):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "text", *(["label"] if label else [])])
        for pair in pairs:
            writer.writerow([pair["image"], pair["text"], *([pair["label"]] if label else [])])


def evaluate_cli(*argv):
    return subprocess.run(
        [sys.executable, "-m", "spp_scl", "evaluate", *map(str, argv)], capture_output=True, text=True, timeout=600
    )


def test_evaluate_verb_on_a_labelled_csv(api_run, tiny, tmp_path):
    _, run = api_run
    pairs = labelled_pairs(tiny)
    pairs[0] = {**pairs[0], "image": "no/such.jpg"}
    write_csv(tmp_path / "labelled.csv", pairs)
    result = evaluate_cli(run.path, "--pairs", tmp_path / "labelled.csv", "--out", tmp_path / "metrics.json")
    assert result.returncode == 0, result.stderr
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written == spp_scl.evaluate(run, tmp_path / "labelled.csv")
    assert (written["records"], written["not_predicted"]) == (len(pairs) - 1, 1)
    assert f"accuracy {written['accuracy']:.4f}" in result.stdout
    assert f"{len(pairs) - 1} of {len(pairs)} pairs scored (1 not predicted" in result.stdout
    assert f"1 of {len(pairs)} pairs could not be predicted" in result.stderr


def test_evaluate_verb_refuses_a_file_without_labels(api_run, tiny, tmp_path):
    _, run = api_run
    write_csv(tmp_path / "unlabelled.csv", labelled_pairs(tiny)[:3], label=False)
    result = evaluate_cli(run.path, "--pairs", tmp_path / "unlabelled.csv")
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "unlabelled.csv" in lines[0] and "'label'" in lines[0]
