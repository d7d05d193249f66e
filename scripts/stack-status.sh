#!/usr/bin/env bash
# make stack-status: the containers, then each service's own health endpoint from the host.
# shellcheck source=scripts/stack-lib.sh
source "$(dirname "$0")/stack-lib.sh"
compose ps
status=0
check() {  # name url
    if curl --silent --fail --max-time 5 --output /dev/null "$2"; then
        printf '  %-13s ok    %s\n' "$1" "$2"
    else
        printf '  %-13s DOWN  %s\n' "$1" "$2"
        status=1
    fi
}
echo "health:"
check server-http "http://127.0.0.1:${API_PORT:-8000}/v2/health/ready"
check metrics "http://127.0.0.1:8002/metrics"
check prometheus "http://127.0.0.1:9090/-/ready"
check alertmanager "http://127.0.0.1:9093/-/ready"
check grafana "http://127.0.0.1:3000/api/health"
check mlflow "http://127.0.0.1:5000/health"
firing=$(curl --silent --max-time 5 "http://127.0.0.1:9093/api/v2/alerts?active=true" \
    | python3 -c 'import json,sys; print(", ".join(a["labels"]["alertname"] for a in json.load(sys.stdin)) or "none")' \
    2>/dev/null || echo "unknown")
echo "alerts in Alertmanager: $firing"
exit "$status"
