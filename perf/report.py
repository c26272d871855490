#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Merge bench-ctx, Go and latency results into one comparison table and report.
"""Merge one perf/run results directory into a table, report.md and plots.

Inputs (all in DIR, every one optional except bench-ctx.json):
  bench-ctx.json    Google Benchmark JSON (--benchmark_out) of bench-ctx
  go.json           bench/go/run.sh output (see load_go for the forms read)
  latency.jsonl     JSON lines of perf/cancel-latency and deadline-lateness
  proxy.jsonl       perf/proxy-load: examples/proxy under wrk, per mode
  proxy-note.txt    why the proxy scenario is missing, if it is
  rss.jsonl         perf/rss-spike: RSS before, at the peak of and after a
                    released spike of contexts
  raw/*.txt         sorted latency samples, one value in ns per line
  perfstat/*.csv    `perf stat -x,` output per benchmark, with *.json beside
  perfstat.txt      why perf stat counters are missing, if they are
  machine.json      machine and tool versions

Prints the comparison table to stdout, writes DIR/report.md and, when
gnuplot is found, DIR/*.png. Python 3 standard library only.
"""

import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys

# ---------------------------------------------------------------------------
# The one mapping table: bench-ctx workload -> Go benchmark, with the target
# from the issue. A workload key is the bench-ctx name without "BM_<lib>_"
# and without Google Benchmark's own suffixes (/iterations:N, /real_time...).
# go: the Go benchmark's name without "Benchmark" and without the -GOMAXPROCS
# suffix; for threaded rows `procs` picks the GOMAXPROCS run to compare.
# target: (peer, ratio): peer/rctx ns/op must be >= ratio.

WORKLOADS = [
    # key, go name, go units per op, target
    ("ColdDerive", None, None, None),
    ("DeriveCancelRelease/parent:background",
     "DeriveCancelRelease/parent=background", None, ("go", 4.0)),
    ("DeriveCancelRelease/parent:live",
     "DeriveCancelRelease/parent=live_cancel", None, ("go", 4.5)),
    ("DeriveCancelRelease/parent:value3",
     "DeriveCancelRelease/parent=value3", None, None),
    ("DeriveFdCancelRelease", "DoneChannel", None, None),
    ("WithTimeoutCancel/timers:1k", "TimeoutCancel/live=1000", None,
     ("go", 8.0)),
    ("WithTimeoutCancel/timers:100k", "TimeoutCancel/live=100000", None,
     ("go", 8.0)),
    ("WithTimeoutCancel/timers:1M", "TimeoutCancel/live=1000000", None,
     ("go", 8.0)),
    ("WithValue", "WithValue", None, ("go", 3.5)),
] + [
    ("Value/depth:%d/find:%s" % (d, f),
     "ValueLookup/depth=%d/%s" % (d, "miss" if f == "miss" else "hit_" + f),
     None,
     ("go", 20.0) if (d, f) == (64, "deepest") else
     ("go", 25.0) if (d, f) == (64, "miss") else None)
    for d in (1, 8, 64, 1000) for f in ("nearest", "deepest", "miss")
] + [
    # Go's op cancels max(n, 10000) children; its ns/child metric is used
    ("CancelFanout/children:%d" % c, "CancelFanout/children=%d" % c,
     max(c, 10000), ("go", 4.0))
    for c in (1, 100, 10000, 1000000)
] + [
    ("ChainCancel/depth:1000", "ChainCancel/depth=1000", 1000, None),
    ("DonePoll", "DonePoll", None, ("go", 2.0)),
    ("Err", "Err", None, ("go", 6.0)),
    ("Cause", "Cause", None, None),
    ("AfterFunc/op:register-stop", "AfterFunc/register_stop", None, None),
    ("AfterFunc/op:register-fire", "AfterFunc/register_fire", None, None),
    # both sides report wall time over all threads' ops (aggregate)
    ("SharedParent/threads:1", "SharedParent/threads=1", None, None),
    ("SharedParent/threads:2", "SharedParent/threads=2", None,
     [("go", 5.0), ("mctx", 3.0)]),
    ("Request", "Request", None, ("go", 9.0)),
]
# Parallel/op:O/parent:P/threads:T rows join Go's Parallel/op=O/parent=P/
# threads=T (build_rows makes the name: the thread counts are the
# machine's).

# Scaling rows: (label, key without /threads:N). The aggregate ns/op at
# nproc threads over the 1-thread figure is the scaling ratio (1/nproc
# is perfect, 1.0 no gain); SharedParent's target is from issue 13.
SCALING = [
    ("derive+cancel, shared live parent", "SharedParent"),
    ("derive+cancel, own live parent", "Parallel/op:derive/parent:own"),
    ("derive+cancel, background", "Parallel/op:derive/parent:background"),
    ("timeout+cancel, background", "Parallel/op:timeout/parent:background"),
    ("request, shared root", "Parallel/op:request/parent:shared"),
    ("request, own root", "Parallel/op:request/parent:own"),
    ("request, background root", "Parallel/op:request/parent:background"),
]
SHARED_SCALE_TARGET = 0.6  # shared parent at nproc threads / 1 thread
SHARED_OWN_TARGET = 1.5    # shared parent / own parent, both at nproc

# Bytes per live context by kind (perf/footprint; Go's Footprint/kind=K):
# (kind, rctx target in bytes or None).
FOOTPRINT = [("value", 48), ("cancel", 96), ("timer", 160), ("child", None)]

# Workloads whose rctx allocs/op must be zero in steady state.
STEADY_ALLOC_PREFIXES = ("DeriveCancelRelease/", "WithTimeoutCancel/",
                         "WithValue", "Request", "AfterFunc/", "SharedParent/",
                         "Value/", "DonePoll", "Err", "Cause", "Parallel/")
LIBS = ("rctx", "mctx", "std", "go")
GB_NOISE = re.compile(
    r"^(iterations|repeats|min_time|min_warmup_time|manual_time|real_time|"
    r"process_time)(:.*)?$")


