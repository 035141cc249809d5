"""Run many trainings (trials) on one cache: the engine under sweeps and the paper's tables.

A trial is a config (a base config plus overrides) and a seed. Each finished trial is appended at once, as one
JSON line, to a results file, so a stopped batch of trials resumes where it stopped and a finished one is a
no-op. The cache is opened once per process and reused by every trial that process runs; with `jobs` > 1 the
trials run in worker processes (one per GPU when there are GPUs, else the CPU cores shared between them).

With `group_size` > 1 (1 = every trial alone; the default, None, picks by the train split's storage:
resolve_group_size), pending trials that read the same batches (one train split, batch size and seed:
runs/train/interleaved_trials.interleave_key) train interleaved in groups of up to `group_size`: each batch read
once, every trial's step on it in turn, each trial the one trained alone (runs/train/interleaved_trials.py). The
probe and stored views train alone. A group is one unit of work (one job); in one process each of its trials is
recorded as soon as it finishes, so an interrupted group resumes with its unfinished trials only.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from spp_scl.core.errors import Diverged
from spp_scl.heads.config import SPPSCLConfig
from spp_scl.runs.trials.parent_watch import exit_with_parent
from spp_scl.runs.trials.split_storage import resolve_group_size, shared_splits, train_split_storage
from spp_scl.runs.trials.worker_resources import pin_to_gpu, threads_per_worker, worker_gpus

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Trial:
    name: str  # what the trial stands for in a table or sweep ("two-step", "tau=0.07 theta=0.5")
    overrides: dict
    seed: int

    def key(self, base: SPPSCLConfig) -> str:
        """Identifies the trial by its full resolved config, so a changed base never reuses a stale result."""
        config = self.config(base).identity()
        return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]

    def config(self, base: SPPSCLConfig) -> SPPSCLConfig:
        return base.replace(**self.overrides, seed=self.seed)


def over_folds(trials: list[Trial], folds: int | None) -> list[Trial]:
    """Each trial once per fold of k-fold selection over train+dev (spp_scl/cache/folds.py); as given for None."""
    if not folds:
        return trials
    selected = {"selection": "folds", "folds": folds}
    return [Trial(t.name, {**t.overrides, **selected, "fold": fold}, t.seed) for t in trials for fold in range(folds)]


def read_results(path: Path) -> list[dict]:
    """The finished trials of a results file; a last line cut short by a kill is ignored."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


class OpenedSplits:
    """A cache's splits, opened once per process per text-layer selection and reused by every trial it trains."""

    def __init__(self, cache: str | Path, shared: str | Path | None = None) -> None:
        self.cache, self.shared = str(cache), shared  # shared: the jobs' shared copies (runs/trials/split_storage.py)
        self.by_layers: dict = {}

    def for_config(self, config: SPPSCLConfig) -> dict:
        """The splits `config` trains on; the folds of k-fold selection share the opened train and dev (and never
        open test)."""
        from spp_scl.runs.train.trainer import cache_splits, for_selection

        key = (config.text_layers_last, config.selection == "folds")
        if key not in self.by_layers:
            self.by_layers[key] = cache_splits(self.cache, config, shared=self.shared)
        return for_selection(self.by_layers[key], config)


def train_unit(configs: list[SPPSCLConfig], run_dirs: list, splits: OpenedSplits, on_epoch=None, on_finish=None):
    """One unit of work, under both schedulers (run_trials' fixed list, a sweep worker's claims): one trial alone
    (runs/train/trainer.train) or several of one interleave_key interleaved (runs/train/interleaved_trials.py).
    `on_epoch(index, epoch, dev)` returning True stops that trial; `on_finish(index, result, seconds)` is called as
    each trial finishes, with its wall time alone or its own share of the group's. Returns each trial's
    TrainResult, or the Diverged error that ended it, in order; any other error is raised."""
    from spp_scl.runs.train.interleaved_trials import train_interleaved
    from spp_scl.runs.train.trainer import train

    quiet = lambda *_: None  # noqa: E731  (the schedulers log one line per finished trial themselves)
    opened = splits.for_config(configs[0])
    if len(configs) > 1:
        finished = None if on_finish is None else lambda i, r: on_finish(i, r, r.seconds_per_epoch * r.epochs_run)
        return train_interleaved(
            splits.cache, configs, run_dirs, log=quiet, splits=opened, on_epoch=on_epoch, on_finish=finished
        )
    started = time.time()
    try:
        hook = on_epoch and functools.partial(on_epoch, 0)
        result = train(splits.cache, configs[0], run_dirs[0], log=quiet, splits=opened, on_epoch=hook)
    except Diverged as error:
        return [error]
    if on_finish is not None:
        on_finish(0, result, time.time() - started)
    return [result]


