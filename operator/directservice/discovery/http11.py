"""HTTP/1.1 on the wire, as much as a discovery call needs: one request out, one answer in.

Why not aiohttp's client: on this path its request machinery cost about 0.85 ms of CPU per
call, half of all a poll costs, and one replica makes hundreds of calls a second. A call
here is a GET (or a JSON POST for an IAM token) whose answer is read whole and capped, so
the parser below is small: a status line, headers, and a body framed by Content-Length,
chunked coding or the close of the connection. Whatever it does not expect is an error,
never a guess.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

MAX_HEAD_BYTES = 64 * 1024  # status line plus headers
_CRLF = b"\r\n"
_HEX_DIGITS = b"0123456789abcdefABCDEF"


def _digits(text: str) -> bool:
    """ASCII digits only: str.isdigit also takes "³" and other digits int() refuses."""
    return text.isascii() and text.isdigit()


class ProtocolError(Exception):
    """The peer's bytes are not an HTTP/1.x answer we can read."""


class BodyTooLarge(Exception):
    def __init__(self, size: int, *, declared: bool) -> None:
        super().__init__(size)
        self.size = size
        self.declared = declared


@dataclass(frozen=True)
class Answer:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    keep_alive: bool  # may the connection carry another request


def request_bytes(
    method: str, target: str, host: str, headers: Mapping[str, str], body: bytes | None
) -> bytes:
    """The request head (and body). A Host among `headers` (a signed one) replaces ours.
    Header values never hold a line break: a value that would is refused, so no header can
    be smuggled in."""
    lines = [f"{method} {target} HTTP/1.1"]
    if not any(name.lower() == "host" for name in headers):
        lines.append(f"Host: {host}")
    for name, value in headers.items():
        if any(c in name or c in value for c in "\r\n") or not name:
            raise ValueError("a header name or value holds a line break")
        lines.append(f"{name}: {value}")
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + body if body else head


