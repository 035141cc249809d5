"""A run folder is finished or it is refused: never half-written, mixed or changed work served as a result.

Training removes the results of any earlier run in the folder (metrics.json first) before it writes anything, and
writes them back last: predictions.csv, then finished.json (the sha256 of the selected weights, head.json and
metrics.json), then metrics.json, atomically. So metrics.json is there only when its training finished, and what it
describes is the weights that finished.json names. predict and report (runs/predict/run_folder.py) refuse a folder
without metrics.json (unfinished: a rerun resumes or restarts, the message says which), one whose training is
under way, and one whose weights, head.json or metrics.json are not those its training finished with. Folders
written before finished.json existed (0.10 and earlier) have none and are read as before.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from spp_scl.core.errors import InputError, Refused
from spp_scl.core.storage import remove_quietly, write_atomically

FINISHED_FILE = "finished.json"
METRICS_FILE = "metrics.json"
# The results of a finished training, in the order they are removed when a training starts (metrics.json, the
# mark of a finished run, first).
RESULT_FILES = (METRICS_FILE, FINISHED_FILE, "predictions.csv")
CHECKED_FILES = ("model.safetensors", "head.json", METRICS_FILE)


class UnfinishedRun(InputError):
    """A run folder whose training did not finish (stopped, killed, or failed)."""


class RunInProgress(Refused):
    """A run folder another process is training into now."""


class RunChanged(InputError):
    """A finished run folder whose weights, head.json or metrics.json are not those its training finished with."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def clear_finished(run_dir: Path) -> None:
    """Unmark the folder as finished before a training writes into it."""
    for name in RESULT_FILES:
        remove_quietly(Path(run_dir) / name)


def write_metrics_last(run_dir: Path, metrics_text: str, selected_epoch: int, epochs_run: int) -> None:
    """finished.json, then metrics.json (its text given): the last writes of a finished training."""
    run_dir = Path(run_dir)
    data = metrics_text.encode()
    hashes = {name: file_sha256(run_dir / name) for name in CHECKED_FILES if name != METRICS_FILE}
    hashes[METRICS_FILE] = hashlib.sha256(data).hexdigest()
    record = {"selected_epoch": selected_epoch, "epochs_run": epochs_run, "sha256": hashes}
    write_atomically(run_dir / FINISHED_FILE, json.dumps(record, indent=1).encode())
    write_atomically(run_dir / METRICS_FILE, data)


def check_finished(run_dir: Path) -> None:
    """Refuse a folder whose training has not finished: under way (RunInProgress), else UnfinishedRun."""
    from spp_scl.runs.train.resume import resumable_epoch
    from spp_scl.runs.train.run_lock import trained_now_by

    run_dir = Path(run_dir)
    if (run_dir / METRICS_FILE).is_file():
        return
    holder = trained_now_by(run_dir)
    if holder is not None:
        raise RunInProgress(f"{run_dir} is being trained now ({holder}): it has no {METRICS_FILE} yet; wait for it")
    epoch = resumable_epoch(run_dir)
    rerun = f"it resumes after epoch {epoch}" if epoch else "it restarts from epoch 1"
    raise UnfinishedRun(
        f"{run_dir} is an unfinished run: its training stopped before writing {METRICS_FILE}; rerun "
        f"`spp-scl train` with the same settings and --out {run_dir} ({rerun})"
    )


def check_as_finished(run_dir: Path, names: tuple[str, ...] = CHECKED_FILES) -> None:
    """Each of `names` must be the file the training finished with (finished.json's sha256); a folder without
    finished.json (written before 0.11) is not checked."""
    run_dir = Path(run_dir)
    path = run_dir / FINISHED_FILE
    if not path.is_file():
        return
    try:
        recorded = json.loads(path.read_text(encoding="utf-8")).get("sha256")
    except (OSError, ValueError, AttributeError):
        recorded = None
    if not isinstance(recorded, dict):
        raise RunChanged(f"{path} is not a readable record of a finished run (a JSON object with 'sha256')")
    for name in names:
        if name in recorded and file_sha256(run_dir / name) != recorded[name]:
            raise RunChanged(
                f"{run_dir / name} is not the file this run finished with (its sha256 differs from {path}'s): it was "
                "changed or replaced after training; restore it, or retrain"
            )
