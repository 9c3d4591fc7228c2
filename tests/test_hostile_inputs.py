"""A corpus of hostile inputs through the parser and the engine: nothing crashes, nothing stalls.

Every input comes out accepted, a duplicate, or rejected (refused or malformed) with a
non-empty one-line reason, and for every batch in = accepted + duplicates + rejected. Where the
contract (README, "The inbound contract") says what must happen, the corpus says so too.
Each call is bounded by a generous timeout (SIGALRM), so a stall fails instead of hanging.
"""

from __future__ import annotations

import json
import random
import signal
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from lifecycle.batch import BatchResult, IngestTotals
from lifecycle.engine import LifecycleEngine
from lifecycle.receipt import ACCEPTED, DUPLICATE, MALFORMED, REFUSED
from schemas import MAX_EVENT_BYTES, InboundEvent, Rejection, parse
from tests.backends import runtime_factory

OUTCOMES = {ACCEPTED, DUPLICATE, REFUSED, MALFORMED}


# -- bounded calls --------------------------------------------------------------------------------


@contextmanager
def deadline(seconds: float, what: str = "call") -> Iterator[None]:
    """Fail (TimeoutError) instead of hanging when the block takes longer than ``seconds``."""

    def on_alarm(_signum: int, _frame: Any) -> None:
        raise TimeoutError(f"{what} stalled: still running after {seconds}s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def check_batch(batch: Sequence[bytes], result: BatchResult) -> None:
    """The invariants of one batch, whatever was in it."""
    assert len(result.outcomes) == len(batch)
    assert result.accepted + result.duplicates + result.rejected == len(batch)
    for raw, item in zip(batch, result.outcomes, strict=True):
        assert item.outcome in OUTCOMES, (raw[:200], item)
        if item.outcome in (REFUSED, MALFORMED):
            assert isinstance(item.reason, str) and item.reason.strip(), (raw[:200], item)
            assert "\n" not in item.reason and "\r" not in item.reason, item.reason


def ingest_checked(engine: LifecycleEngine, batch: Sequence[bytes], seconds: float, what: str) -> BatchResult:
    """One batch through the engine, bounded in time, with the batch invariants checked."""
    with deadline(seconds, what):
        result = engine.ingest(batch)
    check_batch(batch, result)
    return result


def check_parse(raw: bytes) -> InboundEvent | Rejection:
    with deadline(10, "parse"):
        parsed = parse(raw)
    assert isinstance(parsed, InboundEvent | Rejection)
    if isinstance(parsed, Rejection):
        assert parsed.reason.strip() and "\n" not in parsed.reason and len(parsed.reason) <= 1000
        assert parsed.raw == raw
    return parsed


def memory_engine() -> LifecycleEngine:
    return LifecycleEngine(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})


# -- building events ------------------------------------------------------------------------------

_serial = iter(range(1, 10**9))

VALID_DATA: dict[str, dict[str, Any]] = {
    "crm.customer.registered": {"name": "Ada Lovelace", "email": "ada@example.com", "country": "GB"},
    "crm.profile.updated": {"company": "Analytical Engines", "address": "12 St James's Square\nLondon"},
    "crm.consent.changed": {"purpose": "email", "granted": True},
    "crm.interaction.recorded": {"channel": "web", "kind": "page_view"},
    "crm.lead.qualified": {"budget": True, "authority": True, "need": True, "timeline": False},
    "crm.stage.change.requested": {"to_stage": "engagement", "reason": "sales_review"},
    "crm.purchase.recorded": {"order_id": "o-1", "amount": "29.33", "currency": "USD", "items": 2},
    "crm.refund.recorded": {"order_id": "o-1", "amount": "5.00", "currency": "USD"},
    "crm.feedback.submitted": {"score": 9},
    "crm.referral.made": {"referred_key": "shop:friend"},
    "crm.ticket.opened": {"ticket_id": "t-1"},
    "crm.ticket.resolved": {"ticket_id": "t-1"},
    "crm.deal.opened": {"deal_id": "d-1", "amount": "1000.00", "currency": "USD", "expected_close": "2025-09-01"},
    "crm.deal.stage.changed": {"deal_id": "d-1", "stage": "proposal"},
    "crm.deal.won": {"deal_id": "d-1"},
    "crm.deal.lost": {"deal_id": "d-1", "reason": "price"},
    "crm.customer.erasure.requested": {},
}


