"""The operator's bounds on what a DirectService can make it do: allowed discovery hosts per
provider kind, the flags that set them, and published addresses it never writes (metadata
addresses, the cluster's own networks). The transport's address checks: test_ssrf.py."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
from typing import Any

import pytest

from directservice.api.names import Owner
from directservice.api.reasons import Reason
from directservice.api.spec import DEFAULT_ALLOWED_CIDRS
from directservice.cli import EXIT_ERROR, _operator_config, build_parser, main
from directservice.controller.config import DEFAULT_ALLOWED_HOSTS, HostRule, OperatorConfig
from directservice.controller.pipeline import Pipeline
from directservice.controller.reconciler import Shared
from directservice.core.entries import (
    METADATA_ADDRESSES,
    DeniedNetwork,
    EntryError,
    drop_denied,
    parse_ip,
)
from directservice.core.model import Discovery, DiscoveryError, DroppedEntry, Instance
from directservice.discovery import parse_spec, provider_for, registry
from directservice.discovery.addresses import AddressPolicy
from directservice.discovery.extract import parse_entries
from directservice.discovery.fields import FieldPaths
from directservice.discovery.httpclient import HttpClient
from support import REPO

pytestmark = pytest.mark.unit

PAI = "http://pai-eas-vpc.cn-shanghai.aliyuncs.com"
PAI_UID = "http://1234567890.vpc.cn-hangzhou.pai-eas.aliyuncs.com"
MODELARTS = "https://modelarts.cn-north-4.myhuaweicloud.com"
IAM = "https://iam.cn-north-4.myhuaweicloud.com"
net = ipaddress.ip_network


# -- allowed hosts ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "url", "allowed"),
    [
        ("paiEas", PAI, True), ("paiEas", PAI_UID, True), ("paiEas", MODELARTS, False),
        ("modelArts", MODELARTS, True), ("modelArts", IAM, True), ("modelArts", PAI, False),
        ("httpJson", PAI, False), ("httpJson", MODELARTS, False),
        ("httpJson", "http://discovery.example.com", False),
        ("paiEas", "http://oss-cn-shanghai.aliyuncs.com", False),  # aliyuncs, but not EAS
        ("paiEas", "http://pai-eas-vpc.cn-shanghai.aliyuncs.com.example.com", False),
        ("paiEas", "http://127.0.0.1:8080", False),
        ("paiEas", "http://PAI-EAS-VPC.CN-SHANGHAI.ALIYUNCS.COM", True),
    ],
)  # fmt: skip
def test_default_hosts_are_each_providers_own(kind: str, url: str, allowed: bool) -> None:
    assert OperatorConfig().host_allowed(kind, url) is allowed


def test_no_rule_allows_nothing_and_any_needs_an_explicit_star() -> None:
    assert not OperatorConfig(allowed_hosts=()).host_allowed("httpJson", "http://a.example")
    anything = OperatorConfig(allowed_hosts=(HostRule("*"),))
    assert anything.host_allowed("httpJson", "http://a.example")
    assert anything.host_allowed("paiEas", "http://10.0.0.1:80")


def test_a_rule_without_kind_is_for_every_kind() -> None:
    config = OperatorConfig(
        allowed_hosts=(HostRule("eas.internal"), HostRule("x.test", "httpJson"))
    )
    assert config.host_allowed("paiEas", "http://eas.internal/")
    assert config.host_allowed("modelArts", "https://eas.internal/")
    assert config.host_allowed("httpJson", "http://x.test/")
    assert not config.host_allowed("paiEas", "http://x.test/")


def test_the_flags_default_to_the_provider_domains_and_replace_them_when_given() -> None:
    defaults = _operator_config(build_parser().parse_args(["run"]))
    assert defaults.allowed_hosts == DEFAULT_ALLOWED_HOSTS
    assert (defaults.discovery_cidrs, defaults.denied_networks()) == ((), ())
    args = build_parser().parse_args(
        ["run", "--allowed-host=httpJson=*.example.com", "--allowed-host=10.1.2.3",
         "--allow-discovery-cidr=127.0.0.0/8", "--service-cidr=10.96.0.0/12",
         "--service-cidr=fd00:10:96::/108", "--pod-cidr=10.244.0.0/16",
         "--denied-cidr=192.168.7.0/24"]
    )  # fmt: skip
    config = _operator_config(args)
    assert config.allowed_hosts == (HostRule("*.example.com", "httpJson"), HostRule("10.1.2.3"))
    assert config.discovery_cidrs == (net("127.0.0.0/8"),)
    assert [(str(d.network), d.what) for d in config.denied_networks()] == [
        ("10.96.0.0/12", "the cluster's Service network"),
        ("fd00:10:96::/108", "the cluster's Service network"),
        ("10.244.0.0/16", "the cluster's pod network"),
        ("192.168.7.0/24", "a network the operator denies"),
    ]


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--allowed-host=paiEaz=*.aliyuncs.com", "'paiEaz' is no provider"),
        ("--allowed-host=", "expected [PROVIDER=]HOST_GLOB"),
        ("--service-cidr=10.96.0.1/12", "has host bits set"),
        ("--allow-discovery-cidr=loopback", "does not appear to be an IPv4 or IPv6 network"),
    ],
)
def test_a_bad_flag_is_one_line_before_anything_starts(
    flag: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", flag]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_the_chart_schema_knows_exactly_the_provider_kinds() -> None:
    schema = json.loads((REPO / "charts/directservice-operator/values.schema.json").read_text())
    pattern = schema["properties"]["allowedDiscoveryHosts"]["items"]["pattern"]
    found = re.match(r"\^\(\(([A-Za-z|]+)\)=\)\?", pattern)
    assert found is not None, pattern
    assert sorted(found.group(1).split("|")) == sorted(registry.kinds())


# -- published addresses ------------------------------------------------------------------


def test_no_default_allowed_network_holds_an_ipv4_metadata_address() -> None:
    """100.64.0.0/10 (holding 100.100.100.200) is out; the IPv6 metadata addresses sit in
    fc00::/7, which is why entries refuse them by address (below)."""
    v4 = [a for a in METADATA_ADDRESSES if a.version == 4]
    assert ipaddress.ip_address("100.100.100.200") in v4
    assert not any(a in n for a in v4 for n in DEFAULT_ALLOWED_CIDRS if n.version == 4)


@pytest.mark.parametrize("ip", sorted(str(a) for a in METADATA_ADDRESSES))
def test_metadata_addresses_are_never_published_whatever_allowedCIDRs_say(ip: str) -> None:
    with pytest.raises(EntryError, match=f"address {ip} is (link-local|a cloud metadata service)"):
        parse_ip(ip)
    everything = (net("0.0.0.0/0"), net("::/0"))
    items = [{"ip": ip, "port": 80}, {"ip": "10.0.0.1", "port": 80}]
    result = parse_entries(items, FieldPaths(ip="ip", port="port"), everything, guess=False)
    assert result.instances == (Instance("10.0.0.1", 80),)
    assert [d.entry for d in result.dropped] == [f"{ip}:80"]


SERVICES = DeniedNetwork(net("10.96.0.0/12"), "the cluster's Service network")
PODS = DeniedNetwork(net("fd00:10:244::/56"), "the cluster's pod network")


def test_instances_in_denied_networks_join_the_dropped_entries() -> None:
    earlier = DroppedEntry("127.0.0.1:80", "address 127.0.0.1 is loopback")
    answer = Discovery(
        (Instance("10.0.0.1", 80), Instance("10.96.0.10", 53), Instance("fd00:10:244::5", 80)),
        (earlier,),
    )
    result = drop_denied(answer, (SERVICES, PODS))
    assert result.instances == (Instance("10.0.0.1", 80),)
    assert result.dropped == (
        earlier,
        DroppedEntry(
            "10.96.0.10:53", "address 10.96.0.10 is in the cluster's Service network 10.96.0.0/12"
        ),
        DroppedEntry(
            "fd00:10:244::5:80",
            "address fd00:10:244::5 is in the cluster's pod network fd00:10:244::/56",
        ),
    )
    assert drop_denied(result, (SERVICES, PODS)) is result  # nothing more to drop
    assert drop_denied(answer, ()) is answer


def test_an_answer_left_with_nothing_to_publish_is_a_failed_poll() -> None:
    with pytest.raises(DiscoveryError) as caught:
        drop_denied(Discovery((Instance("10.96.0.1", 443),)), (SERVICES,))
    assert caught.value.reason == Reason.NO_VALID_ENTRIES
    with pytest.raises(DiscoveryError) as zero:
        answer = Discovery((Instance("10.0.0.1", 80, weight=0), Instance("10.96.0.2", 80)))
        drop_denied(answer, (SERVICES,))
    assert zero.value.reason == Reason.ALL_WEIGHTS_ZERO


# -- the pipeline applies them ------------------------------------------------------------


def pipeline_with(config: OperatorConfig, http: HttpClient) -> Pipeline:
    """A Pipeline with only what its discovery step uses: the config and the HTTP client."""
    shared = Shared(writer=None, http=http, view=None, config=config)  # type: ignore[arg-type]
    return Pipeline(Owner("ns", "bounds", "uid"), shared, None, None, None)  # type: ignore[arg-type]


async def discover(config: OperatorConfig, spec: dict[str, Any]) -> Discovery:
    """One Pipeline._discover with `config`: the step between a spec and the guard."""
    parsed = parse_spec(spec)
    http = HttpClient()
    pipeline = pipeline_with(config, http)
    pipeline.provider = provider_for(parsed)
    try:
        return await pipeline._discover(parsed)
    finally:
        await http.close()


def http_json(url: str) -> dict[str, Any]:
    return {"provider": {"httpJson": {"url": url}}}


def test_the_pipeline_refuses_a_host_of_another_provider_and_shows_no_query() -> None:
    with pytest.raises(DiscoveryError) as caught:
        asyncio.run(discover(OperatorConfig(), http_json(f"{PAI}/api?token=s3cr3t")))
    assert caught.value.reason == Reason.HOST_NOT_ALLOWED
    assert (
        caught.value.message == f"{PAI}/api is not among the operator's allowed hosts for httpJson"
    )


def test_the_pipeline_connects_only_where_the_operator_allows() -> None:
    """An allowed host name is not enough: 127.0.0.1 needs --allow-discovery-cidr too."""
    hosts = (HostRule("127.0.0.1"),)
    connections: list[int] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n[]")
        await writer.drain()
        writer.close()

    async def scenario() -> list[str]:
        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        reasons = []
        try:
            for config in (
                OperatorConfig(allowed_hosts=hosts),
                OperatorConfig(allowed_hosts=hosts, discovery_cidrs=(net("127.0.0.0/8"),)),
            ):
                try:
                    await discover(config, http_json(url))
                except DiscoveryError as exc:
                    reasons.append(exc.reason)
                reasons.append(f"{len(connections)} connections")
        finally:
            server.close()
            await server.wait_closed()
        return reasons

    # Refused without a connection; then connected, and the empty list is the next check.
    assert asyncio.run(scenario()) == [
        Reason.ADDRESS_NOT_ALLOWED, "0 connections", Reason.EMPTY_LIST, "1 connections",
    ]  # fmt: skip


def test_the_pipeline_drops_what_falls_in_the_cluster_networks() -> None:
    spec = {
        "provider": {"static": {"instances": [
            {"ip": "10.96.0.10", "port": 53}, {"ip": "10.20.0.1", "port": 80},
        ]}},
    }  # fmt: skip
    config = OperatorConfig(service_cidrs=(net("10.96.0.0/12"),))
    result = asyncio.run(discover(config, spec))
    assert result.instances == (Instance("10.20.0.1", 80),)
    assert [d.entry for d in result.dropped] == ["10.96.0.10:53"]


def test_the_pipeline_hands_providers_the_restricted_client() -> None:
    seen: list[HttpClient] = []
    parent = HttpClient()
    policy = AddressPolicy((net("127.0.0.0/8"),))

    class Recording:
        async def discover(self, http: HttpClient) -> Discovery:
            seen.append(http)
            return Discovery((Instance("10.0.0.1", 80),))

    pipeline = pipeline_with(OperatorConfig(discovery_cidrs=policy.allowed), parent)
    pipeline.provider = Recording()  # type: ignore[assignment]
    spec = parse_spec({"provider": {"static": {"instances": [{"ip": "10.0.0.1", "port": 80}]}}})
    asyncio.run(pipeline._discover(spec))
    assert seen == [parent.restricted(policy)]
    assert seen[0].addresses == policy
