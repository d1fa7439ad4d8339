"""Garbage collection between the worker's batches (``services.ingest.runtime``)."""

from __future__ import annotations

import gc
import weakref
from collections import Counter

from services.ingest.runtime import BatchCollector


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_cyclic_garbage_of_a_batch_is_freed_after_it() -> None:
    collector = BatchCollector()
    was_enabled = gc.isenabled()
    gc.disable()  # only the collector may free the cycle
    try:
        first, second = Node(), Node()
        first.other, second.other = second, first
        alive = weakref.ref(first)
        del first, second
        assert alive() is not None, "reference counting alone cannot free a cycle"
        collector.after_batch()
        assert alive() is None
    finally:
        if was_enabled:
            gc.enable()


def test_older_generations_are_collected_at_cpythons_ratios() -> None:
    collector = BatchCollector()
    generations = Counter(collector.after_batch() for _ in range(800))
    assert generations == {0: 760, 1: 38, 2: 2}
