"""Acceptance tests of the core issue: walrustd + walrustctl against real S3
servers (moto, SeaweedFS) and file:// replicas.

Every test starts its own walrustd (fixture `daemon`) with a temp socket and
temp XDG dirs; S3 servers are shared by the session, each test working under
a fresh prefix. walrustctl gets the AWS_* of the server in its environment
and passes them in each request; the daemon has none of its own.
"""

import datetime as dt
import json
import os
import re
import socket
import sqlite3
import subprocess
import time

import pytest

from walrust_testlib import dbtools
from walrust_testlib.daemon import format_time, parse_time
from walrust_testlib.faultproxy import FaultProxy, dead_endpoint
from walrust_testlib.servers import FileReplica

NAME = "app"


# ---------------------------------------------------------------- helpers
def snapshot(d, db, rep, **kw):
    return d.ctl("snapshot", db, env=rep.env(), **rep.ctl_opts(), **kw)


def restore(d, out, rep, *flags, name=NAME, **kw):
    return d.ctl("restore", name, out, *flags, env=rep.env(),
                 **rep.ctl_opts(), **kw)


def restore_error(d, out, rep, *flags, code, name=NAME, **kw):
    return d.ctl_error("restore", name, out, *flags, code=code,
                       env=rep.env(), **rep.ctl_opts(), **kw)


def dir_listing(path):
    return sorted(os.listdir(path))


def check_snapshot_result(res, db, rep, t0, t1):
    """The snapshot result names the object it wrote and sane numbers."""
    assert res["name"] == NAME
    assert os.path.abspath(res["database"]) == os.path.abspath(db)
    assert isinstance(res["txid"], int) and res["txid"] >= 1
    assert res["page_size"] == dbtools.db_info(db)["page_size"]
    assert res["pages"] >= 1 and res["bytes"] > 0
    assert res["wal_mode"] is True
    assert res["warnings"] == []
    ts = parse_time(res["timestamp"])
    assert t0 - dt.timedelta(seconds=2) <= ts <= t1 + dt.timedelta(seconds=2)
    keys = rep.ltx_keys(NAME)
    assert keys, f"no .ltx object under {rep.url}/{NAME}"
    # the object key, with or without the bucket prefix: see
    # test_snapshot_result_key for the exact form
    prefix = getattr(rep, "prefix", "")
    (k,) = [k for k in keys
            if res["key"] in (k.key, f"{prefix}/{k.key}")] or [None]
    assert k, (res["key"], keys)
    assert k.max_txid == res["txid"] and k.min_txid == 1
    return k


def now():
    return dt.datetime.now(dt.timezone.utc)


# ------------------------------------------------- snapshot under writes
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_snapshot_list_restore_under_concurrent_writes(daemon, s3_replica,
                                                       big_db, tmp_path):
    """A ~50 MB database (8 MB with --quick) is snapshotted while another
    process keeps committing (and checkpointing); the restore passes
    integrity_check and equals exactly one committed state: the base tables
    unchanged, table t equal to the writer's model at the restored counter,
    which lies inside the snapshot's time window."""
    db, base_sums = big_db
    rep = s3_replica
    with dbtools.Writer(db, seed=21, interval=0.002,
                        checkpoint_every=50) as w:
        w.wait_for(50)
        n_before = w.committed()
        t0 = now()
        snap = snapshot(daemon, db, rep).json
        t1 = now()
        time.sleep(0.3)  # let the log catch up with commits done by t1
        n_after = w.committed()
        assert n_after > n_before, "the writer made no commit meanwhile"
        listed = daemon.ctl("list", env=rep.env(), **rep.ctl_opts()).json
        out = str(tmp_path / "restored.db")
        rest = restore(daemon, out, rep).json  # still writing
    key = check_snapshot_result(snap, db, rep, t0, t1)

    names = [x if isinstance(x, str) else x["name"]
             for x in listed["databases"]]
    assert NAME in names, listed

    assert rest["name"] == NAME and rest["txid"] == snap["txid"]
    assert os.path.abspath(rest["output"]) == out
    assert rest["files"] >= 1
    assert parse_time(rest["timestamp"]) == parse_time(snap["timestamp"])

    assert dbtools.integrity_ok(out), dbtools.integrity_check(out)[:10]
    info = dbtools.db_info(out)
    assert rest["pages"] == snap["pages"] == info["page_count"]
    n = dbtools.counter_value(out)
    print(f"commits: {n_before} before the request, {n} restored, "
          f"{n_after} after the reply; snapshot {snap['pages']} pages, "
          f"{snap['bytes']} bytes in {(t1 - t0).total_seconds():.2f}s")
    assert n_before <= n <= n_after + 1, (n_before, n, n_after)
    got = dbtools.table_checksums(out)
    for t in dbtools.BASE_TABLES:
        assert got[t] == base_sums[t], t
    assert got["t"] == dbtools.expected_t_checksum(21, n)
    assert got["counter"][0] == 1
    assert key.level >= 0


