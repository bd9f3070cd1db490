"""Exceptions and warnings of the walrust package.

Every failure is a :class:`WalrustError`, which is a :class:`RuntimeError`
(as the API document promises), carrying the protocol error code in
``.code``. The common cases have their own subclasses so that callers can
tell them apart without parsing messages.
"""

from typing import Any, Dict, Optional, Tuple, Type

__all__ = [
    "WalrustError",
    "DatabaseNotFoundError",
    "AuthenticationError",
    "EndpointUnreachableError",
    "ChecksumMismatchError",
    "NoSnapshotError",
    "PointInTimeBeforeFirstSnapshotError",
    "StorageError",
    "OutputInUseError",
    "InvalidArgumentError",
    "ProtocolError",
    "DaemonError",
    "WalrustWarning",
    "NotInWALModeWarning",
]


class WalrustError(RuntimeError):
    """A walrust operation failed.

    Attributes:
        code: the walrustd protocol error code (``"not_found"``, ``"auth"``,
            ...), or ``"daemon"`` when walrustd could not be started or
            reached, ``"protocol"`` when its answer could not be understood.
        operation: what was being done, e.g. ``"snapshot of /data/app.db"``.
        detail: the daemon's own message, without the operation prefix.
    """

    #: the default code of this class
    default_code = "internal"

    def __init__(
        self,
        message: str,
        *,
        code: Optional[str] = None,
        operation: Optional[str] = None,
        detail: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.code: str = code or self.default_code
        self.operation: Optional[str] = operation
        self.detail: str = detail if detail is not None else message

    def __reduce__(self) -> Tuple[Any, ...]:
        # keep the keyword-only attributes across pickling (multiprocessing)
        return (
            _rebuild,
            (type(self), str(self), self.code, self.operation, self.detail),
        )


def _rebuild(
    cls: Type[WalrustError],
    message: str,
    code: str,
    operation: Optional[str],
    detail: str,
) -> WalrustError:
    return cls(message, code=code, operation=operation, detail=detail)


class DatabaseNotFoundError(WalrustError):
    """The local database file does not exist or cannot be read."""

    default_code = "not_found"


class AuthenticationError(WalrustError):
    """The storage rejected the credentials (check AWS_ACCESS_KEY_ID and
    AWS_SECRET_ACCESS_KEY)."""

    default_code = "auth"


class EndpointUnreachableError(WalrustError):
    """The storage endpoint could not be reached (DNS, refused, timeout)."""

    default_code = "unreachable"


class ChecksumMismatchError(WalrustError):
    """A stored backup file is corrupt, truncated, or the chain has a gap."""

    default_code = "checksum"


class NoSnapshotError(WalrustError):
    """The bucket holds no snapshot of the requested database."""

    default_code = "no_snapshot"


class PointInTimeBeforeFirstSnapshotError(WalrustError):
    """The requested point in time is before the first snapshot; the message
    names the earliest time available."""

    default_code = "before_first_snapshot"


class StorageError(WalrustError):
    """Any other storage failure (e.g. an HTTP 5xx from S3, a missing
    bucket)."""

    default_code = "storage"


class SyncTimeoutError(WalrustError):
    """sync() timed out before the replica held every transaction
    committed before the call."""

    default_code = "timeout"


class OutputInUseError(WalrustError):
    """The restore output is in use by a live application (it has a -wal
    file)."""

    default_code = "in_use"


class InvalidArgumentError(WalrustError, ValueError):
    """An argument was refused (bad bucket URL, bad database name, bad
    time, ...). Also a :class:`ValueError`."""

    default_code = "invalid_argument"


class ProtocolError(WalrustError):
    """walrustd and this package do not understand each other (malformed
    request or reply, unsupported protocol version)."""

    default_code = "protocol"


class DaemonError(WalrustError):
    """walrustd could not be started or reached, stopped while working, or
    is shutting down."""

    default_code = "daemon"


class WalrustWarning(UserWarning):
    """A warning reported by walrustd (the operation itself succeeded)."""


class NotInWALModeWarning(WalrustWarning, RuntimeWarning):
    """The database is not in WAL mode: it was snapshotted but cannot be
    replicated continuously. Also a :class:`RuntimeWarning`."""


_BY_CODE: Dict[str, Type[WalrustError]] = {
    "not_found": DatabaseNotFoundError,
    "auth": AuthenticationError,
    "unreachable": EndpointUnreachableError,
    "checksum": ChecksumMismatchError,
    "no_snapshot": NoSnapshotError,
    "before_first_snapshot": PointInTimeBeforeFirstSnapshotError,
    "storage": StorageError,
    "in_use": OutputInUseError,
    "timeout": SyncTimeoutError,
    "invalid_argument": InvalidArgumentError,
    "bad_request": ProtocolError,
    "line_too_long": ProtocolError,
    "unsupported_version": ProtocolError,
    "unknown_command": ProtocolError,
    "shutting_down": DaemonError,
    "io": WalrustError,
    "internal": WalrustError,
}


def error_class(code: str) -> Type[WalrustError]:
    """The exception class for a protocol error code (WalrustError for
    codes this version does not know)."""
    return _BY_CODE.get(code, WalrustError)


def from_reply(operation: str, code: str, message: str) -> WalrustError:
    """Build the exception for an error reply: "<operation> failed: <msg>"."""
    cls = error_class(code)
    text = message or f"walrustd reported {code!r} without a message"
    return cls(
        f"{operation} failed: {text}",
        code=code,
        operation=operation,
        detail=text,
    )
