"""walrust: SQLite backups to S3 from Python.

    from walrust import Walrust

    ws = Walrust("s3://my-bucket", endpoint="https://fly.storage.tigris.dev")
    ws.snapshot("/path/to/app.db")          # full snapshot of a database
    print(ws.list())                        # ['app', ...]
    ws.restore("app", "/path/to/restored.db")

The package is a small client of ``walrustd``, the walrust daemon: every call
is one request over the daemon's Unix control socket (``$WALRUST_SOCKET``,
else ``$XDG_RUNTIME_DIR/walrust/walrustd.sock``, else
``/tmp/walrust-<uid>/walrustd.sock``). If no daemon answers there, the
package starts a private one for the current user from the binary it bundles
(or ``$WALRUST_WALRUSTD``), detached, logging to ``walrustd.log`` beside the
socket; later calls and other processes reuse it.

Credentials come from the caller's environment at each call
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``,
``AWS_REGION`` or ``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL_S3`` or
``AWS_ENDPOINT_URL``) and travel with the request; the daemon never logs
them.

Buckets: ``"s3://bucket"``, ``"s3://bucket/prefix"``, ``"bucket"`` (same as
``"s3://bucket"``), ``"bucket/prefix"``, or ``"file:///dir"`` for a local
directory.

Key layout: objects are stored in Litestream's layout,
``<prefix>/<name>/<level>/<min-txid>-<max-txid>.ltx`` (16 hex digits each),
not the flat ``<db-name>/00000001-00000001.ltx`` of the original API notes,
so that walrust and Litestream can restore each other's backups.

Errors: every failure raises :class:`WalrustError`, a :class:`RuntimeError`
whose message says what failed and why (``"snapshot of /data/app.db
failed: no such database: /data/app.db"``) and whose ``.code`` is the
protocol error code. Subclasses: :class:`DatabaseNotFoundError`,
:class:`AuthenticationError`, :class:`EndpointUnreachableError`,
:class:`ChecksumMismatchError`, :class:`NoSnapshotError`,
:class:`PointInTimeBeforeFirstSnapshotError`, :class:`StorageError`,
:class:`OutputInUseError`, :class:`InvalidArgumentError` (also a
ValueError), :class:`ProtocolError` and :class:`DaemonError` (walrustd
cannot be started or reached). A snapshot of a database that is not in WAL
mode succeeds with a :class:`NotInWALModeWarning` (a
:class:`WalrustWarning`, which is a UserWarning, and a RuntimeWarning).

A :class:`Walrust` object is cheap, holds no connection and is safe to share
between threads: each call opens its own connection to the daemon.
"""

import datetime as _dt
import os
import warnings as _warnings
from typing import Any, Dict, List, Optional, Union

from . import _daemon
from ._client import Client, ProgressCallback
from ._errors import (
    AuthenticationError,
    ChecksumMismatchError,
    DaemonError,
    DatabaseNotFoundError,
    EndpointUnreachableError,
    InvalidArgumentError,
    SyncTimeoutError,
    NoSnapshotError,
    NotInWALModeWarning,
    OutputInUseError,
    PointInTimeBeforeFirstSnapshotError,
    ProtocolError,
    StorageError,
    WalrustError,
    WalrustWarning,
)

__version__ = "0.1.0"

__all__ = [
    "Walrust",
    "snapshot",
    "restore",
    "list_databases",
    "shutdown_daemon",
    "socket_path",
    "normalize_bucket",
    "ProgressCallback",
    "PathLike",
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
    "SyncTimeoutError",
    "ProtocolError",
    "DaemonError",
    "WalrustWarning",
    "NotInWALModeWarning",
    "__version__",
]

#: a file system path: str or os.PathLike
PathLike = Union[str, "os.PathLike[str]"]