def test_snapshot_result_key(daemon, replica, tmp_path):
    """result.key is the object's full key in the bucket (with the prefix
    of s3://bucket/prefix), or the path under a file:// replica root, as
    in proto/examples/snapshot.jsonl; the listing shows it."""
    db = str(tmp_path / f"{NAME}.db")
    dbtools.create_small_db(db)
    t0 = now()
    res = snapshot(daemon, db, replica).json
    k = check_snapshot_result(res, db, replica, t0, now())
    want = f"{replica.prefix}/{k.key}" if replica.kind == "s3" else k.key
    assert res["key"] == want, f"want {want}: {res}"
    assert res["bucket"] == replica.url or \
        res["bucket"] == replica.url.replace("file://", "")


# ---------------------------------------------------------- point in time
def three_snapshots(daemon, rep, db, change):
    """Snapshot db three times ~1.2 s apart, change(i) before the 2nd and
    3rd: ([table checksums at each], [snapshot results])."""
    states, snaps = [], []
    for i in range(3):
        if i:
            time.sleep(1.2)
            change(i)
        states.append(dbtools.table_checksums(db))
        snaps.append(snapshot(daemon, db, rep).json)
    return states, snaps


def test_point_in_time(daemon, s3_replica, tmp_path):
    """Three snapshots ~1.2 s apart with changes between: --at between the
    2nd and 3rd gives the 2nd state, --txid picks a snapshot, no flag gives
    the newest; --at before the first fails with before_first_snapshot
    naming the earliest time."""
    rep = s3_replica
    db = str(tmp_path / "src" / f"{NAME}.db")
    os.makedirs(os.path.dirname(db))
    dbtools.create_small_db(db, rows=200)

    def change(i):
        dbtools.execute(db, "INSERT INTO items(label, data) VALUES(?,?)",
                        (f"state {i}", os.urandom(5000)))
        dbtools.execute(db, "DELETE FROM items WHERE id=?", (i * 7,))
    states, snaps = three_snapshots(daemon, rep, db, change)
    txids = [s["txid"] for s in snaps]
    assert txids == sorted(set(txids)), txids
    t = [parse_time(s["timestamp"]) for s in snaps]
    assert t[0] < t[1] < t[2]

    def restored(*flags):
        out = str(tmp_path / f"out-{len(os.listdir(tmp_path))}.db")
        r = restore(daemon, out, rep, *flags).json
        assert dbtools.integrity_ok(out)
        return r, dbtools.table_checksums(out)

    r, sums = restored("--at", format_time(t[1] + (t[2] - t[1]) / 2))
    assert sums == states[1] and r["txid"] == txids[1]
    r, sums = restored("--at", format_time(t[0] + (t[1] - t[0]) / 2))
    assert sums == states[0] and r["txid"] == txids[0]
    r, sums = restored("--at", format_time(t[2] + dt.timedelta(seconds=30)))
    assert sums == states[2]
    r, sums = restored("--txid", str(txids[1]))
    assert sums == states[1] and r["txid"] == txids[1]
    r, sums = restored()
    assert sums == states[2] and r["txid"] == txids[2]

    out = str(tmp_path / "never.db")
    err = restore_error(daemon, out, rep, "--at",
                        format_time(t[0] - dt.timedelta(minutes=5)),
                        code="before_first_snapshot").error
    first = snaps[0]["timestamp"]
    assert first in err["message"] or first[:19] in err["message"], err
    assert not os.path.exists(out)


