"""The fuzz targets: bytes in, nothing out; any exception but a documented one is a crash.

Each provider target feeds the bytes as the body of a 200 answer through the provider's
real discover() (decode_json, the shape checks, extraction, per-entry validation, the
last-known-good rule): a DiscoveryError is a documented outcome, anything else (an
InternalError from the providers' error wrapper included) is a bug. An accepted answer must
also satisfy harness.check_discovery. The static and spec targets decode the bytes as JSON
(the API server hands the operator parsed JSON), ignore input that is not JSON, and accept
SpecError and DiscoveryError.

No fuzzer is imported here: the unit tier replays the corpus through the same functions.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from directservice.api.spec import DEFAULT_ALLOWED_CIDRS, SpecError
from directservice.core.model import DiscoveryError
from directservice.discovery import parse_spec, provider_for
from directservice.discovery.http11 import Answer, AnswerParser, BodyTooLarge, ProtocolError
from fuzz.harness import check_discovery, discover, provider

Target = Callable[[bytes], None]
BASE = "http://127.0.0.1:8080"  # never contacted: CannedHttp answers every call

PAI_EAS = provider({"provider": {"paiEas": {"endpoint": BASE, "serviceName": "svc"}}})
HTTP_JSON = (
    provider({"provider": {"httpJson": {"url": f"{BASE}/hosts"}}}),  # a bare list, ip/port
    provider(
        {
            "provider": {
                "httpJson": {
                    "url": f"{BASE}/hosts",
                    "listPath": "data.hosts",
                    "fields": {
                        "ip": "addr.v4",
                        "port": "p",
                        "weight": "w",
                        "ready": "up",
                        "hostname": "name",
                        "scheme": "proto",
                    },
                }
            }
        }
    ),
)
_MODEL_ARTS = {
    "endpoint": BASE,
    "projectId": "p1",
    "serviceId": "s1",
    "credentialsSecretRef": {"name": "creds", "tokenKey": "token"},
}
MODEL_ARTS = (
    provider({"provider": {"modelArts": _MODEL_ARTS}}),  # every field guessed
    provider(
        {
            "provider": {
                "modelArts": {
                    **_MODEL_ARTS,
                    "fields": {"list": "result.hosts", "ip": "address.ip", "port": "address.port"},
                }
            }
        }
    ),
)


def _discover_or_refuse(target: Any, data: bytes) -> None:
    try:
        result = discover(target, data)
    except DiscoveryError:
        return
    check_discovery(result, DEFAULT_ALLOWED_CIDRS)


def pai_eas(data: bytes) -> None:
    _discover_or_refuse(PAI_EAS, data)


def http_json(data: bytes) -> None:
    for target in HTTP_JSON:
        _discover_or_refuse(target, data)


def modelarts(data: bytes) -> None:
    for target in MODEL_ARTS:
        _discover_or_refuse(target, data)


def _json(data: bytes) -> tuple[bool, Any]:
    """(True, document) for JSON input; the decoder's own limits are not under test."""
    try:
        return True, json.loads(data)
    except (ValueError, RecursionError):
        return False, None


def static(data: bytes) -> None:
    """The bytes as spec.provider.static, then one poll of the static provider."""
    ok, section = _json(data)
    if not ok:
        return
    try:
        spec = parse_spec({"provider": {"static": section}})
    except SpecError:
        return
    _discover_or_refuse(provider_for(spec), b"")


def spec(data: bytes) -> None:
    """The bytes as a whole DirectService spec: parse it, then build its provider (which must
    never fail for a spec the parser accepted)."""
    ok, document = _json(data)
    if not ok:
        return
    try:
        parsed = parse_spec(document)
    except SpecError:
        return
    provider_for(parsed).close()
    parsed.provider.discovery_urls()


def http_answer(data: bytes) -> None:
    """The bytes as what a discovery connection receives, then its close: only the parser's
    own refusals may come out, an answer keeps within the cap, and the bytes split at any
    point (here: one the input picks) give the same outcome as in one piece."""
    cut = data[0] % (len(data) + 1) if data else 0
    whole, split = _answer_of((data,)), _answer_of((data[:cut], data[cut:]))
    assert whole == split, "the outcome depends on how the bytes were split"
    if isinstance(whole, Answer):
        assert len(whole.body) <= HTTP_CAP and 200 <= whole.status <= 999


HTTP_CAP = 4096


def _answer_of(pieces: tuple[bytes, ...]) -> Answer | str:
    parser = AnswerParser(HTTP_CAP)
    try:
        for piece in pieces:
            if piece:
                parser.feed(piece)
        parser.end_of_stream()
    except (ProtocolError, BodyTooLarge) as exc:
        return type(exc).__name__
    assert parser.answer is not None
    return parser.answer


TARGETS: dict[str, Target] = {
    "pai_eas": pai_eas,
    "http_json": http_json,
    "modelarts": modelarts,
    "static": static,
    "spec": spec,
    "http_answer": http_answer,
}