def gb_key(run_name):
    """'BM_rctx_X/a:1/iterations:30/manual_time' -> ('rctx', 'X/a:1')."""
    m = re.match(r"^BM_([a-z]+)_(.*)$", run_name)
    if not m:
        return None, None
    parts = [p for p in m.group(2).split("/") if not GB_NOISE.match(p)]
    return m.group(1), "/".join(parts)


def to_ns(value, unit):
    return value * {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}[unit]


def load_gb(path):
    """{(lib, key): {'ns': median ns/op, 'allocs': .., 'bytes': .., 'n': reps}}"""
    with open(path) as f:
        data = json.load(f)
    runs = {}
    medians = {}
    errors = {}
    for b in data.get("benchmarks", []):
        lib, key = gb_key(b.get("run_name", b["name"]))
        if lib is None:
            continue
        if b.get("error_occurred"):
            errors[(lib, key)] = b.get("error_message", "error")
            continue
        ns = to_ns(b["real_time"], b.get("time_unit", "ns"))
        cpu = to_ns(b["cpu_time"], b.get("time_unit", "ns"))
        manual = "/manual_time" in b.get("run_name", b["name"])
        rec = {"ns": ns, "allocs": b.get("allocs/op"),
               "bytes": b.get("B/op"), "cpu": None if manual else cpu}
        if b.get("run_type") == "aggregate":
            if b.get("aggregate_name") == "median":
                medians[(lib, key)] = rec
        else:
            runs.setdefault((lib, key), []).append(rec)
    out = {}
    for k, recs in runs.items():
        out[k] = {f: median([r[f] for r in recs]) for f in
                  ("ns", "allocs", "bytes", "cpu")}
        out[k]["n"] = len(recs)
    for k, rec in medians.items():
        out[k] = dict(rec, n=out.get(k, {}).get("n", 0))
    return out, errors, data.get("context", {})


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


GO_LINE = re.compile(
    r"^Benchmark(?P<name>\S+?)(?:-(?P<procs>\d+))?\s+(?P<iters>\d+)\s+"
    r"(?P<ns>[\d.]+) ns/op(?P<rest>.*)$")


def go_metrics(rest):
    out = {}
    for val, unit in re.findall(r"([\d.]+) (\S+)", rest):
        out[unit] = float(val)
    return out


def load_go(path):
    """{(name, procs): {'ns':, 'allocs':, 'bytes':}} from go.json.

    Reads, in this order of preference:
      - {"benchmarks": [{"name":, "procs":, "ns_per_op":, "allocs_per_op":,
        "bytes_per_op":}, ...]} (or the list alone), names with or without
        the "Benchmark" prefix and "-N" suffix;
      - `go test -json` event lines (test2json) whose Output holds the
        usual benchmark lines;
      - plain `go test -bench` text.
    Repeated runs (-count) are reduced to their median.
    """
    samples = {}
    skipped = {}

    def add(name, procs, ns, allocs, nbytes, unit_ns=None):
        name = strip_go(name)
        m = re.match(r"^(.*)-(\d+)$", name)
        if m and procs is None:
            name, procs = m.group(1), int(m.group(2))
        samples.setdefault((name, int(procs or 1)), []).append(
            {"ns": ns, "allocs": allocs, "bytes": nbytes,
             "unit_ns": unit_ns})

    def add_line(line):
        m = GO_LINE.match(line.strip())
        if not m:
            return
        extra = go_metrics(m.group("rest"))
        add(m.group("name"), m.group("procs"), float(m.group("ns")),
            extra.get("allocs/op"), extra.get("B/op"),
            extra.get("ns/child", extra.get("ns/level")))

    with open(path) as f:
        text = f.read()
    doc = None
    try:
        doc = json.loads(text)
    except ValueError:
        pass
    if isinstance(doc, dict) and "benchmarks" in doc:
        doc = doc["benchmarks"]
    if isinstance(doc, list):
        for b in doc:
            name = b.get("name") or b.get("Name")
            if b.get("skipped"):
                skipped[strip_go(name)] = b["skipped"]
            ns = first(b, "ns_per_op", "ns/op", "NsPerOp", "ns")
            if ns is None:
                continue
            add(name,
                first(b, "procs", "gomaxprocs", "Procs", "cpu"), float(ns),
                first(b, "allocs_per_op", "allocs/op", "AllocsPerOp",
                      "allocs"),
                first(b, "bytes_per_op", "B/op", "AllocedBytesPerOp",
                      "bytes"), b.get("ns_per_unit"))
    else:
        pending = ""
        for line in text.splitlines():
            try:
                ev = json.loads(line)
            except ValueError:
                add_line(line)
                continue
            if not isinstance(ev, dict):
                continue
            out = ev.get("Output")
            if out is None:
                continue
            # test2json may split one benchmark line over two events
            pending += out
            while "\n" in pending:
                one, pending = pending.split("\n", 1)
                add_line(one)
        add_line(pending)
    out = {k: {f: median([s[f] for s in v]) for f in ("ns", "allocs",
                                                      "bytes", "unit_ns")}
           for k, v in samples.items()}
    return out, skipped


def strip_go(name):
    return name[len("Benchmark"):] if name.startswith("Benchmark") else name


def first(d, *names):
    for n in names:
        if n in d and d[n] is not None:
            return d[n]
    return None


def norm(name):
    return re.sub(r"[^a-z0-9]", "", name.lower())


def go_lookup(go, name, units):
    """Go's figures for one row, per op as bench-ctx counts ops.

    Exact name first, then the same name ignoring punctuation and case.
    Where Go's op covers `units` of ours (children, levels), its per-unit
    time metric is used and its allocation counts are divided by units.
    """
    if not go or name is None:
        return None
    rec = None
    for (gname, _), r in sorted(go.items(), key=lambda kv: kv[0][1]):
        if gname == name:
            rec = r
            break
    if rec is None:
        n = norm(name)
        for (gname, _), r in sorted(go.items(), key=lambda kv: kv[0][1]):
            if norm(gname) == n:
                rec = r
                break
    if rec is None or not units:
        return rec
    per = dict(rec)
    per["ns"] = rec["unit_ns"] if rec.get("unit_ns") is not None else (
        rec["ns"] / units if rec["ns"] is not None else None)
    for f in ("allocs", "bytes"):
        per[f] = rec[f] / units if rec[f] is not None else None
    return per


