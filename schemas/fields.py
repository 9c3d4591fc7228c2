"""Field types shared by the envelope and the data models.

Each type is an ``Annotated`` alias: the validation rule and the JSON Schema
that producers see are declared together. Custom checks raise
``PydanticCustomError`` so that rejections read as plain sentences
("must be >= 0"), not as Python exceptions.

Pydantic itself refuses strings holding lone surrogates (``string_unicode``).
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

from schemas.countries import COUNTRIES
from schemas.currencies import ACTIVE_CURRENCIES

#: Earliest and latest instants accepted for business times and dates.
MIN_YEAR = 1970
MAX_YEAR = 2100

#: Money: at most this many digits before and after the decimal point.
MONEY_INTEGER_DIGITS = 12
MONEY_DECIMAL_PLACES = 4

# A string field refuses characters by a pattern that pydantic matches in Rust (an
# ``AfterValidator`` in Python was a call per string field, 4.7 an inbound event: a simulated line
# parses 0.6-1.0 µs faster without them). ``forbidden_character`` words a refusal as the Python
# check did: which character, where.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_EXCEPT_TAB_LF = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")
# The same rules for pydantic (Rust's regex: its \s is Unicode's White_Space, which is Python's
# \s but for U+001C-U+001F, control characters anyway; tests/test_forbidden_characters.py
# compares every code point) and for JSON Schema (ECMA-262 regular expressions).
_NO_CONTROL = r"^[^\x00-\x1f\x7f-\x9f]*$"
_NO_CONTROL_EXCEPT_TAB_LF = r"^[^\x00-\x08\x0b-\x1f\x7f-\x9f]*$"
_NO_SPACE_OR_CONTROL = r"^[^\s\x00-\x1f\x7f-\x9f]+$"
_JS_NO_CONTROL = r"^[^\u0000-\u001F\u007F-\u009F]*$"
_JS_NO_CONTROL_EXCEPT_TAB_LF = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$"
_JS_NO_SPACE_OR_CONTROL = r"^[^\s\u0000-\u001F\u007F-\u009F]+$"
_FORBIDDEN = {
    _NO_CONTROL: (_CONTROL, "control characters"),
    _NO_CONTROL_EXCEPT_TAB_LF: (_CONTROL_EXCEPT_TAB_LF, "control characters other than tab and newline"),
    _NO_SPACE_OR_CONTROL: (_SPACE_OR_CONTROL, "whitespace or control characters"),
}


def forbidden_character(pattern: str, value: object) -> str | None:
    """Why ``value`` failed ``pattern``, when that is one of the rules above and ``value`` holds a
    character it forbids: "must not contain ... (found U+0007 at position 3)"; else None."""
    rule = _FORBIDDEN.get(pattern)
    found = rule[0].search(value) if rule is not None and isinstance(value, str) else None
    if found is None:
        return None
    return f"must not contain {rule[1]} (found U+{ord(found.group()):04X} at position {found.start()})"


def _error(kind: str, message: str, **context: Any) -> PydanticCustomError:
    # The input is quoted in some messages; a lone surrogate in it would make pydantic fail
    # while rendering the error (UnicodeEncodeError), so quoted text is escaped first.
    shown = {k: _escape_surrogates(v) if isinstance(v, str) else v for k, v in context.items()}
    return PydanticCustomError(kind, message, shown or None)


_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _escape_surrogates(text: str) -> str:
    return _SURROGATE.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


def Text(max_length: int, *, min_length: int = 0) -> Any:
    """A single-line string: no control characters at all."""
    return Annotated[
        str,
        Field(
            strict=True,
            min_length=min_length,
            max_length=max_length,
            pattern=_NO_CONTROL,
            json_schema_extra={"pattern": _JS_NO_CONTROL},
        ),
    ]


def FreeText(max_length: int) -> Any:
    """Free text written by people: tab and newline allowed, other control characters not."""
    return Annotated[
        str,
        Field(strict=True, max_length=max_length, pattern=_NO_CONTROL_EXCEPT_TAB_LF,
              json_schema_extra={"pattern": _JS_NO_CONTROL_EXCEPT_TAB_LF}),
    ]


def UriReference(max_length: int) -> Any:
    """A URI-reference: non-empty, no whitespace, no control characters."""
    return Annotated[
        str,
        Field(
            strict=True,
            min_length=1,
            max_length=max_length,
            pattern=_NO_SPACE_OR_CONTROL,
            json_schema_extra={"format": "uri-reference", "pattern": _JS_NO_SPACE_OR_CONTROL},
        ),
    ]


#: A customer key (the CloudEvents ``subject``), also used for ``referred_key``.
CustomerKey = Text(256, min_length=1)

#: An identifier given by upstream (order, ticket, deal).
Identifier = Text(128, min_length=1)

#: A machine-readable code such as a stage name or a reason code.
Code = Annotated[str, Field(strict=True, min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")]

# -- e-mail, country, currency ------------------------------------------------------------------

_EMAIL = re.compile(r"[^\s@]{1,64}@[^\s@.]+(?:\.[^\s@.]+)+")


def _check_email(value: str) -> str:
    domain = value.rpartition("@")[2]
    if (
        not _EMAIL.fullmatch(value)
        or len(domain) > 253
        or any(label.startswith("-") or label.endswith("-") for label in domain.split("."))
    ):
        raise _error("email", "must be an e-mail address like name@example.com")
    return value


Email = Annotated[
    str,
    Field(strict=True, max_length=254, pattern=_NO_CONTROL, json_schema_extra={"format": "email", "pattern": _JS_NO_CONTROL}),
    AfterValidator(_check_email),
]


def _check_country(value: str) -> str:
    if value not in COUNTRIES:
        raise _error("country", "must be an upper-case ISO 3166-1 alpha-2 country code, not '{value}'", value=value[:8])
    return value


Country = Annotated[
    str,
    Field(strict=True, json_schema_extra={"enum": sorted(COUNTRIES)}),
    AfterValidator(_check_country),
]


def _check_currency(value: str) -> str:
    if value not in ACTIVE_CURRENCIES:
        raise _error("currency", "must be an active upper-case ISO 4217 currency code, not '{value}'", value=value[:8])
    return value


Currency = Annotated[
    str,
    Field(strict=True, json_schema_extra={"enum": sorted(ACTIVE_CURRENCIES)}),
    AfterValidator(_check_currency),
]

# -- money ----------------------------------------------------------------------------------------

_AMOUNT_TEXT = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_NOT_A_NUMBER = "must be a decimal number: a JSON number or a string like \"29.33\""


def _money(value: Any) -> Decimal:
    """Amount as Decimal: finite, >= 0, at most 12 integer digits and 4 decimal places.

    JSON numbers reach us as ``Decimal`` (the parser uses ``parse_float=Decimal``)
    or ``int``; strings must be plain decimal notation. The scale is kept as
    sent ("29.30" stays 29.30), except that exponents are expanded and surplus
    trailing zeros beyond 4 places dropped; -0 becomes 0.
    """
    if isinstance(value, bool):
        raise _error("decimal_type", _NOT_A_NUMBER)
    try:
        if isinstance(value, Decimal):
            number = value
        elif isinstance(value, int):
            number = Decimal(value)
        elif isinstance(value, float):
            number = Decimal(repr(value))
        elif isinstance(value, str) and _AMOUNT_TEXT.fullmatch(value):
            number = Decimal(value)
        else:
            raise _error("decimal_type", _NOT_A_NUMBER)
    except (InvalidOperation, ValueError, OverflowError):
        raise _error("decimal_type", _NOT_A_NUMBER) from None
    if not number.is_finite():
        raise _error("finite_number", "must be a finite number")
    sign, digits, exponent = number.as_tuple()
    if sign and any(digits):
        raise _error("greater_than_equal", "must be >= 0")
    assert isinstance(exponent, int)
    digit_list = list(digits)
    if not any(digit_list):  # zero, in any notation: keep its scale within the limits
        return Decimal((0, (0,), min(max(exponent, -MONEY_DECIMAL_PLACES), 0)))
    while exponent < -MONEY_DECIMAL_PLACES and len(digit_list) > 1 and digit_list[-1] == 0:
        digit_list.pop()
        exponent += 1
    if -exponent > MONEY_DECIMAL_PLACES:
        raise _error("decimal_places", "must have at most {n} decimal places", n=MONEY_DECIMAL_PLACES)
    if len(digit_list) + exponent > MONEY_INTEGER_DIGITS:
        raise _error("integer_digits", "must have at most {n} digits before the decimal point", n=MONEY_INTEGER_DIGITS)
    if exponent > 0:
        digit_list.extend([0] * exponent)
        exponent = 0
    return Decimal((0, tuple(digit_list), exponent))


Money = Annotated[
    Decimal,
    BeforeValidator(_money),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0, "maximum": 999999999999.9999},
                {"type": "string", "pattern": r"^[0-9]{1,12}(\.[0-9]{1,4})?$"},
            ],
            "description": "Amount >= 0, at most 12 integer digits and 4 decimal places; "
            "a string keeps the exact decimal value.",
        }
    ),
]

# -- dates and times ------------------------------------------------------------------------------

_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))"
)
_EPOCH = datetime(MIN_YEAR, 1, 1, tzinfo=timezone.utc)
_END = datetime(MAX_YEAR + 1, 1, 1, tzinfo=timezone.utc)
_BAD_TIMESTAMP = "must be an RFC 3339 timestamp with a time zone offset, like 2026-03-01T10:15:00Z"


def _check_range(moment: datetime) -> datetime:
    if not (_EPOCH <= moment < _END):
        raise _error("time_range", "year must be between {lo} and {hi}", lo=MIN_YEAR, hi=MAX_YEAR)
    return moment


def _timestamp(value: Any) -> datetime:
    """RFC 3339 text with an offset (or an aware datetime) → aware datetime in UTC."""
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise _error("timezone_aware", "must carry a time zone offset (naive times are refused)")
        if not (MIN_YEAR - 1 <= value.year <= MAX_YEAR + 1):
            raise _error("time_range", "year must be between {lo} and {hi}", lo=MIN_YEAR, hi=MAX_YEAR)
        return _check_range(value.astimezone(timezone.utc))
    if not isinstance(value, str):
        raise _error("datetime_type", _BAD_TIMESTAMP)
    match = _RFC3339.fullmatch(value)
    if not match:
        if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?", value):
            raise _error("timezone_aware", "must carry a time zone offset such as Z or +02:00 (naive times are refused)")
        raise _error("datetime_format", _BAD_TIMESTAMP)
    if not (MIN_YEAR - 1 <= int(match[1]) <= MAX_YEAR + 1):
        raise _error("time_range", "year must be between {lo} and {hi}", lo=MIN_YEAR, hi=MAX_YEAR)
    # The C parser takes what the pattern admits but lower-case T and Z and means the same by
    # it (a fraction beyond microseconds cut off), in a fifth of the time of the construction
    # below, which decides the rest and gives each error's reason. It would also take an
    # offset's minutes of 60 or more: those are left to the construction, which refuses them.
    moment = None
    if match[11] is None or match[11] < "60":
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            pass
    return _check_range((_constructed(match) if moment is None else moment).astimezone(timezone.utc))


def _constructed(match: re.Match[str]) -> datetime:
    """The aware datetime of an RFC 3339 match, built field by field."""
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    try:
        offset = timedelta(0)
        if not zulu:
            if int(off_h) > 23 or int(off_m) > 59:
                raise ValueError("offset out of range")
            offset = timedelta(hours=int(off_h), minutes=int(off_m)) * (-1 if sign == "-" else 1)
        moment = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second),
            int((fraction or "0")[:6].ljust(6, "0")),
            tzinfo=timezone(offset),
        )
    except ValueError:
        raise _error("datetime_format", _BAD_TIMESTAMP) from None
    return moment


Timestamp = Annotated[
    datetime,
    BeforeValidator(_timestamp),
    Field(json_schema_extra={"pattern": r"([Zz]|[+-][0-9]{2}:[0-9]{2})$"}),
]


def _calendar_date(value: Any) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and _DATE.fullmatch(value):
        try:
            parsed = date.fromisoformat(value)
        except ValueError:
            raise _error("date_format", "must be a calendar date YYYY-MM-DD") from None
    else:
        raise _error("date_format", "must be a calendar date YYYY-MM-DD")
    if not (MIN_YEAR <= parsed.year <= MAX_YEAR):
        raise _error("date_range", "year must be between {lo} and {hi}", lo=MIN_YEAR, hi=MAX_YEAR)
    return parsed


CalendarDate = Annotated[
    date,
    BeforeValidator(_calendar_date),
    WithJsonSchema({"type": "string", "format": "date", "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"}),
]

# -- the dataversion extension attribute ----------------------------------------------------------

_VERSION_TEXT = re.compile(r"[1-9][0-9]{0,8}")


def coerce_version(value: Any) -> int:
    """A data version: a positive integer given as a JSON number or a string of digits."""
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value < 10**9:
        return value
    if isinstance(value, str) and _VERSION_TEXT.fullmatch(value):
        return int(value)
    raise _error("dataversion", "must be a positive integer, as a JSON number or a string of digits")


DataVersion = Annotated[
    int,
    BeforeValidator(coerce_version),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": "^[1-9][0-9]*$"}],
            "description": "Version of the data model; defaults to the latest version of the event type.",
        }
    ),
]
