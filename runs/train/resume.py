"""A training stopped by Ctrl-C or SIGTERM resumes where it stopped, to the folder an uninterrupted one writes.

While `spp-scl train` handles stops (runs/train/stop_signals.py), the trainer copies in memory, at the end of each
epoch, all that the next epochs depend on: the weights, AdamW's moments and step counts, the learning-rate
schedule, the weight average, every random stream (torch's global one, which draws dropout masks and input noise;
the shuffling and view generators; numpy's and Python's), the epoch and the dev selection so far. A stop writes
the copy of the last finished epoch to `<run>/resume/`: state.safetensors (the tensors) and state.json (the rest,
with the log lines so far and the sha256 of state.safetensors and of the selected weights, model.safetensors).
Nothing is written to disk per epoch; the cost is one copy in memory per epoch.

A rerun of the same training (the same config, cache fingerprint, device kind and torch version) picks it up at
the next epoch and writes what an uninterrupted run writes (tests/test_runs_resume.py compares). Anything else
(other settings, another cache, a changed model.safetensors) starts afresh, with a line saying why. kill -9, a stop
in the first epoch, a library call outside stop_on_signals, mixed precision or trackers (Accelerate's state is not
kept) and the closed-form probe restart; the interrupt message says which.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from spp_scl.core.storage import write_atomically

RESUME_FOLDER = "resume"
STATE_TENSORS = "state.safetensors"
STATE_RECORD = "state.json"
STATE_VERSION = 1


@dataclass
class Snapshot:
    """The state after `epoch` finished, in memory (tensors on the CPU, copied) and as JSON."""

    epoch: int
    tensors: dict[str, torch.Tensor]
    record: dict


def _copy(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().to("cpu", copy=True).contiguous()


def _as_json(value):
    """Tuples as lists, as state.json gives them back: what a config compares as."""
    return json.loads(json.dumps(value))


def capture(epoch: int, model, optimizer, scheduler, average, shuffle, feed, run) -> Snapshot:
    """Everything the epochs after `epoch` depend on. `run` is the TrialRun (its dev selection so far)."""
    tensors = {f"model.{name}": _copy(value) for name, value in model.state_dict().items()}
    if average is not None:
        tensors.update({f"average.{name}": _copy(value) for name, value in average.state_dict().items()})
    optimizer_state = optimizer.state_dict()
    scalars: dict[str, dict] = {}
    for index, values in optimizer_state["state"].items():
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{index}.{key}"] = _copy(value)
            else:
                scalars.setdefault(str(index), {})[key] = value
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.shuffle"] = shuffle.get_state()
    if feed.views is not None:
        tensors["rng.views"] = feed.generator.get_state()
    device = next(model.parameters()).device
    if device.type == "cuda":  # the training GPU's stream only: a rerun may see other GPUs, or fewer
        tensors["rng.cuda"] = torch.cuda.get_rng_state(device)
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(keys.astype(np.int64))
    record = {
        "epoch": epoch,
        "optimizer": _as_json({"state": scalars, "param_groups": optimizer_state["param_groups"]}),
        "scheduler": _as_json(scheduler.state_dict()),
        "numpy_rng": [kind, int(position), int(has_gauss), float(gauss)],
        "python_rng": _as_json(random.getstate()),
        "run": {"best": run.best, "best_epoch": run.best_epoch, "seconds": list(run.seconds)},
    }
    return Snapshot(epoch, tensors, record)


def _identity(config, cache_fingerprint_sha256: str, device: torch.device) -> dict:
    """What must be equal for a saved state to be taken up: otherwise the rerun is another training."""
    return {
        "config": _as_json(config.to_dict()),
        "cache_fingerprint_sha256": cache_fingerprint_sha256,
        "device": device.type,
        "torch": torch.__version__,
    }


def write_snapshot(run_dir: Path, snapshot: Snapshot, config, cache_fingerprint_sha256: str, device) -> Path:
    """`snapshot` to `<run>/resume/`, state.json last (a cut write leaves no state that looks whole)."""
    from spp_scl.runs.train.finished_run import file_sha256

    run_dir = Path(run_dir)
    folder = run_dir / RESUME_FOLDER
    folder.mkdir(exist_ok=True)
    (folder / STATE_RECORD).unlink(missing_ok=True)
    lines = (run_dir / "log.jsonl").read_text().splitlines(keepends=True)[: snapshot.epoch]
    tmp = folder / (STATE_TENSORS + ".tmp")
    save_file(snapshot.tensors, str(tmp))
    tmp.replace(folder / STATE_TENSORS)
    record = {
        "version": STATE_VERSION,
        **_identity(config, cache_fingerprint_sha256, torch.device(device)),
        **snapshot.record,
        "log": "".join(lines),
        "model_sha256": file_sha256(run_dir / "model.safetensors"),
        "state_sha256": file_sha256(folder / STATE_TENSORS),
    }
    write_atomically(folder / STATE_RECORD, json.dumps(record).encode())
    return folder


def discard(run_dir: Path) -> None:
    shutil.rmtree(Path(run_dir) / RESUME_FOLDER, ignore_errors=True)


def _read_record(run_dir: Path) -> dict | None:
    try:
        record = json.loads((Path(run_dir) / RESUME_FOLDER / STATE_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("version") == STATE_VERSION else None


def resumable_epoch(run_dir: Path) -> int | None:
    """The epoch a rerun would resume after (as far as the folder alone tells), else None."""
    record = _read_record(run_dir)
    epoch = record.get("epoch") if record else None
    return epoch if isinstance(epoch, int) and epoch > 0 else None


def read_snapshot(run_dir: Path, config, cache_fingerprint_sha256: str, device) -> tuple[Snapshot | None, str | None]:
    """(the saved state, None) when this training can take it up; (None, why not) when a state is there but
    cannot be used; (None, None) when there is none."""
    from spp_scl.runs.train.finished_run import file_sha256

    run_dir = Path(run_dir)
    folder = run_dir / RESUME_FOLDER
    if not folder.exists():
        return None, None
    record = _read_record(run_dir)
    if record is None:
        return None, f"{folder / STATE_RECORD} is missing or unreadable"
    wanted = _identity(config, cache_fingerprint_sha256, torch.device(device))
    changed = [key for key, value in wanted.items() if record.get(key) != value]
    if "config" in changed:
        saved = record.get("config") if isinstance(record.get("config"), dict) else {}
        fields = sorted(
            key for key in wanted["config"].keys() | saved.keys() if saved.get(key) != wanted["config"].get(key)
        )
        return None, "it was saved by a training with other settings (" + ", ".join(fields) + ")"
    if changed:
        names = {
            "cache_fingerprint_sha256": "another cache",
            "device": "another kind of device",
            "torch": "another torch",
        }
        return None, "it was saved by a training on " + " and ".join(names[key] for key in changed)
    try:
        same_weights = file_sha256(run_dir / "model.safetensors") == record.get("model_sha256")
        same_state = file_sha256(folder / STATE_TENSORS) == record.get("state_sha256")
    except OSError:
        same_weights = same_state = False
    if not (same_weights and same_state):
        return None, "the selected weights or the saved state are not those it was saved with"
    tensors = load_file(str(folder / STATE_TENSORS))
    return Snapshot(record["epoch"], tensors, record), None


def restore(snapshot: Snapshot, model, optimizer, scheduler, average, shuffle, feed, run) -> None:
    """Put the trainer's objects (built as for a fresh start) back into the saved state, its log.jsonl too."""
    tensors, record = snapshot.tensors, snapshot.record

    def part(prefix: str) -> dict:
        return {name[len(prefix) :]: value for name, value in tensors.items() if name.startswith(prefix)}

    model.load_state_dict(part("model."))
    if average is not None:
        average.load_state_dict(part("average."))
    state: dict[int, dict] = {}
    for name, value in part("optimizer.").items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    for index, values in record["optimizer"]["state"].items():
        state.setdefault(int(index), {}).update(values)
    groups = [{**group, "betas": tuple(group["betas"])} for group in record["optimizer"]["param_groups"]]
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    scheduler.load_state_dict(record["scheduler"])
    torch.set_rng_state(tensors["rng.torch"])
    shuffle.set_state(tensors["rng.shuffle"])
    if feed.views is not None:
        feed.generator.set_state(tensors["rng.views"])
    device = next(model.parameters()).device
    if "rng.cuda" in tensors and device.type == "cuda":
        torch.cuda.set_rng_state(tensors["rng.cuda"], device)
    kind, position, has_gauss, gauss = record["numpy_rng"]
    np.random.set_state((kind, tensors["rng.numpy"].numpy().astype(np.uint32), position, has_gauss, gauss))
    version, internal, gauss_next = record["python_rng"]
    random.setstate((version, tuple(internal), gauss_next))
    saved = record["run"]
    run.best, run.best_epoch, run.seconds = saved["best"], saved["best_epoch"], list(saved["seconds"])
    run.epochs_run = snapshot.epoch
    run.log_path.write_text(record["log"])