# ---------------------------------------------------------------------------

def fmt_ns(x):
    if x is None:
        return "-"
    if x >= 1e6:
        return "%.3g ms" % (x / 1e6)
    if x >= 1e4:
        return "%.0f" % x
    if x >= 100:
        return "%.0f" % x
    if x >= 10:
        return "%.1f" % x
    return "%.2f" % x


def fmt_num(x, nd=2):
    if x is None:
        return "-"
    if x == 0:
        return "0"
    if abs(x) < 0.01:
        return "%.1e" % x
    return ("%." + str(nd) + "f") % x


def ratio(a, b):
    if a is None or b is None or b <= 0:
        return None
    return a / b


def build_rows(gb, go):
    rows = []
    seen = set()
    table = list(WORKLOADS)
    known = {w[0] for w in table}
    # workloads bench-ctx ran that the table does not name still show
    for (lib, key) in sorted(gb):
        if key not in known:
            goname = (key.replace(":", "=") if key.startswith("Parallel/")
                      else None)
            table.append((key, goname, None, None))
            known.add(key)
    for key, goname, units, target in table:
        if key in seen:
            continue
        seen.add(key)
        r = {"key": key, "go_name": goname}
        for lib in ("rctx", "mctx", "std"):
            rec = gb.get((lib, key))
            r[lib] = rec["ns"] if rec else None
            r[lib + "_cpu"] = rec.get("cpu") if rec else None
            r[lib + "_allocs"] = rec["allocs"] if rec else None
            r[lib + "_bytes"] = rec["bytes"] if rec else None
        g = go_lookup(go, goname, units)
        r["go"] = g["ns"] if g else None
        r["go_allocs"] = g["allocs"] if g else None
        r["go_bytes"] = g["bytes"] if g else None
        if all(r[lib] is None for lib in LIBS):
            continue
        r["go_x"] = ratio(r["go"], r["rctx"])
        r["mctx_x"] = ratio(r["mctx"], r["rctx"])
        r["std_x"] = ratio(r["std"], r["rctx"])
        targets = []
        if target:
            for peer, want in (target if isinstance(target, list)
                               else [target]):
                got = r[peer + "_x"]
                targets.append({"peer": peer, "want": want, "got": got,
                                "ok": None if got is None else got >= want})
        r["targets"] = targets
        rows.append(r)
    return rows


def target_text(r):
    out = []
    for t in r["targets"]:
        if t["ok"] is None:
            mark = "n/a"
        else:
            mark = "ok" if t["ok"] else "MISS"
        out.append("%s>=%gx %s" % (t["peer"], t["want"], mark))
    return "; ".join(out)


COLUMNS = [
    ("workload (per op)", lambda r: r["key"]),
    ("rctx ns", lambda r: fmt_ns(r["rctx"])),
    ("mctx ns", lambda r: fmt_ns(r["mctx"])),
    ("std ns", lambda r: fmt_ns(r["std"])),
    ("Go ns", lambda r: fmt_ns(r["go"])),
    ("rctx allocs", lambda r: fmt_num(r["rctx_allocs"])),
    ("Go allocs", lambda r: fmt_num(r["go_allocs"])),
    ("Go/rctx", lambda r: fmt_num(r["go_x"], 1)),
    ("mctx/rctx", lambda r: fmt_num(r["mctx_x"], 1)),
    ("target", target_text),
]


def load_warning(machine):
    """A sentence when the machine was busy as the run started."""
    try:
        load = float(machine["load average at start"].split()[0])
        cpus = int(machine["nproc"])
    except (KeyError, ValueError, IndexError):
        return None
    if load < 0.5 * cpus:
        return None
    return ("the 1-minute load average was %.1f on %d CPUs when the run "
            "started: other work shared the CPUs, so wall-clock figures "
            "are inflated and noisy (multi-threaded ones most)." %
            (load, cpus))


