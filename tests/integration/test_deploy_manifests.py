"""The Kubernetes manifests in ``deploy/`` (the Kustomize base): rendered, schema-valid, hardened, wired together.

The base is rendered in Python (:mod:`tests.kustomize`: resources, ConfigMap generators with Kustomize's hash
suffix, the references to them); where ``kubectl`` is installed the rendering is compared with ``kubectl
kustomize`` object for object. Every object is validated in strict mode (unknown fields are errors) by
``kubernetes-validate`` against the Kubernetes API schemas of 1.30 to 1.37, and the InferenceService example
against the vendored KServe CRDs. The RBAC that the KServe adapter needs is checked against the requests it
really sends in ``test_rbac_kserve.py``.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import tomllib

import kubernetes_validate
import pytest
import yaml

from tests.kustomize import DEPLOY, ROOT, key, render

K8S_VERSIONS = tuple(f"1.{minor}.0" for minor in range(30, 38))  # 1.30 .. 1.37 (kubernetes-validate 1.37.0)
CONSOLE_NS = "mlops"


@pytest.fixture(scope="module")
def objects() -> list[dict]:
    return render()


def by_kind(objects, kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def pod_spec(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]


def all_containers(deployment: dict) -> list[dict]:
    spec = pod_spec(deployment)
    return spec.get("initContainers", []) + spec["containers"]


def config_data(objects, prefix: str) -> tuple[str, dict]:
    (cm,) = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith(prefix + "-")]
    return cm["metadata"]["name"], cm["data"]


# ------------------------------------------------------------------------------------------- rendering, schemas
def test_python_rendering_equals_kubectl_kustomize(objects):
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the base is rendered by tests/kustomize.py only")
    out = subprocess.run([kubectl, "kustomize", str(DEPLOY)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    theirs = sorted((d for d in yaml.safe_load_all(out.stdout) if d), key=key)
    ours = sorted(objects, key=key)
    assert [key(o) for o in ours] == [key(o) for o in theirs]
    for a, b in zip(ours, theirs, strict=True):
        assert a == b, f"{key(a)} differs from kubectl kustomize"


def test_every_object_is_valid_in_strict_mode_for_kubernetes_1_30_to_1_37(objects):
    assert len(objects) >= 20
    problems = []
    for version in K8S_VERSIONS:
        for obj in objects:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                problems.append(f"{version} {key(obj)}: {exc.message} at {'.'.join(map(str, exc.path))}")
    assert not problems, "\n".join(problems)


def test_strict_validation_catches_a_misspelt_field(objects):
    """The validation above can fail: a typo in a container is an error, not a silently dropped field."""
    broken = copy.deepcopy(by_kind(objects, "Deployment")["mlops-console"])
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = broken["spec"]["template"]["spec"][
        "containers"][0].pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[-1], strict=True)


def test_inference_service_example_fits_both_kserve_crds(check_isvc):
    (isvc,) = [d for d in yaml.safe_load_all((DEPLOY / "examples" / "inferenceservice.yaml").read_text()) if d]
    check_isvc(isvc)  # Draft 7 against the v0.19 and v0.20 schemas, and no key the schemas do not define
    ingest = by_kind(render(), "Service")["mlops-ingest"]
    url = isvc["spec"]["predictor"]["logger"]["url"]
    assert url == f"http://{ingest['metadata']['name']}.{ingest['metadata']['namespace']}.svc.cluster.local/"
    assert not isvc["spec"]["predictor"]["model"]["storageUri"].startswith("models:/")


# ------------------------------------------------------------------------------------------- hardening
def _dockerfile_uid() -> int:
    users = re.findall(r"^USER\s+(\S+)", (ROOT / "Dockerfile").read_text(), flags=re.M)
    assert users, "the Dockerfile sets no USER"
    return int(users[-1].split(":")[0])


def test_every_pod_is_restricted_non_root_and_read_only(objects):
    uid = _dockerfile_uid()
    deployments = by_kind(objects, "Deployment")
    assert set(deployments) == {"mlops-console", "mlops-ingest", "mlops-worker"}
    for name, dep in deployments.items():
        spec = pod_spec(dep)
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] == uid == psc["runAsGroup"], name
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert not any(spec.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")), name
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        assert not any("hostPath" in v for v in volumes.values()), name
        for c in all_containers(dep):
            where = f"{name}/{c['name']}"
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
            assert "add" not in sc["capabilities"] and not sc.get("privileged"), where
            assert c["image"] == "mlops-console:latest", where  # one image; set it in an overlay
            res = c["resources"]
            assert set(res["requests"]) == {"cpu", "memory"} == set(res["limits"]), where
            mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
            assert "/tmp" in mounts and "emptyDir" in volumes[mounts["/tmp"]["name"]], where
            writable = [m for m in mounts.values() if not m.get("readOnly")]
            for m in writable:  # a writable place is scratch (emptyDir) or the anchors' volume
                assert {"emptyDir", "persistentVolumeClaim"} & set(volumes[m["name"]]), f"{where} {m}"
        main = spec["containers"][0]
        assert "livenessProbe" in main, name
    namespace = by_kind(objects, "Namespace")[CONSOLE_NS]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_probes_hit_each_process_health_endpoint(objects):
    deps = by_kind(objects, "Deployment")

    def probe_paths(dep) -> set[tuple[str, str]]:
        c = pod_spec(dep)["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        out = set()
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            if kind in c:
                get = c[kind]["httpGet"]
                assert get["port"] in ports, f"{kind} names no port of the container"
                out.add((get["path"], str(ports[get["port"]])))
        return out

    assert probe_paths(deps["mlops-console"]) == {("/_stcore/health", "8501")}
    assert probe_paths(deps["mlops-ingest"]) == {("/healthz", "8090")}
    assert probe_paths(deps["mlops-worker"]) == {("/healthz", "8091")}
    cmd = pod_spec(deps["mlops-worker"])["containers"][0]["command"]
    assert cmd[:4] == ["python", "-m", "services", "worker"] and cmd[cmd.index("--port") + 1] == "8091"
    cmd = pod_spec(deps["mlops-ingest"])["containers"][0]["command"]
    assert cmd[:4] == ["python", "-m", "services", "ingest"] and cmd[cmd.index("--port") + 1] == "8090"
    # the console's port is the image's (STREAMLIT_SERVER_PORT in the Dockerfile): no command in the manifest
    assert "command" not in pod_spec(deps["mlops-console"])["containers"][0]
    assert "STREAMLIT_SERVER_PORT=8501" in (ROOT / "Dockerfile").read_text()


# ------------------------------------------------------------------------------------------- replicas, affinity
def test_console_replicas_sticky_sessions_and_one_worker(objects):
    deps, services = by_kind(objects, "Deployment"), by_kind(objects, "Service")
    assert deps["mlops-console"]["spec"]["replicas"] >= 2
    assert deps["mlops-ingest"]["spec"]["replicas"] >= 2
    assert deps["mlops-worker"]["spec"]["replicas"] == 1
    assert deps["mlops-worker"]["spec"]["strategy"] == {"type": "Recreate"}
    for name in ("mlops-console", "mlops-ingest"):
        assert services[name]["spec"]["sessionAffinity"] == "ClientIP", name
    ingress = by_kind(objects, "Ingress")["mlops-console"]
    ann = ingress["metadata"]["annotations"]
    assert ann["nginx.ingress.kubernetes.io/affinity"] == "cookie"
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == "mlops-console"
    assert backend["port"]["name"] in {p["name"] for p in services["mlops-console"]["spec"]["ports"]}
    pdb = by_kind(objects, "PodDisruptionBudget")["mlops-console"]
    assert pdb["spec"]["minAvailable"] < deps["mlops-console"]["spec"]["replicas"]


def test_services_select_their_pods_and_name_their_ports(objects):
    deps = by_kind(objects, "Deployment")
    for name, svc in by_kind(objects, "Service").items():
        selector = svc["spec"]["selector"]
        matches = [d for d in deps.values()
                   if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert len(matches) == 1, f"Service {name} selects {len(matches)} Deployments"
        ports = {p["name"] for p in pod_spec(matches[0])["containers"][0]["ports"]}
        assert {p["targetPort"] for p in svc["spec"]["ports"]} <= ports, name
    for dep in deps.values():
        assert dep["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()


# ------------------------------------------------------------------------------------------- configuration
def test_settings_are_ones_the_console_reads_and_the_policy_is_deploy_policy(objects, tmp_path):
    settings_source = (ROOT / "services" / "settings.py").read_text()
    cfg_name, cfg = config_data(objects, "mlops-console-config")
    for k in cfg:
        assert f'"{k}"' in settings_source, f"{k} is not read by services/settings.py (a typo?)"
    pol_name, pol = config_data(objects, "mlops-console-policy")
    assert pol == {"policy.yaml": (DEPLOY / "policy.yaml").read_text()}
    from services.actions.catalog import VOCABULARY
    from services.policy import Policy

    namespaces = cfg["MLOPS_KSERVE_NAMESPACES"].split(",")
    assert namespaces and all(namespaces)
    deps = by_kind(objects, "Deployment")
    for name in ("mlops-console", "mlops-worker"):
        spec = pod_spec(deps[name])
        c = spec["containers"][0]
        assert {"configMapRef": {"name": cfg_name}} in c["envFrom"], name  # the generated (hashed) name
        (policy_vol,) = [v for v in spec["volumes"] if (v.get("configMap") or {}).get("name") == pol_name]
        (mount,) = [m for m in c["volumeMounts"] if m["name"] == policy_vol["name"]]
        assert cfg["MLOPS_POLICY_FILE"] == mount["mountPath"] + "/policy.yaml", name
    mounted = tmp_path / "policy.yaml"  # the mounted text is a policy the console loads
    mounted.write_text(pol["policy.yaml"])
    assert Policy.load(mounted, VOCABULARY).endpoints is not None


def test_secrets_are_referenced_not_shipped(objects):
    assert not [o for o in objects if o["kind"] == "Secret"], "Secrets are created by the operator, not the base"
    deps = by_kind(objects, "Deployment")
    for dep in deps.values():
        for c in all_containers(dep):
            env = {e["name"]: e for e in c.get("env", [])}
            ref = env["MLOPS_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
            assert ref == {"name": "mlops-console-db", "key": "url"}, c["name"]
    spec = pod_spec(deps["mlops-console"])
    (auth,) = [v for v in spec["volumes"] if "secret" in v]
    assert auth["secret"]["secretName"] == "mlops-console-auth"
    (mount,) = [m for m in spec["containers"][0]["volumeMounts"] if m["name"] == auth["name"]]
    # where services/settings.py (REPO_ROOT/.streamlit/secrets.toml) and Streamlit look, in the image's WORKDIR
    workdir = re.findall(r"^WORKDIR\s+(\S+)", (ROOT / "Dockerfile").read_text(), flags=re.M)[-1]
    assert (mount["mountPath"], mount["subPath"], mount["readOnly"]) == (
        f"{workdir}/.streamlit/secrets.toml", "secrets.toml", True)
    assert 'REPO_ROOT / ".streamlit" / "secrets.toml"' in (ROOT / "services" / "settings.py").read_text()


def test_ingest_manifest_keeps_working_on_its_own():
    """deploy/ingest.yaml (named in the README) still applies by itself: its namespace and the database Secret
    are all it needs; the ConfigMap reference is optional."""
    docs = [d for d in yaml.safe_load_all((DEPLOY / "ingest.yaml").read_text()) if d]
    assert {d["kind"] for d in docs} == {"ServiceAccount", "Deployment", "Service"}
    assert all(d["metadata"]["namespace"] == CONSOLE_NS for d in docs)
    (dep,) = [d for d in docs if d["kind"] == "Deployment"]
    for c in all_containers(dep):
        for e in c.get("env", []):
            ref = (e.get("valueFrom") or {}).get("configMapKeyRef")
            assert ref is None or ref.get("optional") is True, e
        assert not c.get("envFrom"), c["name"]


SECRET_SAMPLES = {("mlops-console-db", "url"): "postgresql+psycopg://console@postgres.mlops.svc:5432/console"}
AUTH_SAMPLE = """
[auth]
redirect_uri = "https://{host}/oauth2callback"
cookie_secret = "0123456789abcdef0123456789abcdef-sample"
client_id = "mlops-console"
client_secret = "sample"
server_metadata_url = "https://login.example.com/.well-known/openid-configuration"
"""


def container_env(objects, c: dict) -> dict[str, str]:
    """What a container's environment would be (ConfigMaps as rendered, Secrets as samples)."""
    maps = {o["metadata"]["name"]: o["data"] for o in objects if o["kind"] == "ConfigMap"}
    env: dict[str, str] = {}
    for src in c.get("envFrom", []):
        env.update(maps[src["configMapRef"]["name"]])
    for e in c.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
            continue
        ref = e["valueFrom"].get("configMapKeyRef") or e["valueFrom"]["secretKeyRef"]
        if "configMapKeyRef" in e["valueFrom"]:
            env[e["name"]] = maps[ref["name"]][ref["key"]]
        elif (ref["name"], ref["key"]) in SECRET_SAMPLES:
            env[e["name"]] = SECRET_SAMPLES[(ref["name"], ref["key"])]
        else:
            assert ref.get("optional"), f"no sample for the required Secret key {ref}"
    return env


