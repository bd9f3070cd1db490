"""Finding, and if need be starting, the walrustd of the current user.

The package never runs walrustd in-process: it talks to the daemon over its
control socket. On first use the socket is probed with ``hello``; if nothing
answers, a private walrustd is started from the binary bundled with the
package (or ``$WALRUST_WALRUSTD``), fully detached from the caller, and
later calls and other processes of the same user reuse it.

Two processes starting at once start only one daemon: the start is guarded
by an ``fcntl.flock`` on ``<socket>.lock`` in the socket directory, and
whoever gets the lock first probes the socket again before starting.
"""

import errno
import fcntl
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from typing import Any, Dict, Optional

from ._errors import DaemonError, ProtocolError

PROTOCOL_VERSION = 1
#: the longest line of the protocol, newline included (proto/wrp.h)
MAX_LINE = 1024 * 1024
#: how long to wait for a freshly started walrustd to answer hello
START_TIMEOUT = 5.0
#: how long a hello may take on a running daemon
HELLO_TIMEOUT = 10.0
#: log files beside the socket are rotated past this size
LOG_ROTATE_BYTES = 4 * 1024 * 1024

_HERE = os.path.dirname(os.path.abspath(__file__))


def socket_path() -> str:
    """The control socket: ``$WALRUST_SOCKET``, else
    ``$XDG_RUNTIME_DIR/walrust/walrustd.sock``, else
    ``/tmp/walrust-<uid>/walrustd.sock`` (the same rule as walrustd and
    walrustctl)."""
    env = os.environ.get("WALRUST_SOCKET")
    if env:
        return os.path.abspath(env)
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return os.path.join(os.path.abspath(xdg), "walrust", "walrustd.sock")
    return os.path.join("/tmp", f"walrust-{os.getuid()}", "walrustd.sock")


def bundled_binary() -> str:
    """Where the walrustd built by ``pip install`` lives."""
    return os.path.join(_HERE, "bin", "walrustd")


def walrustd_binary() -> str:
    """The walrustd to start: ``$WALRUST_WALRUSTD``, else the bundled
    binary, else ``walrustd`` on ``$PATH``."""
    env = os.environ.get("WALRUST_WALRUSTD")
    if env:
        path = os.path.abspath(env)
        if not os.access(path, os.X_OK) or os.path.isdir(path):
            raise DaemonError(
                f"cannot start walrustd: WALRUST_WALRUSTD={env} is not an "
                f"executable file"
            )
        return path
    path = bundled_binary()
    if os.path.isfile(path):
        if not os.access(path, os.X_OK):
            try:
                os.chmod(path, 0o755)
            except OSError as e:
                raise DaemonError(
                    f"cannot start walrustd: {path} is not executable ({e})"
                ) from None
        return path
    found = shutil.which("walrustd")
    if found:
        return found
    raise DaemonError(
        f"cannot start walrustd: no binary at {path} (was the package "
        f"installed with WALRUST_SKIP_BUILD=1?) and none on PATH; set "
        f"WALRUST_WALRUSTD to a walrustd binary or reinstall the package"
    )


# ------------------------------------------------------------ connection
class Connection:
    """One connection to the control socket: compact JSON lines."""

    def __init__(self, sock: socket.socket, path: str) -> None:
        self.sock = sock
        self.path = path
        self._buf = bytearray()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, msg: Dict[str, Any], deadline: Optional[float]) -> None:
        data = encode(msg)
        self.sock.settimeout(_left(deadline))
        self.sock.sendall(data)

    def recv(self, deadline: Optional[float]) -> Optional[Dict[str, Any]]:
        """The next message, or None at end of stream. Raises
        socket.timeout past the deadline, ProtocolError on garbage."""
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                line = bytes(self._buf[:nl])
                del self._buf[: nl + 1]
                if not line.strip():
                    continue
                return decode(line)
            if len(self._buf) >= MAX_LINE:
                raise ProtocolError(
                    f"walrustd sent a line longer than {MAX_LINE} bytes",
                    code="protocol",
                )
            self.sock.settimeout(_left(deadline))
            try:
                data = self.sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                return None
            if not data:
                return None
            self._buf += data


def encode(msg: Dict[str, Any]) -> bytes:
    try:
        data = (
            json.dumps(msg, separators=(",", ":"), ensure_ascii=False)
            .encode("utf-8")
            + b"\n"
        )
    except UnicodeEncodeError as e:
        from ._errors import InvalidArgumentError

        raise InvalidArgumentError(
            f"cannot send {msg.get('cmd')!r} request: an argument is not "
            f"valid UTF-8 ({e.reason})"
        ) from None
    if len(data) > MAX_LINE:
        from ._errors import InvalidArgumentError

        raise InvalidArgumentError(
            f"cannot send {msg.get('cmd')!r} request: it would be "
            f"{len(data)} bytes, over the protocol's {MAX_LINE}-byte limit"
        )
    return data


