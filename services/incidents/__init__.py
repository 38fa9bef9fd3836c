"""Incident investigation (issue 10): one timeline of an endpoint joining the serving history, the audit
trail, the registry, the alerts and the drift alarms; what served at any moment; the suspects of an alert;
the incident report. Pure over the ports it is given; the composition root builds the :class:`Incidents`
facade the Incidents page and ``python -m services timeline`` / ``served-at`` share.

* :mod:`.events`: the :class:`Event` (kind, source, title, actor, versions, details, link) and how each
  source's records become events;
* :mod:`.timeline`: :func:`timeline` (each source read with its own window; a failing one is a marker);
* :mod:`.served`: :func:`served_at`;
* :mod:`.suspects`: :func:`suspects` (the score is documented there);
* :mod:`.report`: :func:`report` (Markdown and JSON);
* :mod:`.commands`: the CLI.
"""

from __future__ import annotations

from services.incidents.events import CHANGE_KINDS, KINDS, Event, sort_events
from services.incidents.report import report
from services.incidents.served import served_at
from services.incidents.service import Incidents
from services.incidents.suspects import suspects
from services.incidents.timeline import timeline, unavailable

__all__ = ["CHANGE_KINDS", "KINDS", "Event", "Incidents", "report", "served_at", "sort_events", "suspects",
           "timeline", "unavailable"]
