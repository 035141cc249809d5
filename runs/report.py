"""Diagnostics and a one-page report for trained runs: `<run>/report.md` with pictures in `<run>/diagnostics/`.

    python runs/report.py runs/out/my-run [more runs ...]
    python runs/report.py runs/out/my-run --no-tsne --splits dev

Needs the cache each run trained on (the distances and the t-SNE come from its dev and test features).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run folders written by runs/train.py")
    parser.add_argument(
        "--splits", default="dev,test", help="cache splits to diagnose (default dev,test; absent ones are left out)"
    )
    parser.add_argument("--no-tsne", dest="tsne", action="store_false", help="skip the t-SNE picture (the slow part)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    from runs.diagnostics import run_diagnostics
    from runs.run_folder import RunFolderError
    from runs.run_report import write_report

    status = 0
    for run in args.runs:
        try:
            diagnostics = run_diagnostics(
                run,
                tuple(s.strip() for s in args.splits.split(",") if s.strip()),
                tsne=args.tsne,
                device=args.device,
                log=lambda message, run=run: print(f"{run}: {message}"),
            )
            print(f"report: {write_report(run, diagnostics)}")
        except (RunFolderError, ValueError, OSError, KeyError) as error:
            print(f"error: {run}: {error}", file=sys.stderr)
            status = 2
    return status


if __name__ == "__main__":
    sys.exit(main())
