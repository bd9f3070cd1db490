"""The package against the real walrustd: each error case with its class
and message, the non-WAL warning, file:// buckets, point-in-time restores,
eight threads on one object, and daemon reuse across processes."""

import datetime as dt
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

import walrust
from walrust_testlib import dbtools

from wrpy_helpers import PYDIR, clean_env
from wrpy_helpers import add_rows, dump, integrity, make_db


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ws(target, aws_env):
    aws_env(target)
    return walrust.Walrust(target.url, endpoint=target.endpoint)


# ------------------------------------------------------------------ errors
def test_database_not_found(ws, tmp_path):
    db = str(tmp_path / "missing.db")
    with pytest.raises(RuntimeError) as ei:
        ws.snapshot(db)
    assert type(ei.value) is walrust.DatabaseNotFoundError
    assert str(ei.value) == (f"snapshot of {db} failed: no such database: "
                             f"{db}")


def test_database_not_found_by_daemon(ws, tmp_path, monkeypatch):
    """The daemon's own check maps to the same class."""
    monkeypatch.setattr(walrust, "_check_database", lambda p, op: None)
    db = str(tmp_path / "missing.db")
    with pytest.raises(walrust.DatabaseNotFoundError) as ei:
        ws.snapshot(db)
    assert ei.value.code == "not_found"
    assert str(ei.value).startswith(f"snapshot of {db} failed: ")
    assert db in ei.value.detail


@pytest.mark.parametrize("how", ["wrong-secret", "unknown-key",
                                 "no-credentials"])
def test_authentication_failure(request, walrust_session, aws_env, tmp_path,
                                monkeypatch, how):
    """SeaweedFS checks SigV4 (moto accepts any key, so it cannot)."""
    srv = request.getfixturevalue("seaweed")
    rep = srv.replica()
    env = srv.env()
    if how == "wrong-secret":
        env["AWS_SECRET_ACCESS_KEY"] = "not-the-secret"
    elif how == "unknown-key":
        env["AWS_ACCESS_KEY_ID"] = "AKIANOBODYKNOWS00000"
    else:
        del env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
    for k in list(os.environ):
        if k.startswith("AWS_"):
            monkeypatch.delenv(k)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    ws = walrust.Walrust(rep.url, endpoint=srv.endpoint)
    db = make_db(tmp_path / "app.db")
    calls = {
        "snapshot": (lambda: ws.snapshot(db), f"snapshot of {db}"),
        "list": (ws.list, f"list of {rep.url}"),
        "restore": (lambda: ws.restore("app", str(tmp_path / "o.db")),
                    f"restore of app to {tmp_path / 'o.db'}"),
    }
    for what, (call, op) in calls.items():
        with pytest.raises(RuntimeError) as ei:
            call()
        e = ei.value
        assert type(e) is walrust.AuthenticationError, (what, e)
        assert str(e).startswith(f"{op} failed: "), str(e)
        assert "AWS_ACCESS_KEY_ID" in str(e) and \
            "AWS_SECRET_ACCESS_KEY" in str(e), str(e)


