#!/usr/bin/env python3
"""bench/replication.py: continuous replication against SeaweedFS.

    python3 bench/replication.py [--quick] [--no-litestream]

In one run, against SeaweedFS on loopback (S3, SigV4), for walrustd and,
side by side, Litestream 0.5 (`litestream replicate -config`, same
databases, same bucket, another prefix):

1. replication lag, commit -> L0 object visible in the bucket (p50/p99) at
   the default 1 s sync interval: a writer process commits ~10 tx/s for 60 s
   (15 s with --quick) and records, for each commit, its wall time and its
   exact WAL position (salts + end offset, read from the -shm wal-index
   header right after COMMIT); a poller lists the L0 prefix every 50 ms. A
   commit is visible when the first L0 file whose WAL range (LTX header:
   salts, wal offset + size) reaches its position is listed;
2. tree RSS and PSS (walrustd supervisor + worker + jobs; Litestream's one
   process) with 1, 10, 100, 1000 watched databases (1, 10, 100 with
   --quick) from a generated config file: idle after settling, and while a
   writer process commits 1 tx/s to every database (round robin);
3. idle CPU with 1000 databases (100 with --quick) over 60 s (20 s);
4. application write throughput (small INSERT transactions, WAL,
   synchronous=NORMAL, 10 s) with no replicator, with walrustd and with
   Litestream attached; medians of 3 interleaved runs; ratio.

Results: bench/results/replication.json and .md (replication-quick.* with
--quick), and the tables on stdout. Python 3 + boto3; reuses bench/core.py
(SeaweedFS startup, process-tree walk). See bench/README.md.
"""
import argparse
import datetime
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import core  # noqa: E402  (SeaweedFS, process tree, machine info)

BUCKET, ACCESS_KEY, SECRET_KEY, REGION = (core.BUCKET, core.ACCESS_KEY,
                                          core.SECRET_KEY, core.REGION)
MiB = 1 << 20
LAG_P99_TARGET_S = 1.5
RSS_1_TARGET_KB = 6 * 1024
RSS_1000_TARGET_KB = 64 * 1024
CPU_TARGET_PCT = 1.0
TP_RATIO_TARGET = 0.95
TCK = os.sysconf("SC_CLK_TCK")
CPU_START_S = 45.0  # idle CPU window: this long after the replicator starts
TOOLS = ("walrust", "litestream")


def log(msg):
    print(f"[replication {time.strftime('%H:%M:%S')}] {msg}",
          file=sys.stderr, flush=True)


def pct(xs, p):
    """Percentile with linear interpolation (numpy's default)."""
    if not xs:
        return None
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def steady_cpu_pct(series):
    """Median over the ~5 s intervals of a cumulative CPU series
    [[t, cpu_s], ...] of the CPU rate, % of one core: idle cost without
    the one-off waves (compaction at 30 s / 5 min / 1 h boundaries, the
    first checkpoint a minute after start) that a 60 s window may or may
    not contain."""
    rates = [100 * (c1 - c0) / (t1 - t0) for (t0, c0), (t1, c1)
             in zip(series, series[1:]) if t1 - t0 >= 1]
    return statistics.median(rates) if rates else None


def dist(xs):
    if not xs:
        return None
    return {"n": len(xs), "min": min(xs), "p50": pct(xs, 50),
            "p90": pct(xs, 90), "p99": pct(xs, 99), "max": max(xs),
            "mean": statistics.fmean(xs)}


# ------------------------------------------------- writer processes (roles)
def wal_position(shm_path):
    """(salts as 8 raw bytes, WAL byte offset just after the last committed
    frame) from the wal-index header in -shm. The header is kept twice
    (bytes 0..48 and 48..96); a torn read shows them unequal, so retry.
    mxFrame at 16 and szPage at 14 are native-endian; aSalt at 32 is a copy
    of the WAL header's salt bytes (what the LTX header's salts hold)."""
    for _ in range(100):
        with open(shm_path, "rb") as f:
            h = f.read(96)
        if len(h) == 96 and h[:48] == h[48:96]:
            mx = int.from_bytes(h[16:20], sys.byteorder)
            sz = int.from_bytes(h[14:16], sys.byteorder)
            sz = 65536 if sz == 1 else sz
            return h[32:40].hex(), 32 + mx * (24 + sz)
    return None, None


def role_lag_writer(db, rate, seconds, out):
    """Commit one row (sequence number, commit time) at Poisson arrivals of
    mean `rate` per second (a fixed period would lock in phase with the
    replicator's 1 s timer and sample only a few offsets); record per
    commit: seq, wall time before and after COMMIT, WAL position."""
    import random
    rng = random.Random(12345)
    c = sqlite3.connect(db, isolation_level=None, timeout=30)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("PRAGMA synchronous=NORMAL")
    shm = db + "-shm"
    recs = []
    t0 = time.time() + 0.05
    seq = 0
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
        ta = time.time()  # COMMIT returned (autocommit statement)
        salts, end = wal_position(shm)
        recs.append([seq, tb, ta, salts, end])
        seq += 1
    c.close()
    with open(out, "w") as f:
        json.dump(recs, f)


def role_tp_writer(db, seconds):
    """Small INSERT transactions as fast as possible for `seconds`."""
    c = sqlite3.connect(db, isolation_level=None, timeout=30)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("PRAGMA synchronous=NORMAL")
    ins = "INSERT INTO t(v) VALUES (?)"
    n = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    while True:
        for _ in range(50):
            c.execute(ins, ("payload-%d" % n,))
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
    conns = []
    for p in paths:
        c = sqlite3.connect(p, isolation_level=None, timeout=30)
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("PRAGMA synchronous=NORMAL")
        conns.append(c)
    n = len(conns)
    t0 = time.time()
    i = 0
    late_max = 0.0
    busy = 0
    while True:
        due = t0 + i / n
        if due - t0 >= seconds:
            break
        now = time.time()
        if due > now:
            time.sleep(due - now)
        else:
            late_max = max(late_max, now - due)
        try:
            conns[i % n].execute("INSERT INTO t(v) VALUES (?)",
                                 ("w%d" % i,))
        except sqlite3.OperationalError:  # locked past the busy timeout
            busy += 1
        i += 1
    el = time.time() - t0
    for c in conns:
        c.close()
    print(json.dumps({"tx": i - busy, "seconds": el,
                      "tx_per_s": (i - busy) / el, "busy_errors": busy,
                      "max_late_s": late_max}))


