"""One `train` per run folder at a time: an OS lock on `<run>/train.lock` that names its holder.

Two trainings to one folder would interleave their writes: one run's config.json beside the other's weights, a
merged log.jsonl, both printing the same metrics. The second one is refused (exit status 4) before it writes
anything, naming the holder. The lock is the kernel's (spp_scl/core/exclusive_lock.py): it is released however
its holder ends, so a lock file that kill -9 leaves behind blocks nothing.
"""

from __future__ import annotations

from pathlib import Path

from spp_scl.core.exclusive_lock import ExclusiveLock, describe_holder, holder_alive, read_holder

LOCK_FILE = "train.lock"


def run_lock(run_dir: str | Path) -> ExclusiveLock:
    """The lock of `run_dir` (created if need be), not yet taken: `with run_lock(run_dir): ...`."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)

    def refusal(holder: str, path: Path) -> str:
        return (
            f"{run_dir} is being written by another training ({holder}; lock {path}): wait for it to finish, "
            "or stop it, or train into another --out"
        )

    return ExclusiveLock(run_dir / LOCK_FILE, refusal)


def trained_now_by(run_dir: str | Path) -> str | None:
    """Who is training into `run_dir` now (from its lock file, when that names a live process here), else None.
    Read without taking the lock, so that looking never gets in the way of a training that is starting."""
    holder = read_holder(Path(run_dir) / LOCK_FILE)
    return describe_holder(holder) if holder_alive(holder) else None
