"""Failure mode 14 of replication.md: memory that grows with the database
(a 130 GiB database OOM-killed a replicator at 12 GiB). Every path that
reads a whole database or a whole LTX file must stream it: the worker's
full-database capture, its compaction of that file into level 1, its
level-9 snapshot, and the job processes of `snapshot` and `restore`.

A 256 MiB database of incompressible pages goes through each of them; the
processes' peak resident memory, as walrustd reports it in `status`
(workers[].peak_rss_kb from VmHWM, jobs_peak_rss_kb from getrusage), must
stay under 64 MiB: a path that held the database, or an LTX file of it, in
memory would need at least 256 MiB.
"""

import os
import sqlite3
import time

import pytest

from walrust_testlib import dbtools
from walrust_testlib.servers import FileReplica

from test_replication import (config_daemon, restore, status,
                              wait_replicating, write_config)

DB_MIB = 256
LIMIT_KB = 64 * 1024


def make_big_db(path, mib):
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE big (id INTEGER PRIMARY KEY, b BLOB)")
    con.execute("BEGIN")
    con.execute("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 "
                "FROM c LIMIT ?) INSERT INTO big (b) SELECT randomblob(3900) "
                "FROM c", (mib * 1024 * 1024 // 4096,))
    con.execute("COMMIT")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    assert os.path.getsize(path) >= mib * 1024 * 1024 * 0.95


@pytest.mark.timeout(600)
def test_memory_bounded_whatever_the_database_size(daemon_factory, tmp_path,
                                                   state_env):
    rep_dir = tmp_path / "replica"
    rep_dir.mkdir()
    rep = FileReplica(str(rep_dir))
    src = tmp_path / "src"
    src.mkdir()
    watched = str(src / "watched.db")
    oneoff = str(src / "oneoff.db")
    make_big_db(watched, DB_MIB)
    make_big_db(oneoff, DB_MIB)

    cfg = write_config(str(tmp_path / "litestream.yml"), rep, [watched],
                       top=["snapshot:", "  interval: 5s", "levels:",
                            "  - interval: 2s", "  - interval: 4s",
                            "  - interval: 8s", ""])
    d = config_daemon(daemon_factory, cfg, state_env)
    wait_replicating(d, [watched], timeout=120)
    # the full-database L0 file, its compaction into L1, an L9 snapshot
    deadline = time.monotonic() + 120
    while True:
        levels = {k.level for k in rep.ltx_keys("watched")}
        if {0, 1, 9} <= levels:
            break
        assert time.monotonic() < deadline, \
            f"levels {levels} after 120 s\n{d.log_tail(30)}"
        time.sleep(0.5)
    st = status(d)
    peak = max(w["peak_rss_kb"] for w in st["workers"])
    assert 0 < peak < LIMIT_KB, \
        f"worker peak RSS {peak} KiB for a {DB_MIB} MiB database"

    # a one-off snapshot and a restore, each in a job process
    r = d.ctl("snapshot", oneoff, env=rep.env(), **rep.ctl_opts())
    assert r.json["pages"] >= DB_MIB * 256 * 0.95
    out = str(tmp_path / "restored.db")
    restore(d, rep, out, name="oneoff")
    assert dbtools.integrity_check(out) == ["ok"]
    st = status(d)
    jobs_peak = st["jobs_peak_rss_kb"]
    assert 0 < jobs_peak < LIMIT_KB, \
        f"job peak RSS {jobs_peak} KiB for a {DB_MIB} MiB database"
    print(f"peak RSS: worker {peak} KiB, jobs {jobs_peak} KiB "
          f"({DB_MIB} MiB databases)")