def test_point_in_time_reads_headers_not_files(daemon, s3_replica,
                                              tmp_path):
    """To find the state at a time, restore needs each file's timestamp
    from its 100-byte LTX header: it asks for those bytes (a ranged GET)
    and downloads in full only the files of the plan, not every snapshot
    before the target (at a proxy: one whole-object GET, the 2nd
    snapshot's; a ranged GET for each of the three)."""
    db = str(tmp_path / "src" / f"{NAME}.db")
    os.makedirs(os.path.dirname(db))
    dbtools.create_db(db, size_mb=2)
    states, snaps = three_snapshots(
        daemon, s3_replica, db, lambda i: dbtools.execute(
            db, "INSERT INTO kv VALUES(?, ?)", (f"pit-{i}", os.urandom(3000))))
    t = [parse_time(s["timestamp"]) for s in snaps]
    with FaultProxy(s3_replica.endpoint) as p:
        rep = s3_replica.via(p.endpoint)
        out = str(tmp_path / "out.db")
        r = restore(daemon, out, rep, "--at",
                    format_time(t[1] + (t[2] - t[1]) / 2)).json
        gets = list(p.gets)
    assert r["txid"] == snaps[1]["txid"]
    assert dbtools.table_checksums(out) == states[1]
    ltx = [(path, rng) for path, rng in gets if path.split("?")[0]
           .endswith(".ltx")]
    whole = [path for path, rng in ltx if rng is None]
    ranged = [path for path, rng in ltx if rng is not None]
    assert len(whole) == 1 and whole[0].endswith(snaps[1]["key"].split(
        "/")[-1]), gets
    assert len(ranged) == 3 and all(rng == "bytes=0-99" for _, rng in ltx
                                    if rng), gets


# ---------------------------------------------------------------- faults
FAULT_SEED = 20240601


@pytest.mark.timeout(500)
def test_snapshot_and_restore_through_faults(daemon, s3_replica, big_db,
                                             tmp_path):
    """Through a proxy that fails ~20 % of requests (500/503 with S3 error
    bodies, resets and short bodies mid-response, 2 s stalls) plus scripted
    faults at the start of each operation, two snapshots (multipart at full
    size), a list and two restores succeed and give the right states.
    Cuts hit GET/HEAD/PUT only: a cut CompleteMultipartUpload is
    test_reset_after_complete_multipart."""
    db, _ = big_db
    states = [dbtools.table_checksums(db)]
    with FaultProxy(s3_replica.endpoint, rate=0.2, seed=FAULT_SEED,
                    stall_seconds=2.0,
                    cut_methods={"GET", "HEAD", "PUT"}) as p:
        rep = s3_replica.via(p.endpoint)
        p.script("error503", "reset")
        snap1 = snapshot(daemon, db, rep).json
        dbtools.execute(db, "INSERT INTO kv VALUES('zz-fault-test', ?)",
                        (os.urandom(3000),))
        states.append(dbtools.table_checksums(db))
        p.script("stall", "error500")
        snap2 = snapshot(daemon, db, rep).json
        p.script("truncate")
        listed = daemon.ctl("list", env=rep.env(), **rep.ctl_opts()).json
        assert NAME in listed["databases"], listed
        p.script("reset", "pass", "error503")
        out = str(tmp_path / "latest.db")
        rest = restore(daemon, out, rep).json
        assert rest["txid"] == snap2["txid"]
        assert dbtools.integrity_ok(out)
        assert dbtools.table_checksums(out) == states[1]
        p.script("error500", "truncate")
        out = str(tmp_path / "first.db")
        rest = restore(daemon, out, rep, "--txid", str(snap1["txid"])).json
        assert rest["txid"] == snap1["txid"]
        assert dbtools.integrity_ok(out)
        assert dbtools.table_checksums(out) == states[0]
        faults, counts = dict(p.faults), dict(p.counts)
    print(f"requests {counts}, decisions {faults}")
    for kind in ("error500", "error503", "reset", "truncate", "stall"):
        assert faults.get(kind), f"no {kind} was injected: {faults}"


def _is_complete_multipart(method, target):
    return method == "POST" and "uploadId=" in target


@pytest.mark.timeout(300)
def test_reset_after_complete_multipart(daemon, s3_replica, big_db, sizes,
                                        tmp_path):
    """The server completes a multipart upload but the answer is lost (the
    connection is reset mid-response): the retried Complete may answer
    NoSuchUpload, yet the snapshot succeeds and restores to the source."""
    if sizes.quick:
        pytest.skip("needs a snapshot above the multipart threshold")
    db, sums = big_db
    with FaultProxy(s3_replica.endpoint) as p:
        rep = s3_replica.via(p.endpoint)
        p.script(("reset", _is_complete_multipart))
        r = daemon.ctl("snapshot", db, env=rep.env(), check=False,
                       **rep.ctl_opts())
        hit = p.faults.get("reset", 0)
    print(f"snapshot after a lost Complete answer: rc={r.rc} {r.json}")
    assert hit == 1, "the snapshot was not a multipart upload"
    assert r.rc == 0, r
    out = str(tmp_path / "out.db")
    restore(daemon, out, s3_replica)
    assert dbtools.table_checksums(out) == sums


