"""Every example of the Python API document (python/examples/*.py), run
against the real walrustd with moto and with SeaweedFS (and a file://
directory where it adds something)."""

import datetime as dt
import importlib.util
import os
import sqlite3
import time

import pytest

import walrust

from wrpy_helpers import EXAMPLES
from wrpy_helpers import dump, integrity, make_db


def example_env(t, **extra):
    env = t.env()
    env["S3_BUCKET"] = t.url
    env["S3_ENDPOINT"] = t.endpoint or ""
    env.update({k: str(v) for k, v in extra.items()})
    return env


def ok(proc):
    assert proc.returncode == 0, (f"exit {proc.returncode}\nstdout:\n"
                                  f"{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc.stdout


def test_quickstart(any_target, tmp_path, run_example):
    t = any_target
    app = make_db(tmp_path / "app.db", rows=200)
    out = tmp_path / "restored.db"
    stdout = ok(run_example("quickstart", env=example_env(
        t, APP_DB=app, RESTORED_DB=out)))
    assert stdout.strip() == "['app']"
    assert dump(out) == dump(app)
    assert integrity(out) == "ok"
    # Litestream's key layout, not the document's flat <name>/0001-0001.ltx
    keys = t.replica.ltx_keys("app")
    assert keys and all(k.name == "app" for k in keys), t.replica.keys()


def test_backup_script(target, tmp_path, run_example):
    dbs = [make_db(tmp_path / f"{n}.db", rows=30, seed=i)
           for i, n in enumerate(["app", "users", "analytics"])]
    stdout = ok(run_example("backup_script", env=example_env(
        target, DATABASES=os.pathsep.join(dbs))))
    for db in dbs:
        assert f"Snapshotting {db}...\n✓ {db}\n" in stdout
    assert stdout.rstrip().endswith("✓ All 3 databases backed up")
    ws = walrust.Walrust(target.url, endpoint=target.endpoint)
    with pytest.MonkeyPatch.context() as mp:
        for k, v in target.env().items():
            mp.setenv(k, v)
        assert ws.list() == ["analytics", "app", "users"]


def test_backup_script_reports_failures(target, tmp_path, run_example):
    good = make_db(tmp_path / "app.db")
    missing = str(tmp_path / "missing.db")
    p = run_example("backup_script", env=example_env(
        target, DATABASES=os.pathsep.join([good, missing])))
    assert p.returncode == 1, p.stdout + p.stderr
    assert f"✓ {good}" in p.stdout
    assert (f"✗ {missing}: snapshot of {missing} failed: no such database: "
            f"{missing}") in p.stdout
    assert "Failed to snapshot 1 database(s)" in p.stdout


def test_disaster_recovery(target, tmp_path, run_example):
    src = tmp_path / "src"
    src.mkdir()
    dbs = {n: make_db(src / f"{n}.db", rows=40, seed=i)
           for i, n in enumerate(["app", "users", "analytics"])}
    ok(run_example("backup_script", env=example_env(
        target, DATABASES=os.pathsep.join(dbs.values()))))
    rec = tmp_path / "recovery"
    rec.mkdir()
    stdout = ok(run_example("disaster_recovery", env=example_env(
        target, RECOVERY_DIR=rec)))
    assert f"Found 3 database(s) in {target.url}" in stdout
    assert f"✓ Restored all 3 databases to {rec}" in stdout
    for n, db in dbs.items():
        assert dump(rec / f"{n}.db") == dump(db)


def test_disaster_recovery_empty_bucket(target, tmp_path, run_example):
    stdout = ok(run_example("disaster_recovery", env=example_env(
        target, RECOVERY_DIR=tmp_path)))
    assert f"Found 0 database(s) in {target.url}" in stdout


def load_flask_app(monkeypatch, t, app_db):
    for k, v in example_env(t, APP_DB=app_db).items():
        monkeypatch.setenv(k, v)
    if not t.endpoint:
        monkeypatch.delenv("S3_ENDPOINT")
    name = f"flask_app_{time.monotonic_ns()}"
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(EXAMPLES, "flask_app.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_flask_integration(any_target, tmp_path, monkeypatch, aws_env):
    pytest.importorskip("flask")
    aws_env(any_target)
    app_db = make_db(tmp_path / "app.db", rows=10)
    mod = load_flask_app(monkeypatch, any_target, app_db)
    client = mod.app.test_client()
    r = client.get("/backups")
    assert r.status_code == 200 and r.get_json() == {"databases": []}
    r = client.post("/backup")
    assert r.status_code == 200, r.get_json()
    assert r.get_json() == {"status": "success"}
    r = client.get("/backups")
    assert r.status_code == 200 and r.get_json() == {"databases": ["app"]}
    assert client.get("/backup").status_code == 405


def test_flask_integration_errors(target, tmp_path, monkeypatch, aws_env):
    pytest.importorskip("flask")
    aws_env(target)
    missing = str(tmp_path / "app.db")
    mod = load_flask_app(monkeypatch, target, missing)
    client = mod.app.test_client()
    r = client.post("/backup")
    assert r.status_code == 500
    assert r.get_json() == {
        "status": "error",
        "message": f"snapshot of {missing} failed: no such database: "
                   f"{missing}"}
    monkeypatch.setattr(mod, "ws", walrust.Walrust(
        target.url, endpoint="http://127.0.0.1:1"))
    r = client.get("/backups")
    assert r.status_code == 500
    body = r.get_json()
    assert body["status"] == "error"
    assert body["message"].startswith(f"list of {target.url} failed: ")


def test_notebook(target, tmp_path, run_example):
    pd = pytest.importorskip("pandas")
    conn = sqlite3.connect(tmp_path / "analysis.db")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE results(run INTEGER, model TEXT, score REAL, "
                 "at TEXT)")
    conn.executemany("INSERT INTO results VALUES (?, ?, ?, ?)",
                     [(i, f"model-{i % 4}", 0.5 + i / 1000.0,
                       f"2024-01-{1 + i % 28:02d}") for i in range(500)])
    conn.commit()
    conn.close()
    stdout = ok(run_example("notebook", env=example_env(target),
                            cwd=tmp_path))
    assert "Analysis backed up to S3" in stdout
    assert stdout.rstrip().endswith("✓ Backup verified")
    assert "mean" in stdout  # df.describe()
    # and the same comparison here, with DataFrames
    a = pd.read_sql("SELECT * FROM results", sqlite3.connect(
        tmp_path / "analysis.db"))
    b = pd.read_sql("SELECT * FROM results", sqlite3.connect(
        tmp_path / "analysis-restored.db"))
    assert len(a) == 500 and a.equals(b)


def test_validate_backup(any_target, tmp_path, run_example, aws_env):
    t = any_target
    make_db(tmp_path / "app.db", rows=300)
    make_db(tmp_path / "users.db", rows=20)
    env = example_env(t, DATABASES=os.pathsep.join(
        [str(tmp_path / "app.db"), str(tmp_path / "users.db")]))
    ok(run_example("backup_script", env=env))
    stdout = ok(run_example("validate_backup", env=env, args=["app",
                                                              "users"]))
    assert stdout.splitlines() == ["✓ app", "✓ users"]
    # the function itself, in-process
    spec = importlib.util.spec_from_file_location(
        "validate_backup_example", os.path.join(EXAMPLES,
                                                "validate_backup.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    aws_env(t)
    ws = walrust.Walrust(t.url, endpoint=t.endpoint)
    assert mod.validate_backup(ws, "app") is True
    with pytest.raises(walrust.NoSnapshotError):
        mod.validate_backup(ws, "nothing")


def test_snippets(target, tmp_path, run_example, aws_env):
    data = tmp_path / "data"
    data.mkdir()
    make_db(data / "app.db", rows=25)
    make_db(data / "users.db", rows=5)
    aws_env(target)
    walrust.Walrust(target.url, endpoint=target.endpoint).snapshot(
        str(data / "app.db"))
    time.sleep(1.1)
    pit = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    stdout = ok(run_example("snippets", env=example_env(
        target, DATA_DIR=data, RESTORE_DIR=tmp_path, POINT_IN_TIME=pit)))
    assert "['app', 'users']" in stdout
    assert "app.db is backed up" in stdout
    assert (f"Snapshot failed: snapshot of {data}/does-not-exist.db failed: "
            f"no such database: {data}/does-not-exist.db") in stdout
    for f in ("restored", "restored-pit", "restored-fn", "restored-fn-pit"):
        assert dump(tmp_path / f"{f}.db") == dump(data / "app.db"), f
