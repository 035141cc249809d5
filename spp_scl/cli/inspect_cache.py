"""Print what a cache file holds: counts per split and label, shapes, dtype, bytes per record, the fingerprint
and the skipped records.

    spp-scl inspect cache/files/mvsa-single.h5 [--all-skipped] [--json]
"""

from __future__ import annotations

import argparse
import json

from spp_scl.errors import InputError

HELP = "show what a feature cache holds"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="a cache file written by `spp-scl extract`")
    parser.add_argument("--all-skipped", action="store_true", help="list every skipped record")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args: argparse.Namespace) -> int:
    from cache.describe import describe
    from cache.layout import read_skipped
    from cache.reader import cache_summary

    try:
        if args.json:
            print(json.dumps({**cache_summary(args.file), "skipped": read_skipped(args.file)}, indent=2))
        else:
            print(describe(args.file, args.all_skipped))
    except KeyError as error:
        raise InputError(f"{args.file}: not a cache written by `spp-scl extract` (no {error})") from None
    return 0