def test_every_container_environment_is_accepted_by_the_console_settings(objects, tmp_path):
    """The settings code itself reads each container's environment: OIDC sign-in with a role map for the people
    who act (the console), the worker and ingest acting for nobody, the schema upgrade with the database only."""
    from services.auth.config import auth_section_problems
    from services.settings import Settings

    host = by_kind(objects, "Ingress")["mlops-console"]["spec"]["rules"][0]["host"]
    secrets = tmp_path / "secrets.toml"  # what the mlops-console-auth Secret's secrets.toml holds
    secrets.write_text(AUTH_SAMPLE.format(host=host))
    assert auth_section_problems(tomllib.loads(secrets.read_text())["auth"]) == []
    checked = []
    for name, dep in by_kind(objects, "Deployment").items():
        for c in all_containers(dep):
            people = name == "mlops-console" and c["name"] == "console"
            settings = Settings.from_env(container_env(objects, c), secrets_path=secrets if people else
                                         tmp_path / "absent.toml", for_people=people)
            assert settings.database_url == SECRET_SAMPLES[("mlops-console-db", "url")]
            if c["name"] in ("console", "worker"):
                assert settings.auth_mode == "oidc" and settings.role_map, name
                assert settings.serving_backend == "kserve" and settings.kserve_namespaces, name
            checked.append(f"{name}/{c['name']}")
    assert len(checked) == 6  # three Deployments, each with its schema-upgrade init container
