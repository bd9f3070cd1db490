#!/usr/bin/env python3
"""The short examples of the Python API document, in order: constructors,
snapshot loop, restores (basic and point-in-time), list checks, the
module-level functions, error handling, environment variables, WAL mode.

The document's paths /data/app.db and /data/users.db come from DATA_DIR
(default /data), /data/restored.db from RESTORE_DIR; S3_BUCKET,
S3_ENDPOINT as in the other examples. POINT_IN_TIME replaces
2024-01-15T10:30:00Z (which must be after the first snapshot to work).
"""
import os
import sqlite3

import walrust
from walrust import Walrust, list_databases, restore, snapshot

BUCKET = os.environ.get("S3_BUCKET", "s3://my-bucket")
ENDPOINT = os.environ.get("S3_ENDPOINT", "https://fly.storage.tigris.dev") or None
DATA = os.environ.get("DATA_DIR", "/data")
RESTORE_DIR = os.environ.get("RESTORE_DIR", DATA)
PIT = os.environ.get("POINT_IN_TIME", "2024-01-15T10:30:00Z")
APP_DB = f"{DATA}/app.db"
USERS_DB = f"{DATA}/users.db"

# Check WAL mode (best practice)
conn = sqlite3.connect(APP_DB)
conn.execute("PRAGMA journal_mode=WAL")
conn.close()

# Constructors: AWS S3, Tigris, with prefix (none is contacted yet)
for made in (Walrust("s3://my-backups"),
             Walrust("s3://my-backups", endpoint="https://fly.storage.tigris.dev"),
             Walrust("s3://my-backups/production"),
             Walrust("my-backups")):
    print(made)

ws = Walrust(BUCKET, endpoint=ENDPOINT)

# Snapshot a single database
ws.snapshot(APP_DB)

# Snapshot multiple databases in a loop
for db in [APP_DB, USERS_DB]:
    ws.snapshot(db)

# Basic restore
ws.restore("app", f"{RESTORE_DIR}/restored.db")

# Point-in-time restore
ws.restore("app", f"{RESTORE_DIR}/restored-pit.db", point_in_time=PIT)

# List all databases
dbs = ws.list()
print(dbs)

# Check if a specific database exists
if "app" in ws.list():
    print("app.db is backed up")

# Module-level functions
snapshot(APP_DB, BUCKET, endpoint=ENDPOINT)
restore("app", f"{RESTORE_DIR}/restored-fn.db", BUCKET, endpoint=ENDPOINT)
restore("app", f"{RESTORE_DIR}/restored-fn-pit.db", BUCKET, endpoint=ENDPOINT,
        point_in_time=PIT)
print(list_databases(BUCKET, endpoint=ENDPOINT))

# Error handling
try:
    ws.snapshot(f"{DATA}/does-not-exist.db")
except RuntimeError as e:
    print(f"Snapshot failed: {e}")
    # the specific class, for those who want it
    assert isinstance(e, walrust.DatabaseNotFoundError)