def run_role(argv):
    role = argv[0]
    if role == "_lag-writer":
        role_lag_writer(argv[1], float(argv[2]), float(argv[3]), argv[4])
    elif role == "_tp-writer":
        role_tp_writer(argv[1], float(argv[2]))
    elif role == "_load-writer":
        role_load_writer(argv[1], float(argv[2]))
    else:
        sys.exit(f"unknown role {role}")


# ------------------------------------------------------------- databases
def create_small_db(path, rows=3):
    for s in ("", "-wal", "-shm"):
        if os.path.exists(path + s):
            os.unlink(path + s)
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    c.execute("CREATE TABLE seq(seq INTEGER PRIMARY KEY, t_commit REAL, "
              "pad TEXT)")
    for i in range(rows):
        c.execute("INSERT INTO t(v) VALUES (?)", (f"row {i}",))
    c.close()


# ------------------------------------------------------------ replicators
class Replicator:
    """walrustd -c FILE or litestream replicate -config FILE over a list of
    databases, each replicated to s3://BUCKET/<prefix>/<db name>."""

    def __init__(self, tool, workdir, tag, dbs, prefix, endpoint, a):
        self.tool, self.dbs, self.prefix = tool, dbs, prefix
        self.dir = os.path.join(workdir, f"{tool}-{tag}")
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        self.cfg = os.path.join(self.dir, "replicate.yml")
        self.log_path = os.path.join(self.dir, f"{tool}.log")
        self.sock = os.path.join(self.dir, "walrustd.sock")
        self.a = a
        self.names = [self.name(p) for p in dbs]
        lines = ["dbs:"]
        for p, n in zip(dbs, self.names):
            lines += [f"  - path: {p}",
                      "    replica:",
                      f"      url: s3://{BUCKET}/{prefix}/{n}",
                      f"      endpoint: {endpoint}",
                      "      region: " + REGION,
                      "      force-path-style: true",
                      f"      access-key-id: {ACCESS_KEY}",
                      f"      secret-access-key: {SECRET_KEY}"]
        with open(self.cfg, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY,
                        AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_REGION=REGION,
                        WALRUST_STATE_DIR=os.path.join(self.dir, "state"))
        for k in ("AWS_CA_BUNDLE", "AWS_PROFILE", "AWS_ENDPOINT_URL_S3"):
            self.env.pop(k, None)
        os.makedirs(self.env["WALRUST_STATE_DIR"])
        self.proc = None

    @staticmethod
    def name(path):
        return os.path.splitext(os.path.basename(path))[0]

    def start(self):
        if self.tool == "walrust":
            cmd = [self.a.walrustd, "--socket", self.sock, "-c", self.cfg,
                   "--log-level", "info"]
        else:
            cmd = [self.a.litestream, "replicate", "-config", self.cfg]
        lf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=lf, stderr=lf,
                                     stdin=subprocess.DEVNULL, env=self.env,
                                     start_new_session=True)
        lf.close()
        if self.tool == "walrust":
            deadline = time.monotonic() + 30
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"walrustd exited: "
                                       f"{core.file_tail(self.log_path)}")
                if core.run(self.ctl("hello"), env=self.env,
                            timeout=30).returncode == 0:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("walrustd did not answer hello")
                time.sleep(0.1)

    def ctl(self, *args):
        return [self.a.walrustctl, "--socket", self.sock, "--json",
                "--quiet", *args]

    def status(self):
        if self.tool != "walrust":
            return None
        r = core.run(self.ctl("status"), env=self.env, timeout=60)
        try:
            return json.loads(r.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if not self.alive():
            return
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def l0_names(s3, prefix):
    """Database names under prefix/ that have at least one L0 object."""
    names, token = set(), None
    while True:
        kw = {"Bucket": BUCKET, "Prefix": prefix + "/", "MaxKeys": 1000}
        if token:
            kw["ContinuationToken"] = token
        r = s3.list_objects_v2(**kw)
        for o in r.get("Contents", []):
            parts = o["Key"][len(prefix) + 1:].split("/")
            if len(parts) == 3 and parts[1] == "0000":
                names.add(parts[0])
        if not r.get("IsTruncated"):
            return names
        token = r["NextContinuationToken"]


def wait_replicated(rep, s3, timeout):
    """Until every database has its first L0 object in the bucket."""
    t0 = time.monotonic()
    want = set(rep.names)
    while True:
        if not rep.alive():
            raise RuntimeError(f"{rep.tool} exited:\n"
                               f"{core.file_tail(rep.log_path)}")
        have = l0_names(s3, rep.prefix) & want
        if have == want:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"{rep.tool}: {len(have)}/{len(want)} "
                               f"databases replicated after {timeout} s")
        time.sleep(0.5)


# ----------------------------------------------------- process sampling
def proc_info(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f.read().decode("ascii", "replace").splitlines():
                k, _, v = line.partition(":")
                if k in ("VmRSS", "RssAnon", "RssFile", "RssShmem",
                         "VmHWM", "Threads"):
                    out[k] = int(v.split()[0])
                elif k == "Name":
                    out[k] = v.strip()
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f.read().decode("ascii", "replace").splitlines():
                if line.startswith("Pss:"):
                    out["Pss"] = int(line.split()[1])
                    break
        with open(f"/proc/{pid}/stat", "rb") as f:
            st = f.read()
        fields = st[st.rindex(b")") + 2:].split()
        out["cpu_s"] = (int(fields[11]) + int(fields[12])) / TCK
        out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, ValueError, IndexError):
        pass
    return out if "VmRSS" in out else None