@pytest.mark.parametrize("how", ["down", "dead_port"])
def test_unreachable_endpoint_fails_fast(daemon, tmp_path, how):
    """An endpoint that resets every connection, or where nothing listens:
    snapshot and list fail with `unreachable` within 15 s, and the daemon
    keeps serving."""
    db = str(tmp_path / f"{NAME}.db")
    dbtools.create_small_db(db)
    env = {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
           "AWS_SECRET_ACCESS_KEY": "secret", "AWS_REGION": "us-east-1"}
    proxy = None
    if how == "down":
        proxy = FaultProxy(dead_endpoint()).start()
        proxy.set_mode("down")
        endpoint = proxy.endpoint
    else:
        endpoint = dead_endpoint()
    try:
        for args in (("snapshot", db), ("list",)):
            r = daemon.ctl_error(*args, code="unreachable", env=env,
                                 bucket="s3://walrust-test/x",
                                 endpoint=endpoint, timeout=60)
            assert r.elapsed < 15, f"{args[0]} took {r.elapsed:.1f}s"
        if proxy:
            assert proxy.connections >= 1
    finally:
        if proxy:
            proxy.stop()
    daemon.hello()


@pytest.mark.timeout(200)
def test_blackholed_endpoint_does_not_hang(daemon, tmp_path):
    """An endpoint that accepts connections and never answers: snapshot
    fails (unreachable, or storage) within 90 s instead of hanging."""
    db = str(tmp_path / f"{NAME}.db")
    dbtools.create_small_db(db)
    env = {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
           "AWS_SECRET_ACCESS_KEY": "secret"}
    with FaultProxy(dead_endpoint()) as p:
        p.set_mode("hang")
        r = daemon.ctl("snapshot", db, env=env, bucket="s3://walrust-test/x",
                       endpoint=p.endpoint, check=False, timeout=150)
    print(f"blackholed endpoint: {r.error} after {r.elapsed:.1f}s")
    assert r.rc == 1 and r.error["code"] in ("unreachable", "storage"), r
    assert r.elapsed < 90, r.elapsed
    daemon.hello()


# ------------------------------------------------------------ corruption
def _flip_middle(data):
    i = len(data) // 2
    return data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]


