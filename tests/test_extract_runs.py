"""Extraction runs: resume after a kill, settings refused when they differ, other backbones, the plugin form,
several processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoModel, AutoTokenizer

from spp_scl.extract.demo import demo_vocabulary, write_wordpiece_tokenizer
from spp_scl.extract.pipeline import CacheMismatch, parts_folder, run
from tests.conftest import ROOT_DIR, assert_same_cache, tiny_config

pytestmark = pytest.mark.slow  # end to end: processes, extractions or many epochs

SLOW_PLUGIN = '''
import os, time, torch
from pathlib import Path
class SlowNet(torch.nn.Module):
    """A small conv net that a test can hold at a given forward pass, so that it stops an extraction part-way
    at the same place however busy the machine is (no race between the extraction and the test's clock)."""
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 5, 4, stride=4)
        self.calls = 0

    def forward(self, pixels):
        log = os.environ.get("SLOW_PLUGIN_LOG")
        if log:
            with open(log, "a") as handle:
                handle.write(f"{len(pixels)}\\n")
        self.calls += 1
        hold = os.environ.get("SLOW_PLUGIN_HOLD_AFTER")  # "N:FILE": after N passes, say so in FILE and wait
        if hold and self.calls > int(hold.split(":")[0]):
            Path(hold.split(":", 1)[1]).touch()
            while True:  # until the test stops the process
                time.sleep(0.05)
        return self.conv(pixels)

def build():
    return SlowNet().eval(), {"resize": 40, "crop": 32, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25],
                              "name": "slow-test-net-v1"}
