#!/usr/bin/env python3
"""Disaster Recovery Script of the Python API document.

S3_BUCKET, S3_ENDPOINT and RECOVERY_DIR override the document's literals.
"""
import os
import sys
from typing import Optional

from walrust import Walrust


def restore_all(bucket: str, endpoint: Optional[str], output_dir: str) -> bool:
    """Restore all databases from S3"""
    ws = Walrust(bucket, endpoint=endpoint)

    # List all backed up databases
    dbs = ws.list()
    print(f"Found {len(dbs)} database(s) in {bucket}")

    # Restore each one
    for name in dbs:
        output = f"{output_dir}/{name}.db"
        try:
            print(f"Restoring {name} to {output}...")
            ws.restore(name, output)
            print(f"✓ {name}")
        except RuntimeError as e:
            print(f"✗ {name}: {e}")
            return False

    print(f"\n✓ Restored all {len(dbs)} databases to {output_dir}")
    return True


if __name__ == "__main__":
    success = restore_all(
        bucket=os.environ.get("S3_BUCKET", "s3://my-bucket"),
        endpoint=os.environ.get("S3_ENDPOINT", "https://fly.storage.tigris.dev")
        or None,
        output_dir=os.environ.get("RECOVERY_DIR", "/recovery"),
    )
    sys.exit(0 if success else 1)