def event(type_: str = "crm.purchase.recorded", data: Any = None, **attributes: Any) -> dict[str, Any]:
    """A valid event as a dict, with a fresh id; attributes override the envelope."""
    n = next(_serial)
    body: dict[str, Any] = {
        "specversion": "1.0", "id": f"h-{n}", "source": "test/hostile", "type": type_,
        "subject": f"shop:h{n % 97}", "time": "2025-03-01T10:15:00Z", "datacontenttype": "application/json",
        "data": dict(VALID_DATA[type_]) if data is None else data,
    }
    if type_ == "crm.purchase.recorded" and data is None:
        body["data"]["order_id"] = f"o-{n}"
    body.update(attributes)
    return body


def dumps(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")


def line(type_: str = "crm.purchase.recorded", data: Any = None, **attributes: Any) -> bytes:
    return dumps(event(type_, data, **attributes))


def with_data(type_: str, **changes: Any) -> bytes:
    data = dict(VALID_DATA[type_])
    if type_ == "crm.purchase.recorded":
        data["order_id"] = f"o-x{next(_serial)}"
    data.update(changes)
    return line(type_, data)


def without(key: str, type_: str = "crm.purchase.recorded", in_data: bool = False) -> bytes:
    body = event(type_)
    del (body["data"] if in_data else body)[key]
    return dumps(body)


def raw_json(text: str) -> bytes:
    """Hand-written JSON text (for escapes json.dumps would not write, such as lone surrogates)."""
    return text.replace("@ID@", f"h-{next(_serial)}").encode("utf-8")


def padded_to(body: dict[str, Any], size: int) -> bytes:
    """``body`` as JSON with whitespace after the first ``{`` so that it is exactly ``size`` bytes."""
    text = dumps(body)
    return b"{" + b" " * (size - len(text)) + text[1:]


# -- the corpus -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    raw: bytes
    expect: str | None  # accepted | malformed | None (any outcome: the rules decide)


def corpus() -> list[Case]:
    cases: list[Case] = []

    def add(name: str, raw: bytes, expect: str | None = MALFORMED) -> None:
        cases.append(Case(name, raw, expect))

    valid = line()
    # -- not JSON ---------------------------------------------------------------------------------
    for name, raw in [
        ("plain text", b"hello"), ("html", b"<html><body>502 Bad Gateway</body></html>"),
        ("open brace", b"{"), ("close brace", b"}"), ("mismatched", b"{]"),
        ("single quotes", b"{'specversion': '1.0'}"), ("trailing comma", b'{"a": 1,}'),
        ("comment", b'{/* c */ "a": 1}'), ("two objects", valid + valid), ("object then garbage", valid + b"xyz"),
        ("json null", b"null"), ("json true", b"true"), ("json number", b"42"), ("json minus zero", b"-0"),
        ("json string", b'"just a string"'), ("empty", b""), ("blank", b"   "), ("whitespace", b"\t\r\n \x0c"),
        ("newline only", b"\n"), ("nul", b"\x00"), ("nuls", b"\x00" * 1000), ("gzip magic", b"\x1f\x8b\x08\x00\x00"),
        ("bare NaN", b"NaN"), ("bare Infinity", b"Infinity"), ("empty array", b"[]"),
        ("array of an event", b"[" + valid + b"]"), ("empty object", b"{}"),
        ("BOM then event", b"\xef\xbb\xbf" + line()), ("BOM only", b"\xef\xbb\xbf"),
        ("utf-16 event", json.dumps(event()).encode("utf-16")), ("utf-32 event", json.dumps(event()).encode("utf-32")),
        ("unescaped control in string", line().replace(b'"test/hostile"', b'"test/\x01hostile"')),
        ("unescaped newline in string", line().replace(b'"test/hostile"', b'"test/\nhostile"')),
        ("duplicate key", raw_json('{"specversion":"1.0","id":"@ID@","id":"again","source":"s","type":'
                                   '"crm.feedback.submitted","subject":"shop:1","time":"2025-01-01T00:00:00Z",'
                                   '"data":{"score":9}}')),
        ("duplicate key in data", raw_json('{"specversion":"1.0","id":"@ID@","source":"s","type":'
                                           '"crm.feedback.submitted","subject":"shop:1","time":'
                                           '"2025-01-01T00:00:00Z","data":{"score":9,"score":1}}')),
    ]:
        add(f"not json: {name}", raw)
    # -- truncated ----------------------------------------------------------------------------------
    full = line("crm.customer.registered", {"name": "Zoë Ünïcødé", "email": "zoe@example.com"})
    for cut in (1, 10, len(full) // 2, len(full) - 1):
        add(f"truncated at {cut}", full[:cut])
    middle = full.index("ë".encode()) + 1  # inside a two-byte character
    add("truncated inside a multi-byte character", full[:middle])
    # -- wrong types --------------------------------------------------------------------------------
    for key, value in [
        ("specversion", 1.0), ("specversion", "0.3"), ("specversion", "2.0"), ("specversion", None),
        ("id", 42), ("id", None), ("id", ""), ("id", ["a"]), ("id", "x" * 257),
        ("source", 7), ("source", ""), ("source", "has space"), ("source", {"a": 1}),
        ("subject", 42), ("subject", ""), ("subject", None), ("subject", {"k": 1}), ("subject", "s" * 257),
        ("time", 1700000000), ("time", None), ("time", ""), ("time", ["2025-01-01T00:00:00Z"]),
        ("type", 5), ("type", None), ("type", ["crm.purchase.recorded"]),
        ("data", "a string"), ("data", []), ("data", None), ("data", 5), ("data", True),
        ("datacontenttype", "text/xml"), ("datacontenttype", 5), ("dataschema", 5), ("dataschema", "has space"),
        ("dataversion", True), ("dataversion", 1.5), ("dataversion", -1), ("dataversion", 0), ("dataversion", "0"),
        ("dataversion", "01"), ("dataversion", "abc"), ("dataversion", []), ("dataversion", 10**12),
        ("dataversion", "1" * 50),
    ]:
        body = event()
        body[key] = value
        add(f"envelope {key} = {json.dumps(value)[:40]}", dumps(body))
    for type_, key, value in [
        ("crm.purchase.recorded", "amount", True), ("crm.purchase.recorded", "amount", []),
        ("crm.purchase.recorded", "amount", {"v": 1}), ("crm.purchase.recorded", "amount", "29,33"),
        ("crm.purchase.recorded", "amount", " 29.33"), ("crm.purchase.recorded", "amount", "1e3"),
        ("crm.purchase.recorded", "amount", "0x1F"), ("crm.purchase.recorded", "amount", None),
        ("crm.purchase.recorded", "items", "2"), ("crm.purchase.recorded", "items", 2.5),
        ("crm.purchase.recorded", "items", 0), ("crm.purchase.recorded", "items", -1),
        ("crm.purchase.recorded", "items", 10001), ("crm.purchase.recorded", "items", True),
        ("crm.purchase.recorded", "currency", "usd"), ("crm.purchase.recorded", "currency", "ZZZ"),
        ("crm.purchase.recorded", "currency", 840), ("crm.purchase.recorded", "currency", ""),
        ("crm.purchase.recorded", "order_id", 5), ("crm.purchase.recorded", "order_id", ""),
        ("crm.purchase.recorded", "order_id", "o" * 129),
        ("crm.feedback.submitted", "score", "9"), ("crm.feedback.submitted", "score", True),
        ("crm.feedback.submitted", "score", None), ("crm.feedback.submitted", "score", [9]),
        ("crm.consent.changed", "granted", "yes"), ("crm.consent.changed", "purpose", "telepathy"),
        ("crm.interaction.recorded", "channel", "pigeon"), ("crm.lead.qualified", "budget", 1),
        ("crm.lead.qualified", "score", 101), ("crm.stage.change.requested", "to_stage", "Customer!"),
        ("crm.customer.registered", "email", "not-an-email"), ("crm.customer.registered", "country", "XX"),
        ("crm.customer.registered", "country", "gb"), ("crm.deal.opened", "expected_close", "2025-02-30"),
        ("crm.deal.opened", "expected_close", "2025-09-01T00:00:00Z"), ("crm.deal.stage.changed", "stage", "won"),
        ("crm.ticket.opened", "priority", "whenever"), ("crm.referral.made", "referred_key", ""),
    ]:
        add(f"{type_} {key} = {json.dumps(value)[:40]}", with_data(type_, **{key: value}))
    # -- missing fields -------------------------------------------------------------------------------
    for key in ("specversion", "id", "source", "type", "subject", "time", "data"):
        add(f"missing {key}", without(key))
    for key in ("order_id", "amount", "currency"):
        add(f"missing data.{key}", without(key, in_data=True))
    add("missing data.score", without("score", "crm.feedback.submitted", in_data=True))
    add("missing data.deal_id", without("deal_id", "crm.deal.won", in_data=True))
    add("missing data.referred_key", without("referred_key", "crm.referral.made", in_data=True))
    add("profile update with no field", line("crm.profile.updated", {}))
    # -- size ---------------------------------------------------------------------------------------
    add("oversized field (70 KB order id)", with_data("crm.purchase.recorded", order_id="x" * 70_000))
    add("oversized line (1 MiB of a)", b"a" * (1 << 20))
    add("oversized: one byte over the limit", padded_to(event(), MAX_EVENT_BYTES + 1))
    add("at the limit exactly (whitespace padding)", padded_to(event(), MAX_EVENT_BYTES), ACCEPTED)
    add("at the limit plus a line ending", padded_to(event(), MAX_EVENT_BYTES) + b"\r\n", ACCEPTED)
    # -- unknown type, version, attribute -----------------------------------------------------------
    for value in ("crm.teleported", "CRM.PURCHASE.RECORDED", "crm.purchase.recorded ", "", "crm.purchase"):
        add(f"unknown type {value!r}", line(type=value))
    add("unknown dataversion 99", line(dataversion="99"))
    add("unknown dataversion 2 of purchase", line(dataversion=2))
    add("feedback v1 with a v2 field", line("crm.feedback.submitted", {"score": 9}, dataversion="1"))
    add("feedback v1 (old, upcast)", line("crm.feedback.submitted", {"nps": 9}, dataversion="1"), ACCEPTED)
    add("feedback v1 nps 11", line("crm.feedback.submitted", {"nps": 11}, dataversion="1"))
    add("unknown envelope attribute", line(colour="blue"))
    add("unknown data attribute", with_data("crm.purchase.recorded", colour="blue"))
    add("valid event with a line ending", line() + b"\n", ACCEPTED)
    add("valid event with CRLF", line() + b"\r\n", ACCEPTED)
    # -- times --------------------------------------------------------------------------------------
    for value in ("2025-03-01T10:15:00", "2025-03-01 10:15:00", "2025-03-01", "0001-01-01T00:00:00Z",
                  "1969-12-31T23:59:59Z", "1970-01-01T00:30:00+01:00", "2101-01-01T00:00:00Z",
                  "9999-12-31T23:59:59Z", "+275760-09-13T00:00:00Z", "2025-02-30T00:00:00Z",
                  "2025-13-01T00:00:00Z", "2025-01-01T24:00:00Z", "2016-12-31T23:59:60Z",
                  "2025-01-01T00:00:00+24:00", "2025-01-01T00:00:00+05:60", "yesterday", "2025-01-01T00:00:00Z\u0000",
                  "２０２５-01-01T00:00:00Z", "2025-01-01T00:00:00ZZ", "2025-01-01T00:00:00 Z", "1e9"):
        add(f"time {value!r}", line(time=value))
    for value in ("1970-01-01T00:00:00Z", "2100-12-31T23:59:59.999999Z", "2025-01-01t00:00:00z",
                  "2025-01-01T00:00:00+23:59", "2025-01-01T00:00:00.123456789123Z"):
        add(f"time {value!r} (edge, valid)", line(time=value), ACCEPTED)
    # -- amounts --------------------------------------------------------------------------------------
    for text in ("NaN", "Infinity", "-Infinity"):
        add(f"amount {text} (JSON constant)", raw_json(
            '{"specversion":"1.0","id":"@ID@","source":"s","type":"crm.purchase.recorded","subject":"shop:1",'
            f'"time":"2025-01-01T00:00:00Z","data":{{"order_id":"o","amount":{text},"currency":"USD"}}}}'))
    def purchase_with_amount(json_text: str) -> bytes:
        return raw_json(
            '{"specversion":"1.0","id":"@ID@","source":"s","type":"crm.purchase.recorded","subject":"shop:1",'
            f'"time":"2025-01-01T00:00:00Z","data":{{"order_id":"o-{next(_serial)}","amount":{json_text},'
            '"currency":"USD"}}')

    for text in ('"NaN"', '"Infinity"', '"-Infinity"', '"sNaN"', '"-1.00"', "-1", "-0.01", '"0.00001"', "29.33333",
                 "1E+400", "1E-400", "1000000000000", '"1' + "0" * 5000 + '"', "1" + "0" * 5000,
                 "1E+999999999999999999999", "-1E-999999999999999999999"):
        add(f"amount {text[:30]}", purchase_with_amount(text))
    for text in ('"-0"', '"0"', "-0", '"0.0000"', "999999999999.9999", "1E+3", '"000012.50"', "12.50000000"):
        add(f"amount {text} (edge, valid)", purchase_with_amount(text), ACCEPTED)
    # -- NPS ----------------------------------------------------------------------------------------
    for value in ("11", "-1", "9.5", '"10"', "10.0", "1e1", "100", "null", "1" + "0" * 400):
        add(f"nps {value[:20]}", raw_json(
            '{"specversion":"1.0","id":"@ID@","source":"survey","type":"crm.feedback.submitted",'
            f'"subject":"shop:1","time":"2025-01-01T00:00:00Z","data":{{"score":{value}}}}}'))
    # -- control characters and invalid Unicode -------------------------------------------------------
    for where in ("subject", "id", "source"):
        for char in ("\u0000", "\u0007", "\u001b", "\u007f", "\u0085", "\n"):
            add(f"{where} with control U+{ord(char):04X}", line(**{where: f"a{char}b"}))
    for where, body in [("subject", "shop:a\\ud800b"), ("id", "x\\udfff"), ("source", "s\\ud83c")]:
        add(f"lone surrogate in {where}", raw_json(
            '{"specversion":"1.0","id":"@ID@","source":"s","type":"crm.feedback.submitted","subject":"shop:1",'
            '"time":"2025-01-01T00:00:00Z","data":{"score":9}}'.replace(
                {"subject": '"shop:1"', "id": '"@ID@"', "source": '"s"'}[where], f'"{body}"')))
    add("lone surrogate in data.name", raw_json(
        '{"specversion":"1.0","id":"@ID@","source":"s","type":"crm.customer.registered","subject":"shop:1",'
        '"time":"2025-01-01T00:00:00Z","data":{"name":"Ada \\udc00 L"}}'))
    add("reversed surrogate pair in data.name", raw_json(
        '{"specversion":"1.0","id":"@ID@","source":"s","type":"crm.customer.registered","subject":"shop:1",'
        '"time":"2025-01-01T00:00:00Z","data":{"name":"\\udf89\\ud83c"}}'))
    # fields whose refusal quotes the input (found by the fuzz test: rendering the reason crashed)
    add("lone surrogate in data.country", raw_json(
        '{"specversion":"1.0","id":"@ID@","source":"s","type":"crm.customer.registered","subject":"shop:1",'
        '"time":"2025-01-01T00:00:00Z","data":{"name":"Ada","country":"\\ud800"}}'))
    add("lone surrogate in data.currency", raw_json(
        '{"specversion":"1.0","id":"@ID@","source":"s","type":"crm.purchase.recorded","subject":"shop:1",'
        '"time":"2025-01-01T00:00:00Z","data":{"order_id":"o-1","amount":"1.00","currency":"U\\udc00D"}}'))
    add("lone surrogate as a key", raw_json('{"specversion":"1.0","id":"@ID@","\\ud800":1}'))
    add("surrogate pair as escapes (valid emoji)", raw_json(
        '{"specversion":"1.0","id":"@ID@","source":"s","type":"crm.customer.registered","subject":"shop:1",'
        '"time":"2025-01-01T00:00:00Z","data":{"name":"\\ud83c\\udf89 Party"}}'), ACCEPTED)
    for name, char, expect in [("NUL", "\u0000", MALFORMED), ("ESC", "\u001b", MALFORMED), ("DEL", "\u007f", MALFORMED),
                               ("C1 NEL", "\u0085", MALFORMED), ("LINE SEPARATOR", "\u2028", None),
                               ("RTL override", "\u202e", None), ("zero width joiner", "\u200d", None)]:
        add(f"data.name with {name}", line("crm.customer.registered", {"name": f"Ada{char}Lovelace"}), expect)
    add("data.address with a tab and newlines", line("crm.profile.updated", {"address": "1 Road\n\tTown\r\n"}), None)
    add("emoji subject", line(subject="shop:🎉"), ACCEPTED)
    add("zalgo name", line("crm.customer.registered", {"name": "Z̷̢͓a̶l̴g̵o" * 5}), None)
    for name, raw in [
        ("0xff", b"\xff"), ("0xff 0xfe", b"\xff\xfe" + line()), ("overlong slash", b'{"a":"\xc0\xaf"}'),
        ("encoded surrogate", b'{"a":"\xed\xa0\x80"}'), ("beyond U+10FFFF", b'{"a":"\xf4\x90\x80\x80"}'),
        ("latin-1 in a name", line("crm.customer.registered", {"name": "Zoe"}).replace(b"Zoe", b"Zo\xe9")),
        ("cut multi-byte at the end", b'{"a":"\xe2\x82'),
    ]:
        add(f"invalid utf-8: {name}", raw)
    # -- deeply nested --------------------------------------------------------------------------------
    add("nested arrays 30k (valid JSON)", b"[" * 30_000 + b"]" * 30_000)
    add("nested arrays 60k, never closed", b"[" * 60_000)
    add("nested objects 10k", b'{"a":' * 10_000 + b"1" + b"}" * 10_000)
    add("nested arrays in data 30k", line(data={"x": "@"}).replace(b'"@"', b"[" * 30_000 + b"]" * 30_000))
    add("nested arrays in data.name 500", line("crm.customer.registered", {"name": "@"}).replace(
        b'"@"', b"[" * 500 + b'"Ada"' + b"]" * 500))
    add("nested objects in data 100", line(data={"x": "@"}).replace(b'"@"', b'{"a":' * 100 + b"1" + b"}" * 100))
    # -- huge numbers ---------------------------------------------------------------------------------
    for key, digits in [("items", 30), ("items", 4000), ("items", 5000), ("score", 100), ("dataversion", 100)]:
        number = "9" * digits
        if key == "dataversion":
            add(f"dataversion with {digits} digits", raw_json(
                '{"specversion":"1.0","id":"@ID@","source":"s","type":"crm.feedback.submitted","subject":"shop:1",'
                f'"time":"2025-01-01T00:00:00Z","dataversion":{number},"data":{{"score":9}}}}'))
        elif key == "score":
            add(f"score with {digits} digits", raw_json(
                '{"specversion":"1.0","id":"@ID@","source":"s","type":"crm.feedback.submitted","subject":"shop:1",'
                f'"time":"2025-01-01T00:00:00Z","data":{{"score":{number}}}}}'))
        else:
            add(f"items with {digits} digits", raw_json(
                '{"specversion":"1.0","id":"@ID@","source":"s","type":"crm.purchase.recorded","subject":"shop:1",'
                '"time":"2025-01-01T00:00:00Z","data":{"order_id":"o-%s","amount":"1.00","currency":"USD",'
                '"items":%s}}' % (next(_serial), number)))
    add("float exponent overflow", raw_json('{"specversion":"1.0","id":"@ID@","x":1e99999999999999999999999}'))
    # -- valid shapes, hostile meaning (the rules decide; any outcome, but no crash) --------------------
    for type_, data in [
        ("crm.refund.recorded", {"order_id": "never-bought", "amount": "5.00", "currency": "USD"}),
        ("crm.refund.recorded", {"order_id": "o-1", "amount": "99999.00", "currency": "EUR"}),
        ("crm.deal.won", {"deal_id": "never-opened"}),
        ("crm.deal.lost", {"deal_id": "never-opened", "reason": "price"}),
        ("crm.deal.stage.changed", {"deal_id": "never-opened", "stage": "negotiation"}),
        ("crm.stage.change.requested", {"to_stage": "wizard", "reason": "magic"}),
        ("crm.stage.change.requested", {"to_stage": "advocate", "reason": "skip_ahead"}),
        ("crm.stage.change.requested", {"to_stage": "churned", "reason": "request"}),
        ("crm.ticket.resolved", {"ticket_id": "never-opened"}),
        ("crm.referral.made", {"referred_key": "shop:h0"}),
        ("crm.customer.erasure.requested", {}),
        ("crm.customer.erasure.requested", {"reason": "gdpr_article_17"}),
    ]:
        add(f"rules: {type_} {json.dumps(data)[:50]}", line(type_, data), None)
    return cases


CORPUS = corpus()


def test_the_corpus_names_are_unique_and_the_valid_templates_parse():
    assert len({c.name for c in CORPUS}) == len(CORPUS)
    assert len(CORPUS) > 250
    for type_ in VALID_DATA:  # the controls: each hostile variant differs from a valid event
        assert isinstance(parse(line(type_)), InboundEvent), type_
    for case in CORPUS:
        if case.expect == ACCEPTED:
            assert isinstance(parse(case.raw), InboundEvent), case.name


@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
def test_each_hostile_input_alone(case: Case):
    """The parser gives an event or a reason; the engine accepts or rejects it with a reason."""
    parsed = check_parse(case.raw)
    engine = memory_engine()
    result = ingest_checked(engine, [case.raw], 30, "ingest")
    outcome = result.outcomes[0]
    if isinstance(parsed, Rejection):
        assert outcome.outcome == MALFORMED and outcome.reason == parsed.reason
    if case.expect is not None:
        assert outcome.outcome == case.expect, outcome
    # The same bytes again: an accepted or refused event is now a duplicate, a malformed one
    # is malformed again (its bytes are its identity).
    again = ingest_checked(engine, [case.raw], 30, "ingest again")
    expected_again = MALFORMED if outcome.outcome == MALFORMED else DUPLICATE
    assert again.outcomes[0].outcome == expected_again


def _batches(items: list[bytes], size: int) -> list[list[bytes]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


@pytest.mark.parametrize("backend", ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def test_the_corpus_in_batches_through_the_runtime(backend: str, tmp_path: Path, request: pytest.FixtureRequest):
    """Hostile inputs mixed with valid events, in batches, on a real store; then the views."""
    url = (lambda: request.getfixturevalue("postgres_url")) if backend == "postgres" else (lambda: "")
    rt = runtime_factory(backend, tmp_path, url)()
    try:
        rnd = random.Random(5)
        items = [c.raw for c in CORPUS] + [line(t) for t in VALID_DATA for _ in range(3)]
        rnd.shuffle(items)
        batches = _batches(items, 37)
        totals = IngestTotals()
        rejected_receipts = 0
        seen_malformed: set[bytes] = set()
        for batch in batches:
            result = ingest_checked(rt.engine, batch, 60, "ingest batch")
            totals.add(result)
            for raw, o in zip(batch, result.outcomes, strict=True):
                if o.outcome == REFUSED:
                    rejected_receipts += 1
                elif o.outcome == MALFORMED and raw not in seen_malformed:
                    seen_malformed.add(raw)
                    rejected_receipts += 1
        assert totals.accepted + totals.duplicates + totals.rejected == totals.inbound == len(items)
        assert totals.accepted > 0 and totals.rejected > 0
        with deadline(300, "catch up"):
            rt.catch_up()
        # Every distinct rejection is in the rejections view, with a reason.
        rejections = rt.views.rows("rejections")
        assert len(rejections) == rejected_receipts
        assert all(r["reason"] and r["reason"].strip() for r in rejections)

        # Everything again: nothing is accepted twice; malformed bytes are malformed again.
        again = IngestTotals()
        for batch in batches:
            again.add(ingest_checked(rt.engine, batch, 60, "ingest batch again"))
        malformed_messages = sum(1 for raw in items if isinstance(parse(raw), Rejection))
        assert (again.accepted, again.duplicates, again.rejected) == (
            0, len(items) - malformed_messages, malformed_messages)
        with deadline(120, "catch up again"):
            rt.catch_up()
        assert len(rt.views.rows("rejections")) == rejected_receipts
    finally:
        rt.close()


def test_same_source_and_id_with_different_content_is_a_duplicate_and_the_first_wins(tmp_path: Path):
    rt = runtime_factory("memory", tmp_path, lambda: "")()
    try:
        first = dumps({"specversion": "1.0", "id": "same-1", "source": "shop/checkout",
                       "type": "crm.purchase.recorded", "subject": "shop:first", "time": "2025-03-01T10:00:00Z",
                       "data": {"order_id": "o-first", "amount": "10.00", "currency": "USD", "items": 1}})
        variants = [
            # same source + id: different amount, order, subject, type, time
            dumps({**json.loads(first), "data": {"order_id": "o-first", "amount": "99.00", "currency": "USD"}}),
            dumps({**json.loads(first), "data": {"order_id": "o-other", "amount": "5.00", "currency": "EUR"}}),
            dumps({**json.loads(first), "subject": "shop:someone-else"}),
            dumps({**json.loads(first), "type": "crm.feedback.submitted", "data": {"score": 0}}),
            dumps({**json.loads(first), "time": "2024-01-01T00:00:00Z"}),
        ]
        with deadline(30):
            result = rt.engine.ingest([first, variants[0]])  # in the same batch
        check_batch([first, variants[0]], result)
        assert [o.outcome for o in result.outcomes] == [ACCEPTED, DUPLICATE]
        with deadline(30):
            later = rt.engine.ingest(variants[1:])  # in later batches
        check_batch(variants[1:], later)
        assert [o.outcome for o in later.outcomes] == [DUPLICATE] * 4
        # Another source with the same id is another event.
        other_source = dumps({**json.loads(first), "source": "shop/other",
                              "data": {"order_id": "o-2", "amount": "1.00", "currency": "USD"}})
        assert rt.engine.ingest([other_source]).outcomes[0].outcome == ACCEPTED
        with deadline(60):
            rt.catch_up()
        purchases = {(r["customer_key"], r["order_id"]): r["amount"] for r in rt.views.rows("customer_purchases")}
        assert purchases == {("shop:first", "o-first"): Decimal("10.00"), ("shop:first", "o-2"): Decimal("1.00")}
        customers = {r["customer_key"]: r for r in rt.views.rows("customer_current")}
        assert set(customers) == {"shop:first"}  # the duplicate's subject was never created
        assert customers["shop:first"]["feedback_count"] == 0
        assert customers["shop:first"]["first_seen_at"].isoformat().startswith("2025-03-01")
    finally:
        rt.close()


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_thousands_of_events_for_one_customer(backend: str, tmp_path: Path):
    """3000 interactions and 3000 purchases for one key, in batches: all accepted, views right."""
    rt = runtime_factory(backend, tmp_path, lambda: "")()
    try:
        key = "shop:hot"
        lines = []
        for i in range(3000):
            day, minute = divmod(i, 1440)
            at = f"2025-{1 + day % 12:02d}-{1 + day // 12 % 28:02d}T{minute // 60:02d}:{minute % 60:02d}:00Z"
            lines.append(dumps({"specversion": "1.0", "id": f"hot-i{i}", "source": "web", "subject": key,
                                "type": "crm.interaction.recorded", "time": at,
                                "data": {"channel": "web", "kind": "page_view"}}))
            lines.append(dumps({"specversion": "1.0", "id": f"hot-p{i}", "source": "shop", "subject": key,
                                "type": "crm.purchase.recorded", "time": at,
                                "data": {"order_id": f"o-{i}", "amount": "1.25", "currency": "USD", "items": 1}}))
        random.Random(3).shuffle(lines)  # arrival order is not business order
        accepted = 0
        with deadline(600, "ingest 6000 events for one customer"):
            for batch in _batches(lines, 500):
                result = rt.engine.ingest(batch)
                check_batch(batch, result)
                accepted += result.accepted
        assert accepted == 6000
        with deadline(600, "catch up 6000 events for one customer"):
            rt.catch_up()
        (row,) = rt.views.rows("customer_current")
        assert (row["customer_key"], row["interactions"], row["orders"]) == (key, 3000, 3000)
        assert row["total_spent"] == Decimal("3750.00")
        assert len(rt.views.rows("customer_purchases")) == 3000
    finally:
        rt.close()


def test_hostile_sequences_across_batches(tmp_path: Path):
    """Valid events in an order or combination upstream should never send: the rules refuse or
    accept, nothing crashes, and the views build."""
    rt = runtime_factory("sqlite", tmp_path, lambda: "")()
    a, b = "shop:seq-a", "shop:seq-b"
    deal = {"deal_id": "d-seq", "amount": "500.00", "currency": "USD", "expected_close": "2025-06-01"}
    batches = [
        # events before the customer registered, a deal closed before it opened, refunds first
        [line("crm.deal.won", {"deal_id": "d-seq"}, subject=a),
         line("crm.refund.recorded", {"order_id": "o-seq", "amount": "5.00", "currency": "USD"}, subject=a),
         line("crm.ticket.resolved", {"ticket_id": "t-seq"}, subject=a)],
        [line("crm.deal.opened", deal, subject=a), line("crm.deal.opened", deal, subject=b),  # one deal, two owners
         line("crm.deal.won", {"deal_id": "d-seq"}, subject=b), line("crm.deal.lost", {"deal_id": "d-seq",
                                                                                       "reason": "price"}, subject=a),
         line("crm.deal.stage.changed", {"deal_id": "d-seq", "stage": "initial_contact"}, subject=a)],
        [line("crm.purchase.recorded", {"order_id": "o-seq", "amount": "10.00", "currency": "USD"}, subject=a),
         line("crm.purchase.recorded", {"order_id": "o-seq", "amount": "99.00", "currency": "EUR"}, subject=a),
         line("crm.refund.recorded", {"order_id": "o-seq", "amount": "50.00", "currency": "USD"}, subject=a),
         line("crm.refund.recorded", {"order_id": "o-seq", "amount": "1.00", "currency": "JPY"}, subject=a),
         line("crm.purchase.recorded", {"order_id": "o-seq", "amount": "10.00", "currency": "USD"}, subject=b)],
        # erasure, then more personal data, then erasure again, then a late event from before
        [line("crm.customer.registered", {"name": "Eve Example", "email": "eve@example.com"}, subject=a),
         line("crm.customer.erasure.requested", {}, subject=a),
         line("crm.profile.updated", {"name": "Eve Again", "address": "1 Road"}, subject=a)],
        [line("crm.profile.updated", {"name": "Eve Later"}, subject=a),
         line("crm.feedback.submitted", {"score": 10, "comment": "again"}, subject=a),
         line("crm.customer.erasure.requested", {"reason": "twice"}, subject=a),
         line("crm.referral.made", {"referred_key": a}, subject=a),  # refers itself
         line("crm.interaction.recorded", time="2020-01-01T00:00:00Z", subject=a)],
        [line("crm.stage.change.requested", {"to_stage": stage, "reason": "sales_review"}, subject=b)
         for stage in ("advocate", "awareness", "disqualified", "qualified", "customer", "churned", "retained",
                       "nonexistent")],
    ]
    try:
        for batch in batches:
            ingest_checked(rt.engine, batch, 30, "ingest")
        with deadline(60, "catch up"):
            rt.catch_up()
        keys = {r["customer_key"] for r in rt.views.rows("customer_current")}
        assert {a, b} <= keys
        assert rt.forget(a) and rt.forget(b)  # erasing (again) after all that works too
    finally:
        rt.close()
