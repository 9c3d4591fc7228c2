"""Field encryption with AES-256-GCM: a value becomes an opaque token, and back.

A token is ``enc:v1:`` + base64(nonce || ciphertext+tag); the customer id is
bound as associated data, so a token copied to another customer does not open.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "enc:v1:"


def new_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def is_token(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


# What ``json.dumps(value, separators=(",", ":"))`` would make for every call.
_COMPACT = json.JSONEncoder(separators=(",", ":"))


Cipher = AESGCM  # one key's cipher: make it once to seal many values


def seal(key: bytes, customer_id: str, value: Any) -> str:
    return seal_with(Cipher(key), customer_id, value)


def seal_with(cipher: AESGCM, customer_id: str, value: Any) -> str:
    nonce = os.urandom(12)  # fresh for every value: GCM must never see a nonce twice per key
    plain = _COMPACT.encode(value).encode()
    sealed = cipher.encrypt(nonce, plain, customer_id.encode())
    return PREFIX + base64.b64encode(nonce + sealed).decode("ascii")


def open_token(key: bytes | None, customer_id: str, token: str) -> Any:
    """The value, or None when the key is gone (erased) or the token is not this customer's."""
    return open_with(None if key is None else Cipher(key), customer_id, token)


def open_with(cipher: AESGCM | None, customer_id: str, token: str) -> Any:
    if cipher is None:
        return None
    try:
        raw = base64.b64decode(token[len(PREFIX):])
        return json.loads(cipher.decrypt(raw[:12], raw[12:], customer_id.encode()))
    except (InvalidTag, ValueError):
        return None
