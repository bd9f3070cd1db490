"""SQLite databases for the tests: build, write to concurrently, compare.

create_db(path, size_mb, seed)   WAL-mode database with a few indexed tables
                                 of deterministic pseudo-random rows
Writer(path, seed)               a separate process that commits forever:
                                 each commit i inserts, updates and deletes
                                 rows of table `t` deterministically and sets
                                 counter.n = i in the same transaction, then
                                 logs "i time" to a file; optionally paced
                                 at `rate` commits/s and checkpointing
                                 itself in the given modes (logged as
                                 "# ckpt ..." lines)
expected_t_checksum(seed, n)     what table `t` holds after commit n
table_checksums(path)            {table: (rows, sha256)}
integrity_ok(path)               PRAGMA integrity_check == ok
"""

import hashlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

LIB_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ------------------------------------------------------------- checksums


def _connect(path, readonly=False):
    if readonly:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    else:
        con = sqlite3.connect(path, timeout=30)
    con.execute("PRAGMA busy_timeout=30000")
    return con


def _enc(v):
    if v is None:
        return b"N"
    if isinstance(v, int):
        return b"I" + str(v).encode()
    if isinstance(v, float):
        return b"F" + v.hex().encode()
    if isinstance(v, str):
        b = v.encode()
        return b"T" + str(len(b)).encode() + b":" + b
    b = bytes(v)
    return b"B" + str(len(b)).encode() + b":" + b


def hash_rows(rows):
    """(count, sha256 hex) over rows, each a tuple of column values."""
    h = hashlib.sha256()
    n = 0
    for r in rows:
        n += 1
        for v in r:
            h.update(_enc(v))
        h.update(b"\n")
    return n, h.hexdigest()


def _rowid_table(con, name):
    try:
        con.execute(f'SELECT rowid FROM "{name}" LIMIT 0')
        return True
    except sqlite3.OperationalError:
        return False  # WITHOUT ROWID


def table_checksums(path, tables=None):
    """{table: (row count, sha256 of rows ordered by rowid / all columns)}
    for every user table (or the named ones), in one read transaction.
    walrustd's own bookkeeping table (_walrust_seq, bumped at each of its
    checkpoints, like Litestream's _litestream_seq) is not user data."""
    con = _connect(path)
    try:
        con.execute("BEGIN")
        names = [r[0] for r in con.execute(
            "SELECT name FROM sqlite_master WHERE type='table' "
            "AND name NOT LIKE 'sqlite_%' AND name != '_walrust_seq' "
            "ORDER BY name")]
        if tables is not None:
            names = [n for n in names if n in tables]
        out = {}
        for name in names:
            if _rowid_table(con, name):
                q = f'SELECT rowid, * FROM "{name}" ORDER BY rowid'
            else:
                ncol = len(con.execute(f'PRAGMA table_info("{name}")')
                           .fetchall())
                q = f'SELECT * FROM "{name}" ORDER BY ' + ",".join(
                    str(i + 1) for i in range(ncol))
            out[name] = hash_rows(con.execute(q))
        con.execute("COMMIT")
        return out
    finally:
        con.close()


def integrity_check(path):
    """The rows of PRAGMA integrity_check (["ok"] when sound)."""
    con = _connect(path)
    try:
        return [r[0] for r in con.execute("PRAGMA integrity_check")]
    finally:
        con.close()


def integrity_ok(path):
    return integrity_check(path) == ["ok"]


def backup_copy(src, dst):
    """A consistent copy of src (SQLite online backup)."""
    s = _connect(src)
    d = sqlite3.connect(dst)
    try:
        s.backup(d)
    finally:
        d.close()
        s.close()


def db_info(path):
    con = _connect(path)
    try:
        return {
            "page_size": con.execute("PRAGMA page_size").fetchone()[0],
            "page_count": con.execute("PRAGMA page_count").fetchone()[0],
            "journal_mode": con.execute("PRAGMA journal_mode").fetchone()[0],
        }
    finally:
        con.close()


def sidecars(path):
    """Which of -wal, -shm, -journal exist beside path."""
    return [s for s in ("-wal", "-shm", "-journal")
            if os.path.exists(path + s)]


# --------------------------------------------------------------- building
BASE_TABLES = ("users", "events", "kv")


