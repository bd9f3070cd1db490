"""A fault-injecting HTTP/1.1 proxy for S3 traffic on loopback.

    with FaultProxy("http://127.0.0.1:9000", rate=0.2, seed=7) as p:
        client talks to p.endpoint instead of the server

The client connects to the proxy as if it were the S3 server (path-style,
same Host header, so SigV4 signatures stay valid). Each request is parsed
(head, then a Content-Length or chunked body), then one decision is taken:

    pass      forward to the server and relay the answer
    error500  answer 500 InternalError (S3 XML body) without forwarding
    error503  answer 503 SlowDown (S3 XML body) without forwarding
    reset     forward, relay the status line, headers and about half of the
              body, then reset the connection (RST)
    truncate  as reset, but close cleanly (FIN): a short body
    stall     wait stall_seconds, then forward

Decisions come first from a script (`p.script("error503", "pass", ...)`,
consumed one per request), then from a seeded RNG: with probability `rate`
one of `kinds`, else pass. `methods` restricts random faults to some HTTP
methods. `cut_methods` restricts reset/truncate (which happen after the
server has acted) to some methods, e.g. not POST, whose retry after a
completed CompleteMultipartUpload is a different test: a cut script entry
waits for a request of such a method, a random cut becomes another kind. Keep-alive is kept on both sides; "Expect: 100-continue" is answered
by the proxy itself.

Modes (p.set_mode): "pass" (normal), "down" (accept, then reset every
connection at once), "refuse" (nothing listens: ECONNREFUSED), "hang"
(accept and read, never answer). Leaving "pass" also drops open connections.

A store without some feature: `reject_headers=("If-None-Match",)` answers
every request that carries one of these headers 501 NotImplemented (as
stores without conditional writes do), without forwarding it.

TLS: `tls=ssl_context` (a server-side ssl.SSLContext) makes the proxy an
HTTPS endpoint (p.endpoint is then https://...) in front of a plain-HTTP
server: the client side of walrust's TLS against a real handshake.

Counters: p.counts (requests by method), p.faults (by decision),
p.log (method, path, decision, upstream status), p.connections,
p.gets (path, Range header or None) of every GET, p.undelivered (method,
path, upstream status) of answers the client was no longer there to read
(it closed the connection while the server was acting on its request).
"""

import collections
import random
import socket
import struct
import threading
import time
import urllib.parse

KINDS = ("error500", "error503", "reset", "truncate", "stall")
DEFAULT_KINDS = KINDS
MODES = ("pass", "down", "refuse", "hang")
MAX_HEAD = 64 * 1024

_ERRORS = {
    "error500": (500, "Internal Server Error", "InternalError",
                 "We encountered an internal error. Please try again."),
    "error503": (503, "Service Unavailable", "SlowDown",
                 "Please reduce your request rate."),
    # for reject_headers, never a random decision
    "notimplemented": (501, "Not Implemented", "NotImplemented",
                       "A header you provided implies functionality that "
                       "is not implemented."),
}


class _Closed(Exception):
    pass


