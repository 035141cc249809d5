"""A generated cache file with learnable labels and realistic shapes, written straight through the cache
layout (no encoder): for the trainer's tests and for timing training on an MVSA-Single-sized cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spp_scl.cache.layout import CacheWriter


def write_synthetic_cache(
    path: str | Path,
    sizes: dict[str, int],
    num_classes: int = 3,
    layers: int = 4,
    dim: int = 768,
    map_shape: tuple[int, int, int] = (2048, 7, 7),
    mean_tokens: float = 31.0,
    signal: float = 0.5,
    seed: int = 0,
    chunk: int = 256,
) -> Path:
    """Each class shifts the image maps and the token states along its own random direction by `signal`
    (noise has unit scale), so both modalities carry the label; text lengths are 2 + Poisson(mean - 2)."""
    path = Path(path)
    rng = np.random.default_rng(seed)
    image_directions = rng.standard_normal((num_classes, map_shape[0])).astype(np.float32)
    text_directions = rng.standard_normal((num_classes, dim)).astype(np.float32)
    plan = {}
    for split, count in sizes.items():
        labels = rng.integers(0, num_classes, count)
        lengths = (2 + rng.poisson(max(mean_tokens - 2, 0), count)).astype(np.int32)
        plan[split] = (labels, lengths)
    class_names = [f"class{i}" for i in range(num_classes)]
    attrs = {
        "dataset": "synthetic",
        "class_names": class_names,
        "text_layers": list(range(13 - layers, 13)),
        "dtype": "float16",
        "image_map_shape": list(map_shape),
        "fingerprint": {"synthetic": {"sizes": sizes, "seed": seed, "signal": signal}},
        "provenance": {"generator": "cache.synthetic"},
    }
    writer = CacheWriter(
        path,
        attrs,
        {s: (len(labels), int(lengths.sum())) for s, (labels, lengths) in plan.items()},
        map_shape,
        (layers, dim),
        "float16",
    )
    try:
        for split, (labels, lengths) in plan.items():
            for start in range(0, len(labels), chunk):
                y, n = labels[start : start + chunk], lengths[start : start + chunk]
                maps = rng.standard_normal((len(y), *map_shape), dtype=np.float32)
                maps += signal * image_directions[y][:, :, None, None]
                tokens = rng.standard_normal((int(n.sum()), layers, dim), dtype=np.float32)
                tokens += signal * np.repeat(text_directions[y], n, axis=0)[:, None, :]
                first = tokens[np.concatenate([[0], np.cumsum(n)[:-1]])]
                ids = [f"{split}-{start + i}" for i in range(len(y))]
                writer.append(
                    split, ids, y, n, maps.astype(np.float16), first.astype(np.float16), tokens.astype(np.float16)
                )
        writer.finish([])
    except BaseException:
        writer.abort()
        raise
    return path