def result_row(trial: Trial, config: SPPSCLConfig, result, seconds: float, run_dir: str) -> dict:
    """A trained trial's line in results.jsonl (tables, compare and sweeps alike; a sweep adds its own fields)."""
    return {
        "name": trial.name,
        "overrides": trial.overrides,
        "seed": trial.seed,
        "config": config.to_dict(),
        "dev": _headline(result.metrics.get("dev")),
        "test": _headline(result.metrics.get("test")),
        "selected_epoch": result.selected_epoch,
        "epochs_run": result.epochs_run,
        "seconds": round(seconds, 2),
        "seconds_per_epoch": round(result.seconds_per_epoch, 3),
        "run_dir": run_dir,
    }


_process: dict = {}  # a worker process's OpenedSplits


def _init_worker(cache: str, threads: int, devices, parent_pid: int, shared: str | None = None) -> None:
    exit_with_parent(parent_pid)  # a sweep killed with kill -9 must not leave its workers running
    import torch

    if devices is not None:  # one GPU per worker, taken from a shared queue
        pin_to_gpu(devices.get())
    torch.set_num_threads(threads)
    _process["splits"] = OpenedSplits(cache, shared)


def _run_unit(base: dict, trials: list[Trial], run_dirs: list[str], splits: OpenedSplits | None = None, on_row=None):
    """Trains `trials` as one unit; returns their rows (a trial that diverged: its error), in order. `on_row(i,
    row)` is called as each trial finishes."""
    configs = [trial.config(SPPSCLConfig.from_dict(base)) for trial in trials]
    rows = {}

    def finished(index: int, result, seconds: float) -> None:
        rows[index] = result_row(trials[index], configs[index], result, seconds, run_dirs[index])
        if on_row is not None:
            on_row(index, rows[index])

    outcomes = train_unit(configs, run_dirs, splits or _process["splits"], on_finish=finished)
    return [rows.get(index, outcome) for index, outcome in enumerate(outcomes)]


def check_reused_rows(rows: list[dict], cache: str | Path, results: Path) -> None:
    """A finished trial is reused only when it trained on the cache the trials are asked for now: a trial's key
    names its config, not its data, so a cache rebuilt at the same path (other records, other encoders) would
    otherwise mix the old results with the new. Checked against the sha256 of the cache fingerprint each run's
    config.json records; rows whose run folder is gone, or predates the record, are taken as they are."""
    from spp_scl.cache.layout import read_attrs
    from spp_scl.core.errors import Refused
    from spp_scl.extract.fingerprint import sha256_json
    from spp_scl.runs.predict.run_folder import fingerprint_changes

    if not rows:
        return
    now = read_attrs(cache)["fingerprint"]
    for row in rows:
        path = Path(row.get("run_dir") or "") / "config.json"
        try:
            recorded = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(recorded, dict) or recorded.get("cache_fingerprint_sha256") in (None, sha256_json(now)):
            continue
        changes = "; ".join(fingerprint_changes(recorded.get("cache_fingerprint") or {}, now)[:3]) or "its fingerprint"
        raise Refused(
            f"{results}: trial {row.get('name')} seed {row.get('seed')} was trained on another cache than {cache} "
            f"holds now ({changes}): reusing it would mix two caches' results; use another --out, or remove "
            f"{results.parent} to train again"
        )


