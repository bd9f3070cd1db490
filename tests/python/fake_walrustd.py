#!/usr/bin/env python3
"""A fake walrustd for the Python package's client tests.

It speaks protocol v1 on a Unix socket (asyncio), keeps "buckets" in
memory, and imitates the real daemon closely enough to test the package
without the C build: strict argument checking, progress and warning
events, the error codes, shutdown.

    fake_walrustd.py --socket PATH [--replica URL] [--log-level LEVEL]

Knobs (environment):
    FAKE_WALRUSTD_RECORD    append "start <pid>" to this file at start
    FAKE_WALRUSTD_REQUESTS  append every request (JSON line) to this file
    FAKE_WALRUSTD_DELAY     sleep this long before listening (start races)
    FAKE_WALRUSTD_FAIL      exit at once with this status, after a message
    FAKE_WALRUSTD_PROTOCOL  the protocol number hello reports
    FAKE_WALRUSTD_ONLY_V    the only request "v" accepted (default 1)
    FAKE_WALRUSTD_CHUNKED   write every message in 1..7-byte pieces
    FAKE_WALRUSTD_NOISE     send events and replies of other ids, and blank
                            lines, before each real reply

Triggers: a secret access key "wrong" -> auth; an endpoint on port 1 ->
unreachable; a database name "corrupt" -> checksum on restore; a
point_in_time before 2000 -> before_first_snapshot; a database whose name
starts with "slow" takes 0.3 s.
"""

import argparse
import asyncio
import json
import os
import random
import sys
import time

VERSION = "0.1.0-fake"
STORAGE = {"bucket": str, "endpoint": str, "aws": dict}
COMMANDS = {
    "hello": {},
    "status": {},
    "shutdown": {},
    "list": dict(STORAGE),
    "snapshot": dict(STORAGE, database=str),
    "restore": dict(STORAGE, name=str, output=str, point_in_time=str,
                    txid=int, force=bool),
}
REQUIRED = {"snapshot": ("database",), "restore": ("name", "output")}
AWS_MEMBERS = {"access_key_id", "secret_access_key", "session_token",
               "region", "endpoint_url"}


