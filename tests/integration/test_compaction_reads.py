"""Compaction reads what the worker itself uploaded from its local spool,
not from the bucket: with a steady writer and short level intervals, the S3
server sees PUTs, LISTs and DELETEs but no GET of an LTX object (one GET per
L0 file was a cost Litestream does not have). The result stays restorable
and equal to the source.

Counted at a fault proxy (rate 0: it only counts) in front of SeaweedFS.
"""

import time

import pytest

from walrust_testlib import dbtools
from walrust_testlib.faultproxy import FaultProxy

from test_replication import (assert_equal_db, config_daemon, restore, sync,
                              wait_replicating, write_config)


@pytest.mark.timeout(300)
def test_compaction_does_not_download_own_uploads(daemon_factory, seaweed,
                                                  tmp_path, state_env):
    proxy = FaultProxy(seaweed.endpoint, rate=0.0).start()
    try:
        rep = seaweed.replica().via(proxy.endpoint)
        db = str(tmp_path / "src" / "app.db")
        (tmp_path / "src").mkdir()
        dbtools.prepare_writer_tables(db)
        cfg = write_config(str(tmp_path / "litestream.yml"), rep, [db],
                           top=["levels:", "  - interval: 2s",
                                "  - interval: 4s", "  - interval: 8s", ""])
        d = config_daemon(daemon_factory, cfg, state_env)
        wait_replicating(d, [db])
        with dbtools.Writer(db, seed=7, interval=0.1) as w:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                time.sleep(0.5)
            assert w.alive()
        sync(d, db)
        time.sleep(9)  # one more round of every level
        levels = {k.level for k in rep.ltx_keys("app")}
        assert {0, 1, 2, 3} <= levels, f"levels in the bucket: {levels}"
        gets = [(m, p) for m, p, *_ in proxy.log
                if m == "GET" and p.split("?")[0].endswith(".ltx")]
        assert not gets, f"{len(gets)} LTX downloads, e.g. {gets[:3]}"
        assert proxy.counts["PUT"] > 20
        out = str(tmp_path / "out.db")
        restore(d, rep, out, name="app")
        assert_equal_db(out, dbtools.table_checksums(db))
        d.stop()  # its final sync goes through the proxy
    finally:
        proxy.stop()
