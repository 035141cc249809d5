"""Where the jobs of one machine find the train split, and what follows from it: the group size left to the tool,
and a shared copy when the jobs could not each hold their own.

- "memory": every job holds its own copy (it fits once per job in half the memory available);
- "shared": several jobs that could not each hold a copy map one (cache/shared_split.py), written into the output
  folder (`.shared-splits/<process id>`) before they start and removed when they are done;
- "file": every job reads it from the cache file batch by batch.
Interleaved groups pay where the split is read from the file (each batch read once for the group: 1.90x alone in
groups of 4) and not where it is held (1.01x): docs/benchmarks.md, the row "trials in groups".
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

AUTO_GROUP_SIZE = 8  # trials interleaved per group when the tool picks and the jobs read the split from the file
SHARED_FOLDER = ".shared-splits"
SHARED_SPLITS = ("train", "dev")  # never test: k-fold selection must not read it


def train_split_storage(cache: str | Path, jobs: int = 1) -> str:
    """ "memory", "shared" or "file" (above): a prediction from the train split's bytes against the memory budget
    now (what the jobs' CachedSplit will decide); a wrong one costs speed only."""
    from spp_scl.cache.reader import fits_in_memory

    if fits_in_memory(cache, "train", processes=jobs):
        return "memory"
    if jobs > 1 and fits_in_memory(cache, "train", processes=1):
        return "shared"
    return "file"


STORAGE_WORDS = {
    "memory": "held in memory",
    "shared": "mapped from one copy shared by the jobs",
    "file": "read from the cache file",
}


def resolve_group_size(
    group_size: int | None, cache: str | Path, jobs: int = 1, log=None, storage: str | None = None
) -> int:
    """`group_size`, or for None: groups of AUTO_GROUP_SIZE when the jobs will read the train split from the file,
    every trial alone when they hold or map it (a batch then costs little to gather). `storage`: the caller's
    train_split_storage, decided once for this and for shared_splits."""
    if group_size is not None:
        return group_size
    storage = storage or train_split_storage(cache, jobs)
    size = AUTO_GROUP_SIZE if storage == "file" else 1
    if log is not None:
        log(f"group size {size}: the train split will be {STORAGE_WORDS[storage]} (--group-size sets it)")
    return size


@contextlib.contextmanager
def shared_splits(cache: str | Path, storage: str, folder: str | Path, log=None):
    """The folder of shared copies (train and dev) for the jobs of a run writing into `folder`, or None when
    `storage` (the caller's train_split_storage) is not "shared", or the copy could not be written (the jobs then
    do without); removed when the jobs are done. Each run has its own folder (`.shared-splits/<process id>`), so that two runs into one output folder
    never remove each other's; those of runs no longer alive are removed first."""
    from spp_scl.cache.layout import split_sizes
    from spp_scl.cache.shared_split import remove_shared, share_split

    if storage != "shared":
        yield None
        return
    say = log or (lambda *_: None)
    _remove_dead_runs(Path(folder) / SHARED_FOLDER)
    target = Path(folder) / SHARED_FOLDER / str(os.getpid())
    try:
        try:
            for split, records in split_sizes(cache).items():
                if split in SHARED_SPLITS and records:
                    share_split(cache, split, target)
        except OSError as error:  # a full disk, say: the jobs hold or read their own as they would without it
            say(f"no shared copy of the splits ({error}): each job holds or reads its own")
            yield None
            return
        say(f"the jobs share one copy of the train and dev splits' features ({target}, removed at the end)")
        yield target
    finally:
        remove_shared(target)
        with contextlib.suppress(OSError):
            target.parent.rmdir()  # when no other run's copy is left in it


def _remove_dead_runs(shared: Path) -> None:
    """The copies of runs whose process is gone (a run killed before it removed its own)."""
    for run in shared.glob("*") if shared.is_dir() else ():
        try:
            os.kill(int(run.name), 0)
        except ProcessLookupError:
            shutil.rmtree(run, ignore_errors=True)
        except (ValueError, PermissionError):
            pass  # not a run's folder, or another user's live process
