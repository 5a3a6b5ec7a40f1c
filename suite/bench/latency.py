"""Latency as a histogram of logarithmic buckets: what a driver fills while it
measures, and what the controller merges over drivers and reads percentiles
from.

A list of every latency would cost the driver an append per reply and the
controller megabytes per cell; a bucket is one dictionary update per read,
and merging is adding counts. Bucket ``b`` holds latencies between
``exp(b / PER_E)`` and ``exp((b + 1) / PER_E)`` microseconds: about 2.5 %
wide, finer than the run-to-run noise of any cell here.

Standard library only: the driver process imports it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

__all__ = ["PER_E", "Histogram", "bucket", "merge", "percentile"]

PER_E = 40  # buckets per factor e (about 2.5 % each)

Histogram = dict[int, int]  # bucket -> replies


def bucket(seconds: float) -> int:
    """The bucket of a latency; anything under a microsecond counts as one."""
    return int(math.log(max(seconds * 1e6, 1.0)) * PER_E)


def merge(histograms: Iterable[Mapping[int, int]]) -> Histogram:
    merged: Histogram = {}
    for histogram in histograms:
        for key, count in histogram.items():
            merged[int(key)] = merged.get(int(key), 0) + count
    return merged


def percentile(histogram: Mapping[int, int], fraction: float) -> float | None:
    """The latency in seconds below which ``fraction`` of the replies fall (the
    middle of its bucket, geometrically); None for an empty histogram."""
    total = sum(histogram.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(fraction * total))
    seen = 0
    for key in sorted(histogram):
        seen += histogram[key]
        if seen >= rank:
            return math.exp((key + 0.5) / PER_E) / 1e6
    raise AssertionError("unreachable: the ranks add up to the total")