# The caller's environment variables sent with each request, as members of
# the "aws" argument; the first one set of each tuple wins.
_AWS_ENV = (
    ("access_key_id", ("AWS_ACCESS_KEY_ID",)),
    ("secret_access_key", ("AWS_SECRET_ACCESS_KEY",)),
    ("session_token", ("AWS_SESSION_TOKEN",)),
    ("region", ("AWS_REGION", "AWS_DEFAULT_REGION")),
    ("endpoint_url", ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")),
)


def socket_path() -> str:
    """The control socket this package uses when none is given."""
    return _daemon.socket_path()


def normalize_bucket(bucket: str) -> str:
    """The bucket URL sent to walrustd.

    ``"s3://b"`` and ``"s3://b/prefix"`` are kept (less trailing slashes),
    ``"b"`` and ``"b/prefix"`` get ``s3://``, ``"file:///dir"`` is kept
    (``"file://dir"`` with a relative dir is made absolute). Anything else
    raises :class:`InvalidArgumentError`.
    """
    if not isinstance(bucket, str):
        raise TypeError(f"bucket must be a str, not {type(bucket).__name__}")
    b = bucket.strip()
    hint = ("use s3://bucket[/prefix], bucket[/prefix] or file:///dir")
    if not b:
        raise InvalidArgumentError(f"invalid bucket {bucket!r}: empty; {hint}")
    if any(c.isspace() for c in b):
        raise InvalidArgumentError(
            f"invalid bucket {bucket!r}: contains white space; {hint}")
    if "://" in b:
        scheme, rest = b.split("://", 1)
        scheme = scheme.lower()
        if scheme == "s3":
            if rest.startswith("/") or not rest.strip("/"):
                raise InvalidArgumentError(
                    f"invalid bucket {bucket!r}: no bucket name; {hint}")
            return "s3://" + rest.rstrip("/")
        if scheme == "file":
            if rest.startswith("localhost/"):
                rest = rest[len("localhost"):]
            if not rest:
                raise InvalidArgumentError(
                    f"invalid bucket {bucket!r}: no directory; {hint}")
            return "file://" + os.path.abspath(rest)
        raise InvalidArgumentError(
            f"invalid bucket {bucket!r}: unsupported scheme {scheme}://; "
            f"{hint}")
    if b.startswith("/"):
        raise InvalidArgumentError(
            f"invalid bucket {bucket!r}: a bucket name cannot start with "
            f"'/'; for a local directory use file://{b}")
    rest = b.strip("/")
    return "s3://" + rest


def _check_endpoint(endpoint: Optional[str]) -> Optional[str]:
    if endpoint is None:
        return None
    if not isinstance(endpoint, str):
        raise TypeError(
            f"endpoint must be a str or None, not {type(endpoint).__name__}")
    e = endpoint.strip()
    if not e:
        return None
    if not (e.startswith("http://") or e.startswith("https://")):
        raise InvalidArgumentError(
            f"invalid endpoint {endpoint!r}: must be an http:// or https:// "
            f"URL, e.g. https://fly.storage.tigris.dev")
    return e.rstrip("/")


def _path(value: PathLike, what: str) -> str:
    try:
        p = os.fspath(value)
    except TypeError:
        raise TypeError(f"{what} must be a path (str or os.PathLike), not "
                        f"{type(value).__name__}") from None
    if not isinstance(p, str):
        raise TypeError(f"{what} must be a str path, not bytes")
    if not p:
        raise InvalidArgumentError(f"invalid {what}: empty path")
    return os.path.abspath(p)


def _time(value: Union[str, _dt.datetime]) -> str:
    if isinstance(value, _dt.datetime):
        # a naive datetime is local time, as everywhere in Python
        utc = value.astimezone(_dt.timezone.utc)
        return utc.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    if isinstance(value, str):
        if not value.strip():
            raise InvalidArgumentError(
                "invalid point_in_time: empty (give an ISO 8601 time such as "
                "2024-01-15T10:30:00Z)")
        return value.strip()
    raise TypeError(f"point_in_time must be an ISO 8601 str or a datetime, "
                    f"not {type(value).__name__}")


class Walrust:
    """Backups of SQLite databases to one bucket.

    Args:
        bucket: ``"s3://my-bucket"``, ``"s3://my-bucket/prefix"``,
            ``"my-bucket"`` (= ``"s3://my-bucket"``) or ``"file:///dir"``.
        endpoint: S3 endpoint URL for non-AWS providers (Tigris, MinIO,
            R2, ...); default: ``$AWS_ENDPOINT_URL_S3`` or AWS.
        socket_path: the walrustd control socket (keyword-only); default:
            resolved at each call from ``$WALRUST_SOCKET`` etc.
        timeout: seconds to wait for each reply (keyword-only); default
            none (large restores can take long).

    Raises:
        InvalidArgumentError (a RuntimeError and a ValueError): for an
            invalid bucket URL or endpoint.

    No daemon is contacted until the first call. Instances are cheap,
    reusable and thread-safe.
    """

    def __init__(self, bucket: str, endpoint: Optional[str] = None, *,
                 socket_path: Optional[str] = None,
                 timeout: Optional[float] = None) -> None:
        self._bucket = normalize_bucket(bucket)
        self._endpoint = _check_endpoint(endpoint)
        if timeout is not None and timeout <= 0:
            raise InvalidArgumentError(f"invalid timeout {timeout!r}: must "
                                       f"be positive")
        self._client = Client(
            os.path.abspath(socket_path) if socket_path else None, timeout)

    def __repr__(self) -> str:
        ep = f", endpoint={self._endpoint!r}" if self._endpoint else ""
        return f"Walrust({self._bucket!r}{ep})"

    @property
    def bucket(self) -> str:
        """The normalised bucket URL, e.g. ``"s3://my-bucket/prefix"``."""
        return self._bucket

    @property
    def endpoint(self) -> Optional[str]:
        """The S3 endpoint given to the constructor, if any."""
        return self._endpoint

    # ------------------------------------------------------------ helpers
    def _storage_args(self) -> Dict[str, Any]:
        args: Dict[str, Any] = {"bucket": self._bucket}
        if self._bucket.startswith("file://"):
            return args  # no endpoint nor credentials for a directory
        if self._endpoint:
            args["endpoint"] = self._endpoint
        aws: Dict[str, str] = {}
        for member, names in _AWS_ENV:
            for name in names:
                value = os.environ.get(name)
                if value:
                    aws[member] = value
                    break
        if aws:
            args["aws"] = aws
        return args

    # --------------------------------------------------------- operations
    def snapshot(self, database: PathLike, *,
                 progress: Optional[ProgressCallback] = None) -> None:
        """Take a full snapshot of a database and upload it to the bucket.

        Args:
            database: path of the SQLite database file (made absolute).
            progress: called with the data of each progress event
                (keyword-only), e.g. ``{"phase": "upload", "done": 12,
                "total": 12, "bytes": 49152}``.

        The object is stored under ``<bucket>/<name>/<level>/...ltx`` where
        name is the file name without its extension.

        Raises:
            DatabaseNotFoundError: the file does not exist or is unreadable.
            AuthenticationError, EndpointUnreachableError, StorageError, ...:
                see :class:`WalrustError` (all are RuntimeErrors).

        Warns:
            NotInWALModeWarning: the database is not in WAL mode (the
                snapshot is taken all the same).
        """
        self._snapshot(database, progress, stacklevel=3)

    def _snapshot(self, database: PathLike,
                  progress: Optional[ProgressCallback],
                  stacklevel: int) -> Dict[str, Any]:
        path = _path(database, "database")
        op = f"snapshot of {path}"
        _check_database(path, op)
        args = self._storage_args()
        args["database"] = path
        warned: List[str] = []
        result = self._client.call("snapshot", args, op,
                                   on_progress=progress, warnings=warned)
        messages: List[str] = []
        for m in warned + [w for w in result.get("warnings") or []
                           if isinstance(w, str)]:
            if m and m not in messages:
                messages.append(m)
        if result.get("wal_mode") is False:
            if not messages:
                messages.append(f"{path} is not in WAL mode: it can be "
                                f"snapshotted but not replicated "
                                f"continuously")
            for m in messages:
                _warnings.warn(m, NotInWALModeWarning, stacklevel=stacklevel)
        else:
            for m in messages:
                _warnings.warn(m, WalrustWarning, stacklevel=stacklevel)
        return result

    def restore(self, name: str, output: PathLike,
                point_in_time: Optional[Union[str, _dt.datetime]] = None, *,
                txid: Optional[int] = None, force: bool = False,
                progress: Optional[ProgressCallback] = None,
                integrity_check: str = "full") -> None:
        """Restore a database from the bucket into a new file.

        Args:
            name: database name as stored (the file name without its
                extension, e.g. ``"app"``).
            output: path of the restored database (made absolute).
            point_in_time: ISO 8601 time (``"2024-01-15T10:30:00Z"``) or an
                aware datetime: restore the state of the last transaction
                at or before it. Default: the latest state.
            txid: restore up to this transaction id (keyword-only; not
                together with point_in_time).
            force: replace an existing output file (keyword-only). An
                existing *empty* file (e.g. from tempfile) is always
                replaced, since it holds nothing to lose.
            progress: called with the data of each progress event
                (download, apply, verify) (keyword-only).
            integrity_check: the check of the restored file before it
                replaces output (keyword-only): ``"full"`` (PRAGMA
                integrity_check, the default), ``"quick"`` (quick_check,
                about ten times faster on a large database) or ``"none"``;
                every page is checked against the replica's checksums
                either way.

        Raises:
            NoSnapshotError: the bucket holds no snapshot of ``name``.
            PointInTimeBeforeFirstSnapshotError: ``point_in_time`` is before
                the first snapshot (the message names the earliest time).
            ChecksumMismatchError: a stored file is corrupt or missing.
            OutputInUseError: output belongs to a live application.
            AuthenticationError, EndpointUnreachableError, ...: see
                :class:`WalrustError` (all are RuntimeErrors).
        """
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, not {type(name).__name__}")
        out = _path(output, "output")
        op = f"restore of {name} to {out}"
        if not name:
            raise InvalidArgumentError(f"{op} failed: empty database name",
                                       operation=op)
        if point_in_time is not None and txid is not None:
            raise InvalidArgumentError(
                f"{op} failed: give point_in_time or txid, not both",
                operation=op)
        args = self._storage_args()
        args["name"] = name
        args["output"] = out
        if point_in_time is not None:
            args["point_in_time"] = _time(point_in_time)
        if txid is not None:
            if isinstance(txid, bool) or not isinstance(txid, int):
                raise TypeError(f"txid must be an int, not "
                                f"{type(txid).__name__}")
            if txid < 1:
                raise InvalidArgumentError(
                    f"{op} failed: invalid txid {txid}: must be >= 1",
                    operation=op)
            args["txid"] = txid
        if integrity_check not in ("full", "quick", "none"):
            raise InvalidArgumentError(
                f"{op} failed: integrity_check must be 'full', 'quick' or "
                f"'none', not {integrity_check!r}", operation=op)
        if integrity_check != "full":
            args["integrity_check"] = integrity_check
        if force or _empty_file(out):
            args["force"] = True
        self._client.call("restore", args, op, on_progress=progress)

    def list(self) -> List[str]:
        """The names of the databases stored in the bucket, sorted (an
        empty list if there are none)."""
        op = f"list of {self._bucket}"
        result = self._client.call("list", self._storage_args(), op)
        dbs = result.get("databases")
        if not isinstance(dbs, list) or not all(isinstance(d, str)
                                                for d in dbs):
            raise ProtocolError(f"{op} failed: walrustd replied without a "
                                f"list of names", operation=op)
        return [str(d) for d in dbs]

    def status(self) -> Dict[str, Any]:
        """The daemon's status (pid, version, uptime_ms, socket, workers,
        jobs, databases), starting the daemon if needed."""
        return self._client.call("status", {}, "status of walrustd")

    # ------------------------------------------- continuous replication
    def watch(self, database: PathLike, *,
              sync_interval: Optional[float] = None) -> Dict[str, Any]:
        """Replicate a database continuously to this bucket: the daemon
        ships every committed transaction (about once a second) until
        :meth:`unwatch`. Watching an already watched database changes
        nothing. Returns the daemon's result (name, bucket, txid, state).
        """
        path = _path(database, "database")
        op = f"watch of {path}"
        _check_database(path, op)
        args = self._storage_args()
        args["database"] = path
        if sync_interval is not None:
            if sync_interval < 0.1:
                raise InvalidArgumentError(
                    f"{op} failed: sync_interval must be at least 0.1 s",
                    operation=op)
            args["sync_interval_ms"] = int(sync_interval * 1000)
        return self._client.call("watch", args, op)

    def unwatch(self, database: PathLike) -> Dict[str, Any]:
        """Stop replicating a database (after a final sync)."""
        path = _path(database, "database")
        return self._client.call("unwatch", {"database": path},
                                 f"unwatch of {path}")

    def sync(self, database: PathLike,
             timeout: Optional[float] = None) -> int:
        """A durability barrier: return once every transaction committed
        to the watched database before the call is in the replica, and
        the TXID the replica holds. Raises WalrustError with code
        "timeout" when ``timeout`` seconds pass first."""
        path = _path(database, "database")
        args: Dict[str, Any] = {"database": path, "wait": True}
        if timeout is not None:
            args["timeout_ms"] = max(0, int(timeout * 1000))
        result = self._client.call("sync", args, f"sync of {path}")
        return int(result.get("txid", 0))


def _check_database(path: str, op: str) -> None:
    """Local pre-check: clearer and faster than a round trip."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise DatabaseNotFoundError(
            f"{op} failed: no such database: {path}", operation=op,
            detail=f"no such database: {path}") from None
    except OSError as e:
        raise DatabaseNotFoundError(
            f"{op} failed: cannot read {path}: {e.strerror or e}",
            operation=op) from None
    import stat

    if stat.S_ISDIR(st.st_mode):
        raise DatabaseNotFoundError(
            f"{op} failed: {path} is a directory, not a database file",
            operation=op)
    if not os.access(path, os.R_OK):
        raise DatabaseNotFoundError(
            f"{op} failed: {path} is not readable (permission denied)",
            operation=op)


def _empty_file(path: str) -> bool:
    try:
        return (os.path.isfile(path) and os.path.getsize(path) == 0
                and not os.path.exists(path + "-wal"))
    except OSError:
        return False


# ------------------------------------------------------ module functions
def snapshot(database: PathLike, bucket: str,
             endpoint: Optional[str] = None, *,
             progress: Optional[ProgressCallback] = None) -> None:
    """Take a snapshot without creating a :class:`Walrust` instance; see
    :meth:`Walrust.snapshot`."""
    Walrust(bucket, endpoint)._snapshot(database, progress, stacklevel=3)


def restore(name: str, output: PathLike, bucket: str,
            endpoint: Optional[str] = None,
            point_in_time: Optional[Union[str, _dt.datetime]] = None, *,
            txid: Optional[int] = None, force: bool = False,
            progress: Optional[ProgressCallback] = None,
            integrity_check: str = "full") -> None:
    """Restore a database without creating a :class:`Walrust` instance;
    see :meth:`Walrust.restore`."""
    Walrust(bucket, endpoint).restore(name, output, point_in_time, txid=txid,
                                      force=force, progress=progress,
                                      integrity_check=integrity_check)


def list_databases(bucket: str, endpoint: Optional[str] = None) -> List[str]:
    """List databases without creating a :class:`Walrust` instance; see
    :meth:`Walrust.list`."""
    return Walrust(bucket, endpoint).list()


def shutdown_daemon(socket_path: Optional[str] = None) -> bool:
    """Ask the walrustd at socket_path (default: the usual socket) to shut
    down. Returns False when none was running there."""
    from ._client import forget

    path = os.path.abspath(socket_path) if socket_path else _daemon.socket_path()
    forget(path)
    return _daemon.shutdown(path)
