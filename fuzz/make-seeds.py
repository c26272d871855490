#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Write the seed corpora fuzz/corpus/{tree,time}/ (deterministic output).
"""Seed generator for fuzz-tree.c and fuzz-time.c.

The seeds follow each target's input encoding (see the top comments of
the targets) so that the fuzzers start from inputs that reach deep
states: chains of every kind of context, deadlines on the grid that fire
through loop runs, after-funcs, cascades, and time values at the int64
limits. Run from anywhere: python3 fuzz/make-seeds.py
"""
import os
import random
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# fuzz-tree.c opcodes (op % 16).
T_CANCEL_CHILD, T_DEADLINE_KIND, T_VALUE, T_WITHOUT = 0, 2, 3, 4
T_CANCEL, T_CANCEL_CAUSE, T_RETAIN, T_RELEASE = 5, 6, 7, 8
T_AFTER, T_STOP, T_ADVANCE, T_WAIT, T_FD = 9, 10, 11, 13, 14
NSLOTS = 16


def tree_derive(kind, slot, parent, a=0, c=0):
    """kind: 'cancel', 'value', 'without', or 0..3 for deadline,
    timeout, deadline_cause, timeout_cause."""
    if kind == 'cancel':
        op = T_CANCEL_CHILD
    elif kind == 'value':
        op = T_VALUE
    elif kind == 'without':
        op = T_WITHOUT
    else:
        op = T_DEADLINE_KIND | (kind << 4)
    # parent: a slot index, or NSLOTS/NSLOTS+1 for background/todo
    return bytes([op, slot, parent, a, c])


def tree_random(rng, nops):
    out = bytearray()
    for _ in range(nops):
        r = rng.random()
        slot = rng.randrange(NSLOTS)
        par = rng.randrange(NSLOTS + 2)
        if r < 0.35:
            kind = rng.choice(['cancel', 'value', 'without', 0, 1, 2, 3])
            a = rng.randrange(256)
            if isinstance(kind, int) and kind in (0, 2) and rng.random() < .7:
                a = grid(rng.randrange(1, 17))
            out += tree_derive(kind, slot, par, a, rng.randrange(256))
        elif r < 0.45:
            out += bytes([T_CANCEL, slot])
        elif r < 0.52:
            out += bytes([T_CANCEL_CAUSE, slot, rng.randrange(256)])
        elif r < 0.57:
            out += bytes([T_RETAIN, slot])
        elif r < 0.64:
            out += bytes([T_RELEASE, slot])
        elif r < 0.72:
            out += bytes([T_AFTER, rng.randrange(8), slot])
        elif r < 0.76:
            out += bytes([T_STOP, rng.randrange(8)])
        elif r < 0.88:
            out += bytes([T_ADVANCE, rng.randrange(9)])
        elif r < 0.94:
            out += bytes([T_WAIT, slot, rng.randrange(2)])
        else:
            out += bytes([T_FD, slot])
    return bytes(out)


def grid(k):
    """A pick_deadline byte for vnow + k grid ticks (1 <= k <= 16):
    b % 12 >= 8 selects the grid, b >> 4 is k - 1."""
    for lo in range(16):
        b = (k - 1) << 4 | lo
        if b % 12 >= 8:
            return b
    raise ValueError(k)


def tree_scenarios():
    s = {}
    # A chain of every kind under background, cancelled at the top.
    s['chain-cancel'] = (tree_derive('cancel', 0, 16) +
                         tree_derive('value', 1, 0, 1, 0) +
                         tree_derive(0, 2, 1, grid(3)) +
                         tree_derive('without', 3, 2) +
                         tree_derive('cancel', 4, 3) +
                         tree_derive(2, 5, 2, grid(2), 5) +
                         bytes([T_AFTER, 0, 5, T_AFTER, 1, 4, T_FD, 5]) +
                         bytes([T_CANCEL_CAUSE, 0, 5, T_WAIT, 5, 0]))
    # Deadlines that fire through the loop, child before parent.
    s['grid-fire'] = (tree_derive(2, 0, 16, grid(5), 3) +
                      tree_derive(2, 1, 0, grid(2), 4) +
                      tree_derive(0, 2, 1, grid(1)) +
                      tree_derive('value', 3, 2, 0, 1) +
                      bytes([T_AFTER, 0, 2, T_FD, 3, T_ADVANCE, 1,
                             T_ADVANCE, 2, T_ADVANCE, 8]))
    # Past deadlines and non-positive timeouts: born done.
    s['past'] = (tree_derive(0, 0, 16, 0) + tree_derive(0, 1, 17, 3) +
                 tree_derive(2, 2, 16, 4, 2) + tree_derive(1, 3, 16, 1) +
                 tree_derive(3, 4, 16, 3, 6) +
                 bytes([T_CANCEL, 0, T_AFTER, 2, 1, T_WAIT, 4, 1]))
    # Far and saturated deadlines and timeouts.
    s['far'] = (tree_derive(0, 0, 16, 7) + tree_derive(1, 1, 0, 8) +
                tree_derive(1, 2, 1, 7) + tree_derive(0, 3, 2, 6) +
                tree_derive(0, 4, 3, 5) + tree_derive(3, 5, 4, 4, 6) +
                bytes([T_ADVANCE, 8, T_CANCEL, 0]))
    # Registration life cycle: stop before, stop after, re-register.
    s['after'] = (tree_derive('cancel', 0, 16) +
                  bytes([T_AFTER, 0, 0, T_STOP, 0, T_STOP, 0,
                         T_AFTER, 0, 0, T_AFTER, 1, 0, T_RELEASE, 0,
                         T_STOP, 1]) +
                  tree_derive('without', 1, 17) +
                  bytes([T_AFTER, 2, 1, T_STOP, 2]))
    # References: retain, release down to zero while children live.
    s['refs'] = (tree_derive('cancel', 0, 16) +
                 tree_derive(0, 1, 0, grid(2)) +
                 bytes([T_RETAIN, 0, T_RETAIN, 0, T_RELEASE, 0,
                        T_RELEASE, 0, T_RELEASE, 0, T_ADVANCE, 3]))
    # Shadowed values, NULL values.
    s['values'] = (tree_derive('value', 0, 16, 0, 0) +
                   tree_derive('value', 1, 0, 0, 3) +
                   tree_derive('value', 2, 1, 1, 1) +
                   tree_derive('cancel', 3, 2) +
                   tree_derive('without', 4, 3) +
                   tree_derive('value', 5, 4, 0, 2))
    return s


