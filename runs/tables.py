"""The paper's tables 3-7, each one command, for every dataset whose cache is given.

    python runs/tables.py --cache mvsa-single=cache/files/mvsa-single.h5 --tables 4,5,6,7 --seeds 5
    python runs/tables.py --cache mvsa-single=... --base runs/out/.../sweep/summary.json   # the sweep's best point

Writes --out/table<N>.md (ours as mean +- std over seeds beside the paper's numbers; the test split when the
cache has one, else dev), and per dataset results.jsonl and trials/ (rerunning skips finished trials).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])

from cache.layout import read_attrs  # noqa: E402
from heads.config import PRESETS, resolve_config  # noqa: E402
from runs.paper_tables import table_rows, write_tables  # noqa: E402
from runs.sweeper import parse_named, parse_settings  # noqa: E402
from runs.trials import Trial, run_trials  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--cache",
        action="append",
        required=True,
        metavar="DATASET=PATH",
        help="a dataset's cache; the dataset name picks the preset (mvsa-single, mvsa-multiple, hfm)",
    )
    parser.add_argument("--tables", default="3,4,5,6,7")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--faithful", action="store_true", help="paper-faithful fusion (cmf-batch) for every row")
    parser.add_argument(
        "--base",
        action="append",
        default=[],
        metavar="DATASET=SUMMARY.json",
        help="start every row from a sweep's best point (its summary.json)",
    )
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=V", help="fixed config values")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", default="runs/out/tables")
    args = parser.parse_args(argv)
    try:
        caches, bases = parse_named(args.cache, "cache"), parse_named(args.base, "base")
        numbers = [int(n) for n in args.tables.split(",")]
        rows = table_rows(numbers)
    except ValueError as error:
        parser.error(str(error))
    out = Path(args.out)
    results = {}
    for dataset, cache in caches.items():
        if not Path(cache).is_file():
            print(f"skipping {dataset}: no cache at {cache}")
            continue
        preset = dataset if dataset in PRESETS else None
        base = resolve_config(preset, faithful=args.faithful)
        if dataset in bases:
            best = json.loads(Path(bases[dataset]).read_text())["best"]
            base = base.replace(**best["overrides"])
            print(f"{dataset}: rows start from the sweep's best point {best['name']}")
        base = base.replace(**parse_settings(args.set, base))
        cached_layers = len(read_attrs(Path(cache))["text_layers"])
        trials = [
            Trial(label, overrides, base.seed + i)
            for label, overrides, _ in rows
            if overrides.get("text_layers_last", 0) <= cached_layers
            for i in range(args.seeds)
        ]
        print(f"{dataset}: {len(trials)} trials ({len(trials) // args.seeds} configurations x {args.seeds} seeds)")
        results[dataset] = run_trials(
            cache, base, trials, out / dataset / "results.jsonl", out / dataset / "trials", jobs=args.jobs
        )
    for path in write_tables(numbers, results, args.seeds, out):
        print(path.read_text())
    print(f"tables written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
