"""Build hook of the walrust package: compiles walrustd from the repository's
C sources (python/..) and bundles it as walrust/bin/walrustd, with the
worker and job binary walrust/bin/walrust-worker beside it.

    pip install ./python                  # builds walrustd (a minute or two)
    WALRUST_SKIP_BUILD=1 pip install ./python   # Python code only

The build runs out of tree, in <setuptools build_temp>/walrustd-build:
`./bootstrap` first if `configure` is missing, then `configure` and
`make daemon/walrustd`. A source tree configured in place cannot host an
out-of-tree build, so it is first copied (without its configure outputs)
to <build_temp>/walrustd-src. WALRUST_SOURCE_DIR overrides the source
directory; WALRUST_CONFIGURE_FLAGS adds configure arguments.

All metadata lives in pyproject.toml.
"""

import os
import shlex
import shutil
import stat
import subprocess
import sys

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = os.path.dirname(os.path.abspath(__file__))

# Never copied into the build copy of a tree configured in place.
COPY_SKIP_NAMES = {
    ".git", "python", "autom4te.cache", ".deps", ".dirstamp", "config.status",
    "config.log", "config.h", "stamp-h1", "libtool", "__pycache__",
    ".pytest_cache", ".venv", "venv",
}
COPY_SKIP_SUFFIXES = (".o", ".a", ".lo", ".la", ".log", ".trs", ".pyc")
COPY_SKIP_PATHS = {"Makefile", "daemon/walrustd", "daemon/walrust-worker",
                   "client/walrustctl",
                   "tests/unit/unit", "bench/results"}


class BuildError(Exception):
    pass


def _say(msg):
    print(f"walrust: {msg}", file=sys.stderr, flush=True)


def _run(cmd, cwd, log_path, env=None):
    _say(f"$ {' '.join(shlex.quote(c) for c in cmd)}  (in {cwd})")
    with open(log_path, "ab") as log:
        log.write(f"\n$ {' '.join(cmd)}  (in {cwd})\n".encode())
        log.flush()
        rc = subprocess.call(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, env=env)
    if rc != 0:
        with open(log_path, "rb") as f:
            tail = f.read().decode("utf-8", "replace").splitlines()[-40:]
        raise BuildError(f"{cmd[0]} failed with status {rc}; the end of "
                         f"{log_path}:\n" + "\n".join(tail))


def _source_dir():
    src = os.environ.get("WALRUST_SOURCE_DIR") or os.path.dirname(HERE)
    src = os.path.abspath(src)
    if not (os.path.isfile(os.path.join(src, "configure.ac"))
            and os.path.isdir(os.path.join(src, "daemon"))):
        raise BuildError(
            f"the walrust C sources are not at {src} (configure.ac, daemon/): "
            f"install from a walrust checkout (pip install ./python), set "
            f"WALRUST_SOURCE_DIR, or set WALRUST_SKIP_BUILD=1 and point "
            f"WALRUST_WALRUSTD at a walrustd binary at run time")
    return src


def _copy_tree(src, dst):
    """Mirror src into dst (mtimes kept, so make stays incremental),
    leaving out the outputs of an in-place configure and build."""
    for root, dirs, files in os.walk(src):
        rel_root = os.path.relpath(root, src)
        rel = lambda n: n if rel_root == "." else os.path.join(rel_root, n)  # noqa: E731
        dirs[:] = [d for d in dirs
                   if d not in COPY_SKIP_NAMES
                   and not (d == "build" or (d.startswith("build-")
                                             and d != "build-aux"))
                   and rel(d) not in COPY_SKIP_PATHS]
        os.makedirs(os.path.join(dst, rel_root), exist_ok=True)
        for f in files:
            if (f in COPY_SKIP_NAMES or f.endswith(COPY_SKIP_SUFFIXES)
                    or rel(f) in COPY_SKIP_PATHS):
                continue
            s, d = os.path.join(root, f), os.path.join(dst, rel(f))
            try:
                ss, ds = os.stat(s), os.stat(d)
                if ss.st_mtime_ns == ds.st_mtime_ns and ss.st_size == ds.st_size:
                    continue
            except OSError:
                pass
            shutil.copy2(s, d)


def build_walrustd(build_temp):
    """Build walrustd; return the path of the binary."""
    src = _source_dir()
    os.makedirs(build_temp, exist_ok=True)
    log_path = os.path.join(os.path.abspath(build_temp), "walrustd-build.log")
    if not os.path.isfile(os.path.join(src, "configure")):
        _run(["sh", "./bootstrap"], src, log_path)
    if os.path.exists(os.path.join(src, "config.status")):
        copy = os.path.abspath(os.path.join(build_temp, "walrustd-src"))
        _say(f"{src} is configured in place; building from a copy in {copy}")
        _copy_tree(src, copy)
        src = copy
    bdir = os.path.abspath(os.path.join(build_temp, "walrustd-build"))
    os.makedirs(bdir, exist_ok=True)
    stamp = os.path.join(bdir, ".walrust-srcdir")
    old = open(stamp).read() if os.path.exists(stamp) else None
    if old != src or not os.path.exists(os.path.join(bdir, "Makefile")):
        shutil.rmtree(bdir)
        os.makedirs(bdir)
        flags = shlex.split(os.environ.get("WALRUST_CONFIGURE_FLAGS", ""))
        _run([os.path.join(src, "configure"), "--quiet"] + flags, bdir,
             log_path)
        with open(stamp, "w") as f:
            f.write(src)
    jobs = str(max(1, os.cpu_count() or 1))
    _run(["make", "-j", jobs, "daemon/walrustd", "daemon/walrust-worker"],
         bdir, log_path)
    binaries = [os.path.join(bdir, "daemon", b)
                for b in ("walrustd", "walrust-worker")]
    for b in binaries:
        if not os.access(b, os.X_OK):
            raise BuildError(f"make succeeded but {b} is missing")
    return binaries


class BuildPyWithDaemon(build_py):
    """build_py, then the C build of walrustd into walrust/bin/."""

    def run(self):
        super().run()
        if os.environ.get("WALRUST_SKIP_BUILD") == "1":
            _say("WALRUST_SKIP_BUILD=1: not building walrustd (set "
                 "WALRUST_WALRUSTD at run time, or have walrustd on PATH)")
            return
        build_temp = self.get_finalized_command("build").build_temp
        try:
            binaries = build_walrustd(build_temp)
        except BuildError as e:
            raise SystemExit(f"walrust: building walrustd failed: {e}\n"
                             f"(WALRUST_SKIP_BUILD=1 installs the Python "
                             f"code alone)") from None
        if getattr(self, "editable_mode", False):
            dest_dir = os.path.join(HERE, "walrust", "bin")
        else:
            dest_dir = os.path.join(self.build_lib, "walrust", "bin")
        os.makedirs(dest_dir, exist_ok=True)
        for binary in binaries:
            dest = os.path.join(dest_dir, os.path.basename(binary))
            shutil.copyfile(binary, dest)
            os.chmod(dest, os.stat(dest).st_mode | stat.S_IXUSR
                     | stat.S_IXGRP | stat.S_IXOTH | stat.S_IRUSR
                     | stat.S_IRGRP | stat.S_IROTH)
            _say(f"bundled {binary} as {dest}")


class BinaryDistribution(Distribution):
    """The wheel holds a native binary: tag it for this platform."""

    def has_ext_modules(self):
        return os.environ.get("WALRUST_SKIP_BUILD") != "1"


setup(cmdclass={"build_py": BuildPyWithDaemon}, distclass=BinaryDistribution)
