"""Every benchmark in bench/ runs end to end at toy size and prints its figures: the docs quote their output, so a
benchmark broken by a change to the library must fail here, not when someone next measures. Those that read a cache
run on a small generated one; extract_throughput, predict_speed and view_cost on the tiny encoders and generated
dataset of tests/conftest.py (and a run trained from them) in place of the real data and encoders; train_speed on a
small cache and a small batch of the authors' way. gemm_calls has no entry point: its recorder and replay are
checked directly on a tiny workload against an independent count."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from bench.gemm_calls import CPU_ATTENTION_FLOPS, Gemm, GemmRecorder, replay_seconds
from spp_scl.heads.presets import resolve_config
from spp_scl.runs.train.trainer import train
from tests.conftest import ROOT_DIR
from tests.tiny_run import tiny_run

pytestmark = pytest.mark.slow

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def cache(synthetic_cache):
    return synthetic_cache(
        {"train": 40, "dev": 12, "test": 12},
        layers=4,
        dim=16,
        map_shape=(8, 2, 2),
        mean_tokens=5,
    )


def run_bench(module: str, *args) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", f"bench.{module}", *map(str, args)],
        cwd=ROOT_DIR,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def bench(module: str, *args) -> str:
    result = run_bench(module, *args)
    return result.stdout + result.stderr


@pytest.mark.parametrize(
    "module, args, expected",
    [
        ("head_speed", ["--epochs", "1"], "linear probe, both modalities"),
        ("grouped_trials", ["--epochs", "1", "--kinds", "alone,group4"], "trial-epochs/h"),
        ("epoch_floor", ["--epochs", "1"], "seconds/floor per epoch"),
    ],
)
def test_benchmarks_on_a_small_cache(cache, module, args, expected):
    assert expected in bench(module, "--cache", cache, *args)


def test_cache_checksums_benchmark():
    assert "inspect --verify of the whole cache" in bench("cache_checksums", "--records", 20, "--repeats", 1)


def test_sweep_pruning_benchmark(cache, tmp_path):
    output = bench(
        "sweep_pruning", "--cache", cache, "--epochs", 3, "--patience", 2, "--jobs", 1, "--eval-seeds", 1,
        "--replays", 2, "--out", tmp_path / "out",
    )  # fmt: skip
    assert "Pruned choice within one standard deviation of the exhaustive choice" in output


def test_seed_runs_and_batch_fusion_benchmarks(cache, tmp_path):
    for seed in (42, 43):
        config = resolve_config("mvsa-single", epochs=1, batch_size=8, seed=seed, fusion="cmf-batch")
        train(cache, config, tmp_path / "runs" / f"batch-s{seed}", log=lambda *_: None)
    table = bench("seed_runs", tmp_path / "runs")
    assert "batch" in table
    assert "by label (oracle)" in bench("batch_fusion_dependence", tmp_path / "runs" / "batch-s42")


def test_extract_throughput_benchmark(tiny):
    output = bench(
        "extract_throughput", "--data", tiny["data"], "--records", 16, "--batch-size", 8,
        "--text-encoder", tiny["text"], "--image-encoder", tiny["image"],
    )  # fmt: skip
    assert "records: 16 of 16" in output
    assert "throughput ratio pipeline / bare" in output
    assert "KiB per record" in output


def test_dataset_equivalence_benchmark(tiny, tmp_path):
    pytest.importorskip("datasets")
    from spp_scl.extract.pipeline import run
    from tests.conftest import tiny_config

    cache = tmp_path / "split.h5"
    run(tiny_config(tiny, cache), log=lambda *_: None)
    output = bench(
        "dataset_equivalence", "--data", tiny["data"], "--dataset", "mvsa-single", "--cache", cache,
        "--work", tmp_path / "work",
    )  # fmt: skip
    assert '"differing": []' in output and '"records": {"train": 40, "dev": 12, "test": 12}' in output


def test_compare_results_pairs_rows_of_different_files_by_seed(tmp_path):
    def write(name, accuracies):
        rows = [
            {"seed": seed, "dev": {"accuracy": a, "f1_weighted": a - 0.01, "f1_macro": a - 0.05}}
            for seed, a in enumerate(accuracies)
        ]
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))

    write("first", [0.70, 0.72, 0.71])
    write("mean", [0.68, 0.71, 0.69])
    output = bench(
        "compare_results", "--row", f"first={tmp_path / 'first.jsonl'}", "--row", f"mean={tmp_path / 'mean.jsonl'}"
    )
    lines = output.strip().splitlines()
    assert lines[2].startswith("| first | 3 | 0.7100 +- 0.0100 [") and lines[2].endswith("| reference |  |")
    # differences 0.02, 0.01, 0.02: paired t = 0.01667 / (0.00577 / sqrt 3) = 5.0 on 2 df, p = 0.0377
    assert lines[3].startswith("| mean | 3 | 0.6933 +- ") and "| 0.038 * / 0.038 * / 0.038 * | n/a |" in lines[3]


def test_predict_speed_benchmark(tiny, tmp_path_factory):
    run_dir = tiny_run(tiny, tmp_path_factory, epochs=1)
    report = json.loads(
        run_bench(
            "predict_speed", run_dir, "--split-file", Path(tiny["data"]) / "dev.json", "--records", 8,
            "--latency-pairs", 3, "--batch-sizes", "1,4",
        ).stdout
    )  # fmt: skip
    assert report["pairs"] == 8 and report["errors"] == 0
    assert report["latency_ms"]["pairs"] == 3
    assert set(report["throughput_pairs_per_s"]) == {"1", "4"}
    assert report["agreement_with_trainer_dev_predictions"]["same_class"] == 1.0


def test_view_cost_benchmark(tiny, tmp_path):
    """A split folder like the real one: train.json, the images in place, and a back-translation per record."""
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(Path(tiny["data"]) / "train.json", data / "train.json")
    (data / "images").symlink_to(Path(tiny["data"]) / "images")
    records = json.loads((data / "train.json").read_text())
    translations = [{"id": r["id"], "text_translation": f"{r['text']} today"} for r in records]
    (data / "back_translations.json").write_text(json.dumps(translations))
    kinds = ["text dropout (last layer)", "text paraphrase (4 layers)", "image BatchNorm train mode"]
    output = bench(
        "view_cost", "--data", data, "--records", 8, "--text-encoder", tiny["text"], "--text-layers", "1,2,3,4",
        "--image-encoder", tiny["image"], "--kinds", ",".join(kinds),
    )  # fmt: skip
    assert "clean extraction of 8 train records" in output
    rows = {line.split("|")[1].strip(): line.split("|")[2:5] for line in output.splitlines() if line.startswith("| ")}
    for kind in kinds:
        assert float(rows[kind][0]) > 0, f"{kind} stored no view bytes"


def test_train_speed_benchmark():
    output = bench(
        "train_speed", "--epochs", 1, "--train-records", 40, "--dev-records", 12, "--authors-batch-size", 2,
        "--authors-length", 24,
    )  # fmt: skip
    for fusion in ("cmf-bank", "cmf-batch"):
        assert f"ours ({fusion}):" in output
    assert "the authors' way:" in output


def test_gemm_recorder_counts_each_product_and_replays_them():
    """A linear layer, a batched product and attention, forward and backward: the recorded products' FLOPs match a
    count by hand and torch's FLOP counter; replay runs them (and in bfloat16)."""
    torch.manual_seed(0)
    linear = torch.nn.Linear(8, 4)
    inputs = torch.randn(6, 8, requires_grad=True)
    left, right = torch.randn(3, 5, 7, requires_grad=True), torch.randn(3, 7, 2)
    query, key, value = (torch.randn(2, 2, 4, 8, requires_grad=True) for _ in range(3))
    counter, recorder = FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS), GemmRecorder()
    with counter, recorder:
        loss = linear(inputs).sum() + torch.bmm(left, right).sum()
        loss = loss + F.scaled_dot_product_attention(query, key, value).sum()
        loss.backward()
    linear_flops, bmm_flops = 2 * 6 * 8 * 4, 2 * 3 * 5 * 7 * 2
    attention_flops = 2 * (2 * 2) * 4 * 4 * (8 + 8)  # Q K^T and P V over batch x heads
    # Backward: the linear layer's input and weight gradients, the bmm's left gradient only, attention twice.
    assert recorder.flops(backward=False) == linear_flops + bmm_flops + attention_flops
    assert recorder.flops(backward=True) == 2 * linear_flops + bmm_flops + 2 * attention_flops
    assert recorder.flops() == counter.get_total_flops()
    assert [call.backward for call in recorder.calls].count(False) == 1 + 1 + 2
    assert [call.backward for call in recorder.calls].count(True) == 2 + 1 + 4
    assert recorder.calls[0].gemm == Gemm(0, 6, 8, 4, torch.float32, a_transposed=False, b_transposed=True)
    assert not recorder.unrecorded

    with GemmRecorder() as convolutions:
        torch.nn.Conv2d(1, 2, 3)(torch.randn(1, 1, 5, 5))
    assert not convolutions.calls and sum(convolutions.unrecorded.values()) == 1

    gemms = [call.gemm for call in recorder.calls]
    assert replay_seconds([]) == 0.0
    assert replay_seconds(gemms, repeats=1) > 0
    assert replay_seconds(gemms, dtype=torch.bfloat16, repeats=1) > 0


