"""Failure mode 12 of /work/shared/notes/replication.md: retention deleting
files that an in-flight restore planned.

walrustd replicates a database with very short compaction and retention
settings (L0 files go 1 s after an L1 file covers them; snapshots every 4 s,
kept 4 s) while a writer commits continuously. A restore of that database,
through the same walrustd but reaching SeaweedFS through a fault proxy that
holds every LTX download for HOLD seconds, plans its chain and then waits
for it long enough for the worker's retention (every 15 s) to run while the
planned files are eligible for deletion. The restore must succeed, give a
state the writer committed (at least what was synced before it started),
and never have to plan again: every planned file must still be there. What
protects them is the lease the restore job takes on its plan (lease.c);
without it the downloads meet 404s, and the restore either plans again
(a `warning`) or fails.

The test also checks that it tested something: during the restore,
retention must have deleted files newer than some planned file of the same
level (which it would only do once it could have deleted the planned one
too), so a run where retention happened not to run fails instead of
passing vacuously.
"""

import os
import threading
import time
import urllib.parse

import pytest

from walrust_testlib import dbtools
from walrust_testlib.faultproxy import FaultProxy
from walrust_testlib.servers import LTX_S3_RE

NAME = "app"
SEED = 1212
# Longer than the worker's retention check interval (15 s, db.c) plus the
# few seconds it takes a planned file to become deletable.
HOLD = 22
# walrustd aborts a request that receives nothing for 10 s (http.c's
# low-speed limit) and retries 5xx answers for 20 s (storage-s3.c).
HOLD_STEP = 8


class HoldingProxy(FaultProxy):
    """A FaultProxy that holds every LTX download (a GET of a .ltx key)
    until HOLD seconds after the first one, recording the keys asked for.
    A held request waits at most HOLD_STEP seconds and is then answered
    503 SlowDown (which walrustd retries after a short backoff) if the
    hold is not over, so no request stays silent long enough to be
    aborted; once the hold is over, requests go through to the server,
    which answers with what the bucket holds then."""

    def __init__(self, upstream, prefix):
        super().__init__(upstream)
        self.prefix = prefix
        self.keys = []
        self.release_at = None

    def _decide(self, method, target):
        path = urllib.parse.urlsplit(target).path
        if method != "GET" or "?" in target or not path.endswith(".ltx"):
            return super()._decide(method, target)
        now = time.monotonic()
        with self._lock:
            key = path[len(self.prefix):] if path.startswith(self.prefix) \
                else path
            if key not in self.keys:
                self.keys.append(key)
            if self.release_at is None:
                self.release_at = now + HOLD
            left = self.release_at - now
        if left > 0:
            time.sleep(min(left, HOLD_STEP))
        return "pass" if time.monotonic() >= self.release_at else "error503"


# ------------------------------------------------------------- fixtures
@pytest.fixture
def sw_rep(request):
    """A fresh prefix on SeaweedFS."""
    opt = request.config.getoption("--s3")
    if opt and "seaweedfs" not in [s.strip() for s in opt.split(",")]:
        pytest.skip("--s3 excludes seaweedfs")
    srv = request.getfixturevalue("seaweed")
    assert srv.alive()
    return srv.replica()


# -------------------------------------------------------------- helpers
# (as in test_replication.py)
def write_config(path, rep, db, top):
    name = os.path.splitext(os.path.basename(db))[0]
    srv = rep.server
    lines = list(top) + [
        f"access-key-id: {srv.access_key}",
        f"secret-access-key: {srv.secret_key}",
        "",
        "dbs:",
        f"  - path: {db}",
        "    replica:",
        f"      url: s3://{srv.bucket}/{rep.prefix}/{name}",
        f"      endpoint: {rep.endpoint}",
        f"      region: {srv.region}",
    ]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def status(d):
    return d.ctl("status").json


def wait_for(what, fn, timeout, d):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n"
                                 f"{d.log_tail(40)}")
        time.sleep(0.2)


class KeyWatcher(threading.Thread):
    """Lists the replica (directly, not through the proxy) every 0.3 s:
    (monotonic time, set of LTX keys) snapshots."""

    def __init__(self, rep):
        super().__init__(daemon=True)
        self.rep = rep
        self.snaps = []
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            t = time.monotonic()
            try:
                keys = {k.key: k for k in self.rep.ltx_keys(NAME)}
            except Exception:  # a transient listing error: next time
                keys = None
            if keys is not None:
                self.snaps.append((t, keys))
            self.stop.wait(0.3)

    def deleted_before(self, t_end):
        """Keys seen before t_end and gone in the last listing before it."""
        before = [s for s in self.snaps if s[0] < t_end]
        assert before, "the replica was never listed"
        seen = {}
        for _, keys in before:
            seen.update(keys)
        last = before[-1][1]
        return [k for key, k in seen.items() if key not in last]