@pytest.mark.timeout(120)
def test_endpoint_unreachable(walrust_session, tmp_path, aws_env,
                              monkeypatch):
    for k in list(os.environ):
        if k.startswith("AWS_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    endpoint = f"http://127.0.0.1:{closed_port()}"
    ws = walrust.Walrust("s3://my-bucket", endpoint=endpoint)
    db = make_db(tmp_path / "app.db")
    for call, op in [(lambda: ws.snapshot(db), f"snapshot of {db}"),
                     (ws.list, "list of s3://my-bucket"),
                     (lambda: ws.restore("app", str(tmp_path / "o.db")),
                      "restore of app to")]:
        t0 = time.monotonic()
        with pytest.raises(RuntimeError) as ei:
            call()
        took = time.monotonic() - t0
        assert type(ei.value) is walrust.EndpointUnreachableError, ei.value
        assert str(ei.value).startswith(op), str(ei.value)
        assert endpoint.split("//")[1] in str(ei.value)
        assert took < 15, f"took {took:.1f} s"


@pytest.mark.timeout(120)
def test_endpoint_unreachable_from_environment(walrust_session, tmp_path,
                                               monkeypatch):
    """AWS_ENDPOINT_URL_S3 (no endpoint argument) is honoured."""
    endpoint = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
    t0 = time.monotonic()
    with pytest.raises(walrust.EndpointUnreachableError):
        walrust.list_databases("my-bucket")
    assert time.monotonic() - t0 < 15


def corrupt_one(rep, name):
    keys = rep.ltx_keys(name)
    assert keys, rep.keys()
    k = keys[-1].key
    data = bytearray(rep.read(k))
    mid = len(data) // 2
    for i in range(mid, min(mid + 16, len(data))):
        data[i] ^= 0x5A
    rep.write(k, bytes(data))
    return k


def test_checksum_mismatch(any_target, aws_env, tmp_path):
    t = aws_env(any_target)
    ws = walrust.Walrust(t.url, endpoint=t.endpoint)
    db = make_db(tmp_path / "app.db", rows=500)
    ws.snapshot(db)
    corrupt_one(t.replica, "app")
    out = tmp_path / "restored.db"
    with pytest.raises(RuntimeError) as ei:
        ws.restore("app", str(out))
    assert type(ei.value) is walrust.ChecksumMismatchError, ei.value
    assert str(ei.value).startswith(f"restore of app to {out} failed: ")
    assert not out.exists() or out.stat().st_size == 0


def test_checksum_truncated_object(target, aws_env, tmp_path):
    t = aws_env(target)
    ws = walrust.Walrust(t.url, endpoint=t.endpoint)
    ws.snapshot(make_db(tmp_path / "app.db", rows=500))
    k = t.replica.ltx_keys("app")[-1].key
    data = t.replica.read(k)
    t.replica.write(k, data[: len(data) // 3])
    with pytest.raises(walrust.ChecksumMismatchError):
        ws.restore("app", str(tmp_path / "o.db"))


def test_no_snapshot(any_target, aws_env, tmp_path):
    t = aws_env(any_target)
    ws = walrust.Walrust(t.url, endpoint=t.endpoint)
    with pytest.raises(RuntimeError) as ei:
        ws.restore("nothing", str(tmp_path / "o.db"))
    assert type(ei.value) is walrust.NoSnapshotError
    assert str(ei.value).startswith(f"restore of nothing to "
                                    f"{tmp_path / 'o.db'} failed: ")
    assert "nothing" in ei.value.detail
    with pytest.raises(walrust.NoSnapshotError):
        walrust.restore("nothing", str(tmp_path / "o.db"), t.url,
                        endpoint=t.endpoint)


def test_point_in_time_before_first_snapshot(any_target, aws_env, tmp_path):
    t = aws_env(any_target)
    ws = walrust.Walrust(t.url, endpoint=t.endpoint)
    ws.snapshot(make_db(tmp_path / "app.db"))
    with pytest.raises(RuntimeError) as ei:
        ws.restore("app", str(tmp_path / "o.db"),
                   point_in_time="2024-01-15T10:30:00Z")
    e = ei.value
    assert type(e) is walrust.PointInTimeBeforeFirstSnapshotError
    assert "2024-01-15T10:30:00" in str(e)
    year = str(dt.datetime.now(dt.timezone.utc).year)
    assert year + "-" in e.detail  # names the earliest time available
    assert not (tmp_path / "o.db").exists()


def test_point_in_time_restore(any_target, aws_env, tmp_path):
    t = aws_env(any_target)
    ws = walrust.Walrust(t.url, endpoint=t.endpoint)
    db = make_db(tmp_path / "app.db", rows=20)
    ws.snapshot(db)
    v1 = dump(db)
    time.sleep(1.2)
    between = dt.datetime.now(dt.timezone.utc)
    time.sleep(1.2)
    add_rows(db, 30)
    ws.snapshot(db)
    ws.restore("app", str(tmp_path / "then.db"), point_in_time=between)
    assert dump(tmp_path / "then.db") == v1
    ws.restore("app", str(tmp_path / "then2.db"), point_in_time=between
               .strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    assert dump(tmp_path / "then2.db") == v1
    ws.restore("app", str(tmp_path / "now.db"))
    assert dump(tmp_path / "now.db") == dump(db) != v1


def test_not_wal_warning(any_target, aws_env, tmp_path):
    t = aws_env(any_target)
    ws = walrust.Walrust(t.url, endpoint=t.endpoint)
    db = make_db(tmp_path / "legacy.db", wal=False)
    with pytest.warns(RuntimeWarning) as rec:
        ws.snapshot(db)
    msgs = [str(w.message) for w in rec
            if issubclass(w.category, walrust.WalrustWarning)]
    assert len(msgs) == 1, msgs
    assert rec[0].category is walrust.NotInWALModeWarning
    assert db in msgs[0] and "WAL" in msgs[0]
    assert ws.list() == ["legacy"]  # the snapshot was taken all the same
    ws.restore("legacy", str(tmp_path / "o.db"))
    assert dump(tmp_path / "o.db") == dump(db)


def test_restore_refuses_output_in_use_without_force(target, aws_env,
                                                     tmp_path):
    """An output whose -wal is not empty is in use: refused unless forced,
    and left exactly as it was. An idle existing file is replaced."""
    t = aws_env(target)
    ws = walrust.Walrust(t.url, endpoint=t.endpoint)
    db = make_db(tmp_path / "app.db")
    ws.snapshot(db)
    out = tmp_path / "o.db"
    out.write_bytes(b"precious")
    wal = tmp_path / "o.db-wal"
    wal.write_bytes(b"not empty")
    with pytest.raises(walrust.WalrustError) as ei:
        ws.restore("app", str(out))
    assert ei.value.code == "in_use"
    assert str(ei.value).startswith(f"restore of app to {out} failed: ")
    assert out.read_bytes() == b"precious"
    ws.restore("app", str(out), force=True)
    assert not wal.exists()
    assert dump(out) == dump(db)
    # idle and existing: replaced without force
    ws.restore("app", str(out))
    assert dump(out) == dump(db)


def test_restore_integrity_check_modes(target, aws_env, tmp_path):
    """integrity_check= reaches the daemon: a database whose index does not
    match its table fails the default (full) check with the output
    untouched, and restores with quick and none; a bad mode is refused
    before any request."""
    t = aws_env(target)
    ws = walrust.Walrust(t.url, endpoint=t.endpoint)
    db = str(tmp_path / "app.db")
    dbtools.create_db_with_a_lying_index(db)
    ws.snapshot(db)
    out = tmp_path / "o.db"
    out.write_bytes(b"precious")
    for kw in ({}, {"integrity_check": "full"}):
        with pytest.raises(walrust.ChecksumMismatchError) as ei:
            ws.restore("app", str(out), force=True, **kw)
        assert "integrity_check failed" in str(ei.value)
        assert out.read_bytes() == b"precious"
    for mode in ("quick", "none"):
        o = tmp_path / f"o-{mode}.db"
        ws.restore("app", str(o), integrity_check=mode)
        assert dump(o) == dump(db)
    with pytest.raises(walrust.InvalidArgumentError) as ei:
        ws.restore("app", str(out), integrity_check="thorough")
    assert "integrity_check" in str(ei.value)
    assert out.read_bytes() == b"precious"
    walrust.restore("app", str(tmp_path / "o-fn.db"), t.url, t.endpoint,
                    integrity_check="quick")
    assert dump(tmp_path / "o-fn.db") == dump(db)


def test_invalid_name(target, aws_env, tmp_path):
    t = aws_env(target)
    ws = walrust.Walrust(t.url, endpoint=t.endpoint)
    with pytest.raises(walrust.InvalidArgumentError):
        ws.restore("../etc/passwd", str(tmp_path / "o.db"))


# ------------------------------------------------------------ file buckets
def test_file_bucket(walrust_session, tmp_path, monkeypatch):
    for k in list(os.environ):
        if k.startswith("AWS_"):
            monkeypatch.delenv(k)
    rep = tmp_path / "replica"
    ws = walrust.Walrust(f"file://{rep}")
    assert ws.list() == []
    db = make_db(tmp_path / "app.db", rows=100)
    make_db(tmp_path / "users.db", rows=3)
    ws.snapshot(db)
    walrust.snapshot(str(tmp_path / "users.db"), f"file://{rep}/")
    assert walrust.list_databases(f"file://{rep}") == ["app", "users"]
    ltx = [os.path.relpath(os.path.join(d, f), rep)
           for d, _, fs in os.walk(rep) for f in fs if f.endswith(".ltx")]
    assert any(p.startswith("app/ltx/") for p in ltx), ltx
    ws.restore("app", str(tmp_path / "o.db"), txid=None)
    assert dump(tmp_path / "o.db") == dump(db)
    assert integrity(tmp_path / "o.db") == "ok"


def test_relative_paths_are_made_absolute(file_target, tmp_path,
                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_db(tmp_path / "app.db")
    ws = walrust.Walrust(file_target.url)
    ws.snapshot("app.db")
    ws.restore("app", "restored.db")
    assert dump(tmp_path / "restored.db") == dump(tmp_path / "app.db")


# ----------------------------------------------------------------- threads
@pytest.mark.timeout(300)
def test_eight_threads_one_object(any_target, aws_env, tmp_path):
    t = aws_env(any_target)
    ws = walrust.Walrust(t.url, endpoint=t.endpoint)
    dbs = [make_db(tmp_path / f"db{i}.db", rows=50 + 40 * i, seed=i)
           for i in range(8)]
    barrier = threading.Barrier(8)
    errors, lists = [], []

    def work(i):
        try:
            barrier.wait(30)
            ws.snapshot(dbs[i])
            lists.append(ws.list())
            ws.restore(f"db{i}", str(tmp_path / f"out{i}.db"))
            lists.append(walrust.list_databases(t.url, endpoint=t.endpoint))
        except BaseException as e:  # noqa: B902 - reported below
            errors.append((i, e))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(240)
    assert not errors, errors
    for i in range(8):
        assert dump(tmp_path / f"out{i}.db") == dump(dbs[i])
    assert ws.list() == [f"db{i}" for i in range(8)]
    for lst in lists:
        assert lst == sorted(lst)


# ------------------------------------------------------------ daemon reuse
def test_daemon_reused_across_calls_and_processes(walrust_session):
    st = walrust.Walrust("file:///tmp").status()
    pid = st["pid"]
    assert st["socket"] == walrust_session.socket
    assert os.path.realpath(f"/proc/{pid}/exe") == \
        os.path.realpath(walrust_session.walrustd)
    assert os.getsid(pid) == pid
    assert walrust.Walrust("s3://x").status()["pid"] == pid
    env = clean_env(PYTHONPATH=PYDIR,
                    WALRUST_SOCKET=walrust_session.socket)
    out = subprocess.run(
        [sys.executable, "-c", "import walrust; "
         "print(walrust.Walrust('file:///tmp').status()['pid'])"],
        env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) == pid


def test_watch_sync_is_a_durability_barrier(target, aws_env, tmp_path):
    """Walrust.watch + Walrust.sync: once sync returns, every transaction
    committed before it is in the replica (a restore shows it)."""
    import sqlite3
    t = aws_env(target)
    ws = walrust.Walrust(t.url, endpoint=t.endpoint)
    db = make_db(tmp_path / "live.db")
    ws.watch(db)
    try:
        conn = sqlite3.connect(db)
        for i in range(50):
            conn.execute("CREATE TABLE IF NOT EXISTS w(i INTEGER)")
            conn.execute("INSERT INTO w VALUES (?)", (i,))
            conn.commit()
        conn.close()
        txid = ws.sync(db, timeout=60)
        assert txid >= 1
        out = tmp_path / "restored.db"
        ws.restore("live", str(out))
        assert dump(out) == dump(db)
    finally:
        ws.unwatch(db)
    with pytest.raises(walrust.WalrustError) as ei:
        ws.sync(db, timeout=1)
    assert ei.value.code == "not_found"
