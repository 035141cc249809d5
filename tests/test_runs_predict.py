"""predict: from raw images and texts it reproduces the trainer's own dev predictions, a pair's result does not
depend on its batch (cmf-batch included, through its fixed reference batch), bad pairs get error rows while the
others are predicted, the wrong encoders are refused, and the command line writes JSON lines and CSV."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spp_scl.cli import main as spp_scl
from spp_scl.extract.demo import make_tiny_text_encoder
from spp_scl.runs.predict.predictor import EncoderMismatch, Predictor, predict_pairs
from spp_scl.runs.predict.run_folder import RunFolderError
from tests.tiny_run import tiny_run


@pytest.fixture(scope="module")
def run_dir(tiny, tmp_path_factory):
    return tiny_run(tiny, tmp_path_factory)


@pytest.fixture(scope="module")
def predictor(run_dir):
    return Predictor(run_dir, batch_size=5)


def _dev_pairs(tiny) -> list[tuple[str, Path, str]]:
    records = json.loads((Path(tiny["data"]) / "dev.json").read_text())
    return [(r["id"], Path(tiny["data"]) / "images" / f"{r['id']}.jpg", r["text"]) for r in records]


def _probabilities(results, class_names) -> np.ndarray:
    return np.array([[r.probabilities[name] for name in class_names] for r in results])


def test_predict_from_raw_inputs_equals_the_trainers_dev_predictions(tiny, run_dir, predictor):
    with (run_dir / "predictions.csv").open() as handle:
        saved = [row for row in csv.DictReader(handle) if row["split"] == "dev"]
    results = list(predictor.predict(_dev_pairs(tiny)))
    assert [r.id for r in results] == [row["id"] for row in saved]
    assert all(r.error is None for r in results)
    assert [r.prediction for r in results] == [row["prediction"] for row in saved]
    stored = np.array([[float(row[f"p_{name}"]) for name in predictor.class_names] for row in saved])
    # The cache encoded texts in other batches (float rounding ~1e-7, then float16) and stored 6 decimals:
    # measured differences are below 1e-6.
    np.testing.assert_allclose(_probabilities(results, predictor.class_names), stored, atol=2e-5)


def test_a_pairs_result_does_not_depend_on_its_batch(tiny, run_dir, predictor):
    pairs = _dev_pairs(tiny)
    together = _probabilities(predictor.predict(pairs), predictor.class_names)
    alone = _probabilities([next(iter(predictor.predict([pair]))) for pair in pairs], predictor.class_names)
    reversed_order = _probabilities(Predictor(run_dir, batch_size=12).predict(pairs[::-1]), predictor.class_names)[::-1]
    np.testing.assert_allclose(alone, together, atol=1e-5)
    np.testing.assert_allclose(reversed_order, together, atol=1e-5)


def test_batch_attention_fusion_scores_each_pair_in_one_fixed_reference_batch(tiny, tmp_path_factory, tmp_path):
    run_dir = tiny_run(tiny, tmp_path_factory, fusion="cmf-batch")
    pairs = _dev_pairs(tiny)
    by_fives = Predictor(run_dir, batch_size=5)
    together = _probabilities(by_fives.predict(pairs), by_fives.class_names)
    alone = _probabilities(Predictor(run_dir, batch_size=1).predict(pairs[3:6]), by_fives.class_names)
    np.testing.assert_allclose(alone, together[3:6], atol=1e-5)
    context_v, _ = by_fives.batch_context
    assert len(context_v) == 7  # batch size 8 - 1: the first 7 dev records of the cache

    moved = tmp_path / "moved-run"  # the same run without its cache: predict refuses, saying why
    shutil.copytree(run_dir, moved)
    config = json.loads((moved / "config.json").read_text())
    (moved / "config.json").write_text(json.dumps({**config, "cache": str(tmp_path / "gone.h5")}))
    with pytest.raises(RunFolderError, match="cmf-batch"):
        Predictor(moved, text_encoder=tiny["text"], image_encoder=tiny["image"])


def test_bad_pairs_get_error_rows_and_the_others_are_predicted(tiny, predictor, tmp_path):
    good = _dev_pairs(tiny)[:2]
    undecodable = tmp_path / "noise.jpg"
    undecodable.write_bytes(b"this is not a jpeg" * 20)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good[0][1].read_bytes()[:300])
    pairs = [
        good[0],
        ("missing", tmp_path / "nope.jpg", "a text"),
        ("noise", undecodable, "a text"),
        ("truncated", truncated, "a text"),
        ("empty", good[1][1], ""),
        ("blank", good[1][1], "  \n"),
        ("no-text", good[1][1], None),
        good[1],
        ("pil", Image.open(good[1][1]), good[1][2]),
    ]
    results = list(predictor.predict(pairs))
    errors = {r.id: r.error for r in results if r.error}
    assert set(errors) == {"missing", "noise", "truncated", "empty", "blank", "no-text"}
    assert "image not found" in errors["missing"] and "nope.jpg" in errors["missing"]
    assert "noise.jpg" in errors["noise"] and "truncated.jpg" in errors["truncated"]
    assert errors["empty"] == "empty text" and errors["blank"] == "whitespace-only text"
    assert "not a string" in errors["no-text"]
    alone = predict_pairs(predictor.run.path, good, batch_size=1)
    scored = [r for r in results if r.error is None]
    assert [r.id for r in scored] == [good[0][0], good[1][0], "pil"]
    np.testing.assert_allclose(
        _probabilities(scored[:2], predictor.class_names), _probabilities(alone, predictor.class_names), atol=1e-5
    )
    # A PIL image in memory is decoded as its file is.
    np.testing.assert_allclose(
        _probabilities(scored[2:], predictor.class_names), _probabilities(alone[1:], predictor.class_names), atol=1e-5
    )


def test_other_encoders_are_refused_with_the_differences(tiny, run_dir, tmp_path):
    other_text = make_tiny_text_encoder(tmp_path / "other-text", seed=1)
    with pytest.raises(EncoderMismatch, match=r"text\.weights_sha256"):
        Predictor(run_dir, text_encoder=str(other_text))
    copy = tmp_path / "same-text-elsewhere"  # the same weights loaded from another path are accepted
    shutil.copytree(tiny["text"], copy)
    assert Predictor(run_dir, text_encoder=str(copy)).text.name == str(copy)


def test_command_line_single_pair_and_pair_files(tiny, run_dir, tmp_path, capsys):
    pairs = _dev_pairs(tiny)
    assert spp_scl(["predict", str(run_dir), "--image", str(pairs[0][1]), "--text", pairs[0][2], "--id", "one"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["id"] == "one" and row["prediction"] in row["probabilities"]
    assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)

    # A texts file with ids and a folder of <id>.jpg; one row names a missing image.
    texts = tmp_path / "texts.csv"
    with texts.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text"])
        writer.writerows([[pairs[1][0], pairs[1][2]], ["99999", "no such image"], [pairs[2][0], pairs[2][2]]])
    out = tmp_path / "out.csv"
    code = spp_scl(
        [
            "predict",
            str(run_dir),
            "--pairs",
            str(texts),
            "--images",
            str(Path(tiny["data"]) / "images"),
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 1  # some pairs got an error row
    rows = list(csv.DictReader(out.open()))
    assert [r["id"] for r in rows] == [pairs[1][0], "99999", pairs[2][0]]
    assert rows[1]["prediction"] == "" and "99999.jpg" in rows[1]["error"]
    assert rows[0]["error"] == "" and rows[0]["prediction"] in ("positive", "neutral", "negative")

    # The CLMLF dev.json itself (images in its images/ folder), as JSON lines on stdout.
    assert spp_scl(["predict", str(run_dir), "--pairs", str(Path(tiny["data"]) / "dev.json"), "--no-progress"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["id"] for line in lines] == [pair[0] for pair in pairs]

    other = make_tiny_text_encoder(tmp_path / "other-bert", seed=1)  # same shapes, other weights
    assert (
        spp_scl(["predict", str(run_dir), "--image", str(pairs[0][1]), "--text", "x", "--text-encoder", str(other)])
        == 4  # refused: not the encoders the cache was made with
    )
    assert "error" in capsys.readouterr().err
    not_a_model = ["predict", str(run_dir), "--image", str(pairs[0][1]), "--text", "x", "--text-encoder", str(tmp_path)]
    assert spp_scl(not_a_model) == 3
    assert f"--text-encoder {tmp_path}: the folder has no config.json" in capsys.readouterr().err


def test_a_bfloat16_runs_predictions_are_what_predict_gives(tiny, tmp_path_factory):
    # Trained under bfloat16 autocast, the run's weights are float32; predictions.csv and metrics.json are computed
    # from them in float32, as predict does on any device (under autocast they differed by up to 5e-4 here).
    from spp_scl.heads.precision import fast_bfloat16

    if not fast_bfloat16("cpu"):
        pytest.skip("bfloat16 training needs AVX512-BF16 or AMX on this CPU")
    run_dir = tiny_run(tiny, tmp_path_factory, precision="bfloat16")
    predictor = Predictor(run_dir, batch_size=5)
    with (run_dir / "predictions.csv").open() as handle:
        saved = [row for row in csv.DictReader(handle) if row["split"] == "dev"]
    stored = np.array([[float(row[f"p_{name}"]) for name in predictor.class_names] for row in saved])
    results = list(predictor.predict(_dev_pairs(tiny)))
    np.testing.assert_allclose(_probabilities(results, predictor.class_names), stored, atol=2e-5)
