"""Sweeps over config fields: grid or random points, N seeds each, and the summary that picks a point.

The summary chooses the point with the best mean dev metric; only then does it look at that point's test
metrics (mean +- std over seeds). Test numbers never steer any choice.
"""

from __future__ import annotations

import itertools
import json
import random
import statistics
from pathlib import Path

from spp_scl.core.options import canonical_field, parse_field_value, parse_field_values
from spp_scl.heads.config import SPPSCLConfig
from spp_scl.runs.trials.executor import Trial


def split_assignment(spec: str, option: str, form: str) -> tuple[str, str]:
    """'name=value' -> ('name', 'value'); anything else is an error naming the option and its form."""
    if "=" not in spec:
        raise ValueError(f"{option} {spec!r}: write {form}")
    name, value = spec.split("=", 1)
    return name, value


def parse_space(specs: list[str], base: SPPSCLConfig) -> dict[str, list]:
    """['temperature=0.05,0.07', 'betas=(0.9,0.99),(0.9,0.999)'] -> {field: values}, typed like the config's
    fields (spp_scl.core.options); an unknown field is an error naming it."""
    space = {}
    for spec in specs:
        field, text = split_assignment(spec, "--axis", "FIELD=V1,V2,...")
        try:
            field = canonical_field(type(base), field)
            if field == "seed":
                raise ValueError("seed is not swept as an axis: seeds are set with --seeds")
            space[field] = parse_field_values(type(base), field, text)
        except ValueError as error:
            raise ValueError(f"--axis {spec!r}: {error}") from None
    return space


def parse_settings(specs: list[str], base: SPPSCLConfig) -> dict:
    """['epochs=50', 'betas=0.9,0.99'] -> {'epochs': 50, 'betas': (0.9, 0.99)}, typed like the config's fields."""
    settings = {}
    for spec in specs:
        field, text = split_assignment(spec, "--set", "FIELD=VALUE")
        try:
            field = canonical_field(type(base), field)
            settings[field] = parse_field_value(type(base), field, text)
        except ValueError as error:
            raise ValueError(f"--set {spec!r}: {error}") from None
    return settings


def parse_named(values: list[str], what: str) -> dict[str, str]:
    """['mvsa-single=path', ...] -> {'mvsa-single': 'path'}, for --cache and --base."""
    named = {}
    for value in values:
        name, path = split_assignment(value, f"--{what}", "DATASET=PATH")
        named[name] = path
    return named


def expand(
    space: dict[str, list], seeds: list[int], random_points: int | None = None, sample_seed: int = 0
) -> list[Trial]:
    """The grid (every combination), or `random_points` distinct combinations drawn from it, times the seeds."""
    fields = list(space)
    grid = [dict(zip(fields, values)) for values in itertools.product(*space.values())]
    if random_points is not None and random_points < len(grid):
        grid = random.Random(sample_seed).sample(grid, random_points)
    return [Trial(point_name(point), point, seed) for point in grid for seed in seeds]


def point_name(point: dict) -> str:
    return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in point.items()) or "base"


def mean_std(values: list[float]) -> tuple[float, float]:
    return (
        (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0)
        if values
        else (float("nan"), float("nan"))
    )


def summarise(rows: list[dict], metric: str) -> dict:
    """Points ranked by mean dev `metric`; the best point's dev and test as mean +- std over its seeds."""
    points: dict[str, list[dict]] = {}
    for row in rows:
        points.setdefault(row["name"], []).append(row)
    ranked = []
    for name, point_rows in points.items():
        dev_mean, dev_std = mean_std([r["dev"][metric] for r in point_rows])
        ranked.append(
            {
                "name": name,
                "overrides": point_rows[0]["overrides"],
                "seeds": len(point_rows),
                "dev_mean": dev_mean,
                "dev_std": dev_std,
            }
        )
    ranked.sort(key=lambda p: -p["dev_mean"])  # dev only
    if not ranked:
        return {"metric": metric, "points": [], "best": None}
    best_rows = points[ranked[0]["name"]]
    best = {"name": ranked[0]["name"], "overrides": ranked[0]["overrides"], "seeds": [r["seed"] for r in best_rows]}
    for split in ("dev", "test"):
        if all(r.get(split) for r in best_rows):
            best[split] = {
                key: dict(zip(("mean", "std"), mean_std([r[split][key] for r in best_rows])))
                for key in ("accuracy", "f1_weighted", "f1_macro")
            }
    return {"metric": metric, "points": ranked, "best": best}


def write_summary(summary: dict, folder: Path) -> None:
    (folder / "summary.json").write_text(json.dumps(summary, indent=1))
    metric = summary["metric"]
    lines = [
        f"# Sweep summary (selection by mean dev {metric})",
        "",
        f"| rank | point | seeds | dev {metric} (mean +- std) |",
        "|---|---|---|---|",
    ]
    for rank, point in enumerate(summary["points"], 1):
        lines.append(
            f"| {rank} | {point['name']} | {point['seeds']} | {point['dev_mean']:.4f} +- {point['dev_std']:.4f} |"
        )
    lines += _study_lines(summary)
    best = summary["best"]
    if best:
        lines += ["", f"Best point by dev: **{best['name']}** (seeds {best['seeds']})", ""]
        for split in ("dev", "test"):
            if split in best:
                values = best[split]
                lines.append(
                    f"- {split}: "
                    + ", ".join(f"{key} {values[key]['mean']:.4f} +- {values[key]['std']:.4f}" for key in values)
                )
        if "test" not in best:
            lines.append("- test: the cache has no test split")
    (folder / "summary.md").write_text("\n".join(lines) + "\n")


def _study_lines(summary: dict) -> list[str]:
    """The Optuna study's part of summary.md: pruned and failed trials, the study's counts and epochs, the
    dashboard command, the pictures. Empty for a summary without a study."""
    study, metric, lines = summary.get("study"), summary["metric"], []
    if summary.get("pruned"):
        lines += ["", f"Pruned (not ranked; dev {metric} of the best epoch before the pruner stopped it):", ""]
        lines += [f"- {p['name']} seed {p['seed']}: epoch {p['epoch']}, {p['dev']:.4f}" for p in summary["pruned"]]
    if summary.get("failed"):
        lines += ["", "Failed for good (not ranked, not retried):", ""]
        lines += [f"- {f['name']} seed {f['seed']}: {f['error']}" for f in summary["failed"]]
    if study:
        counts, epochs = study["trials"], study["epochs"]
        lines += [
            "",
            f"Study `{study['name']}` in `{study['storage']}`: sampler {study['sampler']}, pruner {study['pruner']}; "
            f"trials complete {counts['complete']}, pruned {counts['pruned']}, failed {counts['fail']} "
            f"(duplicates never trained: {counts['duplicates']}), retries {counts['retries']}; "
            f"epochs trained {epochs['total']} (complete {epochs['complete']}, pruned {epochs['pruned']}, "
            f"unfinished {epochs['unfinished']}). Watch it in a browser: `{study['dashboard']}`",
        ]
    for name in summary.get("figures", []):
        lines += ["", f"![{name}]({name})"]
    return lines