def text_table(rows):
    cells = [[c[0] for c in COLUMNS]]
    for r in rows:
        cells.append([c[1](r) for c in COLUMNS])
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    lines = []
    for n, row in enumerate(cells):
        out = []
        for i, v in enumerate(row):
            out.append(v.ljust(widths[i]) if i in (0, len(row) - 1)
                       else v.rjust(widths[i]))
        lines.append("  ".join(out).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def md_table(header, rows):
    out = ["| " + " | ".join(header) + " |",
           "|" + "|".join("---" for _ in header) + "|"]
    for row in rows:
        out.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(out)


def alloc_checks(gb):
    """The allocation targets: cold <= 1 malloc per context, steady 0."""
    checks = []
    cold = gb.get(("rctx", "ColdDerive"))
    if cold and cold["allocs"] is not None:
        # the thread's one-off records (allocator cache, stats block)
        # amortised over the run add a tiny fraction, as for steady
        checks.append(("rctx cold derive: mallocs per context",
                       cold["allocs"], "<= 1 (< 1.01)",
                       cold["allocs"] < 1.01))
    steady = sorted((key, rec["allocs"]) for (lib, key), rec in gb.items()
                    if lib == "rctx" and rec["allocs"] is not None and
                    key.startswith(STEADY_ALLOC_PREFIXES))
    # a warm-up malloc amortised over the run shows as a tiny fraction
    bad = [(k, a) for k, a in steady if a >= 0.01]
    if steady:
        worst = max(a for _, a in steady)
        what = ("allocating: " + ", ".join("%s %.2f" % kv for kv in bad)
                if bad else "%d workloads" % len(steady))
        checks.append(("rctx steady state allocs/op (%s)" % what, worst,
                       "0 (< 0.01)", not bad))
    return checks


# ---------------------------------------------------------------------------

def load_jsonl(path):
    out = []
    if not os.path.exists(path):
        return out
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
    return out


def latency_note(j):
    if j.get("bench") == "deadline-lateness":
        made = j.get("create_ns_per_timer")
        skipped = j.get("due_while_making")
        return "early %s, lost %s, wrong err %s%s%s%s" % (
            j.get("early"), j.get("lost"), j.get("wrong_err"),
            "" if made is None else
            "; timers made at %.0f ns each" % made,
            "; %s due before all were made (not sampled)" % skipped
            if skipped else "",
            "" if j.get("sleeps") is None else
            "; %s sleeps" % j["sleeps"])
    if "cancel_call_p50_ns" in j:
        early = j.get("early_wakes")
        return "the cancel call itself: p50 %s, p99 %s%s" % (
            j["cancel_call_p50_ns"], j.get("cancel_call_p99_ns"),
            "; **%s wake-ups before done**" % early if early else "")
    return ""


def load_perfstat(d, gb_runs):
    """{(lib, key): {event: per-op count}} from perfstat/*.csv + *.json."""
    out = {}
    pdir = os.path.join(d, "perfstat")
    if not os.path.isdir(pdir):
        return out
    for fn in sorted(os.listdir(pdir)):
        if not fn.endswith(".csv"):
            continue
        base = fn[:-4]
        jpath = os.path.join(pdir, base + ".json")
        if not os.path.exists(jpath):
            continue
        with open(jpath) as f:
            bj = json.load(f)
        iters = 0
        key = None
        for b in bj.get("benchmarks", []):
            if b.get("run_type", "iteration") == "iteration":
                iters += int(b.get("iterations", 0)) * int(b.get("threads",
                                                                 1))
                key = gb_key(b.get("run_name", b["name"]))
        if not iters or key is None:
            continue
        ev = {}
        with open(os.path.join(pdir, fn)) as f:
            for line in f:
                parts = line.strip().split(",")
                if len(parts) < 3 or not parts[0]:
                    continue
                try:
                    ev[parts[2]] = float(parts[0]) / iters
                except ValueError:
                    pass
        if ev:
            out[key] = ev
    return out


def thread_counts(gb, key):
    """Sorted thread counts bench-ctx ran for key/threads:N (rctx)."""
    out = []
    for (lib, k) in gb:
        m = re.match(re.escape(key) + r"/threads:(\d+)$", k)
        if lib == "rctx" and m:
            out.append(int(m.group(1)))
    return sorted(set(out))


def scaling_rows(gb, go):
    """One row per SCALING entry: 1-thread and nproc ns/op, both libs."""
    rows = []
    for label, key in SCALING:
        ts = thread_counts(gb, key)
        if not ts:
            continue
        lo, hi = ts[0], ts[-1]
        r = {"label": label, "key": key, "lo": lo, "hi": hi}
        for t, tag in ((lo, "1"), (hi, "n")):
            rec = gb.get(("rctx", "%s/threads:%d" % (key, t)))
            r["rctx" + tag] = rec["ns"] if rec else None
            g = go_lookup(go, key.replace(":", "=") + "/threads=%d" % t,
                          None)
            r["go" + tag] = g["ns"] if g else None
        r["rctx_scale"] = ratio(r["rctxn"], r["rctx1"])
        r["go_scale"] = ratio(r["gon"], r["go1"])
        r["go_x"] = ratio(r["gon"], r["rctxn"])
        rows.append(r)
    return rows


def scaling_checks(srows):
    """Issue 13's shared-parent goals as (name, got, want, ok)."""
    by = {r["key"]: r for r in srows}
    sp, own = by.get("SharedParent"), by.get("Parallel/op:derive/parent:own")
    out = []
    if sp and sp["hi"] > 1 and sp["rctx_scale"] is not None:
        out.append(("rctx shared parent: %d threads / 1 thread (ns/op)" %
                    sp["hi"], sp["rctx_scale"],
                    "<= %g" % SHARED_SCALE_TARGET,
                    sp["rctx_scale"] <= SHARED_SCALE_TARGET))
    if sp and own and sp["hi"] > 1:
        got = ratio(sp["rctxn"], own["rctxn"])
        if got is not None:
            out.append(("rctx shared parent / own parent at %d threads" %
                        sp["hi"], got, "<= %g" % SHARED_OWN_TARGET,
                        got <= SHARED_OWN_TARGET))
    return out


def scaling_table(srows):
    hdr = ["workload", "threads", "rctx ns (1)", "rctx ns (n)",
           "rctx n/1", "Go ns (1)", "Go ns (n)", "Go n/1", "Go/rctx (n)"]
    rows = [[r["label"], "1, %d" % r["hi"], fmt_ns(r["rctx1"]),
             fmt_ns(r["rctxn"]), fmt_num(r["rctx_scale"]),
             fmt_ns(r["go1"]), fmt_ns(r["gon"]), fmt_num(r["go_scale"]),
             fmt_num(r["go_x"], 1)] for r in srows]
    return hdr, rows


def load_go_footprint(path):
    """{kind: {'bytes': Go B/op, 'live': live-B/ctx}} from go.json."""
    out = {}
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return out
    if isinstance(doc, dict):
        doc = doc.get("benchmarks", [])
    for b in doc if isinstance(doc, list) else []:
        m = re.match(r"^(?:Benchmark)?Footprint/kind=(\w+?)(?:-\d+)?$",
                     b.get("name") or "")
        if m:
            out[m.group(1)] = {
                "bytes": b.get("bytes_per_op"),
                "live": (b.get("metrics") or {}).get("live-B/ctx")}
    return out


def footprint_rows(d):
    """Rows of the bytes-per-context table, one per FOOTPRINT kind."""
    fp = {j.get("kind"): j for j in
          load_jsonl(os.path.join(d, "footprint.jsonl"))
          if j.get("bench") == "footprint"}
    gofp = load_go_footprint(os.path.join(d, "go.json"))
    rows = []
    for kind, want in FOOTPRINT:
        j, g = fp.get(kind, {}), gofp.get(kind, {})
        heap = j.get("heap_bytes_per_ctx")
        rows.append({"key": kind, "heap": heap,
                     "rss": j.get("rss_bytes_per_ctx"),
                     "go_bytes": g.get("bytes"), "go_live": g.get("live"),
                     "want": want,
                     "ok": None if heap is None or want is None
                     else heap <= want})
    return [r for r in rows if r["heap"] is not None or
            r["go_bytes"] is not None]


def footprint_table(frows):
    hdr = ["kind", "rctx heap B/ctx", "rctx RSS B/ctx", "Go B/op",
           "Go live heap B/ctx", "target (heap)", "verdict"]
    rows = [[r["key"], fmt_num(r["heap"], 0), fmt_num(r["rss"], 0),
             fmt_num(r["go_bytes"], 0), fmt_num(r["go_live"], 0),
             "-" if r["want"] is None else "<= %d" % r["want"],
             "-" if r["ok"] is None else "ok" if r["ok"] else "MISS"]
            for r in frows]
    return hdr, rows


def plain_table(hdr, rows):
    cells = [hdr] + rows
    widths = [max(len(str(row[i])) for row in cells)
              for i in range(len(hdr))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(
            str(v).ljust(widths[i]) if i == 0 else str(v).rjust(widths[i])
            for i, v in enumerate(row)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Plots (gnuplot, PNG)

def gp_quote(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def run_gnuplot(script, d):
    gp = shutil.which("gnuplot")
    if not gp:
        return "gnuplot not found"
    r = subprocess.run([gp], input=script, text=True, cwd=d,
                       capture_output=True)
    if r.returncode != 0:
        return "gnuplot failed: " + r.stderr.strip()[:500]
    return None


def bar_plot(d, rows, field, fname, title, ylabel, logscale, series=LIBS,
             key="top left"):
    libs = [lib for lib in series
            if any(r.get(lib + field) not in (None, 0) for r in rows)]
    data = [r for r in rows
            if any(r.get(lib + field) not in (None, 0) for lib in libs)]
    if not libs or not data:
        return None
    dat = fname[:-4] + ".dat"
    with open(os.path.join(d, dat), "w") as f:
        for r in data:
            vals = []
            for lib in libs:
                v = r.get(lib + field)
                # NaN, not a "missing" marker: gnuplot's histograms skip
                # missing points and shift the rest of that series left
                vals.append("NaN" if v is None or (v == 0 and logscale)
                            else "%.6g" % v)
            f.write(gp_quote(r["key"]) + " " + " ".join(vals) + "\n")
    width = max(1000, 28 * len(data) * max(1, len(libs)) // 2)
    cols = ", ".join(
        ("'%s'" % dat if i == 0 else "''") +
        " using %d:xtic(1) title %s" % (i + 2, gp_quote(lib))
        for i, lib in enumerate(libs))
    script = "\n".join([
        "set terminal pngcairo size %d,700 noenhanced" % width
        if has_cairo() else "set terminal png size %d,700 noenhanced" % width,
        "set output %s" % gp_quote(fname),
        "set title %s" % gp_quote(title),
        "set ylabel %s" % gp_quote(ylabel),
        "set style data histograms",
        "set style histogram clustered gap 1",
        "set style fill solid 0.8 border -1",
        "set xtics rotate by 50 right font ',8'",
        "set key " + key,
        "set grid ytics",
        "set bmargin 16",
        "set logscale y" if logscale else "set yrange [0:*]",
        "plot " + cols,
        ""])
    return run_gnuplot(script, d)


_CAIRO = None


def has_cairo():
    global _CAIRO
    if _CAIRO is None:
        gp = shutil.which("gnuplot")
        _CAIRO = False
        if gp:
            r = subprocess.run([gp, "-e", "set terminal"],
                               capture_output=True, text=True)
            _CAIRO = "pngcairo" in (r.stdout + r.stderr)
    return _CAIRO


def quantile_plot(d, files, fname, title, ylabel):
    """files: [(label, path of sorted samples)] -> quantile (CDF) plot."""
    series = []
    for label, path in files:
        try:
            with open(path) as f:
                vals = [int(x) for x in f.read().split()]
        except (OSError, ValueError):
            continue
        if not vals:
            continue
        vals.sort()
        dat = os.path.basename(path)[:-4] + ".cdf"
        with open(os.path.join(d, dat), "w") as f:
            n = len(vals)
            for i, v in enumerate(vals):
                f.write("%d %.6f\n" % (max(v, 1), (i + 1) / n))
        series.append((label, dat))
    if not series:
        return None
    plots = ", ".join("'%s' using 1:2 with steps lw 2 title %s" %
                      (dat, gp_quote(label)) for label, dat in series)
    script = "\n".join([
        "set terminal pngcairo size 1000,600 noenhanced" if has_cairo()
        else "set terminal png size 1000,600 noenhanced",
        "set output %s" % gp_quote(fname),
        "set title %s" % gp_quote(title),
        "set xlabel %s" % gp_quote(ylabel + " (log scale)"),
        "set ylabel 'fraction of samples <= x'",
        "set logscale x",
        "set yrange [0:1.01]",
        "set grid",
        "set key bottom right",
        "plot " + plots,
        ""])
    return run_gnuplot(script, d)


# ---------------------------------------------------------------------------

def proxy_plot(d, proxy):
    """req/s and p99 of the proxy, with and without rctx, side by side."""
    rows = [j for j in proxy if j.get("rps") is not None]
    if not rows:
        return None
    with open(os.path.join(d, "proxy.dat"), "w") as f:
        for j in rows:
            f.write("%s %.6g %.6g\n" % (gp_quote(j["mode"]), j["rps"],
                                        j.get("p99_ms") or float("nan")))
    script = "\n".join([
        "set terminal pngcairo size 1000,450 noenhanced"
        if has_cairo() else "set terminal png size 1000,450 noenhanced",
        "set output 'proxy.png'",
        "set style data histograms",
        "set style fill solid 0.8 border -1",
        "set grid ytics",
        "set yrange [0:*]",
        "set multiplot layout 1,2 title 'examples/proxy under wrk "
        "(loopback)'",
        "set title 'requests/s (higher is better)'",
        "plot 'proxy.dat' using 2:xtic(1) notitle",
        "set title 'p99 latency ms (lower is better)'",
        "plot 'proxy.dat' using 3:xtic(1) notitle",
        "unset multiplot",
        ""])
    return run_gnuplot(script, d)


def proxy_rows(proxy):
    return [[j.get("mode"), j.get("seconds"), fmt_num(j.get("rps"), 0),
             fmt_num(j.get("p50_ms"), 2), fmt_num(j.get("p99_ms"), 2),
             j.get("timeouts", "-"), j.get("early", "-"),
             fmt_num(j.get("late_p50_us"), 0), fmt_num(j.get("late_p99_us"), 0),
             fmt_num(j.get("late_max_us"), 0),
             j.get("live_after_drain", "-"), j.get("exit")]
            for j in proxy]


PROXY_HEADER = ["mode", "s", "req/s", "p50 ms", "p99 ms", "504s", "early",
                "late p50 us", "late p99 us", "late max us",
                "contexts after drain", "exit"]


RSS_HEADER = ["spike", "contexts", "before MB", "peak MB", "after MB",
              "back ms"]


def rss_rows(rss):
    return [[j.get("spike"), j.get("contexts"), j.get("before_mb"),
             j.get("peak_mb"), j.get("after_mb"), j.get("back_ms")]
            for j in rss]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir", help="results directory of one perf/run")
    ap.add_argument("--mode", default="", help="label: quick or full")
    ap.add_argument("--no-plots", action="store_true")
    args = ap.parse_args()
    d = args.dir

    gb, gb_errors, gb_ctx = load_gb(os.path.join(d, "bench-ctx.json"))
    go = {}
    go_skipped = {}
    go_note = None
    gopath = os.path.join(d, "go.json")
    if os.path.exists(gopath) and os.path.getsize(gopath) > 0:
        try:
            go, go_skipped = load_go(gopath)
        except (OSError, ValueError) as e:
            go_note = "go.json unreadable: %s" % e
        if not go and not go_note:
            go_note = "go.json holds no benchmark results"
    else:
        go_note = "no Go results (go not installed or bench/go/run.sh missing)"
    note_path = os.path.join(d, "go-note.txt")
    if os.path.exists(note_path):
        with open(note_path) as f:
            go_note = (go_note + "; " if go_note else "") + f.read().strip()

    machine = {}
    mpath = os.path.join(d, "machine.json")
    if os.path.exists(mpath):
        with open(mpath) as f:
            machine = json.load(f)
    rows = build_rows(gb, go)
    table = text_table(rows)
    checks = alloc_checks(gb)
    srows = scaling_rows(gb, go)
    frows = footprint_rows(d)
    checks += scaling_checks(srows)
    checks += [("rctx %s context: heap bytes per live context" % r["key"],
                r["heap"], "<= %d" % r["want"], r["ok"])
               for r in frows if r["ok"] is not None]
    latency = load_jsonl(os.path.join(d, "latency.jsonl"))
    proxy = load_jsonl(os.path.join(d, "proxy.jsonl"))
    rss = load_jsonl(os.path.join(d, "rss.jsonl"))
    proxy_note = None
    if os.path.exists(os.path.join(d, "proxy-note.txt")):
        with open(os.path.join(d, "proxy-note.txt")) as f:
            proxy_note = f.read().strip()
    perfstat = load_perfstat(d, gb)

    # ---- stdout
    print(table)
    print()
    print("Targets from the issue (peer ns/op divided by rctx ns/op):")
    misses = 0
    for r in rows:
        for t in r["targets"]:
            got = "-" if t["got"] is None else "%.1fx" % t["got"]
            verdict = ("no data" if t["ok"] is None else
                       "ok" if t["ok"] else
                       "MISSED by %.0f%%" % (100 * (1 - t["got"] / t["want"])))
            if t["ok"] is False:
                misses += 1
            print("  %-42s %-4s >= %4.1fx  measured %7s  %s" %
                  (r["key"], t["peer"], t["want"], got, verdict))
    for name, got, want, ok in checks:
        if not ok:
            misses += 1
        print("  %s: want %s, measured %s  %s" %
              (name, want, fmt_num(got, 3), "ok" if ok else "MISSED"))
    if srows:
        print()
        print("Scaling (aggregate ns/op over all threads; n/1: nproc "
              "threads over 1):")
        print(plain_table(*scaling_table(srows)))
    if frows:
        print()
        print("Bytes per live context (200,000 held; Go: -benchmem B/op "
              "and live heap):")
        print(plain_table(*footprint_table(frows)))
    busy = load_warning(machine)
    if busy:
        print("  warning: " + busy)
    if go_note:
        print("  note: " + go_note)
    for name, why in sorted(go_skipped.items()):
        print("  Go skipped %s: %s" % (name, why))
    for (lib, key), msg in sorted(gb_errors.items()):
        print("  error: BM_%s_%s: %s" % (lib, key, msg))
    if latency:
        print()
        print("Latency (ns):")
        for j in latency:
            what = j.get("mode") or j.get("label")
            extra = ""
            if j.get("bench") == "deadline-lateness":
                extra = "  early=%s lost=%s" % (j.get("early"), j.get("lost"))
            elif "cancel_call_p50_ns" in j:
                extra = "  (cancel call p50 %s)" % j["cancel_call_p50_ns"]
                if j.get("early_wakes"):
                    extra += "  EARLY WAKES %s" % j["early_wakes"]
            print("  %-18s %-5s %-5s p50 %8s  p99 %8s  p999 %8s  max %9s%s" %
                  (j.get("bench"), j.get("lib"), what, j.get("p50_ns"),
                   j.get("p99_ns"), j.get("p999_ns"), j.get("max_ns"), extra))

    if rss:
        print()
        print("RSS after a released spike (MB; back: ms until within 32 MB "
              "of before, -1 never):")
        for r in rss_rows(rss):
            print("  " + "  ".join("%s %s" % (h, v)
                                   for h, v in zip(RSS_HEADER, r)))
    if proxy:
        print()
        print("examples/proxy under wrk:")
        for r in proxy_rows(proxy):
            print("  " + "  ".join("%s %s" % (h, v)
                                   for h, v in zip(PROXY_HEADER, r)))

    # ---- plots
    plot_notes = []
    pngs = []
    if not args.no_plots and proxy:
        err = proxy_plot(d, proxy)
        (plot_notes.append(err) if err else pngs.append("proxy.png"))
    if not args.no_plots:
        for field, fname, title, ylabel, logy in (
                ("", "ns-per-op.png", "ns/op by library (median, lower is "
                 "better)", "ns/op", True),
                ("_allocs", "allocs-per-op.png", "allocations per op",
                 "allocs/op", False)):
            err = bar_plot(d, rows, field, fname, title, ylabel, logy)
            (plot_notes.append(err) if err else pngs.append(fname))
        # scaling: one bar per (workload, threads), rctx beside Go
        prow = []
        for r in srows:
            for tag, t in (("1", r["lo"]), ("n", r["hi"])):
                prow.append({"key": "%s, %d thr" % (r["label"], t),
                             "rctx": r["rctx" + tag], "go": r["go" + tag]})
        frow = [{"key": r["key"], "rctx heap": r["heap"],
                 "rctx RSS": r["rss"], "Go B/op": r["go_bytes"],
                 "Go live heap": r["go_live"]} for r in frows]
        for prs, fname, title, ylabel, logy, series, key in (
                (prow, "scaling.png", "aggregate ns/op at 1 and nproc "
                 "threads (lower is better)", "ns/op", True,
                 ("rctx", "go"), "top left"),
                (frow, "footprint.png", "bytes per live context by kind "
                 "(200,000 held)", "bytes", False,
                 ("rctx heap", "rctx RSS", "Go B/op", "Go live heap"),
                 "outside right top")):
            if not prs:
                continue
            err = bar_plot(d, prs, "", fname, title, ylabel, logy, series,
                           key)
            (plot_notes.append(err) if err else pngs.append(fname))
        raw = os.path.join(d, "raw")
        if os.path.isdir(raw):
            cl = [(j["lib"] + " " + j["mode"],
                   os.path.join(raw, "cancel-latency-%s-%s.txt" %
                                (j["lib"], j["mode"])))
                  for j in latency if j.get("bench") == "cancel-latency"]
            dl = [(j["lib"] + " " + j["label"],
                   os.path.join(raw, "deadline-lateness-%s-%s.txt" %
                                (j["lib"], j["label"])))
                  for j in latency if j.get("bench") == "deadline-lateness"]
            for files, fname, title, xl in (
                    (cl, "cancel-latency.png",
                     "cancel on one thread, seen on another", "latency ns"),
                    (dl, "deadline-lateness.png",
                     "deadline lateness (fire time - deadline)",
                     "lateness ns")):
                err = quantile_plot(d, files, fname, title, xl)
                if err:
                    plot_notes.append(err)
                elif files:
                    pngs.append(fname)
    # the .dat/.cdf files are plot inputs only
    for fn in os.listdir(d):
        if fn.endswith((".dat", ".cdf")):
            os.unlink(os.path.join(d, fn))

    # ---- report.md
    md = []
    md.append("# rctx performance report (%s)" %
              os.path.basename(os.path.abspath(d)))
    md.append("")
    if not args.mode:
        args.mode = machine.get("mode", "")
    md.append("Run: `perf/run%s`. Medians of %s; ns/op is real time per op "
              "(per child for CancelFanout, per level for ChainCancel, per "
              "context for ColdDerive; aggregate over all threads for "
              "SharedParent). allocs/op counts malloc calls per op on the "
              "benchmark thread (Go: -benchmem, whole process). "
              "ColdDerive runs first for rctx, in a fresh process, so its "
              "time is mostly first-touch page faults; only its allocs/op "
              "has a target." %
              (" --quick" if args.mode == "quick" else "",
               "the repetitions" if args.mode != "quick" else "one run"))
    md.append("")
    busy = load_warning(machine)
    if busy:
        md.append("**Warning:** " + busy)
        md.append("")
    md.append("## Comparison")
    md.append("")
    md.append(md_table([c[0] for c in COLUMNS],
                       [[c[1](r) for c in COLUMNS] for r in rows]))
    md.append("")
    if srows:
        md.append("## Scaling: 1 and nproc threads")
        md.append("")
        md.append("Aggregate wall time per op over all threads' ops (Go: "
                  "RunParallel with GOMAXPROCS set to the thread count). "
                  "n/1 is the nproc-thread figure over the 1-thread one: "
                  "1/nproc is perfect scaling, 1 no gain, above 1 a "
                  "shared line costs more than the second core gives.")
        md.append("")
        md.append(md_table(*scaling_table(srows)))
        md.append("")
    if frows:
        md.append("## Bytes per live context")
        md.append("")
        md.append("perf/footprint holds 200,000 contexts of each kind (in "
                  "a fresh process per kind) and divides the growth of "
                  "malloc's bytes in use (mallinfo2) and of the resident "
                  "set by 200,000; child is a cancel context under one "
                  "live parent. Go: -benchmem B/op of making one, and the "
                  "live heap (HeapAlloc after GC) per context over "
                  "200,000 held, cancel functions included.")
        md.append("")
        md.append(md_table(*footprint_table(frows)))
        md.append("")
    md.append("## Targets")
    md.append("")
    trows = []
    for r in rows:
        for t in r["targets"]:
            trows.append([r["key"], "%s/rctx" % t["peer"],
                          ">= %gx" % t["want"],
                          "-" if t["got"] is None else "%.2fx" % t["got"],
                          "no data" if t["ok"] is None else
                          "ok" if t["ok"] else "**missed**"])
    for name, got, want, ok in checks:
        trows.append([name, "-", want, fmt_num(got, 3),
                      "ok" if ok else "**missed**"])
    md.append(md_table(["workload", "ratio", "target", "measured",
                        "verdict"], trows))
    md.append("")
    if go_note:
        md.append("Note: " + go_note)
        md.append("")
    for name, why in sorted(go_skipped.items()):
        md.append("- Go skipped `%s`: %s" % (name, why))
    if go_skipped:
        md.append("")
    if gb_errors:
        md.append("Benchmarks that reported an error:")
        md.append("")
        for (lib, key), msg in sorted(gb_errors.items()):
            md.append("- `BM_%s_%s`: %s" % (lib, key, msg))
        md.append("")
    md.append("Bytes per op (B/op): " + ", ".join(
        "%s rctx %s / Go %s" % (r["key"], fmt_num(r["rctx_bytes"], 0),
                                fmt_num(r["go_bytes"], 0))
        for r in rows if r["rctx_bytes"] is not None))
    md.append("")
    md.append("### CPU time of the benchmark thread")
    md.append("")
    md.append("On a shared machine wall time includes waiting for a CPU. "
              "CPU time of the benchmark thread(s) leaves that out, but "
              "also leaves out work the libraries hand to their own "
              "threads (RCU reclamation, timer service), so it flatters "
              "rctx; Go reports wall time only. Manual-time rows (per "
              "child, per level) have no CPU figure.")
    md.append("")
    md.append(md_table(
        ["workload", "rctx cpu ns", "mctx cpu ns", "std cpu ns",
         "mctx/rctx (cpu)"],
        [[r["key"], fmt_ns(r["rctx_cpu"]), fmt_ns(r["mctx_cpu"]),
          fmt_ns(r["std_cpu"]),
          fmt_num(ratio(r["mctx_cpu"], r["rctx_cpu"]), 1)]
         for r in rows if r["rctx_cpu"] is not None]))
    md.append("")
    if rss:
        md.append("## Memory after a spike")
        md.append("")
        md.append("perf/rss-spike: each spike in a fresh process, released "
                  "without rctx_shutdown; *after* is %s ms later, *back* the "
                  "first sample within 32 MB of *before* (-1: never)." %
                  rss[0].get("settle_ms"))
        md.append("")
        md.append(md_table(RSS_HEADER, rss_rows(rss)))
        md.append("")
    md.append("## Latency profiles")
    md.append("")
    if latency:
        lrows = []
        for j in latency:
            lrows.append([j.get("bench"), j.get("lib"),
                          j.get("mode") or j.get("label"),
                          j.get("samples"), j.get("p50_ns"), j.get("p99_ns"),
                          j.get("p999_ns"), j.get("max_ns"),
                          latency_note(j)])
        md.append(md_table(["program", "lib", "case", "samples", "p50 ns",
                            "p99 ns", "p99.9 ns", "max ns", "notes"],
                           lrows))
        md.append("")
        md.append("cancel-latency: the clock is read just before the cancel "
                  "and by the observer when it sees the context done "
                  "(rctx_wait returning, epoll_wait on rctx_fd returning, or "
                  "a rctx_done poll turning true). deadline-lateness: "
                  "after-func fire time minus the requested deadline; any "
                  "negative sample is an early expiry and fails the run.")
    else:
        md.append("No latency results.")
    md.append("")
    md.append("## The example proxy under wrk")
    md.append("")
    if proxy:
        md.append(md_table(PROXY_HEADER, proxy_rows(proxy)))
        md.append("")
        by = {j.get("mode"): j for j in proxy}
        if by.get("rctx", {}).get("rps") and by.get("plain", {}).get("rps"):
            md.append("rctx/plain req/s: %.2f." %
                      (by["rctx"]["rps"] / by["plain"]["rps"]))
            md.append("")
        md.append("`perf/proxy-load`: `examples/proxy` on 127.0.0.1 (2 "
                  "epoll workers, upstream in the same process), wrk -t2 "
                  "-c16. req/s and p50/p99 come from a run where every "
                  "request carries a 5 s deadline and the upstream answers "
                  "at once: `rctx` derives a request context and an "
                  "upstream sub-call per request and registers a loop "
                  "after-func; `plain` is the same proxy with no context "
                  "and no deadline. The 504s and their lateness (time the "
                  "loop after-func ran minus the deadline) come from a "
                  "second run of the rctx proxy where 1 request in 10 "
                  "outlives a 20 ms deadline. \"contexts after drain\" is "
                  "counted by the proxy after SIGTERM.")
    else:
        md.append("No proxy results" +
                  (": " + proxy_note if proxy_note else "."))
    md.append("")
    md.append("## perf stat (per op)")
    md.append("")
    if perfstat:
        events = sorted({e for v in perfstat.values() for e in v})
        prow = []
        for (lib, key), ev in sorted(perfstat.items(),
                                     key=lambda kv: (kv[0][1], kv[0][0])):
            prow.append([key, lib] + [fmt_num(ev.get(e), 1) for e in events])
        md.append(md_table(["workload", "lib"] + events, prow))
        md.append("")
        md.append("Counts cover the whole benchmark process divided by the "
                  "iterations run, so setup is included: compare rows, do "
                  "not read them as exact per-op costs.")
    else:
        why = "not collected"
        ppath = os.path.join(d, "perfstat.txt")
        if os.path.exists(ppath):
            with open(ppath) as f:
                why = f.read().strip()
        md.append("Hardware counters unavailable: " + why)
    md.append("")
    md.append("## Plots")
    md.append("")
    for p in pngs:
        md.append("![%s](%s)" % (p[:-4], p))
        md.append("")
    for n in plot_notes:
        md.append("- " + n)
    md.append("")
    md.append("## Machine")
    md.append("")
    for k, v in machine.items():
        md.append("- %s: %s" % (k, v))
    if gb_ctx:
        md.append("- google benchmark context: %s CPUs at %s MHz; "
                  "libbenchmark itself built as %s (Debian's package; "
                  "rctx is built with buildtype=release)" %
                  (gb_ctx.get("num_cpus"), gb_ctx.get("mhz_per_cpu"),
                   gb_ctx.get("library_build_type")))
    md.append("")
    with open(os.path.join(d, "report.md"), "w") as f:
        f.write("\n".join(md))
    print()
    print("report: %s" % os.path.join(d, "report.md"))
    for p in pngs:
        print("plot:   %s" % os.path.join(d, p))
    for n in plot_notes:
        print("plot note: %s" % n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
