#!/usr/bin/env python3
"""What the Python package costs on top of walrustd.

Median (and p90) wall time of `list` and `snapshot` on a small database,
three ways, against one walrustd:

  package     walrust.Walrust(...).list() / .snapshot(db)
  raw socket  the same request written by hand on a fresh Unix-socket
              connection from Python (no package): the fair baseline
  walrustctl  the same request through the C client in a subprocess
              (includes process start-up, which dominates)

The replica is a temp directory (file://) unless --bucket/--endpoint name
an S3 bucket (credentials from AWS_*), so the numbers are the protocol and
client overhead plus the daemon's work, not network time.

    python3 bench/python_overhead.py [-n 50] [--build DIR]

Binaries: --build DIR (default $WALRUST_BUILD, else the repository, else
build/) holding daemon/walrustd and client/walrustctl. Prints a table and
writes bench/results/python-overhead.json.
"""

import argparse
import json
import os
import platform
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "python"))

import walrust  # noqa: E402


def find_build(arg):
    for d in (arg, os.environ.get("WALRUST_BUILD"), REPO,
              os.path.join(REPO, "build")):
        if d and os.access(os.path.join(d, "daemon", "walrustd"), os.X_OK) \
                and os.access(os.path.join(d, "client", "walrustctl"),
                              os.X_OK):
            return os.path.abspath(d)
    sys.exit("walrustd/walrustctl not found: build the repository or pass "
             "--build DIR")


def make_db(path, rows):
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    conn.executemany("INSERT INTO t(v) VALUES (?)",
                     [(f"row {i} " + "x" * 40,) for i in range(rows)])
    conn.commit()
    conn.close()


def raw_request(sock_path, cmd, args, rid):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(sock_path)
        s.sendall(json.dumps({"v": 1, "id": rid, "cmd": cmd, "args": args},
                             separators=(",", ":")).encode() + b"\n")
        buf = b""
        while True:
            d = s.recv(65536)
            if not d:
                raise RuntimeError("connection closed")
            buf += d
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                msg = json.loads(line)
                if msg.get("id") == rid and "ok" in msg:
                    if not msg["ok"]:
                        raise RuntimeError(msg["error"])
                    return msg["result"]
    finally:
        s.close()


def timed(fn, n, warmup=3):
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000.0)
    out.sort()
    return {"median_ms": round(statistics.median(out), 3),
            "p90_ms": round(out[int(0.9 * (len(out) - 1))], 3),
            "min_ms": round(out[0], 3), "n": n}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=50, help="iterations (50)")
    ap.add_argument("--rows", type=int, default=1000,
                    help="rows in the small database (1000)")
    ap.add_argument("--build", help="build directory with the binaries")
    ap.add_argument("--bucket", help="an S3 bucket URL instead of file://")
    ap.add_argument("--endpoint", help="S3 endpoint for --bucket")
    ap.add_argument("--out", default=os.path.join(HERE, "results",
                                                  "python-overhead.json"))
    a = ap.parse_args()

    build = find_build(a.build)
    walrustd = os.path.join(build, "daemon", "walrustd")
    walrustctl = os.path.join(build, "client", "walrustctl")
    tmp = tempfile.mkdtemp(prefix="wr-bench-", dir="/tmp")
    sock = os.path.join(tmp, "run", "walrustd.sock")
    os.environ["WALRUST_SOCKET"] = sock
    os.environ["WALRUST_WALRUSTD"] = walrustd
    db = os.path.join(tmp, "app.db")
    make_db(db, a.rows)
    bucket = a.bucket or "file://" + os.path.join(tmp, "replica")
    ws = walrust.Walrust(bucket, endpoint=a.endpoint)
    storage = {"bucket": ws.bucket}
    if a.endpoint:
        storage["endpoint"] = a.endpoint
    ctl = [walrustctl, "-s", sock, "-q", "--json", "-b",
           ws.bucket.replace("file://", "") if ws.bucket.startswith("file://")
           else ws.bucket]
    if a.endpoint:
        ctl += ["-e", a.endpoint]
    ids = iter(range(1, 10 ** 9))

    def ctl_run(*args):
        subprocess.run(ctl + list(args), check=True, stdout=subprocess.DEVNULL,
                       stdin=subprocess.DEVNULL)

    try:
        hello = ws.status()  # starts the daemon
        ws.snapshot(db)
        cases = {
            ("list", "package"): lambda: ws.list(),
            ("list", "raw socket"): lambda: raw_request(
                sock, "list", storage, next(ids)),
            ("list", "walrustctl"): lambda: ctl_run("list"),
            ("snapshot", "package"): lambda: ws.snapshot(db),
            ("snapshot", "raw socket"): lambda: raw_request(
                sock, "snapshot", dict(storage, database=db), next(ids)),
            ("snapshot", "walrustctl"): lambda: ctl_run("snapshot", db),
        }
        results = []
        for (op, how), fn in cases.items():
            r = timed(fn, a.n)
            r.update(op=op, client=how)
            results.append(r)
    finally:
        walrust.shutdown_daemon(sock)
        time.sleep(0.2)
        shutil.rmtree(tmp, ignore_errors=True)

    base = {r["op"]: r["median_ms"] for r in results
            if r["client"] == "raw socket"}
    print(f"{'op':<9} {'client':<11} {'median ms':>10} {'p90 ms':>8} "
          f"{'min ms':>8} {'vs raw':>8}")
    for r in results:
        print(f"{r['op']:<9} {r['client']:<11} {r['median_ms']:>10.3f} "
              f"{r['p90_ms']:>8.3f} {r['min_ms']:>8.3f} "
              f"{r['median_ms'] - base[r['op']]:>+8.3f}")
    doc = {
        "benchmark": "python_overhead",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": platform.python_version(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "walrustd": hello.get("version"),
        "replica": "s3" if a.bucket else "file",
        "rows": a.rows,
        "iterations": a.n,
        "results": results,
        "notes": "walrustctl includes process start-up; 'raw socket' is a "
                 "hand-written request on a fresh connection, the floor "
                 "for any Python client",
    }
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    print(f"\nwrote {os.path.relpath(a.out)}")


if __name__ == "__main__":
    main()
