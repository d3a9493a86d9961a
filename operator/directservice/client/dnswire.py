"""DNS messages on the wire (RFC 1035, SRV from RFC 2782): build a query, read an answer.

Parsing is bounded and defensive: every read is checked against the packet's end, a
compression pointer must point strictly before the place it was reached from (so a chain of
pointers always ends), names stay within 255 octets, and counts the packet cannot hold are
refused up front. Anything else raises DnsFormatError; nothing loops or reads past the end.
"""

from __future__ import annotations

import re
import socket
import struct
from dataclasses import dataclass

from .errors import DnsFormatError

TYPE_A = 1
TYPE_CNAME = 5
TYPE_AAAA = 28
TYPE_SRV = 33
CLASS_IN = 1

FLAG_RESPONSE = 0x8000
FLAG_TRUNCATED = 0x0200
FLAG_RECURSION_DESIRED = 0x0100
RCODE_MASK = 0x000F
RCODE_NOERROR = 0
RCODE_SERVFAIL = 2
RCODE_NXDOMAIN = 3

HEADER = struct.Struct("!HHHHHH")
MAX_NAME_OCTETS = 255
MAX_LABEL_OCTETS = 63
_QUESTION_MIN = 5  # root name + type + class
_RECORD_MIN = 11  # root name + type + class + ttl + rdlength
_FIXED_RR = struct.Struct("!HHIH")
_SRV_FIXED = struct.Struct("!HHH")
_QUESTION_FIXED = struct.Struct("!HH")
# Printable ASCII but the dot and the backslash: shown as it is.
_PLAIN_LABEL = re.compile(rb"[\x21-\x2d\x2f-\x5b\x5d-\x7e]*")


@dataclass(frozen=True)
class Question:
    name: str
    rtype: int
    rclass: int = CLASS_IN


@dataclass(frozen=True)
class SrvData:
    priority: int
    weight: int
    port: int
    target: str


@dataclass(frozen=True)
class Record:
    """One resource record. `value` is the address of an A/AAAA record, the SrvData of an
    SRV record, the target of a CNAME, and None for any other type (see `rdata`)."""

    name: str
    rtype: int
    rclass: int
    ttl: int
    rdata: bytes
    value: str | SrvData | None


@dataclass(frozen=True)
class Message:
    id: int
    flags: int
    questions: tuple[Question, ...]
    answers: tuple[Record, ...]
    authority: tuple[Record, ...]
    additional: tuple[Record, ...]

    @property
    def is_response(self) -> bool:
        return bool(self.flags & FLAG_RESPONSE)

    @property
    def truncated(self) -> bool:
        return bool(self.flags & FLAG_TRUNCATED)

    @property
    def rcode(self) -> int:
        return self.flags & RCODE_MASK


def same_name(a: str, b: str) -> bool:
    """DNS names compare case-insensitively, with or without the root's trailing dot."""
    return a.rstrip(".").lower() == b.rstrip(".").lower()


# -- encoding -----------------------------------------------------------------------------


def encode_name(name: str) -> bytes:
    """A name in wire form; relative and absolute names encode alike (always from the root)."""
    text = name.rstrip(".") if name != "." else ""
    out = bytearray()
    for label in text.split(".") if text else []:
        try:
            raw = label.encode("ascii")
        except UnicodeEncodeError as err:
            raise ValueError(f"DNS name {name!r} is not ASCII") from err
        if not raw or len(raw) > MAX_LABEL_OCTETS:
            raise ValueError(f"DNS name {name!r} has a label of {len(raw)} octets (1 to 63)")
        out += bytes([len(raw)]) + raw
    out += b"\x00"
    if len(out) > MAX_NAME_OCTETS:
        raise ValueError(f"DNS name {name!r} is longer than {MAX_NAME_OCTETS} octets")
    return bytes(out)


def encode_query(name: str, rtype: int, query_id: int, *, recursion: bool = True) -> bytes:
    """A standard query for one (name, type) in class IN."""
    flags = FLAG_RECURSION_DESIRED if recursion else 0
    header = HEADER.pack(query_id & 0xFFFF, flags, 1, 0, 0, 0)
    return header + encode_name(name) + struct.pack("!HH", rtype, CLASS_IN)


# -- decoding -----------------------------------------------------------------------------


def decode_header(packet: bytes) -> tuple[int, int]:
    """(id, flags) alone: enough to see a truncated answer without parsing its sections."""
    if len(packet) < HEADER.size:
        raise DnsFormatError(f"DNS packet of {len(packet)} octets is shorter than its header")
    query_id, flags = struct.unpack_from("!HH", packet)
    return query_id, flags


