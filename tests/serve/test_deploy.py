"""deploy/ agrees with the app: probes, ports and names in the manifests and the Containerfile,
every Kubernetes manifest valid against the Kubernetes API's own JSON schemas (offline, with
kubernetes-validate), the KServe InferenceService's predictor a valid PodSpec speaking V2 on the
server's routes, Prometheus config and alert rules that promtool accepts, and drift severity
numbers that are the ones modelops.drift.status defines."""

from __future__ import annotations

import copy
import json
import re
import subprocess
from typing import Any

import kubernetes_validate
import pytest
import yaml
from litestar.testing import TestClient

from modelops.drift.status import SEVERITY, SEVERITY_LEGEND
from modelops.serve.config import FIELDS, ServeConfig, env_name
from tests.conftest import ROOT, require_tool

K8S = ROOT / "deploy" / "k8s"
KSERVE = ROOT / "deploy" / "kserve" / "inferenceservice.yaml"
# The oldest Kubernetes the manifests are written for (a preStop `sleep` is on by default from
# 1.30), and the newest whose schemas kubernetes-validate bundles.
K8S_VERSIONS = ("1.30", kubernetes_validate.latest_version())
# What KServe adds to a predictor's PodSpec (its ComponentExtensionSpec) that this manifest uses.
KSERVE_EXTENSIONS = {"minReplicas", "maxReplicas", "scaleMetric", "scaleTarget"}
CONTAINERFILE = (ROOT / "deploy" / "Containerfile").read_text()


def manifests() -> dict[str, dict[str, Any]]:
    docs = [d for f in sorted(K8S.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    return {d["kind"]: d for d in docs}


def container() -> dict[str, Any]:
    return manifests()["Deployment"]["spec"]["template"]["spec"]["containers"][0]


def k8s_documents() -> list[tuple[str, dict[str, Any]]]:
    return [
        (f.name, d)
        for f in sorted(K8S.glob("*.yaml"))
        for d in yaml.safe_load_all(f.read_text())
        if d
    ]


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_k8s_manifest_is_valid_against_the_kubernetes_schemas(version: str) -> None:
    documents = k8s_documents()
    assert {d["kind"] for _, d in documents} == {"Deployment", "Service", "HorizontalPodAutoscaler"}
    for name, document in documents:
        # strict: an unknown or misspelt field is an error, as the API server's would be
        checked = kubernetes_validate.validate(document, version, strict=True)
        assert checked == ".".join(version.split(".")[:2]), name


def test_the_schema_check_refuses_what_the_api_server_would() -> None:
    deployment = manifests()["Deployment"]
    for break_it in (
        lambda d: d["spec"].__setitem__("replicas", "two"),
        lambda d: d["spec"]["template"]["spec"]["containers"][0].__setitem__("readinesProbe", {}),
        lambda d: d["spec"]["template"]["spec"]["containers"][0]["ports"][0].pop("containerPort"),
    ):
        broken = copy.deepcopy(deployment)
        break_it(broken)
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, K8S_VERSIONS[-1], strict=True)


def kserve() -> dict[str, Any]:
    return yaml.safe_load(KSERVE.read_text())  # type: ignore[no-any-return]


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_the_inference_services_predictor_is_a_valid_pod_spec(version: str) -> None:
    """KServe's CRD is not among the core schemas: its predictor is a PodSpec inline plus KServe's
    component extension fields. Those are checked by name (and their values below); everything
    else must be a PodSpec the Kubernetes schema accepts, strictly."""
    predictor = dict(kserve()["spec"]["predictor"])
    extensions = {k: predictor.pop(k) for k in KSERVE_EXTENSIONS if k in predictor}
    assert extensions.keys() == KSERVE_EXTENSIONS
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "predictor"}, "spec": predictor}
    kubernetes_validate.validate(pod, version, strict=True)


