"""SIGHUP reloads the configuration file's databases: a database the file no
longer names is unwatched (after a final sync), a new one is watched, one
whose replica settings changed is watched again with them, the others go on
undisturbed; a file that does not parse changes nothing and the daemon
keeps running."""

import os
import signal
import time

import pytest

from walrust_testlib import dbtools
from walrust_testlib.servers import FileReplica

from test_replication import (assert_equal_db, config_daemon, restore,
                              status, sync, wait_replicating, write_config)


def watched(d):
    return {x["database"]: x for x in status(d)["databases"]}


def wait_for(what, cond, d, timeout=30):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, \
            f"timed out waiting for {what}\n{d.log_tail(30)}"
        time.sleep(0.2)


@pytest.mark.timeout(240)
def test_sighup_reloads_the_databases(daemon_factory, tmp_path, state_env):
    rep_dir = tmp_path / "replica"
    rep_dir.mkdir()
    rep = FileReplica(str(rep_dir))
    src = tmp_path / "src"
    src.mkdir()
    a, b, c = (str(src / f"{n}.db") for n in ("a", "b", "c"))
    for p in (a, b, c):
        dbtools.prepare_writer_tables(p)
    cfg = str(tmp_path / "litestream.yml")
    write_config(cfg, rep, [a, b])
    d = config_daemon(daemon_factory, cfg, state_env)
    wait_replicating(d, [a, b])
    assert c not in watched(d)

    with dbtools.Writer(a, seed=11, interval=0.02) as wa, \
            dbtools.Writer(b, seed=12, interval=0.02) as wb:
        wa.wait_for(20)
        wb.wait_for(20)
        txid_a = watched(d)[a]["txid"]
        # drop b, add c, keep a as it is
        write_config(cfg, rep, [a, c])
        os.kill(d.proc.pid, signal.SIGHUP)
        wait_for("c watched and b dropped",
                 lambda: c in watched(d) and b not in watched(d), d)
        wb.stop()
        wa.wait_for(wa.committed() + 20)
    st = watched(d)
    assert st[a]["state"] == "replicating"
    assert st[a]["txid"] >= txid_a, "a was restarted by the reload"
    assert "b.db: no longer in the configuration; unwatched" in \
        d.log_text()
    # a went on undisturbed: no new full-database file for it
    assert d.log_text().count("a.db: full-database file") == 1, \
        d.log_tail(30)
    sync(d, a)
    sync(d, c)
    for name, path in (("a", a), ("c", c)):
        out = str(tmp_path / f"{name}-out.db")
        restore(d, rep, out, name=name)
        assert_equal_db(out, dbtools.table_checksums(path), name)

    # a changed setting: a is watched again with it
    write_config(cfg, rep, [a, c], top=["levels:", "  - interval: 10s", ""])
    before = d.log_text().count("a.db: watching as")
    os.kill(d.proc.pid, signal.SIGHUP)
    wait_for("a watched again",
             lambda: d.log_text().count("a.db: watching as") > before, d)
    wait_replicating(d, [a, c])

    # a broken file: nothing changes, the daemon goes on
    with open(cfg, "w") as f:
        f.write("dbs: [\n")
    os.kill(d.proc.pid, signal.SIGHUP)
    wait_for("the error logged",
             lambda: "keeping the running configuration" in d.log_text(), d)
    assert d.proc.poll() is None
    assert set(watched(d)) == {a, c}