def create_db(path, size_mb=50, seed=1, page_size=4096):
    """A WAL-mode database of about size_mb MiB: users, events (rowid tables
    with secondary indexes) and kv (WITHOUT ROWID), half random bytes, half
    compressible text. Deterministic for a seed. Returns its checksums."""
    rng = random.Random(seed)
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA page_size={page_size}")
    con.execute("PRAGMA journal_mode=WAL")
    con.executescript("""
        CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT NOT NULL,
                           email TEXT, created REAL, avatar BLOB);
        CREATE INDEX users_email ON users(email);
        CREATE TABLE events(id INTEGER PRIMARY KEY, user_id INTEGER,
                            kind TEXT, ts REAL, body BLOB);
        CREATE INDEX events_user ON events(user_id, ts);
        CREATE INDEX events_kind ON events(kind);
        CREATE TABLE kv(k TEXT PRIMARY KEY, v BLOB) WITHOUT ROWID;
    """)
    target = size_mb * 1024 * 1024
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot",
             "golf", "hotel", "india", "juliet", "kilo", "lima"]
    uid = eid = 0
    while True:
        con.execute("BEGIN")
        for _ in range(200):
            uid += 1
            con.execute("INSERT INTO users VALUES(?,?,?,?,?)", (
                uid, f"user{uid}", f"u{uid}@example.{rng.choice(words)}",
                1.7e9 + uid, rng.randbytes(rng.randrange(200, 1200))))
            for _ in range(5):
                eid += 1
                text = " ".join(rng.choice(words) for _ in range(
                    rng.randrange(20, 200)))
                con.execute("INSERT INTO events VALUES(?,?,?,?,?)", (
                    eid, uid, rng.choice(words), 1.7e9 + eid / 7,
                    text.encode() + rng.randbytes(rng.randrange(0, 400))))
            con.execute("INSERT INTO kv VALUES(?,?)", (
                f"key-{uid:08d}-{rng.getrandbits(32):08x}",
                rng.randbytes(rng.randrange(50, 500))))
        con.execute("COMMIT")
        pc = con.execute("PRAGMA page_count").fetchone()[0]
        if pc * page_size >= target:
            break
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    return table_checksums(path)


def create_small_db(path, rows=100, seed=1, blob=200):
    """A small WAL-mode database with one table `items`."""
    rng = random.Random(seed)
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE IF NOT EXISTS items(id INTEGER PRIMARY KEY,"
                " label TEXT, data BLOB)")
    with con:
        for i in range(rows):
            con.execute("INSERT INTO items(label, data) VALUES(?,?)",
                        (f"item {i}", rng.randbytes(blob)))
    con.close()


def create_db_with_a_lying_index(path):
    """A WAL database whose pages are all well-formed (quick_check: ok) but
    whose index does not match its table (integrity_check reports the rows
    missing from it): the index was built on column a, then its schema
    entry rewritten to say column b."""
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE t(a INTEGER, b INTEGER)")
    con.executemany("INSERT INTO t VALUES(?, ?)",
                    [(i, 1000 - i) for i in range(200)])
    con.execute("CREATE INDEX t_a ON t(a)")
    con.commit()
    con.execute("PRAGMA writable_schema=ON")
    con.execute("UPDATE sqlite_master SET sql='CREATE INDEX t_a ON t(b)' "
                "WHERE name='t_a'")
    con.commit()
    con.close()
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    assert con.execute("PRAGMA integrity_check").fetchone()[0] != "ok"
    con.close()


def execute(path, sql, params=()):
    con = sqlite3.connect(path, timeout=30)
    try:
        with con:
            con.execute(sql, params)
    finally:
        con.close()


# ----------------------------------------------------------------- writer
# Commit i of seed s (all within one transaction):
#   insert rows id = i*16 + k, k < rows(i), v = blob(s, i, k)
#   update row (i-3)*16 (if i > 3) to v = blob(s, i, 15)
#   delete row (i-5)*16 + 1 (if i > 5, i even; absent rows are a no-op)
#   counter.n = i
ROWS_PER_ID = 16


def _plan(seed, i):
    r = random.Random(seed * 1_000_003 + i)
    nrows = 1 + r.randrange(6)
    sizes = [r.randrange(64, 1500) for _ in range(nrows + 1)]
    return nrows, sizes


def _blob(seed, i, k, size):
    return random.Random((seed * 1_000_003 + i) * 31 + k).randbytes(size)


def writer_ops(seed, i):
    """The statements of commit i: [(sql, params)]."""
    nrows, sizes = _plan(seed, i)
    ops = []
    for k in range(nrows):
        ops.append(("INSERT INTO t(id, v) VALUES(?,?)",
                    (i * ROWS_PER_ID + k, _blob(seed, i, k, sizes[k]))))
    if i > 3:
        ops.append(("UPDATE t SET v=? WHERE id=?",
                    (_blob(seed, i, 15, sizes[-1]), (i - 3) * ROWS_PER_ID)))
    if i > 5 and i % 2 == 0:
        ops.append(("DELETE FROM t WHERE id=?", ((i - 5) * ROWS_PER_ID + 1,)))
    ops.append(("UPDATE counter SET n=? WHERE k=0", (i,)))
    return ops


