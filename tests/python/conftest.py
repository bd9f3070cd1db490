"""Fixtures of the Python package tests (tests/python).

    walrust_session   the real walrustd for this session: WALRUST_SOCKET (a
                      temp path) and WALRUST_WALRUSTD set in os.environ, so
                      the package (and example scripts run as subprocesses)
                      auto-start it; shut down with a `shutdown` request at
                      the end. Skips when walrustd is not built (fails with
                      WALRUST_REQUIRE_BINARIES=1).
    target            parametrized over moto and SeaweedFS (the shared
                      fixtures of tests/conftest.py): a fresh prefix in the
                      server's bucket, with .url, .endpoint, .env() and the
                      replica view .replica (keys, read, write).
    any_target        the same plus a file:// directory; file_target alone.
    aws_env           target.env() applied to os.environ for the test.
    fake_walrustd     an executable wrapper running fake_walrustd.py.
    run_example       runs python/examples/<name>.py as a script.

The package is imported from the source tree (python/), not from an
installed copy; WALRUST_WALRUSTD points it at the build's walrustd.
"""

import contextlib
import os
import shutil
import subprocess
import sys
import time

import pytest

from wrpy_helpers import (  # noqa: E402
    AWS_VARS, EXAMPLES, HERE, PYDIR, REPO, clean_env, find_walrustd,
    short_tmpdir)

sys.path.insert(0, PYDIR)
sys.path.insert(0, os.path.join(REPO, "tests", "lib"))

import walrust  # noqa: E402


# ------------------------------------------------------------ real daemon
class Session:
    def __init__(self, walrustd, socket_path, log_path):
        self.walrustd = walrustd
        self.socket = socket_path
        self.log_path = log_path

    def log_tail(self, n=40):
        try:
            with open(self.log_path, "rb") as f:
                return "\n".join(f.read().decode("utf-8", "replace")
                                 .splitlines()[-n:])
        except OSError:
            return ""


@pytest.fixture(scope="session")
def walrust_session():
    binary = find_walrustd()
    if not binary:
        msg = ("walrustd is not built (set WALRUST_WALRUSTD or WALRUST_BUILD, "
               "or build the repository)")
        if os.environ.get("WALRUST_REQUIRE_BINARIES") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    d = short_tmpdir("wr-py-")
    sock = os.path.join(d, "run", "walrustd.sock")
    saved = {k: os.environ.get(k) for k in ("WALRUST_SOCKET",
                                            "WALRUST_WALRUSTD")}
    os.environ["WALRUST_SOCKET"] = sock
    os.environ["WALRUST_WALRUSTD"] = binary
    sess = Session(binary, sock, os.path.join(d, "run", "walrustd.log"))
    try:
        yield sess
    finally:
        pid = None
        with contextlib.suppress(Exception):
            from walrust import _daemon

            info = _daemon.probe(sock)  # never starts one
            pid = info["pid"] if info else None
        with contextlib.suppress(Exception):
            walrust.shutdown_daemon(sock)
        if pid:
            wait_gone(pid, 20)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(d, ignore_errors=True)


def wait_gone(pid, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


class Target:
    """A fresh prefix in an S3 server's bucket (or a file:// directory)."""

    def __init__(self, kind, replica, server=None):
        self.kind = kind
        self.replica = replica
        self.server = server

    def __repr__(self):
        return f"<Target {self.kind} {self.url}>"

    @property
    def url(self):
        return self.replica.url

    @property
    def endpoint(self):
        return self.replica.endpoint

    def env(self):
        return dict(self.replica.env())


def _target(request, kind):
    if kind == "file":
        from walrust_testlib.servers import FileReplica

        d = request.getfixturevalue("tmp_path") / "replica"
        d.mkdir()
        return Target("file", FileReplica(str(d)))
    sel = request.config.getoption("--s3", default=None)
    if sel and kind not in [s.strip() for s in sel.split(",")]:
        pytest.skip(f"--s3 excludes {kind}")
    srv = request.getfixturevalue("moto" if kind == "moto" else "seaweed")
    assert srv.alive(), f"{srv.kind} died"
    return Target(kind, srv.replica(), srv)


@pytest.fixture(params=["moto", "seaweedfs"])
def target(request, walrust_session):
    """A fresh prefix in moto's, then SeaweedFS's bucket."""
    return _target(request, request.param)


@pytest.fixture(params=["moto", "seaweedfs", "file"])
def any_target(request, walrust_session):
    """target, plus a file:// directory."""
    return _target(request, request.param)


@pytest.fixture
def file_target(request, walrust_session):
    return _target(request, "file")


@pytest.fixture
def aws_env(monkeypatch):
    """Apply a target's AWS_* variables to os.environ: aws_env(target)."""
    for k in AWS_VARS:
        monkeypatch.delenv(k, raising=False)

    def apply(t):
        for k, v in t.env().items():
            monkeypatch.setenv(k, v)
        return t

    return apply


# ------------------------------------------------------------- fake daemon
@pytest.fixture
def fake_walrustd(tmp_path):
    """Path of an executable that runs fake_walrustd.py."""
    wrapper = tmp_path / "walrustd"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} "
                       f"{os.path.join(HERE, 'fake_walrustd.py')} \"$@\"\n")
    wrapper.chmod(0o755)
    return str(wrapper)


@pytest.fixture
def fake_daemon(fake_walrustd, monkeypatch):
    """The package pointed at a fresh fake daemon (auto-started on first
    use): yields the socket path; shuts it down afterwards."""
    d = short_tmpdir("wr-fk-")
    sock = os.path.join(d, "walrustd.sock")
    monkeypatch.setenv("WALRUST_SOCKET", sock)
    monkeypatch.setenv("WALRUST_WALRUSTD", fake_walrustd)
    for k in AWS_VARS:
        monkeypatch.delenv(k, raising=False)
    yield sock
    with contextlib.suppress(Exception):
        walrust.shutdown_daemon(sock)
    shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------- examples
@pytest.fixture
def run_example():
    """run_example(name, env=..., cwd=..., args=...) -> CompletedProcess of
    `python python/examples/<name>.py` with the package on PYTHONPATH."""

    def run(name, env=None, cwd=None, args=(), timeout=180):
        e = clean_env(**(env or {}))
        e["PYTHONPATH"] = PYDIR + (os.pathsep + e["PYTHONPATH"]
                                   if e.get("PYTHONPATH") else "")
        e["WALRUST_SOCKET"] = os.environ.get("WALRUST_SOCKET", "")
        e["PYTHONIOENCODING"] = "utf-8"
        return subprocess.run(
            [sys.executable, os.path.join(EXAMPLES, name + ".py"), *args],
            env=e, cwd=cwd, capture_output=True, text=True, timeout=timeout,
            stdin=subprocess.DEVNULL)

    return run
