"""walrustd under test, walrustctl, and a raw protocol client.

    d = Daemon().start()        # temp socket, temp HOME/XDG dirs
    r = d.ctl("snapshot", db, bucket=url, endpoint=ep, env=aws_env)
    r.json                      # the result object (--json)
    d.ctl_error("restore", "../x", out, code="invalid_argument")
    d.request({"v": 1, "id": 1, "cmd": "hello", "args": {}})
    d.stop()                    # shutdown request, asserts a clean exit

Binaries: $WALRUST_BUILD/daemon/walrustd and $WALRUST_BUILD/client/walrustctl,
WALRUST_BUILD defaulting to the repository root (in-tree build).
Every reply the helpers see is checked against the protocol envelope.
"""

import contextlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..",
                                    ".."))



def _error_codes():
    """The error codes of proto/wrp.h, the protocol's one definition."""
    import re

    with open(os.path.join(REPO, "proto", "wrp.h")) as f:
        return frozenset(re.findall(r'#define WRP_E_\w+\s+"(\w+)"',
                                    f.read()))


ERROR_CODES = _error_codes()
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_CONNECT, EXIT_PROTOCOL = 0, 1, 2, 3, 4
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                   "runtime error:", "WARNING: ThreadSanitizer")


def build_dir():
    return os.path.abspath(os.environ.get("WALRUST_BUILD") or REPO)


def binaries():
    b = build_dir()
    return (os.path.join(b, "daemon", "walrustd"),
            os.path.join(b, "client", "walrustctl"))


def binaries_available():
    return all(os.access(p, os.X_OK) for p in binaries())


def check_message(msg):
    """Assert that a server->client message follows the envelope."""
    assert isinstance(msg, dict), f"message is not an object: {msg!r}"
    assert msg.get("v") == 1, f"bad or missing v: {msg!r}"
    assert "id" in msg, f"no id: {msg!r}"
    assert msg["id"] is None or isinstance(msg["id"], (int, str)), msg
    if "event" in msg:
        assert isinstance(msg["event"], str), msg
        assert isinstance(msg.get("data", {}), dict), msg
        assert "ok" not in msg, msg
        return
    assert isinstance(msg.get("ok"), bool), f"no ok/event: {msg!r}"
    if msg["ok"]:
        assert isinstance(msg.get("result"), dict), f"no result: {msg!r}"
        assert "error" not in msg, msg
    else:
        check_error(msg.get("error"))
        assert "result" not in msg, msg


def check_error(err):
    assert isinstance(err, dict), f"error is not an object: {err!r}"
    assert err.get("code") in ERROR_CODES, f"unknown error code: {err!r}"
    assert isinstance(err.get("message"), str) and err["message"], \
        f"empty error message: {err!r}"


# ------------------------------------------------------------ raw client
class Conn:
    """One connection to the control socket."""

    def __init__(self, path, timeout=30):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send_raw(self, data):
        self.sock.sendall(data)

    def send(self, msg):
        self.send_raw(json.dumps(msg, separators=(",", ":")).encode() + b"\n")

    def recv_line(self, timeout=30):
        """One line (without '\\n'), or None at EOF / on a reset."""
        self.sock.settimeout(timeout)
        while b"\n" not in self.buf:
            try:
                data = self.sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                return None
            if not data:
                return None
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def recv(self, timeout=30):
        """One message, checked against the envelope; None at EOF."""
        line = self.recv_line(timeout)
        if line is None:
            return None
        msg = json.loads(line)
        check_message(msg)
        return msg

    def exchange(self, msg, timeout=120):
        """Send a request; return (reply, [events]) for its id."""
        self.send(msg)
        events = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no reply to {msg!r}")
            m = self.recv(left)
            if m is None:
                raise ConnectionError(f"connection closed before reply to "
                                      f"{msg!r}")
            if "event" in m:
                assert m["id"] == msg.get("id"), m
                events.append(m)
                continue
            return m, events


@dataclass
class CtlResult:
    args: list
    rc: int
    out: str
    err: str
    json: object
    elapsed: float

    @property
    def error(self):
        """The error object of a failed --json call."""
        return self.json if self.rc != 0 and isinstance(self.json, dict) \
            else None

    def __str__(self):
        return (f"walrustctl {' '.join(map(str, self.args))}\n  rc={self.rc}"
                f" elapsed={self.elapsed:.2f}s\n  stdout: {self.out.strip()}"
                f"\n  stderr: {self.err.strip()}")


