"""A cache file described for a reader: counts per split and label, shapes, dtype, bytes per record, the
fingerprint and the skipped records (`spp-scl inspect FILE`)."""

from __future__ import annotations

import json

from spp_scl.cache.layout import read_skipped, skip_reason_counts
from spp_scl.cache.reader import cache_summary
from spp_scl.cache.view_layout import VIEW_FEATURES
from spp_scl.cache.views import describe_views, views_summary


def sentence_token(fingerprint) -> str:
    """Which token the cache's `first_token` array holds (spp_scl.extract.text_encoder); caches from before the
    choice, and generated ones, hold the first."""
    text = fingerprint.get("text") if isinstance(fingerprint, dict) else None
    return text.get("sentence_token", "first") if isinstance(text, dict) else "first"


def describe(path: str, all_skipped: bool = False) -> str:
    summary = cache_summary(path)
    lines = [
        f"{summary['path']}  (format {summary['format_version']}, dataset {summary['dataset']}, {summary['dtype']})",
        f"classes: {', '.join(summary['class_names'])}; text layers {summary['text_layers']}; sentence token "
        f"{sentence_token(summary['fingerprint'])}",
    ]
    for split, info in summary["splits"].items():
        counts = ", ".join(f"{name} {n}" for name, n in info["labels"].items())
        lines.append(
            f"  {split:5s} {info['records']:6d} records ({counts}); image map {info['image_map']}, "
            f"sentence vectors {info['first_token']}, tokens per text mean {info['tokens']['mean']:.1f} "
            f"max {info['tokens']['max']}"
        )
    views = views_summary(path)
    view_bytes = sum(
        sizes[name] for sizes in (views or {}).get("bytes", {}).values() for name in VIEW_FEATURES if name in sizes
    )
    features = sum(info["feature_bytes"] for info in summary["splits"].values()) + view_bytes
    lines.append(
        f"file: {summary['file_bytes'] / 2**20:.1f} MiB, {summary['bytes_per_record'] / 1024:.1f} KiB per "
        f"record, {summary['file_bytes'] / max(features, 1):.3f} x the bytes of the stored features"
        + (f" (views included: {view_bytes / 2**20:.1f} MiB)" if views else "")
    )
    lines.extend(describe_views(path))
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
