"""`spp-scl export RUN [RUN...] OUT`: finished runs as one self-contained folder that `predict` accepts as is, with
a model card (README.md in the Hugging Face model-card format: spp_scl.runs.predict.model_card).

One run is exported as a run folder of its own (its files, plus README.md and export.json); several runs (a seed
ensemble) as one subfolder each, listed in export.json, which `predict OUT` reads as the ensemble. The runs must
share their cache's features (the same fingerprint), or their ensemble would mix encoders. The folder is written
beside OUT and renamed into place, so a failed export leaves no half-written OUT.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from spp_scl.core.errors import InputError, Refused
from spp_scl.runs.predict.run_folder import MANIFEST, RunFolder

RUN_FILES = (
    "config.json",
    "head.json",
    "model.safetensors",
    "metrics.json",
    "finished.json",
    "log.jsonl",
    "predictions.csv",
    "report.md",
)
RUN_FOLDERS = ("diagnostics",)  # report's pictures, which report.md links to


def member_names(runs: list[RunFolder]) -> list[str]:
    """A subfolder name per run: its folder's name, with its seed (then its position) added where names repeat."""
    names = [run.path.name for run in runs]
    if len(set(names)) < len(names):
        names = [f"{run.path.name}-seed{run.config.seed}" for run in runs]
    if len(set(names)) < len(names):
        names = [f"{index:02d}-{name}" for index, name in enumerate(names)]
    return names


def export_runs(run_dirs: list[str | Path], out: str | Path) -> Path:
    """Write the export folder; returns its path. Every run is checked as predict checks it before anything is
    written."""
    from spp_scl import __version__
    from spp_scl.runs.predict.model_card import model_card

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise Refused(f"{out} exists and is not an empty folder: choose another OUT (an export never overwrites)")
    runs = [RunFolder(run_dir) for run_dir in run_dirs]
    for run in runs:
        run.check_fingerprint_record()
    if len({run.run_config.get("cache_fingerprint_sha256") for run in runs}) > 1:
        raise InputError(
            "the runs were trained on caches with different features (their cache fingerprints differ): an export "
            "is one model or one seed ensemble, over one set of features"
        )
    if len({tuple(run.class_names) for run in runs}) > 1:
        raise InputError("the runs name different classes: an export is one model or one seed ensemble")
    members = ["."] if len(runs) == 1 else member_names(runs)
    staging = out.with_name(out.name + ".export-partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        for run, member in zip(runs, members):
            target = staging / member
            target.mkdir(exist_ok=True)
            for name in RUN_FILES:
                if (run.path / name).is_file():
                    shutil.copy2(run.path / name, target / name)
            for name in RUN_FOLDERS:
                if (run.path / name).is_dir():
                    shutil.copytree(run.path / name, target / name)
        manifest = {
            "format": 1,
            "tool_version": __version__,
            "runs": members,
            "exported_from": [str(run.path.resolve()) for run in runs],
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1))
        (staging / "README.md").write_text(model_card(runs, members, out.name))
        if out.exists():
            out.rmdir()  # empty, checked above
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out
