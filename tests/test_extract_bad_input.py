"""Every bad input has its defined outcome: decodable images become RGB, the rest is skipped with its reason
(or stops a strict run with an error naming the file and the record), and nothing written is lost."""

from __future__ import annotations

import csv
import json
import shutil

import h5py
import numpy as np
import pytest
from PIL import Image

from spp_scl.extract.images import ImageProblem, load_rgb
from spp_scl.extract.pipeline import run, skipped_report_path
from spp_scl.extract.records import BadInput, read_dataset
from tests.conftest import tiny_config


def _picture(seed: int, size=(70, 50)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


@pytest.fixture()
def messy(tmp_path):
    """A split folder with one record for each kind of bad input, beside good ones."""
    images = tmp_path / "data" / "images"
    images.mkdir(parents=True)
    train, dev = [], []

    def add(split, record_id, text="a plain day in the city", label=0, image=None):
        (train if split == "train" else dev).append({"id": record_id, "text": text, "emotion_label": label})
        if image is not None:
            image(images / f"{record_id}.jpg")

    for i in range(1, 5):
        add("train", f"good{i}", image=lambda p, i=i: _picture(i).save(p))
    add("train", "grey", image=lambda p: _picture(5).convert("L").save(p, "JPEG"))
    add("train", "cmyk", image=lambda p: _picture(6).convert("CMYK").save(p, "JPEG"))
    add("train", "palette", image=lambda p: _picture(7).convert("P").save(p, "PNG"))
    add("train", "rgba", image=lambda p: _picture(8).convert("RGBA").save(p, "PNG"))
    add("train", "png", image=lambda p: _picture(9).save(p, "PNG"))
    add("train", "missing")
    add("train", "truncated", image=lambda p: p.write_bytes(_jpeg_bytes(10)[:600]))
    add("train", "garbage", image=lambda p: p.write_bytes(b"this is not an image at all" * 20))
    add("train", "empty", text="", image=lambda p: _picture(11).save(p))
    add("train", "blank", text="  \t ", image=lambda p: _picture(12).save(p))
    add("train", "russian", text="Привет, как дела? Всё хорошо", image=lambda p: _picture(13).save(p))
    _picture(14).save(tmp_path / "data" / "escape.jpg")
    add("train", "../escape")
    add("train", "badlabel", label=7, image=lambda p: _picture(15).save(p))
    add("dev", "good1")  # duplicate of a train id
    add("dev", "dev1", image=lambda p: _picture(16).save(p))
    dev.append({"id": "nolabel", "text": "missing its label"})
    (tmp_path / "data" / "train.json").write_text(json.dumps(train))
    (tmp_path / "data" / "dev.json").write_text(json.dumps(dev))
    return tmp_path / "data"


def _jpeg_bytes(seed: int) -> bytes:
    import io

    buffer = io.BytesIO()
    _picture(seed, (200, 200)).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


EXPECTED_REASONS = {
    "missing": "image not found",
    "truncated": "image could not be decoded",
    "garbage": "not a decodable image",
    "empty": "empty text",
    "blank": "whitespace-only text",
    "russian": "non-English text",
    "../escape": "reaches outside",
    "badlabel": "label is not one of the dataset's classes",
    "good1": "duplicate id (first at train.json[0])",
    "nolabel": "malformed record",
}


def test_each_bad_input_gets_its_outcome(tiny, messy, tmp_path):
    out = tmp_path / "cache.h5"
    summary = run(tiny_config(tiny, out, data=str(messy)))
    reasons = {item["id"]: item["reason"] for item in summary.skipped}
    assert reasons.keys() == EXPECTED_REASONS.keys()
    for record_id, expected in EXPECTED_REASONS.items():
        assert expected in reasons[record_id], (record_id, reasons[record_id])
    with h5py.File(out, "r") as file:
        assert list(file["train"]["ids"].asstr()[:]) == [
            "good1",
            "good2",
            "good3",
            "good4",
            "grey",
            "cmyk",
            "palette",
            "rgba",
            "png",
        ]
        assert list(file["dev"]["ids"].asstr()[:]) == ["dev1"]
    with skipped_report_path(out).open() as handle:
        report = list(csv.DictReader(handle))
    assert {row["id"] for row in report} == EXPECTED_REASONS.keys()
    assert all(row["source"].startswith(("train.json[", "dev.json[")) for row in report)


def test_non_english_text_is_kept_when_asked(tiny, messy, tmp_path):
    summary = run(tiny_config(tiny, tmp_path / "cache.h5", data=str(messy), allow_non_english=True))
    assert "russian" not in {item["id"] for item in summary.skipped}


def test_decodable_images_become_rgb(messy):
    images = messy / "images"
    for name in ("grey", "cmyk", "palette", "png"):
        converted = load_rgb(images / f"{name}.jpg")
        assert converted.mode == "RGB"
        assert np.array_equal(np.asarray(converted), np.asarray(Image.open(images / f"{name}.jpg").convert("RGB")))
    rgba = Image.open(images / "rgba.jpg")
    assert rgba.format == "PNG" and rgba.mode == "RGBA"
    half = rgba.copy()
    half.putalpha(128)
    half.save(images / "half.png")
    composite = np.asarray(load_rgb(images / "half.png"), dtype=np.float64)
    colour = np.asarray(rgba.convert("RGB"), dtype=np.float64)
    np.testing.assert_allclose(composite, colour * 128 / 255 + 255 * (1 - 128 / 255), atol=1.01)
    for name, reason in (
        ("truncated", "could not be decoded"),
        ("garbage", "not a decodable image"),
        ("nothere", "image not found"),
    ):
        with pytest.raises(ImageProblem, match=reason):
            load_rgb(images / f"{name}.jpg")


def test_strict_mode_names_the_file_and_record(tiny, messy, tmp_path):
    with pytest.raises(BadInput, match=r"train\.json\[9\]: record id 'missing': image not found"):
        run(tiny_config(tiny, tmp_path / "a.h5", data=str(messy), strict=True))
    # An image that fails only when decoded stops a strict run too, and the shards before it are kept.
    clean = tmp_path / "clean"
    shutil.copytree(messy, clean)
    records = json.loads((clean / "train.json").read_text())
    keep = [r for r in records if r["id"] in ("good1", "good2", "good3", "good4", "grey", "truncated")]
    (clean / "train.json").write_text(json.dumps(keep))
    (clean / "dev.json").unlink()
    out = tmp_path / "b.h5"
    with pytest.raises(BadInput, match=r"train\.json\[5\]: record id 'truncated': image could not be decoded"):
        run(tiny_config(tiny, out, data=str(clean), strict=True, shard_size=4))
    assert (out.parent / "b.h5.parts" / "shard-00000.safetensors").exists()


def test_generic_jsonl_and_csv(tmp_path):
    folder = tmp_path / "mine"
    (folder / "pics").mkdir(parents=True)
    for i in range(4):
        _picture(20 + i).save(folder / "pics" / f"{i}.jpg")
    rows = [
        {"image": "pics/0.jpg", "text": "great", "label": "joy", "split": "train"},
        {"image": "pics/1.jpg", "text": "meh", "label": "anger", "split": "validation"},
        {"image": "pics/2.jpg", "text": "fine", "label": "joy", "split": "test", "id": "custom"},
        {"image": "pics/3.jpg", "text": "odd", "label": "joy", "split": "holdout"},
    ]
    lines = [json.dumps(row) for row in rows]
    lines.insert(2, '{"image": "pics/9.jpg", "text": broken')
    (folder / "posts.jsonl").write_text("\n".join(lines) + "\n")
    dataset = read_dataset(folder / "posts.jsonl")
    assert dataset.class_names == ["anger", "joy"]
    assert [(r.split, r.id, r.label) for r in dataset.records] == [
        ("train", "pics/0.jpg", 1),
        ("dev", "pics/1.jpg", 0),
        ("test", "custom", 1),
    ]
    assert {s.source: s.reason.split(":")[0] for s in dataset.skipped} == {
        "posts.jsonl:3": "malformed JSON line",
        "posts.jsonl:5": "unknown split 'holdout' (train, dev, test)",
    }
    with pytest.raises(BadInput, match=r"posts\.jsonl:3"):
        read_dataset(folder / "posts.jsonl", strict=True)

    with (folder / "posts.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "text", "label", "split"])
        writer.writerow(["pics/0.jpg", "great, really", "2", "train"])
        writer.writerow(["pics/1.jpg", "too", "many", "cells", "here"])
        writer.writerow(["pics/2.jpg", "fine", "0", "dev"])
    dataset = read_dataset(folder / "posts.csv", classes=["neg", "neu", "pos"])
    assert dataset.class_names == ["neg", "neu", "pos"]
    assert [(r.text, r.label) for r in dataset.records] == [("great, really", 2), ("fine", 0)]
    assert [s.reason for s in dataset.skipped] == ["malformed CSV line: 5 fields, the header has 4"]
    (folder / "bad.csv").write_text("picture,text,label\nx.jpg,hi,0\n")
    with pytest.raises(BadInput, match=r"bad\.csv lacks the column\(s\) \['image', 'split'\]"):
        read_dataset(folder / "bad.csv")


def test_whole_file_problems_are_errors_naming_the_file(tmp_path):
    folder = tmp_path / "d"
    (folder / "images").mkdir(parents=True)
    (folder / "train.json").write_text('[{"id": "1", "text": "x", "emotion_label": 0},')
    with pytest.raises(BadInput, match=r"train\.json is not valid JSON"):
        read_dataset(folder, "mvsa-single")
    with pytest.raises(BadInput, match="name its classes with --dataset"):
        read_dataset(folder)
    with pytest.raises(BadInput, match="no such file or folder"):
        read_dataset(tmp_path / "absent", "hfm")


def test_bad_plugin_preprocess_names_the_key(tmp_path, tiny):
    plugin = tmp_path / "bad_plugin.py"
    plugin.write_text(
        "import torch\ndef build():\n    return torch.nn.Conv2d(3, 4, 2), "
        "{'resize': 40, 'crop': 32, 'mean': [0.5, 0.5], 'std': [1, 1, 1], 'name': 'x'}\n"
    )
    with pytest.raises(ValueError, match=r"preprocess\['mean'\] must be 3 numbers"):
        run(tiny_config(tiny, tmp_path / "c.h5", image_encoder=f"{plugin}:build"))
    with pytest.raises(ValueError, match="has no function nothere"):
        run(tiny_config(tiny, tmp_path / "c.h5", image_encoder=f"{plugin}:nothere"))


def test_label_names_win_over_indices_and_known_datasets_fix_the_classes(tmp_path):
    from spp_scl.extract.records import parse_label

    assert parse_label("1", ["1", "2", "3"]) == 0 and parse_label("3", ["1", "2", "3"]) == 2
    assert parse_label(2, ["a", "b", "c"]) == 2 and parse_label("7", ["a", "b"]) is None
    assert parse_label(None, ["a"]) is None and parse_label(True, ["a", "b"]) is None
    _picture(1).save(tmp_path / "x.jpg")
    # A BOM-prefixed CSV (as spreadsheet programs save it) with the classes of a known dataset.
    (tmp_path / "posts.csv").write_bytes("\ufeffimage,text,label,split\nx.jpg,nice,negative,train\n".encode("utf-8"))
    dataset = read_dataset(tmp_path / "posts.csv", dataset="mvsa-single")
    assert dataset.class_names == ["positive", "neutral", "negative"]
    assert [r.label for r in dataset.records] == [2]


def test_unusable_paths_and_extreme_images_are_skipped(tmp_path, tiny):
    data = tmp_path / "d"
    (data / "images").mkdir(parents=True)
    _picture(1).save(data / "images" / "ok.jpg")
    Image.new("RGB", (2000, 20), (200, 10, 10)).save(data / "images" / "thin.jpg")
    rows = [
        {"id": "ok", "text": "fine", "emotion_label": 0},
        {"id": "bad\u0000id", "text": "x", "emotion_label": 0},
        {"id": "thin", "text": "a very wide banner", "emotion_label": 1},
    ]
    (data / "train.json").write_text(json.dumps(rows))
    summary = run(tiny_config(tiny, tmp_path / "c.h5", data=str(data)))
    reasons = {item["id"]: item["reason"] for item in summary.skipped}
    assert "is not usable" in reasons["bad\u0000id"]
    assert reasons["thin"].startswith("extreme aspect ratio (2000 x 20 pixels)")
    assert summary.records == {"train": 1}


def test_replaced_image_of_the_same_size_is_named(tiny, tmp_path):
    from spp_scl.extract.pipeline import CacheMismatch

    data = tmp_path / "data"
    shutil.copytree(tiny["data"], data)
    out = tmp_path / "cache.h5"
    run(tiny_config(tiny, out, data=str(data)))
    image = data / "images" / "1.jpg"
    raw = bytearray(image.read_bytes())
    raw[-3] ^= 0xFF  # same size, other bytes
    image.write_bytes(bytes(raw))
    with pytest.raises(CacheMismatch, match=r"dataset\.sources_sha256\.images"):
        run(tiny_config(tiny, out, data=str(data)))
