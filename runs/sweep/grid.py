"""Sweeps over config fields: grid or random points, N seeds each, and the summary that picks a point.

The summary chooses the point with the best mean dev metric; only then does it look at that point's test
metrics (mean +- std and 95% interval over seeds). Test numbers never steer any choice. It also tests the best point
against every other one on dev (paired over seeds and over items), so that a choice within seed noise shows as one.
"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

from spp_scl.core.options import canonical_field, parse_field_value, parse_field_values
from spp_scl.heads.config import SPPSCLConfig
from spp_scl.runs.trials.executor import Trial
from spp_scl.runs.trials.seed_summary import HEADLINE, HEADLINE_NAMES, compare_rows, summarise_row
from spp_scl.runs.trials.seed_tables import SPREAD_NOTE, flags_cell, per_seed_lines, tests_footer
from spp_scl.runs.trials.statistics import spread_cell, stamped


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


def summarise(rows: list[dict], metric: str) -> dict:
    """Points ranked by mean dev `metric`; each point's dev metrics over its seeds (spread, per seed, per class,
    collapse) and the best point's paired tests against every other point on dev; the best point's dev and test
    as the same statistics (spp_scl.runs.trials.seed_summary). Test numbers never steer the choice."""
    points: dict[str, list[dict]] = {}
    for row in rows:
        points.setdefault(row["name"], []).append(row)
    ranked = []
    for name, point_rows in points.items():
        dev = summarise_row(point_rows, "dev")
        ranked.append(
            {
                "name": name,
                "overrides": point_rows[0]["overrides"],
                "seeds": len(point_rows),
                "dev_mean": dev[metric]["mean"],
                "dev_std": dev[metric]["std"],
                "dev": dev,
            }
        )
    ranked.sort(key=lambda p: -p["dev_mean"])  # dev only
    if not ranked:
        return {"metric": metric, "points": [], "best": None, "tests": None}
    best_rows = points[ranked[0]["name"]]
    best = {"name": ranked[0]["name"], "overrides": ranked[0]["overrides"], "seeds": [r["seed"] for r in best_rows]}
    for split in ("dev", "test"):
        if all(r.get(split) for r in best_rows):
            best[split] = summarise_row(best_rows, split)
    # The best point against every other on dev: whether the choice stands out from seed noise at all.
    tests = compare_rows({point["name"]: points[point["name"]] for point in ranked}, ranked[0]["name"], "dev")
    return {"metric": metric, "points": ranked, "best": best, "tests": tests["tests"]}


def write_summary(summary: dict, folder: Path) -> None:
    (folder / "summary.json").write_text(json.dumps(summary, indent=1))
    metric = summary["metric"]
    title = stamped(f"Sweep summary (selection by mean dev {metric})", summary.get("data_note"))
    lines = [
        f"# {title}",
        "",
        SPREAD_NOTE,
        "",
        "| rank | point | runs | " + " | ".join(f"dev {HEADLINE_NAMES[key]}" for key in HEADLINE) + " | flags |",
        "|---|---|---|" + "---|" * len(HEADLINE) + "---|",
    ]
    for rank, point in enumerate(summary["points"], 1):
        cells = " | ".join(spread_cell(point["dev"][key]) for key in HEADLINE)
        lines.append(f"| {rank} | {point['name']} | {point['seeds']} | {cells} | {flags_cell(point['dev'])} |")
    best = summary["best"]
    if best:
        lines += ["", f"Best point by dev: **{best['name']}** (seeds {best['seeds']})", ""]
        for split in ("dev", "test"):
            if split in best:
                values = best[split]
                flags = flags_cell(values)
                lines.append(
                    f"- {split}: "
                    + ", ".join(f"{HEADLINE_NAMES[key]} {spread_cell(values[key])}" for key in HEADLINE)
                    + (f"; {flags}" if flags else "")
                )
        if "test" not in best:
            lines.append("- test: the cache has no test split")
        dev = {"split": "dev", "rows": {point["name"]: point["dev"] for point in summary["points"]}}
        lines += ["", *per_seed_lines(dev)]
        if "test" in best:
            lines += ["", *per_seed_lines({"split": "test", "rows": {best["name"]: best["test"]}})]
        if summary.get("tests"):
            lines += ["", *tests_footer({"split": "dev", "reference": best["name"], "tests": summary["tests"]})]
            lines += [
                "",
                "The best point was chosen on these same dev results, so the tests lean its way: a difference that "
                "does not hold even here is within seed and item noise.",
            ]
    lines += _study_lines(summary)
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
