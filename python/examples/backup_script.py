#!/usr/bin/env python3
"""Automated Backup Script of the Python API document.

DATABASES (paths separated by ':'), S3_BUCKET and S3_ENDPOINT override the
document's literals.
"""
import os
import sys

from walrust import Walrust

DATABASES = os.environ.get(
    "DATABASES", "/data/app.db:/data/users.db:/data/analytics.db"
).split(os.pathsep)
BUCKET = os.environ.get("S3_BUCKET", "s3://my-bucket")
ENDPOINT = os.environ.get("S3_ENDPOINT", "https://fly.storage.tigris.dev") or None


def main() -> None:
    ws = Walrust(BUCKET, endpoint=ENDPOINT)

    failed = []
    for db in DATABASES:
        try:
            print(f"Snapshotting {db}...")
            ws.snapshot(db)
            print(f"✓ {db}")
        except RuntimeError as e:
            print(f"✗ {db}: {e}")
            failed.append(db)

    if failed:
        print(f"\nFailed to snapshot {len(failed)} database(s)")
        sys.exit(1)
    else:
        print(f"\n✓ All {len(DATABASES)} databases backed up")
        sys.exit(0)


if __name__ == "__main__":
    main()
