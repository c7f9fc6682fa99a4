"""Reports of the perf suite: medians and pooled percentiles per mode, one markdown report
per scenario, the #7 target table, and a hand-written SVG plot (no matplotlib needed)."""

import collections
import math
import statistics

from daemon_bench import log_findings, pct


# ---------------------------------------------------------------- report

def med(vals):
    # None: a figure no run of this mode has (the baseline of an ours-only run)
    vals = [v for v in (vals or []) if v is not None]
    return statistics.median(vals) if vals else None


def f3(x):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"


def spread(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "–"
    m = statistics.median(vals)
    return f3(m) if len(vals) == 1 else f"{f3(m)} ({f3(min(vals))}..{f3(max(vals))})"


def ratio(o, t):
    if o is None or t is None or t == 0:
        return "–"
    return f"{o / t:.2f}" if abs(o / t) >= 0.1 else f"{o / t:.2g}"


def summarise(name, sc, runs):
    """Per mode: medians over rounds of the per-run figures, percentiles over pooled
    samples. Returns {mode: {measure: value}} and the raw rows."""
    out = {}
    base = med(r["server_cpu"] for r in runs if r["mode"] == "base")
    for mode in sc["modes"]:
        rs = [r for r in runs if r["mode"] == mode]
        s = {}
        for r in rs:
            r["server_net"] = r["server_cpu"] - base if base is not None else None
            r["total_net"] = (r["server_net"] + r["daemon_cpu"]
                              if r["server_net"] is not None else None)
            r["total"] = r["server_cpu"] + r["daemon_cpu"]
        for k in ("server_cpu", "server_net", "daemon_cpu", "total", "total_net",
                  "producer_backend_cpu", "bench_cpu", "sessions_min", "xact_s", "conn_median",
                  "conn_max", "rss_mb", "hwm_mb"):
            s[k] = [r.get(k) for r in rs]
        for k in ("latency", "first_event", "lateness", "lateness_busy", "lateness_first",
                  "lateness_idle", "lateness_quiet", "lateness_window", "lateness_quiet_idle"):
            pooled = [x for r in rs for x in r.get(k, [])]
            s[k + "_n"] = len(pooled)
            for p in (50, 99):
                s[f"{k}_p{p}"] = pct(pooled, p) if pooled else None
            s[k + "_max"] = max(pooled) if pooled else None
            s[k + "_min"] = min(pooled) if pooled else None
        s["unticked"] = sum(r.get("unticked", 0) for r in rs)
        s["pending"] = sum(r.get("pending", 0) for r in rs)
        out[mode] = s
    return out


ROWS = [
    ("server cpu-s per 60 s (producers' backends taken off)", "server_cpu", "cpu"),
    ("server cpu-s above the no-daemon baseline", "server_net", "cpu"),
    ("daemon cpu-s per 60 s", "daemon_cpu", "cpu"),
    ("**total cpu-s per 60 s above baseline (server + daemon)**", "total_net", "cpu"),
    ("total cpu-s per 60 s, server + daemon (baseline included)", "total", "cpu"),
    ("producers' + probes' backends cpu-s per 60 s (reported apart)", "producer_backend_cpu",
     "cpu"),
    ("benchmark process cpu-s per 60 s (reported apart)", "bench_cpu", "cpu"),
    ("daemon RSS MB (end of window)", "rss_mb", "cpu"),
    ("daemon peak RSS MB (VmHWM)", "hwm_mb", "cpu"),
    ("connections held, median of 1 s samples", "conn_median", "cpu"),
    ("connections held, max", "conn_max", "cpu"),
    ("new daemon sessions per minute", "sessions_min", "cpu"),
    ("transactions per second in the cluster, producers' taken off", "xact_s", "cpu"),
]


def render_scenario(name, sc, runs, summary, args, meta):
    lines = [f"# Scenario {name}: {sc['title']}", ""]
    lines += meta + [
        f"- databases: {sc['n']} x {sc['q']} queues, "
        + ("our schema (sql/pgq)" if sc["kind"] == "o" else "the real pgq extension")
        + f"; queue settings: defaults" + (f" with {sc['set']}" if sc["set"] else ""),
        f"- window {sc.get('window', args.window)} s after warm-up "
        f"{sc.get('warmup', args.warmup)} s, rounds {args.rounds}, modes "
        f"{', '.join(sc['modes'])} (alternating order)",
    ]
    for k in ("probe_rate", "burst_every", "burst", "busy", "busy_rate", "move_every",
              "quiet_every"):
        if k in sc:
            lines.append(f"- {k} = {sc[k]}")
    # the queue settings both daemons ran with
    seen = {}
    for r in runs:
        if "settings" in r:
            seen.setdefault(r["mode"], set()).add(r["settings"])
    lines += ["", "Queue settings read before each daemon run:", ""]
    for mode, ss in seen.items():
        for s in sorted(ss):
            lines.append(f"- {mode}: {s}")
    if "c" in seen and "ours" in seen:
        same = seen["c"] == seen["ours"]
        lines.append(f"- **equal for both daemons: {'yes' if same else 'NO'}**")
        meta_ok = same
    else:
        meta_ok = True
    has_base = "base" in sc["modes"]
    for m in ("c", "ours"):
        # a development run of one daemon (--modes): the other's cells stay empty
        summary.setdefault(m, collections.defaultdict(lambda: None))
    names = {"base": "no daemon", "c": "C pgqd", "ours": "ours"}
    lines += ["", "| measure | " + " | ".join(names[m] for m in sc["modes"])
              + " | ratio ours/C |", "|---|" + "---|" * len(sc["modes"]) + "---|"]
    for label, key, _ in ROWS:
        vals = {m: summary[m][key] for m in sc["modes"]}
        if all(v is None for m in vals for v in vals[m]):
            continue
        if key in ("server_net", "total_net") and not has_base:
            continue
        cells = [spread(vals[m]) for m in sc["modes"]]
        lines.append(f"| {label} | " + " | ".join(cells) + " | "
                     + ratio(med(vals.get("ours", [])), med(vals.get("c", []))) + " |")
    for key, label in (("latency", "insert -> tick latency ms"),
                       ("first_event", "first event in a quiet database -> tick ms"),
                       ("lateness", "tick lateness ms, all ticks"),
                       ("lateness_busy", "tick lateness ms, busy (max_lag or max_count due)"),
                       ("lateness_first", "tick lateness ms, first event after max_lag quiet"),
                       ("lateness_idle", "tick lateness ms, idle ticks (no events)"),
                       ("lateness_quiet", "tick lateness ms, first event in a quiet database"),
                       ("lateness_window", "tick lateness ms, busy DBs, every tick in the window "
                        "(also before they became busy)"),
                       ("lateness_quiet_idle", "tick lateness ms, idle ticks of quiet databases")):
        if not summary["ours"][key + "_n"] and not summary["c"][key + "_n"]:
            continue
        for stat in ("p50", "p99", "max", "min", "n"):
            o = summary["ours"][f"{key}_{stat}"]
            t = summary["c"][f"{key}_{stat}"]
            lines.append(f"| {label} {stat} | " + ("– | " if has_base else "")
                         + f"{f3(t)} | {f3(o)} | "
                         + (ratio(o, t) if stat in ("p50", "p99", "max") else "") + " |")
    lines.append(f"| probe events never ticked (C / ours) | " + ("– | " if has_base else "")
                 + f"{summary['c']['unticked']} | {summary['ours']['unticked']} | |")
    lines.append(f"| due ticks still pending at window end (C / ours) | "
                 + ("– | " if has_base else "")
                 + f"{summary['c']['pending']} | {summary['ours']['pending']} | |")
    warn = []
    lines += ["", "Raw figures per run:", "",
              "| round | mode | server cpu | daemon cpu | producers cpu | RSS MB | conns med/max "
              "| sessions/min | tx/s | events sent | producer behind ms | warm-up |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        lines.append(
            f"| {r['round']} | {r['mode']} | {r['server_cpu']:.2f} | {r['daemon_cpu']:.2f} | "
            f"{r['producer_backend_cpu']:.2f} | "
            + (f"{r['rss_mb']:.1f}" if "rss_mb" in r else "–")
            + f" | {r.get('conn_median', '–')}/{r.get('conn_max', '–')} | "
            f"{r['sessions_min']:.1f} | {r['xact_s']:.1f} | {r.get('sent', '–')} | "
            f"{r.get('producer_behind_max_ms', 0):.0f} | {r.get('warm', '–')} |")
        short = traffic_shortfall(sc, r)
        if short:
            warn.append(f"- **round {r['round']} {r['mode']}: {short}; its figures are not "
                        "comparable**")
        if r.get("traffic_error"):
            lines.append(f"|  | traffic error: {r['traffic_error']} |||||||||")
    if warn:
        lines += ["", "Traffic that fell short (the producer could not keep its rate):", ""]
        lines += warn
    lines += ["", "Daemon logs:", ""]
    for r in runs:
        if "log" in r:
            lines.append("- " + log_findings(r["log"], f"{r['mode']} round {r['round']}"))
    lines.append("")
    return "\n".join(lines), meta_ok


def traffic_shortfall(sc, r):
    """A sentence when a run's producer sent clearly fewer events than it should have."""
    sent = r.get("sent")
    if not sent:
        return None
    window = r.get("window")
    want = {}
    if sc.get("busy") and window:
        want["busy"] = (sc["busy"] * sc["busy_rate"] * window, 0.9)
    if sc.get("probe_rate") and window:
        # random gaps: the count varies by about its square root
        want["probe"] = (sc["probe_rate"] * window, 0.7)
    short = [f"{k} {sent.get(k, 0)} of ~{w:.0f}" for k, (w, part) in want.items()
             if sent.get(k, 0) < part * w and w >= 20]
    if not short:
        return None
    return (f"sent {', '.join(short)} events (producer behind by up to "
            f"{r.get('producer_behind_max_ms', 0):.0f} ms)")


def svg_plot(path, panels):
    """A hand-written SVG: one log-log panel per (title, {series: [(x, y)]})."""
    W, H, PAD = 420, 300, 55
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W * len(panels)}" height="{H}" '
           'font-family="sans-serif" font-size="11">',
           f'<rect width="{W * len(panels)}" height="{H}" fill="white"/>']
    for i, (title, series) in enumerate(panels):
        ox = i * W
        pts = [(x, y) for s in series.values() for x, y in s if x > 0 and y and y > 0]
        out.append(f'<text x="{ox + W / 2}" y="16" text-anchor="middle" '
                   f'font-weight="bold">{title}</text>')
        if not pts:
            out.append(f'<text x="{ox + W / 2}" y="{H / 2}" text-anchor="middle">no data</text>')
            continue
        x0 = math.floor(math.log10(min(p[0] for p in pts)))
        x1 = max(x0 + 1, math.ceil(math.log10(max(p[0] for p in pts))))
        y0 = math.floor(math.log10(min(p[1] for p in pts)))
        y1 = math.ceil(math.log10(max(p[1] for p in pts)))
        if y1 == y0:
            y1 += 1

        def px(x):
            return ox + PAD + (math.log10(x) - x0) / (x1 - x0) * (W - PAD - 15)

        def py(y):
            return H - PAD + 15 - (math.log10(y) - y0) / (y1 - y0) * (H - PAD - 15)
        out.append(f'<rect x="{ox + PAD}" y="30" width="{W - PAD - 15}" '
                   f'height="{H - PAD - 15}" fill="none" stroke="#999"/>')
        for e in range(x0, x1 + 1):
            out.append(f'<text x="{px(10 ** e)}" y="{H - PAD + 30}" text-anchor="middle">'
                       f'{10 ** e}</text>')
        for e in range(y0, y1 + 1):
            v = 10.0 ** e
            out.append(f'<line x1="{ox + PAD}" x2="{ox + W - 15}" y1="{py(v)}" y2="{py(v)}" '
                       'stroke="#eee"/>')
            out.append(f'<text x="{ox + PAD - 4}" y="{py(v) + 4}" text-anchor="end">{v:g}</text>')
        out.append(f'<text x="{ox + W / 2}" y="{H - 8}" text-anchor="middle">databases</text>')
        for k, (name, s) in enumerate(series.items()):
            s = sorted((x, y) for x, y in s if x > 0 and y and y > 0)
            # red: the C pgqd, blue: ours; dashed: the pgq extension or a latency
            col = "#c0392b" if name.startswith("C") else "#2471a3"
            dash = ' stroke-dasharray="5,3"' if ("ext" in name or "latency" in name) else ""
            if "ext" in name:
                col = "#e59866" if name.startswith("C") else "#7fb3d5"
            if len(s) > 1:
                out.append('<polyline fill="none" stroke="%s" stroke-width="1.5"%s points="%s"/>'
                           % (col, dash, " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in s)))
            for x, y in s:
                out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3.5" fill="{col}">'
                           f'<title>{name}: {y:.3g} at {x} databases</title></circle>')
            out.append(f'<text x="{ox + PAD + 8}" y="{44 + 14 * k}" fill="{col}">{name}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def targets(res, scs):
    """The #7 target table, from whichever scenarios ran (sizes as run: smoke is tiny)."""
    rows = []

    def size(n):
        return f"{scs[n]['n']} DBs x {scs[n]['q']} q"

    def g(name, mode, key):
        return res.get(name, {}).get(mode, {}).get(key)

    def mg(name, mode, key):
        return med(g(name, mode, key) or [])
    if "a" in res:
        rows.append((f"a: latency p50 / p99, max_lag 0, {size('a')} (ms)",
                     f"{f3(g('a', 'c', 'latency_p50'))} / {f3(g('a', 'c', 'latency_p99'))}",
                     f"{f3(g('a', 'ours', 'latency_p50'))} / {f3(g('a', 'ours', 'latency_p99'))}",
                     "p50 ≤ 25, p99 ≤ 60",
                     ok(g('a', 'ours', 'latency_p50'), 25)
                     and ok(g('a', 'ours', 'latency_p99'), 60)))
    if "b" in res:
        rows.append((f"b: lateness p99, defaults, {size('b')} (ms)",
                     f3(g("b", "c", "lateness_p99")), f3(g("b", "ours", "lateness_p99")),
                     "≤ 50", ok(g("b", "ours", "lateness_p99"), 50)))
    if "c" in res:
        t, o = mg("c", "c", "total_net"), mg("c", "ours", "total_net")
        rows.append((f"c: idle cost above baseline, {size('c')} (cpu-s / 60 s)", f3(t), f3(o),
                     "≤ 1/5 of C", ok(o, t / 5 if t else None)))
    if "d" in res:
        t, o = mg("d", "c", "total"), mg("d", "ours", "total")
        rows.append((f"d: {size('d')}: server + daemon cpu (cores)", f3(t / 60 if t else None),
                     f3(o / 60 if o else None), "< 0.5", ok(o / 60 if o else None, 0.5)))
        rows.append((f"d: {size('d')}: connections held, max", f3(mg("d", "c", "conn_max")),
                     f3(mg("d", "ours", "conn_max")), "≤ 64",
                     ok(mg("d", "ours", "conn_max"), 64)))
        rows.append((f"d: {size('d')}: lateness p99, busy DBs, their ticks while busy (ms)",
                     f3(g("d", "c", "lateness_p99")), f3(g("d", "ours", "lateness_p99")),
                     "≤ 100", ok(g("d", "ours", "lateness_p99"), 100)))
        rows.append((f"d: {size('d')}: (as first defined) lateness p99, busy DBs, every tick "
                     "in the window (ms)",
                     f3(g("d", "c", "lateness_window_p99")),
                     f3(g("d", "ours", "lateness_window_p99")), "(≤ 100)",
                     ok(g("d", "ours", "lateness_window_p99"), 100)))
        rows.append((f"d: {size('d')}: idle ticks of quiet DBs, lateness p99 (ms)",
                     f3(g("d", "c", "lateness_quiet_idle_p99")),
                     f3(g("d", "ours", "lateness_quiet_idle_p99")), "(no target)", None))
        rows.append((f"d: {size('d')}: first event in a quiet DB, lateness max (ms)",
                     f3(g("d", "c", "lateness_quiet_max")),
                     f3(g("d", "ours", "lateness_quiet_max")), "≤ 1000",
                     ok(g("d", "ours", "lateness_quiet_max"), 1000)))
        rows.append((f"d: {size('d')}: first event in a quiet DB, insert -> tick p50 / max (ms)",
                     f"{f3(g('d', 'c', 'first_event_p50'))} / {f3(g('d', 'c', 'first_event_max'))}",
                     f"{f3(g('d', 'ours', 'first_event_p50'))} / "
                     f"{f3(g('d', 'ours', 'first_event_max'))}", "(includes max_lag)", None))
        rows.append((f"d: {size('d')}: daemon RSS, metrics on (MB)", f3(mg("d", "c", "hwm_mb")),
                     f3(mg("d", "ours", "hwm_mb")), "≤ 30", ok(mg("d", "ours", "hwm_mb"), 30)))
    if "e" in res:
        rows.append((f"e: {size('e')}: lateness p99 (ms)", f3(g("e", "c", "lateness_p99")),
                     f3(g("e", "ours", "lateness_p99")), "≤ 100",
                     ok(g("e", "ours", "lateness_p99"), 100)))
    if "xa" in res:
        rows.append((f"xa: pgq extension, {size('xa')}: latency p50 / p99, max_lag 0 (ms)",
                     f"{f3(g('xa', 'c', 'latency_p50'))} / {f3(g('xa', 'c', 'latency_p99'))}",
                     f"{f3(g('xa', 'ours', 'latency_p50'))} / "
                     f"{f3(g('xa', 'ours', 'latency_p99'))}", "as a", None))
    if "xc" in res:
        t, o = mg("xc", "c", "total_net"), mg("xc", "ours", "total_net")
        rows.append((f"xc: pgq extension, {size('xc')}: idle cost above baseline "
                     "(cpu-s / 60 s)", f3(t), f3(o),
                     "≤ 1/5 of C", ok(o, t / 5 if t else None)))
    lines = ["| metric | C pgqd | ours | target | met |", "|---|---|---|---|---|"]
    for label, t, o, goal, met in rows:
        lines.append(f"| {label} | {t} | {o} | {goal} | "
                     + ("–" if met is None else "yes" if met else "**no**") + " |")
    return lines


def ok(v, limit):
    if v is None or limit is None:
        return None
    return v <= limit
