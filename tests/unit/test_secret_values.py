"""Only the Secret keys a provider reads are decoded as text; the rest may hold anything."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Mapping

import pytest

from directservice.core.model import DiscoveryError
from directservice.discovery.credentials import SecretValue, read_keys
from directservice.publish.secrets import parse_secret_data

BINARY = bytes([0xFF, 0xFE, 0x00, 0xC3, 0x28])


def answer(data: Mapping[str, bytes]) -> bytes:
    return json.dumps({"data": {k: base64.b64encode(v).decode() for k, v in data.items()}}).encode()


def reader(data: Mapping[str, SecretValue]):  # type: ignore[no-untyped-def]
    async def read(namespace: str, name: str) -> Mapping[str, SecretValue]:
        return data

    return read


def test_secret_data_stays_bytes() -> None:
    parsed = parse_secret_data(answer({"token": b"abc", "keystore": BINARY}), "Secret ns/s")
    assert parsed == {"token": b"abc", "keystore": BINARY}


def test_an_unreadable_answer_names_the_secret_only() -> None:
    with pytest.raises(DiscoveryError) as caught:
        parse_secret_data(b'{"data": {"token": "%%%not-base64"}}', "Secret ns/s")
    assert caught.value.reason == "SecretUnavailable"
    assert "not-base64" not in caught.value.message


def test_a_binary_key_that_is_not_read_is_ignored() -> None:
    data = {"token": b"t0ken", "keystore": BINARY}
    assert asyncio.run(read_keys(reader(data), "ns", "s", ("token",))) == {"token": "t0ken"}


def test_a_needed_key_that_is_not_text_names_secret_and_key_never_the_value() -> None:
    data = {"token": b"ok" + BINARY}
    with pytest.raises(DiscoveryError) as caught:
        asyncio.run(read_keys(reader(data), "ns", "creds", ("token",)))
    assert caught.value.reason == "InvalidSecretValue"
    assert "key token of Secret ns/creds" in caught.value.message
    assert "ok" not in caught.value.message.replace("token", "")