def plan_groups(
    base: SPPSCLConfig, trials: list[Trial], group_size: int, jobs: int = 1
) -> tuple[list[list[Trial]], list[Trial]]:
    """(groups of trials trained together, trials trained alone). Trials of one interleave_key are cut into
    groups of at most `group_size`, and into at least `jobs` groups (a group is one job: fewer groups than jobs
    would leave workers idle); a group of one trains alone."""
    from spp_scl.runs.train.interleaved_trials import interleave_key

    alone, by_key = [], {}
    for trial in trials:
        key = interleave_key(trial.config(base)) if group_size > 1 else None
        if key is None:
            alone.append(trial)
        else:
            by_key.setdefault(key, []).append(trial)
    groups = []
    for members in by_key.values():
        size = min(group_size, -(-len(members) // max(jobs, 1)))
        for start in range(0, len(members), size):
            chunk = members[start : start + size]
            if len(chunk) > 1:
                groups.append(chunk)
            else:
                alone.extend(chunk)
    return groups, alone


def _headline(metrics: dict | None) -> dict | None:
    if metrics is None:
        return None
    return {key: metrics[key] for key in ("accuracy", "f1_weighted", "f1_macro")}


def run_trials(
    cache: str | Path,
    base: SPPSCLConfig,
    trials: list[Trial],
    results: Path,
    runs_dir: Path,
    jobs: int = 1,
    log=None,
    progress: bool = True,
    group_size: int | None = None,
) -> list[dict]:
    """Run the trials not yet in `results`; returns the rows of all `trials` (finished before or now). Pending
    trials that read the same batches train interleaved in groups of up to `group_size` (1 = each alone; None =
    resolve_group_size)."""
    log = log or logger.info
    import torch

    results.parent.mkdir(parents=True, exist_ok=True)
    done = {row["key"]: row for row in read_results(results)}
    if results.exists() and results.stat().st_size and not results.read_bytes().endswith(b"\n"):
        with results.open("a") as handle:  # end a line a kill cut short, so the next result starts a line
            handle.write("\n")
    check_reused_rows([done[t.key(base)] for t in trials if t.key(base) in done], cache, results)
    pending = [t for t in trials if t.key(base) not in done]
    if len(pending) < len(trials):
        log(f"{len(trials) - len(pending)} of {len(trials)} trials already in {results}")
    storage = train_split_storage(cache, jobs) if pending else "memory"  # decided once: group size and sharing
    group_size = resolve_group_size(group_size, cache, jobs, log if pending else None, storage)
    base_dict = base.to_dict()
    # On a terminal only (tqdm's disable=None): logs keep one line per finished trial and no bar redraws.
    bar = tqdm(
        total=len(trials),
        initial=len(trials) - len(pending),
        unit="trial",
        desc=results.parent.name,
        disable=None if progress else True,
        dynamic_ncols=True,
    )

    def record(trial: Trial, row: dict) -> None:
        row = {"key": trial.key(base), **row}
        with results.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        done[row["key"]] = row
        bar.update(1)
        finished = sum(t.key(base) in done for t in trials)  # of these trials: results.jsonl may hold others
        log(
            f"[{finished}/{len(trials)}] {trial.name} seed {trial.seed}: dev acc {row['dev']['accuracy']:.4f} "
            f"{base.selection_metric} {row['dev'][base.selection_metric]:.4f} ({row['seconds']:.0f} s)"
        )

    groups, alone = plan_groups(base, pending, group_size, jobs)
    if groups:
        log(f"{sum(len(g) for g in groups)} trials interleaved in {len(groups)} group(s), {len(alone)} alone")
    units = groups + [[trial] for trial in alone]

    def record_unit(members: list[Trial], rows: list) -> None:
        """The unit's finished trials are recorded; a trial that diverged then stops the run."""
        for trial, row in zip(members, rows):
            if not isinstance(row, Exception) and trial.key(base) not in done:
                record(trial, row)
        errors = [row for row in rows if isinstance(row, Exception)]
        if errors:
            raise errors[0]

    def run_dirs(members: list[Trial]) -> list[str]:
        return [str(runs_dir / trial.key(base)) for trial in members]

    if jobs <= 1:
        splits = OpenedSplits(cache)
        for members in units:
            on_row = lambda index, row, members=members: record(members[index], row)  # noqa: E731
            record_unit(members, _run_unit(base_dict, members, run_dirs(members), splits, on_row))
    elif pending:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        gpus = worker_gpus(jobs, torch.cuda.device_count())
        devices = None
        if gpus:
            devices = context.SimpleQueue()  # handed to the workers as they start: no manager process to outlive us
            for name in gpus:
                devices.put(name)
        threads = threads_per_worker(jobs)
        with shared_splits(cache, storage, results.parent, log) as shared:
            initargs = (str(cache), threads, devices, os.getpid(), shared and str(shared))
            with ProcessPoolExecutor(jobs, mp_context=context, initializer=_init_worker, initargs=initargs) as pool:
                futures = {pool.submit(_run_unit, base_dict, members, run_dirs(members)): members for members in units}
                for future in as_completed(futures):
                    record_unit(futures[future], future.result())
    bar.close()
    # Under the asking trial's name: a trial another command (compare, sweep) finished in the same --out is the same
    # config and seed, and its row joins this command's table under this command's label.
    return [{**done[t.key(base)], "name": t.name} for t in trials]
