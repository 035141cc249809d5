"""One extraction per output at a time: spp_scl.core.exclusive_lock on `<cache>.lock`, which names its holder.

Two extractions to the same cache would share `<cache>.parts` and `<cache>.tmp`, and the second one's writes
would empty or mix the first one's; the second is refused (Refused, status 4). The kernel releases the lock
however its holder ends (kill -9 included), so a lock file left behind never blocks a later run.
"""

from __future__ import annotations

from pathlib import Path

from spp_scl.core.exclusive_lock import ExclusiveLock


def lock_path(cache: Path) -> Path:
    return cache.with_name(cache.name + ".lock")


class OutputLock(ExclusiveLock):
    def __init__(self, cache: str | Path):
        self.cache = Path(cache)
        super().__init__(lock_path(self.cache), self.refusal_message)

    def refusal_message(self, holder: str, path: Path) -> str:
        return (
            f"{self.cache} is being written by another extraction ({holder}; lock {path}): wait for it to finish, "
            "or stop it and rerun (its finished shards are kept)"
        )
