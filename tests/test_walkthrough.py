"""The scripted first hour (bench/first_hour.py): every command a new user types, on a generated CSV without a
split column, succeeds; and docs/walkthrough.md is the transcript of exactly those commands."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench.first_hour import COMMANDS
from tests.conftest import ROOT_DIR

pytestmark = pytest.mark.slow


def test_the_first_hour_runs_without_a_failed_command(tmp_path):
    out = tmp_path / "walkthrough.md"
    argv = [sys.executable, "-m", "bench.first_hour", "--out", str(out), "--posts", "60"]
    done = subprocess.run(argv, cwd=ROOT_DIR, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.splitlines()[-1].startswith(f"{len(COMMANDS)} commands, 0 failed, ")
    transcript = out.read_text()
    assert transcript.count("[exit 0, ") == len(COMMANDS)
    assert '"prediction": ' in transcript and "model card: exports/posts/README.md" in transcript


def test_the_docs_transcript_holds_the_current_commands():
    shown = [
        line.removeprefix("    $ ")
        for line in (ROOT_DIR / "docs" / "walkthrough.md").read_text().splitlines()
        if line.startswith("    $ ")
    ]
    assert shown == COMMANDS