class EpochStates:
    """The trainer's side of resuming: take up a saved state, keep each finished epoch's in memory, write the last
    one kept when a stop comes. `parts` are the trainer's (model, optimizer, scheduler, average, shuffle, feed,
    run); `not_resumable` says why this training cannot be resumed (None: it can, when a stop is handled between
    steps, which `spp-scl train` does: runs/train/stop_signals.py)."""

    def __init__(
        self, run_dir, config, cache_fingerprint_sha256: str, device, parts: tuple, not_resumable=None, log=None
    ):
        from spp_scl.runs.train.stop_signals import resumable_stops

        self.run_dir, self.config, self.cache_sha, self.device = Path(run_dir), config, cache_fingerprint_sha256, device
        self.parts, self.log = parts, log or (lambda *_: None)
        self.why_not = not_resumable or (
            None if resumable_stops() else "its stops are not handled between steps (outside `spp-scl train`)"
        )
        self.kept: Snapshot | None = None

    def take_up(self) -> int:
        """The epoch a saved state of this training ends with (its objects put back in that state), else 0; a
        saved state that cannot be used is removed, with a line saying why."""
        snapshot, why = read_snapshot(self.run_dir, self.config, self.cache_sha, self.device)
        if snapshot is None:
            if why is not None:
                self.log(f"not resuming from {self.run_dir / RESUME_FOLDER}: {why}; training from epoch 1")
            discard(self.run_dir)
            return 0
        restore(snapshot, *self.parts)
        discard(self.run_dir)  # taken up: a stop from here on writes it again, or a later epoch's
        self.kept = snapshot if self.why_not is None else None
        self.log(f"resuming after epoch {snapshot.epoch} from the state saved when training stopped")
        return snapshot.epoch

    def keep(self, epoch: int) -> None:
        if self.why_not is None:
            self.kept = capture(epoch, *self.parts)

    def stopped(self) -> KeyboardInterrupt:
        """The exception to raise for a stop: the state of the last finished epoch written when it is consistent
        with the folder (the selected weights on disk are still those it saw), its message saying what a rerun
        does."""
        from spp_scl.runs.train.stop_signals import TrainingInterrupted

        run = self.parts[-1]
        why = self.why_not
        if why is None and self.kept is None:
            why = "it stopped in its first epoch"
        elif why is None and self.kept.record["run"]["best_epoch"] != run.best_epoch:
            why = "it stopped while saving an epoch's weights"
        if why is None:
            try:
                folder = write_snapshot(self.run_dir, self.kept, self.config, self.cache_sha, self.device)
            except OSError as error:
                why = f"its state could not be written ({error})"
        if why is not None:
            return TrainingInterrupted(f"nothing to resume from ({why}): a rerun restarts from epoch 1")
        epoch = self.kept.epoch
        return TrainingInterrupted(
            f"the state after epoch {epoch} is saved in {folder}: the same command resumes from epoch {epoch + 1}"
        )
