"""Print what a cache file holds: counts per split and label, shapes, dtype, bytes per record, the fingerprint
and the skipped records.

    spp-scl inspect cache/files/mvsa-single.h5 [--all-skipped] [--json]
    spp-scl inspect cache/files/mvsa-single.h5 --verify     # read every byte and check it against its checksums
"""

from __future__ import annotations

import argparse
import json

from spp_scl.core.errors import InputError

HELP = "show what a feature cache holds"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="a cache file written by `spp-scl extract`")
    parser.add_argument("--all-skipped", action="store_true", help="list every skipped record")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument(
        "--verify",
        action="store_true",
        help="read the whole file and check every dataset against its checksum (exit 3 when damaged); "
        "caches written before checksums (format 1) are reported as not verifiable",
    )


def run(args: argparse.Namespace) -> int:
    from spp_scl.cache.describe import describe
    from spp_scl.cache.layout import read_skipped
    from spp_scl.cache.reader import cache_summary
    from spp_scl.cache.views import views_summary

    if args.verify:
        from spp_scl.cache.checksums import CacheDamaged
        from spp_scl.cache.verify import verify_cache

        verification = verify_cache(args.file)
        if verification.problems or verification.non_finite:
            raise CacheDamaged(verification.one_line())
        print(verification.text())
        return 0
    try:
        if args.json:
            summary = {
                **cache_summary(args.file),
                "views": views_summary(args.file),
                "skipped": read_skipped(args.file),
            }
            print(json.dumps(summary, indent=2))
        else:
            print(describe(args.file, args.all_skipped))
    except KeyError as error:
        raise InputError(f"{args.file}: not a cache written by `spp-scl extract` (no {error})") from None
    return 0
