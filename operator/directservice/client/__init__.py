"""The reference client: calls to a DirectService's instances through cluster DNS alone.

It does what a model-serving SDK does, without the SDK's discovery calls: the instances
come from the SRV records CoreDNS serves for the operator's headless Service, calls are
balanced over them by smooth weighted round robin (equal weights, or the weights the
operator publishes on the EndpointSlices), and a failed call is retried on another
instance. Standard library only, and no import of the rest of the package: the folder can
be copied into a project as it is.

    from directservice.client import DirectClient

    client = DirectClient("mnist", "default", token=open("/etc/eas/token").read().strip())
    answer = client.predict({"inputs": [1, 2, 3]})
    print(answer.status, answer.instance, answer.body)
"""

from .balance import SmoothWeightedPicker, instance_weights
from .calls import AttemptFailure, CallFailed, DirectClient, Response
from .dnsclient import DnsClient, ResolverConfig, parse_resolv_conf, read_resolv_conf
from .errors import ClientError, DnsError, DnsFormatError, DnsNoAnswer, NoInstancesError
from .resolver import Instance, InstanceSource, Resolution, SrvResolver, resolve_srv, srv_name
from .weights import EndpointSliceWeights, KubeApi, WeightsSource, parse_weights

__all__ = [
    "AttemptFailure",
    "CallFailed",
    "ClientError",
    "DirectClient",
    "DnsClient",
    "DnsError",
    "DnsFormatError",
    "DnsNoAnswer",
    "EndpointSliceWeights",
    "Instance",
    "InstanceSource",
    "KubeApi",
    "NoInstancesError",
    "Resolution",
    "ResolverConfig",
    "Response",
    "SmoothWeightedPicker",
    "SrvResolver",
    "WeightsSource",
    "instance_weights",
    "parse_resolv_conf",
    "parse_weights",
    "read_resolv_conf",
    "resolve_srv",
    "srv_name",
]