def expected_t_checksum(seed, n):
    """(rows, sha256) of table t after commit n, as table_checksums gives."""
    rows = {}
    for i in range(1, n + 1):
        for sql, p in writer_ops(seed, i):
            if sql.startswith("INSERT"):
                rows[p[0]] = p[1]
            elif sql.startswith("UPDATE t"):
                if p[1] in rows:
                    rows[p[1]] = p[0]
            elif sql.startswith("DELETE"):
                rows.pop(p[0], None)
    return hash_rows((k, k, rows[k]) for k in sorted(rows))


def prepare_writer_tables(path):
    con = sqlite3.connect(path, timeout=30)
    con.execute("PRAGMA journal_mode=WAL")
    with con:
        con.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY,"
                    " v BLOB)")
        con.execute("CREATE TABLE IF NOT EXISTS counter(k INTEGER PRIMARY KEY"
                    " CHECK (k = 0), n INTEGER NOT NULL)")
        con.execute("INSERT OR IGNORE INTO counter VALUES(0, 0)")
    con.close()


def counter_value(path):
    con = _connect(path)
    try:
        return con.execute("SELECT n FROM counter WHERE k=0").fetchone()[0]
    finally:
        con.close()


CHECKPOINT_MODES = ("PASSIVE", "FULL", "RESTART", "TRUNCATE")


def _wal_size(path):
    try:
        return os.path.getsize(path + "-wal")
    except OSError:
        return -1


def _writer_main(path, seed, log_path, interval, max_commits,
                 checkpoint_every, modes=("PASSIVE",), rate=0.0,
                 checkpoint_busy_ms=0):
    """Commit until SIGTERM (or max_commits), sleeping `interval` after each;
    with rate > 0 instead paced to `rate` commits/s (a stall is caught up
    for at most 0.5 s worth of commits). Every checkpoint_every commits a
    `PRAGMA wal_checkpoint(MODE)`, MODE cycling through `modes`, with a
    busy timeout of checkpoint_busy_ms while it runs (0: the connection's
    30 s); each is logged as
        # ckpt I MODE BUSY LOG CHECKPOINTED WAL_BEFORE WAL_AFTER SECONDS
    (or "# ckpt I MODE error MESSAGE" if it raised)."""
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    con = sqlite3.connect(path, timeout=30, isolation_level=None)
    con.execute("PRAGMA busy_timeout=30000")
    start = con.execute("SELECT n FROM counter WHERE k=0").fetchone()[0]
    i = start
    nckpt = 0
    t_next = time.monotonic()
    with open(log_path, "a", buffering=1) as log:
        log.write(f"# start {os.getpid()}\n")
        while not stop and (max_commits is None or i - start < max_commits):
            i += 1
            con.execute("BEGIN IMMEDIATE")
            for sql, p in writer_ops(seed, i):
                con.execute(sql, p)
            con.execute("COMMIT")
            log.write(f"{i} {time.time():.6f}\n")
            if checkpoint_every and i % checkpoint_every == 0:
                mode = modes[nckpt % len(modes)]
                nckpt += 1
                if checkpoint_busy_ms:
                    con.execute(f"PRAGMA busy_timeout={checkpoint_busy_ms}")
                before, t = _wal_size(path), time.monotonic()
                try:
                    row = con.execute(
                        f"PRAGMA wal_checkpoint({mode})").fetchone()
                    log.write(f"# ckpt {i} {mode} {row[0]} {row[1]} "
                              f"{row[2]} {before} {_wal_size(path)} "
                              f"{time.monotonic() - t:.3f}\n")
                except sqlite3.Error as e:
                    log.write(f"# ckpt {i} {mode} error "
                              f"{str(e).replace(chr(10), ' ')}\n")
                if checkpoint_busy_ms:
                    con.execute("PRAGMA busy_timeout=30000")
            if rate:
                t_next += 1.0 / rate
                now = time.monotonic()
                if t_next > now:
                    time.sleep(t_next - now)
                elif now - t_next > 0.5:
                    t_next = now - 0.5
            elif interval:
                time.sleep(interval)
    con.close()


