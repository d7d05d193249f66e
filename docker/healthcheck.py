"""The images' HEALTHCHECK: asks the server's gRPC health service, exits 0 when SERVING.

Installed as /usr/local/bin/mozart-healthcheck. The address is MOZART_HEALTHCHECK_ADDRESS,
else 127.0.0.1:MOZART_PORT (8001); MOZART_HEALTHCHECK_SERVICE names a service ("" is the
whole server, "liveness" answers SERVING while the process is up). Plaintext only: with
TLS on, point the orchestrator's probe at the server instead (k8s/base/deployment.yaml).
"""

from __future__ import annotations

import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def main() -> int:
    address = os.environ.get(
        "MOZART_HEALTHCHECK_ADDRESS", f"127.0.0.1:{os.environ.get('MOZART_PORT', '8001')}"
    )
    service = os.environ.get("MOZART_HEALTHCHECK_SERVICE", "")
    with grpc.insecure_channel(address) as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=4
            )
        except grpc.RpcError as error:
            print(f"{address}: {error.code().name} {error.details()}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
    print(f"{address} {service or '(server)'}: {status}")
    return 0 if answer.status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    sys.exit(main())
