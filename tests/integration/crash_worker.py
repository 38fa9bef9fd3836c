"""A separate OS process that dies at an exact point of an action: ``os._exit(137)`` (what SIGKILL leaves: no
``finally``, no ``except``, no cleanup) right after the endpoint write, when the action goes on to move the
registry alias. The hook is monkeypatched in this process only (the real MLflow adapter's ``set_alias``);
production code has no test hook."""

from __future__ import annotations

import os
from pathlib import Path

KILLED = 137


def run(action: str, tracking_uri: str, database_url: str, data_dir: str, policy: dict | None,
        request_id: int | None) -> None:
    from tests.conftest import ENDPOINT, Clock, make_container

    c = make_container(tracking_uri, database_url, Path(data_dir), clock=Clock(), policy=policy)
    _die_before_the_alias_move(c)
    if action == "approve":
        c.actions.approve(c.directory.get("bob"), request_id, "ship it")
    else:
        alice = c.directory.get("alice")
        c.actions.execute(c.actions.plan(alice, action, ENDPOINT), alice, "ship the canary")
    os._exit(0)  # never reached when the hook fired: the parent asserts 137


def approve_in(env: dict, request_id: int) -> None:
    """bob approves ``request_id`` in the console configured by ``env`` (the app's settings), and dies."""
    from services.composition import build
    from services.settings import Settings

    c = build(Settings.from_env(env, secrets_path=Path(env["MLOPS_DATA_DIR"]) / "none.toml"))
    _die_before_the_alias_move(c)
    c.actions.approve(c.directory.get("bob"), request_id, "ship it")
    os._exit(0)


def _die_before_the_alias_move(c) -> None:
    def killed(*_args, **_kwargs):
        os._exit(KILLED)  # between the endpoint write and the alias move

    c.registry.set_alias = killed


def approve_retraining(tracking_uri: str, database_url: str, data_dir: str, policy: dict, request_id: int) -> None:
    """bob approves a retraining request and dies once its run has started and been recorded, right before the
    request is marked approved."""
    from tests.conftest import Clock, make_container

    c = make_container(tracking_uri, database_url, Path(data_dir), clock=Clock(), policy=policy)
    real = c.approvals.transition

    def transition(rid, **kw):
        if kw.get("to_status") == "approved":
            os._exit(KILLED)
        return real(rid, **kw)

    c.approvals.transition = transition
    c.actions.approve(c.directory.get("bob"), request_id, "go")
    os._exit(0)
