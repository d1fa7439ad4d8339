"""Process settings of the ingest entry points: how they collect garbage."""

from __future__ import annotations

import gc

HTTP_YOUNG_THRESHOLD = 50_000
"""Net new container objects between automatic collections in the HTTP intake (CPython's default: 700)."""
WORKER_YOUNG_THRESHOLD = 2_000_000
"""The same in the worker: a safety net only, as the worker collects between batches (``BatchCollector``)."""


def tune_gc(young_threshold: int = HTTP_YOUNG_THRESHOLD) -> None:
    """Collect garbage less often, and never scan what startup loaded.

    Each request and batch makes tens of thousands of short-lived objects; with CPython's default
    threshold (700 allocations) that means a collection every few spans, and full collections that walk
    every module and class loaded at startup. Freezing the startup heap and raising the first
    threshold cuts the time spent collecting several times over, for a few MB more memory.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(young_threshold, 20, 20)


class BatchCollector:
    """Garbage collection between the worker's batches, instead of in the middle of them.

    A batch of 5,000 traces holds a few hundred thousand container objects (messages, validated
    records, rows, events) until it is done. An automatic collection in the middle of a batch walks
    them all, to find almost nothing: reference counting frees them the moment the batch ends. With the
    automatic threshold at 50,000, the worker collected about once every 2,000 spans, 15-18 ms each.
    Collected after each batch instead, when its objects are already gone, a young collection walks
    what little survived; the middle and full ones follow at CPython's own ratios (every 20 young ones,
    every 20 middle ones). ``tune_gc(WORKER_YOUNG_THRESHOLD)`` keeps the automatic collector as a
    safety net for a batch that makes far more than usual.

    Measured with ``gc.callbacks`` (thread CPU time) over ``python -m bench.ingest`` (203,000 spans):
    the worker's collections took 1.7-2.1 s before, 0.4-0.5 s after; its whole CPU time went down by
    about 3% (21.6 and 19.6 s before, 21.1 and 19.0 s after, in two alternating pairs of runs).
    """

    def __init__(self) -> None:
        self.batches = 0

    def after_batch(self) -> int:
        """Collect the generation due; call it when a batch's objects are out of scope. Returns it."""
        self.batches += 1
        generation = 2 if self.batches % 400 == 0 else 1 if self.batches % 20 == 0 else 0
        gc.collect(generation)
        return generation