# ---------------------------------------------------------------- test
@pytest.mark.timeout(300)
def test_retention_spares_files_of_an_inflight_restore(daemon_factory, sw_rep,
                                                       tmp_path, state_env):
    rep = sw_rep
    db = str(tmp_path / "src" / f"{NAME}.db")
    os.makedirs(os.path.dirname(db))
    dbtools.create_small_db(db, rows=300, seed=3, blob=300)
    dbtools.prepare_writer_tables(db)
    items = dbtools.table_checksums(db, ["items"])["items"]
    cfg = write_config(str(tmp_path / "litestream.yml"), rep, db, [
        # Each level's interval longer than the 1 s sync interval: a level
        # due at every poll would keep the worker compacting, and retention
        # never runs during a compaction.
        "snapshot:",
        "  interval: 4s",
        "  retention: 4s",
        "levels:",
        "  - interval: 2s",
        "  - interval: 4s",
        "  - interval: 8s",
        "l0-retention: 1s",
    ])
    d = daemon_factory(extra_args=["-c", cfg], env=state_env)

    with dbtools.Writer(db, seed=SEED, interval=0.05) as w:
        w.wait_for(5)
        # Compaction and retention at work: L1+ files, and L0 files
        # already deleted.
        wait_for("compaction and retention", lambda: (
            any(k.level >= 2 for k in rep.ltx_keys(NAME))
            and rep.ltx_keys(NAME)[0].min_txid > 1), 60, d)
        n0 = w.committed()
        r = d.ctl("sync", db, "--timeout", "30", timeout=90)
        assert r.rc == 0, r

        watcher = KeyWatcher(rep)
        watcher.start()
        prefix = f"/{rep.server.bucket}/{rep.prefix}/"
        with HoldingProxy(rep.endpoint, prefix) as p:
            via = rep.via(p.endpoint)
            out = str(tmp_path / "restored.db")
            t0 = time.monotonic()
            res = d.ctl("restore", NAME, out, env=via.env(),
                        **via.ctl_opts(), check=False, timeout=240)
            t_end = time.monotonic()
            planned = list(p.keys)  # the LTX keys the restore asked for
        watcher.stop.set()
        watcher.join(10)
        assert w.alive()

    # 1. The restore succeeded, at once: no planned file went missing.
    assert res.rc == 0, f"restore failed:\n{res}\n{d.log_tail(60)}"
    assert "planning again" not in res.err, \
        f"a planned file was deleted during the restore:\n{res}\n" \
        f"{d.log_tail(60)}"
    assert res.elapsed >= HOLD, res
    assert planned, "the restore downloaded nothing through the proxy"

    # 2. It is a state the writer committed, at least what was synced.
    assert dbtools.integrity_check(out) == ["ok"]
    n = dbtools.counter_value(out)
    assert n >= n0, f"restored commit {n}, but {n0} was synced before"
    got = dbtools.table_checksums(out)
    assert got["items"] == items
    assert got["t"] == dbtools.expected_t_checksum(SEED, n), \
        f"table t is not the writer's state after commit {n}"

    # 3. The test tested something: while the restore waited, retention
    #    deleted files that it could only delete once the planned files of
    #    the same level were deletable too (L0 goes in TXID order; upper
    #    levels up to a snapshot), and the planned files were spared.
    keys = {}
    for k in planned:
        m = LTX_S3_RE.match(k)
        assert m, k
        keys[k] = (int(m["level"], 16), int(m["min"], 16), int(m["max"], 16))
    deleted = watcher.deleted_before(t_end)
    gone_planned = [k.key for k in deleted if k.key in keys]
    assert not gone_planned, f"planned files deleted: {gone_planned}"
    evidence = [(k.key, pk) for k in deleted for pk, (lv, _mn, mx)
                in keys.items() if k.level == lv and lv < 9
                and k.min_txid > mx]
    print(f"restore: {res.elapsed:.1f} s, txid {res.json['txid']}, "
          f"planned {sorted(keys)}; deleted meanwhile "
          f"{sorted(k.key for k in deleted)}; evidence {evidence[:3]}")
    assert evidence, \
        f"retention deleted nothing newer than the planned files during " \
        f"the restore ({t_end - t0:.1f} s; deleted: " \
        f"{sorted(k.key for k in deleted)[:10]}; planned: {sorted(keys)}): " \
        f"the test did not exercise the race; lengthen HOLD\n" \
        f"{d.log_tail(40)}"
