"""What the people of ``bench/load.py`` do: browse every page, change widgets, and act — over Streamlit's own
websocket protocol (``tests/streamlit_ws.py``), many sessions in one asyncio loop.

Each task is what one person does in one go: open a page (a random variant of its URL: another model, version,
endpoint, time range…); open a page and change a widget on it (the Monitoring and Incidents time range, the Drift
feature, the Audit actor filter, the Approvals status, the Models search); or, as ``alice`` (an operator; a new
session starts as the viewer ``carol``, so an acting session switches the sidebar's ``dev-identity`` first),
set the demo canary's weight: open Deployments, change the weight (20 ↔ 30 %), open the dry run
(``action-canary``: the confirmation dialog), read it, then either dismiss it or tick the warning, give a reason
and Confirm. Two people confirming against the same state is a conflict: the dialog says what changed
("Changed meanwhile") and offers "Re-read and close" — counted as a conflict shown, not as an error. A plan made
on a state where the weight is already the one asked for is refused the same clear way ("Refused … already
gets").

Every run is a :class:`Sample`: its label (the page, or ``page · widget``), the wall time from the rerun request
to ``script_finished``, and what went wrong: exceptions drawn, error boxes that are not such a concurrency
message, a run that did not finish normally, a closed websocket or a timeout (the session then reconnects, as a
browser would, as a new session).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.streamlit_ws import Run, StreamlitProtocolError, StreamlitSession

MODEL, REGRESSOR = "breast-cancer-classifier", "diabetes-regressor"
ENDPOINTS = ("cancer-screening", "diabetes-risk")
ACT_ENDPOINT, WEIGHTS = "cancer-screening", (20, 30)
ACTOR = "alice"

# page -> a random variant of its URL
PAGES: dict[str, Callable[[random.Random], str]] = {
    "overview": lambda r: "/",
    "models": lambda r: "/models",
    "model": lambda r: f"/models?model={r.choice([MODEL, REGRESSOR])}",
    "version": lambda r: f"/models?model={MODEL}&version={r.randint(1, 5)}",
    "compare": lambda r: f"/models?model={MODEL}&compare={','.join(sorted(r.sample('12345', 2)))}",
    "deployments": lambda r: f"/deployments?endpoint={r.choice(ENDPOINTS)}",
    "monitoring": lambda r: f"/monitoring?endpoint={r.choice(ENDPOINTS)}&from={r.choice(['-1h', '-6h', '-24h'])}"
                            "&to=now",
    "incidents": lambda r: f"/incidents?endpoint={r.choice(ENDPOINTS)}&from=-24h&to=now",
    "drift": lambda r: f"/drift?endpoint={r.choice(ENDPOINTS)}&from=-7d&to=now",
    "explain": lambda r: f"/explain?model={MODEL}&version={r.choice('245')}",
    "approvals": lambda r: "/approvals",
    "audit": lambda r: r.choice(["/audit", f"/audit?actor={ACTOR}"]),
}
# page -> the widget a person changes there (texts for a text input; None: another of its options)
WIDGETS: dict[str, tuple[str, list[str] | None]] = {
    "monitoring": ("mon-range", None),
    "incidents": ("inc-range", None),
    "drift": ("drift-feature", None),
    "audit": ("audit-actor", None),
    "approvals": ("approvals-status", None),
    "models": ("model-search", ["cancer", "diab", "regressor", ""]),
}
CONCURRENCY_MESSAGES = ("**Changed meanwhile**", "**Refused** — the canary of")


@dataclass
class Sample:
    label: str
    kind: str  # load | widget | action
    seconds: float  # nan when the run never finished
    at: float  # time.monotonic() when it ended
    session: int
    errors: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)  # conflicts/refusals shown as a clear message
    outcome: str = ""  # action steps: opened | refused | applied | conflict | dismissed
    phase: str = ""


class SessionBroken(Exception):
    """The websocket closed or a run timed out: the person reloads (a new session)."""


@dataclass
class Context:
    url: str
    think: tuple[float, float]  # seconds between steps, uniform
    apply_share: float  # of opened dry runs, the share confirmed (the rest dismissed)
    run_timeout: float
    samples: list[Sample] = field(default_factory=list)
    phase: str = ""
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def pause(self, rng: random.Random) -> None:
        if self.think[1] > 0:
            try:
                await asyncio.wait_for(self.stop.wait(), rng.uniform(*self.think))
            except TimeoutError:
                pass


def classify(run: Run) -> tuple[list[str], list[str]]:
    """(errors, concurrency messages) of a run."""
    messages = [t for t in run.error_alerts if t.startswith(CONCURRENCY_MESSAGES)]
    errors = [p for p in run.problems if not (p.startswith("st.error ") and p[9:] in messages)]
    return errors, messages


class Person:
    """One session and what its person does."""

    def __init__(self, ctx: Context, index: int, *, acts: bool, seed: int):
        self.ctx, self.index, self.acts = ctx, index, acts
        self.rng = random.Random(seed)
        self.s: StreamlitSession | None = None

    async def connect(self) -> None:
        if self.s is not None:
            try:
                await self.s.close()
            except Exception:  # noqa: BLE001 - the old socket is gone either way
                pass
        self.s = StreamlitSession(self.ctx.url, timeout=self.ctx.run_timeout)
        await self.s.connect()

    async def step(self, label: str, kind: str, coro, outcome: Callable[[Run], str] | None = None) -> Run:
        try:
            run = await coro
        except StreamlitProtocolError as exc:
            broken = "closed" in str(exc) or "no script_finished" in str(exc) or "cannot connect" in str(exc)
            self.ctx.samples.append(Sample(label, kind, float("nan"), time.monotonic(), self.index,
                                           [("disconnect: " if broken else "unexpected page: ") + str(exc)[:300]],
                                           phase=self.ctx.phase))
            raise SessionBroken from exc
        errors, messages = classify(run)
        self.ctx.samples.append(Sample(label, kind, run.seconds, time.monotonic(), self.index, errors, messages,
                                       outcome(run) if outcome else "", self.ctx.phase))
        return run

    async def open(self, page: str) -> Run:
        return await self.step(page, "load", self.s.open(PAGES[page](self.rng)))

    # -- tasks ---------------------------------------------------------------------------------------------
    async def browse(self, page: str) -> None:
        await self.open(page)

    async def change(self, page: str) -> None:
        key, texts = WIDGETS[page]
        await self.open(page)
        await self.ctx.pause(self.rng)
        w = self.s.widget(key)
        if texts is not None:
            value = self.rng.choice(texts)
        else:
            shown = self.s.value(key)
            others = [o for o in w.options if o not in (shown if isinstance(shown, list) else [shown]) + ["Custom…"]]
            if not others:
                return
            value = self.rng.choice(others)
        await self.step(f"{page} · {key}", "widget", self.s.set(key, value))

    async def act(self) -> None:
        """Set the demo canary's weight through the dry-run dialog."""
        s = self.s
        await self.step("deployments", "load", s.open(f"/deployments?endpoint={ACT_ENDPOINT}"))
        if not str(s.value("dev-identity")).startswith(ACTOR):
            await self.step("sidebar · identity → alice", "action", s.set("dev-identity", ACTOR))
        await self.ctx.pause(self.rng)
        shown = int(s.value("canary-weight"))
        await self.step("deployments · canary-weight", "widget",
                        s.set("canary-weight", WEIGHTS[1] if shown == WEIGHTS[0] else WEIGHTS[0]))
        run = await self.step("dry run (dialog opens)", "action", s.click("action-canary"),
                              lambda r: "opened" if r.open_dialog else "refused")
        if not run.open_dialog:
            return  # refused while planning (someone set that weight meanwhile): said on the page
        await self.ctx.pause(self.rng)
        if self.rng.random() >= self.ctx.apply_share:
            await self.step("dialog · dismiss", "action", s.dismiss(), lambda r: "dismissed")
            return
        if "ack-warnings" in s.widgets:
            await self.step("dialog · tick warnings read", "action", s.set("ack-warnings", True))
        await self.step("dialog · reason", "action", s.set("reason", f"load bench, session {self.index}"))
        run = await self.step("confirm (applies)", "action", s.click("confirm"),
                              lambda r: "conflict" if r.open_dialog else "applied")
        if run.open_dialog and "reread" in s.widgets:
            await self.step("dialog · re-read and close", "action", s.click("reread"))

    def tasks(self) -> list[tuple[float, Callable]]:
        """(weight, task): every page, every widget change, and acting for the sessions that act."""
        out = [(1.0, lambda p=p: self.browse(p)) for p in PAGES]
        out += [(1.0, lambda p=p: self.change(p)) for p in WIDGETS]
        if self.acts:
            out.append((4.0, self.act))
        return out

    async def loop(self) -> None:
        """Tasks at random, a pause between them, until the context stops."""
        tasks = self.tasks()
        weights = [w for w, _ in tasks]
        await self.connect()
        await self.ctx.pause(self.rng)  # people do not arrive in lock-step
        while not self.ctx.stop.is_set():
            task = self.rng.choices(tasks, weights)[0][1]
            try:
                await task()
            except SessionBroken:
                await self.connect()
            await self.ctx.pause(self.rng)
        await self.s.close()

    async def every_task_once(self) -> None:
        """Each task once, no pause (one session alone: the baseline)."""
        for _, task in self.tasks():
            try:
                await task()
            except SessionBroken:
                await self.connect()
