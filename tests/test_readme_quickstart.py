"""README's "Your own data" commands and its Python example run as written on a generated CSV, with the tiny
local encoders added to `extract` (the defaults are hub models) and fewer epochs: a README command that stopped
working would fail here."""

from __future__ import annotations

import csv
import re
import shlex
import subprocess
import sys

import pytest
from PIL import Image

from tests.conftest import ROOT_DIR

pytestmark = pytest.mark.slow

README = (ROOT_DIR / "README.md").read_text()


def section(title: str) -> str:
    return README.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def write_posts(folder, rows=60):
    (folder / "imgs").mkdir()
    words = {"positive": "lovely great", "negative": "awful worst", "neutral": "a table"}
    with open(folder / "posts.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "text", "label", "split"])
        for i in range(rows):
            label = list(words)[i % 3]
            Image.new("RGB", (48, 48), (40 * (i % 3), 90, 30)).save(folder / "imgs" / f"{i}.jpg")
            writer.writerow(
                [
                    f"imgs/{i}.jpg",
                    f"{words[label]} post {i}",
                    label,
                    ("train", "train", "train", "dev", "test")[i % 5],
                ]
            )
    (folder / "photo.jpg").write_bytes((folder / "imgs" / "1.jpg").read_bytes())


def test_the_own_data_commands_run_as_written(tiny, tmp_path):
    write_posts(tmp_path)
    commands = [
        line.split("#")[0].strip() for line in section("Your own data").splitlines() if line.startswith("    spp-scl ")
    ]
    assert [shlex.split(c)[1] for c in commands] == ["extract", "inspect", "train", "evaluate", "predict", "export"]
    (tmp_path / "labelled.csv").write_bytes((tmp_path / "posts.csv").read_bytes())  # the pairs it evaluates on
    extra = {"extract": ["--text-encoder", tiny["text"], "--image-encoder", tiny["image"]], "train": ["--epochs", "2"]}
    for command in commands:
        argv = shlex.split(command)
        result = subprocess.run(
            [sys.executable, "-m", "spp_scl", *argv[1:], *extra.get(argv[1], [])],
            cwd=tmp_path, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert result.returncode == 0, f"{command}: {result.stderr[-2000:]}"
    assert "model card" in result.stdout and (tmp_path / "exports" / "posts" / "README.md").is_file()


def test_the_python_example_runs_as_written(tiny, tmp_path):
    write_posts(tmp_path)
    (tmp_path / "labelled.csv").write_bytes((tmp_path / "posts.csv").read_bytes())  # the pairs it evaluates on
    code = "\n".join(line[4:] for line in section("From Python").splitlines() if line.startswith("    "))
    code = re.sub(r"epochs=\d+", "epochs=2", code)
    # The tiny local encoders instead of the default hub models, added to the example's extract call.
    code, calls = re.subn(
        r"spp_scl\.extract\(([^)]*)\)", rf"spp_scl.extract(\1, text_encoder={tiny['text']!r}, "
        rf"image_encoder={tiny['image']!r}, progress=False)", code,
    )  # fmt: skip
    assert calls == 1, code
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[-1] in ("negative", "neutral", "positive")