@pytest.mark.slow
def test_the_device_check_writes_every_part_on_the_cpu(tmp_path):
    from spp_scl.runs.protocols.comparison import select_methods

    out = tmp_path / "check.json"
    bench("device_check", "--tiny", "--out", out, "--work", tmp_path / "work")
    report = json.loads(out.read_text())
    assert report["environment"]["device"] in ("cpu", "cuda") and report["tiny"]
    rows = {(row["method"], row["precision"]): row for row in report["heads"]}
    assert set(rows) == {(method.key, p) for method in select_methods(None) for p in ("float32", "bfloat16")}
    for row in rows.values():  # timed, or refused in the trainer's words (bfloat16 where it is slow)
        assert row.get("later_epoch_seconds", 0) > 0 or row["refused"].startswith("precision bfloat16 needs")
    recurrence = report["recurrence"]  # the head's BiLSTM and nn.LSTM on the padded batch: same vectors, both timed
    assert recurrence["texts"] == 4 and recurrence["steps"] == 5 and recurrence["max_abs_difference"] < 1e-5
    assert recurrence["schedule_train_ms"] > 0 and recurrence["padded_no_grad_ms"] > 0
    compiled_recurrence = report["recurrence_compiled"]  # the compile-friendly one, through torch.compile
    assert compiled_recurrence["masked_max_abs_difference"] < 1e-5 and compiled_recurrence["masked_compile_seconds"] > 0
    (compiled,) = report["compiled"]  # SPP-SCL's iteration eager and compiled, its graphs cut at the eager islands
    assert compiled["method"] == "spp-scl" and compiled["eager_seconds"] > 0 and compiled["compiled_seconds"] > 0
    assert (compiled["graphs"], compiled["graph_breaks"]) == (4, 3)
    assert report["sweep"]["trials"] == 2 and report["sweep"]["trial_epochs_per_hour"] > 0
    assert report["extraction"]["records"] == 8 and 0 < report["extraction"]["pipeline_over_bare"]
    assert report["tests"]["exit_status"] == 0  # the gpu-marked tests: skipped without a GPU, passed with one