# fuzz-time.c: op % 8: 0-2 deadline/timeout ((op >> 3) & 1), 3 cancel
# child or without, 4 cancel, 5-7 advance.
def tval(sel, raw=0):
    return bytes([sel]) + struct.pack('>Q', raw & (2**64 - 1))


def time_derive(timeout, parent, cause_sel, sel, raw=0):
    b = bytes([(1 if timeout else 0) << 3, parent + 1])
    if cause_sel is None:
        b += bytes([0])
    else:
        b += bytes([1, cause_sel])
    return b + tval(sel, raw)


def time_advance(how, sel, raw=0):
    return bytes([5, how]) + tval(sel, raw)


def time_random(rng, nops):
    out = bytearray()
    for _ in range(nops):
        r = rng.random()
        if r < 0.5:
            cs = None if rng.random() < .5 else rng.randrange(6)
            out += time_derive(rng.random() < .5, rng.randrange(-1, 8), cs,
                               rng.randrange(16), rng.getrandbits(64))
        elif r < 0.6:
            out += bytes([3 | (rng.randrange(2) << 3),
                          rng.randrange(9), 0]) + tval(4)
        elif r < 0.7:
            out += bytes([4, rng.randrange(8), rng.randrange(6)])
        else:
            out += time_advance(rng.randrange(4), rng.randrange(16),
                                rng.getrandbits(64))
    return bytes(out)


def time_scenarios():
    s = {}
    lim = b''
    for sel in range(1, 8):
        lim += time_derive(True, -1, None, sel)
        lim += time_derive(False, -1, 2, sel)
    s['limits'] = lim
    # now + timeout right at INT64_MAX (selector 9: INT64_MAX - now + x).
    s['saturate'] = b''.join(time_derive(True, -1, None, 9, x)
                             for x in (0, 1, 2**23, 2**23 + 1, 2**24 - 1))
    # Parent far, child near: the earlier wins; then run to each deadline.
    s['nested'] = (time_derive(False, -1, 1, 13, 2**30) +
                   time_derive(False, 0, 3, 13, 2**20) +
                   time_derive(True, 1, None, 14, 2**22) +
                   time_advance(1, 0, 1) + time_advance(3, 0, 1) +
                   time_advance(3, 0, 0))
    s['run-to-max'] = (time_derive(False, -1, None, 7) +
                       time_derive(False, -1, None, 12, 5) +
                       time_advance(0, 12, 7) + time_advance(0, 6))
    s['negative'] = b''.join(time_derive(t, -1, 0, sel, 12345)
                             for t in (False, True) for sel in (10, 15, 3))
    return s


def write(dirname, seeds):
    d = os.path.join(HERE, 'corpus', dirname)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        # regress-* are inputs the fuzzers found; keep them.
        if not f.startswith('regress-'):
            os.unlink(os.path.join(d, f))
    for name, data in sorted(seeds.items()):
        with open(os.path.join(d, name), 'wb') as f:
            f.write(data)
    return len(seeds)


def main():
    rng = random.Random(20261122)
    tree = tree_scenarios()
    for i in range(30):
        tree['random-%02d' % i] = tree_random(rng, rng.randrange(10, 80))
    time = time_scenarios()
    for i in range(30):
        time['random-%02d' % i] = time_random(rng, rng.randrange(5, 40))
    n1 = write('tree', tree)
    n2 = write('time', time)
    print('wrote %d tree seeds, %d time seeds' % (n1, n2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