# ---------------------------------------------------------------- daemon
class Daemon:
    def __init__(self, replica=None, env=None, log_level="debug",
                 extra_args=(), workdir=None, default_socket=False):
        """default_socket: pass no -s to walrustd nor walrustctl; both
        find $XDG_RUNTIME_DIR/walrust/walrustd.sock themselves."""
        self.walrustd, self.walrustctl = binaries()
        # short: a Unix socket path must fit in 108 bytes
        self.dir = workdir or tempfile.mkdtemp(prefix="wr-d-", dir="/tmp")
        self.run_dir = os.path.join(self.dir, "run")
        self.home = os.path.join(self.dir, "home")
        self.data_home = os.path.join(self.dir, "data")
        for d in (self.run_dir, self.home, self.data_home):
            os.makedirs(d, mode=0o700, exist_ok=True)
        os.chmod(self.run_dir, 0o700)
        self.default_socket = default_socket
        self.socket = os.path.join(self.run_dir, "walrust", "walrustd.sock") \
            if default_socket else os.path.join(self.run_dir, "walrustd.sock")
        self.default_replica_dir = os.path.join(self.data_home, "walrust",
                                                "replica")
        self.log_path = os.path.join(self.dir, "walrustd.log")
        self.replica = replica
        self.log_level = log_level
        self.extra_args = list(extra_args)
        self.extra_env = dict(env or {})
        self.proc = None
        self.returncode = None
        self._stopped = False
        self.accepted_status = None  # see accept_exit()
        self._next_id = 1000

    # ---- environment
    def base_env(self):
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": self.home,
            "XDG_DATA_HOME": self.data_home,
            "XDG_RUNTIME_DIR": self.run_dir,
            "LANG": "C.UTF-8",
        }
        for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS",
                  "UV_THREADPOOL_SIZE", "TMPDIR"):
            if k in os.environ:
                env[k] = os.environ[k]
        return env

    # ---- lifecycle
    def start(self, timeout=15):
        cmd = [self.walrustd, "--log-level", self.log_level]
        if not self.default_socket:
            cmd += ["-s", self.socket]
        if self.replica:
            cmd += ["--replica", self.replica]
        cmd += self.extra_args
        env = self.base_env()
        env.update(self.extra_env)
        with open(self.log_path, "ab") as log:
            log.write(("$ " + " ".join(cmd) + "\n").encode())
            log.flush()
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL, env=env,
                                         cwd=self.dir, start_new_session=True)
        self.pgid = self.proc.pid
        deadline = time.monotonic() + timeout
        last = None
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"walrustd exited with "
                                   f"{self.proc.returncode}:\n{self.log_tail()}")
            if os.path.exists(self.socket):
                try:
                    r = self.request({"v": 1, "id": 0, "cmd": "hello",
                                      "args": {}}, timeout=5)
                    if r.get("ok"):
                        return self
                    last = r
                except (OSError, ConnectionError, TimeoutError) as e:
                    last = e
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"walrustd did not answer hello ({last}):"
                                   f"\n{self.log_tail()}")
            time.sleep(0.02)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=20):
        """Shut down with a shutdown request (SIGTERM if that fails) and
        assert a clean exit: status 0, no sanitizer report, no process of
        its group left behind."""
        if self.proc is None or self._stopped:
            return
        self._stopped = True
        problems = []
        if self.proc.poll() is None:
            with contextlib.suppress(Exception):
                self.request({"v": 1, "id": "shutdown", "cmd": "shutdown",
                              "args": {}}, timeout=5)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                problems.append(f"did not exit {timeout}s after shutdown")
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    problems.append("did not exit on SIGTERM")
        elif self.returncode is None:  # nobody asked it to exit
            problems.append(f"had exited (status {self.proc.returncode}) "
                            f"before the test ended")
        self.returncode = self.proc.poll()
        leftover = self._group_alive(wait=3)
        self.kill()
        if self.returncode not in (0, None, self.accepted_status) \
                and not problems:
            problems.append(f"exit status {self.returncode}")
        if leftover:
            problems.append("left processes of its group running")
        log = self.log_text()
        for mark in SANITIZER_MARKS:
            if mark in log:
                problems.append(f"log has {mark!r}")
        assert not problems, (f"walrustd: {'; '.join(problems)}\n"
                              f"{self.log_tail()}")

    def terminate(self, sig=signal.SIGTERM, timeout=20):
        """Send a signal and wait; returns the exit status."""
        self.proc.send_signal(sig)
        return self.wait_exit(timeout)

    def wait_exit(self, timeout=20):
        """Wait for an exit the test caused; returns the exit status."""
        self.returncode = self.proc.wait(timeout)
        return self.returncode

    def accept_exit(self):
        """The test checked the status of the exit it waited for (e.g. the
        application's status under --exec): teardown does not count a
        non-zero status as a problem. It still checks the log for sanitizer
        reports and the process group for leftovers."""
        self.accepted_status = self.returncode

    def crash(self, sig=signal.SIGKILL, timeout=10):
        """Kill the supervisor process alone (not its group), as a crash
        would, and wait for it; returns its status, which teardown accepts.
        Its worker is left to notice on its own."""
        self.proc.send_signal(sig)
        self.wait_exit(timeout)
        self.accept_exit()
        return self.returncode

    def group_alive(self, wait=0.0):
        """Whether any process of walrustd's process group (supervisor,
        worker, jobs, --exec application) is still running after up to
        `wait` seconds."""
        return self._group_alive(wait)

    def kill(self):
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)

    def _group_alive(self, wait):
        deadline = time.monotonic() + wait
        while True:
            try:
                os.killpg(self.pgid, 0)
            except ProcessLookupError:
                return False
            if time.monotonic() > deadline:
                return True
            time.sleep(0.05)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        if exc[0] is None:
            self.stop()
        else:
            self.kill()

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, n=60):
        return "\n".join(self.log_text().splitlines()[-n:])

    # ---- protocol
    def connect(self, timeout=30):
        return Conn(self.socket, timeout)

    def new_id(self):
        self._next_id += 1
        return self._next_id

    def exchange(self, msg, timeout=120):
        with self.connect() as c:
            return c.exchange(msg, timeout)

    def request(self, msg, timeout=120):
        """Send one request on a new connection; return the reply."""
        return self.exchange(msg, timeout)[0]

    def call(self, cmd, timeout=120, **args):
        return self.request({"v": 1, "id": self.new_id(), "cmd": cmd,
                             "args": args}, timeout)

    def hello(self):
        r = self.call("hello", timeout=10)
        assert r["ok"], r
        return r["result"]

    # ---- walrustctl
    def ctl(self, *args, bucket=None, endpoint=None, env=None, json_out=True,
            check=True, timeout=180, socket_path=None):
        cmd = [self.walrustctl]
        if socket_path or not self.default_socket:
            cmd += ["-s", socket_path or self.socket]
        if json_out:
            cmd.append("--json")
        if bucket:
            cmd += ["-b", bucket]
        if endpoint:
            cmd += ["-e", endpoint]
        cmd += [str(a) for a in args]
        e = self.base_env()
        e.update(env or {})
        t0 = time.monotonic()
        p = subprocess.run(cmd, capture_output=True, env=e, timeout=timeout,
                           stdin=subprocess.DEVNULL)
        elapsed = time.monotonic() - t0
        out = p.stdout.decode("utf-8", "replace")
        err = p.stderr.decode("utf-8", "replace")
        parsed = None
        if json_out:
            lines = [ln for ln in out.splitlines() if ln.strip()]
            if lines:
                try:
                    parsed = json.loads(lines[-1])
                except ValueError:
                    parsed = None
        res = CtlResult(cmd[1:], p.returncode, out, err, parsed, elapsed)
        if check:
            assert p.returncode == 0, f"{res}\n--- walrustd log:\n" \
                                      f"{self.log_tail()}"
            if json_out:
                assert isinstance(parsed, dict), f"no JSON result: {res}"
        if json_out and p.returncode == EXIT_ERROR:
            assert isinstance(parsed, dict), f"no JSON error object: {res}"
            check_error(parsed)
        return res

    def ctl_error(self, *args, code, **kw):
        """Run walrustctl expecting an error reply with `code`."""
        kw["check"] = False
        r = self.ctl(*args, **kw)
        assert r.rc == EXIT_ERROR and r.error and r.error["code"] == code, \
            f"expected error {code!r}, got:\n{r}\n--- walrustd log:\n" \
            f"{self.log_tail(30)}"
        return r


# ------------------------------------------------------------------ time
def parse_time(v):
    """A result timestamp (RFC 3339 string, or ms since the epoch) as an
    aware datetime in UTC."""
    import datetime as dt

    if isinstance(v, (int, float)):
        return dt.datetime.fromtimestamp(v / 1000, dt.timezone.utc)
    s = v.strip().replace("Z", "+00:00").replace("z", "+00:00")
    import re

    # fromisoformat wants at most 6 fraction digits
    s = re.sub(r"\.(\d+)", lambda m: "." + (m[1] + "00000")[:6], s, count=1)
    return dt.datetime.fromisoformat(s).astimezone(dt.timezone.utc)


def format_time(t):
    """ISO 8601 UTC with milliseconds: 2024-01-15T10:30:00.123Z."""
    import datetime as dt

    t = t.astimezone(dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
