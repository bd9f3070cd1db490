"""HTTPS to the object store: the path every user on AWS, R2 or Tigris takes.

The S3 servers on loopback speak plain HTTP, so a TLS-terminating proxy
(FaultProxy with tls=) sits in front of them with a certificate made here
for 127.0.0.1. walrustd is told about that certificate the way AWS's own
tools are, with AWS_CA_BUNDLE; without it, the handshake must fail at once
with an error that says so (no retries: a certificate does not heal), and
the daemon keeps serving.
"""

import os
import ssl
import subprocess

import pytest

from walrust_testlib import dbtools
from walrust_testlib.faultproxy import FaultProxy

NAME = "app"


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    crt, key = str(d / "cert.pem"), str(d / "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
         "-keyout", key, "-out", crt, "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    return crt, ctx


def test_snapshot_and_restore_over_https(daemon_factory, s3_replica, cert,
                                         tmp_path):
    crt, ctx = cert
    db = str(tmp_path / f"{NAME}.db")
    dbtools.create_db(db, size_mb=2)
    sums = dbtools.table_checksums(db)
    with FaultProxy(s3_replica.endpoint, tls=ctx) as p:
        assert p.endpoint.startswith("https://")
        rep = s3_replica.via(p.endpoint)
        d = daemon_factory(env={"AWS_CA_BUNDLE": crt})
        snap = d.ctl("snapshot", db, env=rep.env(), **rep.ctl_opts()).json
        out = str(tmp_path / "out.db")
        rest = d.ctl("restore", NAME, out, env=rep.env(),
                     **rep.ctl_opts()).json
        listed = d.ctl("list", env=rep.env(), **rep.ctl_opts()).json
        counts = dict(p.counts)
    assert rest["txid"] == snap["txid"]
    assert NAME in listed["databases"]
    assert dbtools.integrity_ok(out)
    assert dbtools.table_checksums(out) == sums
    # every request went through the TLS proxy
    assert counts.get("PUT") and counts.get("GET"), counts


def test_untrusted_certificate_fails_at_once(daemon_factory, s3_replica,
                                             cert, tmp_path):
    _, ctx = cert
    db = str(tmp_path / f"{NAME}.db")
    dbtools.create_small_db(db)
    with FaultProxy(s3_replica.endpoint, tls=ctx) as p:
        rep = s3_replica.via(p.endpoint)
        d = daemon_factory()  # no AWS_CA_BUNDLE: the system's CAs only
        r = d.ctl("snapshot", db, env=rep.env(), check=False, timeout=60,
                  **rep.ctl_opts())
        connections = p.connections
        assert p.counts.get("PUT", 0) == 0, "a request got through"
    assert r.rc != 0 and r.error, r
    msg = r.error["message"]
    assert "certificate" in msg.lower(), msg
    # not retried: one connection (with TLS 1.3 the server side may finish
    # its handshake before the client refuses the certificate, so the
    # proxy counts connections, not failed handshakes), and at once
    assert 1 <= connections <= 2, connections
    assert r.elapsed < 10, f"took {r.elapsed:.1f}s"
    d.hello()
    assert os.path.exists(db)