def decode_message(packet: bytes) -> Message:
    query_id, flags = decode_header(packet)
    _, _, qdcount, ancount, nscount, arcount = HEADER.unpack_from(packet)
    least = qdcount * _QUESTION_MIN + (ancount + nscount + arcount) * _RECORD_MIN
    if HEADER.size + least > len(packet):
        raise DnsFormatError(
            f"DNS packet of {len(packet)} octets cannot hold the {qdcount} questions and "
            f"{ancount + nscount + arcount} records its header counts"
        )
    offset = HEADER.size
    questions = []
    for _ in range(qdcount):
        name, offset = read_name(packet, offset)
        rtype, rclass = _unpack(_QUESTION_FIXED, packet, offset, "question")
        offset += _QUESTION_FIXED.size
        questions.append(Question(name, rtype, rclass))
    sections: list[tuple[Record, ...]] = []
    for count in (ancount, nscount, arcount):
        records = []
        for _ in range(count):
            record, offset = _read_record(packet, offset)
            records.append(record)
        sections.append(tuple(records))
    return Message(query_id, flags, tuple(questions), *sections)


def read_name(packet: bytes, offset: int, limit: int | None = None) -> tuple[str, int]:
    """The name at `offset` and the offset just after it (after its first pointer, if any).
    No octet at or beyond `limit` (default: the packet's end) is read."""
    end = len(packet) if limit is None else min(limit, len(packet))
    labels: list[str] = []
    octets = 1  # the root label
    position = offset
    floor = offset  # each pointer must point before this, so every chain ends
    after: int | None = None
    while True:
        if position >= end:
            raise DnsFormatError(f"name at offset {offset} runs past the end of its data")
        length = packet[position]
        kind = length & 0xC0
        if kind == 0xC0:
            if position + 1 >= end:
                raise DnsFormatError(f"name at offset {offset}: pointer cut off by the end")
            target = ((length & 0x3F) << 8) | packet[position + 1]
            if target >= floor:
                raise DnsFormatError(
                    f"name at offset {offset}: compression pointer to {target} does not point "
                    f"backwards (from {position})"
                )
            if after is None:
                after = position + 2
            floor = position = target
            continue
        if kind != 0:
            raise DnsFormatError(f"name at offset {offset}: reserved label type {kind:#x}")
        if length == 0:
            return ".".join(labels), position + 1 if after is None else after
        octets += length + 1
        if octets > MAX_NAME_OCTETS:
            raise DnsFormatError(f"name at offset {offset} is longer than {MAX_NAME_OCTETS}")
        if position + 1 + length > end:
            raise DnsFormatError(f"name at offset {offset}: label cut off by the end")
        labels.append(_label_text(packet[position + 1 : position + 1 + length]))
        position += 1 + length


def _label_text(label: bytes) -> str:
    """A label in presentation form: dots, backslashes and unprintable octets escaped."""
    if _PLAIN_LABEL.fullmatch(label):
        return label.decode("ascii")
    parts = []
    for octet in label:
        char = chr(octet)
        if char in ".\\":
            parts.append("\\" + char)
        elif 0x21 <= octet <= 0x7E:
            parts.append(char)
        else:
            parts.append(f"\\{octet:03d}")
    return "".join(parts)


def _unpack(shape: struct.Struct, packet: bytes, offset: int, what: str) -> tuple[int, ...]:
    if offset + shape.size > len(packet):
        raise DnsFormatError(f"{what} at offset {offset} cut off by the end of the packet")
    return shape.unpack_from(packet, offset)


def _read_record(packet: bytes, offset: int) -> tuple[Record, int]:
    name, offset = read_name(packet, offset)
    rtype, rclass, ttl, rdlength = _unpack(_FIXED_RR, packet, offset, "record")
    start = offset + _FIXED_RR.size
    end = start + rdlength
    if end > len(packet):
        raise DnsFormatError(f"record {name!r}: {rdlength} octets of data run past the end")
    # RFC 2181 section 8: a TTL with the top bit set counts as zero.
    ttl = 0 if ttl & 0x80000000 else ttl
    value = _read_value(packet, rtype, start, end, name)
    return Record(name, rtype, rclass, ttl, packet[start:end], value), end


def _read_value(
    packet: bytes, rtype: int, start: int, end: int, owner: str
) -> str | SrvData | None:
    rdata = packet[start:end]
    if rtype == TYPE_A:
        if len(rdata) != 4:
            raise DnsFormatError(f"A record {owner!r} has {len(rdata)} octets of data, not 4")
        return socket.inet_ntop(socket.AF_INET, rdata)
    if rtype == TYPE_AAAA:
        if len(rdata) != 16:
            raise DnsFormatError(f"AAAA record {owner!r} has {len(rdata)} octets, not 16")
        return socket.inet_ntop(socket.AF_INET6, rdata)
    if rtype == TYPE_SRV:
        if len(rdata) < _SRV_FIXED.size + 1:
            raise DnsFormatError(f"SRV record {owner!r} has only {len(rdata)} octets of data")
        priority, weight, port = _SRV_FIXED.unpack_from(packet, start)
        target, _ = _read_name_within(packet, start + _SRV_FIXED.size, end, owner)
        return SrvData(priority, weight, port, target)
    if rtype == TYPE_CNAME:
        target, _ = _read_name_within(packet, start, end, owner)
        return target
    return None


def _read_name_within(packet: bytes, offset: int, end: int, owner: str) -> tuple[str, int]:
    """A name that must end exactly where its record's data ends."""
    name, after = read_name(packet, offset, end)
    if after != end:
        raise DnsFormatError(f"record {owner!r}: its name ends at {after}, its data at {end}")
    return name, after
