#!/usr/bin/env python3
"""Quick Start of the Python API document.

The document's literals come from the environment when set:
S3_BUCKET (s3://my-bucket), S3_ENDPOINT (https://fly.storage.tigris.dev;
empty for AWS), APP_DB (/path/to/app.db), RESTORED_DB (/path/to/restored.db).
"""
import os

from walrust import Walrust

BUCKET = os.environ.get("S3_BUCKET", "s3://my-bucket")
ENDPOINT = os.environ.get("S3_ENDPOINT", "https://fly.storage.tigris.dev") or None
APP_DB = os.environ.get("APP_DB", "/path/to/app.db")
RESTORED_DB = os.environ.get("RESTORED_DB", "/path/to/restored.db")

# Create instance
ws = Walrust(BUCKET, endpoint=ENDPOINT)

# Take a snapshot
ws.snapshot(APP_DB)

# List backed up databases
dbs = ws.list()
print(dbs)  # ['app', 'users', 'analytics']

# Restore a database
ws.restore("app", RESTORED_DB)
