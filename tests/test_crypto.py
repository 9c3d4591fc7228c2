"""Field encryption (lifecycle.crypto): a token opens to its value, for its customer only."""

from __future__ import annotations

import base64
import json
import os
import threading

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from lifecycle import crypto

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)
KEY = crypto.new_key()


@settings(max_examples=200, deadline=None)
@given(value=json_values)
def test_a_sealed_value_opens_to_itself_for_its_customer_only(value):
    token = crypto.seal(KEY, "customer-a", value)
    assert crypto.is_token(token)
    assert crypto.open_token(KEY, "customer-a", token) == value
    assert crypto.open_token(KEY, "customer-b", token) is None  # bound to its customer
    assert crypto.open_token(crypto.new_key(), "customer-a", token) is None
    assert crypto.open_token(None, "customer-a", token) is None  # the key is gone: erased


@given(value=json_values)
def test_the_plain_text_is_compact_json(value):
    raw = base64.b64decode(crypto.seal(KEY, "c", value)[len(crypto.PREFIX):])
    plain = AESGCM(KEY).decrypt(raw[:12], raw[12:], b"c")
    assert plain == json.dumps(value, separators=(",", ":")).encode()


def test_two_seals_of_one_value_differ():
    assert crypto.seal(KEY, "c", "jane@example.com") != crypto.seal(KEY, "c", "jane@example.com")


def test_a_forked_child_never_takes_the_parents_next_nonce() -> None:
    """The nonce pool is read ahead: a child born with a copy of it must not use that copy."""
    crypto._nonces.take()  # the pool holds more nonces now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next nonce to the parent, then out at once
        os.write(write, crypto._nonces.take())
        os._exit(0)
    os.waitpid(pid, 0)
    childs = os.read(read, 12)
    os.close(read)
    os.close(write)
    assert len(childs) == 12 and childs != crypto._nonces.take()


def test_threads_sealing_at_once_never_share_a_nonce() -> None:
    taken: list[bytes] = []

    def take_many() -> None:
        taken.extend(crypto._nonces.take() for _ in range(2_000))

    threads = [threading.Thread(target=take_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(taken)) == len(taken) == 8_000


@pytest.mark.parametrize("value", ["jane@example.com", "é\ud800 lone surrogate", 42, None, 1.5, ["a", 2]])
def test_every_kind_of_value_opens_as_it_was_sealed(value: object) -> None:
    key = crypto.new_key()
    assert crypto.open_token(key, "c-1", crypto.seal(key, "c-1", value)) == value


@pytest.mark.parametrize("value", ["del \x7f", "tab\tand\x1f", "café", "quote \" and \\ slash /", ""])
def test_the_plain_text_of_edge_strings_is_what_json_dumps_writes(value: str) -> None:
    raw = base64.b64decode(crypto.seal(KEY, "c", value)[len(crypto.PREFIX):])
    assert AESGCM(KEY).decrypt(raw[:12], raw[12:], b"c") == json.dumps(value, separators=(",", ":")).encode()
