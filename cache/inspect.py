"""Print what a cache file holds: counts per split and label, shapes, dtype, bytes per record, the
fingerprint and the skipped records.

    python -m cache.inspect cache/files/mvsa-single__bert-base-uncased__resnet-50.h5 [--all-skipped] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys

from cache.layout import read_skipped, skip_reason_counts
from cache.reader import cache_summary


def describe(path: str, all_skipped: bool = False) -> str:
    summary = cache_summary(path)
    lines = [
        f"{summary['path']}  (format {summary['format_version']}, dataset {summary['dataset']}, {summary['dtype']})",
        f"classes: {', '.join(summary['class_names'])}; text layers {summary['text_layers']}",
    ]
    for split, info in summary["splits"].items():
        counts = ", ".join(f"{name} {n}" for name, n in info["labels"].items())
        lines.append(
            f"  {split:5s} {info['records']:6d} records ({counts}); image map {info['image_map']}, "
            f"first token {info['first_token']}, tokens per text mean {info['tokens']['mean']:.1f} "
            f"max {info['tokens']['max']}"
        )
    lines.append(
        f"file: {summary['file_bytes'] / 2**20:.1f} MiB, {summary['bytes_per_record'] / 1024:.1f} KiB per "
        f"record, {summary['overhead']:.3f} x the bytes of the stored features"
    )
    lines.append("fingerprint:")
    lines.extend(f"  {key}: {json.dumps(value)}" for key, value in summary["fingerprint"].items())
    skipped = read_skipped(path)
    lines.append(f"skipped: {len(skipped)}")
    for reason, n in skip_reason_counts(skipped):
        lines.append(f"  {n} x {reason}")
    for item in skipped if all_skipped else skipped[:10]:
        lines.append(f"  {item['split']} {item['id']} ({item['source']}): {item['reason']}")
    if len(skipped) > 10 and not all_skipped:
        lines.append(f"  ... {len(skipped) - 10} more (--all-skipped lists them)")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", help="a cache file written by extract/run.py")
    parser.add_argument("--all-skipped", action="store_true", help="list every skipped record")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    try:
        if args.json:
            print(json.dumps({**cache_summary(args.file), "skipped": read_skipped(args.file)}, indent=2))
        else:
            print(describe(args.file, args.all_skipped))
    except (OSError, KeyError) as error:
        print(f"error: {args.file}: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
