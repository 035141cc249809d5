"""predict serves only what the run trained: never a non-finite probability (an error row or a refusal, and always
valid JSON), never with an edited or out-of-bounds fingerprint in config.json, never from a cache rebuilt since."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import pytest
import torch
from safetensors.torch import load_file, save_file

from spp_scl.cache.checksums import ATTRS_KEY, attrs_sha256
from spp_scl.core.errors import EXIT_INPUT, EXIT_PARTIAL, EXIT_REFUSED, InputError
from spp_scl.extract.fingerprint import sha256_json
from spp_scl.runs.predict.predictor import Predictor
from tests.tiny_run import tiny_run


@pytest.fixture
def run_copy(tiny, tmp_path_factory, tmp_path) -> Path:
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run(tiny, tmp_path_factory), run_dir)
    return run_dir


def _one_pair(tiny) -> list[str]:
    record = json.loads((Path(tiny["data"]) / "dev.json").read_text())[0]
    return ["--image", str(Path(tiny["data"]) / "images" / f"{record['id']}.jpg"), "--text", record["text"]]


def _strict_json(line: str) -> dict:
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(line, parse_constant=refuse)


def test_weights_that_give_non_finite_probabilities_are_never_served(tiny, run_copy, capsys):
    """Finite weights so large that the logits overflow: a 'positive' in invalid JSON, exit 0, before."""
    from spp_scl.cli import main as spp_scl

    weights = run_copy / "model.safetensors"
    state = load_file(str(weights))
    last = sorted(name for name, tensor in state.items() if tensor.dim() == 2 and tensor.shape[0] == 3)[-1]
    state[last] = torch.full_like(state[last], 3e38)  # finite, as the loader checks
    save_file(state, str(weights))

    assert spp_scl(["predict", str(run_copy), *_one_pair(tiny)]) == EXIT_INPUT  # not the weights it finished with
    captured = capsys.readouterr()
    assert captured.out == "" and "model.safetensors is not the file this run finished with" in captured.err

    (run_copy / "finished.json").unlink()  # a folder written before finished.json: the weights cannot be compared
    assert spp_scl(["predict", str(run_copy), *_one_pair(tiny)]) == EXIT_PARTIAL
    row = _strict_json(capsys.readouterr().out)
    assert "prediction" not in row or row["prediction"] is None
    assert "class probabilities for this pair are not finite" in row["error"]


@pytest.mark.parametrize(
    "change",
    [
        lambda fingerprint: fingerprint["image"]["preprocess"].update(
            resize=fingerprint["image"]["preprocess"]["resize"] + 8
        ),
        lambda fingerprint: fingerprint["text"].update(max_length=fingerprint["text"]["max_length"] // 2),
    ],
)
def test_an_edited_fingerprint_in_config_json_is_refused(run_copy, change):
    config = json.loads((run_copy / "config.json").read_text())
    change(config["cache_fingerprint"])
    (run_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match=r"config\.json: field cache_fingerprint was changed after training"):
        Predictor(run_copy)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("image", {"resize": 8192, "crop": 8192}, r"image\.preprocess\.resize must be a whole number from 1 to 1024"),
        ("text", {"max_length": 65536}, r"text\.max_length must be a whole number from 1 to 8192"),
    ],
)
def test_sizes_from_a_tampered_run_folder_are_bounded(run_copy, field, value, message):
    """Even with the fingerprint's sha256 recomputed: an 8,192 pixel resize or 65,536 tokens exhaust memory."""
    config = json.loads((run_copy / "config.json").read_text())
    target = config["cache_fingerprint"][field]
    (target["preprocess"] if field == "image" else target).update(value)
    config["cache_fingerprint_sha256"] = sha256_json(config["cache_fingerprint"])
    (run_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match=message):
        Predictor(run_copy)


def test_a_cache_changed_since_training_is_refused_naming_what_changed(run_copy, tmp_path, capsys):
    from spp_scl.cli import main as spp_scl

    config = json.loads((run_copy / "config.json").read_text())
    cache = tmp_path / "cache.h5"
    shutil.copy(config["cache"], cache)
    with h5py.File(cache, "r+") as file:  # as a rebuild from edited data writes it
        fingerprint = json.loads(file.attrs["fingerprint"])
        fingerprint["dataset"]["records_sha256"] = "0" * 64
        file.attrs["fingerprint"] = json.dumps(fingerprint)
        file.attrs[ATTRS_KEY] = attrs_sha256(dict(file.attrs.items()))
    (run_copy / "config.json").write_text(json.dumps({**config, "cache": str(cache)}))
    # predict reads no feature of the cache (its encoders are named in config.json and checked by their hashes);
    # report reads its features, and is refused.
    assert spp_scl(["report", str(run_copy), "--no-tsne"]) == EXIT_REFUSED
    message = capsys.readouterr().err.strip()
    assert message.count("\n") == 0 and f"{cache} is not the cache {run_copy} trained on" in message
    assert "dataset.records_sha256: trained on" in message
