#!/usr/bin/env python3
"""validate_backup of the Python API document ("Validate backups"), with a
command line: validate_backup.py NAME... (S3_BUCKET, S3_ENDPOINT as in the
other examples). Exits 0 when every backup restores and passes
PRAGMA integrity_check.
"""
import os
import sqlite3
import sys
import tempfile

from walrust import Walrust


def validate_backup(ws: Walrust, name: str) -> bool:
    """Restore to temp location and verify"""
    with tempfile.NamedTemporaryFile(delete=False) as tmp:
        try:
            ws.restore(name, tmp.name)
            # Run integrity check
            conn = sqlite3.connect(tmp.name)
            result = conn.execute("PRAGMA integrity_check").fetchone()
            conn.close()
            return bool(result[0] == "ok")
        finally:
            os.unlink(tmp.name)


def main(names: "list[str]") -> int:
    ws = Walrust(
        os.environ.get("S3_BUCKET", "s3://my-bucket"),
        endpoint=os.environ.get("S3_ENDPOINT", "https://fly.storage.tigris.dev")
        or None,
    )
    bad = 0
    for name in names or ws.list():
        ok = validate_backup(ws, name)
        print(f"{'✓' if ok else '✗'} {name}")
        bad += not ok
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