def _truncate(data):
    return data[:len(data) // 2]


@pytest.mark.parametrize("damage", [_flip_middle, _truncate],
                         ids=["flipped-byte", "truncated"])
def test_corrupt_object_fails_restore_and_keeps_output(daemon, replica,
                                                       tmp_path, damage):
    """A stored .ltx object with one byte flipped in the middle, or cut in
    half: restore fails with `checksum`, an existing output keeps its
    bytes, a missing output stays missing, nothing is left beside them."""
    db = str(tmp_path / "src" / f"{NAME}.db")
    os.makedirs(os.path.dirname(db))
    dbtools.create_small_db(db, rows=2000, blob=500)
    snapshot(daemon, db, replica)
    keys = replica.ltx_keys(NAME)
    assert keys
    for k in keys:  # damage every file of the chain (here: the snapshot)
        replica.write(k.key, damage(replica.read(k.key)))

    outdir = tmp_path / "out"
    outdir.mkdir()
    existing = outdir / "existing.db"
    precious = b"precious bytes, not a database\n" * 100
    existing.write_bytes(precious)
    before = dir_listing(outdir)
    restore_error(daemon, str(existing), replica, "--force", code="checksum")
    assert existing.read_bytes() == precious
    assert dir_listing(outdir) == before

    missing = outdir / "missing.db"
    restore_error(daemon, str(missing), replica, code="checksum")
    assert not missing.exists()
    assert dir_listing(outdir) == before


# ---------------------------------------------------------------- socket
ERROR_LINES = [
    # (bytes sent, expected code, id expected in the reply)
    (b"\x00\x01\xfe\xff garbage \x80\x81\n", "bad_request", None),
    (b"this is not json\n", "bad_request", None),
    (b'{"v":1,"id":1,"cmd":"hello"\n', "bad_request", None),
    (b'["hello"]\n', "bad_request", None),
    (b'{"v":1,"id":31,"cmd":"vacuum","args":{}}\n', "unknown_command", 31),
    (b'{"v":1,"id":32,"cmd":"list","args":{"bucket":5}}\n', "bad_request",
     32),
    (b'{"v":1,"id":33,"cmd":"restore","args":{"name":"app",'
     b'"output":"/tmp/x.db","force":"yes"}}\n', "bad_request", 33),
    (b'{"v":1,"id":34,"cmd":"restore","args":{"name":"app",'
     b'"output":"/tmp/x.db","txid":"45"}}\n', "bad_request", 34),
    (b'{"v":1,"id":35,"cmd":"snapshot","args":{}}\n', "bad_request", 35),
    (b'{"v":1,"id":36,"cmd":"list","args":{"buckett":"s3://b"}}\n',
     "bad_request", 36),
    (b'{"v":1,"id":37,"cmd":"list","args":["s3://b"]}\n', "bad_request", 37),
    (b'{"v":1,"id":38,"cmd":"snapshot","args":{"database":"/x",'
     b'"aws":{"secret_key":"s"}}}\n', "bad_request", 38),
    (b'{"v":2,"id":39,"cmd":"hello"}\n', "unsupported_version", 39),
    (b'{"v":1,"id":"s-40","cmd":7}\n', "bad_request", "s-40"),
]


@pytest.mark.parametrize("line,code,rid", ERROR_LINES,
                         ids=[f"{c}-{i}" for i, (_, c, _)
                              in enumerate(ERROR_LINES)])
def test_bad_lines_get_error_replies(daemon, line, code, rid):
    with daemon.connect(timeout=10) as c:
        c.send_raw(line)
        reply = c.recv(timeout=10)
        assert reply is not None, "connection closed without a reply"
        assert reply["ok"] is False and reply["error"]["code"] == code, reply
        assert reply["id"] == rid, reply
        # the same connection keeps working
        r, _ = c.exchange({"v": 1, "id": "after", "cmd": "hello"}, 10)
        assert r["ok"] and r["id"] == "after"
    daemon.hello()


def test_oversized_line(daemon):
    """A line over 1 MiB gets line_too_long once and is skipped; the next
    line on the same connection is served."""
    with daemon.connect(timeout=30) as c:
        big = b'{"v":1,"id":1,"cmd":"hello","args":{"x":"' + \
            b"x" * (2 * 1024 * 1024) + b'"}}\n'
        c.send_raw(big)
        r = c.recv(timeout=30)
        assert r and not r["ok"] and r["error"]["code"] == "line_too_long", r
        r, _ = c.exchange({"v": 1, "id": 2, "cmd": "hello"}, 10)
        assert r["ok"], r
    # exactly at the limit (1 MiB including the newline) is still a line
    with daemon.connect(timeout=30) as c:
        head = b'{"v":1,"id":3,"cmd":"hello","pad":"'
        tail = b'"}\n'
        c.send_raw(head + b"p" * (1024 * 1024 - len(head) - len(tail)) + tail)
        r = c.recv(timeout=30)
        assert r and r["id"] == 3 and r["error"]["code"] == "bad_request", r
    daemon.hello()


def test_pipelined_and_concurrent_clients(daemon):
    with daemon.connect() as c:
        c.send_raw(b'{"v":1,"id":"a","cmd":"hello"}\n'
                   b'{"v":1,"id":"b","cmd":"status"}\n'
                   b'{"v":1,"id":"c","cmd":"hello","args":{}}\n')
        got = {}
        for _ in range(3):
            m = c.recv(10)
            assert m and m.get("ok"), m
            got[m["id"]] = m["result"]
        assert set(got) == {"a", "b", "c"}
    conns = [daemon.connect() for _ in range(40)]
    try:
        for i, c in enumerate(conns):
            c.send({"v": 1, "id": i, "cmd": "hello"})
        for i, c in enumerate(conns):
            m = c.recv(10)
            assert m and m["ok"] and m["id"] == i, m
    finally:
        for c in conns:
            c.close()
    # a client that leaves mid-line does not disturb the daemon
    with daemon.connect() as c:
        c.send_raw(b'{"v":1,"id":1,"cmd":"hel')
    daemon.hello()


OTHER_UID_CLIENT = r"""
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print(json.dumps({"connect": e.__class__.__name__, "errno": e.errno}))
    sys.exit(0)
try:
    s.sendall(b'{"v":1,"id":1,"cmd":"hello"}\n')
    data = b""
    while b"\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    print(json.dumps({"connect": "ok", "reply": data.decode("utf-8",
                                                              "replace")}))
except OSError as e:
    print(json.dumps({"connect": "ok", "recv": e.__class__.__name__}))
"""


def _as_nobody(sock_path):
    py = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) \
        else "python3"
    if os.geteuid() != 0:
        pytest.skip("needs root to run a client as another user")
    cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
           py, "-c", OTHER_UID_CLIENT, sock_path]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30,
                       cwd="/")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_default_socket_path_is_private(daemon_factory):
    """Without -s both programs use $XDG_RUNTIME_DIR/walrust/walrustd.sock;
    walrustd creates that directory 0700 and the socket is not world
    writable."""
    d = daemon_factory(default_socket=True)
    assert os.path.exists(d.socket)
    mode = os.stat(os.path.dirname(d.socket)).st_mode & 0o777
    assert mode == 0o700, oct(mode)
    assert os.stat(d.socket).st_mode & 0o002 == 0
    assert d.ctl("hello").rc == 0


