"""Stored views (`spp-scl extract --views V`): what each view is, that reruns and resumed or multi-process
extractions give the same file, that V = 0 changes nothing, and that view settings are fingerprinted."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

from spp_scl.cache.verify import verify_cache
from spp_scl.extract import shard_encoding
from spp_scl.extract.image_encoder import ImageEncoder
from spp_scl.extract.images import load_rgb, normalise, resize_and_crop
from spp_scl.extract.pipeline import CacheMismatch, parts_folder, run
from spp_scl.extract.randaugment import RandAugment
from spp_scl.extract.records import BadInput
from spp_scl.extract.text_encoder import TextEncoder
from spp_scl.extract.view_streams import numpy_stream, torch_stream
from tests.conftest import ROOT_DIR, assert_same_cache, cache_contents, tiny_config

CLEAN = ("ids", "labels", "text_lengths", "token_offsets", "image_maps", "first_token", "token_states")


@pytest.fixture(scope="module")
def with_views(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("views") / "views.h5"
    run(tiny_config(tiny, out, views=2))
    return out


@pytest.fixture(scope="module")
def without_views(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("clean") / "clean.h5"
    run(tiny_config(tiny, out))
    return out


def _records(tiny, split):
    return json.loads((__import__("pathlib").Path(tiny["data"]) / f"{split}.json").read_text())


def test_views_zero_leaves_the_file_as_it_was_and_views_leave_the_clean_part_untouched(with_views, without_views):
    """The V = 0 file has no trace of views, and a file with views holds, byte for byte, the same clean datasets
    (with the same checksums) plus the views group."""
    with h5py.File(without_views, "r") as file:
        assert "views" not in file.attrs and "views" not in json.loads(file.attrs["fingerprint"])
        for split in ("train", "dev", "test"):
            assert sorted(file[split]) == sorted(CLEAN)
    clean, viewed = cache_contents(without_views), cache_contents(with_views)
    view_keys = {key for key in viewed if "/views/" in key}
    assert view_keys == {
        f"train/views/{name}" for name in ("image_maps", "text_lengths", "token_offsets", "token_states")
    }
    for key in clean:
        if not key.startswith("@"):
            assert np.array_equal(np.asarray(clean[key]), np.asarray(viewed[key])), key
    with h5py.File(without_views, "r") as a, h5py.File(with_views, "r") as b:
        for split in ("train", "dev", "test"):
            for name in CLEAN:
                assert a[split][name].attrs["sha256"] == b[split][name].attrs["sha256"]


def test_views_differ_from_the_clean_features_and_from_each_other(with_views):
    with h5py.File(with_views, "r") as file:
        group, views = file["train"], file["train"]["views"]
        attrs = json.loads(file.attrs["views"])
        assert attrs == {
            "count": 2,
            "splits": ["train"],
            "text_views": 2,
            "image_views": 2,
            "text_layers": [1, 2, 3, 4],
        }
        assert "views" not in file["dev"] and "views" not in file["test"]
        clean_maps, view_maps = group["image_maps"][:].astype(np.float32), views["image_maps"][:].astype(np.float32)
        assert view_maps.shape == (40, 2, *clean_maps.shape[1:])
        clean_states = group["token_states"][:].astype(np.float32)
        view_states = views["token_states"][:].astype(np.float32)
        assert np.array_equal(views["text_lengths"][:], group["text_lengths"][:])  # dropout keeps the tokens
        assert view_states.shape == (len(clean_states), 2, *clean_states.shape[1:])
        for record in range(40):
            for view in range(2):
                assert np.abs(view_maps[record, view] - clean_maps[record]).max() > 1e-2
            assert np.abs(view_maps[record, 0] - view_maps[record, 1]).max() > 1e-2
        for view in range(2):  # every layer of every view moves away from the clean states
            assert (np.abs(view_states[:, view] - clean_states).max(axis=(0, 2)) > 1e-2).all()
        assert np.abs(view_states[:, 0] - view_states[:, 1]).max() > 1e-2


def test_a_text_view_is_the_text_alone_through_the_encoder_with_its_own_dropout_stream(tiny, with_views):
    encoder = TextEncoder(tiny["text"], [-4, -3, -2, -1], 202)
    with h5py.File(with_views, "r") as file:
        views = file["train"]["views"]
        offsets, states = views["token_offsets"][:], views["token_states"]
        for row, record in list(enumerate(_records(tiny, "train")))[::7]:
            for view in range(2):
                stream = torch_stream(0, "text-dropout", "train", str(record["id"]), view)
                ((_, tokens),) = encoder.encode([record["text"]], [stream])  # [K, L, D]
                stored = torch.from_numpy(states[offsets[row] : offsets[row + 1], view].astype(np.float32))
                torch.testing.assert_close(stored, tokens.transpose(0, 1), atol=3e-3, rtol=3e-3)


def test_an_image_view_is_randaugment_then_the_crop_then_the_flip_through_the_encoder(tiny, with_views):
    encoder = ImageEncoder(tiny["image"])
    augment = RandAugment(2, 14, 0.5)
    root = __import__("pathlib").Path(tiny["data"]) / "images"
    with h5py.File(with_views, "r") as file:
        maps = file["train"]["views"]["image_maps"]
        for row, record in list(enumerate(_records(tiny, "train")))[::9]:
            for view in range(2):
                stream = numpy_stream(0, "image-augment", "train", str(record["id"]), view)
                crop = np.asarray(
                    resize_and_crop(augment.augment(load_rgb(root / f"{record['id']}.jpg"), stream), encoder.preprocess)
                )
                if augment.flips(stream):
                    crop = crop[:, ::-1]
                expected = encoder(normalise(np.ascontiguousarray(crop), encoder.preprocess)[None])[0]
                torch.testing.assert_close(
                    torch.from_numpy(maps[row, view].astype(np.float32)), expected, atol=3e-3, rtol=3e-3
                )


def test_a_rerun_a_resumed_and_a_multi_process_extraction_write_the_same_views(tiny, with_views, tmp_path, monkeypatch):
    rerun = tmp_path / "rerun.h5"
    run(tiny_config(tiny, rerun, views=2))
    assert_same_cache(with_views, rerun)

    resumed = tmp_path / "resumed.h5"
    written = []
    save = shard_encoding.save_shard

    def save_two_then_stop(path, tensors, metadata):
        if len(written) == 2:
            raise KeyboardInterrupt
        written.append(path)
        save(path, tensors, metadata)

    with monkeypatch.context() as patch:
        patch.setattr(shard_encoding, "save_shard", save_two_then_stop)
        with pytest.raises(KeyboardInterrupt):
            run(tiny_config(tiny, resumed, views=2))
    assert len(list(parts_folder(resumed).glob("shard-*.safetensors"))) == 2 and not resumed.exists()
    run(tiny_config(tiny, resumed, views=2))
    assert_same_cache(with_views, resumed)

    double = tmp_path / "double.h5"
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--cpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--main_process_port",  # a free port, not 29500: test runs side by side would race for that one
        "0",
    ]
    command += ["--mixed_precision", "no", "--dynamo_backend", "no", str(ROOT_DIR / "extract" / "run.py")]
    command += ["--data", tiny["data"], "--dataset", "mvsa-single", "--text-encoder", tiny["text"]]
    command += ["--image-encoder", tiny["image"], "--out", str(double), "--shard-size", "16", "--text-batch-size", "8"]
    command += ["--image-batch-size", "8", "--no-progress", "--views", "2"]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert_same_cache(with_views, double)


def test_a_changed_view_setting_is_refused_by_the_fingerprint(tiny, with_views, without_views, tmp_path):
    for changes, named in [
        ({"views": 2, "view_randaugment_magnitude": 10}, "views.image.randaugment"),
        ({"views": 2, "view_seed": 1}, "views.seed"),
        ({"views": 3}, "views.count"),
        ({"views": 2, "view_text_dropout": False}, "views.text"),
        ({"views": 2, "view_image_batchnorm": True}, "views.image.batchnorm_train_mode"),
    ]:
        with pytest.raises(CacheMismatch, match=named.replace(".", r"\.")):
            run(tiny_config(tiny, with_views, **changes))
    with pytest.raises(CacheMismatch, match=r"views\.count: cache has '<absent>'"):
        run(tiny_config(tiny, without_views, views=2))
    assert run(tiny_config(tiny, with_views, views=2)).up_to_date
    assert run(tiny_config(tiny, without_views)).up_to_date


def test_the_fingerprint_names_each_randaugment_operation_with_its_value(with_views):
    with h5py.File(with_views, "r") as file:
        randaugment = json.loads(file.attrs["fingerprint"])["views"]["image"]["randaugment"]
    values = {op["name"]: op["value"] for op in randaugment["operations"]}
    assert len(values) == 16 and randaugment["ops"] == 2 and randaugment["magnitude"] == 14
    assert randaugment["horizontal_flip"] == 0.5
    # magnitude 14 of 30 across each range: rotate 14 degrees, shear 0.14, translate 46.67 px, enhance 0.94
    assert values["Rotate"] == pytest.approx(14.0) and values["ShearX"] == pytest.approx(0.14)
    assert values["TranslateXabs"] == pytest.approx(140 / 3, abs=1e-5) and values["Color"] == pytest.approx(0.94)


def test_paraphrase_views_encode_the_paraphrase_and_a_missing_one_keeps_the_text(tiny, tmp_path):
    train = _records(tiny, "train")
    paraphrases = [{"id": r["id"], "text_translation": f"happy {r['text']} indeed"} for r in train[1:]]
    path = tmp_path / "paraphrases.json"
    path.write_text(json.dumps(paraphrases))
    out = tmp_path / "paraphrase.h5"
    summary = run(tiny_config(tiny, out, views=3, view_paraphrases=str(path), view_text_dropout=False))
    assert any("1 train records have no paraphrase" in note for note in summary.notes)
    encoder = TextEncoder(tiny["text"], [-4, -3, -2, -1], 202)
    with h5py.File(out, "r") as file:
        views = file["train"]["views"]
        assert json.loads(file.attrs["views"])["text_views"] == 1  # one deterministic view, served for all 3
        assert views["image_maps"].shape[1] == 3
        offsets, states = views["token_offsets"][:], views["token_states"]
        for row, text in [(0, train[0]["text"]), (1, paraphrases[0]["text_translation"])]:
            ((_, tokens),) = encoder.encode([text])
            stored = torch.from_numpy(states[offsets[row] : offsets[row + 1], 0].astype(np.float32))
            torch.testing.assert_close(stored, tokens.transpose(0, 1), atol=3e-3, rtol=3e-3)
        assert views["text_lengths"][1] == encoder.token_lengths([paraphrases[0]["text_translation"]])[0]
    with pytest.raises(BadInput, match="no paraphrase for train record id"):
        run(tiny_config(tiny, tmp_path / "strict.h5", views=1, view_paraphrases=str(path), strict=True))


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "is not valid JSON"),
        ('[{"id": "1"}]', r"\[0\]: no paraphrase field"),
        ('[{"text_translation": "x"}]', r"\[0\]: field 'id' is missing"),
        ('[{"id": "1", "text_translation": 3}]', "must be a string"),
        ('[{"id": "1", "text": "a"}, {"id": 1, "text": "b"}]', r"\[1\]: id '1' is given twice"),
        ('"a string"', "must hold a JSON list or object"),
    ],
)
def test_a_bad_paraphrase_file_is_one_error_naming_the_file_and_entry(tiny, tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(BadInput, match=message) as caught:
        run(tiny_config(tiny, tmp_path / "out.h5", views=1, view_paraphrases=str(path)))
    assert str(path) in str(caught.value)


def test_batch_statistics_views_leave_the_encoder_and_the_clean_maps_alone(tiny, without_views, tmp_path):
    out = tmp_path / "batchnorm.h5"
    run(
        tiny_config(
            tiny,
            out,
            views=2,
            view_image_augment=False,
            view_image_batchnorm=True,
            view_text_dropout=False,
            view_batchnorm_batch=8,
        )
    )
    again = tmp_path / "again.h5"
    run(
        tiny_config(
            tiny,
            again,
            views=2,
            view_image_augment=False,
            view_image_batchnorm=True,
            view_text_dropout=False,
            view_batchnorm_batch=8,
        )
    )
    assert_same_cache(out, again)
    with h5py.File(out, "r") as file, h5py.File(without_views, "r") as clean:
        assert "token_states" not in file["train"]["views"]  # no text view kind: the text stays clean
        maps = file["train"]["views"]["image_maps"][:].astype(np.float32)
        for split in ("train", "dev", "test"):
            assert np.array_equal(file[split]["image_maps"][:], clean[split]["image_maps"][:])
    assert np.abs(maps[:, 0] - maps[:, 1]).max() > 1e-3  # other batch-mates, other statistics
    # Batch statistics: each channel of a batch-normalised map has mean 0 over its batch, so the views are far
    # from the eval-mode maps computed with the running statistics.
    assert np.abs(maps[:, 0] - cache_contents(without_views)["train/image_maps"].astype(np.float32)).max() > 1e-2


def test_views_cache_verifies_and_a_changed_view_byte_is_named(with_views, tmp_path):
    assert verify_cache(with_views).problems == []
    damaged = tmp_path / "damaged.h5"
    damaged.write_bytes(with_views.read_bytes())
    with h5py.File(damaged, "r+") as file:
        file["train"]["views"]["text_lengths"][3] += 1
    problems = verify_cache(damaged).problems
    assert any("train/views/text_lengths does not match its checksum" in p for p in problems), problems


def test_inspect_lists_the_views(with_views):
    from spp_scl.cache.describe import describe

    text = describe(str(with_views))
    assert "views: 2 per record of train" in text and "text 2 (dropout; layers [1, 2, 3, 4])" in text
    assert "image 2 (RandAugment 2 x 14, flip 0.5)" in text


def test_options_reject_bad_view_settings(tiny, tmp_path):
    for changes in (
        {"views": -1},
        {"view_splits": ["val"]},
        {"view_batchnorm_batch": 1},
        {"view_randaugment_magnitude": 31},
    ):
        with pytest.raises(ValueError):
            tiny_config(tiny, tmp_path / "x.h5", **changes)
    with pytest.raises(BadInput, match="every kind is off"):
        run(tiny_config(tiny, tmp_path / "x.h5", views=1, view_text_dropout=False, view_image_augment=False))
    with pytest.raises(BadInput, match=r"--view-text-layers \[1\]: layers \[1\] are not cached"):
        run(tiny_config(tiny, tmp_path / "x.h5", text_layers=[3, 4], views=1, view_text_layers=[1]))
