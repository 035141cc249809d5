"""A new user's first hour, scripted and timed: a generated CSV without a split column, then extract (drawing the
splits), inspect, train, predict, evaluate, report, export, and predict from the export, each command as a user
types it. Writes the transcript (every command, its exit status, its seconds and the head of its output) as
Markdown; exits 1 when any command failed.

    python -m bench.first_hour --out docs/walkthrough.md [--posts 240]

The model hubs may be out of reach, so the encoders are the tiny random ones of the demo (`spp_scl.extract.demo`),
given with --text-encoder / --image-encoder as local folders are: the figures time the tool, not an encoder.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from spp_scl.extract.demo import make_demo_dataset, make_tiny_image_encoder, make_tiny_text_encoder

NAMES = ["positive", "neutral", "negative"]
COMMANDS = [
    "spp-scl extract --data posts.csv --split 0.7,0.15,0.15 --split-seed 0 --text-encoder encoders/text "
    "--image-encoder encoders/image --out cache/files/posts.h5 --no-progress",
    "spp-scl inspect cache/files/posts.h5",
    "spp-scl train --cache cache/files/posts.h5 --out runs/out/posts",
    'spp-scl predict runs/out/posts --image photo.jpg --text "what a lovely morning"',
    "spp-scl evaluate runs/out/posts --pairs labelled.csv",
    "spp-scl report runs/out/posts --no-tsne",
    "spp-scl export runs/out/posts exports/posts",
    'spp-scl predict exports/posts --image photo.jpg --text "what a lovely morning"',
]
SHOWN_LINES = 14


def write_posts(folder: Path, posts: int) -> None:
    """posts.csv (image, text, label; no split column) and labelled.csv (a quarter as many new posts, as pairs a
    user labelled later), both generated."""
    for name, count, seed in (("posts.csv", posts, 7), ("labelled.csv", max(posts // 4, 3), 8)):
        data = make_demo_dataset(folder / Path(name).stem, {"all": count}, seed=seed)
        records = json.loads((data / "all.json").read_text())
        with (folder / name).open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["image", "text", "label"])
            for r in records:
                writer.writerow([f"{Path(name).stem}/images/{r['id']}.jpg", r["text"], NAMES[r["emotion_label"]]])
    (folder / "photo.jpg").write_bytes((folder / "labelled" / "images" / "1.jpg").read_bytes())


def machine() -> str:
    cpu, info = platform.processor() or "unknown CPU", Path("/proc/cpuinfo")
    if info.is_file():
        names = [
            line.split(":", 1)[1].strip() for line in info.read_text().splitlines() if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    load = f", load average {os.getloadavg()[0]:.1f} at the start" if hasattr(os, "getloadavg") else ""
    return f"{cpu}, {os.cpu_count()} cores{load}, Python {platform.python_version()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="docs/walkthrough.md")
    parser.add_argument("--posts", type=int, default=240, help="posts in the generated CSV")
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    lines, failed, total = [], 0, 0.0
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        make_tiny_text_encoder(work / "encoders" / "text")
        make_tiny_image_encoder(work / "encoders" / "image")
        write_posts(work, args.posts)
        for command in COMMANDS:
            argv = shlex.split(command)
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "spp_scl", *argv[1:]],
                cwd=work,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,  # one stream, in the order a terminal shows it
                text=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            seconds = time.perf_counter() - started
            total += seconds
            failed += done.returncode != 0
            output = done.stdout.replace(folder, "~/first-hour").strip().splitlines()
            shown = output[:SHOWN_LINES] + (
                [f"... ({len(output) - SHOWN_LINES} more lines)"] if len(output) > SHOWN_LINES else []
            )
            lines += [
                f"    $ {command}",
                *(f"    {line}" for line in shown),
                f"    [exit {done.returncode}, {seconds:.1f} s]",
                "",
            ]
            print(f"exit {done.returncode}  {seconds:6.1f} s  {command}", flush=True)
    header = [
        "# A first hour, scripted",
        "",
        f"A generated CSV of {args.posts} posts (image, text, label; no split column), the tiny random encoders of the "
        "demo in place of hub models, and every verb a new user reaches for, as typed. Written by "
        f"`python -m bench.first_hour --out docs/walkthrough.md` on {time.strftime('%Y-%m-%d')}, commit {commit or '?'}, "
        f"{machine()}; {len(COMMANDS)} commands, {failed} failed, {total:.0f} s in all (the accuracies are those of "
        "random encoders on generated posts: they time the tool and say nothing about a model).",
        "",
    ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(header + lines))
    print(f"{len(COMMANDS)} commands, {failed} failed, {total:.1f} s; transcript: {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
