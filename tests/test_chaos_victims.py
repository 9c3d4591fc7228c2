"""The chaos run's choice of victims: every kind of service in each round (chaos.victims)."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from chaos.victims import VictimDealer, kind_of

PROCESSES = ["ingest", "ingest-2", "ingest-3", "relay", "project"]
KINDS = {"ingest", "relay", "project"}


def test_the_kind_of_a_process_is_its_service():
    assert [kind_of(name) for name in PROCESSES] == ["ingest", "ingest", "ingest", "relay", "project"]


@given(seed=st.integers(0, 2**32), rounds=st.integers(1, 6))
def test_every_round_of_kills_hits_every_kind_once(seed, rounds):
    dealer = VictimDealer(KINDS, random.Random(seed))
    victims = [dealer.next(PROCESSES) for _ in range(3 * rounds)]
    for r in range(rounds):
        assert {kind_of(v) for v in victims[3 * r:3 * r + 3]} == KINDS
    assert dealer.every_kind_killed


def test_not_every_kind_is_killed_before_a_round_is_dealt():
    dealer = VictimDealer(KINDS, random.Random(1))
    dealer.next(PROCESSES)
    dealer.next(PROCESSES)
    assert not dealer.every_kind_killed
    dealer.next(PROCESSES)
    assert dealer.every_kind_killed


def test_a_kind_with_nothing_running_keeps_its_turn():
    dealer = VictimDealer(KINDS, random.Random(7))
    without_relay = [p for p in PROCESSES if p != "relay"]
    first_two = {kind_of(dealer.next(without_relay)) for _ in range(2)}
    assert first_two == {"ingest", "project"}
    assert dealer.next(PROCESSES) == "relay"  # restarted now: its turn was kept


def test_nothing_running_gives_no_victim():
    assert VictimDealer(KINDS, random.Random(0)).next([]) is None


def test_ingest_processes_are_chosen_among_the_running_ones():
    dealer = VictimDealer(KINDS, random.Random(3))
    seen = set()
    for _ in range(60):
        victim = dealer.next(PROCESSES)
        if kind_of(victim) == "ingest":
            seen.add(victim)
    assert seen == {"ingest", "ingest-2", "ingest-3"}