class Sampler(threading.Thread):
    """Every `interval` s, over root and all its descendants: sums of
    VmRSS, Pss, RssAnon, RssFile, RssShmem, and each process's figures."""

    def __init__(self, root, interval=0.5):
        super().__init__(daemon=True)
        self.walk = core.TreeRss(root)  # only for its /proc tree walk
        self.interval = interval
        self.stop_ev = threading.Event()
        self.series = []

    def snap(self):
        procs = {}
        for pid in self.walk._tree():
            st = proc_info(pid)
            if st:
                procs[f"{pid} {st.get('Name', '?')}"] = st
        tot = {k: sum(p.get(k, 0) for p in procs.values())
               for k in ("VmRSS", "Pss", "RssAnon", "RssFile", "RssShmem",
                         "cpu_s", "fds")}
        return {"t": time.time(), "n": len(procs), **tot, "procs": procs}

    def run(self):
        while not self.stop_ev.is_set():
            self.series.append(self.snap())
            self.stop_ev.wait(self.interval)

    def stop(self):
        self.stop_ev.set()
        self.join()
        self.series.append(self.snap())
        return self.summary()

    def summary(self):
        s = self.series
        out = {"samples": len(s)}
        for k in ("VmRSS", "Pss", "RssAnon", "RssFile", "RssShmem", "fds"):
            xs = [x[k] for x in s]
            out[k] = {"median": statistics.median(xs), "max": max(xs)}
        last = s[-1]
        out["processes"] = {
            who: {k: v for k, v in p.items() if k != "Name"}
            for who, p in last["procs"].items()}
        return out


# --------------------------------------------------------------- 1. lag
class Poller(threading.Thread):
    """list_objects_v2 of one L0 prefix every `period` s (StartAfter the
    newest key seen); records when each key first showed up."""

    def __init__(self, s3, prefix, period=0.05):
        super().__init__(daemon=True)
        self.s3, self.prefix, self.period = s3, prefix, period
        self.stop_ev = threading.Event()
        self.seen = {}  # key -> (t_listed_before, t_visible)
        self.last_key = ""
        self.poll_s = []
        self.errors = 0

    def run(self):
        prev_start = time.time()
        nxt = time.monotonic()
        while not self.stop_ev.is_set():
            t0 = time.time()
            try:
                kw = {"Bucket": BUCKET, "Prefix": self.prefix}
                if self.last_key:
                    kw["StartAfter"] = self.last_key
                r = self.s3.list_objects_v2(**kw)
                t1 = time.time()
                for o in r.get("Contents", []):
                    k = o["Key"]
                    if k not in self.seen:
                        self.seen[k] = (prev_start, t1)
                    self.last_key = max(self.last_key, k)
                self.poll_s.append(t1 - t0)
            except Exception:  # keep polling; counted
                self.errors += 1
            prev_start = t0
            nxt += self.period
            d = nxt - time.monotonic()
            if d > 0:
                self.stop_ev.wait(d)
            else:
                nxt = time.monotonic()


def ltx_header(s3, key):
    h = s3.get_object(Bucket=BUCKET, Key=key, Range="bytes=0-99")[
        "Body"].read()
    if h[:4] != b"LTX1":
        raise RuntimeError(f"{key}: not an LTX file")
    return {"min_txid": int.from_bytes(h[16:24], "big"),
            "max_txid": int.from_bytes(h[24:32], "big"),
            "ts_ms": int.from_bytes(h[32:40], "big"),
            "wal_offset": int.from_bytes(h[48:56], "big"),
            "wal_size": int.from_bytes(h[56:64], "big"),
            "salts": h[64:72].hex()}


def lag_analysis(commits, files):
    """commits: [seq, t_before, t_commit, salts, wal_end]; files: L0 files
    (header + t_visible + t_prev) sorted by TXID.

    Method A (exact, primary): a commit is in the replica once an L0 file
    covering its WAL position is visible: the first file, in TXID order,
    with the same salts and wal_offset + wal_size >= the commit's WAL end,
    or of a later WAL generation (the chain never skips: a restarted WAL
    is captured from its start, or as a full-database file). Generations
    are ordered as the writer saw them.
    Method B (cross-check): the first L0 file whose header timestamp
    (capture time, ms) is >= the commit time.
    lag = t_visible (end of the first listing that showed the file) -
    t_commit (COMMIT returned)."""
    gen_rank = {}
    for c in commits:
        if c[3] is not None and c[3] not in gen_rank:
            gen_rank[c[3]] = len(gen_rank)
    keyed, cur = [], -1
    for f in files:
        r = gen_rank.get(f["salts"])
        if f["wal_size"] and r is not None:
            cur = max(cur, r)
            keyed.append(((r, f["wal_offset"] + f["wal_size"]), f))
        else:  # a generation the writer never saw: covers what came before
            keyed.append(((cur + 0.5, float("inf")), f))
    lag_a, lag_b, cap_a, up_a, miss_a, miss_b, files_used = \
        [], [], [], [], 0, 0, set()
    for c in commits:
        seq, tb, ta, salts, end = c
        pos = (gen_rank.get(salts, -1), end)
        fa = next((f for k, f in keyed if k >= pos), None)
        if fa is None or salts is None:
            miss_a += 1
        else:
            lag_a.append(fa["t_visible"] - ta)
            cap_a.append(fa["ts_ms"] / 1000 - ta)
            up_a.append(fa["t_visible"] - fa["ts_ms"] / 1000)
            files_used.add(fa["max_txid"])
        fb = next((f for f in files if f["ts_ms"] / 1000 >= ta), None)
        if fb is None:
            miss_b += 1
        else:
            lag_b.append(fb["t_visible"] - ta)
    return {
        "lag_s": dist(lag_a),
        "lag_by_header_timestamp_s": dist(lag_b),
        "commit_to_capture_s": dist(cap_a),
        "capture_to_visible_s": dist(up_a),
        "commits": len(commits), "unmatched_commits": miss_a,
        "unmatched_commits_by_timestamp": miss_b,
        "l0_files_carrying_commits": len(files_used),
    }


