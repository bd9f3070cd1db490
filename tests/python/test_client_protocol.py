"""The package's client side, without the C build: argument handling,
framing, ids, events, error mapping and daemon auto-start, against
fake_walrustd.py (an asyncio fake of walrustd) and scripted one-off
servers."""

import json
import os
import pickle
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import time
import warnings

import pytest

import walrust
from walrust import _client, _daemon, _errors

from wrpy_helpers import PYDIR, clean_env, short_tmpdir


# ------------------------------------------------------------------ helpers
def make_db(path, wal=True, rows=3):
    conn = sqlite3.connect(path)
    if wal:
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t(x INTEGER, y TEXT)")
    conn.executemany("INSERT INTO t VALUES (?, ?)",
                     [(i, f"row {i}") for i in range(rows)])
    conn.commit()
    conn.close()
    return str(path)


def requests_of(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture
def recorded(tmp_path, monkeypatch):
    """File the fake daemon appends every request to (set before start)."""
    p = tmp_path / "requests.jsonl"
    monkeypatch.setenv("FAKE_WALRUSTD_REQUESTS", str(p))
    return p


class Scripted:
    """A one-off Unix-socket server: answers hello itself, hands every
    other request to handler(req, sock)."""

    def __init__(self, handler):
        self.dir = short_tmpdir("wr-sc-")
        self.path = os.path.join(self.dir, "s.sock")
        self.handler = handler
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(self.path)
        self.srv.listen(8)
        self.stop = False
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while not self.stop:
            try:
                s, _ = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self.conn, args=(s,), daemon=True).start()

    def conn(self, s):
        buf = b""
        try:
            while True:
                while b"\n" not in buf:
                    d = s.recv(65536)
                    if not d:
                        return
                    buf += d
                line, buf = buf.split(b"\n", 1)
                req = json.loads(line)
                if req["cmd"] == "hello":
                    s.sendall(json.dumps({"v": 1, "id": req["id"], "ok": True,
                                          "result": {"version": "x",
                                                     "protocol": 1,
                                                     "pid": os.getpid()}})
                              .encode() + b"\n")
                    continue
                if self.handler(req, s) == "close":
                    return
        except OSError:
            pass
        finally:
            s.close()

    def close(self):
        self.stop = True
        self.srv.close()
        import shutil
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def scripted():
    made = []

    def make(handler):
        s = Scripted(handler)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def send(s, msg):
    s.sendall(json.dumps(msg, separators=(",", ":")).encode() + b"\n")