def test_other_user_cannot_connect(daemon_factory):
    """Another uid cannot even connect: the daemon's socket directory is
    private (every directory above it is opened for the test)."""
    d = daemon_factory(default_socket=True)
    for p in (d.dir, d.run_dir):
        os.chmod(p, 0o711)
    res = _as_nobody(d.socket)
    assert res["connect"] == "PermissionError", res
    d.hello()


def test_other_user_refused_by_peer_credentials(daemon):
    """With the directories and the socket opened to everyone, a client of
    another uid still gets no service (SO_PEERCRED): the connection is
    closed or answered with an error, and the daemon keeps serving."""
    dirs = [daemon.dir, daemon.run_dir]
    for p in dirs:
        os.chmod(p, 0o711)
    os.chmod(daemon.socket, 0o777)
    try:
        res = _as_nobody(daemon.socket)
    finally:
        os.chmod(daemon.socket, 0o600)
        for p in dirs:
            os.chmod(p, 0o700)
    assert res["connect"] == "ok", res  # the test opened the way ...
    reply = res.get("reply") or ""
    if reply.strip():  # ... an error reply is acceptable, service is not
        msg = json.loads(reply)
        assert msg.get("ok") is False, msg
    daemon.hello()
    assert daemon.alive()


# ------------------------------------------------------------ path safety
@pytest.fixture
def file_replica(tmp_path):
    d = tmp_path / "replica"
    d.mkdir()
    return FileReplica(str(d))


@pytest.fixture
def snapped(daemon, file_replica, tmp_path):
    """A small database with one snapshot in a file:// replica."""
    db = str(tmp_path / "src" / f"{NAME}.db")
    os.makedirs(os.path.dirname(db))
    dbtools.create_small_db(db, rows=300)
    snapshot(daemon, db, file_replica)
    return db, dbtools.table_checksums(db)


@pytest.mark.parametrize("name", ["../app", "app/../../etc", "x/../../../y",
                                  "../../etc/passwd"])
def test_restore_rejects_path_traversal(daemon, snapped, file_replica,
                                        tmp_path, name):
    out = tmp_path / "out.db"
    restore_error(daemon, str(out), file_replica, name=name,
                  code="invalid_argument")
    assert not out.exists()


def test_snapshot_of_missing_database(daemon, file_replica, tmp_path):
    missing = str(tmp_path / "nope" / "missing.db")
    daemon.ctl_error("snapshot", missing, code="not_found",
                     **file_replica.ctl_opts())
    assert not os.path.exists(missing)
    assert file_replica.keys() == []


def test_restore_unknown_name(daemon, replica, tmp_path):
    out = tmp_path / "out.db"
    restore_error(daemon, str(out), replica, name="nothing-here",
                  code="no_snapshot")
    assert not out.exists()


def test_restore_over_empty_file(daemon, snapped, file_replica, tmp_path):
    _, sums = snapped
    out = tmp_path / "empty.db"
    out.write_bytes(b"")
    restore(daemon, str(out), file_replica)
    assert dbtools.integrity_ok(str(out))
    assert dbtools.table_checksums(str(out)) == sums


def test_restore_refuses_output_with_wal(daemon, snapped, file_replica,
                                         tmp_path):
    """An output with a non-empty -wal (an application crashed on it) is
    refused with in_use and left alone; --force replaces it and removes
    the stale -wal so SQLite cannot replay it over the restored pages."""
    _, sums = snapped
    out = str(tmp_path / "busy.db")
    dbtools.create_small_db(out, rows=10, seed=99)
    dbtools.crash_with_wal(out)
    with open(out, "rb") as f:
        db_bytes = f.read()
    with open(out + "-wal", "rb") as f:
        wal_bytes = f.read()
    restore_error(daemon, out, file_replica, code="in_use")
    with open(out, "rb") as f:
        assert f.read() == db_bytes
    with open(out + "-wal", "rb") as f:
        assert f.read() == wal_bytes
    restore(daemon, out, file_replica, "--force")
    assert not os.path.exists(out + "-wal") or \
        os.path.getsize(out + "-wal") == 0
    assert dbtools.integrity_ok(out)
    assert dbtools.table_checksums(out) == sums


