"""The ids are uuid5's: the quicker construction must give the very same UUIDs, for ever."""

from __future__ import annotations

import hashlib
from uuid import UUID, uuid5

from hypothesis import given
from hypothesis import strategies as st

from lifecycle import ids

# Surrogates cannot be encoded (uuid5 refuses them as well); the parser rejects them first.
texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=80)


@given(texts, texts)
def test_receipt_id_is_uuid5_of_source_and_id(source: str, event_id: str) -> None:
    expected = uuid5(ids.NAMESPACE, "inbound\x00" + source + "\x00" + event_id)
    got = ids.receipt_id(source, event_id)
    assert got == expected
    assert (got.version, got.variant, str(got), hash(got)) == (
        5, expected.variant, str(expected), hash(expected))


@given(texts)
def test_customer_and_deal_ids_are_uuid5_of_their_keys(key: str) -> None:
    assert ids.customer_id(key) == uuid5(ids.NAMESPACE, "customer\x00" + key)
    assert ids.deal_id(key) == uuid5(ids.NAMESPACE, "deal\x00" + key)


@given(st.binary(max_size=200))
def test_malformed_receipt_id_is_uuid5_of_the_bytes_digest(raw: bytes) -> None:
    expected = uuid5(ids.NAMESPACE, "malformed\x00" + hashlib.sha256(raw).hexdigest())
    assert ids.malformed_receipt_id(raw) == expected


def test_ids_stored_by_earlier_versions_stay_the_same() -> None:
    # Golden values (uuid5 of the names, written down once): stored receipts and customers depend on them.
    assert ids.receipt_id("crm/hubspot", "evt-1") == UUID("b187cb36-b85c-59a7-a8ab-13c32ae19721")
    assert ids.customer_id("cust-42") == UUID("639df3fa-2270-520e-80e3-f48d069defe1")
