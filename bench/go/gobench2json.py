#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Turn `go test -bench -benchmem -v` output into one JSON record per benchmark.
"""Usage: gobench2json.py GO_VERSION < go-test-output > out.json

Each record: name (without the -GOMAXPROCS suffix), ns_per_op (median over
the -count runs), allocs_per_op, bytes_per_op (medians), runs, go_version,
the custom metrics Go reported (ns/child, ns/level) as medians under
"metrics", and cxx_name: the matching benchmark of bench/bench-ctx.cc
(without its BM_<lib>_ prefix, nor Google Benchmark's /iterations:N,
/manual_time, /real_time suffixes; threads as /threads:N). For
CancelFanout and ChainCancel the per-child / per-level figure is the one
to compare, so it is copied to "ns_per_unit", with allocs_per_unit and
bytes_per_unit (Go counts allocations only while the timer runs: for
CancelFanout, during the cancels). Skipped benchmarks appear with
"skipped" set to the reason and null figures.

SharedParent: Go's ns/op is wall time over the ops of all goroutines, as
is Google Benchmark's real_time with T threads (it divides the threads'
summed time by T and by the summed iterations): the two compare as is.
"""
import json
import re
import statistics
import sys

RESULT = re.compile(r'^(Benchmark\S+?)(?:-\d+)?\s+(\d+)\s+(.*)$')
SKIP = re.compile(r'^\s*--- SKIP: (Benchmark\S+)')
FAIL = re.compile(r'^\s*--- FAIL: (Benchmark\S+)')


def cxx_name(name):
    """The C++ suite's name for a Go benchmark name, or None."""
    n = name[len('Benchmark'):]
    fixed = {
        'DeriveCancelRelease/parent=background':
            'DeriveCancelRelease/parent:background',
        'DeriveCancelRelease/parent=live_cancel':
            'DeriveCancelRelease/parent:live',
        'DeriveCancelRelease/parent=value3':
            'DeriveCancelRelease/parent:value3',
        'TimeoutCancel/live=1000': 'WithTimeoutCancel/timers:1k',
        'TimeoutCancel/live=100000': 'WithTimeoutCancel/timers:100k',
        'TimeoutCancel/live=1000000': 'WithTimeoutCancel/timers:1M',
        'WithValue': 'WithValue',
        'ChainCancel/depth=1000': 'ChainCancel/depth:1000',
        'DonePoll': 'DonePoll',
        'Err': 'Err',
        'Cause': 'Cause',
        'AfterFunc/register_stop': 'AfterFunc/op:register-stop',
        'AfterFunc/register_fire': 'AfterFunc/op:register-fire',
        'DoneChannel': 'DeriveFdCancelRelease',
        'Request': 'Request',
    }
    if n in fixed:
        return fixed[n]
    m = re.match(r'ValueLookup/depth=(\d+)/(hit_nearest|hit_deepest|miss)$', n)
    if m:
        find = {'hit_nearest': 'nearest', 'hit_deepest': 'deepest',
                'miss': 'miss'}[m.group(2)]
        return 'Value/depth:%s/find:%s' % (m.group(1), find)
    m = re.match(r'CancelFanout/children=(\d+)$', n)
    if m:
        return 'CancelFanout/children:' + m.group(1)
    m = re.match(r'SharedParent/threads=(\d+)$', n)
    if m:
        return 'SharedParent/threads:' + m.group(1)
    m = re.match(r'Parallel/op=(\w+)/parent=(\w+)/threads=(\d+)$', n)
    if m:
        return 'Parallel/op:%s/parent:%s/threads:%s' % m.groups()
    m = re.match(r'Footprint/kind=(\w+)$', n)
    if m:
        return 'Footprint/kind:' + m.group(1)
    return None


def units_per_op(name):
    """Children (CancelFanout) or levels (ChainCancel) in one op."""
    m = re.search(r'/children=(\d+)$', name)
    if m:
        n = int(m.group(1))
        return n if n >= 10000 else (10000 // n) * n
    m = re.search(r'/depth=(\d+)$', name)
    return int(m.group(1)) if m else 1


def median(xs):
    return statistics.median(xs) if xs else None


def main():
    go_version = sys.argv[1] if len(sys.argv) > 1 else None
    runs = {}
    order = []
    skipped = {}
    failed = set()
    last_log = ''
    for line in sys.stdin:
        line = line.rstrip('\n')
        m = SKIP.match(line)
        if m:
            # go test -v prints b.Skip's message ("    x_test.go:12:
            # reason") just before the --- SKIP line.
            skipped.setdefault(m.group(1), last_log)
            last_log = ''
            continue
        if line.startswith('    '):
            last_log = line.strip().split(': ', 1)[-1]
            continue
        last_log = ''
        m = FAIL.match(line)
        if m:
            failed.add(m.group(1))
            continue
        m = RESULT.match(line)
        if not m:
            continue
        name, fields = m.group(1), m.group(3).split()
        rec = runs.setdefault(name, {'iters': [], 'vals': {}})
        if name not in order:
            order.append(name)
        rec['iters'].append(int(m.group(2)))
        for i in range(0, len(fields) - 1, 2):
            try:
                v = float(fields[i])
            except ValueError:
                continue
            rec['vals'].setdefault(fields[i + 1], []).append(v)
    out = []
    for name in order:
        vals = runs[name]['vals']
        r = {
            'name': name,
            'cxx_name': cxx_name(name),
            'ns_per_op': median(vals.get('ns/op', [])),
            'allocs_per_op': median(vals.get('allocs/op', [])),
            'bytes_per_op': median(vals.get('B/op', [])),
            'runs': len(runs[name]['iters']),
            'go_version': go_version,
        }
        metrics = {u: median(v) for u, v in vals.items()
                   if u not in ('ns/op', 'allocs/op', 'B/op')}
        if metrics:
            r['metrics'] = metrics
        for unit in ('ns/child', 'ns/level'):
            if unit in metrics:
                per = units_per_op(name)
                r['ns_per_unit'] = metrics[unit]
                r['unit'] = unit
                r['units_per_op'] = per
                if r['allocs_per_op'] is not None:
                    r['allocs_per_unit'] = r['allocs_per_op'] / per
                    r['bytes_per_unit'] = r['bytes_per_op'] / per
        if name in failed:
            r['failed'] = True
        out.append(r)
    for name, reason in skipped.items():
        if name in runs:
            continue
        out.append({'name': name, 'cxx_name': cxx_name(name),
                    'ns_per_op': None, 'allocs_per_op': None,
                    'bytes_per_op': None, 'runs': 0,
                    'go_version': go_version,
                    'skipped': reason or 'skipped'})
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write('\n')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
