"""Splits drawn for a data file that has none: `extract --split 0.8,0.1,0.1 --split-seed N`.

The draw is stratified by label (each split keeps the classes' proportions, as far as whole records allow) and
depends only on the file's rows in order, their labels, the shares and the seed: not on which images later turn
out unreadable, so a record skipped for its image does not move the others. The shares and the seed go into the
cache's fingerprint (the dataset's policy), so a cache drawn with another seed is refused like a changed file.
"""

from __future__ import annotations

import numpy as np

SHARE_TOLERANCE = 1e-6


def check_shares(shares: list[float]) -> None:
    """Two (train, dev) or three (train, dev, test) shares, none negative, train above 0, summing to 1."""
    if len(shares) not in (2, 3):
        raise ValueError(f"split needs 2 or 3 shares (train,dev[,test]), got {len(shares)}")
    if any(share < 0 for share in shares) or shares[0] <= 0:
        raise ValueError(f"split shares must be 0 or more, train's above 0; got {','.join(map(str, shares))}")
    if abs(sum(shares) - 1.0) > SHARE_TOLERANCE:
        raise ValueError(f"split shares must sum to 1; {','.join(map(str, shares))} sum to {sum(shares):g}")


def assign_splits(labels: list[str], shares: list[float], seed: int) -> list[str]:
    """The split of each row ("train", "dev", "test"), given the rows' labels in file order. Per label (in sorted
    order, one random stream for all), the rows are permuted and cut at the rounded cumulative shares."""
    check_shares(shares)
    names = ("train", "dev", "test")[: len(shares)]
    cuts = np.cumsum(shares)
    rng = np.random.default_rng(seed)
    assigned = [""] * len(labels)
    for label in sorted(set(labels)):
        rows = rng.permutation([index for index, value in enumerate(labels) if value == label])
        bounds = [0, *np.round(cuts * len(rows)).astype(int)]
        bounds[-1] = len(rows)
        for name, start, stop in zip(names, bounds, bounds[1:]):
            for index in rows[start:stop]:
                assigned[int(index)] = name
    return assigned
