"""Every overlay of k8s/ renders, validates strictly and keeps the promises the docs make.

Core objects go through `kubernetes-validate --strict` (Kubernetes 1.37 schemas); the
custom resources (Rollout, AnalysisTemplate, ServiceMonitor, PrometheusRule) through
check-jsonschema against the CRD schemas vendored in k8s/schemas; every pod template
through the policy in k8s/policy. No cluster runs here: these are the checks that can
run without one.
"""

from __future__ import annotations

import copy
import datetime
import functools
import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import check_jsonschema  # type: ignore[import-untyped]
import pytest
import yaml
from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mozart_server.settings import ServerSettings
from tests.support.server import InProcessServer

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
OVERLAYS = ("dev", "staging", "production")
NAMESPACES = {"dev": "mozart-dev", "staging": "mozart-staging", "production": "mozart"}
CRD_SCHEMAS = {
    ("argoproj.io/v1alpha1", "Rollout"): "rollout-argoproj-v1alpha1.json",
    ("argoproj.io/v1alpha1", "AnalysisTemplate"): "analysistemplate-argoproj-v1alpha1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring-v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule-monitoring-v1.json",
}
#: The documented Gateway API alternative (k8s/examples/grpcroute.yaml), in no overlay.
GRPC_ROUTE_SCHEMA = "grpcroute-gateway-v1.json"
each_overlay = pytest.mark.parametrize("overlay", OVERLAYS)
Object = dict[str, Any]


