"""Continuous replication: walrustctl watch / unwatch / sync / status,
walrustd -c litestream.yml and --exec, against file:// replicas and S3
servers (SeaweedFS, and moto where cheap).

What the tests check, and the failure modes of
/work/shared/notes/replication.md they guard against:

* every state a restore gives is a state the application committed, down to
  the bytes: the writers are deterministic (dbtools.writer_ops, or the
  per-statement model below), the database records how many commits it
  holds, and the rest of its contents must equal the model replayed that
  far; "restore latest == source" compares every table's checksum;
* the L0 chain in the bucket is contiguous from TXID 1 (one file per sync,
  min = max), which is what a restore needs; every TXID of a chain is
  restored and checked where the chain is short (a lost frame shows as a
  state that is not one the writer committed, or an integrity failure);
* 1 (byte order), 2 (salts), 3 (checkpoint race), 13 (connection per
  statement): writers with their own checkpoints of every mode;
* 6 (snapshots torn by a concurrent checkpoint): test_core.py's
  test_snapshot_list_restore_under_concurrent_writes (the writer checkpoints
  every 50 commits during the snapshot; the restore must equal one committed
  state; snapshots are read under a read transaction, never VACUUM INTO);
* 4/5 (gaps, corrupt or swapped files), 9 (failed restore keeps output),
  7/8 (failed uploads, acknowledging early), 10 (two watchers on one name),
  11 (growth pages). 12 (retention vs. an in-flight restore) is covered by
  test_retention_leases.py, 14 (memory growing with the database) by
  test_memory.py (a 256 MiB database through capture, compaction, L9
  snapshot, snapshot and restore jobs) and the unit tests.

Every daemon gets its own WALRUST_STATE_DIR (position files) in tmp_path.
Durations shrink with --quick / WALRUST_TEST_QUICK=1.
"""

import datetime as dt
import hashlib
import os
import random
import shutil
import signal
import sqlite3
import struct
import sys
import textwrap
import time

import pytest

from walrust_testlib import dbtools, litestream
from walrust_testlib.daemon import format_time, parse_time
from walrust_testlib.faultproxy import FaultProxy
from walrust_testlib.servers import FileReplica, S3Replica

NAME = "app"


# ------------------------------------------------------------- fixtures
def _s3_selected(config, kind):
    opt = config.getoption("--s3")
    return not opt or kind in [s.strip() for s in opt.split(",")]


@pytest.fixture(params=["file", "seaweedfs"])
def rep_fs(request, tmp_path):
    """A fresh replica: a file:// directory or a SeaweedFS prefix (the
    expensive tests run on these two only)."""
    if request.param == "file":
        d = tmp_path / "replica"
        d.mkdir()
        return FileReplica(str(d))
    if not _s3_selected(request.config, "seaweedfs"):
        pytest.skip("--s3 excludes seaweedfs")
    srv = request.getfixturevalue("seaweed")
    assert srv.alive()
    return srv.replica()


@pytest.fixture
def file_rep(tmp_path):
    d = tmp_path / "replica"
    d.mkdir()
    return FileReplica(str(d))


@pytest.fixture
def wd(daemon_factory, state_env):
    """walrustd with a per-test state directory."""
    return daemon_factory(env=state_env)


def quick(sizes, full, short):
    return short if sizes.quick else full


# -------------------------------------------------------------- helpers
def watch(d, db, rep, **kw):
    return d.ctl("watch", db, env=rep.env(), **rep.ctl_opts(), **kw).json


def sync(d, db, timeout=30, budget=90):
    """`sync DB --timeout T`, retried while the worker restarts (the
    supervisor answers `internal` then)."""
    deadline = time.monotonic() + budget
    while True:
        r = d.ctl("sync", db, "--timeout", str(timeout), check=False,
                  timeout=timeout + 60)
        if r.rc == 0:
            return r.json
        if r.error and r.error["code"] in ("internal", "not_found") and \
                time.monotonic() < deadline:
            time.sleep(0.5)
            continue
        raise AssertionError(f"sync failed: {r}\n--- walrustd log:\n"
                             f"{d.log_tail(40)}")


def restore(d, rep, out, *flags, name=NAME, **kw):
    return d.ctl("restore", name, out, *flags, env=rep.env(),
                 **rep.ctl_opts(), **kw).json


def restore_error(d, rep, out, *flags, code, name=NAME):
    return d.ctl_error("restore", name, out, *flags, code=code,
                       env=rep.env(), **rep.ctl_opts())


def status(d, budget=30):
    """`status --json`, retried while the worker restarts (the daemon
    answers `internal` then)."""
    deadline = time.monotonic() + budget
    while True:
        r = d.ctl("status", check=False)
        if r.rc == 0:
            return r.json
        if not (r.error and r.error["code"] == "internal") or \
                time.monotonic() > deadline:
            raise AssertionError(f"status failed: {r}\n{d.log_tail(30)}")
        time.sleep(0.2)


def db_status(d, db):
    for x in status(d)["databases"]:
        if x["database"] == db:
            return x
    return None


def wait_replicating(d, dbs, timeout=60, min_txid=1):
    deadline = time.monotonic() + timeout
    while True:
        st = {x["database"]: x for x in status(d)["databases"]}
        bad = [db for db in dbs if db not in st
               or st[db]["state"] != "replicating"
               or st[db]["txid"] < min_txid]
        if not bad:
            return st
        if time.monotonic() > deadline:
            raise AssertionError(
                f"not replicating after {timeout}s: "
                f"{[st.get(b) for b in bad][:3]}\n{d.log_tail(40)}")
        time.sleep(0.2)


def diff_sums(got, want):
    return {t: (got.get(t), want.get(t)) for t in set(got) | set(want)
            if got.get(t) != want.get(t)}


def assert_equal_db(out, src_sums, what="restore"):
    ic = dbtools.integrity_check(out)
    assert ic == ["ok"], f"{what}: integrity_check {ic[:5]}"
    got = dbtools.table_checksums(out)
    assert got == src_sums, f"{what} differs from the source: " \
                            f"{diff_sums(got, src_sums)}"


def l0_chain(rep, name=NAME):
    """The L0 keys of `name`, asserting one contiguous chain from TXID 1:
    no gap, no overlap, no two files for one TXID."""
    keys = [k for k in rep.ltx_keys(name) if k.level == 0]
    assert keys, f"no L0 file for {name} in {rep}"
    assert keys[0].min_txid == 1, f"chain starts at {keys[0].key}"
    for a, b in zip(keys, keys[1:]):
        assert b.min_txid == a.max_txid + 1 and b.max_txid >= b.min_txid, \
            f"chain broken between {a.key} and {b.key}"
    return keys


def expected_t_many(seed, ns):
    """{n: checksum of table t after commit n} for every n in ns, in one
    replay of dbtools.writer_ops (expected_t_checksum, for many n)."""
    out, rows, i = {}, {}, 0
    for n in sorted(set(ns)):
        while i < n:
            i += 1
            for sql, p in dbtools.writer_ops(seed, i):
                if sql.startswith("INSERT"):
                    rows[p[0]] = p[1]
                elif sql.startswith("UPDATE t"):
                    if p[1] in rows:
                        rows[p[1]] = p[0]
                elif sql.startswith("DELETE"):
                    rows.pop(p[0], None)
        out[n] = dbtools.hash_rows((k, k, rows[k]) for k in sorted(rows))
    return out