# ------------------------------------------------------------ no daemon
class TestArguments:
    @pytest.mark.parametrize("given,sent", [
        ("s3://my-bucket", "s3://my-bucket"),
        ("s3://my-bucket/", "s3://my-bucket"),
        ("s3://my-bucket/prefix", "s3://my-bucket/prefix"),
        ("s3://my-bucket/a/b/", "s3://my-bucket/a/b"),
        ("my-bucket", "s3://my-bucket"),
        ("my-bucket/prefix", "s3://my-bucket/prefix"),
        ("S3://my-bucket", "s3://my-bucket"),
        ("file:///var/backups", "file:///var/backups"),
        ("file:///var/backups/", "file:///var/backups"),
        ("file://localhost/var/b", "file:///var/b"),
    ])
    def test_bucket_normalisation(self, given, sent):
        assert walrust.normalize_bucket(given) == sent
        assert walrust.Walrust(given).bucket == sent

    def test_relative_file_bucket_made_absolute(self, tmp_path, monkeypatch):
        monkeypatch.chdir(tmp_path)
        assert walrust.normalize_bucket("file://rep") == \
            "file://" + str(tmp_path / "rep")

    @pytest.mark.parametrize("bad,why", [
        ("", "empty"), ("   ", "empty"), ("s3://", "no bucket name"),
        ("s3:///x", "no bucket name"), ("gs://bucket", "unsupported scheme"),
        ("http://host/b", "unsupported scheme"), ("/var/backups", "file://"),
        ("my bucket", "white space"), ("file://", "no directory"),
    ])
    def test_invalid_bucket(self, bad, why):
        with pytest.raises(RuntimeError, match=why) as ei:
            walrust.Walrust(bad)
        assert isinstance(ei.value, walrust.InvalidArgumentError)
        assert isinstance(ei.value, ValueError)
        assert ei.value.code == "invalid_argument"

    def test_invalid_endpoint(self):
        with pytest.raises(walrust.InvalidArgumentError, match="http"):
            walrust.Walrust("b", endpoint="fly.storage.tigris.dev")
        assert walrust.Walrust("b", endpoint="").endpoint is None
        assert walrust.Walrust("b", endpoint="http://h:9000/").endpoint == \
            "http://h:9000"

    def test_point_in_time_and_txid_exclude_each_other(self, tmp_path,
                                                       monkeypatch):
        monkeypatch.setenv("WALRUST_SOCKET", str(tmp_path / "none.sock"))
        monkeypatch.setenv("WALRUST_WALRUSTD", "/nonexistent/walrustd")
        with pytest.raises(walrust.InvalidArgumentError,
                           match="failed: give point_in_time or txid, not "
                                 "both"):
            walrust.Walrust("b").restore("app", "/tmp/o.db",
                                         "2024-01-15T10:30:00Z", txid=3)

    def test_types(self):
        with pytest.raises(TypeError):
            walrust.Walrust(b"bucket")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            walrust.Walrust("b").restore("app", "/x", 12)  # type: ignore

    def test_repr_has_no_secrets(self, monkeypatch):
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t")
        r = repr(walrust.Walrust("b", endpoint="http://h"))
        assert r == "Walrust('s3://b', endpoint='http://h')"

    @pytest.mark.parametrize("env,expect", [
        ({"WALRUST_SOCKET": "/x/y.sock", "XDG_RUNTIME_DIR": "/run/u"},
         "/x/y.sock"),
        ({"XDG_RUNTIME_DIR": "/run/user/7"},
         "/run/user/7/walrust/walrustd.sock"),
        ({}, f"/tmp/walrust-{os.getuid()}/walrustd.sock"),
    ])
    def test_socket_path(self, monkeypatch, env, expect):
        for k in ("WALRUST_SOCKET", "XDG_RUNTIME_DIR"):
            monkeypatch.delenv(k, raising=False)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        assert walrust.socket_path() == expect

    def test_missing_database_needs_no_daemon(self, tmp_path, monkeypatch):
        monkeypatch.setenv("WALRUST_SOCKET", str(tmp_path / "none.sock"))
        monkeypatch.setenv("WALRUST_WALRUSTD", "/nonexistent/walrustd")
        db = tmp_path / "missing.db"
        with pytest.raises(RuntimeError) as ei:
            walrust.Walrust("s3://b").snapshot(str(db))
        e = ei.value
        assert isinstance(e, walrust.DatabaseNotFoundError)
        assert str(e) == f"snapshot of {db} failed: no such database: {db}"
        assert e.code == "not_found"
        with pytest.raises(walrust.DatabaseNotFoundError, match="directory"):
            walrust.snapshot(str(tmp_path), "s3://b")
        assert not (tmp_path / "none.sock").exists()

    def test_error_classes(self):
        cases = {
            "not_found": walrust.DatabaseNotFoundError,
            "auth": walrust.AuthenticationError,
            "unreachable": walrust.EndpointUnreachableError,
            "checksum": walrust.ChecksumMismatchError,
            "no_snapshot": walrust.NoSnapshotError,
            "before_first_snapshot":
                walrust.PointInTimeBeforeFirstSnapshotError,
            "storage": walrust.StorageError,
            "in_use": walrust.OutputInUseError,
            "invalid_argument": walrust.InvalidArgumentError,
            "bad_request": walrust.ProtocolError,
            "shutting_down": walrust.DaemonError,
            "io": walrust.WalrustError,
            "internal": walrust.WalrustError,
            "brand_new_code": walrust.WalrustError,
        }
        for code, cls in cases.items():
            e = _errors.from_reply("list of s3://b", code, "it broke")
            assert type(e) is cls, code
            assert isinstance(e, RuntimeError)
            assert e.code == code and e.detail == "it broke"
            assert str(e) == "list of s3://b failed: it broke"
            e2 = pickle.loads(pickle.dumps(e))
            assert type(e2) is cls and e2.code == code and str(e2) == str(e)

    def test_warning_classes(self):
        assert issubclass(walrust.NotInWALModeWarning, walrust.WalrustWarning)
        assert issubclass(walrust.NotInWALModeWarning, RuntimeWarning)
        assert issubclass(walrust.WalrustWarning, UserWarning)