def test_restore_refuses_live_database_even_with_force(daemon, snapped,
                                                       file_replica, tmp_path):
    """proto/examples/restore.jsonl: an output that a live application has
    open (its -wal in use) is refused with in_use, --force or not."""
    out = str(tmp_path / "live.db")
    dbtools.create_small_db(out, rows=10, seed=98)
    holder = subprocess.Popen(
        ["python3", "-c",
         "import sqlite3, sys, time\n"
         "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
         "c.execute('PRAGMA wal_autocheckpoint=0')\n"
         "c.execute(\"INSERT INTO items(label) VALUES ('live')\")\n"
         "c.execute('BEGIN'); c.execute('SELECT count(*) FROM items')"
         ".fetchone()\n"
         "print('ready', flush=True); time.sleep(60)\n", out],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with open(out, "rb") as f:
            before = f.read()
        restore_error(daemon, out, file_replica, "--force", code="in_use")
        with open(out, "rb") as f:
            assert f.read() == before
    finally:
        holder.kill()
        holder.wait()


def test_wrong_credentials_give_auth(daemon, seaweed, tmp_path):
    """SeaweedFS enforces SigV4: a wrong secret or an unknown key fails
    with `auth`, and the message names AWS_ACCESS_KEY_ID."""
    db = str(tmp_path / f"{NAME}.db")
    dbtools.create_small_db(db)
    rep = seaweed.replica()
    for key, secret in ((seaweed.access_key, "not-the-secret"),
                        ("AKIDUNKNOWN", seaweed.secret_key)):
        env = dict(rep.env(), AWS_ACCESS_KEY_ID=key,
                   AWS_SECRET_ACCESS_KEY=secret)
        for args in (("snapshot", db), ("list",),
                     ("restore", NAME, str(tmp_path / "o.db"))):
            r = daemon.ctl_error(*args, code="auth", env=env,
                                 **rep.ctl_opts())
            assert "AWS_ACCESS_KEY_ID" in r.error["message"], r.error
            assert secret not in r.out + r.err  # secrets are never echoed
    assert secret not in daemon.log_text()
    assert not os.path.exists(tmp_path / "o.db")


def test_no_credentials_at_all(daemon, seaweed, tmp_path):
    db = str(tmp_path / f"{NAME}.db")
    dbtools.create_small_db(db)
    rep = seaweed.replica()
    r = daemon.ctl("snapshot", db, check=False, **rep.ctl_opts())
    assert r.rc == 1 and r.error["code"] == "auth", r
    assert "AWS_ACCESS_KEY_ID" in r.error["message"]


# ----------------------------------------------------- file:// default
def test_default_file_replica(daemon, tmp_path):
    """With no bucket anywhere, snapshot/list/restore use the daemon's
    default replica, file://$XDG_DATA_HOME/walrust/replica, in the
    directory layout <dir>/<name>/ltx/<level>/<min>-<max>.ltx."""
    db = str(tmp_path / f"{NAME}.db")
    dbtools.create_small_db(db, rows=500)
    sums = dbtools.table_checksums(db)
    snap = daemon.ctl("snapshot", db).json
    rep = FileReplica(daemon.default_replica_dir)
    keys = rep.ltx_keys(NAME)
    assert keys and snap["key"] in [k.key for k in keys], (snap, keys)
    listed = daemon.ctl("list").json
    names = [x if isinstance(x, str) else x["name"]
             for x in listed["databases"]]
    assert names == [NAME]
    out = str(tmp_path / "out.db")
    daemon.ctl("restore", NAME, out)
    assert dbtools.table_checksums(out) == sums


def test_replica_option_file(daemon_factory, tmp_path):
    """--replica file:///DIR moves the default replica there."""
    rdir = tmp_path / "elsewhere"
    d = daemon_factory(replica="file://" + str(rdir))
    db = str(tmp_path / f"{NAME}.db")
    dbtools.create_small_db(db)
    d.ctl("snapshot", db)
    assert FileReplica(str(rdir)).ltx_keys(NAME)
    assert not os.path.exists(d.default_replica_dir) or \
        not os.listdir(d.default_replica_dir)
    out = str(tmp_path / "out.db")
    d.ctl("restore", NAME, out)
    assert dbtools.table_checksums(out) == dbtools.table_checksums(db)


def test_replica_option_s3_uses_daemon_environment(daemon_factory, seaweed,
                                                   tmp_path):
    """--replica s3://... with AWS_* in the daemon's environment: clients
    that name no bucket and carry no credentials use it."""
    rep = seaweed.replica()
    d = daemon_factory(replica=rep.url, env=rep.env())
    db = str(tmp_path / f"{NAME}.db")
    dbtools.create_small_db(db)
    d.ctl("snapshot", db)
    assert rep.ltx_keys(NAME)
    out = str(tmp_path / "out.db")
    d.ctl("restore", NAME, out)
    assert dbtools.table_checksums(out) == dbtools.table_checksums(db)


def test_walrustctl_exit_codes(daemon, tmp_path):
    r = daemon.ctl("no-such-command", check=False)
    assert r.rc == 2, r
    r = daemon.ctl("hello", check=False,
                   socket_path=str(tmp_path / "no.sock"))
    assert r.rc == 3, r
    r = daemon.ctl("hello")
    assert r.rc == 0 and isinstance(r.json, dict)
    r = daemon.ctl("snapshot", str(tmp_path / "missing.db"), check=False)
    assert r.rc == 1 and r.error["code"] == "not_found"


def test_protocol_error_exit_code(daemon, tmp_path):
    """A server that answers garbage: walrustctl exits 4."""
    path = str(tmp_path / "fake.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    import threading

    def serve():
        c, _ = srv.accept()
        c.recv(65536)
        c.sendall(b"this is not the protocol\n")
        c.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    r = daemon.ctl("hello", check=False, socket_path=path, timeout=30)
    t.join(5)
    srv.close()
    assert r.rc == 4, r


def test_shutdown_request(daemon):
    r = daemon.ctl("shutdown")
    assert r.rc == 0
    assert daemon.wait_exit(20) == 0
    assert not os.path.exists(daemon.socket)


def test_sigterm_exits_cleanly(daemon):
    assert daemon.terminate() == 0
    assert not os.path.exists(daemon.socket)


def test_error_codes_are_documented():
    """Every code these tests expect is one of proto/wrp.h."""
    from walrust_testlib.daemon import ERROR_CODES

    with open(__file__) as f:
        used = set(re.findall(r'code="(\w+)"', f.read()))
    used |= {c for _, c, _ in ERROR_LINES}
    assert used and used <= ERROR_CODES, used - ERROR_CODES


def test_restore_integrity_check_modes(daemon, file_replica, tmp_path):
    """--integrity-check full (the default) refuses a restored database
    whose index does not match its table and leaves the output as it was;
    quick (quick_check) and none accept it; every mode still verifies each
    page against the LTX checksums (test_corrupt_object_...)."""
    db = str(tmp_path / "src" / f"{NAME}.db")
    os.makedirs(os.path.dirname(db))
    dbtools.create_db_with_a_lying_index(db)
    snapshot(daemon, db, file_replica)
    out = tmp_path / "out.db"
    out.write_bytes(b"keep me")
    for flags in ((), ("--integrity-check", "full")):
        r = restore_error(daemon, str(out), file_replica, *flags,
                          code="checksum")
        assert "integrity_check failed" in r.error["message"], r
        assert out.read_bytes() == b"keep me"
        assert not os.path.exists(str(out) + ".tmp")
    for mode in ("quick", "none"):
        res = restore(daemon, str(out), file_replica,
                      "--integrity-check", mode).json
        assert res["integrity_check"] == mode
        assert dbtools.table_checksums(str(out)) == \
            dbtools.table_checksums(db)
        os.unlink(out)
    # a healthy database: the default is full and says so
    good = str(tmp_path / "src2" / "good.db")
    os.makedirs(os.path.dirname(good))
    dbtools.create_small_db(good)
    snapshot(daemon, good, file_replica)
    res = restore(daemon, str(tmp_path / "good-out.db"), file_replica,
                  name="good").json
    assert res["integrity_check"] == "full"
    # a bad mode: a usage error in walrustctl, invalid_argument from the
    # daemon
    r = daemon.ctl("restore", NAME, str(out), "--integrity-check", "some",
                   check=False, env=file_replica.env(),
                   **file_replica.ctl_opts())
    assert r.rc == 2 and "full, quick or none" in r.err, r
    err = daemon.call("restore", name=NAME, output=str(out),
                      bucket=file_replica.url, integrity_check="some")
    assert not err["ok"] and err["error"]["code"] == "invalid_argument", err
    assert not out.exists()
