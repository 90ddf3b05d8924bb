"""The deployment files (issue 29, item 6) agree with `mtbranch serve`: examples/deploy/Dockerfile, k8s.yaml and
kserve.yaml are parsed, their server arguments go through the real `serve` command's option parser, and ports,
probe paths, drain and grace timeouts are cross-checked. No Docker engine or cluster runs them here."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")  # PyYAML: a huggingface_hub / transformers dependency

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "examples" / "deploy"


def serve_params(args: list[str]) -> dict[str, Any]:
    """What `mtbranch serve ARGS` would run with (click's own parsing: unknown options fail here)."""
    from mtbranch.cli.serve import serve

    return serve.make_context("serve", list(args)).params


def serve_settings(params: dict[str, Any]) -> Any:
    """The server's settings for those options, built as `mtbranch serve` builds them (defaults: ServeSettings)."""
    from mtbranch.serve.schema import ServeSettings

    return ServeSettings(max_batch_size=params["max_batch_size"], max_batch_wait_ms=params["max_batch_wait_ms"],
                         max_queue=params["max_queue"], request_timeout_s=params["request_timeout"],
                         read_timeout_s=params["read_timeout"], keep_alive_s=params["keep_alive"],
                         grace_s=params["grace"], drain_delay_s=params["drain_delay"])


def dockerfile() -> dict[str, Any]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    instr: dict[str, list[str]] = {}
    for ln in lines:
        word, _, rest = ln.partition(" ")
        instr.setdefault(word.upper(), []).append(rest.strip())
    return instr


def k8s_docs(name: str) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d}


def drain_checks(container: dict[str, Any], grace_period: int) -> dict[str, Any]:
    """The probe and shutdown rules every container here follows; returns the parsed serve options."""
    params = serve_params(container["args"])
    settings = serve_settings(params)
    port = container["ports"][0]["containerPort"]
    assert params["port"] == port and params["host"] == "0.0.0.0"  # reachable from outside the pod
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] in (port, container["ports"][0].get("name"))
        # a probe never waits longer than the server gives a request's head to arrive
        assert container[probe]["timeoutSeconds"] <= settings.read_timeout_s
    ready = container["readinessProbe"]
    # SIGTERM turns /ready 503: the pod must leave the endpoints before the listener closes
    assert ready["periodSeconds"] * ready["failureThreshold"] <= settings.drain_delay_s
    sleep = container["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep" and float(sleep[1]) == settings.drain_delay_s  # the preStop drain is --drain-delay
    # kubelet's SIGKILL comes after preStop + the server's drain + the grace for requests in flight
    assert grace_period > float(sleep[1]) + settings.drain_delay_s + settings.grace_s
    return params


def test_dockerfile_cpu_torch_non_root_and_health_check() -> None:
    d = dockerfile()
    makefile_torch = re.search(r"^TORCH\s*\?=\s*(\S+)", (ROOT / "Makefile").read_text(), re.M).group(1)
    assert f"ARG TORCH={makefile_torch}" in [f"ARG {a}" for a in d["ARG"]]
    install = next(r for r in d["RUN"] if "${TORCH}" in r)
    assert "--index-url https://download.pytorch.org/whl/cpu" in install
    uid = re.search(r"--uid (\d+)", " ".join(d["RUN"])).group(1)
    assert d["USER"] == [f"{uid}:{uid}"] and uid != "0"
    entry, cmd = json.loads(d["ENTRYPOINT"][0]), json.loads(d["CMD"][0])
    assert entry == ["mtbranch", "serve"]
    params = serve_params(cmd)
    assert d["EXPOSE"] == [str(params["port"])]
    health = d["HEALTHCHECK"][0]
    assert f"http://127.0.0.1:{params['port']}/health" in health
    assert d["STOPSIGNAL"] == ["SIGTERM"]
    # the artifact the CMD serves is the one copied in
    assert any(c.endswith(str(params["artifact"])) for c in d["COPY"])
    # the same server options as the Kubernetes Deployment
    k8s = k8s_docs("k8s.yaml")["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert serve_params(k8s["args"]) == params


def test_kubernetes_deployment_and_service_match_the_server() -> None:
    docs = k8s_docs("k8s.yaml")
    assert set(docs) == {"Deployment", "Service"}
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    drain_checks(container, pod["terminationGracePeriodSeconds"])
    assert container["startupProbe"]["httpGet"]["path"] == "/health"
    assert pod["securityContext"]["runAsNonRoot"] is True
    if container["securityContext"].get("readOnlyRootFilesystem"):  # caches must go to a writable volume
        env = {e["name"]: e["value"] for e in container["env"]}
        mounts = [m["mountPath"] for m in container["volumeMounts"]]
        assert all(any(env[k].startswith(m + "/") for m in mounts) for k in ("MTBRANCH_CACHE", "HF_HOME"))
    uid = re.search(r"--uid (\d+)", (DEPLOY / "Dockerfile").read_text()).group(1)
    assert pod["securityContext"]["runAsUser"] == int(uid)
    service = docs["Service"]["spec"]
    assert service["selector"] == docs["Deployment"]["spec"]["selector"]["matchLabels"]
    assert service["ports"][0]["targetPort"] == container["ports"][0]["name"]


def test_kserve_inference_service_uses_the_runtime_with_v2() -> None:
    docs = k8s_docs("kserve.yaml")
    runtime, isvc = docs["ServingRuntime"], docs["InferenceService"]
    predictor = isvc["spec"]["predictor"]
    drain_checks(runtime["spec"]["containers"][0], predictor["terminationGracePeriodSeconds"])
    # the preStop drain needs a plain Deployment: Knative (serverless mode) refuses lifecycle hooks
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"
    model = predictor["model"]
    assert model["runtime"] == runtime["metadata"]["name"] and model["protocolVersion"] == "v2"
    assert model["protocolVersion"] in runtime["spec"]["protocolVersions"]
    assert model["modelFormat"]["name"] in [f["name"] for f in runtime["spec"]["supportedModelFormats"]]
    # KServe's storage initializer downloads storageUri to /mnt/models: the artifact served
    assert str(serve_params(runtime["spec"]["containers"][0]["args"])["artifact"]) == "/mnt/models"


def test_drain_check_fails_on_a_prestop_that_disagrees_with_drain_delay() -> None:
    """The cross-check can fail: a preStop sleep that is not --drain-delay is caught."""
    pod = k8s_docs("k8s.yaml")["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    container["lifecycle"]["preStop"]["exec"]["command"] = ["sleep", "1"]
    with pytest.raises(AssertionError):
        drain_checks(container, pod["terminationGracePeriodSeconds"])


@pytest.mark.slow
def test_probe_paths_are_routes_of_the_app(tiny_bert_dir: Path, tmp_path: Path) -> None:
    from mtbranch.serve.app import create_app

    from helpers import make_serving_artifact

    app = create_app(artifact=make_serving_artifact(tiny_bert_dir, tmp_path))
    # the app's own route table (FastAPI 0.165 keeps included routers as lazy entries in app.routes)
    paths = set(app.openapi()["paths"])
    assert {"/health", "/ready"} <= paths
