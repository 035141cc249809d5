"""predict never runs code named by a data file: a plugin encoder recorded in a cache (or planted in its
attributes) is refused without running it, a plugin given explicitly runs only with trust_plugin and only when
its source is the one the cache was made with; and a tampered run folder is one line naming the file and field,
refused before anything large is allocated."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import pytest
import torch
from safetensors.torch import load_file, save_file

from spp_scl.cache.checksums import ATTRS_KEY, attrs_sha256
from spp_scl.core.errors import EXIT_CRASH, EXIT_INPUT, EXIT_REFUSED, InputError
from spp_scl.extract.pipeline import run as extract
from spp_scl.heads.presets import resolve_config
from spp_scl.runs.predict.encoder_choice import PluginRefused
from spp_scl.runs.predict.predictor import Predictor
from spp_scl.runs.train.trainer import train
from tests.conftest import tiny_config
from tests.tiny_run import tiny_run

# A plugin that leaves a mark beside itself the moment its code runs (at import), before build() is called.
PLUGIN = """
from pathlib import Path
import torch

Path(__file__).with_suffix(".ran").write_text("this plugin's code ran")

def build():
    torch.manual_seed(0)
    return torch.nn.Conv2d(3, 6, 4, stride=4).eval(), {
        "resize": 36, "crop": 32, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "name": "marking-net-v1"}
"""


@pytest.fixture(scope="module")
def plugin(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("plugin") / "marking_plugin.py"
    path.write_text(PLUGIN)
    return path


@pytest.fixture(scope="module")
def plugin_run(tiny, plugin, tmp_path_factory) -> Path:
    """A run trained on a cache whose image encoder is the plugin."""
    base = tmp_path_factory.mktemp("plugin-run")
    cache = base / "cache.h5"
    extract(tiny_config(tiny, cache, image_encoder=f"{plugin}:build"), log=lambda *_: None)
    run_dir = base / "run"
    train(cache, resolve_config("mvsa-single", epochs=1, batch_size=8), run_dir, log=lambda *_: None)
    return run_dir


def _mark(plugin: Path) -> Path:
    return plugin.with_suffix(".ran")


def _dev_pairs(tiny, count=3):
    records = json.loads((Path(tiny["data"]) / "dev.json").read_text())[:count]
    return [(r["id"], Path(tiny["data"]) / "images" / f"{r['id']}.jpg", r["text"]) for r in records]


def test_a_plugin_recorded_in_the_cache_is_refused_without_running_it(tiny, plugin, plugin_run):
    _mark(plugin).unlink(missing_ok=True)
    with pytest.raises(PluginRefused, match=r"never runs code named by a data file.*--trust-plugin"):
        Predictor(plugin_run)
    with pytest.raises(PluginRefused, match=r"is a plugin: it runs the code of .*marking_plugin\.py.*--trust-plugin"):
        Predictor(plugin_run, image_encoder=f"{plugin}:build")
    assert not _mark(plugin).exists(), "the plugin's code ran"


def test_a_plugin_runs_when_given_with_trust_and_only_with_the_recorded_source(tiny, plugin, plugin_run, tmp_path):
    edited = tmp_path / "marking_plugin.py"
    edited.write_text(PLUGIN + "\n# one comment more\n")
    with pytest.raises(PluginRefused, match=r"not the one the run's cache was extracted with.*it was not run"):
        Predictor(plugin_run, image_encoder=f"{edited}:build", trust_plugin=True)
    assert not _mark(edited).exists()

    predictor = Predictor(plugin_run, image_encoder=f"{plugin}:build", trust_plugin=True)
    results = list(predictor.predict(_dev_pairs(tiny)))
    assert _mark(plugin).exists()
    assert all(r.error is None and abs(sum(r.probabilities.values()) - 1) < 1e-5 for r in results)


def test_a_plugin_planted_in_a_transformers_caches_attributes_is_refused(tiny, plugin, tmp_path_factory, tmp_path):
    """Someone edits the cache's provenance to name their plugin (and recomputes the attribute checksum)."""
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run(tiny, tmp_path_factory), run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    cache = tmp_path / "cache.h5"
    shutil.copy(config["cache"], cache)
    with h5py.File(cache, "r+") as file:
        provenance = json.loads(file.attrs["provenance"])
        file.attrs["provenance"] = json.dumps({**provenance, "image_encoder": f"{plugin}:build"})
        if ATTRS_KEY in file.attrs:
            file.attrs[ATTRS_KEY] = attrs_sha256(dict(file.attrs.items()))
    config.pop("encoders")  # a run of 0.10, whose encoders are read from its cache
    (run_dir / "config.json").write_text(json.dumps({**config, "cache": str(cache)}))
    _mark(plugin).unlink(missing_ok=True)
    with pytest.raises(PluginRefused, match=r"a plugin \(code\): predict does not run code named by a data file"):
        Predictor(run_dir)
    assert not _mark(plugin).exists(), "the plugin's code ran"


