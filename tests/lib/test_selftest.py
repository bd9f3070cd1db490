"""Self-tests of the integration-test infrastructure (no walrust needed):
the S3 servers start, answer and stop; the fault proxy relays correctly and
injects each kind of fault; the database tools model the writer exactly."""

import http.client
import http.server
import os
import shutil
import socket
import subprocess
import threading
import time

import pytest
from botocore.exceptions import ClientError

from walrust_testlib import dbtools, litestream, servers
from walrust_testlib.faultproxy import FaultProxy, dead_endpoint

pytestmark = pytest.mark.timeout(120)


def _port_open(endpoint):
    host, port = endpoint.rsplit("/", 1)[1].split(":")
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, int(port))) == 0


def _group_gone(proc):
    try:
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        return True
    return False


# ---------------------------------------------------------------- servers
def test_moto_starts_and_stops():
    t0 = time.monotonic()
    with servers.start_moto(bucket="selftest") as s3:
        started = time.monotonic() - t0
        c = s3.client
        c.put_object(Bucket="selftest", Key="a/b", Body=b"hello")
        assert c.get_object(Bucket="selftest", Key="a/b")["Body"].read() \
            == b"hello"
        rep = s3.replica("p")
        rep.write("app/0000/0000000000000001-0000000000000001.ltx", b"x")
        assert [k.key for k in rep.ltx_keys("app")] == \
            ["app/0000/0000000000000001-0000000000000001.ltx"]
        proc, endpoint = s3.proc, s3.endpoint
    assert proc.poll() is not None and _group_gone(proc)
    assert not _port_open(endpoint)
    assert started < 30


@pytest.mark.skipif(not servers.find_binary("weed"), reason="no weed")
def test_seaweedfs_starts_enforces_sigv4_and_stops():
    t0 = time.monotonic()
    with servers.start_seaweedfs(bucket="selftest") as s3:
        started = time.monotonic() - t0
        c = s3.client
        c.put_object(Bucket="selftest", Key="k", Body=b"v" * 100000,
                     Metadata={"litestream-timestamp": "2024-01-01T00:00:00Z"})
        assert c.get_object(Bucket="selftest", Key="k")["Body"].read() \
            == b"v" * 100000
        assert c.head_object(Bucket="selftest", Key="k")["Metadata"] == \
            {"litestream-timestamp": "2024-01-01T00:00:00Z"}
        bad = servers.boto3_client(s3.endpoint, s3.access_key, "wrong",
                                   s3.region, attempts=1)
        with pytest.raises(ClientError) as e:
            bad.list_objects_v2(Bucket="selftest")
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        unknown = servers.boto3_client(s3.endpoint, "NOSUCHKEY", "x",
                                       s3.region, attempts=1)
        with pytest.raises(ClientError) as e:
            unknown.get_object(Bucket="selftest", Key="k")
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        proc, endpoint = s3.proc, s3.endpoint
    assert proc.poll() is not None and _group_gone(proc)
    assert not _port_open(endpoint)
    print(f"seaweedfs ready in {started:.2f}s")
    assert started < 60


def test_file_replica_layout(tmp_path):
    rep = servers.FileReplica(str(tmp_path))
    os.makedirs(tmp_path / "app" / "ltx" / "9")
    (tmp_path / "app" / "ltx" / "9" /
     "0000000000000001-000000000000000a.ltx").write_bytes(b"abc")
    (k,) = rep.ltx_keys("app")
    assert (k.level, k.min_txid, k.max_txid) == (9, 1, 10)
    assert rep.url == "file://" + str(tmp_path)
    rep.write(k.key, b"xyz")
    assert rep.read(k.key) == b"xyz"


# ------------------------------------------------------------ fault proxy
@pytest.fixture(scope="module")
def upstream():
    """A local HTTP/1.1 keep-alive server: GET /len/N answers N bytes with
    Content-Length, GET /chunked/N answers them chunked, PUT echoes the
    body's length; it counts connections."""
    state = {"connections": 0}

    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self):
            super().setup()
            self.connection.setsockopt(socket.IPPROTO_TCP,
                                       socket.TCP_NODELAY, 1)
            state["connections"] += 1

        def log_message(self, *a):
            pass

        def _payload(self):
            n = int(self.path.rsplit("/", 1)[1])
            return bytes(i % 251 for i in range(n))

        def do_GET(self):
            data = self._payload()
            self.send_response(200)
            if self.path.startswith("/chunked/"):
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for i in range(0, len(data), 1000):
                    part = data[i:i + 1000]
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                self.wfile.write(b"0\r\n\r\n")
            else:
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        def do_HEAD(self):
            self.send_response(200)
            self.send_header("Content-Length", "12345")
            self.end_headers()

        def do_PUT(self):
            n = int(self.headers.get("Content-Length", 0))
            body = self.rfile.read(n)
            out = str(len(body)).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request, client_address):
            pass  # the proxy resets connections on purpose

    srv = Server(("127.0.0.1", 0), H)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", state
    srv.shutdown()
    srv.server_close()