@functools.cache
def _render(path: str) -> tuple[str, ...]:
    completed = subprocess.run(
        [str(BIN / "kubectl"), "kustomize", str(ROOT / path)],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    return tuple(json.dumps(doc) for doc in yaml.safe_load_all(completed.stdout) if doc)


def rendered(overlay: str) -> list[Object]:
    """The objects `kubectl kustomize k8s/overlays/OVERLAY` prints (fresh copies)."""
    return [json.loads(doc) for doc in _render(f"k8s/overlays/{overlay}")]


def one(objects: list[Object], kind: str, name: str = "mozart-server") -> Object:
    """The object of that kind and name."""
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, (kind, name, [o["kind"] for o in objects])
    return matches[0]


def server_container(objects: list[Object]) -> Object:
    """The server container of the Deployment's pod template."""
    spec = one(objects, "Deployment")["spec"]["template"]["spec"]
    return next(c for c in spec["containers"] if c["name"] == "server")


def _environment(objects: list[Object]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in server_container(objects).get("env", []) if "value" in e}


def _check_jsonschema(schema: Path, objects: list[Object], folder: Path) -> Result:
    """check-jsonschema's command line, run in this process (no interpreter start-up)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for index, document in enumerate(objects):
        path = folder / f"{index}-{document['kind']}.json"
        path.write_text(json.dumps(document))
        files.append(str(path))
    return CliRunner().invoke(check_jsonschema.main, ["--schemafile", str(schema), *files])


@each_overlay
def test_overlay_renders_a_namespace_that_holds_every_object(overlay: str) -> None:
    objects = rendered(overlay)
    namespace = one(objects, "Namespace", NAMESPACES[overlay])
    assert namespace["apiVersion"] == "v1"
    others = [o for o in objects if o["kind"] != "Namespace"]
    assert {o["metadata"].get("namespace") for o in others} == {NAMESPACES[overlay]}


def test_core_objects_pass_strict_schema_validation(tmp_path: Path) -> None:
    # One kubernetes-validate run for the base and every overlay (it starts slowly).
    expected: list[str] = []
    manifests: list[str] = []
    for path in ("k8s/base", *(f"k8s/overlays/{o}" for o in OVERLAYS)):
        core = [json.loads(doc) for doc in _render(path)]
        core = [o for o in core if (o["apiVersion"], o["kind"]) not in CRD_SCHEMAS]
        manifest = tmp_path / f"{path.replace('/', '-')}.yaml"
        manifest.write_text(yaml.safe_dump_all(core))
        manifests.append(str(manifest))
        expected += [f"{manifest} passed for resource {o['kind'].lower()}/{o['metadata']['name']}"
                     for o in core]  # fmt: skip
    completed = subprocess.run(
        [str(BIN / "kubernetes-validate"), "--strict", *manifests],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    assert "Couldn't find schema" not in output
    for line in expected:
        assert line in output


@each_overlay
def test_custom_resources_pass_their_vendored_crd_schemas(overlay: str, tmp_path: Path) -> None:
    objects = rendered(overlay)
    for (api_version, kind), schema in CRD_SCHEMAS.items():
        instances = [o for o in objects if (o["apiVersion"], o["kind"]) == (api_version, kind)]
        if not instances:
            continue
        checked = _check_jsonschema(ROOT / "k8s" / "schemas" / schema, instances, tmp_path / kind)
        assert checked.exit_code == 0, checked.output
    kinds = {o["kind"] for o in objects}
    if overlay != "dev":
        assert {"Rollout", "AnalysisTemplate", "ServiceMonitor", "PrometheusRule"} <= kinds


def test_the_crd_schemas_refuse_unknown_fields_and_other_kinds(tmp_path: Path) -> None:
    objects = rendered("production")
    rollout = one(objects, "Rollout")
    misspelt = copy.deepcopy(rollout)
    misspelt["spec"]["strategy"]["canary"]["stepz"] = misspelt["spec"]["strategy"]["canary"].pop(
        "steps"
    )
    wrong_kind = copy.deepcopy(one(objects, "AnalysisTemplate", "mozart-canary"))
    schema = ROOT / "k8s" / "schemas" / CRD_SCHEMAS[("argoproj.io/v1alpha1", "Rollout")]
    checked = _check_jsonschema(schema, [misspelt, wrong_kind], tmp_path)
    assert checked.exit_code == 1
    assert "'stepz' was unexpected" in checked.output
    assert (
        "'Rollout' was expected" in checked.output or "is not one of ['Rollout']" in checked.output
    )


def test_the_documented_grpc_route_passes_the_gateway_api_schema(tmp_path: Path) -> None:
    route = yaml.safe_load((ROOT / "k8s" / "examples" / "grpcroute.yaml").read_text())
    checked = _check_jsonschema(ROOT / "k8s" / "schemas" / GRPC_ROUTE_SCHEMA, [route], tmp_path)
    assert checked.exit_code == 0, checked.output
    production = rendered("production")
    (backend,) = route["spec"]["rules"][0]["backendRefs"]
    service = one(production, "Service", backend["name"])
    assert backend["port"] in {p["port"] for p in service["spec"]["ports"] if p["name"] == "grpc"}
    assert route["metadata"]["namespace"] == NAMESPACES["production"]
    misspelt = copy.deepcopy(route)
    misspelt["spec"]["rules"][0]["backendRef"] = misspelt["spec"]["rules"][0].pop("backendRefs")
    refused = _check_jsonschema(ROOT / "k8s" / "schemas" / GRPC_ROUTE_SCHEMA, [misspelt], tmp_path)
    assert "'backendRef' was unexpected" in refused.output


def test_every_vendored_schema_names_its_source() -> None:
    sources = (ROOT / "k8s" / "schemas" / "SOURCES.md").read_text()
    for schema in (*CRD_SCHEMAS.values(), GRPC_ROUTE_SCHEMA):
        document = json.loads((ROOT / "k8s" / "schemas" / schema).read_text())
        digest = re.search(r"sha256 ([0-9a-f]{64})", document["$comment"])
        assert digest is not None, schema
        assert digest.group(1) in sources, schema


@each_overlay
def test_pod_templates_pass_the_policy(overlay: str, tmp_path: Path) -> None:
    deployment = one(rendered(overlay), "Deployment")
    policy = ROOT / "k8s" / "policy" / "workload.schema.json"
    checked = _check_jsonschema(policy, [deployment], tmp_path)
    assert checked.exit_code == 0, checked.output


def test_the_policy_refuses_latest_tags_missing_limits_and_root(tmp_path: Path) -> None:
    deployment = one(rendered("production"), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    pod["containers"][0]["image"] = "ghcr.io/mozart-audio/mozart-server:latest"
    del pod["initContainers"][0]["resources"]["limits"]
    pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] = False
    pod["securityContext"]["runAsNonRoot"] = False
    del pod["containers"][0]["livenessProbe"]
    policy = ROOT / "k8s" / "policy" / "workload.schema.json"
    checked = _check_jsonschema(policy, [deployment], tmp_path)
    assert checked.exit_code == 1
    for complaint in (
        "containers[0].image: 'ghcr.io/mozart-audio/mozart-server:latest' does not match",
        "initContainers[0].resources: 'limits' is a required property",
        "readOnlyRootFilesystem: True was expected",
        "runAsNonRoot: True was expected",
        "'livenessProbe' is a required property",
    ):
        assert complaint in checked.output, checked.output


@each_overlay
def test_termination_grace_covers_prestop_drain_delay_and_shutdown_grace(overlay: str) -> None:
    objects = rendered(overlay)
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    container = server_container(objects)
    settings = ServerSettings(
        **{
            name.removeprefix("MOZART_").lower(): value
            for name, value in _environment(objects).items()
            if name in ("MOZART_DRAIN_DELAY_S", "MOZART_SHUTDOWN_GRACE_S")
        }
    )
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    needed = pre_stop + settings.process.drain_delay_s + settings.process.shutdown_grace_s
    assert pod["terminationGracePeriodSeconds"] >= needed, (
        pod["terminationGracePeriodSeconds"],
        needed,
    )
    # The settings are the ones the server reads: a typo in a name would be ignored.
    assert settings.process.drain_delay_s == 5.0
    assert settings.process.shutdown_grace_s == 10.0


def _self_signed() -> dict[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mozart-server")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    certificate_pem = certificate.public_bytes(serialization.Encoding.PEM)
    return {"tls.crt": certificate_pem.decode(), "tls.key": key_pem.decode()}


@each_overlay
def test_every_server_setting_in_an_overlay_is_one_the_server_accepts(
    overlay: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    environment = _environment(rendered(overlay))
    # Files that Secrets provide in a pod: stand-ins the settings can read.
    stand_ins = {"tokens": "ci:" + "0" * 32 + "\n", **_self_signed()}
    for name, value in environment.items():
        if value.startswith("/etc/mozart/"):
            stand_in = tmp_path / Path(value).name
            stand_in.write_text(stand_ins[stand_in.name])
            environment[name] = str(stand_in)
    for name in list(os.environ):
        if name.startswith("MOZART_"):
            monkeypatch.delenv(name)
    known = set()
    for name, value in environment.items():
        if name.startswith("MOZART_"):
            monkeypatch.setenv(name, value)
            known.add(name.removeprefix("MOZART_").lower())
    settings = ServerSettings().model_dump()
    flat: set[str] = set()
    pending = [settings]
    while pending:
        section = pending.pop()
        for key, value in section.items():
            flat.add(key)
            if isinstance(value, dict):
                pending.append(value)
    assert known <= flat, f"not settings: {sorted(known - flat)}"


def test_overlays_differ_as_the_readme_says() -> None:
    dev, staging, production = (rendered(o) for o in OVERLAYS)
    assert _environment(dev)["APP_ENV"] == "dev"
    assert _environment(staging)["APP_ENV"] == "staging"
    assert _environment(production)["APP_ENV"] == "production"
    assert "MOZART_READINESS" not in _environment(dev)
    assert (
        _environment(staging)["MOZART_READINESS"]
        == _environment(production)["MOZART_READINESS"]
        == "all"
    )
    # Auth everywhere but dev; TLS and rate limits in production only.
    assert "MOZART_AUTH_TOKENS_FILE" not in _environment(dev)
    assert "MOZART_AUTH_TOKENS_FILE" in _environment(staging)
    assert "MOZART_TLS_CERT_FILE" in _environment(production)
    assert "MOZART_TLS_CERT_FILE" not in _environment(staging)
    assert float(_environment(production)["MOZART_CLIENT_REQUESTS_PER_S"]) > 0
    # dev: the plain Deployment path; staging and production: the Argo Rollouts canary.
    assert one(dev, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]["kind"] == "Deployment"
    assert not [o for o in dev if o["kind"] == "Rollout"]
    for objects in (staging, production):
        assert one(objects, "Deployment")["spec"]["replicas"] == 0
        target = one(objects, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Rollout", "mozart-server")
        assert one(objects, "Rollout")["spec"]["workloadRef"]["name"] == "mozart-server"
    assert one(production, "HorizontalPodAutoscaler")["spec"]["minReplicas"] == 3
    # dev has no Prometheus adapter: its HPA reads CPU only (a metric it could not read
    # would stop it from ever scaling down).
    assert [m["type"] for m in one(dev, "HorizontalPodAutoscaler")["spec"]["metrics"]] == [
        "Resource"
    ]
    for objects in (staging, production):
        metrics = one(objects, "HorizontalPodAutoscaler")["spec"]["metrics"]
        assert [m["type"] for m in metrics] == ["Resource", "Pods"]


@each_overlay
def test_models_come_from_outside_the_image(overlay: str) -> None:
    objects = rendered(overlay)
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    models = next(v for v in pod["volumes"] if v["name"] == "models")
    mount = next(m for m in server_container(objects)["volumeMounts"] if m["name"] == "models")
    assert mount["mountPath"] == _environment(objects)["MOZART_MODEL_REPOSITORY"]
    if overlay == "dev":
        assert models["persistentVolumeClaim"]["claimName"] == "mozart-models"
        one(objects, "PersistentVolumeClaim", "mozart-models")
        return
    assert "emptyDir" in models
    assert "persistentVolumeClaim" not in models
    (init,) = pod["initContainers"]
    assert init["args"][:3] == ["models", "publish", "$(MOZART_MODEL_URI)"]
    assert init["args"][3:] == ["--repository", mount["mountPath"]]
    source_name = init["envFrom"][0]["configMapRef"]["name"]
    source = next(
        o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == source_name
    )
    alias = {"staging": "candidate", "production": "champion"}[overlay]
    assert source["data"]["MOZART_MODEL_URI"] == f"models:/composer-cnn@{alias}"


@each_overlay
def test_secrets_are_referenced_never_committed(overlay: str) -> None:
    objects = rendered(overlay)
    assert not [o for o in objects if o["kind"] == "Secret"]
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    secrets = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    expected = {
        "dev": set(),
        "staging": {"mozart-auth"},
        "production": {"mozart-auth", "mozart-tls"},
    }
    assert secrets == expected[overlay]


@each_overlay
def test_services_network_policy_and_service_monitor_agree_with_the_pod(overlay: str) -> None:
    objects = rendered(overlay)
    container = server_container(objects)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    headless = one(objects, "Service", "mozart-server-headless")
    assert headless["spec"]["clusterIP"] == "None"
    assert [p["targetPort"] for p in headless["spec"]["ports"]] == ["grpc"]
    for service in (one(objects, "Service"), headless):
        assert service["spec"]["selector"].items() <= pod_labels.items()
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports.keys()
    policy = one(objects, "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    api, scrape = policy["spec"]["ingress"]
    assert api["from"] == [{"podSelector": {}}]
    assert {p["port"] for p in api["ports"]} == {"http", "grpc"}
    # Only Prometheus pods in the monitoring namespace (kustomize must not rewrite it).
    assert scrape["from"][0]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "prometheus"
    }
    assert [p["port"] for p in scrape["ports"]] == ["metrics"]
    if overlay != "dev":
        monitor = one(objects, "ServiceMonitor")
        assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]


def test_prometheus_rules_are_generated_from_the_rule_files() -> None:
    completed = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "k8s_prometheus_rules.py"), "--check"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    rules = [o for o in rendered("production") if o["kind"] == "PrometheusRule"]
    for rule in rules:
        source = ROOT / "k8s" / "monitoring" / f"{rule['metadata']['name']}.yml"
        assert rule["spec"]["groups"] == yaml.safe_load(source.read_text())["groups"]
    assert len(rules) == 2


def test_the_hpa_custom_metric_is_the_one_the_adapter_serves() -> None:
    adapter = yaml.safe_load((ROOT / "k8s" / "prometheus-adapter" / "rules.yaml").read_text())
    served = {rule["name"]["as"] for rule in adapter["rules"]}
    hpa = one(rendered("production"), "HorizontalPodAutoscaler")
    wanted = {m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"}
    assert wanted
    assert wanted <= served
    assert {m["resource"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Resource"} == {
        "cpu"
    }


def test_the_analysis_gets_every_argument_it_uses() -> None:
    objects = rendered("production")
    template = one(objects, "AnalysisTemplate", "mozart-canary")
    declared = {a["name"] for a in template["spec"]["args"]}
    used = set(re.findall(r"\{\{args\.([a-z-]+)\}\}", json.dumps(template["spec"]["metrics"])))
    assert used == declared
    analysis = one(objects, "Rollout")["spec"]["strategy"]["canary"]["analysis"]
    assert [t["templateName"] for t in analysis["templates"]] == ["mozart-canary"]
    given = {a["name"] for a in analysis["args"]}
    without_default = {a["name"] for a in template["spec"]["args"] if "value" not in a}
    assert without_default <= given
    names = {m["name"] for m in template["spec"]["metrics"]}
    assert {"error-ratio", "window-latency-p99"} <= names


def test_the_tls_overlays_http_probes_answer_on_a_real_server(server: InProcessServer) -> None:
    # Production's probes (components/tls) ask the HTTP port; a ready, live server says 200.
    container = server_container(rendered("production"))
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for name in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = container[name]["httpGet"]
        assert ports[probe["port"]] == ServerSettings().http.http_port
        with urllib.request.urlopen(server.http_url + probe["path"], timeout=10) as response:
            assert response.status == 200, name
