"""The gateway's replicas for real: ``python -m services serve`` (process mode) on the test registry's model, driven
by concurrent HTTP clients; worker PIDs are read from ``/admin/replicas`` and checked against the operating system.
Every wait is a bounded poll."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from datetime import timedelta

import pytest

from services.serving import Change, Scaling
from tests.conftest import ENDPOINT, MODEL, ROOT, free_port, fresh_registry, make_container, wait_for
from tests.integration.test_gateway import ROW, Client
from tests.processes import stop_process


@pytest.fixture
def database_url(tmp_path):  # SQLite only for this module
    return f"sqlite:///{tmp_path / 'console.db'}"


@pytest.fixture
def served(registry_template, tmp_path):
    uri = fresh_registry(registry_template, tmp_path / "reg")
    c = make_container(uri, f"sqlite:///{tmp_path / 'console.db'}", tmp_path)
    c.serving.ensure_endpoint(ENDPOINT, MODEL, "1")
    yield c, uri, tmp_path
    c.engine.dispose()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by its parent) is not a running worker
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@contextmanager
def serve(served, **env_extra):
    c, uri, tmp = served
    port = free_port()
    env = {"MLFLOW_TRACKING_URI": uri, "MLOPS_DATABASE_URL": c.settings.database_url, "MLOPS_DATA_DIR": str(tmp),
           "MLOPS_INGEST_URL": "off", "PATH": "/usr/bin:/bin", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
           "GIT_PYTHON_REFRESH": "quiet", "MLOPS_GATEWAY_REPLICAS": "process", **env_extra}
    log = open(tmp / f"serve-{port}.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "services", "serve", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    client = Client(port)
    try:
        wait_for("the gateway ready", lambda: proc.poll() is None and client.get("/v2/health/ready")[0] == 200,
                 timeout=120)
        client.proc, client.log = proc, tmp / f"serve-{port}.log"
        yield client
    finally:
        stop_process(proc, timeout=20)
        log.close()


def pids(client, endpoint=ENDPOINT, version="1") -> list[int]:
    pools = client.get("/admin/replicas")[2]["pools"]
    return pools.get(f"{endpoint}/{version}", {}).get("pids", [])


def ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().split(")")[-1].split()[1])


def set_scaling(c, **values):
    ep = c.serving.get_endpoint(ENDPOINT)
    c.serving.apply(ENDPOINT, Change("set_scaling", ep.resource_version, scaling=Scaling(**values)), actor="test")


class Load:
    """``clients`` closed-loop clients sending batches of ``rows`` until stopped; statuses counted."""

    def __init__(self, port: int, clients: int, rows: int = 200):
        self.stop = threading.Event()
        self.statuses: list[int] = []
        self.threads = [threading.Thread(target=self._run, args=(port, rows), daemon=True) for _ in range(clients)]
        for t in self.threads:
            t.start()

    def _run(self, port, rows):
        client = Client(port)
        while not self.stop.is_set():
            try:
                self.statuses.append(client.v1([ROW] * rows)[0])
            except OSError:
                self.statuses.append(-1)

    def close(self):
        self.stop.set()
        for t in self.threads:
            t.join(15)


def test_workers_scale_up_under_load_within_max_and_down_to_min_when_idle(served):
    c, _, _ = served
    set_scaling(c, min_replicas=1, max_replicas=2, target=1)
    with serve(served, MLOPS_GATEWAY_SCALE_DOWN_SECONDS="1", MLOPS_GATEWAY_SAMPLE_SECONDS="0.5") as client:
        (first,) = wait_for("the minimum of one worker", lambda: pids(client) if len(pids(client)) == 1 else None,
                            timeout=120)
        assert alive(first) and ppid(first) == client.proc.pid  # a real process, the gateway's child
        seen: set[int] = set()
        most = 0
        load = Load(client.port, clients=4)
        try:
            deadline = time.monotonic() + 120
            while len(seen) < 2:
                now = pids(client)
                most = max(most, len(now))
                seen.update(now)
                assert time.monotonic() < deadline, f"no second worker under load: {client.log.read_text()[-2000:]}"
                time.sleep(0.05)
            for _ in range(40):  # a few more looks under load: never above the maximum
                most = max(most, len(pids(client)))
        finally:
            load.close()
        assert most == 2, most
        assert all(s == 200 for s in load.statuses), sorted(set(load.statuses))
        assert all(alive(p) and ppid(p) == client.proc.pid for p in pids(client))
        assert client.metric("mlops_gateway_replicas", endpoint=ENDPOINT, version="1") >= 1
        gone = wait_for("back to the minimum after 1 s idle", lambda: (
            [p for p in seen if not alive(p)] if len(pids(client)) == 1 else None), timeout=120)
        assert len(gone) == len(seen) - 1
        (left,) = pids(client)
        assert alive(left)
        end = time.monotonic() + 2  # several maintenance ticks later: still the minimum
        while time.monotonic() < end:
            assert pids(client) == [left]
            time.sleep(0.1)
        history = c.serving.replica_history(ENDPOINT, c.clock() - timedelta(minutes=10), c.clock())
        assert max(n for _, v, n in history if v == "1") == 2  # the samples saw it
        st = c.serving.scaling_status(c.serving.get_endpoint(ENDPOINT))
        assert st.source == "local gateway" and st.current_replicas == 1
    wait_for("no worker left after the gateway stopped", lambda: not alive(left), timeout=30)
    last = c.serving.replica_history(ENDPOINT, c.clock() - timedelta(minutes=10), c.clock())[-1]
    assert last[1:] == ("1", 0)  # its last sample: none left
    st = c.serving.scaling_status(c.serving.get_endpoint(ENDPOINT))
    assert st.current_replicas is None and "stopped" in st.note


def test_a_hung_worker_gets_a_503_not_a_hang_and_killed_workers_are_replaced(served):
    c, _, _ = served
    set_scaling(c, min_replicas=1, max_replicas=1)
    with serve(served, MLOPS_GATEWAY_WORKER_TIMEOUT="3") as client:
        (hung,) = wait_for("one worker", lambda: pids(client) if len(pids(client)) == 1 else None, timeout=120)
        os.kill(hung, signal.SIGSTOP)  # alive, never answering
        t0 = time.monotonic()
        status, _, body = client.v1([ROW])
        assert status == 503 and "did not answer within 3 s" in body["error"], body
        assert time.monotonic() - t0 < 10
        (fresh,) = wait_for("a replacement", lambda: [p for p in pids(client) if p != hung] or None, timeout=120)
        wait_for("the hung worker killed", lambda: not alive(hung), timeout=30)
        assert client.v1([ROW])[0] == 200
        os.kill(fresh, signal.SIGSTOP)  # a request on its way to it, then it crashes: 503 at once
        answer = {}
        sender = threading.Thread(target=lambda: answer.update(r=Client(client.port).v1([ROW])))
        sender.start()
        wait_for("the request in flight", lambda: client.get("/admin/replicas")[2]["pools"][f"{ENDPOINT}/1"][
            "in_flight"] == 1, timeout=10)
        t0 = time.monotonic()
        os.kill(fresh, signal.SIGKILL)
        sender.join(10)
        status, _, body = answer["r"]
        assert status == 503 and "stopped" in body["error"], body  # its socket closed: not the 3 s timeout
        assert time.monotonic() - t0 < 10
        (third,) = wait_for("another replacement", lambda: [p for p in pids(client) if p not in (hung, fresh)] or None,
                            timeout=120)
        os.kill(third, signal.SIGKILL)  # crashed while idle
        (fourth,) = wait_for("yet another", lambda: [p for p in pids(client) if p not in (hung, fresh, third)] or None,
                             timeout=120)
        status, _, _ = client.v1([ROW])
        assert status == 200 and pids(client) == [fourth]
    wait_for("no worker left after the gateway stopped", lambda: not alive(fourth), timeout=30)


def test_workers_exit_when_the_gateway_is_killed(served):
    c, _, _ = served
    set_scaling(c, min_replicas=2, max_replicas=2)
    with serve(served) as client:
        workers = wait_for("two workers", lambda: pids(client) if len(pids(client)) == 2 else None, timeout=180)
        client.proc.kill()  # no shutdown at all: the workers read EOF and leave
        client.proc.wait(10)
        wait_for("no orphan worker", lambda: not any(alive(p) for p in workers), timeout=30)
