"""Bulk partitioning agrees with Kafka's default partitioner for every key."""

import os
import random

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from services.ingest.bulk import murmur2, partition_indexes


def test_murmur2_is_kafkas() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        key = os.urandom(rng.randint(0, 48))
        assert murmur2(key) == aiokafka_murmur2(key) & 0xFFFFFFFF
    # Values from the Java client (org.apache.kafka.common.utils.UtilsTest#testMurmur2).
    assert murmur2(b"21") & 0xFFFFFFFF == -973932308 & 0xFFFFFFFF
    assert murmur2(b"abc") & 0xFFFFFFFF == 479470107


@pytest.mark.parametrize("partitions", [1, 3, 7])
def test_partitions_match_aiokafka_in_bulk(partitions: int) -> None:
    keys = [os.urandom(16).hex().encode() for _ in range(500)] + [os.urandom(n) for n in range(40)]
    everything = list(range(partitions))
    expected = [DefaultPartitioner()(key, everything, everything) for key in keys]
    assert partition_indexes(keys, partitions) == expected
    assert partition_indexes(keys[:5], partitions) == expected[:5]
