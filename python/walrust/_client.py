"""The request/reply client of the walrustd control protocol (v1).

One connection per call: connecting to a Unix socket costs microseconds,
and it makes a client object trivially safe to share between threads.
Request ids come from one process-wide counter, so they are unique per
process. Events of the request (``progress``, ``warning``) are handed to the
caller; events and replies of other ids are ignored.
"""

import itertools
import socket
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Set

from . import _daemon
from ._errors import DaemonError, ProtocolError, WalrustError, from_reply

#: a callback receiving the ``data`` of each progress event
ProgressCallback = Callable[[Dict[str, Any]], None]

_ids = itertools.count(1)
_ids_lock = threading.Lock()
_verified: Set[str] = set()  # socket paths whose daemon answered hello
_verified_lock = threading.Lock()


def next_id() -> int:
    with _ids_lock:
        return next(_ids)


def forget(path: str) -> None:
    """Make the next call on path probe (and maybe start) the daemon."""
    with _verified_lock:
        _verified.discard(path)


class Client:
    """Sends requests to walrustd; starts it when nobody answers."""

    def __init__(self, socket_path: Optional[str] = None,
                 timeout: Optional[float] = None) -> None:
        self._socket = socket_path
        self.timeout = timeout

    @property
    def socket_path(self) -> str:
        """The socket in use (resolved at each call unless given)."""
        return self._socket or _daemon.socket_path()

    def _open(self, path: str, operation: str) -> _daemon.Connection:
        for attempt in range(2):
            if path not in _verified:
                try:
                    _daemon.ensure_running(path)
                except WalrustError as e:
                    raise type(e)(f"{operation} failed: {e}", code=e.code,
                                  operation=operation, detail=str(e)) from None
                with _verified_lock:
                    _verified.add(path)
            try:
                return _daemon.connect(path)
            except OSError as e:
                forget(path)
                if attempt == 0 and _daemon.nobody_listening(e):
                    continue  # it went away since: start it again
                err = _daemon._connect_error(path, e)
                raise DaemonError(f"{operation} failed: {err}",
                                  operation=operation, detail=str(err)) \
                    from None
        raise AssertionError("unreachable")

    def call(
        self,
        cmd: str,
        args: Dict[str, Any],
        operation: str,
        *,
        on_progress: Optional[ProgressCallback] = None,
        warnings: Optional[List[str]] = None,
    ) -> Dict[str, Any]:
        """Send one request; return the result of its reply.

        Error replies raise the WalrustError subclass of their code, with
        the message "<operation> failed: <daemon's message>". Warning
        events' messages are appended to ``warnings``.
        """
        path = self.socket_path
        conn = self._open(path, operation)
        rid = next_id()
        deadline = (time.monotonic() + self.timeout
                    if self.timeout is not None else None)
        with conn:
            try:
                conn.send({"v": _daemon.PROTOCOL_VERSION, "id": rid,
                           "cmd": cmd, "args": args}, deadline)
                while True:
                    msg = conn.recv(deadline)
                    if msg is None:
                        forget(path)
                        raise DaemonError(
                            f"{operation} failed: walrustd closed the "
                            f"connection before replying (did it stop or "
                            f"crash? see {_daemon.log_path_for(path)} if "
                            f"this package started it)",
                            operation=operation,
                        )
                    mid = msg.get("id")
                    if "event" in msg:
                        if mid == rid:
                            _event(msg, on_progress, warnings)
                        continue
                    if "ok" not in msg:
                        continue  # not for us, or from a newer protocol
                    if mid == rid or mid is None:
                        return _result(msg, operation)
            except socket.timeout:
                raise DaemonError(
                    f"{operation} failed: no reply from walrustd within "
                    f"{self.timeout:g} s",
                    code="timeout", operation=operation,
                ) from None
            except (BrokenPipeError, ConnectionResetError) as e:
                forget(path)
                raise DaemonError(
                    f"{operation} failed: lost the connection to walrustd "
                    f"({e.strerror or e})",
                    operation=operation,
                ) from None
            except WalrustError as e:
                if e.operation is None:  # raised below the operation level
                    raise type(e)(f"{operation} failed: {e}", code=e.code,
                                  operation=operation, detail=str(e)) \
                        from None
                raise


def _event(msg: Dict[str, Any], on_progress: Optional[ProgressCallback],
           warnings: Optional[List[str]]) -> None:
    data = msg.get("data")
    if not isinstance(data, dict):
        data = {}
    if msg["event"] == "progress":
        if on_progress is not None:
            on_progress(data)
    elif msg["event"] == "warning":
        text = data.get("message")
        if warnings is not None and isinstance(text, str) and text:
            warnings.append(text)


def _result(msg: Dict[str, Any], operation: str) -> Dict[str, Any]:
    if msg.get("ok") is True:
        result = msg.get("result")
        if not isinstance(result, dict):
            raise ProtocolError(
                f"{operation} failed: walrustd replied ok without a result "
                f"object",
                operation=operation,
            )
        return result
    err = msg.get("error")
    if not isinstance(err, dict):
        raise ProtocolError(
            f"{operation} failed: walrustd replied with an error without an "
            f"error object: {msg!r:.200}",
            operation=operation,
        )
    code = str(err.get("code") or "internal")
    message = err.get("message")
    return _raise(operation, code, message if isinstance(message, str)
                  else "")


def _raise(operation: str, code: str, message: str) -> Dict[str, Any]:
    raise from_reply(operation, code, message)
