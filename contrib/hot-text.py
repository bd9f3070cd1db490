#!/usr/bin/env python3
"""Regenerate daemon/walrustd.ld and daemon/walrust-worker.ld, the "hot
text" linker script fragments that `configure --enable-static-deps` links
with.

    python3 contrib/hot-text.py BUILD_DIR     # a --enable-static-deps build

Why: walrust-worker carries OpenSSL, SQLite, libcurl, expat, glibc and
libuv statically (about 5 MiB of code) and walrustd glibc and libuv. A
process only executes a small part of that code, but the kernel maps file
pages around every page it faults in ("fault-around", 64 KiB), so code
scattered over the whole text segment costs far more resident memory than
its size: measured with one watched database, 3.2 MiB of walrust-worker's
text was resident while only 1.6 MiB of it had executed. The linker script
fragment gathers the input sections that ever execute into one output
section in front of .text, so the code a worker runs is contiguous and the
rest is never mapped in.

How: both binaries are relinked with a link map (-Wl,-Map), then run under
valgrind's callgrind through a realistic session against a SeaweedFS server
on loopback (watch a database, commits for a while, status, sync --wait,
snapshot, list, restore, unwatch, shutdown). Every executed instruction
address is looked up in the link map, and every input section (an object
file, or an archive member, and its section name) holding one is written to
the fragment as `*archive.a:member.o(.section)`. Patterns that match nothing
on another machine are ignored by the linker, so a stale fragment costs
memory, never correctness. HOT_TEXT_KEEP=1 keeps the session's directory
(callgrind files, logs). Needs valgrind and the test requirements
(tests/requirements.txt).
"""

import bisect
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(TOP, "tests", "lib"))
from walrust_testlib import servers  # noqa: E402

BINARIES = {"walrustd": "daemon/walrustd", "walrust-worker": "daemon/walrust-worker"}


def relink(build, *make_args):
    for rel in BINARIES.values():
        p = os.path.join(build, rel)
        if os.path.exists(p):
            os.unlink(p)
    subprocess.run(["make", "-C", build, "-s"] + list(BINARIES.values()) +
                   list(make_args), check=True)


def relink_for_profile(build):
    """Relink with link maps and without the current hot-text scripts
    (valgrind cannot attribute code in the extra output section to its
    binary), keeping them static PIEs if configure made them so."""
    flags = ["LDFLAGS=-Wl,-Map=$@.map"]
    for line in open(os.path.join(build, "Makefile")):
        var = line.split(" =", 1)[0]
        if var in ("SUPERVISOR_LDFLAGS", "WORKER_LDFLAGS"):
            flags.append(var + "=" + " ".join(
                t for t in line.split("=", 1)[1].split()
                if not t.startswith("-Wl,-T,")))
    relink(build, *flags)


def wrap(build, work):
    """Copies of the binaries, each behind a script that runs it under
    callgrind (one output file per process)."""
    out = {}
    for name, rel in BINARIES.items():
        real = os.path.join(work, name + ".real")
        shutil.copy(os.path.join(build, rel), real)
        script = os.path.join(work, name)
        with open(script, "w") as f:
            f.write("#!/bin/sh\nexec valgrind -q --tool=callgrind --dump-instr=yes "
                    f"--callgrind-out-file={work}/cg.{name}.%p {real} \"$@\"\n")
        os.chmod(script, 0o755)
        out[name] = script
    return out


def session(build, work, exe):
    ctl = os.path.join(build, "client", "walrustctl")
    os.makedirs(os.path.join(work, "s3"))
    with servers.start_seaweedfs(workdir=os.path.join(work, "s3")) as srv:
        db = os.path.join(work, "app.db")
        c = sqlite3.connect(db)
        c.execute("pragma journal_mode=wal")
        c.execute("create table t(id integer primary key, x text)")
        c.execute("create index t_x on t(x)")
        c.commit()
        env = dict(os.environ, **srv.env(), WALRUST_STATE_DIR=work + "/state",
                   WALRUST_WORKER=exe["walrust-worker"])
        env.pop("AWS_CA_BUNDLE", None)
        sock = work + "/run/s.sock"
        url = srv.replica().url
        d = subprocess.Popen([exe["walrustd"], "-s", sock, "-r", url,
                              "--log-level", "warn"], env=env)

        def run(*args, check=True):
            return subprocess.run([ctl, "-s", sock] + list(args), env=env,
                                  check=check, capture_output=True, text=True,
                                  timeout=300)
        for _ in range(300):
            if run("status", check=False).returncode == 0:
                break
            time.sleep(0.2)
        run("watch", db)
        for i in range(40):
            c.execute("insert into t(x) values(?)", (os.urandom(64).hex(),))
            c.commit()
            time.sleep(0.5)
        run("--json", "status")
        run("sync", db)
        run("snapshot", db)
        run("--json", "list")
        run("restore", "app", work + "/restored.db")
        run("unwatch", db)
        run("shutdown")
        d.wait(timeout=120)


