"""The forbidden-character rules of string fields, matched by pydantic in Rust, against the
Python patterns that word their refusals: the same verdict for every code point."""

from __future__ import annotations

import re

import pytest
from pydantic import TypeAdapter, ValidationError

from schemas.fields import FreeText, Text, UriReference, forbidden_character
from schemas.parse import parse
from tests.events import interaction

RULES = [
    (Text(16), re.compile(r"[\x00-\x1f\x7f-\x9f]"), "control characters"),
    (FreeText(16), re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]"), "control characters other than tab and newline"),
    (UriReference(16), re.compile(r"[\s\x00-\x1f\x7f-\x9f]"), "whitespace or control characters"),
]
EVERY_CHARACTER = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]


@pytest.mark.parametrize(("kind", "python_rule", "what"), RULES)
def test_the_rust_pattern_refuses_exactly_what_the_python_rule_finds(kind, python_rule, what):
    values = [f"a{c}b" for c in EVERY_CHARACTER]
    problems = []
    try:
        TypeAdapter(list[kind]).validate_python(values)
    except ValidationError as e:
        problems = e.errors(include_url=False)
        assert {p["type"] for p in problems} == {"string_pattern_mismatch"}
    refused = {p["loc"][0] for p in problems}
    expected = {i for i, value in enumerate(values) if python_rule.search(value)}
    assert refused == expected
    assert len(expected) >= 63  # the C0 and C1 controls at least, but for tab and newline in free text
    shown = forbidden_character(problems[0]["ctx"]["pattern"], values[min(refused)])
    assert shown == f"must not contain {what} (found U+{ord(EVERY_CHARACTER[min(refused)]):04X} at position 1)"


def test_a_refusal_names_the_character_and_its_place():
    rejected = parse(interaction("shop:\u000742", "2026-01-01T10:00:00Z"))
    assert rejected.reason == "subject: must not contain control characters (found U+0007 at position 5)"


def test_other_pattern_refusals_keep_their_wording():
    assert forbidden_character(r"^[a-z][a-z0-9_]*$", "Stage") is None
    assert forbidden_character(r"^[^\x00-\x1f\x7f-\x9f]*$", 7) is None
