"""Packaging and typing: `mypy --strict` on the package and the examples,
and a fresh virtual environment where `pip install ./python` builds
walrustd from the C sources and the quick start runs with no walrustd
started by hand."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from wrpy_helpers import EXAMPLES, PYDIR, REPO, clean_env, short_tmpdir
from wrpy_helpers import dump, make_db


def test_mypy_strict():
    pytest.importorskip("mypy")
    p = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental",
         "--cache-dir=/dev/null", "python/walrust", "python/examples"],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Success: no issues found" in p.stdout


def _pyproject():
    with open(os.path.join(PYDIR, "pyproject.toml")) as f:
        return f.read()


def test_pyproject_declares_no_runtime_dependencies():
    text = _pyproject()
    assert 'name = "walrust"' in text
    assert 'version = "0.1.0"' in text
    assert 'requires-python = ">=3.9"' in text
    assert "dependencies = []" in text
    assert os.path.exists(os.path.join(PYDIR, "walrust", "py.typed"))


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_fresh_venv_install_and_quickstart(moto, tmp_path):
    """python -m venv; pip install ./python (real C build); the quick
    start auto-starts the bundled walrustd; a second process reuses it."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True,
                   timeout=300)
    py = str(venv / "bin" / "python")
    env = clean_env()
    for k in ("WALRUST_WALRUSTD", "WALRUST_SKIP_BUILD", "PYTHONPATH"):
        env.pop(k, None)
    p = subprocess.run([py, "-m", "pip", "install", "--disable-pip-version-check",
                        os.path.join(REPO, "python")],
                       env=env, capture_output=True, text=True, timeout=1200,
                       cwd=str(tmp_path))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-5000:]
    # the installed package, with its own walrustd
    info = subprocess.run(
        [py, "-c", "import walrust, os, json; from walrust import _daemon; "
         "print(json.dumps([walrust.__file__, _daemon.bundled_binary(), "
         "walrust.__version__]))"],
        env=env, capture_output=True, text=True, cwd=str(tmp_path),
        timeout=60)
    assert info.returncode == 0, info.stderr
    pkg_file, binary, version = json.loads(info.stdout)
    assert pkg_file.startswith(str(venv)), pkg_file
    assert version == "0.1.0"
    assert os.access(binary, os.X_OK), binary
    assert os.path.exists(os.path.join(os.path.dirname(pkg_file),
                                       "py.typed"))

    run = short_tmpdir("wr-venv-")
    sock = os.path.join(run, "sub", "walrustd.sock")
    rep = moto.replica()
    app = make_db(tmp_path / "app.db", rows=100)
    out = tmp_path / "restored.db"
    env.update(moto.env())
    env.update(WALRUST_SOCKET=sock, S3_BUCKET=rep.url,
               S3_ENDPOINT=moto.endpoint, APP_DB=app, RESTORED_DB=str(out),
               PYTHONIOENCODING="utf-8")
    try:
        assert not os.path.exists(sock)
        q = subprocess.run([py, os.path.join(EXAMPLES, "quickstart.py")],
                           env=env, capture_output=True, text=True,
                           cwd=str(tmp_path), timeout=120)
        assert q.returncode == 0, q.stdout + q.stderr
        assert q.stdout.strip() == "['app']"
        assert dump(out) == dump(app)
        code = ("import walrust, json; print(json.dumps("
                "walrust.Walrust('file:///tmp').status()))")
        pids = []
        for _ in range(2):
            s = subprocess.run([py, "-c", code], env=env, capture_output=True,
                               text=True, cwd=str(tmp_path), timeout=60)
            assert s.returncode == 0, s.stderr
            pids.append(json.loads(s.stdout)["pid"])
        assert pids[0] == pids[1]
        assert os.path.realpath(f"/proc/{pids[0]}/exe") == \
            os.path.realpath(binary)
        assert os.path.exists(os.path.join(run, "sub", "walrustd.log"))
    finally:
        subprocess.run([py, "-c", f"import walrust; "
                        f"walrust.shutdown_daemon({sock!r})"], env=env,
                       timeout=60)
        shutil.rmtree(run, ignore_errors=True)