def test_a_plugin_planted_in_a_runs_config_is_refused(tiny, plugin, tmp_path_factory, tmp_path):
    """Someone edits config.json's encoders to name their plugin: it is never run from there."""
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run(tiny, tmp_path_factory), run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    config["encoders"]["image"] = f"{plugin}:build"
    (run_dir / "config.json").write_text(json.dumps(config))
    _mark(plugin).unlink(missing_ok=True)
    with pytest.raises(PluginRefused) as refused:
        Predictor(run_dir)
    assert str(refused.value).startswith(
        f"{run_dir / 'config.json'} names the image encoder '{plugin}:build', a plugin (code): predict does not run "
        "code named by a data file"
    )
    assert not _mark(plugin).exists(), "the plugin's code ran"


@pytest.fixture
def run_copy(tiny, tmp_path_factory, tmp_path) -> Path:
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run(tiny, tmp_path_factory), run_dir)
    return run_dir


def _edit_json(path: Path, change) -> None:
    value = json.loads(path.read_text())
    change(value)
    path.write_text(json.dumps(value))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda head: head.update(class_names=head["class_names"][:2]), r"head\.json: field 'class_names' has 2 names"),
        (lambda head: head.update(text_dim=10**9), r"head\.json: field 'text_dim' must be a whole number"),
        (lambda head: head["config"].update(lstm_hidden=48), r"model\.safetensors: tensor .* has shape"),
        (lambda head: head["config"].update(lstm_hidden=40_000), r"head\.json: field 'config' .* at most 16384"),
        (lambda head: head.update(num_layers="4"), r"head\.json: field 'num_layers'"),
    ],
)
def test_a_tampered_head_json_is_one_line_naming_the_field(run_copy, change, message):
    _edit_json(run_copy / "head.json", change)
    with pytest.raises(InputError, match=message):
        Predictor(run_copy)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda config: config["cache_fingerprint"].update(dtype="load"), r"field cache_fingerprint\.dtype"),
        (
            lambda config: config["cache_fingerprint"]["image"]["preprocess"].update(crop=10**6),
            r"field cache_fingerprint\.image\.preprocess\.crop",
        ),
        (lambda config: config["cache_fingerprint"]["text"].update(layers=[1]), r"reads text layers \[1, 2, 3, 4\]"),
        (
            lambda config: config["cache_fingerprint"]["dataset"].update(class_names=["a", "b", "c"]),
            r"head\.json names the classes",
        ),
    ],
)
def test_a_tampered_config_json_is_one_line_naming_the_field(run_copy, change, message):
    _edit_json(run_copy / "config.json", change)
    with pytest.raises(InputError, match=message):
        Predictor(run_copy)


def test_unreadable_run_files_are_one_line_naming_them(run_copy):
    (run_copy / "config.json").write_text('{"config": ')
    with pytest.raises(InputError, match=r"config\.json is not valid JSON"):
        Predictor(run_copy)


def test_a_cut_or_reshaped_weights_file_is_one_line_naming_it(run_copy):
    weights = run_copy / "model.safetensors"
    state = load_file(str(weights))
    name = sorted(state)[0]
    state[name] = torch.zeros(3, 3)
    save_file(state, str(weights))
    with pytest.raises(InputError, match=rf"model\.safetensors: tensor {name} has shape \[3, 3\]"):
        Predictor(run_copy)
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(InputError, match=r"model\.safetensors is not a readable safetensors file"):
        Predictor(run_copy)


def test_the_command_line_gives_each_outcome_its_own_status(tiny, plugin, plugin_run, run_copy, capsys, monkeypatch):
    """0 all predicted, 1 some error rows, 3 a bad run folder, 4 a plugin refused, 70 a bug (never 1)."""
    from spp_scl.cli import main as spp_scl
    from spp_scl.runs.predict.predictor import Predictor as RealPredictor

    image, text = _dev_pairs(tiny, 1)[0][1:]
    one_pair = ["--image", str(image), "--text", text]
    assert spp_scl(["predict", str(plugin_run), *one_pair]) == EXIT_REFUSED
    assert "--image-encoder FILE.py:FUNCTION --trust-plugin" in capsys.readouterr().err.strip().splitlines()[-1]
    trusted = ["--image-encoder", f"{plugin}:build", "--trust-plugin"]
    assert spp_scl(["predict", str(plugin_run), *one_pair, *trusted]) == 0
    assert json.loads(capsys.readouterr().out)["prediction"] in ("positive", "neutral", "negative")

    _edit_json(run_copy / "head.json", lambda head: head.update(num_classes=2))
    assert spp_scl(["predict", str(run_copy), *one_pair]) == EXIT_INPUT
    assert capsys.readouterr().err.strip() == (
        f"error: {run_copy / 'head.json'}: field 'class_names' has 3 names but num_classes is 2"
    )

    def broken_predict(self, *args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(RealPredictor, "predict", broken_predict)
    assert spp_scl(["predict", str(plugin_run), *one_pair, *trusted]) == EXIT_CRASH
    assert "error: unexpected RuntimeError (a bug" in capsys.readouterr().err
