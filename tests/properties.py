"""Shared settings and strategies of the property tests (tests/unit/test_properties_*.py).

Every property test is bounded by BOUNDED, so the property files together stay within
seconds; the coverage-guided fuzzers (dev/fuzz) search for longer.
"""

from __future__ import annotations

import ipaddress
import json
import string
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

BOUNDED = settings(
    max_examples=100,
    deadline=None,  # the first examples pay for imports and caches
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    # A failure is shrunk, but neither explained nor searched for siblings: both can take
    # tens of seconds, for a report the shrunk example already gives.
    report_multiple_bugs=False,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)
# Markers that must never reach a dropped-entry label or reason: they sit in fields the
# parsers do not read, or nested inside the ones they do.
SECRET = "s3cr3t-Zq9"

# Values the entry parsers meet in real answers, odd ones included.
ADDRESSES = (
    "10.0.0.1",
    " 10.0.0.2 ",
    "10.255.255.254",
    "192.168.1.20",
    "172.16.0.5",
    "100.64.0.1",
    "fd00::1",
    "FD00:0:0:0:0:0:0:2",
    "fd12:3456::abcd",
    "127.0.0.1",
    "0.0.0.0",
    "8.8.8.8",
    "169.254.169.254",
    "224.0.0.1",
    "10.0.0.01",
    "::ffff:10.0.0.1",
    "::1",
    "fe80::1",
    "fe80::1%eth0",
    "fd00::1%1",
    "10.0.0.1:8080",
    "[fd00::1]:80",
    "http://10.0.0.3:81",
    "https://[fd00::3]:443/x",
    "",
    "   ",
    "localhost",
    "1e400",
)
# Text from a fixed alphabet: printable ASCII and characters that trip parsers (non-ASCII
# digits and spaces, line separators, a NUL, a lone surrogate). Hypothesis' full-Unicode text
# would cost seconds of set-up per fresh checkout.
ALPHABET = string.printable + "\u00a0\u2028\u200b\uff11\u0663\u00e9\u0130\x00\ud800\U0001f600"


def texts(max_size: int = 20) -> st.SearchStrategy[str]:
    return st.text(alphabet=st.sampled_from(ALPHABET), max_size=max_size)


huge_numbers = st.integers(min_value=10**300, max_value=10**400) | st.integers(
    max_value=-(10**300), min_value=-(10**400)
)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | huge_numbers
    | st.floats(allow_nan=True, allow_infinity=True)
    | texts()
    | st.sampled_from(ADDRESSES)
    | st.sampled_from(("80", " 8080 ", "0x50", "1e3", "65536", "-1", "NaN", "inf", "ready"))
)
json_keys = st.sampled_from(
    (
        "ip", "host", "address", "url", "port", "weight", "ready", "hostname", "scheme",
        "schema", "items", "endpoints", "host_endpoints", "data", "hosts", "list", "result",
    )
) | texts(8)  # fmt: skip
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(json_keys, inner, max_size=6),
    max_leaves=25,
)


def encode(document: Any) -> bytes:
    """JSON as a server would send it (Python's NaN and Infinity extensions included)."""
    return json.dumps(document).encode()


# Valid instances: allowed by the default allowedCIDRs, any port, the weights and readiness
# words the parsers accept. A small pool of addresses makes duplicates common.
V4_POOL = tuple(str(ipaddress.ip_address("10.0.0.1") + i) for i in range(6))
V6_POOL = ("fd00::1", "fd00::2", "fd00::a:1")
valid_ips = st.sampled_from(V4_POOL + V6_POOL) | st.ip_addresses(network="10.0.0.0/8").map(str)
valid_ports = st.sampled_from((80, 8080, 443)) | st.integers(1, 65535)
valid_weights = (
    st.none()
    | st.integers(0, 1000)
    | st.floats(0, 1e6, allow_nan=False)
    | st.integers(0, 1000).map(str)
)


@st.composite
def valid_entries(draw: st.DrawFn, *, with_ready: bool = False) -> dict[str, Any]:
    port = draw(valid_ports)
    entry: dict[str, Any] = {
        "ip": draw(valid_ips),
        "port": draw(st.sampled_from((port, str(port)))),
        "token": SECRET,  # a field no parser reads
    }
    weight = draw(valid_weights)
    if weight is not None:
        entry["weight"] = weight
    if with_ready:
        entry["ready"] = draw(st.sampled_from((True, False, "healthy", "down", 1, 0)))
    return entry


# Entries with at least one defect that must get them dropped, never published.
BAD_IPS = (
    "127.0.0.1", "8.8.8.8", "0.0.0.0", "224.0.0.1", "169.254.169.254", "10.0.0.01",
    "::ffff:10.0.0.1", "fe80::1%eth0", "::1", "not-an-ip", "", 42, None, 1.5, True,
    ["10.0.0.1"], {"v4": "10.0.0.1", "token": SECRET},
)  # fmt: skip
BAD_PORTS = (
    0, 65536, -1, 1.5, "http", "", None, True, "1e400", [80], {"n": 80, "token": SECRET},
)  # fmt: skip
BAD_WEIGHTS = (-1, "-5", "heavy", float("nan"), float("inf"), [1], {"w": SECRET})


@st.composite
def invalid_entries(draw: st.DrawFn, *, objects_only: bool = False) -> Any:
    base = draw(valid_entries())
    defect = draw(st.sampled_from(("ip", "port", "weight", "not-object")))
    if defect == "not-object" and not objects_only:
        return draw(st.sampled_from(("10.0.0.1", 7, None, [base["ip"], base["port"]], [base])))
    if defect == "weight":
        base["weight"] = draw(st.sampled_from(BAD_WEIGHTS))
    elif defect == "port":
        base["port"] = draw(st.sampled_from(BAD_PORTS))
    else:
        base["ip"] = draw(st.sampled_from(BAD_IPS))
    return base