def _child(args):
    """Run `python -m walrust_testlib.dbtools ARGS` in a new process."""
    env = dict(os.environ)
    env["PYTHONPATH"] = LIB_DIR + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.Popen([sys.executable, "-m", "walrust_testlib.dbtools",
                             *map(str, args)], env=env,
                            stdin=subprocess.DEVNULL)


class Writer:
    """Commits to `path` from another process until stopped.

        with Writer(db, seed=3) as w:
            w.wait_for(20)             # at least 20 commits done
            n0 = w.committed()         # last commit logged so far
    """

    def __init__(self, path, seed=1, interval=0.002, max_commits=None,
                 checkpoint_every=0, log_path=None, checkpoint_modes=None,
                 rate=None, checkpoint_busy_ms=0):
        """interval: sleep after each commit; rate: instead, commits/s to
        pace to. checkpoint_every: commits between the writer's own
        checkpoints, cycling through checkpoint_modes (default PASSIVE
        only; dbtools.CHECKPOINT_MODES for all four), each with a busy
        timeout of checkpoint_busy_ms (0: 30 s)."""
        self.path = path
        self.seed = seed
        self.log_path = log_path or path + ".writer.log"
        modes = list(checkpoint_modes or ["PASSIVE"])
        assert modes and all(m in CHECKPOINT_MODES for m in modes), modes
        self.args = ["write", path, seed, self.log_path, interval,
                     max_commits or 0, checkpoint_every, ",".join(modes),
                     rate or 0, checkpoint_busy_ms]
        prepare_writer_tables(path)
        self.proc = None

    def start(self):
        self.proc = _child(self.args)
        return self

    def stop(self, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise RuntimeError("writer did not stop")
        if rc != 0:
            raise RuntimeError(f"writer exited with {rc}")

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        if self.proc is not None and self.proc.returncode is None:
            self.stop()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def commits(self):
        """[(i, unix time)] of every logged commit."""
        try:
            with open(self.log_path) as f:
                return [(int(a), float(b)) for a, b in
                        (ln.split() for ln in f
                         if ln.endswith("\n") and not ln.startswith("#"))]
        except FileNotFoundError:
            return []

    def checkpoints(self):
        """The writer's own checkpoints: [(i, mode, busy, log, checkpointed,
        wal bytes before, after, seconds)], or (i, mode, "error", message)
        for one that raised."""
        out = []
        try:
            with open(self.log_path) as f:
                for ln in f:
                    if not ln.startswith("# ckpt ") or not ln.endswith("\n"):
                        continue
                    p = ln.split(None, 5)[2:]  # i, mode, busy|error, rest
                    if p[2] == "error":
                        out.append((int(p[0]), p[1], "error",
                                    p[3].strip() if len(p) > 3 else ""))
                        continue
                    p = ln.split()[2:]
                    out.append((int(p[0]), p[1], *map(int, p[2:7]),
                                float(p[7])))
        except FileNotFoundError:
            pass
        return out

    def committed(self):
        c = self.commits()
        return c[-1][0] if c else 0

    def wait_for(self, n, timeout=30):
        deadline = time.monotonic() + timeout
        while self.committed() < n:
            if not self.alive():
                raise RuntimeError(f"writer died ({self.proc.returncode})")
            if time.monotonic() > deadline:
                raise TimeoutError(f"writer made {self.committed()} of {n}")
            time.sleep(0.01)


def crash_with_wal(path, rows=10):
    """Leave `path` with a non-empty -wal, as an application that crashed
    mid-flight would: write in WAL mode without checkpointing, then die."""
    p = _child(["crash", path, rows])
    assert p.wait(30) == 0
    assert os.path.getsize(path + "-wal") > 0


def _crash_main(path, rows):
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA wal_autocheckpoint=0")
    con.execute("CREATE TABLE IF NOT EXISTS crashed(id INTEGER PRIMARY KEY,"
                " v TEXT)")
    for i in range(rows):
        con.execute("INSERT INTO crashed(v) VALUES(?)", (f"row {i}",))
    os._exit(0)  # no close: no checkpoint, the -wal stays


if __name__ == "__main__":
    if sys.argv[1] == "write":
        _path, _seed, _log, _interval, _max, _ckpt = sys.argv[2:8]
        _modes, _rate, _busy = sys.argv[8:11]
        _writer_main(_path, int(_seed), _log, float(_interval),
                     int(_max) or None, int(_ckpt),
                     tuple(_modes.split(",")), float(_rate), int(_busy))
    elif sys.argv[1] == "crash":
        _crash_main(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit(f"usage: {sys.argv[0]} write|crash ...")
