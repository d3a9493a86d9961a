"""What the client raises: one base class, so a caller can catch everything it does."""

from __future__ import annotations


class ClientError(Exception):
    """Base of every error the reference client raises."""


class DnsError(ClientError):
    """A DNS lookup failed: no answer in time, a server failure, or an answer we reject."""


class DnsFormatError(DnsError):
    """A DNS packet is malformed (truncated, a bad compression pointer, a field too long)."""


class NoInstancesError(ClientError):
    """There is no instance to call: nothing resolved yet, or every one is drained."""


class DnsNoAnswer(DnsError):
    """The name exists nowhere in the search list, or holds no record of the type asked."""