def lag_run(tool, workdir, weed, a):
    d = os.path.join(workdir, f"lag-{tool}")
    os.makedirs(d, exist_ok=True)
    db = os.path.join(d, "lag.db")
    create_small_db(db)
    prefix = f"lag-{tool}"
    rep = Replicator(tool, workdir, "lag", [db], prefix, weed.endpoint, a)
    rep.start()
    try:
        wait_replicated(rep, weed.s3, 60)
        l0 = f"{prefix}/lag/0000/"
        poller = Poller(weed.s3, l0, 0.05)
        poller.start()
        time.sleep(1.5)
        out = os.path.join(d, "commits.json")
        log(f"lag/{tool}: writer {a.lag_rate:g} tx/s for {a.lag_s:g} s, "
            f"poller every 50 ms on {l0}")
        r = core.run([sys.executable, __file__, "_lag-writer", db,
                      str(a.lag_rate), str(a.lag_s), out],
                     timeout=a.lag_s + 120)
        if r.returncode != 0:
            raise RuntimeError(f"lag writer: {r.stderr}")
        time.sleep(3.0)  # one sync interval + upload + a poll, with margin
        poller.stop_ev.set()
        poller.join()
        with open(out) as f:
            commits = json.load(f)
        files = []
        for k, (tp, tv) in poller.seen.items():
            h = ltx_header(weed.s3, k)
            files.append({"key": k, "t_prev": tp, "t_visible": tv, **h})
        files.sort(key=lambda f: f["max_txid"])
        res = lag_analysis(commits, files)
        res["poll_s"] = dist(poller.poll_s)
        res["poll_errors"] = poller.errors
        res["l0_files_seen"] = len(files)
        res["writer_tx_per_s"] = (len(commits) / (commits[-1][2] -
                                                  commits[0][1])
                                  if len(commits) > 1 else None)
        g = {c[3] for c in commits}
        res["wal_generations"] = len(g)
        res["status"] = rep.status()
        la = res["lag_s"] or {}
        log(f"lag/{tool}: {res['commits']} commits, {len(files)} L0 files; "
            f"p50 {la.get('p50', 0):.3f} s, p99 {la.get('p99', 0):.3f} s, "
            f"max {la.get('max', 0):.3f} s; unmatched "
            f"{res['unmatched_commits']}; list {1000 * pct(poller.poll_s, 50):.1f}"
            f" ms median")
        return res
    finally:
        rep.stop()


