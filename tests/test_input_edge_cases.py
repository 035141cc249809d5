"""Inputs a careless or hostile user gives: files with a UTF-8 byte-order mark (Excel, Notepad) read as without
one, a FIFO given as an image refused at once instead of hanging, classes read off the labels said and a
mistyped label flagged, and ids that look like spreadsheet formulas written as text in every CSV the tool
writes."""

from __future__ import annotations

import csv
import json
import os
import shutil
import threading
from pathlib import Path

import pytest

from spp_scl.core.spreadsheet import spreadsheet_safe
from spp_scl.extract.images import ImageProblem, load_rgb
from spp_scl.extract.records import data_notes, read_dataset
from spp_scl.runs.predict.pair_files import PairResult, ResultWriter, read_pair_file
from spp_scl.runs.predict.predictor import Predictor
from tests.tiny_run import tiny_run

BOM = "\ufeff"


def test_a_split_file_with_a_byte_order_mark_reads_as_without(tiny, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny["data"], data)
    plain = read_dataset(data, "mvsa-single")
    dev = data / "dev.json"
    dev.write_text(BOM + dev.read_text(), encoding="utf-8")
    with_bom = read_dataset(data, "mvsa-single")
    assert [(r.id, r.text, r.label) for r in with_bom.records] == [(r.id, r.text, r.label) for r in plain.records]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".json"])
def test_a_pair_file_with_a_byte_order_mark_reads_as_without(tiny, tmp_path, suffix):
    records = json.loads((Path(tiny["data"]) / "dev.json").read_text())[:3]
    path = tmp_path / f"pairs{suffix}"
    if suffix == ".csv":
        lines = ["id,text"] + [f"{r['id']},{r['text']}" for r in records]
        text = "\r\n".join(lines) + "\r\n"  # as Excel writes it: a BOM, CRLF line ends
    elif suffix == ".jsonl":
        text = "".join(json.dumps({"id": r["id"], "text": r["text"]}) + "\n" for r in records)
    else:
        text = json.dumps([{"id": r["id"], "text": r["text"]} for r in records])
    path.write_text(BOM + text, encoding="utf-8", newline="")
    pairs = list(read_pair_file(path, Path(tiny["data"]) / "images"))
    assert [(p.id, p.text, p.problem) for p in pairs] == [(r["id"], r["text"], None) for r in records]


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "photo.jpg"
    os.mkfifo(path)
    yield path
    # Should a reader be stuck on it (the behaviour this guards against), give it an end of file.
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass


def _finishes(function, seconds=60.0):
    """function()'s result, or a failure if it is still blocked after `seconds` (a hang, not a slow run)."""
    outcome = {}

    def call():
        try:
            outcome["value"] = function()
        except Exception as error:
            outcome["error"] = error

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "blocked reading a FIFO"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def test_a_fifo_given_as_an_image_is_refused_at_once(tiny, tmp_path_factory, fifo):
    with pytest.raises(ImageProblem, match="not a regular file"):
        _finishes(lambda: load_rgb(fifo))
    predictor = Predictor(tiny_run(tiny, tmp_path_factory))
    good = json.loads((Path(tiny["data"]) / "dev.json").read_text())[0]
    results = _finishes(
        lambda: list(
            predictor.predict(
                [("fifo", fifo, "a text"), (good["id"], Path(tiny["data"]) / "images" / f"{good['id']}.jpg", "hi")]
            )
        )
    )
    assert "not a regular file" in results[0].error and results[1].error is None


def _generic_file(tiny, tmp_path, labels: list[str]) -> Path:
    records = json.loads((Path(tiny["data"]) / "train.json").read_text())
    path = tmp_path / "posts.jsonl"
    with path.open("w") as handle:
        for record, label in zip(records, labels):
            image = str(Path(tiny["data"]) / "images" / f"{record['id']}.jpg")
            handle.write(json.dumps({"image": image, "text": record["text"], "label": label, "split": "train"}) + "\n")
    return path


def test_classes_read_off_the_labels_are_said_and_a_rare_one_flagged(tiny, tmp_path):
    labels = ["positive", "negative"] * 10 + ["postive"]
    dataset = read_dataset(_generic_file(tiny, tmp_path, labels), images=tmp_path.anchor)
    notes = data_notes(dataset)
    assert (
        notes[0]
        == "classes inferred from the labels (no --dataset or --classes): negative (10), positive (10), postive (1)"
    )
    assert len(notes) == 2 and "class 'postive' has only 1 record" in notes[1]
    named = read_dataset(
        _generic_file(tiny, tmp_path, labels), images=tmp_path.anchor, classes=["positive", "negative"]
    )
    assert data_notes(named) == []
    assert [s.reason for s in named.skipped] == ["label is not one of the dataset's classes"]


@pytest.mark.parametrize(
    "cell, written",
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1+2", "'+1+2"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("-3", "-3"),
        ("+1.5e3", "+1.5e3"),
        ("post=1", "post=1"),
    ],
)
def test_formula_like_cells_are_written_as_text(cell, written):
    assert spreadsheet_safe(cell) == written


def test_predict_csv_output_never_holds_a_formula(tmp_path):
    out = tmp_path / "out.csv"
    writer = ResultWriter(out, ["a", "b"])
    writer.write(PairResult("=cmd|' /C calc'!A0", "a", {"a": 0.7, "b": 0.3}))
    writer.write(PairResult("@x", error="=image not found"))
    writer.close()
    rows = list(csv.DictReader(out.open()))
    assert rows[0]["id"] == "'=cmd|' /C calc'!A0" and rows[1]["id"] == "'@x" and rows[1]["error"] == "'=image not found"


def test_a_fifo_given_as_the_pair_file_is_refused_at_once(tiny, tmp_path_factory, tmp_path, capsys):
    from spp_scl.cli import main as spp_scl
    from spp_scl.core.errors import EXIT_INPUT

    pairs = tmp_path / "pairs.jsonl"
    os.mkfifo(pairs)
    run_dir = str(tiny_run(tiny, tmp_path_factory))
    try:
        assert _finishes(lambda: spp_scl(["predict", run_dir, "--pairs", str(pairs), "--no-progress"])) == EXIT_INPUT
    finally:
        try:
            os.close(os.open(pairs, os.O_WRONLY | os.O_NONBLOCK))  # unblock a reader, should there be one
        except OSError:
            pass
    assert capsys.readouterr().err.strip() == f"error: {pairs}: not a regular file"
