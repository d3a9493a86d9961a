"""KubeWriter and SecretReader against the real API server: every failure has its reason.

No mocks: conflicts, missing objects and invalid bodies are made on the API server itself;
"unreachable" is a closed loopback port and "untrusted" is the control plane's own TLS port
reached without its CA.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import urllib.error
import uuid
from collections.abc import Awaitable
from typing import Any, TypeVar

import pytest

from devenv.controlplane import ControlPlane
from devenv.procs import free_port
from directservice.api.names import Owner
from directservice.api.reasons import Reason
from directservice.core.model import (
    AddressFamily,
    DesiredSlice,
    DiscoveryError,
    EndpointState,
    ServiceShape,
    SliceContent,
    SliceKey,
)
from directservice.discovery.credentials import read_keys
from directservice.publish.apiclient import ApiEndpoint, ApiTransport
from directservice.publish.render import build_endpoint_slice, build_service
from directservice.publish.secrets import SecretReader
from directservice.publish.writer import KubeWriter, WriteError
from faultkit import missing

pytestmark = pytest.mark.integration

T = TypeVar("T")
SHAPE = ServiceShape(port_name="http", port=8080, app_protocol=None, owner_uid=None)


def run(aw: Awaitable[T]) -> T:
    async def main() -> T:
        return await asyncio.wait_for(aw, 60)  # a guard against a hang, not a timing claim

    return asyncio.run(main())


def fails(aw: Awaitable[Any]) -> WriteError:
    with pytest.raises(WriteError) as info:
        run(aw)
    return info.value


def owner_in(namespace: str, name: str = "web") -> Owner:
    return Owner(namespace, name, str(uuid.uuid4()))


def slice_body(owner: Owner, name: str, *ips: str) -> dict[str, Any]:
    content = SliceContent(
        key=SliceKey(AddressFamily.IPV4, 8080, None),
        port_name="http",
        endpoints=tuple((ip, EndpointState(ready=True, weight=100.0)) for ip in ips),
    )
    return build_endpoint_slice(owner, DesiredSlice(name, content))


def slice_path(namespace: str, name: str = "") -> str:
    base = f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices"
    return f"{base}/{name}" if name else base


def api_refusal(cp: ControlPlane, path: str, body: Any) -> str:
    """The message the API server itself gives for a POST of `body`."""
    with pytest.raises(urllib.error.HTTPError) as info:
        cp.request("POST", path, body)
    message: str = json.loads(info.value.read())["message"]
    return message


def test_replace_with_a_stale_resource_version_is_a_conflict(
    api_endpoint: ApiEndpoint, control_plane: ControlPlane, namespace: str
) -> None:
    writer, owner = KubeWriter(api_endpoint), owner_in(namespace)
    body = slice_body(owner, "web-v4-0", "10.0.0.1")
    stale = run(writer.create_slice(body))["metadata"]["resourceVersion"]
    theirs = control_plane.request("GET", slice_path(namespace, "web-v4-0"))
    theirs["metadata"]["labels"]["someone"] = "else"
    newer = control_plane.request("PUT", slice_path(namespace, "web-v4-0"), theirs)

    err = fails(writer.replace_slice(slice_body(owner, "web-v4-0", "10.0.0.2"), stale))

    assert (err.reason, err.status) == (Reason.PUBLISH_CONFLICT, 409)
    now = control_plane.request("GET", slice_path(namespace, "web-v4-0"))
    assert now["metadata"]["resourceVersion"] == newer["metadata"]["resourceVersion"]
    assert now["endpoints"][0]["addresses"] == ["10.0.0.1"]


def test_replacing_a_gone_slice_is_not_found_and_does_not_recreate_it(
    api_endpoint: ApiEndpoint, control_plane: ControlPlane, namespace: str
) -> None:
    writer, owner = KubeWriter(api_endpoint), owner_in(namespace)
    body = slice_body(owner, "web-v4-0", "10.0.0.1")
    version = run(writer.create_slice(body))["metadata"]["resourceVersion"]
    control_plane.request("DELETE", slice_path(namespace, "web-v4-0"))

    err = fails(writer.replace_slice(body, version))

    assert (err.reason, err.status) == (Reason.PUBLISH_NOT_FOUND, 404)
    assert missing(control_plane, slice_path(namespace, "web-v4-0"))


def test_patching_a_gone_service_is_not_found(
    api_endpoint: ApiEndpoint, control_plane: ControlPlane, namespace: str
) -> None:
    writer, owner = KubeWriter(api_endpoint), owner_in(namespace)
    run(writer.create_service(build_service(owner, SHAPE)))
    control_plane.request("DELETE", f"/api/v1/namespaces/{namespace}/services/web")

    err = fails(writer.patch_service(build_service(owner, SHAPE)))

    assert (err.reason, err.status) == (Reason.PUBLISH_NOT_FOUND, 404)


def test_deleting_what_is_already_gone_is_done(
    api_endpoint: ApiEndpoint, control_plane: ControlPlane, namespace: str
) -> None:
    writer, owner = KubeWriter(api_endpoint), owner_in(namespace)
    version = run(writer.create_slice(slice_body(owner, "web-v4-0", "10.0.0.1")))["metadata"][
        "resourceVersion"
    ]
    control_plane.request("DELETE", slice_path(namespace, "web-v4-0"))

    run(writer.delete_slice(namespace, "web-v4-0", version))  # no WriteError
    run(writer.delete_slice(namespace, "never-existed", "1"))


def test_delete_owned_removes_the_slices_when_the_service_is_already_gone(
    api_endpoint: ApiEndpoint, control_plane: ControlPlane, namespace: str
) -> None:
    writer, owner, other = KubeWriter(api_endpoint), owner_in(namespace), owner_in(namespace, "db")
    run(writer.create_slice(slice_body(owner, "web-v4-0", "10.0.0.1")))
    run(writer.create_slice(slice_body(owner, "web-v4-1", "10.0.0.2")))
    run(writer.create_slice(slice_body(other, "db-v4-0", "10.0.0.3")))

    run(writer.delete_owned(owner, service_is_ours=True))  # there is no Service: no error

    items = control_plane.request("GET", slice_path(namespace))["items"]
    assert [s["metadata"]["name"] for s in items] == ["db-v4-0"]


def test_an_invalid_slice_is_refused_with_the_api_servers_message(
    api_endpoint: ApiEndpoint, control_plane: ControlPlane, namespace: str
) -> None:
    body = slice_body(owner_in(namespace), "web-v4-0", "not-an-ip")
    expected = api_refusal(control_plane, slice_path(namespace), body)

    err = fails(KubeWriter(api_endpoint).create_slice(body))

    assert (err.reason, err.status) == (Reason.PUBLISH_INVALID, 422)
    assert "not-an-ip" in expected
    assert expected[:400] in err.message


def test_an_invalid_service_is_refused_with_the_api_servers_message(
    api_endpoint: ApiEndpoint, control_plane: ControlPlane, namespace: str
) -> None:
    shape = ServiceShape(port_name="http", port=70000, app_protocol=None, owner_uid=None)
    body = build_service(owner_in(namespace), shape)
    expected = api_refusal(control_plane, f"/api/v1/namespaces/{namespace}/services", body)

    err = fails(KubeWriter(api_endpoint).create_service(body))

    assert (err.reason, err.status) == (Reason.PUBLISH_INVALID, 422)
    assert expected[:400] in err.message


WRITES = ["create_slice", "replace_slice", "delete_slice", "create_service", "patch_service",
          "patch_status", "delete_owned"]  # fmt: skip


def attempt(writer: KubeWriter, verb: str, owner: Owner) -> Awaitable[Any]:
    body = slice_body(owner, "web-v4-0", "10.0.0.1")
    calls: dict[str, Any] = {
        "create_slice": lambda: writer.create_slice(body),
        "replace_slice": lambda: writer.replace_slice(body, "1"),
        "delete_slice": lambda: writer.delete_slice(owner.namespace, "web-v4-0", "1"),
        "create_service": lambda: writer.create_service(build_service(owner, SHAPE)),
        "patch_service": lambda: writer.patch_service(build_service(owner, SHAPE)),
        "patch_status": lambda: writer.patch_status(owner, {"provider": "static"}),
        "delete_owned": lambda: writer.delete_owned(owner, service_is_ours=True),
    }
    result: Awaitable[Any] = calls[verb]()
    return result


@pytest.mark.parametrize("verb", WRITES)
def test_a_closed_port_is_publish_unavailable(verb: str) -> None:
    nobody = ApiEndpoint(server=f"http://127.0.0.1:{free_port()}")  # nobody listens there
    err = fails(attempt(KubeWriter(nobody), verb, owner_in("default")))
    assert err.reason == Reason.PUBLISH_UNAVAILABLE, err.message
    assert err.status is None


@pytest.mark.parametrize("verb", ["create_slice", "create_service"])
def test_an_untrusted_certificate_is_publish_unavailable(
    control_plane: ControlPlane, namespace: str, verb: str
) -> None:
    # The system's CAs only: they never signed the test API server.
    untrusted = dataclasses.replace(control_plane.api_endpoint(), ssl_context=None)
    err = fails(attempt(KubeWriter(untrusted), verb, owner_in(namespace)))
    assert err.reason == Reason.PUBLISH_UNAVAILABLE, err.message
    assert missing(control_plane, slice_path(namespace, "web-v4-0"))  # nothing got through
    assert missing(control_plane, f"/api/v1/namespaces/{namespace}/services/web")


BINARY = b"\xff\xfe\x00TOPSECRET\x80\xc3"


def test_secret_reader_decodes_only_the_keys_asked_for(
    api_endpoint: ApiEndpoint, control_plane: ControlPlane, namespace: str
) -> None:
    data = {"token": b"hello-token", "keystore": BINARY}
    control_plane.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "creds", "namespace": namespace},
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
        },
    )

    async def both() -> tuple[dict[str, str], DiscoveryError]:
        reader = SecretReader(ApiTransport(api_endpoint))
        text = await read_keys(reader, namespace, "creds", ("token",))
        with pytest.raises(DiscoveryError) as info:
            await read_keys(reader, namespace, "creds", ("keystore",))
        return text, info.value

    text, err = run(both())

    assert text == {"token": "hello-token"}
    assert err.reason == Reason.INVALID_SECRET_VALUE
    assert f"{namespace}/creds" in err.message and "keystore" in err.message
    shown = f"{err.message} {err} {err!r}"
    for leak in ("TOPSECRET", base64.b64encode(BINARY).decode(), repr(BINARY), "\\xff", "ÿ"):
        assert leak not in shown


def test_secret_reader_reports_a_missing_secret(api_endpoint: ApiEndpoint, namespace: str) -> None:
    async def read() -> None:
        await read_keys(SecretReader(ApiTransport(api_endpoint)), namespace, "absent", ("token",))

    with pytest.raises(DiscoveryError) as info:
        run(read())
    assert info.value.reason == Reason.SECRET_NOT_FOUND
    assert f"{namespace}/absent" in info.value.message
