"""Call the instances that 01-pai-eas.yaml publishes (Service default/mnist) from a pod.

The reference client finds them in cluster DNS, balances the calls over them and retries a
failed call on another instance; it uses the standard library alone, so the folder
operator/directservice/client can be copied into any image. Run it in a pod:

    python examples/client.py --token-file /etc/eas/token
    python examples/client.py --service scorer --namespace ml --weights --count 10

--weights reads the weights the operator publishes (the pod's service account needs get and
list on endpointslices); without it every instance weighs the same.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from directservice.client import CallFailed, DirectClient, EndpointSliceWeights, SrvResolver


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--service", default="mnist")
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--token-file", type=Path)
    parser.add_argument("--weights", action="store_true")
    parser.add_argument("--count", type=int, default=5)
    # PAI-EAS routes by the EAS service name, which need not be the Service's name.
    parser.add_argument("--path", default="/api/predict/mnist_saved_model_example")
    args = parser.parse_args()

    client = DirectClient(
        args.service,
        args.namespace,
        token=args.token_file.read_text().strip() if args.token_file else None,
        weights=EndpointSliceWeights(args.service, args.namespace) if args.weights else None,
        path=args.path,
    )
    print("instances:", ", ".join(str(i) for i in client.instances()))

    for number in range(1, args.count + 1):
        try:
            answer = client.predict({"instances": [[0.0] * 784]}, timeout=5.0)
        except CallFailed as err:
            print(f"call {number} failed everywhere:", err)
            continue
        body = answer.body[:80].decode(errors="replace")
        print(
            f"call {number}: {answer.status} from {answer.instance} (try {answer.attempts}) {body}"
        )

    if isinstance(client.resolver, SrvResolver) and client.resolver.stale:
        print("DNS is failing; calls use the last good answer:", client.resolver.last_error)


if __name__ == "__main__":
    main()
