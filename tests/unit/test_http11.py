"""The HTTP/1.1 answer parser and request writer: framing, caps and refusals, on bytes alone."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from directservice.discovery.http11 import (
    MAX_HEAD_BYTES,
    Answer,
    AnswerParser,
    BodyTooLarge,
    ProtocolError,
    request_bytes,
)
from properties import BOUNDED

pytestmark = pytest.mark.unit

CAP = 100


def parse(data: bytes, *, cap: int = CAP, pieces: int = 1, close: bool = False) -> Answer:
    """Feed `data` in `pieces` about equal parts (then the close, when asked)."""
    parser = AnswerParser(cap)
    step = max(1, -(-len(data) // pieces))
    for at in range(0, len(data), step):
        parser.feed(data[at : at + step])
    if close:
        parser.end_of_stream()
    assert parser.answer is not None, "the answer is not complete"
    return parser.answer


LENGTH = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{"a":1}'
CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b'3\r\n{"a\r\n4;ext=1\r\n":1}\r\n0\r\nX-Trailer: t\r\n\r\n'
)


@pytest.mark.parametrize("data", [LENGTH, CHUNKED], ids=["length", "chunked"])
def test_an_answer_split_anywhere_parses_the_same(data: bytes) -> None:
    whole = parse(data)
    assert (whole.status, whole.body, whole.keep_alive) == (200, b'{"a":1}', True)
    for pieces in range(2, len(data) + 1):
        assert parse(data, pieces=pieces) == whole


def test_headers_keep_their_spelling_and_order() -> None:
    answer = parse(
        b"HTTP/1.1 429 Too Many\r\nretry-after: 7\r\nX-A:  b \r\nContent-Length: 0\r\n\r\n"
    )
    assert answer.status == 429
    assert answer.headers == (("retry-after", "7"), ("X-A", "b"), ("Content-Length", "0"))


def test_informational_answers_are_skipped() -> None:
    answer = parse(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n")
    assert (answer.status, answer.body) == (204, b"")


def test_a_body_without_framing_ends_with_the_connection() -> None:
    parser = AnswerParser(CAP)
    parser.feed(b"HTTP/1.0 200 OK\r\n\r\nab")
    parser.feed(b"cd")
    assert parser.answer is None
    parser.end_of_stream()
    assert parser.answer == Answer(200, (), b"abcd", False)


@pytest.mark.parametrize(
    ("head", "keep_alive"),
    [
        (b"HTTP/1.1 200 OK\r\n", True),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\n", False),
        (b"HTTP/1.0 200 OK\r\n", False),
        (b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\n", True),
    ],
)
def test_keep_alive_follows_the_version_and_connection_header(
    head: bytes, keep_alive: bool
) -> None:
    assert parse(head + b"Content-Length: 0\r\n\r\n").keep_alive is keep_alive


def test_a_declared_length_over_the_cap_fails_before_the_body() -> None:
    parser = AnswerParser(CAP)
    with pytest.raises(BodyTooLarge) as caught:
        parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 101\r\n\r\n")
    assert (caught.value.size, caught.value.declared) == (101, True)


def test_a_body_of_exactly_the_cap_is_accepted_and_one_more_byte_is_not() -> None:
    assert parse(b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * CAP, close=True).body == b"x" * CAP
    parser = AnswerParser(CAP)
    parser.feed(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n" + b"x" * CAP + b"\r\n"
    )
    with pytest.raises(BodyTooLarge) as caught:
        parser.feed(b"1\r\nx\r\n")
    assert (caught.value.size, caught.value.declared) == (CAP + 1, False)


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/2 200 OK\r\n\r\n",
        b"ICY 200 OK\r\n\r\n",
        b"HTTP/1.1 20 OK\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 099 Low\r\n\r\n",
        "HTTP/1.1 2³3 OK\r\n\r\n".encode("latin-1"),
        "HTTP/1.1 200 OK\r\nContent-Length: 1³\r\n\r\n".encode("latin-1"),
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1_0\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x1\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n Folded: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxy\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxy",
    ],
)
def test_bytes_that_are_no_readable_answer_are_refused(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        AnswerParser(CAP).feed(data)


def test_a_head_without_end_is_refused_past_the_limit() -> None:
    parser = AnswerParser(CAP)
    parser.feed(b"HTTP/1.1 200 OK\r\n")
    with pytest.raises(ProtocolError):
        parser.feed(b"X: " + b"y" * MAX_HEAD_BYTES)


def test_a_close_before_the_end_is_refused_and_nothing_is_started_before_a_byte() -> None:
    parser = AnswerParser(CAP)
    assert not parser.started
    parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab")
    assert parser.started
    with pytest.raises(ProtocolError):
        parser.end_of_stream()


def test_the_request_carries_host_length_and_headers_and_a_given_host_wins() -> None:
    wire = request_bytes("POST", "/v3/auth?x=1", "iam.test:8443", {"A": "b"}, b"{}")
    assert wire == (
        b"POST /v3/auth?x=1 HTTP/1.1\r\nHost: iam.test:8443\r\nA: b\r\nContent-Length: 2\r\n\r\n{}"
    )
    signed = request_bytes("GET", "/", "iam.test", {"host": "signed.test"}, None)
    assert signed == b"GET / HTTP/1.1\r\nhost: signed.test\r\n\r\n"


@pytest.mark.parametrize("value", ["a\r\nX-Injected: 1", "a\nb", "a\rb"])
def test_a_header_value_with_a_line_break_is_refused(value: str) -> None:
    with pytest.raises(ValueError):
        request_bytes("GET", "/", "h", {"X": value}, None)


@BOUNDED
@given(
    body=st.binary(max_size=300),
    sizes=st.lists(st.integers(1, 40), min_size=1, max_size=20),
    cuts=st.lists(st.integers(1, 30), max_size=30),
)
def test_any_chunking_and_any_split_give_the_body_back(
    body: bytes, sizes: list[int], cuts: list[int]
) -> None:
    """Property: a body sent in any chunk sizes, received in any pieces, is the body."""
    chunks, at, i = [], 0, 0
    while at < len(body):
        size = sizes[i % len(sizes)]
        chunks.append(
            b"%x\r\n%s\r\n" % (size, body[at : at + size])
            if at + size <= len(body)
            else b"%x\r\n%s\r\n" % (len(body) - at, body[at:])
        )
        at, i = at + size, i + 1
    data = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"".join(chunks) + b"0\r\n\r\n"
    )
    parser = AnswerParser(len(body))
    start = 0
    for cut in cuts:
        parser.feed(data[start : start + cut])
        start += cut
        if start >= len(data):
            break
    if start < len(data):
        parser.feed(data[start:])
    assert parser.answer is not None and parser.answer.body == body