class AnswerParser:
    """Feed it what the connection receives; `answer` is set once a whole answer is in.

    `cap` bounds the body; a declared length over it fails at once, before any body byte.
    """

    def __init__(self, cap: int, *, head_request: bool = False) -> None:
        self.cap = cap
        self.answer: Answer | None = None
        self._buffer = bytearray()
        self._head_request = head_request
        self._status = 0
        self._headers: tuple[tuple[str, str], ...] = ()
        self._keep_alive = True
        self._length: int | None = None  # bytes of body still due (framed by length)
        self._chunked = False
        self._chunk_left = -1  # -1: a chunk-size line is due next
        self._until_close = False
        self._body: list[bytes] = []
        self._size = 0
        self._in_head = True

    @property
    def started(self) -> bool:
        """Has any byte of an answer arrived (a request on a reused connection that the
        peer closed before answering may be sent again; one it began answering may not)?"""
        return bool(self._buffer) or not self._in_head or self.answer is not None

    def feed(self, data: bytes) -> None:
        if self.answer is not None:
            raise ProtocolError("bytes after the end of the answer")
        self._buffer += data
        if self._in_head and not self._read_head():
            return
        self._read_body()

    def end_of_stream(self) -> None:
        """The peer closed: it ends a body framed by the close, and is an error otherwise."""
        if self.answer is not None:
            return
        if self._until_close and not self._in_head:
            self._keep_alive = False
            self._finish()
            return
        raise ProtocolError("the connection closed before the answer was complete")

    # -- head -------------------------------------------------------------------------

    def _read_head(self) -> bool:
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > MAX_HEAD_BYTES:
                    raise ProtocolError(f"answer headers over {MAX_HEAD_BYTES} bytes")
                return False
            if end > MAX_HEAD_BYTES:
                raise ProtocolError(f"answer headers over {MAX_HEAD_BYTES} bytes")
            head = bytes(self._buffer[:end]).decode("latin-1")
            del self._buffer[: end + 4]
            status, version = self._status_line(head)
            if 100 <= status < 200:  # informational: the real answer follows
                continue
            self._start(status, version, head)
            return True

    @staticmethod
    def _status_line(head: str) -> tuple[int, str]:
        line = head.split("\r\n", 1)[0]
        parts = line.split(" ", 2)
        if len(parts) < 2 or parts[0] not in ("HTTP/1.1", "HTTP/1.0"):
            raise ProtocolError("the answer does not start with an HTTP/1.x status line")
        code = parts[1]
        if len(code) != 3 or not _digits(code) or code[0] == "0":
            raise ProtocolError("the status line has no 3-digit status code")
        return int(code), parts[0]

    def _start(self, status: int, version: str, head: str) -> None:
        headers: list[tuple[str, str]] = []
        for line in head.split("\r\n")[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise ProtocolError("a malformed header line")
            headers.append((name, value.strip()))
        self._status, self._headers, self._in_head = status, tuple(headers), False
        lowered = {}
        lengths = set()
        for name, value in headers:
            key = name.lower()
            if key == "content-length":
                lengths.add(value)
            lowered[key] = value.lower()
        connection = lowered.get("connection", "")
        self._keep_alive = (
            "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
        )
        if self._head_request or status in (204, 304):
            self._length = 0
        elif "transfer-encoding" in lowered:
            if lowered["transfer-encoding"] != "chunked":
                raise ProtocolError("a transfer coding other than chunked")
            self._chunked = True
        elif lengths:
            if len(lengths) > 1 or not _digits(next(iter(lengths))):
                raise ProtocolError("an unusable Content-Length")
            self._length = int(next(iter(lengths)))
            if self._length > self.cap:
                raise BodyTooLarge(self._length, declared=True)
        else:
            self._until_close = True

    # -- body -------------------------------------------------------------------------

    def _take(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > self.cap:
            raise BodyTooLarge(self._size, declared=False)
        self._body.append(data)

    def _read_body(self) -> None:
        if self._chunked:
            self._read_chunks()
        elif self._length is not None:
            if len(self._buffer) > self._length:
                raise ProtocolError("bytes after the end of the answer")
            if self._buffer:
                self._take(bytes(self._buffer))
                self._length -= len(self._buffer)
                self._buffer.clear()
            if self._length == 0:
                self._finish()
        elif self._buffer:  # until the close
            self._take(bytes(self._buffer))
            self._buffer.clear()

    def _read_chunks(self) -> None:
        buffer = self._buffer
        while True:
            if self._chunk_left == -1:
                end = buffer.find(_CRLF)
                if end < 0:
                    if len(buffer) > 1024:
                        raise ProtocolError("a chunk-size line over 1024 bytes")
                    return
                size_text = bytes(buffer[:end]).split(b";", 1)[0].strip()
                del buffer[: end + 2]
                # int() would also take "+", "0x", "_" and spaces; HTTP takes hex digits only.
                if not size_text or size_text.strip(_HEX_DIGITS):
                    raise ProtocolError("a malformed chunk size")
                size = int(size_text, 16)
                if size == 0:
                    self._chunk_left = -2  # trailers, then the end
                else:
                    self._chunk_left = size
            if self._chunk_left == -2:
                end = buffer.find(b"\r\n\r\n") if not buffer.startswith(_CRLF) else -2
                if end == -2:
                    del buffer[:2]
                elif end < 0:
                    if len(buffer) > MAX_HEAD_BYTES:
                        raise ProtocolError("chunked trailers over the head limit")
                    return
                else:
                    del buffer[: end + 4]
                if buffer:
                    raise ProtocolError("bytes after the end of the answer")
                self._finish()
                return
            if len(buffer) < self._chunk_left + 2:
                if len(buffer) > self._chunk_left:  # the data is in; the CRLF is due
                    return
                if buffer:
                    self._take(bytes(buffer))
                    self._chunk_left -= len(buffer)
                    buffer.clear()
                return
            if buffer[self._chunk_left : self._chunk_left + 2] != _CRLF:
                raise ProtocolError("a chunk not ended by CRLF")
            if self._chunk_left:
                self._take(bytes(buffer[: self._chunk_left]))
            del buffer[: self._chunk_left + 2]
            self._chunk_left = -1

    def _finish(self) -> None:
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        self.answer = Answer(self._status, self._headers, body, self._keep_alive)