def _payload(n):
    return bytes(i % 251 for i in range(n))


def _conn(proxy, timeout=10):
    return http.client.HTTPConnection("127.0.0.1", proxy.port,
                                      timeout=timeout)


def test_proxy_passes_through_with_keepalive(upstream):
    url, state = upstream
    with FaultProxy(url) as p:
        before = state["connections"]
        c = _conn(p)
        for path, n in [("/len/100000", 100000), ("/chunked/25000", 25000),
                        ("/len/0", 0), ("/chunked/0", 0)]:
            c.request("GET", path)
            r = c.getresponse()
            assert r.status == 200
            assert r.read() == _payload(n)
        c.request("PUT", "/put", body=b"z" * 300000)
        r = c.getresponse()
        assert r.read() == b"300000"
        c.request("HEAD", "/x")
        r = c.getresponse()
        assert r.status == 200 and r.read() == b""
        assert r.getheader("Content-Length") == "12345"
        c.close()
        assert p.connections == 1  # one client connection for 6 requests
        assert state["connections"] - before == 1  # and one upstream
        assert p.counts == {"GET": 4, "PUT": 1, "HEAD": 1}
        assert p.faults == {"pass": 6}


def test_proxy_expect_100_continue(upstream):
    url, _ = upstream
    with FaultProxy(url) as p:
        s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
        s.sendall(b"PUT /put HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        s.sendall(b"hello")
        data = b""
        while not data.endswith(b"\r\n\r\n5"):
            chunk = s.recv(1000)
            assert chunk
            data += chunk
        assert data.startswith(b"HTTP/1.1 200")
        s.close()


@pytest.mark.parametrize("kind,status,code", [
    ("error500", 500, b"<Code>InternalError</Code>"),
    ("error503", 503, b"<Code>SlowDown</Code>"),
])
def test_proxy_error_replies(upstream, kind, status, code):
    url, _ = upstream
    with FaultProxy(url) as p:
        p.script(kind)
        c = _conn(p)
        c.request("PUT", "/put", body=b"q" * 5000)
        r = c.getresponse()
        body = r.read()
        assert r.status == status and code in body
        assert r.getheader("Content-Type") == "application/xml"
        # the connection stays usable, and the next request passes
        c.request("GET", "/len/10")
        r = c.getresponse()
        assert r.status == 200 and r.read() == _payload(10)
        assert p.faults == {kind: 1, "pass": 1}
        assert p.connections == 1


@pytest.mark.parametrize("path", ["/len/200000", "/chunked/200000"])
def test_proxy_reset_mid_body(upstream, path):
    url, _ = upstream
    with FaultProxy(url) as p:
        p.script("reset")
        c = _conn(p)
        c.request("GET", path)
        r = c.getresponse()
        assert r.status == 200  # the head arrived ...
        with pytest.raises((ConnectionResetError, http.client.IncompleteRead,
                            http.client.HTTPException)):
            r.read()  # ... the body did not
        assert p.faults == {"reset": 1}


def test_proxy_reset_raw_bytes(upstream):
    """About half the body arrives, then RST."""
    url, _ = upstream
    with FaultProxy(url) as p:
        p.script("reset")
        s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
        s.sendall(b"GET /len/100000 HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        with pytest.raises(ConnectionResetError):
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
        s.close()
        head, _, body = got.partition(b"\r\n\r\n")
        assert b"Content-Length: 100000" in head
        assert 0 < len(body) < 100000


def test_proxy_truncate(upstream):
    url, _ = upstream
    with FaultProxy(url) as p:
        p.script("truncate")
        c = _conn(p)
        c.request("GET", "/len/100000")
        r = c.getresponse()
        with pytest.raises(http.client.IncompleteRead) as e:
            r.read()
        assert 0 < len(e.value.partial) < 100000


def test_proxy_stall(upstream):
    url, _ = upstream
    with FaultProxy(url, stall_seconds=2.0) as p:
        p.script("stall")
        c = _conn(p)
        t0 = time.monotonic()
        c.request("GET", "/len/1000")
        r = c.getresponse()
        assert r.read() == _payload(1000)
        assert time.monotonic() - t0 >= 1.9


def test_proxy_modes(upstream):
    url, _ = upstream
    with FaultProxy(url) as p:
        port = p.port
        p.set_mode("down")
        with pytest.raises((ConnectionResetError, BrokenPipeError)):
            # the reset may even beat connect() back to the caller
            with socket.create_connection(("127.0.0.1", port), timeout=5) \
                    as s:
                s.sendall(b"GET /len/1 HTTP/1.1\r\nHost: x\r\n\r\n")
                if s.recv(100) == b"":
                    raise ConnectionResetError("closed")
        p.set_mode("refuse")
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5)
        p.set_mode("hang")
        c = _conn(p, timeout=1)
        c.request("GET", "/len/1")
        with pytest.raises(socket.timeout):
            c.getresponse()
        c.close()
        p.set_mode("pass")
        assert p.port == port
        c = _conn(p)
        c.request("GET", "/len/5")
        assert c.getresponse().read() == _payload(5)


def test_proxy_random_faults_are_seeded(upstream):
    url, _ = upstream

    def run(seed):
        with FaultProxy(url, rate=0.3, seed=seed, stall_seconds=0.01,
                        kinds=("error500", "error503", "stall")) as p:
            c = _conn(p)
            for _ in range(100):
                c.request("GET", "/len/10")
                c.getresponse().read()
            return [d for _, _, d, _ in p.log], p.faults

    a, fa = run(42)
    b, _ = run(42)
    c, _ = run(43)
    assert a == b and a != c
    faulted = 100 - fa["pass"]
    assert 15 <= faulted <= 45, fa
    assert fa["error500"] and fa["error503"] and fa["stall"]


def test_proxy_methods_filter(upstream):
    url, _ = upstream
    with FaultProxy(url, rate=1.0, kinds=("error503",), methods={"PUT"}) as p:
        c = _conn(p)
        c.request("GET", "/len/10")
        assert c.getresponse().read() == _payload(10)
        c.request("PUT", "/put", body=b"1")
        r = c.getresponse()
        r.read()
        assert r.status == 503


def test_proxy_cut_methods(upstream):
    """Cuts only hit the allowed methods: a scripted reset waits for a GET,
    random cuts on other methods become other kinds."""
    url, _ = upstream
    with FaultProxy(url, rate=1.0, kinds=("reset", "error500"), seed=3,
                    cut_methods={"GET"}) as p:
        p.script("reset")
        c = _conn(p)
        c.request("PUT", "/put", body=b"1")
        r = c.getresponse()
        r.read()
        assert r.status == 500  # random: reset not allowed, so error500
        c.request("GET", "/len/100000")
        r = c.getresponse()
        with pytest.raises((ConnectionResetError, http.client.HTTPException)):
            r.read()  # the scripted reset
        assert p.faults == {"error500": 1, "reset": 1}


def test_proxy_script_matcher(upstream):
    url, _ = upstream
    with FaultProxy(url) as p:
        p.script(("error503", lambda m, t: t.endswith("/7")))
        c = _conn(p)
        for n in range(5, 9):
            c.request("GET", f"/len/{n}")
            r = c.getresponse()
            r.read()
            assert r.status == (503 if n == 7 else 200)


def test_dead_endpoint_refuses():
    ep = dead_endpoint()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", int(ep.rsplit(":", 1)[1])),
                                 timeout=2)