def decode(line: bytes) -> Dict[str, Any]:
    try:
        msg = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        shown = line[:120].decode("utf-8", "replace")
        raise ProtocolError(
            f"walrustd sent a line that is not JSON: {shown!r}",
            code="protocol",
        ) from None
    if not isinstance(msg, dict):
        raise ProtocolError(
            f"walrustd sent a message that is not a JSON object: {msg!r:.120}",
            code="protocol",
        )
    return msg


def _left(deadline: Optional[float]) -> Optional[float]:
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise socket.timeout("timed out")
    return left


def connect(path: str, timeout: Optional[float] = 5.0) -> Connection:
    """Connect to the socket; OSError as raised by connect()."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        s.connect(path)
    except BaseException:
        s.close()
        raise
    return Connection(s, path)


# connect() errors that mean "nobody is listening there"
_NOBODY = (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTSOCK)


def nobody_listening(e: OSError) -> bool:
    return e.errno in _NOBODY


def hello(conn: Connection, timeout: float = HELLO_TIMEOUT) -> Dict[str, Any]:
    """Send hello on conn; return its result, checking the protocol."""
    deadline = time.monotonic() + timeout
    conn.send({"v": PROTOCOL_VERSION, "id": "hello", "cmd": "hello",
               "args": {}}, deadline)
    while True:
        msg = conn.recv(deadline)
        if msg is None:
            raise DaemonError(
                f"walrustd at {conn.path} closed the connection without "
                f"answering hello"
            )
        if "event" in msg or msg.get("id") != "hello":
            continue
        if msg.get("ok") is not True or not isinstance(msg.get("result"),
                                                       dict):
            err = msg.get("error") or {}
            code = str(err.get("code") or "protocol")
            if code == "unsupported_version":
                raise ProtocolError(
                    f"walrustd at {conn.path} does not speak protocol "
                    f"version {PROTOCOL_VERSION} ({err.get('message')}): "
                    f"upgrade the walrust package or walrustd",
                    code=code,
                )
            raise ProtocolError(
                f"walrustd at {conn.path} refused hello: "
                f"{err.get('message') or msg!r}",
                code=code,
            )
        result: Dict[str, Any] = msg["result"]
        proto = result.get("protocol")
        # "protocol" is the highest version the daemon speaks
        if (isinstance(proto, bool) or not isinstance(proto, int)
                or proto < PROTOCOL_VERSION):
            raise ProtocolError(
                f"walrustd at {conn.path} speaks protocol {proto!r}; this "
                f"package speaks {PROTOCOL_VERSION}: upgrade walrustd",
                code="unsupported_version",
            )
        return result


def probe(path: str) -> Optional[Dict[str, Any]]:
    """hello's result if a walrustd answers at path, None if nobody
    listens there. Other failures raise."""
    try:
        conn = connect(path)
    except OSError as e:
        if nobody_listening(e):
            return None
        raise _connect_error(path, e) from None
    with conn:
        try:
            return hello(conn)
        except socket.timeout:
            raise DaemonError(
                f"walrustd at {path} accepted the connection but did not "
                f"answer hello within {HELLO_TIMEOUT:g} s"
            ) from None
        except OSError as e:
            raise DaemonError(f"walrustd at {path}: {e}") from None


def _connect_error(path: str, e: OSError) -> DaemonError:
    if e.errno == errno.EACCES:
        why = "permission denied (is it another user's daemon?)"
    elif "too long" in str(e):
        why = ("the path is too long for a Unix socket (at most 107 bytes; "
               "set WALRUST_SOCKET to a shorter path)")
    else:
        why = e.strerror or str(e)
    return DaemonError(f"cannot connect to walrustd at {path}: {why}")


# ----------------------------------------------------------------- start
_start_lock = threading.Lock()


def _private_dir(path: str) -> None:
    """Create the socket directory 0700 if missing; refuse one that belongs
    to somebody else."""
    d = os.path.dirname(path)
    try:
        os.makedirs(d, mode=0o700, exist_ok=True)
        st = os.stat(d)
    except OSError as e:
        raise DaemonError(
            f"cannot start walrustd: cannot create its socket directory "
            f"{d}: {e.strerror or e}"
        ) from None
    if st.st_uid != os.getuid():
        raise DaemonError(
            f"cannot start walrustd: its socket directory {d} belongs to "
            f"uid {st.st_uid}, not to you (uid {os.getuid()}); set "
            f"WALRUST_SOCKET to a path in a directory of yours"
        )


class _FileLock:
    """An exclusive flock on a file, with a timeout."""

    def __init__(self, path: str, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self.fd = -1

    def __enter__(self) -> "_FileLock":
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                              0o600)
        except OSError as e:
            raise DaemonError(
                f"cannot start walrustd: cannot open the lock file "
                f"{self.path}: {e.strerror or e}"
            ) from None
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(self.fd)
                    self.fd = -1
                    raise DaemonError(
                        f"cannot start walrustd: another process has held "
                        f"{self.path} for over {self.timeout:g} s"
                    ) from None
                time.sleep(0.02)

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
                self.fd = -1


def log_path_for(path: str) -> str:
    """The log file of a walrustd started by this package."""
    return os.path.join(os.path.dirname(path), "walrustd.log")


def _tail(path: str, n: int = 15) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 8192))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def _daemon_env() -> Dict[str, str]:
    """The environment of a started walrustd: the caller's, less the AWS_*
    variables. Credentials travel with each request (the ``aws`` argument),
    so a shared daemon never acts with the credentials of whichever process
    happened to start it."""
    return {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}


def _start_timeout() -> float:
    try:
        return float(os.environ.get("WALRUST_START_TIMEOUT", START_TIMEOUT))
    except ValueError:
        return START_TIMEOUT


def ensure_running(path: str) -> Dict[str, Any]:
    """hello's result from the walrustd at path, starting one if nobody
    answers. Raises DaemonError when that fails."""
    info = probe(path)
    if info is not None:
        return info
    with _start_lock:
        _private_dir(path)
        timeout = _start_timeout()
        with _FileLock(path + ".lock", timeout + 15.0):
            info = probe(path)  # somebody else may have started it
            if info is not None:
                return info
            return _spawn(path, timeout)


def _spawn(path: str, timeout: float) -> Dict[str, Any]:
    binary = walrustd_binary()
    log_path = log_path_for(path)
    # A socket file nobody listens on is stale (we hold the start lock).
    if os.path.lexists(path):
        try:
            os.unlink(path)
        except OSError:
            pass
    try:
        if os.path.getsize(log_path) > LOG_ROTATE_BYTES:
            os.replace(log_path, log_path + ".1")
    except OSError:
        pass
    cmd = [binary, "--socket", path]
    level = os.environ.get("WALRUST_LOG_LEVEL")
    if level:
        cmd += ["--log-level", level]
    try:
        log = open(log_path, "ab")
    except OSError as e:
        raise DaemonError(
            f"cannot start walrustd: cannot open its log {log_path}: "
            f"{e.strerror or e}"
        ) from None
    with log:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        log.write(f"--- {stamp} started by pid {os.getpid()}: "
                  f"{' '.join(cmd)}\n".encode())
        log.flush()
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd="/",
                env=_daemon_env(),
                close_fds=True,
                start_new_session=True,
            )
        except OSError as e:
            raise DaemonError(
                f"cannot start walrustd ({binary}): {e.strerror or e}"
            ) from None
    # Reap it when it exits (it is our child until then) without blocking.
    threading.Thread(target=proc.wait, name="walrustd-reaper",
                     daemon=True).start()
    deadline = time.monotonic() + timeout
    last: Optional[BaseException] = None
    while True:
        rc = proc.poll()
        if rc is not None:
            # It may have lost a race against a daemon started by hand.
            try:
                info = probe(path)
            except DaemonError:
                info = None
            if info is not None:
                return info
            raise DaemonError(
                f"cannot start walrustd ({binary}): it exited with status "
                f"{rc}; its log {log_path} ends with:\n{_tail(log_path)}"
            )
        try:
            info = probe(path)
            if info is not None:
                return info
        except ProtocolError:
            raise
        except DaemonError as e:
            last = e
        if time.monotonic() > deadline:
            raise DaemonError(
                f"cannot start walrustd ({binary}): no answer on {path} "
                f"within {timeout:g} s"
                + (f" ({last})" if last else "")
                + f"; its log {log_path} ends with:\n{_tail(log_path)}"
            )
        time.sleep(0.02)


def shutdown(path: str, timeout: float = 10.0) -> bool:
    """Ask the walrustd at path to shut down; False if none was running."""
    try:
        conn = connect(path)
    except OSError as e:
        if nobody_listening(e):
            return False
        raise _connect_error(path, e) from None
    with conn:
        deadline = time.monotonic() + timeout
        try:
            conn.send({"v": PROTOCOL_VERSION, "id": "shutdown",
                       "cmd": "shutdown", "args": {}}, deadline)
            while True:
                msg = conn.recv(deadline)
                if msg is None:
                    return True
                if msg.get("id") == "shutdown" and "ok" in msg:
                    return True
        except (socket.timeout, OSError) as e:
            raise DaemonError(f"shutdown of walrustd at {path} failed: {e}") \
                from None
