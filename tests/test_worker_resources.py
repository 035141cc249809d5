"""What `--jobs N` gives each worker process: one of the GPUs the user made visible (named as the user named them),
and a share of the CPUs this process may run on. Runs without a GPU: the device count is what torch would report."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from spp_scl.runs.sweep import driver
from spp_scl.runs.sweep.worker import WorkerSettings
from spp_scl.runs.trials.worker_resources import pin_to_gpu, threads_per_worker, worker_gpus


def test_workers_take_the_gpus_the_user_made_visible(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert worker_gpus(3, 2) == ["2", "3", "2"]  # not "0", "1": those are GPUs the user excluded


def test_gpus_named_by_uuid_are_passed_on_as_named(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-8f1e, MIG-4a2b")
    assert worker_gpus(2, 2) == ["GPU-8f1e", "MIG-4a2b"]


def test_entries_torch_did_not_count_are_never_handed_out(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,7,-1,4")  # CUDA stops at the invalid -1: two devices
    assert worker_gpus(3, 2) == ["1", "7", "1"]


def test_without_a_visible_list_the_workers_count_from_the_first_gpu(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert worker_gpus(4, 2) == ["0", "1", "0", "1"]
    assert worker_gpus(2, 0) is None


def test_a_worker_pinned_to_a_gpu_sees_only_that_one(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    pin_to_gpu("3")
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3"
    pin_to_gpu(None)  # no GPUs: the environment is left as it is
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3"


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs Linux CPU affinity")
def test_threads_are_shared_out_from_the_cpus_this_process_may_use():
    # A process limited to one CPU (taskset, a container's cpuset) gives each job one thread, whatever the machine has.
    code = (
        "import os; os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]});"
        "from spp_scl.runs.trials.worker_resources import threads_per_worker;"
        "print(threads_per_worker(1), threads_per_worker(4))"
    )
    printed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert printed.split() == ["1", "1"]
    cpus = len(os.sched_getaffinity(0))
    assert threads_per_worker(1) == cpus and threads_per_worker(cpus * 2) == 1


def test_sweep_workers_are_started_on_the_visible_gpus(monkeypatch, tmp_path):
    started = []

    class RecordedProcess:
        def __init__(self, target, args, name):
            started.append(args[0])
            self.name, self.exitcode = name, 0

        def start(self):
            pass

        def join(self):
            pass

    class Context:
        Process = RecordedProcess

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")
    monkeypatch.setattr("torch.cuda.device_count", lambda: 2)
    monkeypatch.setattr("multiprocessing.get_context", lambda method: Context())
    driver.run_worker_processes(WorkerSettings(None, tmp_path, None, "study", heartbeat=1), jobs=3)
    assert [settings.device for settings in started] == ["5", "7", "5"]
    assert all(settings.threads == threads_per_worker(3) for settings in started)
