"""Helpers of the Python package tests (tests/python): paths, environments
and small SQLite utilities. A uniquely named module, so that test modules
never import another directory's conftest by accident."""

import os
import sqlite3
import tempfile


def make_db(path, rows=50, wal=True, table="t", seed=0):
    """A database with one table of `rows` rows; returns str(path)."""
    conn = sqlite3.connect(str(path))
    if wal:
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"CREATE TABLE IF NOT EXISTS {table}"
                 f"(id INTEGER PRIMARY KEY, v TEXT, f REAL)")
    conn.executemany(f"INSERT INTO {table}(v, f) VALUES (?, ?)",
                     [(f"value {seed}-{i} " + "x" * (i % 97), i * 1.5 + seed)
                      for i in range(rows)])
    conn.commit()
    conn.close()
    return str(path)


def add_rows(path, rows, table="t", seed=1):
    conn = sqlite3.connect(str(path))
    conn.executemany(f"INSERT INTO {table}(v, f) VALUES (?, ?)",
                     [(f"more {seed}-{i}", -i) for i in range(rows)])
    conn.commit()
    conn.close()


def dump(path):
    """Every row of every table, for comparisons."""
    conn = sqlite3.connect(str(path))
    try:
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' "
            "AND name != '_walrust_seq' ORDER BY name")]
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY rowid")
                .fetchall() for t in tables}
    finally:
        conn.close()


def integrity(path):
    conn = sqlite3.connect(str(path))
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
PYDIR = os.path.join(REPO, "python")
EXAMPLES = os.path.join(PYDIR, "examples")

AWS_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
            "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL_S3",
            "AWS_ENDPOINT_URL", "AWS_PROFILE")


def find_walrustd():
    """The walrustd under test: $WALRUST_WALRUSTD, else the build of
    $WALRUST_BUILD (default: the repository, then build/)."""
    env = os.environ.get("WALRUST_WALRUSTD")
    if env:
        return env if os.access(env, os.X_OK) else None
    if os.environ.get("WALRUST_BUILD"):
        cands = [os.path.join(os.environ["WALRUST_BUILD"], "daemon",
                              "walrustd")]
    else:
        cands = [os.path.join(REPO, "daemon", "walrustd"),
                 os.path.join(REPO, "build", "daemon", "walrustd")]
    for c in cands:
        if os.access(c, os.X_OK):
            return os.path.abspath(c)
    return None


def find_walrustctl():
    d = find_walrustd()
    if not d:
        return None
    c = os.path.join(os.path.dirname(os.path.dirname(d)), "client",
                     "walrustctl")
    return c if os.access(c, os.X_OK) else None


def short_tmpdir(prefix):
    """A directory short enough for a Unix socket path (108 bytes)."""
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")


def clean_env(**extra):
    """os.environ without AWS_* and WALRUST_SOCKET, plus extra."""
    env = {k: v for k, v in os.environ.items()
           if k not in AWS_VARS and k != "WALRUST_SOCKET"}
    env.update({k: v for k, v in extra.items() if v is not None})
    return env