def test_the_inference_service_is_a_custom_v2_predictor_of_our_image(
    client: TestClient[Any],
) -> None:
    isvc = kserve()
    assert (isvc["apiVersion"], isvc["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    assert set(isvc["spec"]) == {"predictor"}
    predictor = isvc["spec"]["predictor"]
    assert (
        predictor["scaleMetric"] == "cpu"
        and 1 <= predictor["minReplicas"] <= predictor["maxReplicas"]
    )
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"
    [c] = predictor["containers"]
    # KServe takes the container named kserve-container as the predictor, and reads its protocol
    # from PROTOCOL (v1 or v2).
    assert c["name"] == "kserve-container"
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["PROTOCOL"] == "v2"
    assert c["image"].rsplit(":", 1)[0] == container()["image"].rsplit(":", 1)[0]
    [port] = c["ports"]
    assert port["containerPort"] == int(env["MODELOPS_SERVE_PORT"])
    routes = set(client.get("/schema").json()["paths"])
    probes = {k: c[k]["httpGet"] for k in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert probes["readinessProbe"]["path"] == "/v2/health/ready"
    assert probes["livenessProbe"]["path"] == "/v2/health/live"
    for name, probe in probes.items():
        assert probe["path"] in routes and probe["port"] == port["containerPort"], name
        assert client.get(probe["path"]).status_code == 200, name
    assert predictor["terminationGracePeriodSeconds"] > int(env["MODELOPS_SERVE_GRACEFUL_TIMEOUT"])
    assert predictor["securityContext"]["runAsUser"] == 10001


def test_every_server_variable_in_a_manifest_is_one_the_server_reads() -> None:
    known = {env_name(f) for f in FIELDS}
    for document in [d for _, d in k8s_documents()] + [kserve()]:
        text = yaml.safe_dump(document)
        for name in re.findall(r"\bMODELOPS_SERVE_[A-Z_0-9]+", text):
            assert name in known, name


def test_probes_hit_the_apps_health_routes_on_the_served_port(client: TestClient[Any]) -> None:
    c = container()
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    env = {e["name"]: e["value"] for e in c["env"]}
    assert ports["http"] == int(env["MODELOPS_SERVE_PORT"])
    assert f"EXPOSE {ports['http']}" in CONTAINERFILE
    assert f"MODELOPS_SERVE_PORT={ports['http']}" in CONTAINERFILE
    routes = set(client.get("/schema").json()["paths"])
    probes = {k: c[k]["httpGet"] for k in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert probes["readinessProbe"]["path"] == "/health/ready"
    assert probes["livenessProbe"]["path"] == "/health/live"
    for name, probe in probes.items():
        assert probe["path"] in routes, name
        assert probe["port"] in (ports["http"], "http"), name
        assert client.get(probe["path"]).status_code == 200, name
    annotations = manifests()["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] == "/metrics" and "/metrics" in routes
    assert int(annotations["prometheus.io/port"]) == ports["http"]


def test_termination_grace_outlasts_the_servers_drain() -> None:
    spec = manifests()["Deployment"]["spec"]["template"]["spec"]
    env = {e["name"]: e["value"] for e in container()["env"]}
    drain = int(env.get("MODELOPS_SERVE_GRACEFUL_TIMEOUT", ServeConfig().graceful_timeout))
    pause = container()["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert spec["terminationGracePeriodSeconds"] > drain + pause
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 10001 and "USER 10001" in CONTAINERFILE
    resources = container()["resources"]["requests"]
    assert "cpu" in resources and "memory" in resources


def test_service_and_autoscaler_point_at_the_deployment() -> None:
    m = manifests()
    deployment = m["Deployment"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert m["Service"]["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert m["Service"]["spec"]["ports"][0]["targetPort"] in {
        p["name"] for p in container()["ports"]
    }
    target = m["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])


def test_containerfile_is_multistage_locked_nonroot_with_exec_entrypoint_and_healthcheck() -> None:
    assert re.search(r"^ARG BASE_IMAGE=docker\.io/library/python:3\.11-slim$", CONTAINERFILE, re.M)
    assert len(re.findall(r"^FROM \$\{BASE_IMAGE\}", CONTAINERFILE, re.M)) == 2
    assert "COPY --from=build" in CONTAINERFILE
    assert (
        "uv sync --frozen --no-dev" in CONTAINERFILE
        and "COPY pyproject.toml uv.lock" in CONTAINERFILE
    )
    entrypoint = re.search(r"^ENTRYPOINT (.+)$", CONTAINERFILE, re.M)
    assert entrypoint and json.loads(entrypoint.group(1))[:2] == ["modelops", "serve"]
    health = re.search(r"^HEALTHCHECK .*\n\s+CMD (.+)$", CONTAINERFILE, re.M)
    assert health and "/health/ready" in health.group(1)
    assert re.search(r"^USER 10001", CONTAINERFILE, re.M)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("promtool"), *args],
        cwd=ROOT / "deploy" / "prometheus",
        capture_output=True,
        text=True,
    )


def test_prometheus_config_and_alert_rules_pass_promtool() -> None:
    for args in (("check", "config", "prometheus.yml"), ("check", "rules", "alerts.yml")):
        result = promtool(*args)
        assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_fire_as_their_unit_tests_say() -> None:
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_uses_metrics_the_service_exports(client: TestClient[Any]) -> None:
    exported = exported_names(client.get("/metrics").text) | {"up"}
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    for rule in rules["groups"][0]["rules"]:
        used = metric_names(rule["expr"])
        assert used and used <= exported, (rule["alert"], used - exported)


def exported_names(exposition: str) -> set[str]:
    """Sample names in a text exposition, and the family names of every # TYPE line."""
    names = {line.split()[2] for line in exposition.splitlines() if line.startswith("# TYPE")}
    names |= {
        re.split(r"[{ ]", line, maxsplit=1)[0]
        for line in exposition.splitlines()
        if line and line[0] != "#"
    }
    return names


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(modelops_[a-z_]+|up)\b(?=\s*[{\[)]|\s*[=!<>])", expr))


def dashboard() -> dict[str, Any]:
    return json.loads((ROOT / "deploy" / "grafana" / "modelops.json").read_text())  # type: ignore[no-any-return]


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in dashboard()["panels"] for t in p["targets"]]


# A drift severity gauge compared with a number, e.g. `(modelops_feature_drift_severity) >= 3`.
SEVERITY_COMPARISON = re.compile(
    r"\b(modelops_[a-z_]+_drift_severity)\b[^<>=!]*?(>=|<=|==|!=|>|<)\s*(\d+)"
)


def test_drift_alerts_fire_at_the_severity_number_of_the_status_they_name() -> None:
    text = (ROOT / "deploy" / "prometheus" / "alerts.yml").read_text()
    assert SEVERITY_LEGEND in " ".join(line.strip(" #") for line in text.splitlines())
    checked = []
    for rule in yaml.safe_load(text)["groups"][0]["rules"]:
        if "drift_severity" not in rule["expr"]:
            continue
        comparisons = SEVERITY_COMPARISON.findall(rule["expr"])
        named = rule["labels"]["drift_at_least"]
        assert comparisons, rule["alert"]
        for _, operator, number in comparisons:
            assert (operator, int(number)) == (">=", SEVERITY[named]), rule["alert"]
        checked.append(rule["alert"])
    assert checked == ["ModelopsFeatureDriftSignificant", "ModelopsPredictionDrift"]


def test_dashboard_spells_drift_severities_as_the_service_numbers_them() -> None:
    severity_panels = [
        p for p in dashboard()["panels"] if "drift_severity" in json.dumps(p["targets"])
    ]
    assert severity_panels
    for panel in severity_panels:
        assert f"({SEVERITY_LEGEND})" in panel["title"], panel["title"]
    assert not any(SEVERITY_COMPARISON.search(e) for e in dashboard_exprs())


def test_severity_gauges_explain_their_numbers(client: TestClient[Any]) -> None:
    exposition = client.get("/metrics").text
    for name, part in (("feature", "feature"), ("prediction", "scored class")):
        help_line = f"# HELP modelops_{name}_drift_severity Drift status per {part}: "
        assert help_line + SEVERITY_LEGEND in exposition


def test_dashboard_covers_traffic_errors_latency_predictions_and_drift() -> None:
    text = " ".join(dashboard_exprs())
    for needed in (
        "modelops_http_requests_total",
        'status=~"5..',
        "histogram_quantile(0.99",
        "modelops_predicted_probability_bucket",
        "modelops_feature_psi",
    ):
        assert needed in text, needed


def test_metric_name_extraction_sees_what_a_query_uses() -> None:
    assert metric_names('sum(rate(modelops_x_total{a="b"}[5m])) / up == 0') == {
        "modelops_x_total",
        "up",
    }
    assert metric_names("histogram_quantile(0.9, sum by (le) (rate(modelops_y_bucket[1m])))") == {
        "modelops_y_bucket"
    }


# What the request-rate alerts and panels count as scoring: every route that answers predictions.
SCORING_ROUTES = {
    "/v1/predict",
    "/v2/models/{name}/infer",
    "/v2/models/{name}/versions/{version}/infer",
}
ENDPOINT_MATCHER = re.compile(r'endpoint(=~?)"((?:[^"\\]|\\.)*)"')


def test_request_alerts_and_panels_count_every_scoring_route_and_only_those(
    client: TestClient[Any],
) -> None:
    routes = set(client.get("/schema/openapi.json").json()["paths"])
    assert routes >= SCORING_ROUTES
    alerts = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    exprs = [r["expr"] for r in alerts["groups"][0]["rules"]] + dashboard_exprs()
    matchers = [
        m for e in exprs if "modelops_http_request" in e for m in ENDPOINT_MATCHER.findall(e)
    ]
    assert matchers
    for op, pattern in matchers:
        # PromQL's =~ is anchored at both ends, as fullmatch is; a JSON string escapes its quotes.
        pattern = pattern.replace('\\"', '"')
        chosen = {r for r in routes if (re.fullmatch(pattern, r) if op == "=~" else r == pattern)}
        assert chosen == SCORING_ROUTES, (pattern, chosen)


# The README's words for the request alerts, each with how it shows its rule's threshold.
README_THRESHOLDS = {
    "ModelopsHighErrorRate": ("5xx share above {}", lambda t: f"{t:.0%}"),
    "ModelopsManyRejectedRequests": ("contract violations above {}", lambda t: f"{t:.0%}"),
    "ModelopsHighLatencyP99": ("p99 above {}", lambda t: f"{t * 1000:g} ms"),
}


def test_readme_and_the_alert_summaries_state_each_rules_own_threshold() -> None:
    """A threshold lives in its rule's expression; the summary and the README are checked
    against it, so changing one without the others fails here."""
    readme = " ".join((ROOT / "README.md").read_text().split())
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    by_name = {r["alert"]: r for r in rules["groups"][0]["rules"]}
    for name, (words, shown) in README_THRESHOLDS.items():
        rule = by_name[name]
        threshold = float(re.findall(r">\s*([0-9.]+)\s*$", rule["expr"].strip())[-1])
        text = words.format(shown(threshold))
        assert text in readme, (name, text)
        assert shown(threshold) in rule["annotations"]["summary"], (name, shown(threshold))
