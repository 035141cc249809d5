"""A pruned sweep against the exhaustive one: wall time, epochs spent, and whether the pruned sweep's choice is as
good as the exhaustive sweep's when both are retrained with 5 seeds.

    python -m bench.sweep_pruning --cache cache/files/mvsa-single.h5 --epochs 150 --patience 20 --jobs 2
    python -m bench.sweep_pruning --synthetic runs/out/bench-sweep/synthetic.h5 --epochs 30 --patience 10 --jobs 2

Both sweeps run the 27-point tau x theta x lambda grid (the paper's values, one seed each) on the same cache with
the same base config; the pruned one uses successive halving on the dev metric per epoch, its points in a seeded
random order (as `spp-scl sweep --prune` does). Then each chosen point is trained with --eval-seeds seeds (dev
only). The goal: the pruned choice's mean dev metric is within one standard deviation of the exhaustive choice's.
The report also replays the exhaustive sweep's per-epoch curves through Optuna's pruner, one trial after another,
in axis order and in --replays random orders: the epochs and choices pruning would give, without training again.
A folder `pruned-axis-order` (a pruned sweep run in axis order, if one was run) is reported beside them.
Every stage resumes (each is a sweep folder; a finished one is read back, not reopened); a stage's wall time is
the sum over the runs that worked on it (checkpointed every 30 s into timings.json, so a stage stopped and resumed
in another session counts both parts). Results go to --out/report.md and report.json.

--synthetic writes (once) a small generated cache whose settings matter (a weak class signal, so dev F1 climbs for
tens of epochs and the points rank apart): for measuring the engine where the real cache would take hours, not
for any claim about MVSA.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

from spp_scl.cache.synthetic import write_synthetic_cache
from spp_scl.heads.presets import resolve_config
from spp_scl.runs.sweep.driver import run_sweep
from spp_scl.runs.sweep.grid import parse_space
from spp_scl.runs.sweep.study import SweepPlan
from spp_scl.runs.sweep.worker import Pruning
from spp_scl.runs.trials.statistics import spread_cell

AXES = ["tau=0.05,0.07,0.1", "theta=0.5,0.667,0.8", "lambda=3,5,8"]


def timed_sweep(name: str, out: Path, timings: dict, **kwargs) -> dict:
    """A stage's sweep; a stage that finished before (its summary written) is read back as it is, not reopened: its
    figures stay those of the code that ran it. A stage's wall time is the sum over the runs that worked on it: a
    stage stopped (even by kill -9) and resumed later counts each run's time up to its last 30-second checkpoint."""
    if name in timings and (out / name / "summary.json").exists():
        return json.loads((out / name / "summary.json").read_text())
    earlier, started, stopped = timings.get(name, 0.0), time.time(), threading.Event()

    def record() -> None:
        timings[name] = round(earlier + time.time() - started, 1)
        (out / "timings.json").write_text(json.dumps(timings, indent=1))

    def checkpoint() -> None:
        while not stopped.wait(30):
            record()

    ticker = threading.Thread(target=checkpoint, daemon=True)
    ticker.start()
    try:
        summary = run_sweep(folder=out / name, log=lambda line: print(f"[{name}] {line}", flush=True), **kwargs)
    finally:
        stopped.set()
        ticker.join()
        record()
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--cache", help="a feature cache")
    source.add_argument("--synthetic", metavar="PATH", help="write (once) and use a small generated cache")
    parser.add_argument("--preset", default="mvsa-single")
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--patience", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--prune-min-epochs", type=int, help="the first rung (default: epochs / 27, at least 1)")
    parser.add_argument("--prune-factor", type=int, default=3)
    parser.add_argument("--eval-seeds", type=int, default=5)
    parser.add_argument("--replays", type=int, default=30, help="random orders for the replay of the pruner")
    parser.add_argument("--out", default="runs/out/bench-sweep-pruning")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(args.cache or args.synthetic)
    if args.synthetic and not cache.exists():
        cache.parent.mkdir(parents=True, exist_ok=True)
        write_synthetic_cache(
            cache,
            {"train": 1200, "dev": 400},
            layers=4,
            dim=32,
            map_shape=(32, 3, 3),
            mean_tokens=8,
            signal=0.06,
            seed=7,
        )
    timings = json.loads((out / "timings.json").read_text()) if (out / "timings.json").exists() else {}
    base = resolve_config(args.preset, epochs=args.epochs, patience=args.patience)
    plan = SweepPlan(cache, base, parse_space(AXES, base), [base.seed])
    pruning = Pruning("successive-halving", args.prune_min_epochs, args.prune_factor)
    exhaustive = timed_sweep("exhaustive", out, timings, plan=plan, jobs=args.jobs, heartbeat=30)
    shuffled = SweepPlan(cache, base, plan.space, plan.seeds, shuffle=True)
    pruned = timed_sweep("pruned", out, timings, plan=shuffled, pruning=pruning, jobs=args.jobs, heartbeat=30)
    seeds = [base.seed + i for i in range(args.eval_seeds)]
    evaluated = {}
    for label, summary in (("exhaustive", exhaustive), ("pruned", pruned)):
        point = summary["best"]["overrides"]
        if summary["best"]["name"] in evaluated:
            continue
        space = {field: [value] for field, value in point.items()}
        result = timed_sweep(
            f"eval-{label}", out, timings, plan=SweepPlan(cache, base, space, seeds), jobs=args.jobs, heartbeat=30
        )
        evaluated[summary["best"]["name"]] = result["points"][0]
    metric = base.selection_metric
    best_e, best_p = evaluated[exhaustive["best"]["name"]], evaluated[pruned["best"]["name"]]
    exhaustive_rank = {p["name"]: rank for rank, p in enumerate(exhaustive["points"], 1)}
    replays = replay_pruning(out / "exhaustive", pruning, args.epochs, args.replays, exhaustive_rank)
    axis_order = out / "pruned-axis-order" / "summary.json"
    axis_order = json.loads(axis_order.read_text()) if axis_order.exists() else None
    report = {
        "cache": str(cache),
        "epochs": args.epochs,
        "patience": args.patience,
        "jobs": args.jobs,
        "pruner": pruned["study"]["pruner"],
        "wall_seconds": timings,
        "epochs_spent": {"exhaustive": exhaustive["study"]["epochs"], "pruned": pruned["study"]["epochs"]},
        "chosen": {"exhaustive": exhaustive["best"]["name"], "pruned": pruned["best"]["name"]},
        "pruned_choice_rank_in_exhaustive": exhaustive_rank.get(pruned["best"]["name"]),
        f"{args.eval_seeds}_seed_dev_{metric}": {"exhaustive": best_e, "pruned": best_p},
        "within_one_std": best_p["dev_mean"] >= best_e["dev_mean"] - (best_e["dev_std"] or 0.0),  # None: one seed
        "pruned_trials": pruned["pruned"],
        "replay": replays,
    }
    if axis_order:
        report["pruned_axis_order"] = {
            "wall_seconds": timings.get("pruned-axis-order"),
            "epochs": axis_order["study"]["epochs"],
            "chosen": axis_order["best"]["name"],
            "rank_in_exhaustive": exhaustive_rank.get(axis_order["best"]["name"]),
        }
    (out / "report.json").write_text(json.dumps(report, indent=1))
    spent = report["epochs_spent"]
    lines = [
        f"# Pruned vs exhaustive sweep ({cache.name}, 27 points, up to {args.epochs} epochs, patience {args.patience})",
        "",
        "| sweep | wall | epochs trained | chosen point | rank in exhaustive | "
        f"{args.eval_seeds}-seed dev {metric} of the choice |",
        "|---|---|---|---|---|---|",
        f"| exhaustive | {timings['exhaustive'] / 60:.1f} min | {spent['exhaustive']['total']} | "
        f"{exhaustive['best']['name']} | 1 | {spread_cell(best_e['dev'][metric])} |",
        f"| pruned ({report['pruner']}) | {timings['pruned'] / 60:.1f} min | {spent['pruned']['total']} "
        f"({len(pruned['pruned'])} trials pruned) | {pruned['best']['name']} | "
        f"{report['pruned_choice_rank_in_exhaustive']} | {spread_cell(best_p['dev'][metric])} |",
    ]
    if axis_order:
        spent_axis = axis_order["study"]["epochs"]
        lines.append(
            f"| pruned, points in axis order | {timings.get('pruned-axis-order', 0) / 60:.1f} min | "
            f"{spent_axis['total']} ({len(axis_order['pruned'])} trials pruned) | {axis_order['best']['name']} | "
            f"{exhaustive_rank.get(axis_order['best']['name'])} | - |"
        )
    lines += [
        "",
        f"Pruned choice within one standard deviation of the exhaustive choice: **{report['within_one_std']}**.",
        "",
        f"Replay of the exhaustive curves through the pruner, one trial after another: axis order "
        f"{replays['axis_order']['epochs']} epochs (choice ranked {replays['axis_order']['rank']}); "
        f"{args.replays} random orders {replays['random_orders']['epochs_mean']:.0f} epochs on average "
        f"({replays['random_orders']['epochs_min']}-{replays['random_orders']['epochs_max']}), choice ranked "
        f"{replays['random_orders']['ranks']}.",
    ]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def replay_pruning(folder: Path, pruning: Pruning, epochs: int, orders: int, rank: dict) -> dict:
    """The exhaustive sweep's per-epoch curves fed to Optuna's pruner one trial after another (what one worker
    would do, training being deterministic): epochs spent and the rank of the point chosen, in axis order and in
    `orders` random orders."""
    import random

    import optuna

    from spp_scl.runs.sweep.storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = open_storage(None, folder, 30).storage
    study = optuna.load_study(study_name=storage.get_all_studies()[0].study_name, storage=storage)
    trials = sorted(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)), key=lambda t: t.number)
    curves = {t.user_attrs["name"]: [t.intermediate_values[e] for e in sorted(t.intermediate_values)] for t in trials}

    def one(order: list[str]) -> tuple[int, int]:
        replayed = optuna.create_study(direction="maximize", pruner=pruning.pruner(epochs))
        spent, finished = 0, {}
        for name in order:
            trial = replayed.ask()
            for epoch, value in enumerate(curves[name], 1):
                trial.report(value, epoch)
                spent += 1
                if trial.should_prune():
                    replayed.tell(trial, state=optuna.trial.TrialState.PRUNED)
                    break
            else:
                replayed.tell(trial, curves[name][-1])
                finished[name] = curves[name][-1]
        return spent, rank[max(finished, key=finished.get)]

    names = list(curves)
    axis = one(names)
    shuffled = [one(random.Random(seed).sample(names, len(names))) for seed in range(orders)]
    return {
        "axis_order": {"epochs": axis[0], "rank": axis[1]},
        "random_orders": {
            "epochs_mean": sum(s for s, _ in shuffled) / orders,
            "epochs_min": min(s for s, _ in shuffled),
            "epochs_max": max(s for s, _ in shuffled),
            "ranks": sorted(r for _, r in shuffled),
        },
    }


if __name__ == "__main__":
    main()
