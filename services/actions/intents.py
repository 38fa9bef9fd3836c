"""The intents port: what an action is about to do, written before it touches anything.

An action writes its *intent* (the plan's hash, the state it was planned on, the state it will leave, the
registry moves) into the console database before the endpoint write, records each step it gets through, and
closes the intent when it is done. An intent that is still open when nobody is working on it any more is the
evidence of a process that stopped half-way: :mod:`services.actions.stalled` finds it and says what differs,
:mod:`services.actions.repair` finishes it.

Whether the process that opened an intent still works on it: the *lease* (``lease_until``, renewed at every
step; an apply takes seconds) is the rule that holds everywhere, a cluster included. On the same machine since
the same boot the console can also ask the operating system whether the owner's process (host, pid, and the
process's start time, so a reused pid is not mistaken for it) still runs: a dead owner is known at once.

The SQL adapter is :mod:`services.actions.intents_sql`; :class:`MemoryIntents` keeps them in a dict (the
default when no store is given, and what the unit tests use).
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from functools import lru_cache

from services.clock import Clock
from services.errors import ConsoleError, NotFound

SOURCE = "intent store"
LEASE = timedelta(minutes=2)  # an apply takes seconds; every step renews it
OPEN, ABANDONED, REPAIRING = "open", "abandoned", "repairing"  # unfinished: someone must look at them
DONE, NOT_APPLIED, REPAIRED = "done", "not_applied", "repaired"  # closed
UNFINISHED = (OPEN, ABANDONED, REPAIRING)


@dataclass(frozen=True)
class Owner:
    """The process working on an intent."""

    host: str
    pid: int
    boot_id: str = ""  # /proc/sys/kernel/random/boot_id: the same machine since the same boot
    started: str = ""  # the process's start time in clock ticks since boot (/proc/PID/stat, field 22)

    @classmethod
    def current(cls) -> Owner:
        return _current(os.getpid())

    def alive(self) -> bool | None:
        """True or False where the operating system can tell (this machine, since the same boot); None
        elsewhere (another host or container, or no /proc): then only the lease decides."""
        me = Owner.current()
        if not self.boot_id or self.boot_id != me.boot_id or self.host != me.host:
            return None
        started = _start_ticks(self.pid)
        if started is None:
            return False
        return started == self.started if self.started else True

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> Owner:
        d = d or {}
        return cls(str(d.get("host", "")), int(d.get("pid", 0) or 0), str(d.get("boot_id", "")),
                   str(d.get("started", "")))

    def __str__(self) -> str:
        return f"pid {self.pid} on {self.host}"


@lru_cache(maxsize=4)
def _current(pid: int) -> Owner:
    return Owner(socket.gethostname(), pid, _boot_id(), _start_ticks(pid) or "")


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def _start_ticks(pid: int) -> str | None:
    """The start time of process ``pid`` (None: no such process; "" when /proc cannot say)."""
    try:
        with open(f"/proc/{int(pid)}/stat") as f:
            stat = f.read()
    except FileNotFoundError:
        return None
    except OSError:
        return ""
    fields = stat[stat.rfind(")") + 2:].split()  # after "pid (comm) ": field 3 onwards
    if len(fields) > 19 and fields[0] != "Z":  # a zombie has stopped working on anything
        return fields[19]
    return None


@dataclass(frozen=True)
class Intent:
    id: int
    endpoint: str
    model: str | None
    action: str
    actor: str  # who made (or requested) the change
    approved_by: str | None
    request_id: int | None
    plan_hash: str
    plan: dict  # label, params, before, after, registry_changes
    state: str
    step: str  # how far it got: started, endpoint written, history recorded, champion moved, ...
    note: str
    owner: Owner
    started_at: datetime
    updated_at: datetime
    lease_until: datetime
    closed_at: datetime | None
    row_version: int

    @property
    def unfinished(self) -> bool:
        return self.state in UNFINISHED


class IntentStore(ABC):
    source = SOURCE

    @abstractmethod
    def open(self, *, endpoint: str, model: str | None, action: str, actor: str, approved_by: str | None,
             request_id: int | None, plan_hash: str, plan: dict, owner: Owner, now: datetime,
             lease_until: datetime) -> Intent:
        """A new open intent."""

    @abstractmethod
    def get(self, intent_id: int) -> Intent:
        """Raises NotFound for an unknown id."""

    @abstractmethod
    def unfinished(self, endpoint: str | None = None) -> list[Intent]:
        """Open, abandoned and repairing intents, oldest first."""

    @abstractmethod
    def update(self, intent_id: int, *, row_version: int, now: datetime, state: str | None = None,
               step: str | None = None, note: str | None = None, lease_until: datetime | None = None,
               owner: Owner | None = None) -> bool:
        """Compare-and-set on ``row_version`` (bumped). A closing state sets ``closed_at``. True when it won."""


class MemoryIntents(IntentStore):
    """Intents in a dict: the default when no store is given (a crash loses them: production passes the SQL
    store) and the unit tests' fake. ``fail`` (method name -> exception) injects a broken store."""

    source = "intent store (memory)"

    def __init__(self):
        self.rows: dict[int, Intent] = {}
        self.ids = itertools.count(1)
        self.fail: dict[str, Exception] = {}
        self._lock = threading.Lock()

    def _check(self, method: str) -> None:
        exc = self.fail.get(method) or self.fail.get("*")
        if exc is not None:
            raise exc

    def open(self, *, endpoint, model, action, actor, approved_by, request_id, plan_hash, plan, owner, now,
             lease_until) -> Intent:
        self._check("open")
        with self._lock:
            iid = next(self.ids)
            self.rows[iid] = Intent(iid, endpoint, model, action, actor, approved_by, request_id, plan_hash,
                                    dict(plan), OPEN, "started", "", owner, now, now, lease_until, None, 1)
            return self.rows[iid]

    def get(self, intent_id: int) -> Intent:
        self._check("get")
        if intent_id not in self.rows:
            raise NotFound(f"no intent #{intent_id}", source=self.source)
        return self.rows[intent_id]

    def unfinished(self, endpoint: str | None = None) -> list[Intent]:
        self._check("unfinished")
        return [i for _, i in sorted(self.rows.items())
                if i.unfinished and (endpoint is None or i.endpoint == endpoint)]

    def update(self, intent_id, *, row_version, now, state=None, step=None, note=None, lease_until=None,
               owner=None) -> bool:
        self._check("update")
        with self._lock:
            old = self.rows.get(intent_id)
            if old is None or old.row_version != row_version:
                return False
            changes = {k: v for k, v in (("state", state), ("step", step), ("note", note),
                                         ("lease_until", lease_until), ("owner", owner)) if v is not None}
            if state is not None and state not in UNFINISHED:
                changes["closed_at"] = now
            self.rows[intent_id] = replace(old, updated_at=now, row_version=row_version + 1, **changes)
            return True


@dataclass
class Progress:
    """A running action's intent as its owner moves it on. Best effort: a failed update never stops the action
    (an intent left open is found by its lease and shown as needing repair, never silently lost)."""

    store: IntentStore
    clock: Clock
    lease: timedelta
    id: int
    row_version: int

    def step(self, step: str) -> None:
        self._update(step=step, lease_until=self.clock() + self.lease)

    def close(self, state: str, note: str = "") -> None:
        self._update(state=state, note=note[:2000])

    def give_up(self, note: str) -> None:
        """Leave it for repair at once: the change is live (or its fate unknown) and this process cannot finish."""
        self._update(state=ABANDONED, note=note[:2000])

    def _update(self, **kw) -> bool:
        try:
            won = self.store.update(self.id, row_version=self.row_version, now=self.clock(), **kw)
        except ConsoleError:
            return False
        self.row_version += 1 if won else 0
        return won