def test_the_lstms_the_recurrence_bench_times_give_the_heads_text_vectors():
    # bench/text_recurrence.py compares speeds only if its paths compute the same thing: a bias-free LSTM read
    # backwards over right padding starts each text from an exact zero state; the masked one holds it at zero.
    from torch import nn

    from bench.text_recurrence import masked_lstm_mean, padded_lstm_mean
    from spp_scl.heads.token_lstm import TokenSchedule, bidirectional_lstm_mean

    torch.manual_seed(0)
    lstm = nn.LSTM(6, 5, batch_first=True, bidirectional=True, bias=False).double()
    schedule = TokenSchedule.from_lengths(torch.tensor([3, 7, 1, 7, 4]))
    tokens = torch.randn(len(schedule.steps), 6, dtype=torch.float64, requires_grad=True)
    head = bidirectional_lstm_mean(tokens, schedule, lstm)
    weights = torch.randn_like(head)
    (head_grad,) = torch.autograd.grad((head * weights).sum(), tokens)
    for path in (padded_lstm_mean, masked_lstm_mean):  # masked: the compile-friendly recurrence, here eager
        other = path(tokens, schedule, lstm)
        torch.testing.assert_close(other, head, rtol=1e-12, atol=1e-12)
        (other_grad,) = torch.autograd.grad((other * weights).sum(), tokens)
        torch.testing.assert_close(other_grad, head_grad, rtol=1e-12, atol=1e-12)
