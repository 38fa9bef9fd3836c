"""The tables ``bench/load.py`` prints (markdown), from what its phases collected."""

from __future__ import annotations

import math
import os
import statistics
from collections import Counter, defaultdict
from pathlib import Path

RUN_TARGET_S, BROWSER_TARGET_S = 1.0, 3.0


def pct(xs: list[float], q: float) -> float:
    """The q-quantile, nearest rank (p95 of 20 samples is the 19th)."""
    xs = sorted(x for x in xs if not math.isnan(x))
    return xs[min(len(xs) - 1, max(0, math.ceil(q * len(xs)) - 1))] if xs else float("nan")


def s(x: float) -> str:
    return "—" if math.isnan(x) else f"{x:.2f} s"


def _by_label(samples, phase: str) -> dict[tuple[str, str], list]:
    out: dict[tuple[str, str], list] = defaultdict(list)
    for x in samples:
        if x.phase == phase:
            out[(x.kind, x.label)].append(x)
    return out


def runs_table(samples) -> tuple[list[str], list[tuple[str, float]]]:
    load, alone = _by_label(samples, "load"), _by_label(samples, "alone")
    lines = ["| | runs | p50 | p95 | max | p95 alone | p95 load / alone | target |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    pages = []
    order = {"load": 0, "widget": 1, "action": 2}
    for kind, label in sorted(load, key=lambda k: (order[k[0]], k[1])):
        xs = [x.seconds for x in load[(kind, label)]]
        a = [x.seconds for x in alone.get((kind, label), [])]
        p95, a95 = pct(xs, 0.95), pct(a, 0.95)
        target = ""
        if kind == "load":
            pages.append((label, p95))
            target = "< 1 s — " + ("met" if p95 < RUN_TARGET_S else "**missed**")
        name = f"`{label}`" if kind == "load" else label
        lines.append(f"| {name} | {len(xs)} | {s(pct(xs, 0.5))} | {s(p95)} | {s(max(xs, default=float('nan')))} "
                     f"| {s(a95)} | {p95 / a95:.1f}× | {target} |" if a else
                     f"| {name} | {len(xs)} | {s(pct(xs, 0.5))} | {s(p95)} | {s(max(xs, default=float('nan')))} "
                     f"| — | — | {target} |")
    return lines, pages


def browser_table(samples, how: str = "open") -> tuple[list[str], float]:
    """Page-ready per view for one way of getting there (``how``: "open" a URL in a new tab, "switch" pages in the
    tab); the first visits (fresh context) are opens."""
    samples = [x for x in samples if x[6] == how or x[0] == "alone-first"]
    first_col = "first visit alone (nothing cached): median, boot + script" if how == "open" else "—"
    lines = [f"| view | {'loads' if how == 'open' else 'switches'} | p50 | p95 | max | median alone | alone: boot + "
             f"script | load: boot + script (medians) | {first_col} | failed |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    by: dict[tuple[str, str], list[float]] = defaultdict(list)
    split: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for phase, view, ms, _err, boot, script, _how in samples:
        by[(phase, view)].append(ms / 1000)
        # boot: navigation (or the click) -> the first run starts; script: first run -> last ends
        if not any(math.isnan(x) for x in (ms, boot, script)):
            split[(phase, view)].append((boot / 1000, script / 1000))

    def parts(key) -> str:
        xs = split.get(key)
        return f"{s(statistics.median(b for b, _ in xs))} + {s(statistics.median(r for _, r in xs))}" if xs else "—"

    every = []
    for view in dict.fromkeys(x[1] for x in samples):
        xs = by.get(("load", view), [])
        every += xs
        alone = by.get(("alone", view), [])
        failed = sum(1 for x in xs if math.isnan(x))
        cold = by.get(("alone-first", view), []) if how == "open" else []
        first = f"{s(statistics.median(cold))}: {parts(('alone-first', view))}" if cold else "—"
        lines.append(f"| `{view}` | {len(xs)} | {s(pct(xs, 0.5))} | {s(pct(xs, 0.95))} | "
                     f"{s(max([x for x in xs if not math.isnan(x)], default=float('nan')))} | "
                     f"{s(statistics.median(alone)) if alone else '—'} | {parts(('alone', view))} | "
                     f"{parts(('load', view))} | {first} | {failed} |")
    p95 = pct(every, 0.95)
    lines.append(f"| **all views** | {len(every)} | {s(pct(every, 0.5))} | **{s(p95)}** | "
                 f"{s(max([x for x in every if not math.isnan(x)], default=float('nan')))} | | | | | "
                 f"{sum(1 for x in every if math.isnan(x))} |")
    return lines, p95


def cache_table(caches: list[dict], n: int) -> list[str]:
    lines = [f"| page | session 1 (caches just cleared) | its reads | sessions 2–{n} at once: median, max "
             "| their reads, all together |", "|---|---:|---|---:|---|"]

    def reads(c: dict) -> str:
        parts = [f"{c['mlflow_calls']} MLflow calls"] + [f"{c[k]} {k} reads" for k in ("metrics", "predictions")
                                                           if c[k]]
        return ", ".join(parts)

    for c in caches:
        lines.append(f"| `{c['page']}` | {s(c['first_s'])} | {reads(c['first_calls'])} | "
                     f"{s(statistics.median(c['rest_s']))}, {s(max(c['rest_s']))} | {reads(c['rest_calls'])} |")
    return lines


def report(r: dict) -> None:
    args, samples = r["args"], r["ctx"].samples
    t0, c0, cpu0, up0, rss0, me0 = r["load_start"]
    t1, c1, cpu1, up1, rss1, me1 = r["load_end"]
    wall = t1 - t0
    load = [x for x in samples if x.phase == "load"]
    print(f"\n### Load: {args.sessions} sessions ({args.actors} acting) for {wall / 60:.1f} min, think "
          f"{args.think[0]:g}–{args.think[1]:g} s, live traffic (`up`: gateway, ingest, alert evaluator, demo "
          f"traffic), {getattr(args, 'consoles', 1)} console process(es)\n")
    print(f"{len(load)} script runs under load ({len(load) / wall:.1f}/s offered, "
          f"{len(load) / wall * 60 / args.sessions:.1f} per session per minute); "
          f"{r['predictions_after'] - r['predictions_before']:,} predictions logged by the live traffic during the "
          f"bench; {r['weights_applied']} canary-weight changes applied through the service layer.\n")
    print("**Script run** (wall time from the rerun request to `script_finished`, as the client sees it), per page "
          "load, widget change and action step; the baseline is one session alone in the same run:\n")
    lines, pages = runs_table(samples)
    print("\n".join(lines))
    worst = max(pages, key=lambda p: p[1]) if pages else ("—", float("nan"))

    browser_p95 = switch_p95 = float("nan")
    if r["browser"]:
        how = ("a fresh context per load: a first visit each time" if r["args"].browser_fresh else
               "one browser session: each load a new tab, page load and Streamlit session, the browser's cache kept")
        print(f"\n**Browser page-ready, opening a URL** (Chromium, {how}; during the load; ready = script "
              "finished, title and content visible, nothing spinning; boot = navigation to the first script run's "
              "start):\n")
        lines, browser_p95 = browser_table(r["browser"])
        print("\n".join(lines))
        if any(x[6] == "switch" for x in r["browser"]):
            print("\n**Browser page-ready, switching pages in the tab** (the same session: a click on the page in "
                  "the sidebar; boot = the click to the script run's start):\n")
            lines, switch_p95 = browser_table(r["browser"], "switch")
            print("\n".join(lines))

    errors = [(x.label, e) for x in load for e in x.errors]
    disconnects = [e for _, e in errors if e.startswith("disconnect")]
    print(f"\n**Errors under load: {len(errors)}** (exceptions drawn, error boxes other than a conflict message, "
          f"runs not finished normally: {len(errors) - len(disconnects)}; disconnects and timeouts: "
          f"{len(disconnects)}); browser loads failed: {sum(1 for x in r['browser'] if x[3])}.")
    for (label, e), n in Counter(errors).most_common(8):
        print(f"- {n} × `{label}`: {e[:240]}")
    outcomes = Counter(x.outcome for x in load if x.outcome)
    messages = Counter(m.split(" — ")[0] for x in load for m in x.messages)
    print(f"\nActing: {outcomes['opened']} dry runs opened, {outcomes['refused']} refused while planning, "
          f"{outcomes['applied']} applied, {outcomes['conflict']} conflicts, {outcomes['dismissed']} dismissed; "
          "concurrency shown as a clear message: " + (", ".join(f"{n} × {k}" for k, n in messages.items()) or "none")
          + ".")
    examples = list(dict.fromkeys(m for x in load for m in x.messages))[:2]
    for m in examples:
        print(f"  e.g. \"{m[:220]}\"")

    print(f"\n**Caches shared across sessions** (the data caches cleared by *Refresh data*, then session 1 loads the "
          f"page, then the {args.sessions - 1} others load it at the same moment):\n")
    print("\n".join(cache_table(r["caches"], args.sessions)))
    print(f"\nThe service container (`st.cache_resource`) was built {r['counters']['container_builds']}× for every "
          f"session of the run. Under load: {c1['mlflow_calls'] - c0['mlflow_calls']:,} MLflow calls, "
          f"{c1['metrics'] - c0['metrics']:,} metrics reads and {c1['predictions'] - c0['predictions']:,} "
          f"prediction-log reads for {len(load):,} script runs.")
    if any(c["problems"] for c in r["caches"]):
        print("cache phase problems: " + "; ".join(p for c in r["caches"] for p in c["problems"])[:500])

    stats = r["stats"]
    rss = [x[1] for x in stats]
    print(f"\n**Console process** (Streamlit and its children, `/proc`): RSS at start {r['start'][0]:.0f} MB, after "
          f"warm-up {r['after_warmup'][0]:.0f} MB, at the start of the load {rss0:.0f} MB, at the end {rss1:.0f} MB, "
          f"max {max(rss):.0f} MB. CPU under load: {cpu1 - cpu0:.1f} s in {wall:.0f} s "
          f"({(cpu1 - cpu0) / wall:.2f} cores; one Python process is bound to ~1 by the GIL); `up` (gateway, ingest, "
          f"traffic): {up1 - up0:.1f} s; this load generator (20 protocol clients and Playwright's driver): "
          f"{me1 - me0:.1f} s. 1-min load average {min(x[4] for x in stats):.1f}–"
          f"{max(x[4] for x in stats):.1f} on {os.cpu_count()} CPUs.")
    step = max(1, round(60 / args.sample_every))
    print("RSS samples (every minute): " + ", ".join(f"{t / 60:.0f} min {m:.0f} MB" for t, m, *_ in stats[::step]))

    if r.get("gc"):  # --profile: the console's garbage collections over its whole life (all phases)
        g = r["gc"]
        print("\nGarbage collections in the console (whole run, all phases): " + ", ".join(
            f"gen{i}: {g.get(f'gen{i} count', 0):,} taking {g.get(f'gen{i} seconds', 0.0):.1f} s" for i in range(3)))
    print("\n**Targets**")
    print(f"- p95 script run per page < 1 s: {'met' if worst[1] < RUN_TARGET_S else '**missed**'} "
          f"(worst `{worst[0]}` {s(worst[1])})")
    def verdict(p95: float) -> str:
        return f"{'met' if p95 < BROWSER_TARGET_S else '**missed**'} ({s(p95)})"

    print("- browser p95 page-ready < 3 s: " + ("not measured (--no-browser)" if math.isnan(browser_p95) else
                                             f"opening a URL {verdict(browser_p95)}"
                                             + ("" if math.isnan(switch_p95) else
                                                f"; switching pages {verdict(switch_p95)}")))
    print(f"- no errors: {'met' if not errors else f'**missed** ({len(errors)})'}")
    print(f"- memory bounded: RSS {rss0:.0f} → {rss1:.0f} MB over {wall / 60:.1f} min of load"
          + (" (run with --minutes 30 for the issue's figure)" if wall < 25 * 60 else ""))


def profile_summary(folded: Path, title: str, top: int = 25) -> None:
    """Where the script threads spent their (wall) time: by page, and the functions with the most inclusive and
    self samples (``bench/_load_server.profiler``'s collapsed stacks)."""
    stacks = []
    for line in folded.read_text().splitlines():
        stack, n = line.rsplit(" ", 1)
        stacks.append((stack.split(";"), int(n)))
    total = sum(n for _, n in stacks)
    if not total:
        return
    incl: Counter = Counter()
    self_: Counter = Counter()
    pages: Counter = Counter()
    for frames, n in stacks:
        for f in set(frames):
            incl[f] += n
        self_[frames[-1]] += n
        page = next((f.split(":")[0] for f in frames if f.startswith("pages/")), "(app, sidebar, other)")
        pages[page] += n
    print(f"\n**Profile, {title}** ({total:,} samples of the script threads, wall time):\n")
    print("by page: " + ", ".join(f"`{p}` {n / total:.0%}" for p, n in pages.most_common()))
    print("\n| inclusive | function | | self | function |\n|---:|---|---|---:|---|")
    inc, sel = incl.most_common(top), self_.most_common(top)
    for i in range(top):
        a = f"{inc[i][1] / total:.0%} | `{inc[i][0]}`" if i < len(inc) else " | "
        b = f"{sel[i][1] / total:.0%} | `{sel[i][0]}`" if i < len(sel) else " | "
        print(f"| {a} | | {b} |")


def memory_growth(snap: Path, top: int = 15) -> None:
    """What the load phase allocated that the console still held at its end (after a full collection), by where
    it was allocated: the innermost frame of this repository (dashboard/, services/) and the innermost of all."""
    import tracemalloc

    snapshot = tracemalloc.Snapshot.load(str(snap)).filter_traces([
        tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen importlib._bootstrap>")])
    root = str(Path(__file__).resolve().parent.parent) + "/"
    by: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])

    def short(f) -> str:
        name = f.filename.split("site-packages/", 1)[-1].replace(root, "")
        return f"{name}:{f.lineno}"

    for st in snapshot.statistics("traceback"):
        frames = list(reversed(st.traceback))  # most recent call first (a Traceback is oldest first)
        ours = next((f for f in frames if f.filename.startswith(root) and "/.venv/" not in f.filename), None)
        key = (short(ours) if ours else "—", short(frames[0]))
        by[key][0] += st.size
        by[key][1] += st.count
    total = sum(size for size, _ in by.values())
    print(f"\n**Memory the load allocated and the console still held at its end** (tracemalloc, after a full "
          f"collection): {total / 2**20:.1f} MB in {sum(n for _, n in by.values()):,} blocks. Top {top} by where:\n")
    print("| MB | blocks | innermost frame of this repository | allocated at |\n|---:|---:|---|---|")
    for (ours, at), (size, n) in sorted(by.items(), key=lambda kv: -kv[1][0])[:top]:
        print(f"| {size / 2**20:.2f} | {n:,} | `{ours}` | `{at}` |")
