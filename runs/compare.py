"""SPP-SCL (default and paper-faithful fusion), CLMLF-style, MDSE-style, text-only and image-only heads on
every dataset whose cache is given: N seeds each, dev-selected, one Markdown table beside the papers' numbers.

    python runs/compare.py --cache mvsa-single=cache/files/mvsa-single.h5 --cache hfm=cache/files/hfm.h5
    python runs/compare.py --cache mvsa-single=... --seeds 2 --set epochs=20 --methods spp-scl,clmlf,mdse

The dataset name picks the preset (mvsa-single, mvsa-multiple, hfm: optimiser, schedule, batch, selection
metric; CLMLF's depths). Writes --out/comparison.md and comparison.json, and per dataset results.jsonl and
trials/ (one run folder per trial); rerunning skips finished trials. Reports the test split when the cache
has one, else dev.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])

from heads.config import DATASET_PRESETS, resolve_config  # noqa: E402
from runs.comparison import comparison_trials, render_comparison, select_methods, summarise_dataset  # noqa: E402
from runs.sweeper import parse_named, parse_settings  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--cache",
        action="append",
        required=True,
        metavar="DATASET=PATH",
        help="a dataset's cache (repeatable); a missing file is skipped",
    )
    parser.add_argument("--seeds", type=int, default=5, help="seeds per method: seed, seed+1, ... (default 5)")
    parser.add_argument(
        "--methods",
        help="comma-separated subset of: spp-scl, spp-scl-faithful, clmlf, mdse, text-only, image-only (default all)",
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="FIELD=V", help="a config value for every method (e.g. epochs=50)"
    )
    parser.add_argument("--jobs", type=int, default=1, help="trials in parallel (timings are per job when > 1)")
    parser.add_argument("--out", default="runs/out/compare")
    args = parser.parse_args(argv)
    try:
        caches = parse_named(args.cache, "cache")
        methods = select_methods(args.methods)
        if args.seeds < 1:
            raise ValueError("--seeds must be >= 1")
    except ValueError as error:
        parser.error(str(error))
    from runs.trials import run_trials

    out = Path(args.out)
    summaries, notes = [], []
    for dataset, cache in caches.items():
        if not Path(cache).is_file():
            print(f"skipping {dataset}: no cache at {cache}")
            continue
        try:
            base = resolve_config(dataset if dataset in DATASET_PRESETS else None)
            base = base.replace(**parse_settings(args.set, base))
        except ValueError as error:
            parser.error(str(error))
        trials = comparison_trials(methods, base, args.seeds)
        print(f"{dataset}: {len(trials)} trials ({len(methods)} methods x {args.seeds} seeds)")
        rows = run_trials(
            cache, base, trials, out / dataset / "results.jsonl", out / dataset / "trials", jobs=args.jobs
        )
        summaries.append(summarise_dataset(dataset, methods, rows))
        notes.append(f"{dataset}: {base.epochs} epochs, batch {base.batch_size}, lr {base.lr:g}")
    if not summaries:
        print("no cache found: nothing to compare")
        return 1
    import torch

    threads = "per job" if args.jobs > 1 else f"{torch.get_num_threads()} torch thread(s)"
    note = "; ".join(notes) + f"; {args.jobs} trial(s) at a time, {threads}."
    out.mkdir(parents=True, exist_ok=True)
    (out / "comparison.md").write_text(render_comparison(summaries, note))
    (out / "comparison.json").write_text(json.dumps({"protocol": note, "datasets": summaries}, indent=1))
    print((out / "comparison.md").read_text())
    print(f"written to {out / 'comparison.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