def executed(cg_file, binary):
    """Instruction addresses of `binary` that a callgrind file shows ran."""
    names, cur, last, addrs = {}, "", 0, set()
    for line in open(cg_file):
        if line.startswith(("ob=", "cob=")):
            m = re.match(r'c?ob=\((\d+)\)\s*(.*)', line.strip())
            if m.group(2):
                names[m.group(1)] = m.group(2)
            if line.startswith("ob="):
                cur = names.get(m.group(1), "")
            continue
        if not line.strip() or line[0] not in "0123456789+-*":
            continue
        tok = line.split()[0]
        if tok == "*":
            a = last
        elif tok[0] in "+-":
            a = last + int(tok)
        else:
            a = int(tok, 16) if tok.startswith("0x") else int(tok)
        last = a
        if cur.endswith("/" + binary + ".real"):
            addrs.add(a)
    return addrs


def input_sections(map_file):
    """(start, size, file, section) of every code input section."""
    secs, lines = [], open(map_file).read().split("\n")
    i = 0
    while i < len(lines):
        m = re.match(r'^ (\.text\S*)\s*$', lines[i])
        if m and i + 1 < len(lines):
            f = lines[i + 1].split()
            if len(f) >= 3 and f[0].startswith("0x"):
                secs.append((int(f[0], 16), int(f[1], 16), f[2], m.group(1)))
                i += 2
                continue
        m = re.match(r'^ (\.text\S*)\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+(\S+)', lines[i])
        if m:
            secs.append((int(m.group(2), 16), int(m.group(3), 16), m.group(4), m.group(1)))
        i += 1
    return sorted(s for s in secs if s[1] > 0)


def pattern(path, section):
    m = re.search(r'([^/]+\.a)\(([^)]+)\)$', path)
    if m:
        return f"*{m.group(1)}:{m.group(2)}({section})"
    base = os.path.basename(path)
    if not base.endswith(".o") or base.startswith(("crt", "Scrt", "rcrt")):
        return None
    return f"*{base}({section})"


def write_fragment(out, name, hot):
    with open(out, "w") as f:
        f.write(f"/* {os.path.basename(out)}: the code {name} executes, gathered in\n"
                " * front of .text so that it is contiguous (fewer resident pages).\n"
                " * Generated by contrib/hot-text.py; see there. Do not edit. */\n"
                "SECTIONS\n{\n  .text.walrust_hot :\n  {\n")
        for p in hot:
            f.write(f"    {p}\n")
        f.write("  }\n}\nINSERT BEFORE .text;\n")


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: contrib/hot-text.py BUILD_DIR")
    build = os.path.abspath(sys.argv[1])
    if not shutil.which("valgrind"):
        sys.exit("hot-text: valgrind is needed (apt-get install valgrind)")
    relink_for_profile(build)
    work = tempfile.mkdtemp(prefix="walrust-hot-")
    try:
        exe = wrap(build, work)
        session(build, work, exe)
        for name, rel in BINARIES.items():
            addrs = set()
            for f in os.listdir(work):
                if f.startswith(f"cg.{name}."):
                    addrs |= executed(os.path.join(work, f), name)
            secs = input_sections(os.path.join(build, rel) + ".map")
            starts = [s[0] for s in secs]
            hot, seen, size = [], set(), 0
            for a in sorted(addrs):
                k = bisect.bisect_right(starts, a) - 1
                if k < 0 or not secs[k][0] <= a < secs[k][0] + secs[k][1] or k in seen:
                    continue
                seen.add(k)
                p = pattern(secs[k][2], secs[k][3])
                if p:
                    hot.append(p)
                    size += secs[k][1]
            if not hot:
                sys.exit(f"hot-text: no executed code found for {name}")
            out = os.path.join(TOP, "daemon", name + ".ld")
            write_fragment(out, name, hot)
            print(f"{out}: {len(hot)} input sections, {size // 1024} KiB "
                  f"({len(addrs)} instructions ran)")
    finally:
        if not os.environ.get("HOT_TEXT_KEEP"):
            shutil.rmtree(work, ignore_errors=True)
    relink(build)


if __name__ == "__main__":
    main()
