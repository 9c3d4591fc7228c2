"""Field encryption (lifecycle.crypto): a token opens to its value, for its customer only."""

from __future__ import annotations

import base64
import json

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