@pytest.fixture(scope="module", params=["moto", "seaweedfs"])
def s3server(request):
    if request.param == "seaweedfs" and not servers.find_binary("weed"):
        pytest.skip("no weed")
    with servers.SERVERS[request.param](bucket="proxytest") as s:
        yield s


def test_boto3_through_proxy_with_each_fault(s3server):
    """SigV4 survives the proxy; every fault kind reaches boto3 as the
    failure it should be, and a retrying client gets correct data."""
    with FaultProxy(s3server.endpoint, stall_seconds=2.0) as p:
        once = s3server.new_client(endpoint=p.endpoint, attempts=1)
        data = os.urandom(3 * 1024 * 1024 + 17)
        once.put_object(Bucket="proxytest", Key="obj", Body=data)
        assert once.get_object(Bucket="proxytest", Key="obj")["Body"].read() \
            == data
        for kind, code in [("error500", "InternalError"),
                           ("error503", "SlowDown")]:
            p.script(kind)
            with pytest.raises(ClientError) as e:
                once.get_object(Bucket="proxytest", Key="obj")
            assert e.value.response["Error"]["Code"] == code
        for kind in ("reset", "truncate"):
            p.script(kind)
            with pytest.raises(Exception):
                once.get_object(Bucket="proxytest", Key="obj")["Body"].read()
        p.script("stall")
        t0 = time.monotonic()
        assert once.get_object(Bucket="proxytest", Key="obj")["Body"].read() \
            == data
        assert time.monotonic() - t0 >= 1.9
        # 20 % random faults, a retrying client: always the right bytes
        p.configure(rate=0.2, seed=5, stall_seconds=0.5)
        many = s3server.new_client(endpoint=p.endpoint, attempts=10)
        for i in range(10):
            many.put_object(Bucket="proxytest", Key=f"m{i}",
                            Body=data[:100000 * (i + 1)])
        def get(key):  # boto3 does not retry a body cut short: we do
            for _ in range(10):
                try:
                    return many.get_object(Bucket="proxytest",
                                           Key=key)["Body"].read()
                except Exception:
                    pass
            raise AssertionError(f"GET {key} failed 10 times")

        for i in range(10):
            assert get(f"m{i}") == data[:100000 * (i + 1)]
        assert sum(v for k, v in p.faults.items() if k != "pass") > 0
        assert p.counts["PUT"] >= 11 and p.counts["GET"] >= 15