class Fail(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


class Fake:
    def __init__(self, socket_path, replica):
        self.socket_path = socket_path
        self.default_bucket = replica or "file:///fake/default"
        self.buckets = {}  # url -> {name: (bytes, timestamp)}
        self.started = time.monotonic()
        self.server = None
        self.stopping = False
        self.rng = random.Random(os.getpid())

    # ----------------------------------------------------------- framing
    async def write(self, writer, msg):
        data = json.dumps(msg, separators=(",", ":")).encode() + b"\n"
        if os.environ.get("FAKE_WALRUSTD_CHUNKED"):
            i = 0
            while i < len(data):
                n = self.rng.randint(1, 7)
                writer.write(data[i:i + n])
                await writer.drain()
                i += n
        else:
            writer.write(data)
            await writer.drain()

    async def serve(self, reader, writer):
        try:
            while True:
                try:
                    line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    await self.write(writer, reply_error(
                        None, "line_too_long", "line longer than 1048576 "
                        "bytes"))
                    break
                if not line:
                    break
                if not line.strip():
                    continue
                await self.handle(line, writer)
                if self.stopping:
                    break
        except (ConnectionError, BrokenPipeError):
            pass
        finally:
            writer.close()
        if self.stopping:
            self.server.close()

    async def handle(self, line, writer):
        rid = None
        try:
            try:
                req = json.loads(line)
            except ValueError as e:
                raise Fail("bad_request", f"malformed JSON: {e}")
            if not isinstance(req, dict):
                raise Fail("bad_request", "a request must be a JSON object")
            if "id" not in req:
                raise Fail("bad_request", 'missing "id"')
            rid = req["id"]
            if isinstance(rid, bool) or not isinstance(rid, (int, str)):
                rid = None
                raise Fail("bad_request",
                           '"id" must be an integer or a string')
            log = os.environ.get("FAKE_WALRUSTD_REQUESTS")
            if log:
                with open(log, "a") as f:
                    f.write(json.dumps(req) + "\n")
            if req.get("v") != int(os.environ.get("FAKE_WALRUSTD_ONLY_V",
                                                   "1")):
                raise Fail("unsupported_version",
                           f"protocol version {req.get('v')} is not "
                           f"supported (this side speaks 1)")
            unknown = set(req) - {"v", "id", "cmd", "args"}
            if unknown:
                raise Fail("bad_request",
                           f'unknown member "{sorted(unknown)[0]}" in request')
            cmd = req.get("cmd")
            if cmd not in COMMANDS:
                raise Fail("unknown_command", f'unknown command "{cmd}"')
            args = req.get("args", {})
            if not isinstance(args, dict):
                raise Fail("bad_request", '"args" must be an object')
            spec = COMMANDS[cmd]
            bad = sorted(set(args) - set(spec))
            if bad:
                raise Fail("bad_request", f"unknown arguments for {cmd}: "
                           + ", ".join(f'"{b}"' for b in bad))
            for k, t in spec.items():
                if k in args and (not isinstance(args[k], t)
                                  or (t is int and isinstance(args[k], bool))):
                    raise Fail("bad_request", f'argument "{k}" of {cmd} has '
                               f"the wrong type")
            for k in REQUIRED.get(cmd, ()):
                if k not in args:
                    raise Fail("bad_request", f'missing required argument '
                               f'"{k}" for {cmd}')
            aws = args.get("aws", {})
            for k, v in aws.items():
                if k not in AWS_MEMBERS:
                    raise Fail("bad_request", f'unknown member "{k}" in "aws"')
                if not isinstance(v, str):
                    raise Fail("bad_request", f'"aws.{k}" must be a string')
            if self.stopping:
                raise Fail("shutting_down", "walrustd is shutting down")
            if os.environ.get("FAKE_WALRUSTD_NOISE"):
                await self.noise(writer, rid)
            result = await getattr(self, "cmd_" + cmd)(rid, args, writer)
            await self.write(writer, {"v": 1, "id": rid, "ok": True,
                                      "result": result})
        except Fail as e:
            await self.write(writer, reply_error(rid, e.code, e.message))

    async def noise(self, writer, rid):
        other = f"not-{rid}"
        writer.write(b"\n")
        await self.write(writer, {"v": 1, "id": other, "event": "progress",
                                  "data": {"phase": "noise"}})
        await self.write(writer, {"v": 1, "id": other, "event": "warning",
                                  "data": {"message": "not yours"}})
        await self.write(writer, {"v": 1, "id": other, "ok": True,
                                  "result": {"databases": ["nope"]}})
        await self.write(writer, {"v": 1, "id": rid, "event": "future-kind",
                                  "data": {"x": 1}})

    # ----------------------------------------------------------- storage
    def storage(self, args):
        bucket = args.get("bucket") or self.default_bucket
        if not (bucket.startswith("s3://") or bucket.startswith("file:///")):
            raise Fail("invalid_argument", f"invalid bucket URL {bucket}")
        if args.get("aws", {}).get("secret_access_key") == "wrong":
            raise Fail("auth", f"{bucket}: 403 SignatureDoesNotMatch (check "
                       f"AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)")
        ep = args.get("endpoint") or args.get("aws", {}).get("endpoint_url")
        if ep and ep.rstrip("/").endswith(":1"):
            raise Fail("unreachable", f"{ep}: Couldn't connect to server")
        return bucket, self.buckets.setdefault(bucket, {})

    async def progress(self, writer, rid, phase, done, total):
        await self.write(writer, {"v": 1, "id": rid, "event": "progress",
                                  "data": {"phase": phase, "done": done,
                                           "total": total, "bytes": done}})

    # ---------------------------------------------------------- commands
    async def cmd_hello(self, rid, args, writer):
        proto = int(os.environ.get("FAKE_WALRUSTD_PROTOCOL", "1"))
        return {"version": VERSION, "protocol": proto, "pid": os.getpid()}

    async def cmd_status(self, rid, args, writer):
        return {"version": VERSION, "pid": os.getpid(),
                "uptime_ms": int((time.monotonic() - self.started) * 1000),
                "socket": self.socket_path,
                "default_bucket": self.default_bucket, "workers": [],
                "jobs": 0, "databases": [], "fake": True}

    async def cmd_shutdown(self, rid, args, writer):
        self.stopping = True
        return {}

    async def cmd_list(self, rid, args, writer):
        bucket, store = self.storage(args)
        return {"bucket": bucket, "databases": sorted(store)}

    async def cmd_snapshot(self, rid, args, writer):
        db = args["database"]
        if not db.startswith("/"):
            raise Fail("invalid_argument", f"database path must be "
                       f"absolute: {db}")
        try:
            with open(db, "rb") as f:
                data = f.read()
        except OSError:
            raise Fail("not_found", f"no such database: {db}")
        bucket, store = self.storage(args)
        name = os.path.splitext(os.path.basename(db))[0]
        if name.startswith("slow"):
            await asyncio.sleep(0.3)
        await self.progress(writer, rid, "read", 0, 1)
        await self.progress(writer, rid, "upload", 1, 1)
        wal = len(data) >= 20 and data[18] == 2 and data[19] == 2
        warnings = []
        if not wal:
            w = (f"{db} is not in WAL mode: it can be snapshotted but not "
                 f"replicated continuously")
            warnings.append(w)
            await self.write(writer, {"v": 1, "id": rid, "event": "warning",
                                      "data": {"message": w}})
        ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        store[name] = (data, ts)
        return {"name": name, "database": db, "bucket": bucket, "txid": 1,
                "key": f"{name}/0009/0000000000000001-0000000000000001.ltx",
                "pages": max(1, len(data) // 4096), "page_size": 4096,
                "bytes": len(data), "timestamp": ts, "wal_mode": wal,
                "warnings": warnings}

    async def cmd_restore(self, rid, args, writer):
        name, out = args["name"], args["output"]
        if "/" in name or name.startswith("."):
            raise Fail("invalid_argument", f'invalid database name "{name}"')
        if not out.startswith("/"):
            raise Fail("invalid_argument", f"output must be absolute: {out}")
        bucket, store = self.storage(args)
        if name == "corrupt":
            raise Fail("checksum", f"{name}: checksum mismatch in "
                       f"{name}/0000/0000000000000001-0000000000000001.ltx")
        if name not in store:
            raise Fail("no_snapshot", f"{name}: no snapshot in {bucket}")
        data, ts = store[name]
        pit = args.get("point_in_time")
        if pit is not None and pit < "2000":
            raise Fail("before_first_snapshot", f"{name}: {pit} is before "
                       f"the first snapshot ({ts})")
        if os.path.exists(out) and not args.get("force"):
            raise Fail("invalid_argument", f"{out} exists (use force)")
        if name.startswith("slow"):
            await asyncio.sleep(0.3)
        await self.progress(writer, rid, "download", 1, 1)
        await self.progress(writer, rid, "apply", 1, 1)
        try:
            with open(out, "wb") as f:
                f.write(data)
        except OSError as e:
            raise Fail("io", f"write {out}: {e.strerror}")
        return {"name": name, "output": out, "bucket": bucket, "txid": 1,
                "timestamp": ts, "files": 1, "pages": 1, "bytes": len(data)}


def reply_error(rid, code, message):
    return {"v": 1, "id": rid, "ok": False,
            "error": {"code": code, "message": message}}


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--socket", "-s", required=True)
    p.add_argument("--replica")
    p.add_argument("--log-level")
    a = p.parse_args()
    fail = os.environ.get("FAKE_WALRUSTD_FAIL")
    if fail:
        print("fake walrustd: failing on purpose", file=sys.stderr, flush=True)
        sys.exit(int(fail))
    rec = os.environ.get("FAKE_WALRUSTD_RECORD")
    if rec:
        with open(rec, "a") as f:
            f.write(f"start {os.getpid()}\n")
    await asyncio.sleep(float(os.environ.get("FAKE_WALRUSTD_DELAY", "0")))
    os.makedirs(os.path.dirname(a.socket), mode=0o700, exist_ok=True)
    if os.path.exists(a.socket):
        os.unlink(a.socket)
    fake = Fake(a.socket, a.replica)
    fake.server = await asyncio.start_unix_server(fake.serve, a.socket,
                                                  limit=1024 * 1024)
    print(f"fake walrustd {os.getpid()} listening on {a.socket}",
          file=sys.stderr, flush=True)
    try:
        await fake.server.serve_forever()
    except asyncio.CancelledError:
        pass
    finally:
        if os.path.exists(a.socket):
            os.unlink(a.socket)


if __name__ == "__main__":
    asyncio.run(main())
