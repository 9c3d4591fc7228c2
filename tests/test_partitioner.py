"""consumers.clients.KeyHashPartitioner: the partitions kafka-python's default partitioner
chooses, with the hash of a key remembered (pure logic: the cluster is a stand-in)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kafka.partitioner.default import DefaultPartitioner

from consumers.clients import KeyHashPartitioner


class Cluster:
    """The three methods of kafka-python's ClusterMetadata that a partitioner calls."""

    def __init__(self, partitions: dict[str, set[int]]) -> None:
        self.partitions = partitions

    def topics(self) -> set[str]:
        return set(self.partitions)

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return self.partitions.get(topic)

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions.get(topic, set())


@given(keys=st.lists(st.binary(max_size=40), min_size=1, max_size=30),
       partitions=st.sets(st.integers(0, 40), min_size=1, max_size=12))
def test_chooses_what_the_default_partitioner_chooses(keys: list[bytes], partitions: set[int]) -> None:
    cluster = Cluster({"t": partitions})
    ours, default = KeyHashPartitioner(), DefaultPartitioner()
    for key in keys + keys:  # the second time from the cache
        assert ours.partition("t", key, key, None, None, cluster) == \
            default.partition("t", key, key, None, None, cluster)


def test_one_key_keeps_its_partition_and_keys_spread() -> None:
    cluster = Cluster({"t": {0, 1, 2, 3}})
    ours = KeyHashPartitioner()
    chosen = {ours.partition("t", None, f"customer-{i}".encode(), None, None, cluster) for i in range(200)}
    assert chosen == {0, 1, 2, 3}
    assert len({ours.partition("t", None, b"customer-7", None, None, cluster) for _ in range(5)}) == 1


def test_unkeyed_records_and_unknown_topics_behave_as_the_default() -> None:
    cluster = Cluster({"t": {0, 1}})
    assert KeyHashPartitioner().partition("t", None, None, None, None, cluster) in {0, 1}
    with pytest.raises(ValueError, match="not found"):
        KeyHashPartitioner().partition("other", None, b"k", None, None, cluster)
