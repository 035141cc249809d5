"""Encoders are resolved before any record is read: a missing local folder is named as one, and offline a hub id
that is not in the local cache is a one-line error naming the encoder and the fix, while a cached one loads from
the cache without asking the hub (spp_scl.extract.encoder_source)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import h5py
import pytest

from spp_scl.cli import main
from spp_scl.core.errors import EXIT_INPUT
from spp_scl.extract.encoder_source import hub_cache_folder


def _extract(tiny, tmp_path, *encoders: str) -> list[str]:
    return ["extract", "--data", tiny["data"], "--dataset", "mvsa-single", *encoders, "--out", str(tmp_path / "c.h5")]


@pytest.mark.parametrize("folder", ["./models/no-such-bert", "~/no/such/bert", "models/bert/base"])
def test_a_missing_local_folder_is_named_as_a_folder(tiny, tmp_path, capsys, folder):
    assert main(_extract(tiny, tmp_path, "--text-encoder", folder, "--image-encoder", tiny["image"])) == EXIT_INPUT
    assert capsys.readouterr().err.strip() == f"error: --text-encoder {folder}: no such folder"


def test_a_folder_that_is_not_a_model_is_named(tiny, tmp_path, capsys):
    (tmp_path / "weights").mkdir()
    argv = _extract(tiny, tmp_path, "--text-encoder", tiny["text"], "--image-encoder", str(tmp_path / "weights"))
    assert main(argv) == EXIT_INPUT
    assert capsys.readouterr().err.strip() == (
        f"error: --image-encoder {tmp_path / 'weights'}: the folder has no config.json, so it is not a transformers "
        "model"
    )


def test_offline_an_uncached_hub_id_names_the_encoder_and_the_fix(tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    argv = _extract(tiny, tmp_path, "--text-encoder", tiny["text"], "--image-encoder", "spp-scl-tests/no-such-resnet")
    assert main(argv) == EXIT_INPUT
    assert capsys.readouterr().err.strip() == (
        f"error: --image-encoder spp-scl-tests/no-such-resnet: not in the local Hugging Face cache "
        f"({hub_cache_folder()}) and the hub cannot be asked (HF_HUB_OFFLINE is set): download it where the hub "
        "can be reached (huggingface-cli download spp-scl-tests/no-such-resnet) and copy that cache here, or give "
        "a local model folder"
    )
    assert not (tmp_path / "c.h5").exists()


def test_an_unreachable_hub_is_said_with_its_address(tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens there
    argv = _extract(tiny, tmp_path, "--text-encoder", "spp-scl-tests/no-such-bert", "--image-encoder", tiny["image"])
    assert main(argv) == EXIT_INPUT
    assert "and the hub cannot be asked (http://127.0.0.1:9 cannot be reached: " in capsys.readouterr().err


def test_a_malformed_id_is_neither_folder_nor_id(tiny, tmp_path, capsys):
    assert main(_extract(tiny, tmp_path, "--text-encoder", "bert base", "--image-encoder", tiny["image"])) == 3
    assert capsys.readouterr().err.startswith("error: --text-encoder bert base: neither a local folder nor a hub id (")


@pytest.mark.slow
def test_a_cached_hub_id_extracts_offline_from_the_cache(tiny, tmp_path):
    """A hub id laid out as huggingface_hub caches it, the hub unreachable: the extraction reads the cache."""
    snapshot = tmp_path / "hub" / "models--spp-scl-tests--tiny-bert" / "snapshots" / "0123abcd"
    shutil.copytree(tiny["text"], snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0123abcd")
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_ENDPOINT": "http://127.0.0.1:9"}
    env.pop("HF_HUB_OFFLINE", None)
    out = tmp_path / "c.h5"
    argv = ["extract", "-q", "--no-progress", "--data", tiny["data"], "--dataset", "mvsa-single"]
    argv += ["--text-encoder", "spp-scl-tests/tiny-bert", "--image-encoder", tiny["image"], "--out", str(out)]
    done = subprocess.run([sys.executable, "-m", "spp_scl", *argv], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with h5py.File(out, "r") as cache:
        assert json.loads(cache.attrs["fingerprint"])["text"]["model"] == "spp-scl-tests/tiny-bert"
