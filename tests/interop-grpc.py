#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Interop: rctx's grpc-timeout against a real grpcio client and server.

(a) A real grpcio client calls a raw HTTP/2 server (python3-h2) on
    loopback; the grpc-timeout header it sends, parsed by rctx, is the
    client's timeout less the time that passed before the send, and never
    more than grpc core's rounding up (about 1%) above the timeout.
(b) A raw HTTP/2 client sends a grpc-timeout that rctx formatted to a real
    grpcio server; the handler's context.time_remaining() is the parsed
    value less the time that passed since the send.

Bounds are brackets of clock reads taken in this one process (CLOCK_MONOTONIC
on both sides), not guesses about speed. rctx is called through ctypes on
the built librctx.so. Exits 77 (meson: skipped) without grpcio or h2.

Usage: interop-grpc.py path/to/librctx.so
"""
import ctypes
import socket
import sys
import threading
import time

try:
    import grpc
    import h2.config
    import h2.connection
    import h2.events
except ImportError as e:  # python3-grpcio / python3-h2 not installed
    print(f"SKIP: {e}")
    sys.exit(77)

from concurrent import futures

NS = 1_000_000_000
MS = 1_000_000
GRPC_TIMEOUT_SIZE = 10

lib = ctypes.CDLL(sys.argv[1])
lib.rctx_grpc_timeout_parse.argtypes = [
    ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_int64)]
lib.rctx_grpc_timeout_parse.restype = ctypes.c_int
lib.rctx_grpc_timeout_format.argtypes = [
    ctypes.c_int64, ctypes.c_char_p, ctypes.c_size_t]
lib.rctx_grpc_timeout_format.restype = ctypes.c_int

failures = 0


def check(cond, what):
    global failures
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures += 1


def rctx_parse(value: bytes) -> int:
    out = ctypes.c_int64(-1)
    rc = lib.rctx_grpc_timeout_parse(value, len(value), ctypes.byref(out))
    if rc != 0:
        raise ValueError(f"rctx_grpc_timeout_parse({value!r}) = {rc}")
    return out.value


def rctx_format(ns: int) -> bytes:
    buf = ctypes.create_string_buffer(GRPC_TIMEOUT_SIZE)
    n = lib.rctx_grpc_timeout_format(ns, buf, GRPC_TIMEOUT_SIZE)
    if n < 2:
        raise ValueError(f"rctx_grpc_timeout_format({ns}) = {n}")
    return buf.raw[:n]


def now_ns() -> int:
    return time.monotonic_ns()


# ---- (a) a real grpcio client, captured by a raw h2 server ----------------

def serve_one_capture(listener, captured):
    """Accept one connection, record the first request's headers and the
    time they arrived, answer trailers-only UNIMPLEMENTED."""
    sock, _ = listener.accept()
    sock.settimeout(60)  # a hang guard only
    conn = h2.connection.H2Connection(h2.config.H2Configuration(
        client_side=False, header_encoding=None))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    done = False
    try:
        while not done:
            data = sock.recv(65536)
            if not data:
                break
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.RequestReceived):
                    captured["at"] = now_ns()
                    captured["headers"] = dict(ev.headers)
                    conn.send_headers(ev.stream_id, [
                        (b":status", b"200"),
                        (b"content-type", b"application/grpc"),
                        (b"grpc-status", b"12"),
                        (b"grpc-message", b"captured"),
                    ], end_stream=True)
                    done = True
                elif isinstance(ev, h2.events.DataReceived):
                    conn.acknowledge_received_data(
                        ev.flow_controlled_length, ev.stream_id)
            sock.sendall(conn.data_to_send())
    finally:
        sock.close()


def client_case(timeout_s):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    captured = {}
    th = threading.Thread(target=serve_one_capture, args=(listener, captured))
    th.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        call = ch.unary_unary("/rctx.Interop/Capture")
        t0 = now_ns()
        try:
            call(b"", timeout=timeout_s)
        except grpc.RpcError:
            pass  # UNIMPLEMENTED by design (or DEADLINE_EXCEEDED)
    th.join(60)
    listener.close()
    hdrs = captured.get("headers", {})
    value = hdrs.get(b"grpc-timeout")
    check(value is not None, f"(a) grpcio sent grpc-timeout for {timeout_s} s")
    if value is None:
        return
    got = rctx_parse(value)
    want = int(timeout_s * NS)
    elapsed = captured["at"] - t0
    # grpc core rounds the remaining time up (to about three significant
    # figures, whole ms): never more than 1% plus 1 ms over the timeout.
    check(want - elapsed <= got <= want + max(want // 100, MS),
          f"(a) client timeout {timeout_s} s sent as {value.decode()}: "
          f"rctx reads {got} ns, in [{want - elapsed}, "
          f"{want + max(want // 100, MS)}]")


# ---- (b) an rctx-formatted header, read by a real grpcio server -----------

def server_case(server, port, seen, timeout_ns):
    value = rctx_format(timeout_ns)
    parsed = rctx_parse(value)
    check(timeout_ns <= parsed, f"(b) rctx formats {timeout_ns} ns as "
          f"{value.decode()} ({parsed} ns), never earlier")
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(
        client_side=True, header_encoding=None))
    conn.initiate_connection()
    seen.clear()
    t_send = now_ns()
    conn.send_headers(1, [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", b"/rctx.Interop/Remaining"),
        (b":authority", f"127.0.0.1:{port}".encode()),
        (b"te", b"trailers"),
        (b"content-type", b"application/grpc"),
        (b"grpc-timeout", value),
    ])
    conn.send_data(1, b"\x00\x00\x00\x00\x00", end_stream=True)  # empty msg
    sock.sendall(conn.data_to_send())
    status = None
    ended = False
    while not ended:
        data = sock.recv(65536)
        if not data:
            break
        for ev in conn.receive_data(data):
            if isinstance(ev, (h2.events.ResponseReceived,
                               h2.events.TrailersReceived)):
                status = dict(ev.headers).get(b"grpc-status", status)
            elif isinstance(ev, h2.events.DataReceived):
                conn.acknowledge_received_data(
                    ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                ended = True
        sock.sendall(conn.data_to_send())
    sock.close()
    check(status == b"0", f"(b) grpcio answered grpc-status {status!r}")
    if "remaining" not in seen:
        check(False, "(b) handler did not run")
        return
    remaining = int(seen["remaining"] * NS)
    elapsed = seen["at"] - t_send
    # grpc core keeps deadlines in whole ms: allow 1 ms either way.
    check(parsed - elapsed - MS <= remaining <= parsed + MS,
          f"(b) {value.decode()} shows up as time_remaining() "
          f"{seen['remaining']:.6f} s, in [{(parsed - elapsed - MS) / NS:.6f}, "
          f"{(parsed + MS) / NS:.6f}]")


def main():
    # (a)
    # Long enough that no stall makes the call expire before it is sent
    # (the raw server answers at once, so none of them is waited out).
    for timeout_s in (4.25, 75.0, 3 * 3600.0, 40 * 86400.0):
        client_case(timeout_s)

    # (b)
    seen = {}

    def remaining(request, context):
        seen["at"] = now_ns()
        seen["remaining"] = context.time_remaining()
        return b""

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "rctx.Interop",
        {"Remaining": grpc.unary_unary_rpc_method_handler(remaining)}),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        for timeout_ns in (15 * NS,             # 15000000u
                           600 * NS,            # 600000m
                           8 * 86400 * NS,      # 691200S
                           2000 * 86400 * NS,   # 2880000M
                           1234567891 * MS):    # 1234568S (rounded up)
            server_case(server, port, seen, timeout_ns)
    finally:
        server.stop(0)

    print(f"interop-grpc: {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