def writer_db(path, rows=300, seed=1):
    """A WAL database with a base table `items` and the writer's tables;
    returns the checksum of `items` (which the writer never touches)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    dbtools.create_small_db(path, rows=rows, seed=seed, blob=300)
    dbtools.prepare_writer_tables(path)
    return dbtools.table_checksums(path, ["items"])["items"]


def check_writer_states(outs, seed, items_sum):
    """Each restored file must be a state the writer committed: integrity
    ok, `items` untouched, `t` equal to the model at the restored counter.
    Returns the counters."""
    ns = {}
    for out in outs:
        ic = dbtools.integrity_check(out)
        assert ic == ["ok"], f"{out}: integrity_check {ic[:5]}"
        ns[out] = dbtools.counter_value(out)
    want = expected_t_many(seed, ns.values())
    for out, n in ns.items():
        got = dbtools.table_checksums(out)
        assert got["items"] == items_sum, f"{out}: items changed"
        assert got["t"] == want[n], \
            f"{out}: table t is not the writer's state after commit {n} " \
            f"(a lost or misplaced frame)"
    return ns


def restore_every_txid(d, rep, tmp_path, name=NAME, keys=None, limit=None,
                       rng=None):
    """Restore at each TXID of the chain (or `limit` of them, always the
    first and last); returns [(txid, output path)]."""
    keys = keys or l0_chain(rep, name)
    txids = [k.max_txid for k in keys]
    if limit and len(txids) > limit:
        rng = rng or random.Random(0)
        mid = rng.sample(txids[1:-1], limit - 2)
        txids = sorted({txids[0], txids[-1], *mid})
    outdir = tmp_path / f"every-{name}-{time.monotonic_ns()}"
    outdir.mkdir()
    res = []
    for t in txids:
        out = str(outdir / f"{t}.db")
        r = restore(d, rep, out, "--txid", str(t), name=name)
        assert r["txid"] == t, r
        res.append((t, out))
    return res


def check_chain_states(d, rep, tmp_path, seed, items_sum, name=NAME,
                       limit=None):
    """Every (or a sample of) TXID restores to a committed writer state,
    and the counters never go back along the chain."""
    got = restore_every_txid(d, rep, tmp_path, name=name, limit=limit)
    ns = check_writer_states([o for _, o in got], seed, items_sum)
    counters = [ns[o] for _, o in got]
    assert counters == sorted(counters), \
        f"counter goes back along the chain: {list(zip(got, counters))}"
    return counters


def run_writer(db, seed, seconds, interval=0.005, **kw):
    """dbtools.Writer for `seconds`; returns its commit log."""
    with dbtools.Writer(db, seed=seed, interval=interval, **kw) as w:
        w.wait_for(5)
        time.sleep(seconds)
        assert w.alive()
    return w


def yaml_replica(rep, name, style="url"):
    """The `replica:` lines of a typical litestream.yml for a walrust
    replica view (the database directory is <prefix>/<name>)."""
    if rep.kind == "file":
        return ["type: file",
                f"path: {os.path.join(rep.root, name)}"]
    srv = rep.server
    return [f"url: s3://{srv.bucket}/{rep.prefix}/{name}",
            f"endpoint: {rep.endpoint}",
            f"region: {srv.region}"]


def write_config(path, rep, dbs, extra_db=(), top=()):
    """A litestream.yml, structured as Litestream's docs show it: global
    credentials, then `dbs: - path: ... replica: url: ...`."""
    lines = list(top)
    if rep.kind == "s3":
        lines += [f"access-key-id: {rep.server.access_key}",
                  f"secret-access-key: {rep.server.secret_key}", ""]
    lines.append("dbs:")
    for db in dbs:
        name = os.path.splitext(os.path.basename(db))[0]
        lines.append(f"  - path: {db}")
        lines += [f"    {x}" for x in extra_db]
        lines.append("    replica:")
        lines += [f"      {x}" for x in yaml_replica(rep, name)]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def config_daemon(daemon_factory, cfg, state_env, workdir=None, args=(),
                  env=None):
    e = dict(state_env)
    e.update(env or {})
    return daemon_factory(extra_args=["-c", cfg, *args], env=e,
                          workdir=workdir)


def _pgrp(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[2])
    except (OSError, ValueError, IndexError):
        return None


def worker_pid(d, rng, timeout=30):
    """The pid of one of walrustd's workers, from `status --json`
    workers[], once every worker is up; checked to be in walrustd's process
    group before anyone signals it (status reports pid 0 for a worker
    being restarted)."""
    deadline = time.monotonic() + timeout
    while True:
        ws = status(d)["workers"]
        pids = [w["pid"] for w in ws]
        if pids and all(isinstance(p, int) and p > 0 and _pgrp(p) == d.pgid
                        for p in pids):
            return rng.choice(pids)
        if time.monotonic() > deadline:
            raise AssertionError(f"no live worker in status: {ws}")
        time.sleep(0.1)


LTX_HEADER = struct.Struct(">4sIIIQQqQQQIIQ")


def ltx_info(data):
    """(page size, commit, min TXID, max TXID, [page numbers]) of an LTX
    file, from its header and its page index (notes/ltx-format.md)."""
    (magic, _flags, psize, commit, mn, mx, *_rest) = \
        LTX_HEADER.unpack_from(data, 0)
    assert magic == b"LTX1", magic
    (n,) = struct.unpack_from(">Q", data, len(data) - 24)
    region = data[len(data) - 24 - n:len(data) - 24]
    pages, vals, cur, shift = [], [], 0, 0
    for b in region:
        cur |= (b & 0x7F) << shift
        shift += 7
        if b & 0x80:
            continue
        vals.append(cur)
        cur = shift = 0
        if len(vals) == 1 and vals[0] == 0:
            break
        if len(vals) == 3:
            pages.append(vals[0])
            vals = []
    return psize, commit, mn, mx, pages


def check_l0_pages(rep, name=NAME, keys=None):
    """The page-set rules of an L0 chain (Litestream's restore enforces
    them): pages ascending and <= commit; the first file holds every page
    1..commit; a file that grows the database holds every page in
    (previous commit, commit] (failure mode 11); the lock page never."""
    keys = keys or l0_chain(rep, name)
    prev = 0
    for k in keys:
        psize, commit, mn, mx, pages = ltx_info(rep.read(k.key))
        lock = 0x40000000 // psize + 1
        assert (mn, mx) == (k.min_txid, k.max_txid), k
        assert pages == sorted(set(pages)), f"{k.key}: pages not ascending"
        assert lock not in pages, f"{k.key}: has the lock page"
        assert not pages or pages[-1] <= commit, \
            f"{k.key}: page {pages[-1]} above commit {commit}"
        if commit > prev:
            missing = sorted(set(range(prev + 1, commit + 1)) - set(pages)
                             - {lock})
            assert not missing, \
                f"{k.key}: grows {prev} -> {commit} pages but lacks " \
                f"{len(missing)} of them (first {missing[:5]})"
        prev = commit
    return prev


def file_sha(rep, key):
    return hashlib.sha256(rep.read(key)).hexdigest()


def now():
    return dt.datetime.now(dt.timezone.utc)


# ============================================================ 1. writer
@pytest.mark.timeout(300)
def test_concurrent_writer_latest_and_point_in_time(wd, rep_fs, tmp_path,
                                                    sizes):
    """A writer process commits inserts/updates/deletes at ~100-200 tx/s
    for 10 s (4 s quick) while the database is watched; after `sync`, the
    latest restore equals the source exactly; three restores --at random
    logged moments each give a state the writer committed at or before
    that moment (and not one older than ~3 sync intervals); every TXID of
    the chain restores to a committed state."""
    rep, seed = rep_fs, 101
    db = str(tmp_path / "src" / f"{NAME}.db")
    items = writer_db(db)
    w0 = watch(wd, db, rep)
    assert w0["name"] == NAME and w0["state"] in ("starting", "replicating")
    secs = quick(sizes, 10, 4)
    t_start = time.monotonic()
    w = run_writer(db, seed, secs, interval=0.005)
    elapsed = time.monotonic() - t_start
    log = w.commits()
    rate = len(log) / elapsed
    print(f"{len(log)} commits in {elapsed:.1f}s ({rate:.0f} tx/s)")
    assert rate > 50, f"writer too slow for the test: {rate:.0f} tx/s"

    r = sync(wd, db, timeout=30)
    src = dbtools.table_checksums(db)
    st = db_status(wd, db)
    # status comes after the sync reply: walrustd's own _walrust_seq
    # commit (at a checkpoint) may have been captured or shipped since
    assert st["captured_txid"] >= st["txid"] >= r["txid"], st
    assert st["last_error"] is None and st["state"] == "replicating", st
    keys = l0_chain(rep)
    # walrustd's own bookkeeping commit (_walrust_seq, at its checkpoints)
    # may be shipped after the sync reply: never fewer files, maybe more.
    assert keys[-1].max_txid >= r["txid"], (keys[-1], r)
    assert check_l0_pages(rep, keys=keys) == \
        dbtools.db_info(db)["page_count"]

    out = str(tmp_path / "latest.db")
    res = restore(wd, rep, out)
    assert res["txid"] >= r["txid"]  # maybe a later _walrust_seq commit
    assert_equal_db(out, src, "latest restore")
    assert dbtools.counter_value(out) == log[-1][0]

    # point in time: random logged moments, at ms resolution as passed
    rng = random.Random(seed)
    times = [t for _, t in log]
    lo, hi = times[0] + 1.5, times[-1] - 0.3
    cand = [t for t in times if lo <= t <= hi]
    assert len(cand) > 10
    committed_at = dict(log)
    for j, t in enumerate(sorted(rng.sample(cand, 3))):
        at = format_time(dt.datetime.fromtimestamp(t, dt.timezone.utc))
        T = parse_time(at).timestamp()
        out = str(tmp_path / f"pitr-{j}.db")
        res = restore(wd, rep, out, "--at", at)
        (n,) = check_writer_states([out], seed, items).values()
        assert n in committed_at, f"--at {at}: counter {n} never committed"
        # the writer logs the time right after COMMIT returns; the file's
        # timestamp is taken when the sync captures, after the commit: a
        # commit in a file stamped <= T was logged at most a moment later
        assert committed_at[n] <= T + 0.25, \
            f"--at {at} gave commit {n} logged at " \
            f"{committed_at[n] - T:+.3f}s after the target"
        older = [i for i, ti in log if ti <= T - 3.0]
        assert not older or n >= max(older), \
            f"--at {at} gave commit {n}, but {max(older)} was committed " \
            f"3 s before the target"
        assert parse_time(res["timestamp"]).timestamp() <= T + 0.001, res
        print(f"--at {at}: commit {n} (logged {committed_at[n] - T:+.3f}s)")

    counters = check_chain_states(wd, rep, tmp_path, seed, items,
                                  limit=25)
    assert counters[-1] == log[-1][0]


# ======================================================= 2. checkpoints
@pytest.mark.timeout(240)
@pytest.mark.parametrize("mode", ["PASSIVE", "FULL", "RESTART", "TRUNCATE"])
def test_application_checkpoints(wd, file_rep, tmp_path, sizes, mode):
    """The application checkpoints itself (PASSIVE, FULL, RESTART or
    TRUNCATE) between bursts of ~2000 WAL frames, sometimes at once after
    the burst (racing the daemon's poll), sometimes after the daemon
    captured it (and checkpointed itself), sometimes after a sync; the WAL
    is restarted under the daemon whenever the checkpoint can. Nothing is
    lost: restore equals the source, every TXID is a committed state."""
    rep, seed = file_rep, 202
    db = str(tmp_path / "src" / f"{NAME}.db")
    items = writer_db(db)
    watch(wd, db, rep)
    sync(wd, db)
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA busy_timeout=1000")
    results = []
    i = dbtools.counter_value(db)
    rounds = quick(sizes, 8, 4)
    try:
        for rnd in range(rounds):
            for _ in range(350):
                i += 1
                con.execute("BEGIN IMMEDIATE")
                for sql, p in dbtools.writer_ops(seed, i):
                    con.execute(sql, p)
                con.execute("COMMIT")
            how = rnd % 3
            if how == 1:
                time.sleep(1.3)  # captured, daemon checkpointed (>= 1000)
            elif how == 2:
                sync(wd, db)
            walsz = os.path.getsize(db + "-wal")
            row = con.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
            results.append((how, tuple(row), walsz,
                            os.path.getsize(db + "-wal")))
    finally:
        con.close()
    print(f"{mode}: (round kind, (busy, log, checkpointed), wal before, "
          f"after): {results}")
    r = sync(wd, db)
    src = dbtools.table_checksums(db)
    assert dbtools.counter_value(db) == i
    out = str(tmp_path / "latest.db")
    restore(wd, rep, out)
    assert_equal_db(out, src)
    st = db_status(wd, db)
    assert st["last_error"] is None and st["txid"] >= r["txid"], st
    ws = status(wd)["workers"]
    assert ws and all(w["restarts"] == 0 for w in ws), ws
    assert check_l0_pages(rep) == dbtools.db_info(db)["page_count"]
    counters = check_chain_states(wd, rep, tmp_path, seed, items, limit=30)
    assert counters[-1] == i


# ===================================== 3. connection per statement (13)
def _stmt_blob(seed, i):
    r = random.Random(seed * 7919 + i)
    return r.randbytes(r.randrange(6000, 14000))


def _stmt_plan(seed, m):
    """The statements 1..m of the per-statement writer: each inserts row i,
    except every 5th, which deletes row i-3 when that row was inserted."""
    inserted, ops = set(), []
    for i in range(1, m + 1):
        if i % 5 == 0 and (i - 3) in inserted:
            ops.append(("DELETE FROM s WHERE id=?", (i - 3,)))
            inserted.discard(i - 3)
        else:
            ops.append(("INSERT INTO s(id, v) VALUES(?,?)",
                        (i, _stmt_blob(seed, i))))
            inserted.add(i)
    return ops


def _stmt_model(seed, ns):
    ops = _stmt_plan(seed, max(ns))
    out, rows = {}, {}
    for m in range(0, max(ns) + 1):
        if m:
            sql, p = ops[m - 1]
            if sql.startswith("INSERT"):
                rows[p[0]] = p[1]
            else:
                rows.pop(p[0], None)
        if m in ns:
            out[m] = dbtools.hash_rows((k, k, rows[k]) for k in sorted(rows))
    return out


@pytest.mark.timeout(240)
def test_connection_per_statement(wd, file_rep, tmp_path, sizes):
    """Failure mode 13: the application opens a new connection for every
    statement (each its own transaction, sets journal_mode=WAL each time,
    autocheckpoints at 1000 pages) and now and then runs a TRUNCATE
    checkpoint from yet another connection. The worker neither crashes nor
    stops: every TXID restores to the state after some statement count
    (kept by triggers in the same transaction), the last equals the
    source."""
    rep, seed = file_rep, 303
    db = str(tmp_path / "src" / f"{NAME}.db")
    os.makedirs(os.path.dirname(db))
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.executescript("""
        CREATE TABLE s(id INTEGER PRIMARY KEY, v BLOB);
        CREATE TABLE counter(k INTEGER PRIMARY KEY, n INTEGER NOT NULL);
        INSERT INTO counter VALUES(0, 0);
        CREATE TRIGGER s_ins AFTER INSERT ON s BEGIN
            UPDATE counter SET n = n + 1 WHERE k = 0; END;
        CREATE TRIGGER s_del AFTER DELETE ON s BEGIN
            UPDATE counter SET n = n + 1 WHERE k = 0; END;
    """)
    con.close()
    watch(wd, db, rep)
    sync(wd, db)
    secs = quick(sizes, 8, 4)
    plan = _stmt_plan(seed, 100000)
    ckpts = []
    deadline = time.monotonic() + secs
    m = 0
    while time.monotonic() < deadline:
        sql, p = plan[m]
        c = sqlite3.connect(db, timeout=10)
        c.execute("PRAGMA journal_mode=WAL")
        with c:
            c.execute(sql, p)
        c.close()
        m += 1
        if m % 60 == 0:
            c = sqlite3.connect(db, timeout=0.2)
            c.execute("PRAGMA busy_timeout=200")
            ckpts.append(c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                         .fetchone())
            c.close()
        time.sleep(0.008)
    print(f"{m} statements in {secs}s, TRUNCATE checkpoints: {ckpts}")
    r = sync(wd, db)
    src = dbtools.table_checksums(db)
    out = str(tmp_path / "latest.db")
    restore(wd, rep, out)
    assert_equal_db(out, src)
    assert dbtools.counter_value(out) == m
    st = status(wd)
    assert st["workers"] and \
        all(w["restarts"] == 0 for w in st["workers"]), st["workers"]
    (dbst,) = st["databases"]
    assert dbst["state"] == "replicating" and dbst["last_error"] is None, \
        dbst
    assert dbst["txid"] >= r["txid"]
    got = restore_every_txid(wd, rep, tmp_path, limit=30)
    ns = {}
    for t, o in got:
        assert dbtools.integrity_ok(o), (t, dbtools.integrity_check(o)[:5])
        ns[o] = dbtools.counter_value(o)
    want = _stmt_model(seed, set(ns.values()))
    for t, o in got:
        assert dbtools.table_checksums(o, ["s"])["s"] == want[ns[o]], \
            f"txid {t}: table s is not the state after statement {ns[o]}"
    assert [ns[o] for _, o in got] == sorted(ns.values())


# ========================================================= 4. crash loop
SYNC_INTERVAL = 1.0  # walrustd's default sync interval (s)
PITR_SLACK = 2.0     # how much later than one sync interval a capture may be


class _HashingReader:
    """rep.read that remembers the sha256 of what it read."""

    def __init__(self, rep):
        self.rep, self.sha = rep, {}

    def read(self, key):
        data = self.rep.read(key)
        self.sha[key] = hashlib.sha256(data).hexdigest()
        return data


def _ctl_status(d):
    """`status --json` once, or None (walrustd restarting)."""
    r = d.ctl("status", check=False, timeout=30)
    return r.json if r.rc == 0 and isinstance(r.json, dict) else None


def _uploaded_since(st, db, since):
    """Whether `db` is replicating, with an upload completed after the
    wall-clock time `since` (a worker restarted after a kill has no
    last_sync until its first upload, which it captured after starting)."""
    for x in (st or {}).get("databases", []):
        if x["database"] == db:
            return x["state"] == "replicating" and bool(x["last_sync"]) \
                and parse_time(x["last_sync"]).timestamp() > since
    return False


def _outages(kills, name, window):
    """Merged [kill, recovery of `name` + window] intervals (wall clock):
    moments at which its newest capture may date from before the kill."""
    out = []
    for k in sorted(kills, key=lambda k: k["wall"]):
        lo, hi = k["wall"], k["recovered"][name] + window
        if out and lo <= out[-1][1]:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return out


def _effective_time(t, outages):
    """The newest moment <= t at which walrustd was known to be capturing
    every sync interval: t itself, or the start of the outage holding t."""
    for lo, hi in outages:
        if lo <= t <= hi:
            return lo
    return t


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_crash_loop(daemon_factory, rep_fs, tmp_path, state_env, sizes):
    """walrustd -c with three databases, a writer on each doing random
    inserts, updates and deletes at ~200 tx/s (>= 150 asserted) for 120 s
    (30 s quick), each checkpointing itself every 100 commits, in turn
    PASSIVE, FULL, RESTART and TRUNCATE (all four asserted to run, and a
    TRUNCATE to empty the WAL at least once). 10 times (4 quick), at
    random moments, half of them each way, the test SIGKILLs the
    supervisor (and restarts walrustd with the same configuration and
    state directory) or the worker (the supervisor restarts it). After a
    final sync: each database restores equal to its source (per-table
    checksums) and passes integrity_check; each L0 chain is contiguous; no
    object was ever overwritten with other bytes; the TXIDs acknowledged
    before each kill and a sample of the chain restore to committed
    states; six restores --at random moments between the writers' first
    and last commit (two per database) each give a state the writer
    committed by then, and not older than what it had committed one sync
    interval + PITR_SLACK before the moment (or before the kill, for a
    moment from a kill to that long after the database's first upload
    after it). The schedule's seed is printed; WALRUST_TEST_SEED replays
    it."""
    rep = rep_fs
    seeds = {f"db{i}": 401 + i for i in range(3)}
    dbs = {n: str(tmp_path / "src" / f"{n}.db") for n in seeds}
    items = {n: writer_db(p, rows=100, seed=seeds[n])
             for n, p in dbs.items()}
    cfg = write_config(str(tmp_path / "litestream.yml"), rep,
                       list(dbs.values()))
    d = config_daemon(daemon_factory, cfg, state_env)
    wait_replicating(d, dbs.values())
    secs = quick(sizes, 120, 30)
    nkills = quick(sizes, 10, 4)
    rate, ckpt_every = 200, 100
    seed = int(os.environ.get("WALRUST_TEST_SEED") or
               random.randrange(1 << 30))
    print(f"kill schedule seed {seed} (WALRUST_TEST_SEED to replay)")
    rng = random.Random(seed)
    kinds = ["supervisor", "worker"] * (nkills // 2)
    rng.shuffle(kinds)
    when = sorted(rng.uniform(0.05 * secs, 0.95 * secs) for _ in kinds)
    seen = {}  # (name, key) -> sha256 when first read
    overwritten, leftovers, acked, kills = [], [], [], []

    def scan():
        for n in dbs:
            for k in rep.ltx_keys(n):
                if k.level == 0 and (n, k.key) not in seen:
                    try:
                        seen[(n, k.key)] = file_sha(rep, k.key)
                    except Exception:  # noqa: BLE001 listed, not readable
                        pass

    def poll_recovery():
        """Note, per database, when it first uploaded after each kill."""
        pending = [n for n in dbs if any(n not in k["recovered"]
                                         for k in kills)]
        if not pending:
            return
        st, t = _ctl_status(d), time.time()
        for n in pending:
            ks = [k for k in kills if n not in k["recovered"]]
            if _uploaded_since(st, dbs[n], ks[-1]["wall"]):
                for k in ks:
                    k["recovered"][n] = t
                    if len(k["recovered"]) == len(dbs):
                        print(f"{time.monotonic() - t0:5.1f}s recovered from "
                              f"the kill at {k['t']:5.1f}s (" + ", ".join(
                                  f"{m} {v - k['wall']:.1f}s"
                                  for m, v in k["recovered"].items()) + ")")

    writers = {n: dbtools.Writer(p, seed=seeds[n], rate=rate,
                                 checkpoint_every=ckpt_every,
                                 checkpoint_modes=dbtools.CHECKPOINT_MODES,
                                 checkpoint_busy_ms=200)
               for n, p in dbs.items()}
    t0, t0_wall = time.monotonic(), time.time()
    t_phase = [t0]

    def phase(what):
        t = time.monotonic()
        print(f"[{t - t0:5.1f}s] {what}: {t - t_phase[0]:.1f}s")
        t_phase[0] = t

    try:
        for w in writers.values():
            w.start()
        last_scan = last_poll = 0
        for kind, at in zip(kinds + [None], when + [secs]):
            while time.monotonic() - t0 < at:
                if time.monotonic() - last_poll > 0.25:
                    poll_recovery()
                    last_poll = time.monotonic()
                if time.monotonic() - last_scan > 1:
                    scan()
                    last_scan = time.monotonic()
                time.sleep(0.05)
            if kind is None:
                break
            st = status(d)
            acked.append({x["name"]: x["txid"] for x in st["databases"]
                          if x["state"] == "replicating"})
            if kind == "worker":
                pid = worker_pid(d, rng)
                kills.append({"kind": kind, "wall": time.time(),
                              "t": time.monotonic() - t0,
                              "recovered": {}})
                print(f"{kills[-1]['t']:5.1f}s kill worker {pid}")
                os.kill(pid, signal.SIGKILL)
            else:
                kills.append({"kind": kind, "wall": time.time(),
                              "t": time.monotonic() - t0,
                              "recovered": {}})
                print(f"{kills[-1]['t']:5.1f}s kill supervisor "
                      f"{d.proc.pid}")
                d.crash()
                if d.group_alive(wait=15):
                    leftovers.append(f"after SIGKILL of supervisor "
                                     f"{d.proc.pid}, its worker was still "
                                     f"running 15 s later")
                    d.kill()
                gone = time.monotonic() - t0
                d = config_daemon(daemon_factory, cfg, state_env,
                                  workdir=d.dir)
                print(f"{time.monotonic() - t0:5.1f}s walrustd restarted "
                      f"(its old group was gone at {gone:.1f}s)")
        for w in writers.values():
            assert w.alive(), "a writer died"
    finally:
        for w in writers.values():
            w.stop()
    wait_replicating(d, dbs.values(), timeout=60)
    for n, p in dbs.items():
        sync(d, p, timeout=60)
    t_synced = time.time()
    phase("writers, kills, final sync")
    for k in kills:
        for n in dbs:
            if n not in k["recovered"]:
                print(f"kill at {k['t']:.1f}s: {n} not seen recovered "
                      f"before the final sync")
                k["recovered"][n] = t_synced
    scan()
    st = status(d)
    print(f"workers: {st['workers']}; acked before kills: {acked}")
    print("recovery after each kill (s): " + ", ".join(
        f"{k['kind']}@{k['t']:.0f}s "
        f"{max(k['recovered'].values()) - k['wall']:.1f}" for k in kills))
    lines = d.log_text().splitlines()
    watching = [ln for ln in lines if ": watching as " in ln]
    print(f"walrustd log: {sum(ln.startswith('$ ') for ln in lines)} "
          f"starts, {len(watching)} database starts of which "
          f"{sum('full-database file comes first' in ln for ln in watching)}"
          f" with a full-database file; "
          f"{sum('full-database file at txid' in ln for ln in lines)} "
          f"full-database files in all")

    # the writers: rate and their own checkpoints
    logs = {}
    for n, w in writers.items():
        c = w.commits()
        logs[n] = c
        r = (len(c) - 1) / (c[-1][1] - c[0][1])
        cps = w.checkpoints()
        errors = [x for x in cps if x[2] == "error"]
        by_mode = {m: [x for x in cps if x[1] == m and x[2] != "error"]
                   for m in dbtools.CHECKPOINT_MODES}
        print(f"{n}: {len(c)} commits in {c[-1][1] - c[0][1]:.1f}s "
              f"({r:.0f} tx/s); checkpoints (done/not busy/WAL emptied): "
              + ", ".join(f"{m} {len(v)}/{sum(x[2] == 0 for x in v)}/"
                          f"{sum(x[6] == 0 for x in v)}"
                          for m, v in by_mode.items())
              + f", errors {len(errors)} {errors[:3]}")
        assert r >= 0.75 * rate, f"{n}: writer too slow: {r:.0f} tx/s"
        assert not errors, f"{n}: checkpoints failed: {errors[:5]}"
        for m, v in by_mode.items():
            assert len(v) >= secs * rate / ckpt_every / 4 * 0.7, \
                f"{n}: only {len(v)} {m} checkpoints"
    truncated = [x for w in writers.values() for x in w.checkpoints()
                 if x[1] == "TRUNCATE" and x[2] == 0 and x[6] == 0]
    assert truncated, "no application TRUNCATE checkpoint ever emptied " \
                      "the WAL under walrustd"

    assert not leftovers, leftovers
    # each L0 chain: contiguous, page sets right; then no object was
    # overwritten (compared with the hashes of those reads)
    shas = _HashingReader(rep)
    for n, p in dbs.items():
        keys = l0_chain(rep, n)
        assert check_l0_pages(shas, n, keys) == \
            dbtools.db_info(p)["page_count"]
        print(f"{n}: {len(keys)} L0 files, counter "
              f"{dbtools.counter_value(p)}")
    for (n, key), sha in sorted(seen.items()):
        try:
            now_sha = shas.sha.get(key) or file_sha(rep, key)
        except Exception as e:  # noqa: BLE001
            overwritten.append(f"{key}: gone ({e})")
            continue
        if now_sha != sha:
            overwritten.append(f"{key}: overwritten with other bytes")
    assert not overwritten, overwritten
    phase(f"L0 chains and pages, {len(seen)} files seen while written")

    # point in time: random moments between the first and last commit
    window = SYNC_INTERVAL + PITR_SLACK
    outages = {n: _outages(kills, n, window) for n in dbs}
    for n, o in outages.items():
        print(f"{n} outages (s from the start, kill to its first upload "
              f"after + {window:.1f} s): " + ", ".join(
                  f"[{a - t0_wall:.1f}, {b - t0_wall:.1f}]" for a, b in o))
    lo = min(c[0][1] for c in logs.values())
    hi = max(c[-1][1] for c in logs.values())
    prng = random.Random(f"{seed}-pitr")
    moments = sorted((prng.uniform(lo, hi), n) for n in dbs for _ in (0, 1))

    for n, p in dbs.items():
        src = dbtools.table_checksums(p)
        out = str(tmp_path / f"{n}-latest.db")
        restore(d, rep, out, name=n)
        assert_equal_db(out, src, f"{n} latest")
        assert dbtools.counter_value(out) == logs[n][-1][0]
        os.remove(out)
        # acknowledged before a kill: still there, and committed states
        acked_outs = []
        for j, a in enumerate(acked):
            if a.get(n):
                o = str(tmp_path / f"{n}-acked-{j}.db")
                restore(d, rep, o, "--txid", str(a[n]), name=n)
                acked_outs.append(o)
        # a sample of the chain's TXIDs: committed states, in order
        chain = restore_every_txid(d, rep, tmp_path, name=n, limit=8,
                                   rng=random.Random(seed))
        pitr = []
        for j, (t, m) in enumerate(moments):
            if m != n:
                continue
            at = format_time(dt.datetime.fromtimestamp(t, dt.timezone.utc))
            o = str(tmp_path / f"{n}-pitr-{j}.db")
            pitr.append((at, o, restore(d, rep, o, "--at", at, name=n)))
        # one replay of the writer's model for all of them
        ns = check_writer_states(acked_outs + [o for _, o in chain] +
                                 [o for _, o, _ in pitr], seeds[n], items[n])
        counters = [ns[o] for _, o in chain]
        assert counters == sorted(counters), \
            f"{n}: counter goes back along the chain: " \
            f"{list(zip([t for t, _ in chain], counters))}"
        assert counters[-1] == logs[n][-1][0], (n, counters)
        committed_at = dict(logs[n])
        got = []
        for at, o, res in pitr:
            T = parse_time(at).timestamp()
            c = ns[o]
            assert c == 0 or c in committed_at, \
                f"{n} --at {at}: counter {c} never committed"
            # the writer logs the time right after COMMIT returns, and a
            # file is stamped when captured, after the commits it holds
            if c:
                assert committed_at[c] <= T + 0.5, \
                    f"{n} --at {at} gave commit {c} logged " \
                    f"{committed_at[c] - T:+.3f}s after the target"
            e = _effective_time(T, outages[n])
            older = [i for i, ti in logs[n] if ti <= e - window]
            assert not older or c >= max(older), \
                f"{n} --at {at} gave commit {c}, but {max(older)} was " \
                f"committed {window:.1f} s before " \
                f"{'the target' if e == T else 'the kill before the target'}"
            assert parse_time(res["timestamp"]).timestamp() <= T + 0.001, \
                res
            got.append(c)
            print(f"{n} --at {at} ({T - t0_wall:.1f}s"
                  f"{'' if e == T else ', in an outage'}): commit {c} "
                  + (f"(logged {committed_at[c] - T:+.3f}s)" if c else
                     "(before the writer)"))
        assert got == sorted(got), f"{n}: --at goes back in time: {got}"
        for o in acked_outs + [o for _, o in chain] + [o for _, o, _ in pitr]:
            os.remove(o)
        phase(f"{n}: latest, {len(acked_outs)} acked, {len(chain)} chain "
              f"and {len(pitr)} --at restores")
    shutil.copy(d.log_path, tmp_path / "walrustd.log")


# ================================================ 5. restore, then watch
@pytest.mark.timeout(300)
@pytest.mark.parametrize("how", ["new_path", "same_path_older_txid",
                                 "restore_if_db_not_exists"])
def test_restore_then_watch_again(daemon_factory, rep_fs, tmp_path,
                                  state_env, how):
    """A replicated database is restored and the restored copy is watched
    under the same name in the same replica: the first new file's TXID is
    the replica's previous maximum + 1 (never 1, never a reused TXID), the
    chain stays contiguous, and the latest restore equals the live copy.
    new_path: restored elsewhere, the original unwatched. same_path_older_
    txid: the original deleted and replaced by an older state (--txid in
    the middle), with the daemon's position file still describing the old
    WAL. restore_if_db_not_exists: walrustd -c restores the missing
    database itself on start."""
    rep, seed = rep_fs, 505
    db = str(tmp_path / "src" / f"{NAME}.db")
    items = writer_db(db)
    if how == "restore_if_db_not_exists":
        cfg = write_config(str(tmp_path / "litestream.yml"), rep, [db],
                           extra_db=["restore-if-db-not-exists: true"])
        d = config_daemon(daemon_factory, cfg, state_env)
        wait_replicating(d, [db])
    else:
        d = daemon_factory(env=state_env)
        watch(d, db, rep)
    run_writer(db, seed, 3)
    sync(d, db)
    keys = l0_chain(rep)
    if how == "new_path":
        d.ctl("unwatch", db)
        M = l0_chain(rep)[-1].max_txid
        live = str(tmp_path / "restored" / f"{NAME}.db")
        os.makedirs(os.path.dirname(live))
        restore(d, rep, live)
        assert_equal_db(live, dbtools.table_checksums(db))
        watch(d, live, rep)
        second_seed = seed  # the writer's model continues
    elif how == "same_path_older_txid":
        d.ctl("unwatch", db)
        M = l0_chain(rep)[-1].max_txid
        assert len(keys) >= 3, keys
        mid = keys[len(keys) // 2].max_txid
        n_last = dbtools.counter_value(db)
        for s in ("", "-wal", "-shm"):
            if os.path.exists(db + s):
                os.unlink(db + s)
        r = restore(d, rep, db, "--txid", str(mid))
        assert r["txid"] == mid
        assert dbtools.counter_value(db) < n_last
        live = db
        watch(d, live, rep)
        second_seed = seed + 1  # other contents than the old chain's
    else:
        d.stop()  # shutdown: final sync
        M = l0_chain(rep)[-1].max_txid
        before = dbtools.table_checksums(db)
        for s in ("", "-wal", "-shm"):
            if os.path.exists(db + s):
                os.unlink(db + s)
        d = config_daemon(daemon_factory, cfg, state_env)
        deadline = time.monotonic() + 30
        while not os.path.exists(db) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert os.path.exists(db), f"not restored:\n{d.log_tail(30)}"
        wait_replicating(d, [db])
        assert_equal_db(db, before, "restore-if-db-not-exists")
        live = db
        second_seed = seed
    run_writer(live, second_seed, 2)
    r = sync(d, live)
    keys = l0_chain(rep)
    new = [k for k in keys if k.min_txid > M]
    assert new, f"nothing after txid {M}: {keys[-3:]}"
    assert new[0].min_txid == M + 1, (M, new[0])
    assert keys[-1].max_txid >= r["txid"]
    assert check_l0_pages(rep, keys=keys) == \
        dbtools.db_info(live)["page_count"]
    out = str(tmp_path / "latest.db")
    restore(d, rep, out)
    assert_equal_db(out, dbtools.table_checksums(live), "latest vs live")
    if second_seed == seed:
        check_chain_states(d, rep, tmp_path, seed, items, limit=15)


# ==================================================== 6. 100 databases
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_hundred_databases(wd, rep_fs, tmp_path, sizes):
    """100 databases watched by one walrustd, written lightly by one thread
    (each database about once a second); all replicate: each restore
    equals its source after sync, and status shows 100 healthy entries."""
    rep = rep_fs
    n = 100
    dbs = [str(tmp_path / "src" / f"d{i:03d}.db") for i in range(n)]
    os.makedirs(os.path.dirname(dbs[0]))
    t0 = time.monotonic()
    for i, p in enumerate(dbs):
        dbtools.create_small_db(p, rows=10, seed=i, blob=100)
    for p in dbs:
        watch(wd, p, rep)
    wait_replicating(wd, dbs, timeout=60)
    t_setup = time.monotonic() - t0
    secs = quick(sizes, 10, 5)
    cons = [sqlite3.connect(p) for p in dbs]
    writes = 0
    end = time.monotonic() + secs
    try:
        while time.monotonic() < end:
            t_round = time.monotonic()
            for i, c in enumerate(cons):
                with c:
                    c.execute("INSERT INTO items(label, data) VALUES(?,?)",
                              (f"w{writes}", os.urandom(200)))
                    c.execute("DELETE FROM items WHERE id = ?",
                              (writes % 7 + 1,))
                writes += 1
                time.sleep(max(0, t_round + (i + 1) / n - time.monotonic()))
    finally:
        for c in cons:
            c.close()
    t1 = time.monotonic()
    for p in dbs:
        sync(wd, p)
    st = status(wd)
    assert len(st["databases"]) == n
    bad = [x for x in st["databases"] if x["state"] != "replicating"
           or x["last_error"] is not None or x["txid"] < 2]
    assert not bad, bad[:3]
    for i, p in enumerate(dbs):
        out = str(tmp_path / "out" / f"d{i:03d}.db")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        restore(wd, rep, out, name=f"d{i:03d}")
        assert_equal_db(out, dbtools.table_checksums(p), f"d{i:03d}")
    print(f"setup {t_setup:.1f}s, {writes} writes in {secs}s, sync+restore "
          f"{time.monotonic() - t1:.1f}s")
    for i in (0, n // 2, n - 1):
        l0_chain(rep, f"d{i:03d}")


# ======================================================== 7. litestream
needs_litestream = pytest.mark.skipif(
    not litestream.binary(), reason="litestream not installed")


@needs_litestream
@pytest.mark.interop
@pytest.mark.timeout(240)
def test_litestream_restores_walrust_chain(wd, replica, tmp_path):
    """`litestream restore` of a database walrust replicated continuously
    (an L0 chain of many files, writer checkpointing) equals the source;
    with -txid in the middle it gives the same state as walrust's
    restore --txid, a committed writer state."""
    rep, seed = replica, 707
    db = str(tmp_path / "src" / f"{NAME}.db")
    items = writer_db(db)
    watch(wd, db, rep)
    run_writer(db, seed, 3, checkpoint_every=60)
    sync(wd, db)
    src = dbtools.table_checksums(db)
    keys = l0_chain(rep)
    assert len(keys) >= 3, keys
    cfg = litestream.write_config(str(tmp_path), db, rep)
    out = str(tmp_path / "ls.db")
    r = litestream.restore(cfg, db, out)
    assert r.returncode == 0, r.stderr
    assert_equal_db(out, src, "litestream restore")
    mid = keys[len(keys) // 2].max_txid
    out_ls = str(tmp_path / "ls-mid.db")
    r = litestream.restore(cfg, db, out_ls, "-txid", f"{mid:016x}")
    assert r.returncode == 0, r.stderr
    out_w = str(tmp_path / "w-mid.db")
    restore(wd, rep, out_w, "--txid", str(mid))
    check_writer_states([out_ls, out_w], seed, items)
    assert dbtools.table_checksums(out_ls) == \
        dbtools.table_checksums(out_w)


@needs_litestream
@pytest.mark.interop
@pytest.mark.timeout(240)
def test_litestream_yml_drives_walrustd(daemon_factory, rep_fs, tmp_path,
                                       state_env):
    """A typical unmodified litestream.yml (global access keys; dbs: -
    path, replica: url s3://bucket/path/app + endpoint + region; or type:
    file + path) drives `walrustd -c`: the database is watched under its
    name, a writer's commits are replicated; walrust and `litestream
    restore -config` (the same file) both restore it equal to the
    source."""
    rep, seed = rep_fs, 717
    db = str(tmp_path / "src" / f"{NAME}.db")
    writer_db(db)
    cfg = write_config(str(tmp_path / "litestream.yml"), rep, [db])
    d = config_daemon(daemon_factory, cfg, state_env)
    st = wait_replicating(d, [db])
    assert st[db]["name"] == NAME
    run_writer(db, seed, 3)
    sync(d, db)
    src = dbtools.table_checksums(db)
    l0_chain(rep)
    out = str(tmp_path / "walrust.db")
    restore(d, rep, out)
    assert_equal_db(out, src, "walrust restore")
    if litestream.binary():
        out = str(tmp_path / "ls.db")
        r = litestream.restore(cfg, db, out)
        assert r.returncode == 0, r.stderr
        assert_equal_db(out, src, "litestream restore")


# ============================================================ 8. --exec
APP = textwrap.dedent(r"""
    import os, signal, sqlite3, sys, time
    db, go, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    got = []
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, lambda n, f: got.append(n))
    con = sqlite3.connect(db, isolation_level=None, timeout=30)
    with open(go + ".ready", "w"):
        pass
    while not os.path.exists(go) and not got:
        time.sleep(0.02)
    i = 0
    if mode == "signal":
        while not got:
            i += 1
            con.execute("INSERT INTO items(label) VALUES(?)", (f"loop {i}",))
            time.sleep(0.05)
        con.execute("INSERT INTO items(label) VALUES(?)", (f"got {got[0]}",))
        con.close()
        sys.exit(40 + got[0])
    for i in range(200):  # committed right before exiting
        con.execute("INSERT INTO items(label, data) VALUES(?, ?)",
                    (f"final {i}", os.urandom(300)))
    if mode == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    con.close()
    sys.exit(int(mode))
""")


def _exec_daemon(daemon_factory, rep, tmp_path, state_env, mode):
    db = str(tmp_path / "src" / f"{NAME}.db")
    os.makedirs(os.path.dirname(db))
    dbtools.create_small_db(db, rows=50)
    app = tmp_path / "app.py"
    app.write_text(APP)
    go = str(tmp_path / "go")
    cfg = write_config(str(tmp_path / "litestream.yml"), rep, [db])
    cmd = f"exec {sys.executable} {app} {db} {go} {mode}"
    d = config_daemon(daemon_factory, cfg, state_env, args=["--exec", cmd])
    wait_replicating(d, [db])
    deadline = time.monotonic() + 20
    while not os.path.exists(go + ".ready"):
        assert time.monotonic() < deadline, d.log_tail(30)
        time.sleep(0.05)
    return d, db, go


def _check_replica(daemon_factory, rep, tmp_path, db, state_env):
    src = dbtools.table_checksums(db)
    r = daemon_factory(env=state_env)
    out = str(tmp_path / "out.db")
    restore(r, rep, out)
    assert_equal_db(out, src, "replica after the application exited")
    return out


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode,status", [("7", 7), ("0", 0),
                                         ("kill", 128 + 9)])
def test_exec_exit_status_and_final_sync(daemon_factory, rep_fs, tmp_path,
                                         state_env, mode, status):
    """walrustd -c cfg --exec APP: the application commits 200 rows and
    exits at once with status 7 (or 0, or is SIGKILLed: 137); walrustd
    exits with that status after a final sync: the rows are in the
    replica, which equals the database; nothing of its group is left."""
    d, db, go = _exec_daemon(daemon_factory, rep_fs, tmp_path, state_env,
                             mode)
    open(go, "w").close()
    rc = d.wait_exit(60)
    d.accept_exit()
    assert rc == status, f"walrustd exited {rc}, app {status}\n" \
                         f"{d.log_tail(30)}"
    assert not d.group_alive(wait=3)
    out = _check_replica(daemon_factory, rep_fs, tmp_path, db, state_env)
    con = sqlite3.connect(out)
    assert con.execute("SELECT count(*) FROM items WHERE label LIKE "
                       "'final %'").fetchone()[0] == 200
    con.close()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT,
                                 signal.SIGHUP], ids=lambda s: s.name)
def test_exec_forwards_signals(daemon_factory, file_rep, tmp_path,
                               state_env, sig):
    """A signal to walrustd goes to the application, which writes a last
    row naming it and exits 40 + signal; walrustd exits with that status
    after a final sync that carries the last row."""
    d, db, go = _exec_daemon(daemon_factory, file_rep, tmp_path, state_env,
                             "signal")
    open(go, "w").close()
    time.sleep(1.5)
    d.proc.send_signal(sig)
    rc = d.wait_exit(60)
    d.accept_exit()
    assert rc == 40 + sig, f"walrustd exited {rc}, want {40 + sig} " \
                           f"(the app got the signal)\n{d.log_tail(30)}"
    out = _check_replica(daemon_factory, file_rep, tmp_path, db, state_env)
    con = sqlite3.connect(out)
    assert con.execute("SELECT count(*) FROM items WHERE label = ?",
                       (f"got {int(sig)}",)).fetchone()[0] == 1
    con.close()


# ========================================== 9. sync timeout, outage (7, 8)
@pytest.mark.timeout(400)
@pytest.mark.parametrize("mode", ["down", "refuse", "hang"])
def test_sync_timeout_while_endpoint_down(wd, s3_replica, tmp_path, mode):
    """The S3 endpoint goes away (proxy resets every connection, nothing
    listens, or it accepts and never answers) while a writer commits:
    `sync --timeout 2` fails with `timeout` in about 2 s and status does
    not claim anything the replica lacks (failure mode 8: txid stays at
    the replica's newest object, last_error set). After the endpoint
    returns, sync succeeds; the chain has no hole (failure mode 7) and
    every TXID, including those captured during the outage, restores to a
    committed state; the latest equals the source."""
    seed = 909
    db = str(tmp_path / "src" / f"{NAME}.db")
    items = writer_db(db)
    with FaultProxy(s3_replica.endpoint) as proxy:
        rep = s3_replica.via(proxy.endpoint)
        direct = s3_replica
        watch(wd, db, rep)
        with dbtools.Writer(db, seed=seed, interval=0.01) as w:
            w.wait_for(20)
            sync(wd, db)
            proxy.set_mode(mode)
            time.sleep(3)
            r = wd.ctl_error("sync", db, "--timeout", "2", code="timeout",
                             timeout=60)
            assert 1.5 <= r.elapsed < 10, f"sync took {r.elapsed:.1f}s"
            st = db_status(wd, db)
            top = max(k.max_txid for k in direct.ltx_keys(NAME))
            print(f"{mode}: {r.error['message']}; status {st}")
            assert st["txid"] <= top, \
                f"status claims txid {st['txid']}, the bucket has {top}"
            assert st["captured_txid"] > st["txid"], st
            assert st["last_error"] is not None or mode == "hang", st
            assert st["lag_ms"] > 0, st
            nowait = wd.ctl("sync", db, "--no-wait").json
            assert nowait["txid"] <= top, nowait
            proxy.set_mode("pass")
            time.sleep(1)
        t0 = time.monotonic()
        r = sync(wd, db, timeout=150, budget=200)
        print(f"recovered in {time.monotonic() - t0:.1f}s")
        src = dbtools.table_checksums(db)
        keys = l0_chain(direct)
        assert keys[-1].max_txid >= r["txid"]
        check_l0_pages(direct, keys=keys)
        out = str(tmp_path / "latest.db")
        restore(wd, direct, out)
        assert_equal_db(out, src)
        check_chain_states(wd, direct, tmp_path, seed, items, limit=30)
        st = db_status(wd, db)
        # lag is 0 unless something newer than the sync (walrustd's own
        # _walrust_seq bump at a checkpoint) is already captured
        assert st["last_error"] is None and (
            st["lag_ms"] == 0 or st["captured_txid"] > r["txid"]), st


# ===================================================== 10. failure modes
def test_two_watchers_on_one_name_refused(wd, replica, tmp_path):
    """Failure mode 10: a second database file with the same name, watched
    into the same replica, is refused (invalid_argument), and so is the
    same file into a second replica; the first keeps replicating and the
    replica holds only its contents."""
    a = str(tmp_path / "a" / f"{NAME}.db")
    b = str(tmp_path / "b" / f"{NAME}.db")
    for p, s in ((a, 1), (b, 2)):
        os.makedirs(os.path.dirname(p))
        dbtools.create_small_db(p, rows=100, seed=s)
    watch(wd, a, replica)
    wd.ctl_error("watch", b, code="invalid_argument", env=replica.env(),
                 **replica.ctl_opts())
    other = FileReplica(str(tmp_path / "other"))
    os.makedirs(other.root)
    wd.ctl_error("watch", a, code="invalid_argument", **other.ctl_opts())
    for p in (a, b):
        dbtools.execute(p, "INSERT INTO items(label) VALUES(?)", (p,))
    sync(wd, a)
    assert [x["database"] for x in status(wd)["databases"]] == [a]
    out = str(tmp_path / "out.db")
    restore(wd, replica, out)
    assert_equal_db(out, dbtools.table_checksums(a))
    assert not other.keys()
    l0_chain(replica)


@pytest.mark.timeout(180)
def test_taken_txid_is_never_overwritten(daemon_factory, rep_fs, tmp_path):
    """One TXID, two writers (a request of a killed worker that lands late,
    or a second replicator of the same database): L0 files are conditional
    creates, so whoever comes second is refused instead of overwriting.
    Daemon B, with its own state directory and a copy of the database with
    other contents, writes the TXID that daemon A (idle at TXID N) will
    write next. A's upload of N+1 is refused; A reads the object, finds
    other bytes, drops what it had captured on top of its chain and starts
    again from a listing: a full-database file after B's last TXID. B's
    objects keep their bytes (an unconditional PUT would have replaced them), the chain
    has one file per TXID, and the latest restore is A's database."""
    rep = rep_fs
    a_db = str(tmp_path / "a" / f"{NAME}.db")
    b_db = str(tmp_path / "b" / f"{NAME}.db")
    writer_db(a_db)
    envs = {}
    for who in ("a", "b"):
        os.makedirs(tmp_path / f"state-{who}")
        envs[who] = {"WALRUST_STATE_DIR": str(tmp_path / f"state-{who}")}
    a = daemon_factory(env=envs["a"])
    watch(a, a_db, rep)
    dbtools.execute(a_db, "INSERT INTO items(label) VALUES('a1')")
    sync(a, a_db)
    n = l0_chain(rep)[-1].max_txid

    os.makedirs(os.path.dirname(b_db))
    dbtools.backup_copy(a_db, b_db)
    dbtools.execute(b_db, "INSERT INTO items(label) VALUES('b1')")
    b = daemon_factory(env=envs["b"])
    watch(b, b_db, rep)
    sync(b, b_db)
    b.stop()
    taken = [k for k in l0_chain(rep) if k.min_txid > n]
    assert taken and taken[0].min_txid == n + 1, (n, taken)
    taken_bytes = {k.key: rep.read(k.key) for k in taken}

    dbtools.execute(a_db, "INSERT INTO items(label) VALUES('a2')")
    sync(a, a_db)
    for k in taken:
        assert rep.read(k.key) == taken_bytes[k.key], \
            f"{k.key} was overwritten:\n{a.log_tail(20)}"
    keys = l0_chain(rep)
    assert keys[-1].min_txid >= taken[-1].max_txid + 1, keys[-3:]
    assert "already in the replica with other bytes" in a.log_text(), \
        a.log_tail(20)
    out = str(tmp_path / "latest.db")
    restore(a, rep, out)
    assert_equal_db(out, dbtools.table_checksums(a_db))
    dbtools.execute(a_db, "INSERT INTO items(label) VALUES('a3')")
    sync(a, a_db)
    out2 = str(tmp_path / "latest2.db")
    restore(a, rep, out2)
    assert_equal_db(out2, dbtools.table_checksums(a_db), "after more writes")


def test_lost_answer_to_an_l0_upload(wd, s3_replica, tmp_path):
    """An L0 PUT reaches the server but its answer is lost (the proxy
    resets the connection after the server acted). The retry, a
    conditional create, is refused because the object exists; walrust
    reads the object back, finds its own bytes and goes on: the chain
    continues with the next TXID, no full-database file, no error. (Were
    every refusal taken for another writer's file, each lost answer would
    cost a full-database upload.)"""
    db = str(tmp_path / "src" / f"{NAME}.db")
    writer_db(db)
    with FaultProxy(s3_replica.endpoint) as proxy:
        rep = s3_replica.via(proxy.endpoint)
        watch(wd, db, rep)
        dbtools.execute(db, "INSERT INTO items(label) VALUES('one')")
        sync(wd, db)
        n = l0_chain(s3_replica)[-1].max_txid
        l0 = f"/{NAME}/0000/"
        proxy.script(("reset", lambda m, t: m == "PUT" and l0 in t))
        dbtools.execute(db, "INSERT INTO items(label) VALUES('two')")
        sync(wd, db)
        assert proxy.faults["reset"] == 1, proxy.log[-5:]
        puts = [e for e in proxy.log if e[0] == "PUT" and l0 in e[1]]
        assert [e[3] for e in puts[-2:]] == [200, 412], puts[-3:]
    keys = l0_chain(s3_replica)
    assert keys[-1].max_txid == n + 1, keys[-3:]
    log = wd.log_text()
    assert f"txid {n + 1} was already uploaded" in log, wd.log_tail(20)
    assert "other bytes" not in log and \
        "full-database file at txid %d" % (n + 1) not in log, wd.log_tail(20)
    out = str(tmp_path / "latest.db")
    restore(wd, s3_replica, out)
    assert_equal_db(out, dbtools.table_checksums(db))


def test_store_without_conditional_writes(wd, s3_replica, tmp_path):
    """A store that answers If-None-Match with 501 NotImplemented: the
    first L0 upload falls back to a plain PUT at once (no retries), walrust
    warns once and sends no more conditional writes to that store, and
    replication goes on without a gap."""
    db = str(tmp_path / "src" / f"{NAME}.db")
    writer_db(db)
    with FaultProxy(s3_replica.endpoint,
                    reject_headers=("If-None-Match",)) as proxy:
        rep = s3_replica.via(proxy.endpoint)
        watch(wd, db, rep)
        for i in range(3):
            dbtools.execute(db, "INSERT INTO items(label) VALUES(?)",
                            (f"r{i}",))
            sync(wd, db)
        assert proxy.faults["notimplemented"] == 1, proxy.log[-8:]
    assert wd.log_text().count("does not implement conditional writes") \
        == 1, wd.log_tail(20)
    st = db_status(wd, db)
    assert st["last_error"] is None, st
    keys = l0_chain(s3_replica)
    assert keys[-1].max_txid >= 4, keys
    out = str(tmp_path / "latest.db")
    restore(wd, s3_replica, out)
    assert_equal_db(out, dbtools.table_checksums(db))


def test_shutdown_finishes_uploads_in_flight(daemon_factory, s3_replica,
                                             tmp_path, state_env):
    """walrustd stopping while a worker's upload is in flight (here the
    level-1 compaction a restarted daemon does first, held 3 s by the
    proxy) waits for it: the worker exits once its requests are answered,
    not in the middle of one. A worker that left mid-request once made
    SeaweedFS keep a 0-byte L1 object, and every restore of the database
    failed on it."""
    db = str(tmp_path / "src" / f"{NAME}.db")
    writer_db(db)
    with FaultProxy(s3_replica.endpoint, stall_seconds=3) as proxy:
        rep = s3_replica.via(proxy.endpoint)
        d = daemon_factory(env=state_env)
        watch(d, db, rep)
        for i in range(3):
            dbtools.execute(db, "INSERT INTO items(label) VALUES(?)",
                            (f"r{i}",))
            sync(d, db)
        d.stop()
        l1 = f"/{NAME}/0001/"
        proxy.script(("stall", lambda m, t: m == "PUT" and l1 in t))
        d2 = daemon_factory(env=state_env)
        watch(d2, db, rep)
        deadline = time.monotonic() + 30
        while proxy.faults["stall"] == 0:
            assert time.monotonic() < deadline, \
                f"no level-1 upload:\n{d2.log_tail(20)}"
            time.sleep(0.05)
        time.sleep(0.3)
        t0 = time.monotonic()
        d2.stop()
        took = time.monotonic() - t0
        assert not proxy.undelivered, \
            f"walrustd left before these answers: {proxy.undelivered}"
    print(f"stopped in {took:.1f}s")
    keys = [k for k in s3_replica.ltx_keys(NAME) if k.level == 1]
    assert keys, s3_replica.ltx_keys(NAME)
    for k in keys:
        assert len(s3_replica.read(k.key)) > 100, k.key
    d3 = daemon_factory(env=state_env)
    out = str(tmp_path / "latest.db")
    restore(d3, s3_replica, out)
    assert_equal_db(out, dbtools.table_checksums(db))


@pytest.mark.timeout(180)
def test_unwatch_leaves_other_uploads_alone(daemon_factory, s3_replica,
                                            tmp_path, state_env):
    """Databases replicated to different prefixes of one endpoint (the
    shape of a litestream.yml) share the worker's HTTP instance and
    connection pool (http.c). Unwatching one of them gives its share back
    while another's upload is in flight (held 3 s by the proxy): that upload
    is neither cancelled nor sent twice, it is answered, and its database
    restores equal to its source."""
    a = str(tmp_path / "src" / "alpha.db")
    b = str(tmp_path / "src" / "beta.db")
    writer_db(a)
    writer_db(b, seed=2)
    with FaultProxy(s3_replica.endpoint, stall_seconds=3) as proxy:
        ra = S3Replica(s3_replica.server, f"{s3_replica.prefix}/a",
                       proxy.endpoint)
        rb = S3Replica(s3_replica.server, f"{s3_replica.prefix}/b",
                       proxy.endpoint)
        d = daemon_factory(env=state_env)
        watch(d, a, ra)
        watch(d, b, rb)
        sync(d, a)
        sync(d, b)
        held = "/alpha/0000/"
        proxy.script(("stall", lambda m, t: m == "PUT" and held in t))
        dbtools.execute(a, "INSERT INTO items(label) VALUES('held')")
        deadline = time.monotonic() + 30
        while proxy.faults["stall"] == 0:
            assert time.monotonic() < deadline, \
                f"no upload of alpha:\n{d.log_tail(20)}"
            time.sleep(0.05)
        d.ctl("unwatch", b)
        sync(d, a)
        puts = [(p, dec, st) for m, p, dec, st in proxy.log
                if m == "PUT" and held in p]
        keys = [p for p, _, _ in puts]
        # a cancelled request never gets its answer: the proxy logs
        # requests once answered, so the held one would be missing and
        # its retry would show as "pass"
        assert [st for _, dec, st in puts if dec == "stall"] == [200], \
            f"the held upload was not answered (cancelled?): {puts}\n" \
            f"{d.log_tail(10)}"
        assert len(keys) == len(set(keys)), f"an upload was sent twice: {puts}"
        assert not proxy.undelivered, proxy.undelivered
        st = {x["database"]: x for x in status(d)["databases"]}
        assert b not in st and not st[a].get("last_error"), st
    out = str(tmp_path / "alpha-latest.db")
    d2 = daemon_factory(env=state_env)
    restore(d2, S3Replica(s3_replica.server, f"{s3_replica.prefix}/a"), out,
            name="alpha")
    assert_equal_db(out, dbtools.table_checksums(a))


GROWTH = ["bulk_insert", "grow_then_free", "shrink_then_grow"]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("how", GROWTH)
def test_growth_pages(wd, rep_fs, tmp_path, sizes, how):
    """Failure mode 11: one transaction grows the database by thousands of
    pages (bulk_insert; grow_then_free: most of them freed again in the
    same transaction, so SQLite never writes those freelist leaves to the
    WAL; shrink_then_grow: after a VACUUM shrank it). The restore at that
    TXID passes integrity_check, has the source's page count and
    contents, and so does the latest after more writes."""
    rep = rep_fs
    db = str(tmp_path / "src" / f"{NAME}.db")
    os.makedirs(os.path.dirname(db))
    dbtools.create_small_db(db, rows=200)
    nrows = quick(sizes, 3000, 1200)
    watch(wd, db, rep)
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("CREATE TABLE big(id INTEGER PRIMARY KEY, v BLOB)")
    if how == "shrink_then_grow":
        con.execute("BEGIN")
        con.executemany("INSERT INTO big(v) VALUES(?)",
                        ((os.urandom(4000),) for _ in range(nrows)))
        con.execute("COMMIT")
        sync(wd, db)
        con.execute("DELETE FROM big")
        con.execute("VACUUM")
        sync(wd, db)
    else:
        sync(wd, db)
    pages0 = dbtools.db_info(db)["page_count"]
    con.execute("BEGIN")
    con.executemany("INSERT INTO big(v) VALUES(?)",
                    ((os.urandom(4000),) for _ in range(nrows)))
    if how == "grow_then_free":
        con.execute("DELETE FROM big WHERE id % 10 != 0")
    con.execute("INSERT INTO items(label) VALUES('after growth')")
    con.execute("COMMIT")
    r1 = sync(wd, db)
    sums1 = dbtools.table_checksums(db)
    pages1 = dbtools.db_info(db)["page_count"]
    print(f"{how}: {pages0} -> {pages1} pages at txid {r1['txid']}")
    assert pages1 > pages0 + nrows // 2
    con.execute("UPDATE items SET label = 'later' WHERE id < 20")
    con.close()
    r2 = sync(wd, db)
    assert r2["txid"] > r1["txid"]
    sums2 = dbtools.table_checksums(db)
    out = str(tmp_path / "at-growth.db")
    restore(wd, rep, out, "--txid", str(r1["txid"]))
    assert_equal_db(out, sums1, f"restore at the growth txid {r1['txid']}")
    assert dbtools.db_info(out)["page_count"] == pages1
    out = str(tmp_path / "latest.db")
    restore(wd, rep, out)
    assert_equal_db(out, sums2)
    assert check_l0_pages(rep) == dbtools.db_info(db)["page_count"]
    if litestream.binary():  # its restore rejects missing growth pages
        cfg = litestream.write_config(str(tmp_path), db, rep)
        out = str(tmp_path / "ls-at-growth.db")
        r = litestream.restore(cfg, db, out, "-txid", f"{r1['txid']:016x}")
        assert r.returncode == 0, r.stderr
        assert_equal_db(out, sums1, "litestream restore at the growth txid")


def _flip(data):
    i = len(data) // 2
    return data[:i] + bytes([data[i] ^ 0x55]) + data[i + 1:]


DAMAGE = ["flip", "truncate", "delete", "swap"]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_chain_fails_restore_keeps_output(wd, replica, tmp_path,
                                                  damage):
    """Failure modes 4, 5, 9: in a chain of L0 files, the middle one gets a
    flipped byte, is cut in half, is deleted (a gap), or swaps contents
    with its successor (each file sound by itself, the chain not).
    Restoring latest (or at the damaged TXID) fails with `checksum`; an
    existing database at the output keeps its bytes, a missing output
    stays missing, nothing is left beside them; restoring before the
    damage still works and gives that state."""
    db = str(tmp_path / "src" / f"{NAME}.db")
    os.makedirs(os.path.dirname(db))
    dbtools.create_small_db(db, rows=300, blob=500)
    watch(wd, db, replica)
    states = {}
    for i in range(6):
        dbtools.execute(db, "INSERT INTO items(label, data) VALUES(?,?)",
                        (f"round {i}", os.urandom(3000 + i)))
        dbtools.execute(db, "UPDATE items SET label=? WHERE id=?",
                        (f"upd {i}", i * 13 + 1))
        t = sync(wd, db)["txid"]
        states[t] = dbtools.table_checksums(db)
    wd.ctl("unwatch", db)
    keys = l0_chain(replica)
    assert len(keys) >= 6, keys
    mid = keys[len(keys) // 2]
    nxt = keys[len(keys) // 2 + 1]
    if damage == "flip":
        replica.write(mid.key, _flip(replica.read(mid.key)))
    elif damage == "truncate":
        data = replica.read(mid.key)
        replica.write(mid.key, data[:len(data) // 2])
    elif damage == "delete":
        replica.delete(mid.key)
    else:
        a, b = replica.read(mid.key), replica.read(nxt.key)
        replica.write(mid.key, b)
        replica.write(nxt.key, a)

    outdir = tmp_path / "out"
    outdir.mkdir()
    existing = outdir / "existing.db"
    dbtools.create_small_db(str(existing), rows=20, seed=99)
    precious = existing.read_bytes()
    before = sorted(os.listdir(outdir))
    # latest, and a target just past the damage: the plan crosses it
    for flags in ((), ("--txid", str(nxt.max_txid))):
        restore_error(wd, replica, str(existing), *flags, code="checksum")
        assert existing.read_bytes() == precious
        assert sorted(os.listdir(outdir)) == before
    # the damaged TXID itself (deleted: that TXID is simply not there)
    r = wd.ctl("restore", NAME, str(existing), "--txid", str(mid.max_txid),
               env=replica.env(), **replica.ctl_opts(), check=False)
    codes = ("checksum", "no_snapshot") if damage == "delete" \
        else ("checksum",)
    assert r.rc == 1 and r.error["code"] in codes, r
    assert existing.read_bytes() == precious
    assert sorted(os.listdir(outdir)) == before
    missing = outdir / "missing.db"
    restore_error(wd, replica, str(missing), code="checksum")
    assert not missing.exists()
    assert sorted(os.listdir(outdir)) == before

    good = max(t for t in states if t < mid.min_txid)
    out = str(tmp_path / "before-damage.db")
    r = restore(wd, replica, out, "--txid", str(good))
    assert r["txid"] == good
    assert_equal_db(out, states[good], "restore before the damage")