# ------------------------------------------------------------ fake daemon
class TestFakeDaemon:
    def test_round_trip(self, fake_daemon, recorded, tmp_path, monkeypatch):
        monkeypatch.chdir(tmp_path)
        make_db(tmp_path / "app.db")
        ws = walrust.Walrust("file:///fake/rep")
        assert ws.list() == []
        assert ws.snapshot("app.db") is None  # relative: made absolute
        assert ws.list() == ["app"]
        assert ws.restore("app", "out.db") is None
        assert (tmp_path / "out.db").read_bytes() == \
            (tmp_path / "app.db").read_bytes()
        reqs = [r for r in requests_of(recorded) if r["cmd"] != "hello"]
        assert [r["cmd"] for r in reqs] == ["list", "snapshot", "list",
                                            "restore"]
        assert reqs[1]["args"] == {"bucket": "file:///fake/rep",
                                   "database": str(tmp_path / "app.db")}
        assert reqs[3]["args"] == {"bucket": "file:///fake/rep",
                                   "name": "app",
                                   "output": str(tmp_path / "out.db")}
        for r in reqs:
            assert r["v"] == 1 and isinstance(r["id"], int)
        ids = [r["id"] for r in reqs]
        assert len(set(ids)) == len(ids) and ids == sorted(ids)

    def test_aws_environment_sent(self, fake_daemon, recorded, tmp_path,
                                  monkeypatch):
        make_db(tmp_path / "app.db")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKID")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "SECRET")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-3")
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")
        walrust.snapshot(str(tmp_path / "app.db"), "my-bucket/prod",
                         endpoint="http://127.0.0.1:9000")
        monkeypatch.setenv("AWS_REGION", "us-west-2")
        monkeypatch.setenv("AWS_SESSION_TOKEN", "TOKEN")
        assert walrust.list_databases("s3://my-bucket/prod") == ["app"]
        reqs = [r for r in requests_of(recorded) if r["cmd"] != "hello"]
        assert reqs[0]["args"] == {
            "database": str(tmp_path / "app.db"),
            "bucket": "s3://my-bucket/prod",
            "endpoint": "http://127.0.0.1:9000",
            "aws": {"access_key_id": "AKID", "secret_access_key": "SECRET",
                    "region": "eu-west-3",
                    "endpoint_url": "http://127.0.0.1:9"}}
        assert reqs[1]["args"] == {
            "bucket": "s3://my-bucket/prod",
            "aws": {"access_key_id": "AKID", "secret_access_key": "SECRET",
                    "session_token": "TOKEN", "region": "us-west-2",
                    "endpoint_url": "http://127.0.0.1:9"}}

    def test_daemon_env_has_no_credentials(self, fake_daemon, monkeypatch):
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-inherit")
        pid = walrust.Walrust("b").status()["pid"]
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = f.read()
        assert b"do-not-inherit" not in env
        assert b"AWS_SECRET_ACCESS_KEY" not in env

    def test_progress_events(self, fake_daemon, tmp_path):
        make_db(tmp_path / "app.db")
        ws = walrust.Walrust("file:///fake/p")
        seen = []
        ws.snapshot(str(tmp_path / "app.db"), progress=seen.append)
        assert [d["phase"] for d in seen] == ["read", "upload"]
        seen.clear()
        walrust.restore("app", str(tmp_path / "o.db"), "file:///fake/p",
                        progress=seen.append)
        assert [d["phase"] for d in seen] == ["download", "apply"]
        assert all(isinstance(d, dict) for d in seen)

    def test_progress_callback_exception_propagates(self, fake_daemon,
                                                    tmp_path):
        make_db(tmp_path / "app.db")

        def boom(data):
            raise KeyError("stop")

        with pytest.raises(KeyError):
            walrust.Walrust("file:///fake/q").snapshot(
                str(tmp_path / "app.db"), progress=boom)
        # the next call works normally (the abandoned snapshot may or may
        # not have completed: the connection closed under it)
        assert walrust.Walrust("file:///fake/q").list() in ([], ["app"])

    def test_not_wal_warning(self, fake_daemon, tmp_path):
        db = make_db(tmp_path / "legacy.db", wal=False)
        with pytest.warns(RuntimeWarning) as rec:
            walrust.Walrust("file:///fake/w").snapshot(db)
        assert len(rec) == 1  # the event and the result carry the same text
        w = rec[0]
        assert w.category is walrust.NotInWALModeWarning
        assert issubclass(w.category, walrust.WalrustWarning)
        assert str(w.message) == (f"{db} is not in WAL mode: it can be "
                                  f"snapshotted but not replicated "
                                  f"continuously")
        assert w.filename == __file__  # points at the caller
        with pytest.warns(walrust.WalrustWarning) as rec:
            walrust.snapshot(db, "file:///fake/w")
        assert rec[0].filename == __file__

    def test_wal_database_no_warning(self, fake_daemon, tmp_path):
        db = make_db(tmp_path / "app.db")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            walrust.Walrust("file:///fake/w2").snapshot(db)

    @pytest.mark.parametrize("setup,call,cls,msg", [
        ({"AWS_SECRET_ACCESS_KEY": "wrong", "AWS_ACCESS_KEY_ID": "k"},
         lambda ws, d: ws.list(), walrust.AuthenticationError,
         r"^list of s3://b failed: s3://b: 403 SignatureDoesNotMatch "
         r"\(check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY\)$"),
        ({"AWS_ENDPOINT_URL_S3": "http://127.0.0.1:1"},
         lambda ws, d: ws.snapshot(d), walrust.EndpointUnreachableError,
         r"^snapshot of /.*/app.db failed: http://127.0.0.1:1: Couldn't "
         r"connect to server$"),
        ({}, lambda ws, d: ws.restore("corrupt", d + ".out"),
         walrust.ChecksumMismatchError,
         r"^restore of corrupt to /.*app.db.out failed: corrupt: checksum "
         r"mismatch"),
        ({}, lambda ws, d: ws.restore("nothing", d + ".out"),
         walrust.NoSnapshotError,
         r"^restore of nothing to .* failed: nothing: no snapshot in s3://b$"),
        ({}, lambda ws, d: (ws.snapshot(d), ws.restore(
            "app", d + ".out", point_in_time="1999-01-01T00:00:00Z")),
         walrust.PointInTimeBeforeFirstSnapshotError,
         r"failed: app: 1999-01-01T00:00:00Z is before the first snapshot "
         r"\(\d{4}-"),
        ({}, lambda ws, d: ws.restore("../etc", d + ".out"),
         walrust.InvalidArgumentError, r"invalid database name"),
    ])
    def test_error_mapping(self, fake_daemon, tmp_path, monkeypatch, setup,
                           call, cls, msg):
        db = make_db(tmp_path / "app.db")
        for k, v in setup.items():
            monkeypatch.setenv(k, v)
        ws = walrust.Walrust("s3://b")
        with pytest.raises(RuntimeError, match=msg) as ei:
            call(ws, db)
        assert type(ei.value) is cls
        assert ei.value.code == cls.default_code

    def test_daemon_not_found_mapping(self, fake_daemon, tmp_path,
                                      monkeypatch):
        # skip the local pre-check: the daemon's not_found maps the same way
        monkeypatch.setattr(walrust, "_check_database", lambda p, op: None)
        db = str(tmp_path / "gone.db")
        with pytest.raises(walrust.DatabaseNotFoundError,
                           match=f"^snapshot of {db} failed: no such "
                                 f"database: {db}$"):
            walrust.Walrust("s3://b").snapshot(db)

    def test_empty_output_replaced_nonempty_refused(self, fake_daemon,
                                                    recorded, tmp_path):
        db = make_db(tmp_path / "app.db")
        ws = walrust.Walrust("file:///fake/e")
        ws.snapshot(db)
        empty = tmp_path / "empty.db"
        empty.write_bytes(b"")
        ws.restore("app", str(empty))
        assert empty.read_bytes() == (tmp_path / "app.db").read_bytes()
        with pytest.raises(walrust.InvalidArgumentError, match="exists"):
            ws.restore("app", str(empty))
        ws.restore("app", str(empty), force=True)
        ws.restore("app", str(tmp_path / "t.db"), txid=1)
        reqs = [r["args"] for r in requests_of(recorded)
                if r["cmd"] == "restore"]
        assert reqs[0]["force"] is True
        assert "force" not in reqs[1]
        assert reqs[2]["force"] is True
        assert reqs[3]["txid"] == 1

    def test_point_in_time_datetime(self, fake_daemon, recorded, tmp_path):
        import datetime as dt

        db = make_db(tmp_path / "app.db")
        ws = walrust.Walrust("file:///fake/t")
        ws.snapshot(db)
        t = dt.datetime(2030, 1, 15, 11, 30, 0, 250000,
                        tzinfo=dt.timezone(dt.timedelta(hours=1)))
        ws.restore("app", str(tmp_path / "o.db"), t)
        ws.restore("app", str(tmp_path / "o2.db"),
                   point_in_time="2030-01-15T10:30:00Z")
        args = [r["args"] for r in requests_of(recorded)
                if r["cmd"] == "restore"]
        assert args[0]["point_in_time"] == "2030-01-15T10:30:00.250Z"
        assert args[1]["point_in_time"] == "2030-01-15T10:30:00Z"

    @pytest.mark.parametrize("knob", ["FAKE_WALRUSTD_CHUNKED",
                                      "FAKE_WALRUSTD_NOISE"])
    def test_framing_chunks_and_foreign_messages(self, fake_daemon, knob,
                                                 monkeypatch, tmp_path):
        monkeypatch.setenv(knob, "1")
        db = make_db(tmp_path / "legacy.db", wal=False)
        ws = walrust.Walrust("file:///fake/f")
        seen = []
        with pytest.warns(walrust.NotInWALModeWarning) as rec:
            ws.snapshot(db, progress=seen.append)
        assert len(rec) == 1 and "not in WAL mode" in str(rec[0].message)
        assert [d["phase"] for d in seen] == ["read", "upload"]
        assert ws.list() == ["legacy"]
        ws.restore("legacy", str(tmp_path / "o.db"), progress=seen.append)
        assert (tmp_path / "o.db").read_bytes() == open(db, "rb").read()

    def test_threads_share_one_object(self, fake_daemon, recorded, tmp_path):
        ws = walrust.Walrust("file:///fake/threads")
        dbs = [make_db(tmp_path / f"slow{i}.db", rows=i + 1)
               for i in range(8)]
        errors = []
        barrier = threading.Barrier(8)

        def work(i):
            try:
                barrier.wait()
                ws.snapshot(dbs[i])
                assert f"slow{i}" in ws.list()
                ws.restore(f"slow{i}", str(tmp_path / f"out{i}.db"))
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)

        ts = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        t0 = time.monotonic()
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        assert not errors, errors
        # the 0.3 s snapshots ran concurrently, not one after another
        assert time.monotonic() - t0 < 8 * 0.6
        for i in range(8):
            assert (tmp_path / f"out{i}.db").read_bytes() == \
                open(dbs[i], "rb").read()
        ids = [r["id"] for r in requests_of(recorded) if r["cmd"] != "hello"]
        assert len(ids) == 24 and len(set(ids)) == 24

    def test_request_ids_unique_across_threads(self):
        got = []
        lock = threading.Lock()

        def take():
            mine = [_client.next_id() for _ in range(500)]
            with lock:
                got.extend(mine)

        ts = [threading.Thread(target=take) for _ in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert len(set(got)) == 4000


# --------------------------------------------------------------- auto-start
class TestAutoStart:
    def test_started_detached_and_reused(self, fake_daemon):
        assert not os.path.exists(fake_daemon)
        st1 = walrust.Walrust("b").status()
        pid = st1["pid"]
        assert st1["fake"] is True and st1["socket"] == fake_daemon
        d = os.path.dirname(fake_daemon)
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
        assert os.getsid(pid) == pid  # own session: no terminal signals
        assert os.readlink(f"/proc/{pid}/fd/0") == "/dev/null"
        log = os.path.join(d, "walrustd.log")
        assert os.readlink(f"/proc/{pid}/fd/2") == log
        with open(log) as f:
            text = f.read()
        assert f"started by pid {os.getpid()}" in text
        assert f"--socket {fake_daemon}" in text
        assert walrust.Walrust("other").status()["pid"] == pid
        # the lock file was not inherited: nobody holds it now
        import fcntl
        with open(fake_daemon + ".lock") as f:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert walrust.shutdown_daemon() is True
        deadline = time.monotonic() + 10  # reaped by the package's thread
        while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not os.path.exists(f"/proc/{pid}")
        # a later call starts a new one
        assert walrust.Walrust("b").status()["pid"] != pid

    def test_restart_after_daemon_died(self, fake_daemon):
        ws = walrust.Walrust("b")
        pid = ws.status()["pid"]
        os.kill(pid, 9)
        time.sleep(0.2)
        assert ws.status()["pid"] != pid

    def test_start_failure_reported(self, fake_daemon, monkeypatch):
        monkeypatch.setenv("FAKE_WALRUSTD_FAIL", "3")
        with pytest.raises(RuntimeError) as ei:
            walrust.Walrust("b").list()
        e = ei.value
        assert isinstance(e, walrust.DaemonError) and e.code == "daemon"
        assert str(e).startswith("list of s3://b failed: cannot start "
                                 "walrustd")
        assert "exited with status 3" in str(e)
        assert "failing on purpose" in str(e)  # the log tail

    def test_start_timeout_reported(self, fake_daemon, monkeypatch):
        monkeypatch.setenv("FAKE_WALRUSTD_DELAY", "30")
        monkeypatch.setenv("WALRUST_START_TIMEOUT", "0.5")
        t0 = time.monotonic()
        with pytest.raises(walrust.DaemonError, match="no answer .* within "
                                                      "0.5 s"):
            walrust.Walrust("b").list()
        assert time.monotonic() - t0 < 5
        # leave no sleeping fake behind
        out = subprocess.run(["pgrep", "-f", fake_daemon], capture_output=True,
                             text=True).stdout.split()
        for p in out:
            os.kill(int(p), 9)

    def test_bad_binary(self, tmp_path, monkeypatch):
        monkeypatch.setenv("WALRUST_SOCKET", str(tmp_path / "s.sock"))
        monkeypatch.setenv("WALRUST_WALRUSTD", str(tmp_path / "nope"))
        with pytest.raises(walrust.DaemonError,
                           match="WALRUST_WALRUSTD=.*nope is not an "
                                 "executable file"):
            walrust.Walrust("b").list()

    def test_newer_daemon_that_speaks_v1_is_fine(self, fake_daemon,
                                                 monkeypatch):
        monkeypatch.setenv("FAKE_WALRUSTD_PROTOCOL", "2")
        assert walrust.Walrust("b").list() == []

    def test_protocol_mismatch(self, fake_daemon, monkeypatch):
        monkeypatch.setenv("FAKE_WALRUSTD_PROTOCOL", "2")
        monkeypatch.setenv("FAKE_WALRUSTD_ONLY_V", "2")
        with pytest.raises(walrust.ProtocolError,
                           match="^list of s3://b failed: walrustd at .* does "
                                 "not speak protocol version 1") as ei:
            walrust.Walrust("b").list()
        assert ei.value.code == "unsupported_version"

    def test_old_daemon(self, fake_daemon, monkeypatch):
        monkeypatch.setenv("FAKE_WALRUSTD_PROTOCOL", "0")
        with pytest.raises(walrust.ProtocolError, match="speaks protocol 0"):
            walrust.Walrust("b").list()

    def test_foreign_socket_dir_refused(self, tmp_path, monkeypatch,
                                        fake_walrustd):
        if os.getuid() != 0:
            pytest.skip("needs root to make a directory of another user")
        d = tmp_path / "theirs"
        d.mkdir()
        os.chown(d, 12345, 12345)
        monkeypatch.setenv("WALRUST_SOCKET", str(d / "walrustd.sock"))
        monkeypatch.setenv("WALRUST_WALRUSTD", fake_walrustd)
        with pytest.raises(walrust.DaemonError, match="belongs to uid 12345"):
            walrust.Walrust("b").list()

    def test_two_processes_start_one_daemon(self, fake_walrustd, tmp_path):
        d = short_tmpdir("wr-race-")
        sock = os.path.join(d, "walrustd.sock")
        record = tmp_path / "starts"
        env = clean_env(WALRUST_SOCKET=sock, WALRUST_WALRUSTD=fake_walrustd,
                        FAKE_WALRUSTD_RECORD=str(record),
                        FAKE_WALRUSTD_DELAY="0.7", PYTHONPATH=PYDIR)
        code = ("import walrust, time; time.sleep(0.3 - time.time() % 0.3);"
                "print(walrust.Walrust('b').status()['pid'])")
        try:
            procs = [subprocess.Popen([sys.executable, "-c", code], env=env,
                                      stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
                     for _ in range(3)]
            outs = [p.communicate(timeout=60) for p in procs]
            for p, (out, err) in zip(procs, outs):
                assert p.returncode == 0, err
            pids = {int(out.strip()) for out, _ in outs}
            assert len(pids) == 1, outs
            assert record.read_text().count("start ") == 1
            # it outlives the processes that started it
            (pid,) = pids
            os.kill(pid, 0)
        finally:
            walrust.shutdown_daemon(sock)
            import shutil
            shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------- scripted servers
class TestScripted:
    def ws(self, srv, **kw):
        return walrust.Walrust("b", socket_path=srv.path, **kw)

    def test_eof_before_reply(self, scripted):
        srv = scripted(lambda req, s: "close")
        with pytest.raises(walrust.DaemonError,
                           match="^list of s3://b failed: walrustd closed the "
                                 "connection before replying"):
            self.ws(srv).list()

    def test_not_json(self, scripted):
        srv = scripted(lambda req, s: s.sendall(b"<html>oops</html>\n"))
        with pytest.raises(walrust.ProtocolError,
                           match="^list of s3://b failed: walrustd sent a "
                                 "line that is not JSON: '<html>"):
            self.ws(srv).list()

    def test_null_id_error_is_ours(self, scripted):
        def h(req, s):
            send(s, {"v": 1, "id": None, "ok": False,
                     "error": {"code": "line_too_long",
                               "message": "line longer than 1048576 bytes"}})
        srv = scripted(h)
        with pytest.raises(walrust.ProtocolError,
                           match="failed: line longer than 1048576 bytes"):
            self.ws(srv).list()

    def test_reply_split_everywhere(self, scripted):
        def h(req, s):
            data = json.dumps({"v": 1, "id": req["id"], "ok": True,
                               "result": {"bucket": "s3://b",
                                          "databases": ["a", "b"]}}).encode()
            for i in range(len(data)):
                s.sendall(data[i:i + 1])
            s.sendall(b"\n")
        srv = scripted(h)
        assert self.ws(srv).list() == ["a", "b"]

    def test_two_messages_in_one_packet(self, scripted):
        def h(req, s):
            ev = {"v": 1, "id": req["id"], "event": "progress",
                  "data": {"phase": "download"}}
            ok = {"v": 1, "id": req["id"], "ok": True, "result": {}}
            s.sendall(json.dumps(ev).encode() + b"\n" + json.dumps(ok).encode()
                      + b"\n")
        srv = scripted(h)
        seen = []
        self.ws(srv).restore("app", "/tmp/x-never-written.db",
                             progress=seen.append)
        assert seen == [{"phase": "download"}]

    def test_oversized_line(self, scripted):
        def h(req, s):
            s.sendall(b"x" * (_daemon.MAX_LINE + 10))
        srv = scripted(h)
        with pytest.raises(walrust.ProtocolError, match="longer than"):
            self.ws(srv).list()

    def test_timeout(self, scripted):
        srv = scripted(lambda req, s: time.sleep(3))
        t0 = time.monotonic()
        with pytest.raises(walrust.DaemonError,
                           match="no reply from walrustd within 0.5 s") as ei:
            self.ws(srv, timeout=0.5).list()
        assert ei.value.code == "timeout"
        assert time.monotonic() - t0 < 2.5

    def test_bad_result_shape(self, scripted):
        srv = scripted(lambda req, s: send(s, {"v": 1, "id": req["id"],
                                               "ok": True,
                                               "result": {"databases": 3}}))
        with pytest.raises(walrust.ProtocolError, match="list of names"):
            self.ws(srv).list()

    def test_request_too_long(self, scripted):
        srv = scripted(lambda req, s: None)
        with pytest.raises(walrust.InvalidArgumentError,
                           match="^restore of a+ to /tmp/x.db failed: .*over the "
                                 "protocol's 1048576-byte limit"):
            self.ws(srv).restore("a" * (2 << 20), "/tmp/x.db")

    def test_socket_path_too_long(self, tmp_path):
        p = "/tmp/" + "d" * 120 + "/walrustd.sock"
        with pytest.raises(walrust.DaemonError):
            walrust.Walrust("b", socket_path=p).list()