'''


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    path = tmp_path_factory.mktemp("plugin") / "slow_plugin.py"
    path.write_text(SLOW_PLUGIN)
    return f"{path}:build"


def _held_after(process: subprocess.Popen, held: Path, parts: Path, shards: int) -> list[Path]:
    """Wait (generously: a busy machine is slow, never wrong) until the extraction is held with `shards` shards
    written; the finished shards."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and process.poll() is None:
        finished = sorted(parts.glob("shard-*.safetensors"))
        if held.exists() and len(finished) >= shards:
            return finished
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"the extraction was not held after {shards} shards (exit {process.poll()})")


def _cli(tiny, out, plugin, *extra):
    return [
        sys.executable,
        str(ROOT_DIR / "extract" / "run.py"),
        "--data",
        tiny["data"],
        "--dataset",
        "mvsa-single",
        "--text-encoder",
        tiny["text"],
        "--image-encoder",
        plugin,
        "--out",
        str(out),
        "--shard-size",
        "8",
        "--image-batch-size",
        "4",
        "--text-batch-size",
        "4",
        "--no-progress",
        *extra,
    ]


def test_plugin_form_gives_maps_of_the_plugin_module(tiny, plugin, tmp_path):
    out = tmp_path / "plugin.h5"
    run(tiny_config(tiny, out, image_encoder=plugin))
    with h5py.File(out, "r") as file:
        maps = file["dev"]["image_maps"]
        assert maps.shape[1:] == (5, 8, 8)  # 32 px crop, stride-4 conv
        fingerprint = json.loads(file.attrs["fingerprint"])
    assert fingerprint["image"]["name"] == "slow-test-net-v1"
    assert fingerprint["image"]["preprocess"] == {"resize": 40, "crop": 32, "mean": [0.5] * 3, "std": [0.25] * 3}


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGINT])
def test_stopped_extraction_resumes_to_the_same_file(tiny, plugin, tmp_path, stop):
    reference = tmp_path / "reference.h5"
    run(tiny_config(tiny, reference, image_encoder=plugin, shard_size=8, image_batch_size=4, text_batch_size=4))
    out = tmp_path / "resumed.h5"
    parts = parts_folder(out)
    held = tmp_path / "held"
    env = {**os.environ, "SLOW_PLUGIN_HOLD_AFTER": f"6:{held}"}  # 2 passes a shard: held in the 4th of 8 shards
    # A test run started in the background (`cmd &` in a script) inherits SIGINT ignored, and so would the
    # extraction: give it the default disposition, as an interactive Ctrl-C finds it.
    process = subprocess.Popen(
        _cli(tiny, out, plugin),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    _held_after(process, held, parts, 3)
    process.send_signal(stop)
    process.wait(timeout=300)
    finished = sorted(parts.glob("shard-*.safetensors"))
    assert len(finished) == 3 and not out.exists(), (
        f"the run was meant to be stopped part-way: {len(finished)} shards, exit {process.returncode}, "
        f"output: {process.stdout.read().decode()[-2000:]}"
    )

    log = tmp_path / "forward_calls.txt"
    env = {**os.environ, "SLOW_PLUGIN_LOG": str(log)}
    result = subprocess.run(_cli(tiny, out, plugin), env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    assert f"resuming: {len(finished)} of 8 shards" in result.stderr  # messages go to stderr, results to stdout
    # Only the unfinished shards' images went through the encoder again (64 records, 8 per shard).
    assert sum(int(n) for n in log.read_text().split()) == 64 - 8 * len(finished)
    assert not parts.exists()
    assert_same_cache(reference, out)


def test_changed_setting_is_refused_and_force_rebuilds(tiny, tmp_path):
    out = tmp_path / "cache.h5"
    run(tiny_config(tiny, out))
    assert run(tiny_config(tiny, out)).up_to_date
    with pytest.raises(CacheMismatch, match=r"text\.layers: cache has \[1, 2, 3, 4\], this run asks \[3, 4\]"):
        run(tiny_config(tiny, out, text_layers=[-2, -1]))
    with pytest.raises(CacheMismatch, match=r"text\.max_length"):
        run(tiny_config(tiny, out, max_length=16))
    with pytest.raises(CacheMismatch, match=r"image\.preprocess\.crop"):
        run(tiny_config(tiny, out, image_crop=32, image_resize=40))
    with pytest.raises(CacheMismatch, match=r"dtype: cache has 'float16', this run asks 'float32'"):
        run(tiny_config(tiny, out, dtype="float32"))
    assert not run(tiny_config(tiny, out, text_layers=[-2, -1], force=True)).up_to_date
    with h5py.File(out, "r") as file:
        assert list(
            file.attrs["text_layers"]
            if not isinstance(file.attrs["text_layers"], str)
            else json.loads(file.attrs["text_layers"])
        ) == [3, 4]
        assert file["train"]["first_token"].shape[1] == 2


def test_changed_split_file_is_refused(tiny, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny["data"], data)
    out = tmp_path / "cache.h5"
    run(tiny_config(tiny, out, data=str(data)))
    records = json.loads((data / "dev.json").read_text())
    records[0]["text"] += " edited"
    (data / "dev.json").write_text(json.dumps(records))
    with pytest.raises(CacheMismatch, match=r"dataset\.sources_sha256"):
        run(tiny_config(tiny, out, data=str(data)))


def test_unfinished_extraction_with_other_settings_is_refused(tiny, plugin, tmp_path):
    out, held = tmp_path / "cache.h5", tmp_path / "held"
    process = subprocess.Popen(
        _cli(tiny, out, plugin),
        env={**os.environ, "SLOW_PLUGIN_HOLD_AFTER": f"2:{held}"},  # held in the second shard
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    parts = parts_folder(out)
    _held_after(process, held, parts, 1)
    process.kill()
    process.wait()
    result = subprocess.run(_cli(tiny, out, plugin, "--max-length", "10"), capture_output=True, text=True, timeout=900)
    assert result.returncode == 4  # refused (spp_scl.core.errors.EXIT_REFUSED)
    assert "was made with other settings" in result.stderr and "text.max_length" in result.stderr
    assert list(parts.glob("shard-*.safetensors")), "the refused run must not delete finished work"


def test_text_model_without_token_type_ids(tiny, tmp_path):
    """DistilBERT's forward takes no token_type_ids; its states are stored as a direct forward gives them."""
    from transformers import DistilBertConfig, DistilBertModel

    folder = tmp_path / "distilbert"
    write_wordpiece_tokenizer(folder, "DistilBertTokenizer")
    torch.manual_seed(1)
    DistilBertModel(
        DistilBertConfig(vocab_size=len(demo_vocabulary()), dim=16, n_layers=3, n_heads=2, hidden_dim=32)
    ).save_pretrained(folder)
    out = tmp_path / "cache.h5"
    run(tiny_config(tiny, out, text_encoder=str(folder), text_layers=[-2, -1]))
    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    record = json.loads((Path(tiny["data"]) / "dev.json").read_text())[4]
    with torch.no_grad():
        hidden = model(**tokenizer(record["text"], return_tensors="pt"), output_hidden_states=True).hidden_states
    with h5py.File(out, "r") as file:
        group = file["dev"]
        start, end = group["token_offsets"][4:6]
        stored = torch.from_numpy(group["token_states"][start:end]).float().transpose(0, 1)
    torch.testing.assert_close(stored, torch.stack([hidden[2][0], hidden[3][0]]), atol=2e-3, rtol=2e-3)


def test_vit_style_model_stores_patch_tokens_as_a_grid(tiny, tmp_path):
    from transformers import ViTConfig, ViTModel

    folder = tmp_path / "vit"
    torch.manual_seed(2)
    ViTModel(
        ViTConfig(
            image_size=32,
            patch_size=8,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
        )
    ).save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "image_processor_type": "ViTImageProcessor",
                "size": {"height": 32, "width": 32},
                "image_mean": [0.5, 0.5, 0.5],
                "image_std": [0.5, 0.5, 0.5],
            }
        )
    )
    out = tmp_path / "cache.h5"
    run(tiny_config(tiny, out, image_encoder=str(folder)))
    model = AutoModel.from_pretrained(folder).eval()
    image = Image.open(Path(tiny["data"]) / "images" / "41.jpg").convert("RGB")  # the first dev record
    scale = 32 / min(image.size)
    image = image.resize((max(32, int(image.width * scale)), max(32, int(image.height * scale))), Image.BILINEAR)
    left, top = round((image.width - 32) / 2), round((image.height - 32) / 2)
    pixels = (np.asarray(image.crop((left, top, left + 32, top + 32)), dtype=np.float32) / 255 - 0.5) / 0.5
    with torch.no_grad():
        tokens = model(pixel_values=torch.from_numpy(pixels.transpose(2, 0, 1))[None]).last_hidden_state[0]
    expected = tokens[1:].T.reshape(16, 4, 4)  # drop [CLS]; 16 patches in a 4 x 4 grid
    with h5py.File(out, "r") as file:
        assert file["dev"]["ids"].asstr()[0] == "41"
        torch.testing.assert_close(
            torch.from_numpy(file["dev"]["image_maps"][0]).float(), expected, atol=2e-3, rtol=2e-3
        )


def test_several_processes_give_the_same_cache(tiny, tmp_path):
    single = tmp_path / "single.h5"
    run(tiny_config(tiny, single))
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
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        str(ROOT_DIR / "extract" / "run.py"),
        "--data",
        tiny["data"],
        "--dataset",
        "mvsa-single",
        "--text-encoder",
        tiny["text"],
        "--image-encoder",
        tiny["image"],
        "--out",
        str(double),
        "--shard-size",
        "16",
        "--text-batch-size",
        "8",
        "--image-batch-size",
        "8",
        "--no-progress",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert_same_cache(single, double)


EFFICIENTNET = ROOT_DIR.parent / "shared" / "encoders" / "efficientnet_lite2.py"


@pytest.mark.skipif(
    not EFFICIENTNET.is_file() or __import__("importlib").util.find_spec("efficientnet_lite_pytorch") is None,
    reason="the EfficientNet-Lite2 factory of ../shared/encoders is not installed "
    "(../shared/encoders/get_real_encoders.sh installs it)",
)
def test_shared_efficientnet_factory_in_the_plugin_form(tiny, tmp_path):
    """The real plugin of ../shared/encoders: stored maps equal a direct forward of its module."""
    from spp_scl.extract.image_encoder import load_plugin
    from spp_scl.extract.images import Preprocess, load_pixels

    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    records = json.loads((Path(tiny["data"]) / "dev.json").read_text())[:3]
    for record in records:
        (data / "images" / f"{record['id']}.jpg").write_bytes(
            (Path(tiny["data"]) / "images" / f"{record['id']}.jpg").read_bytes()
        )
    (data / "dev.json").write_text(json.dumps(records))
    out = tmp_path / "cache.h5"
    run(tiny_config(tiny, out, data=str(data), image_encoder=f"{EFFICIENTNET}:build"))
    module, preprocess = load_plugin(f"{EFFICIENTNET}:build")
    pixels = load_pixels(
        data / "images" / f"{records[1]['id']}.jpg",
        Preprocess(preprocess["resize"], preprocess["crop"], tuple(preprocess["mean"]), tuple(preprocess["std"])),
    )
    with torch.no_grad():
        expected = module.eval()(pixels[None])[0]
    with h5py.File(out, "r") as file:
        assert file["dev"]["image_maps"].shape[1:] == (1280, 7, 7)
        torch.testing.assert_close(
            torch.from_numpy(file["dev"]["image_maps"][1]).float(), expected, atol=2e-2, rtol=2e-3
        )