class _Reader:
    """Buffered reads from a socket: lines and exact counts."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise _Closed()
        self.buf += data

    def readline(self, limit=MAX_HEAD):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                return line
            if len(self.buf) > limit:
                raise ValueError("header line too long")
            self._fill()

    def read(self, n):
        """Up to n bytes (at least 1), from the buffer first."""
        if not self.buf:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_exact(self, n):
        parts = []
        while n > 0:
            b = self.read(n)
            parts.append(b)
            n -= len(b)
        return b"".join(parts)

    def at_eof(self):
        return not self.buf


def _read_head(reader):
    """Start line and header list [(name, value)], or None on a clean EOF
    before any byte."""
    try:
        line = reader.readline()
    except _Closed:
        return None
    while line in (b"\r\n", b"\n"):  # tolerate stray CRLF between messages
        line = reader.readline()
    start = line.rstrip(b"\r\n").decode("latin-1")
    headers = []
    total = len(line)
    while True:
        h = reader.readline()
        total += len(h)
        if total > MAX_HEAD:
            raise ValueError("head too large")
        if h in (b"\r\n", b"\n"):
            return start, headers
        name, _, value = h.decode("latin-1").partition(":")
        headers.append((name.strip(), value.strip()))


def _get(headers, name):
    name = name.lower()
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


def _head_bytes(start, headers):
    return (start + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
            + "\r\n").encode("latin-1")


def _relay_chunked(reader, out, limit=None):
    """Copy a chunked body (chunks, last chunk, trailers) verbatim. With a
    limit, stop after about `limit` bytes and return False."""
    sent = 0
    while True:
        size_line = reader.readline()
        size = int(size_line.split(b";")[0].strip(), 16)
        data = size_line
        if size:
            data += reader.read_exact(size + 2)
        else:  # trailers up to the blank line
            while True:
                t = reader.readline()
                data += t
                if t in (b"\r\n", b"\n"):
                    break
        if limit is not None and sent + len(data) > limit:
            out(data[:max(1, limit - sent)])
            return False
        out(data)
        sent += len(data)
        if not size:
            return True


def _relay_length(reader, n, out, limit=None):
    """Copy n body bytes; with a limit stop after `limit` and return False."""
    stop = n if limit is None else min(n, limit)
    left = stop
    while left > 0:
        b = reader.read(min(left, 65536))
        out(b)
        left -= len(b)
    return stop == n


def _reset(sock):
    """Close with RST instead of FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                        struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class FaultProxy:
    def __init__(self, upstream, rate=0.0, kinds=DEFAULT_KINDS, seed=0,
                 stall_seconds=2.0, methods=None, cut_methods=None, port=0,
                 tls=None, reject_headers=()):
        u = urllib.parse.urlsplit(upstream)
        self.tls = tls
        self.reject_headers = {h.lower() for h in reject_headers}
        self.upstream = (u.hostname, u.port or 80)
        self.rate = rate
        self.kinds = tuple(kinds)
        self.methods = set(methods) if methods else None
        self.cut_methods = set(cut_methods) if cut_methods else None
        self.stall_seconds = stall_seconds
        self.rng = random.Random(seed)
        self.mode = "pass"
        self.port = port
        self.counts = collections.Counter()
        self.faults = collections.Counter()
        self.log = []
        self.gets = []
        self.undelivered = []
        self.connections = 0
        self._script = collections.deque()
        self._lock = threading.Lock()
        self._socks = set()
        self._threads = []
        self._listener = None
        self._running = False

    # ---- control
    @property
    def endpoint(self):
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self):
        self._running = True
        self._listen()
        return self

    def stop(self):
        self._running = False
        self._close_listener()
        self._drop_connections()
        for t in list(self._threads):
            t.join(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def configure(self, rate=None, kinds=None, seed=None, methods=(),
                  stall_seconds=None, cut_methods=()):
        with self._lock:
            if cut_methods != ():
                self.cut_methods = set(cut_methods) if cut_methods else None
            if rate is not None:
                self.rate = rate
            if kinds is not None:
                self.kinds = tuple(kinds)
            if seed is not None:
                self.rng = random.Random(seed)
            if methods != ():
                self.methods = set(methods) if methods else None
            if stall_seconds is not None:
                self.stall_seconds = stall_seconds

    def script(self, *decisions):
        """Force the decisions of the next requests, in order. An entry is
        a decision, or (decision, match) with match(method, target) -> bool
        choosing the request it applies to."""
        for d in decisions:
            d = d[0] if isinstance(d, tuple) else d
            assert d == "pass" or d in KINDS, d
        with self._lock:
            self._script.extend(decisions)

    def set_mode(self, mode):
        assert mode in MODES, mode
        with self._lock:
            old, self.mode = self.mode, mode
        if mode == "refuse":
            self._close_listener()
        elif old == "refuse" and self._running:
            self._listen()
        if mode != "pass":
            self._drop_connections()

    def reset_counters(self):
        with self._lock:
            self.counts.clear()
            self.faults.clear()
            self.log.clear()
            self.undelivered.clear()
            self.connections = 0

    # ---- internals
    def _listen(self):
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", self.port))
        ls.listen(128)
        ls.settimeout(0.2)
        self.port = ls.getsockname()[1]
        self._listener = ls
        t = threading.Thread(target=self._accept_loop, args=(ls,),
                             name="faultproxy-accept", daemon=True)
        self._threads.append(t)
        t.start()

    def _close_listener(self):
        ls, self._listener = self._listener, None
        if ls is not None:
            try:  # stop listening now, even while accept() is blocked
                ls.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            ls.close()

    def _track(self, sock):
        with self._lock:
            self._socks.add(sock)

    def _untrack(self, sock):
        with self._lock:
            self._socks.discard(sock)
        try:
            sock.close()
        except OSError:
            pass

    def _drop_connections(self):
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _accept_loop(self, ls):
        while self._running and self._listener is ls:
            try:
                c, _ = ls.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                mode = self.mode
            if mode == "down":
                _reset(c)
                continue
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            t = threading.Thread(target=self._serve, args=(c,),
                                 name="faultproxy-conn", daemon=True)
            self._threads = [x for x in self._threads if x.is_alive()]
            self._threads.append(t)
            t.start()

    def _allowed(self, decision, method):
        return decision not in ("reset", "truncate") or \
            self.cut_methods is None or method in self.cut_methods

    def _decide(self, method, target):
        with self._lock:
            for i, d in enumerate(self._script):
                if isinstance(d, tuple):
                    d, match = d
                    ok = match(method, target)
                else:
                    ok = self._allowed(d, method)
                if ok:
                    del self._script[i]
                    return d
            if self.methods is not None and method not in self.methods:
                return "pass"
            if self.rate > 0 and self.rng.random() < self.rate:
                d = self.rng.choice(self.kinds)
                if not self._allowed(d, method):
                    other = [k for k in self.kinds
                             if self._allowed(k, method)]
                    d = self.rng.choice(other) if other else "pass"
                return d
            return "pass"

    def _record(self, method, path, decision, status):
        with self._lock:
            self.log.append((method, path, decision, status))

    def _serve(self, client):
        self._track(client)
        client.settimeout(120)
        if self.tls:
            try:
                tc = self.tls.wrap_socket(client, server_side=True)
            except OSError as e:  # the client refused our certificate
                self._record("TLS", "", "handshake-failed", str(e)[:80])
                self._untrack(client)
                client.close()
                return
            with self._lock:  # wrap_socket detached the plain socket
                self._socks.discard(client)
                self._socks.add(tc)
            client = tc
        reader = _Reader(client)
        up = None
        try:
            while self._running:
                head = _read_head(reader)
                if head is None:
                    return
                if self.mode == "hang":
                    while self._running and self.mode == "hang":
                        time.sleep(0.1)
                    return
                start, headers = head
                method, target, _ = start.split(" ", 2)
                with self._lock:
                    self.counts[method] += 1
                    if method == "GET":
                        self.gets.append((target, _get(headers, "Range")))
                # the request body
                expect = _get(headers, "Expect")
                headers = [(k, v) for k, v in headers
                           if k.lower() != "expect"]
                if expect and expect.lower() == "100-continue":
                    client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                body = []
                te = (_get(headers, "Transfer-Encoding") or "").lower()
                if "chunked" in te:
                    _relay_chunked(reader, body.append)
                else:
                    n = int(_get(headers, "Content-Length") or 0)
                    _relay_length(reader, n, body.append)
                body = b"".join(body)
                client_close = (_get(headers, "Connection") or "").lower() \
                    == "close"

                if any(k.lower() in self.reject_headers for k, _ in headers):
                    self._record(method, target, "notimplemented", 501)
                    with self._lock:
                        self.faults["notimplemented"] += 1
                    client.sendall(self._error("notimplemented", method,
                                               target, client_close))
                    if client_close:
                        return
                    continue
                decision = self._decide(method, target)
                with self._lock:
                    self.faults[decision] += 1
                if decision in _ERRORS:
                    self._record(method, target, decision,
                                 _ERRORS[decision][0])
                    client.sendall(self._error(decision, method, target,
                                               client_close))
                    if client_close:
                        return
                    continue
                if decision == "stall":
                    time.sleep(self.stall_seconds)

                # forward
                if up is None:
                    up = socket.create_connection(self.upstream, timeout=10)
                    up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    up.settimeout(120)
                    self._track(up)
                    up_reader = _Reader(up)
                up.sendall(_head_bytes(start, headers) + body)
                while True:  # skip interim 1xx answers
                    rhead = _read_head(up_reader)
                    if rhead is None:
                        raise _Closed()
                    rstart, rheaders = rhead
                    status = int(rstart.split(" ", 2)[1])
                    if status >= 200 or status == 101:
                        break
                self._record(method, target, decision, status)

                def out(b, _m=method, _t=target, _s=status):
                    try:
                        client.sendall(b)
                    except OSError:
                        with self._lock:
                            self.undelivered.append((_m, _t, _s))
                        raise
                head_bytes = _head_bytes(rstart, rheaders)
                cut = decision in ("reset", "truncate")
                up_close = (_get(rheaders, "Connection") or "").lower() \
                    == "close"
                no_body = method == "HEAD" or status in (204, 304)
                rte = (_get(rheaders, "Transfer-Encoding") or "").lower()
                clen = _get(rheaders, "Content-Length")
                if cut:
                    if no_body or (clen is not None and int(clen) == 0
                                   and "chunked" not in rte):
                        out(head_bytes[:len(head_bytes) // 2])
                    else:
                        out(head_bytes)
                        if "chunked" in rte:
                            _relay_chunked(up_reader, out, limit=64)
                        elif clen is not None:
                            _relay_length(up_reader, int(clen), out,
                                          limit=max(1, int(clen) // 2))
                        else:
                            out(up_reader.read(64))
                    if decision == "reset":
                        _reset(client)
                    return
                out(head_bytes)
                if no_body:
                    pass
                elif "chunked" in rte:
                    _relay_chunked(up_reader, out)
                elif clen is not None:
                    _relay_length(up_reader, int(clen), out)
                else:  # body until the server closes
                    try:
                        while True:
                            out(up_reader.read(65536))
                    except _Closed:
                        return
                if up_close:
                    self._untrack(up)
                    up = None
                if up_close or client_close:
                    return
        except (_Closed, OSError, ValueError):
            return
        finally:
            if up is not None:
                self._untrack(up)
            self._untrack(client)

    @staticmethod
    def _error(decision, method, target, close):
        status, reason, code, message = _ERRORS[decision]
        rid = "FAULT%08X" % random.getrandbits(32)
        body = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                f"<Error><Code>{code}</Code><Message>{message}</Message>"
                f"<Resource>{target.split('?')[0]}</Resource>"
                f"<RequestId>{rid}</RequestId></Error>").encode()
        headers = [("Content-Type", "application/xml"),
                   ("Content-Length", str(len(body))),
                   ("x-amz-request-id", rid),
                   ("Server", "walrust-faultproxy"),
                   ("Connection", "close" if close else "keep-alive")]
        head = _head_bytes(f"HTTP/1.1 {status} {reason}", headers)
        return head if method == "HEAD" else head + body


def dead_endpoint():
    """An http://127.0.0.1:PORT URL where nothing listens."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"
