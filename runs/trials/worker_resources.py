"""What each of `--jobs N` worker processes on this machine gets: its CPU threads and, where there are GPUs, one GPU.

Both are taken from what this process may use, not from what the machine has:
- threads: the CPUs this process may run on (its affinity: `taskset`, a container's cpuset), shared out; the
  machine's CPU count would give each job the threads of the whole host inside a 2-CPU container and oversubscribe
  it many times over;
- GPUs: the devices this process sees. A worker is pinned to one by setting CUDA_VISIBLE_DEVICES before it first
  touches CUDA; the value has to name the device as the parent's own CUDA_VISIBLE_DEVICES does (an index, a UUID
  or a MIG id), since the worker's indices would otherwise count from the machine's first GPU, which the user may
  have excluded (`CUDA_VISIBLE_DEVICES=2,3 spp-scl sweep --jobs 2` must train on GPUs 2 and 3).
"""

from __future__ import annotations

import os


def usable_cpus() -> int:
    """The CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):  # Linux; macOS and Windows have no affinity call in os
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def threads_per_worker(jobs: int) -> int:
    """Torch threads for each of `jobs` worker processes: the usable CPUs shared out, at least one."""
    return max(1, usable_cpus() // max(jobs, 1))


def worker_gpus(jobs: int, gpu_count: int) -> list[str] | None:
    """The CUDA_VISIBLE_DEVICES value of each of `jobs` workers, round-robin over the `gpu_count` devices this
    process sees (torch.cuda.device_count()); None without GPUs."""
    if gpu_count <= 0:
        return None
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    names = [name.strip() for name in visible.split(",")] if visible else [str(index) for index in range(gpu_count)]
    names = names[:gpu_count]  # CUDA stops at the first invalid entry; torch counted only the ones before it
    return [names[index % len(names)] for index in range(jobs)]


def pin_to_gpu(name: str | None) -> None:
    """In a worker, before its first CUDA call: make `name` (one of worker_gpus' values) its only device."""
    if name is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = name