def test_curl_through_proxy(s3server, tmp_path):
    """curl (what walrustd uses) through the proxy: a signed upload large
    enough for 'Expect: 100-continue', a download, both byte-exact; a reset
    mid-body is a curl error."""
    src = tmp_path / "src"
    src.write_bytes(os.urandom(2 * 1024 * 1024))
    sign = ["--aws-sigv4", f"aws:amz:{s3server.region}:s3",
            "--user", f"{s3server.access_key}:{s3server.secret_key}",
            "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"]
    with FaultProxy(s3server.endpoint) as p:
        url = f"{p.endpoint}/proxytest/curl-obj"
        r = subprocess.run(["curl", "-sSf", *sign, "-T", str(src), url],
                           capture_output=True, timeout=30)
        assert r.returncode == 0, r
        out = tmp_path / "out"
        r = subprocess.run(["curl", "-sSf", *sign, "-o", str(out), url],
                           capture_output=True, timeout=30)
        assert r.returncode == 0, r
        assert out.read_bytes() == src.read_bytes()
        p.script("reset")
        r = subprocess.run(["curl", "-sS", *sign, "-o", str(out), url],
                           capture_output=True, timeout=30)
        assert r.returncode in (18, 56), r  # partial file / recv failure
        assert p.counts["PUT"] == 1 and p.counts["GET"] == 2


# ---------------------------------------------------------------- dbtools
def test_create_db_is_deterministic(tmp_path):
    a = dbtools.create_db(str(tmp_path / "a.db"), size_mb=2, seed=3)
    b = dbtools.create_db(str(tmp_path / "b.db"), size_mb=2, seed=3)
    assert a == b and set(a) == set(dbtools.BASE_TABLES)
    info = dbtools.db_info(str(tmp_path / "a.db"))
    assert info["journal_mode"] == "wal"
    assert info["page_count"] * info["page_size"] >= 2 * 1024 * 1024
    assert dbtools.integrity_ok(str(tmp_path / "a.db"))


def test_writer_matches_model(tmp_path):
    db = str(tmp_path / "w.db")
    dbtools.create_small_db(db)
    with dbtools.Writer(db, seed=9, interval=0, checkpoint_every=7) as w:
        w.wait_for(60)
        # a consistent copy taken while the writer runs is some commit N
        dbtools.backup_copy(db, str(tmp_path / "copy.db"))
    n = dbtools.counter_value(str(tmp_path / "copy.db"))
    assert n >= 60
    got = dbtools.table_checksums(str(tmp_path / "copy.db"), ["t"])["t"]
    assert got == dbtools.expected_t_checksum(9, n)
    assert dbtools.expected_t_checksum(9, n) != \
        dbtools.expected_t_checksum(9, n - 1)
    final = dbtools.counter_value(db)
    assert final == w.committed()
    assert dbtools.table_checksums(db, ["t"])["t"] == \
        dbtools.expected_t_checksum(9, final)
    assert dbtools.integrity_ok(db)


def test_crash_leaves_wal(tmp_path):
    db = str(tmp_path / "c.db")
    dbtools.create_small_db(db)
    dbtools.crash_with_wal(db)
    assert os.path.getsize(db + "-wal") > 0


# ------------------------------------------------------------- litestream
@pytest.mark.skipif(not litestream.binary(), reason="no litestream")
def test_litestream_config_roundtrip(tmp_path):
    """The configs the interop tests write work with litestream alone."""
    db = str(tmp_path / "app.db")
    dbtools.create_small_db(db, rows=200)
    rep = servers.FileReplica(str(tmp_path / "rep"))
    cfg = litestream.write_config(str(tmp_path), db, rep)
    with litestream.Replicate(cfg) as lr:
        with dbtools.Writer(db, seed=4, interval=0.005) as w:
            w.wait_for(30)
        deadline = time.monotonic() + 20
        while not rep.ltx_keys("app") and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.5)
    out = str(tmp_path / "out.db")
    r = litestream.restore(cfg, db, out)
    assert r.returncode == 0, (r.stderr, lr.log())
    assert dbtools.table_checksums(out) == dbtools.table_checksums(db)
    shutil.rmtree(tmp_path / "rep")