# -------------------------------------------------- 2./3. scale, idle CPU
def scale_run(tool, n, workdir, weed, a, cpu_s):
    d = os.path.join(workdir, f"scale-{tool}-{n}")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    dbs = [os.path.join(d, f"d{i:05d}.db") for i in range(n)]
    for p in dbs:
        create_small_db(p)
    listfile = os.path.join(d, "dbs.txt")
    with open(listfile, "w") as f:
        f.write("\n".join(dbs) + "\n")
    prefix = f"scale-{tool}-{n}"
    rep = Replicator(tool, workdir, f"scale-{n}", dbs, prefix, weed.endpoint,
                     a)
    res = {"tool": tool, "dbs": n}
    t0 = time.monotonic()
    start_wall = time.time()
    rep.start()
    try:
        res["ready_s"] = round(wait_replicated(rep, weed.s3, 120 + n * 0.3),
                               2)
        res["start_to_ready_s"] = round(time.monotonic() - t0, 2)
        log(f"scale/{tool}/{n}: all replicated after {res['ready_s']} s; "
            f"settling {a.settle_s:g} s")
        time.sleep(a.settle_s)
        sm = Sampler(rep.proc.pid, 0.5)
        sm.start()
        time.sleep(a.idle_sample_s)
        res["idle"] = sm.stop()
        log(f"scale/{tool}/{n}: idle tree RSS "
            f"{res['idle']['VmRSS']['median'] / 1024:.1f} MiB, PSS "
            f"{res['idle']['Pss']['median'] / 1024:.1f} MiB, "
            f"{len(res['idle']['processes'])} processes")
        if cpu_s:
            # Start the window CPU_START_S after the replicator started:
            # its first L1 compaction (30 s after start) compacts the
            # startup file of every database at once, a one-off that is
            # reported apart (pre_window_cpu_s) rather than as idle cost.
            p0 = Sampler(rep.proc.pid).snap()
            wait = CPU_START_S - (time.monotonic() - t0)
            if wait > 0:
                time.sleep(wait)
            sm = Sampler(rep.proc.pid, 5.0)
            c0 = sm.snap()
            pre = round(c0["cpu_s"] - p0["cpu_s"], 3)
            sm.start()
            w0 = time.monotonic()
            time.sleep(cpu_s)
            s = sm.stop()
            c1 = sm.series[-1]
            wall = time.monotonic() - w0
            per = {}
            for who, p in c1["procs"].items():
                if who in c0["procs"]:
                    per[who] = round(p["cpu_s"] - c0["procs"][who]["cpu_s"],
                                     3)
            cpu = sum(per.values())
            res["idle_cpu"] = {
                "window_starts_s_after_start": round(c0["t"] - start_wall,
                                                     1),
                "pre_window_cpu_s": pre,
                "wall_s": round(wall, 2), "cpu_s": round(cpu, 3),
                "pct_of_one_core": 100 * cpu / wall,
                "us_per_db_per_s": 1e6 * cpu / wall / n,
                "by_process": per, "rss": s,
                # cumulative CPU seconds of the tree every ~5 s: spikes
                # (checkpoints, compaction, retention) show as steps
                "cpu_series": [[round(x["t"] - c0["t"], 1),
                                round(x["cpu_s"] - c0["cpu_s"], 3)]
                               for x in sm.series]}
            log(f"scale/{tool}/{n}: idle CPU {cpu:.2f} s over {wall:.0f} s"
                f" = {100 * cpu / wall:.2f}% of a core")
        # under load: 1 tx/s per database
        sm = Sampler(rep.proc.pid, 0.5)
        sm.start()
        c0 = sm.snap()
        w = subprocess.Popen([sys.executable, __file__, "_load-writer",
                              listfile, str(a.load_s)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        out, err = w.communicate(timeout=a.load_s + 300)
        if w.returncode != 0:
            raise RuntimeError(f"load writer: {err}")
        s = sm.stop()
        c1 = sm.series[-1]
        res["load"] = s
        res["load_writer"] = json.loads(out.strip().splitlines()[-1])
        res["load_cpu_s"] = round(c1["cpu_s"] - c0["cpu_s"], 3)
        res["load_cpu_pct"] = 100 * res["load_cpu_s"] / res[
            "load_writer"]["seconds"]
        st = rep.status()
        if st:
            dbs_st = st.get("databases", [])
            res["after_load_status"] = {
                "databases": len(dbs_st),
                "max_lag_ms": max((x.get("lag_ms") or 0 for x in dbs_st),
                                  default=0),
                "backlog_files": sum((x.get("captured_txid") or 0)
                                     - (x.get("txid") or 0) for x in dbs_st),
                "errors": sum(1 for x in dbs_st if x.get("last_error")),
                "states": sorted({x.get("state") for x in dbs_st}),
            }
        log(f"scale/{tool}/{n}: load {res['load_writer']['tx_per_s']:.0f} "
            f"tx/s: tree RSS max {s['VmRSS']['max'] / 1024:.1f} MiB, PSS max"
            f" {s['Pss']['max'] / 1024:.1f} MiB, CPU "
            f"{res['load_cpu_pct']:.0f}% of a core"
            + (f"; after: {res['after_load_status']}"
               if "after_load_status" in res else ""))
        return res
    finally:
        rep.stop()
        shutil.rmtree(d, ignore_errors=True)


# ------------------------------------------------------- 4. throughput
def tp_run(mode, rep_no, workdir, weed, a):
    d = os.path.join(workdir, f"tp-{mode}-{rep_no}")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    db = os.path.join(d, "tp.db")
    create_small_db(db)
    rep = None
    res = {"mode": mode, "rep": rep_no}
    try:
        if mode != "none":
            rep = Replicator(mode, workdir, f"tp-{rep_no}", [db],
                             f"tp-{mode}-{rep_no}", weed.endpoint, a)
            rep.start()
            wait_replicated(rep, weed.s3, 60)
            time.sleep(1.0)
            c0 = Sampler(rep.proc.pid).snap()
        r = core.run([sys.executable, __file__, "_tp-writer", db,
                      str(a.tp_s)], timeout=a.tp_s + 120)
        if r.returncode != 0:
            raise RuntimeError(f"tp writer: {r.stderr}")
        res.update(json.loads(r.stdout.strip().splitlines()[-1]))
        res["wal_bytes_after"] = (os.path.getsize(db + "-wal")
                                  if os.path.exists(db + "-wal") else 0)
        if rep:
            c1 = Sampler(rep.proc.pid).snap()
            res["replicator_cpu_s"] = round(c1["cpu_s"] - c0["cpu_s"], 3)
            if mode == "walrust":  # how long until the replica caught up
                t = time.monotonic()
                s = core.run(rep.ctl("sync", db, "--timeout", "120"),
                             env=rep.env, timeout=180)
                res["sync_after_s"] = round(time.monotonic() - t, 2)
                res["sync_ok"] = s.returncode == 0
        log(f"tp/{mode}/{rep_no}: {res['tx_per_s']:.0f} tx/s"
            + (f", replicator CPU {res['replicator_cpu_s']:.1f} s"
               if rep else "")
            + (f", sync after {res['sync_after_s']} s"
               if "sync_after_s" in res else ""))
        return res
    finally:
        if rep:
            rep.stop()
        shutil.rmtree(d, ignore_errors=True)


# ----------------------------------------------------------- the report
def f1(x, nd=1):
    return "-" if x is None else f"{x:.{nd}f}"


def mib(kb):
    return None if kb is None else kb / 1024


def render_md(res):
    m = res["machine"]
    lines = [f"# walrust continuous replication benchmark "
             f"({res['started']})\n"]
    lines.append(
        f"SeaweedFS S3 on loopback (SigV4); default 1 s sync interval. "
        f"Machine: {m['nproc']} CPUs, {m['cpu_model']}, kernel "
        f"{m['kernel']}; {m['walrustd']}"
        + (f" (built {m['walrustd_mtime']}, tree at {m['git_head']})"
           if m.get("git_head") else "")
        + ", Litestream "
        f"{res.get('litestream_version', '-')}, SeaweedFS "
        f"{m['seaweedfs']}, SQLite {m['sqlite']}. Command: "
        f"`{res['command']}`; {res['wall_s'] / 60:.1f} min.\n")
    tools = res["tools"]
    S = res["summary"]

    def cell(tool, key, fn):
        v = S.get(tool, {}).get(key)
        return fn(v) if v is not None else "-"

    hdr = "| metric | " + " | ".join(tools) + " | target | walrust ok |"
    lines += [hdr, "|---" * (len(tools) + 3) + "|"]

    def row(label, key, fn, target="", ok=None):
        cells = [cell(t, key, fn) for t in tools]
        okc = "" if ok is None else ("yes" if ok else "NO")
        lines.append(f"| {label} | " + " | ".join(cells)
                     + f" | {target} | {okc} |")

    w = S.get("walrust", {})
    row("lag p50, commit -> visible (s)", "lag_p50_s", lambda v: f"{v:.3f}")
    row("lag p99 (s)", "lag_p99_s", lambda v: f"{v:.3f}",
        f"< {LAG_P99_TARGET_S}", w.get("lag_p99_s") is not None
        and w["lag_p99_s"] < LAG_P99_TARGET_S)
    row("lag max (s)", "lag_max_s", lambda v: f"{v:.3f}")
    for n in res["scale_ns"]:
        tgt = ("<= 6" if n == 1 else "<= 64" if n == 1000 else "")
        lim = (RSS_1_TARGET_KB if n == 1 else RSS_1000_TARGET_KB
               if n == 1000 else None)
        v = w.get(f"idle_rss_kb_{n}")
        row(f"RSS sum, {n} db idle (MiB)", f"idle_rss_kb_{n}",
            lambda v: f1(mib(v)), tgt,
            None if lim is None or v is None else v <= lim)
        row(f"PSS sum, {n} db idle (MiB)", f"idle_pss_kb_{n}",
            lambda v: f1(mib(v)))
        v = w.get(f"load_rss_kb_{n}")
        row(f"RSS sum, {n} db at 1 tx/s each, max (MiB)",
            f"load_rss_kb_{n}", lambda v: f1(mib(v)), tgt,
            None if lim is None or v is None else v <= lim)
        row(f"PSS sum, {n} db at 1 tx/s each, max (MiB)",
            f"load_pss_kb_{n}", lambda v: f1(mib(v)))
    row(f"idle CPU, {res['cpu_dbs']} dbs (% of one core)", "idle_cpu_pct",
        lambda v: f"{v:.2f}", f"< {CPU_TARGET_PCT:g}",
        w.get("idle_cpu_pct") is not None
        and w["idle_cpu_pct"] < CPU_TARGET_PCT)
    row(f"idle CPU, {res['cpu_dbs']} dbs, steady: median 5 s interval "
        "(% of one core)", "idle_cpu_steady_pct", lambda v: f"{v:.2f}")
    row("write throughput with / without (ratio of medians)", "tp_ratio",
        lambda v: f"{v:.3f}", f">= {TP_RATIO_TARGET}",
        w.get("tp_ratio") is not None and w["tp_ratio"] >= TP_RATIO_TARGET)
    row("write throughput, median tx/s", "tp_median",
        lambda v: f"{v:.0f}")
    lines.append(f"\nNo replicator: {f1(S.get('none', {}).get('tp_median'), 0)}"
                 " tx/s (median).\n")

    lines.append("## Lag (seconds)\n")
    lines.append("| tool | method | n | p50 | p90 | p99 | max | unmatched |")
    lines.append("|---|---|---|---|---|---|---|---|")
    for t in tools:
        L = res["lag"].get(t)
        if not L or "error" in L:
            lines.append(f"| {t} | FAILED: {(L or {}).get('error', '')[:80]}"
                         " | | | | | | |")
            continue
        for lab, k, miss in (
                ("WAL position (primary)", "lag_s", "unmatched_commits"),
                ("header timestamp", "lag_by_header_timestamp_s",
                 "unmatched_commits_by_timestamp"),
                ("commit -> capture (header ts)", "commit_to_capture_s",
                 None),
                ("capture -> visible", "capture_to_visible_s", None),
                ("one list_objects_v2", "poll_s", None)):
            dd = L.get(k) or {}
            lines.append(
                f"| {t} | {lab} | {dd.get('n', '-')} | {f1(dd.get('p50'), 3)}"
                f" | {f1(dd.get('p90'), 3)} | {f1(dd.get('p99'), 3)} | "
                f"{f1(dd.get('max'), 3)} | "
                f"{L.get(miss, '') if miss else ''} |")
    lines.append(
        "\nA writer process commits one row (sequence number, time) at "
        "Poisson arrivals, 10 per second on average, and, right after each COMMIT, reads the WAL position of the "
        "commit (salts and end offset) from the -shm wal-index header; a "
        "poller lists the database's L0 prefix every 50 ms (StartAfter the "
        "newest key). Each L0 LTX header gives its capture time and the WAL "
        "range it holds (salts, offset, size). Lag = end of the first "
        "listing showing the first L0 file that covers the commit's WAL "
        "position - time COMMIT returned; the poll period adds up to 50 ms "
        "+ one listing. The header-timestamp method (first L0 file captured "
        "after the commit) is shown as a cross-check.\n")

    lines.append("## Memory and CPU by number of databases\n")
    lines.append("| tool | dbs | ready s | idle RSS | idle PSS | idle anon | "
                 "idle file | load RSS max | load PSS max | load anon max "
                 "| fds | load tx/s | writer max stall s | load CPU % | backlog after |")
    lines.append("|---" * 15 + "|")
    for r in res["scale"]:
        if "error" in r:
            lines.append(f"| {r['tool']} | {r['dbs']} | FAILED: "
                         f"{r['error'][:80]} |" + " |" * 12)
            continue
        i, ld = r["idle"], r.get("load", {})
        st = r.get("after_load_status") or {}
        lines.append(
            f"| {r['tool']} | {r['dbs']} | {r['ready_s']} | "
            f"{f1(mib(i['VmRSS']['median']))} | {f1(mib(i['Pss']['median']))}"
            f" | {f1(mib(i['RssAnon']['median']))} | "
            f"{f1(mib(i['RssFile']['median']))} | "
            f"{f1(mib(ld.get('VmRSS', {}).get('max')))} | "
            f"{f1(mib(ld.get('Pss', {}).get('max')))} | "
            f"{f1(mib(ld.get('RssAnon', {}).get('max')))} | "
            f"{i['fds']['max']} | "
            f"{f1(r.get('load_writer', {}).get('tx_per_s'), 0)} | "
            f"{f1(r.get('load_writer', {}).get('max_late_s'), 2)} | "
            f"{f1(r.get('load_cpu_pct'), 0)} | "
            f"{st.get('backlog_files', '-')} files, max lag "
            f"{st.get('max_lag_ms', '-')} ms |")
    lines.append("\nMiB; RSS etc. summed over the replicator's process tree "
                 "(walrustd: supervisor + worker; RSS counts shared library "
                 "pages once per process, PSS splits them; file = file-backed "
                 "pages: binaries, libraries and the databases' mmapped -shm "
                 "wal-index, 32 KiB each). Idle: median of 0.5 s samples "
                 "over a few seconds after all databases had their first L0 "
                 "file and a settling time; load: max while a writer commits "
                 "1 tx/s to every database, round robin; writer max stall = "
                 "how far its schedule fell behind (a COMMIT blocked on the "
                 "replicator's locks); backlog = captured but not yet "
                 "uploaded L0 files when the writer stopped (walrustctl "
                 "status).\n")
    for r in res["scale"]:
        c = r.get("idle_cpu")
        if c:
            lines.append(
                f"- idle CPU, {r['tool']}, {r['dbs']} dbs: {c['cpu_s']} s "
                f"over {c['wall_s']} s = {c['pct_of_one_core']:.2f}% of a "
                f"core ({c['us_per_db_per_s']:.1f} us per database per "
                f"second), window from {c['window_starts_s_after_start']} s"
                f" after start; before it (startup, first L1 compaction): "
                f"{c['pre_window_cpu_s']} s; by process: "
                + ", ".join(f"{k} {v} s" for k, v in c["by_process"].items()))
        if c and c.get("cpu_series"):
            lines.append(
                f"  cumulative CPU s every ~5 s: "
                + " ".join(f"{t:g}:{v:g}" for t, v in c["cpu_series"]))
    lines.append("")
    for r in res["scale"]:
        if r.get("dbs") == max(res["scale_ns"]) and "idle" in r:
            lines.append(
                f"- per process, {r['tool']}, {r['dbs']} dbs idle (kB): "
                + "; ".join(
                    f"{who}: RSS {p.get('VmRSS')} anon {p.get('RssAnon')} "
                    f"file {p.get('RssFile')} shmem {p.get('RssShmem')} PSS "
                    f"{p.get('Pss')} fds {p.get('fds')} threads "
                    f"{p.get('Threads')}"
                    for who, p in r["idle"]["processes"].items()))
    lines.append("\n## Write throughput (small INSERT transactions, WAL, "
                 "synchronous=NORMAL)\n")
    lines.append("| run | mode | tx/s | replicator CPU s | WAL bytes after |"
                 " sync after (s) |")
    lines.append("|---|---|---|---|---|---|")
    for r in res["throughput"]:
        if "error" in r:
            lines.append(f"| {r['rep']} | {r['mode']} | FAILED: "
                         f"{r['error'][:80]} | | | |")
            continue
        lines.append(f"| {r['rep']} | {r['mode']} | {r['tx_per_s']:.0f} | "
                     f"{r.get('replicator_cpu_s', '-')} | "
                     f"{r['wal_bytes_after']} | {r.get('sync_after_s', '-')}"
                     " |")
    lines.append(f"\nEach run {res['params']['tp_s']:g} s on a fresh "
                 "database; runs interleaved (none, walrust, litestream, "
                 "...); ratio = median with / median without.\n")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------- main
def main():
    if len(sys.argv) > 1 and sys.argv[1].startswith("_"):
        return run_role(sys.argv[1:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="15 s lag, 1/10/100 dbs, 20 s idle CPU, 1 short "
                         "throughput run: checks that it runs")
    ap.add_argument("--no-litestream", action="store_true")
    ap.add_argument("--build", default=ROOT)
    ap.add_argument("--litestream", default=shutil.which("litestream"))
    ap.add_argument("--workdir", default=None,
                    help="keep scratch files (logs) here")
    ap.add_argument("--out-dir", default=os.path.join(HERE, "results"))
    ap.add_argument("--render", metavar="JSON",
                    help="only rewrite the .md (and derived summary "
                         "fields) of an existing results file")
    a = ap.parse_args()
    if a.render:
        with open(a.render) as f:
            res = json.load(f)
        for t in res["tools"]:
            for r in res["scale"]:
                if r["tool"] == t and "idle_cpu" in r:
                    res["summary"][t]["idle_cpu_steady_pct"] = \
                        steady_cpu_pct(r["idle_cpu"]["cpu_series"])
        with open(a.render, "w") as f:
            json.dump(res, f, indent=1)
            f.write("\n")
        md = render_md(res)
        with open(os.path.splitext(a.render)[0] + ".md", "w") as f:
            f.write(md)
        print(md)
        return 0
    q = a.quick
    a.lag_s = 15.0 if q else 60.0
    a.lag_rate = 10.0
    a.settle_s = 10.0
    a.idle_sample_s = 5.0
    a.load_s = 10.0 if q else 20.0
    a.tp_s = 5.0 if q else 10.0
    tp_reps = 1 if q else 3
    scale_ns = [1, 10, 100] if q else [1, 10, 100, 1000]
    cpu_n, cpu_s = (100, 20.0) if q else (1000, 60.0)
    base = "replication-quick" if q else "replication"
    a.walrustd = os.path.join(a.build, "daemon", "walrustd")
    a.walrustctl = os.path.join(a.build, "client", "walrustctl")
    for b in (a.walrustd, a.walrustctl):
        if not os.access(b, os.X_OK):
            sys.exit(f"replication.py: {b} not built (make -j2)")
    tools = ["walrust"]
    if not a.no_litestream:
        if not a.litestream:
            log("litestream not found: walrust only")
        else:
            tools.append("litestream")
    os.environ.pop("AWS_CA_BUNDLE", None)

    keep = a.workdir is not None
    workdir = os.path.abspath(a.workdir) if keep else tempfile.mkdtemp(
        prefix="walrust-repl-")
    os.makedirs(workdir, exist_ok=True)
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds")
    t_start = time.monotonic()
    weed = None
    res = {"benchmark": "walrust continuous replication: lag, memory and "
                        "CPU by number of databases, write throughput; "
                        "SeaweedFS on loopback",
           "started": started,
           "command": " ".join(["python3", "bench/replication.py"]
                               + sys.argv[1:]),
           "tools": tools, "scale_ns": scale_ns, "cpu_dbs": cpu_n,
           "params": {"lag_s": a.lag_s, "lag_rate_tx_s": a.lag_rate,
                      "poll_period_s": 0.05, "settle_s": a.settle_s,
                      "idle_sample_s": a.idle_sample_s,
                      "load_s": a.load_s, "idle_cpu_s": cpu_s,
                      "tp_s": a.tp_s, "tp_reps": tp_reps,
                      "sync_interval_s": 1.0},
           "lag": {}, "scale": [], "throughput": []}
    try:
        m = core.machine_info(a.walrustd, "true")
        m.pop("liblz4", None)
        m["git_head"] = core.first_line(["git", "-C", a.build, "rev-parse",
                                         "--short", "HEAD"])
        m["walrustd_mtime"] = datetime.datetime.fromtimestamp(
            os.path.getmtime(a.walrustd), datetime.timezone.utc).isoformat(
            timespec="seconds")
        res["machine"] = m
        if "litestream" in tools:
            res["litestream_version"] = core.first_line(
                [a.litestream, "version"])
        weed = core.Seaweed(workdir)
        weed.start()
        log(f"workdir {workdir}; SeaweedFS S3 at {weed.endpoint}; tools "
            f"{tools}")

        # 1. lag
        for t in tools:
            try:
                res["lag"][t] = lag_run(t, workdir, weed, a)
            except Exception as e:
                log(f"lag/{t}: FAILED: {e}")
                res["lag"][t] = {"error": str(e)[:4000]}
        # 2./3. scale (idle CPU at cpu_n)
        for t in tools:
            for n in scale_ns:
                try:
                    res["scale"].append(scale_run(
                        t, n, workdir, weed, a, cpu_s if n == cpu_n else 0))
                except Exception as e:
                    log(f"scale/{t}/{n}: FAILED: {e}")
                    res["scale"].append({"tool": t, "dbs": n,
                                         "error": str(e)[:4000]})
        # 4. throughput, interleaved
        for r in range(1, tp_reps + 1):
            for mode in ["none"] + tools:
                try:
                    res["throughput"].append(tp_run(mode, r, workdir, weed,
                                                    a))
                except Exception as e:
                    log(f"tp/{mode}/{r}: FAILED: {e}")
                    res["throughput"].append({"mode": mode, "rep": r,
                                              "error": str(e)[:4000]})

        # summary
        S = {}
        for t in tools + ["none"]:
            s = S.setdefault(t, {})
            L = res["lag"].get(t) or {}
            if L.get("lag_s"):
                s["lag_p50_s"] = L["lag_s"]["p50"]
                s["lag_p99_s"] = L["lag_s"]["p99"]
                s["lag_max_s"] = L["lag_s"]["max"]
            for r in res["scale"]:
                if r["tool"] != t or "idle" not in r:
                    continue
                n = r["dbs"]
                s[f"idle_rss_kb_{n}"] = r["idle"]["VmRSS"]["median"]
                s[f"idle_pss_kb_{n}"] = r["idle"]["Pss"]["median"]
                if "load" in r:
                    s[f"load_rss_kb_{n}"] = r["load"]["VmRSS"]["max"]
                    s[f"load_pss_kb_{n}"] = r["load"]["Pss"]["max"]
                if "idle_cpu" in r:
                    s["idle_cpu_pct"] = r["idle_cpu"]["pct_of_one_core"]
                    s["idle_cpu_steady_pct"] = steady_cpu_pct(
                        r["idle_cpu"]["cpu_series"])
            tps = [r["tx_per_s"] for r in res["throughput"]
                   if r["mode"] == t and "tx_per_s" in r]
            if tps:
                s["tp_median"] = statistics.median(tps)
        base_tp = S["none"].get("tp_median")
        for t in tools:
            if base_tp and S[t].get("tp_median"):
                S[t]["tp_ratio"] = S[t]["tp_median"] / base_tp
        w = S["walrust"]
        S["targets"] = {
            "lag_p99_ok": w.get("lag_p99_s") is not None
            and w["lag_p99_s"] < LAG_P99_TARGET_S,
            "rss_1_ok": w.get("idle_rss_kb_1") is not None
            and max(w["idle_rss_kb_1"], w.get("load_rss_kb_1", 0))
            <= RSS_1_TARGET_KB,
            "rss_1000_ok": (w.get("idle_rss_kb_1000") is not None
                            and max(w["idle_rss_kb_1000"],
                                    w.get("load_rss_kb_1000", 0))
                            <= RSS_1000_TARGET_KB) if 1000 in scale_ns
            else None,
            "idle_cpu_ok": w.get("idle_cpu_pct") is not None
            and w["idle_cpu_pct"] < CPU_TARGET_PCT,
            "tp_ratio_ok": w.get("tp_ratio") is not None
            and w["tp_ratio"] >= TP_RATIO_TARGET,
        }
        res["summary"] = S
        res["wall_s"] = time.monotonic() - t_start
        res["units"] = {"memory": "kB (1024 bytes)", "time": "seconds",
                        "cpu_pct": "% of one core"}
        os.makedirs(a.out_dir, exist_ok=True)
        with open(os.path.join(a.out_dir, base + ".json"), "w") as f:
            json.dump(res, f, indent=1)
            f.write("\n")
        md = render_md(res)
        with open(os.path.join(a.out_dir, base + ".md"), "w") as f:
            f.write(md)
        print(md)
        log(f"wrote {os.path.join(a.out_dir, base)}.json and .md in "
            f"{res['wall_s'] / 60:.1f} min")
        failed = any("error" in x for x in
                     list(res["lag"].values()) + res["scale"]
                     + res["throughput"])
        return 1 if failed else 0
    finally:
        if weed:
            weed.stop()
        if keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
