#!/usr/bin/env python3
"""Jupyter Notebook Usage of the Python API document, as a script (one
section per cell). It works in the current directory: analysis.db must
hold a table named results. S3_BUCKET and S3_ENDPOINT override the
document's literals.
"""
# Cell 1: Setup
import os
import sqlite3

import pandas as pd

from walrust import Walrust

ws = Walrust(
    os.environ.get("S3_BUCKET", "s3://my-bucket"),
    endpoint=os.environ.get("S3_ENDPOINT", "https://fly.storage.tigris.dev") or None,
)

# Cell 2: Analyze data
conn = sqlite3.connect("analysis.db")
df = pd.read_sql("SELECT * FROM results", conn)
print(df.describe())

# Cell 3: Backup results
ws.snapshot("analysis.db")
print("Analysis backed up to S3")

# Cell 4: Later... restore
ws.restore("analysis", "analysis-restored.db")
conn_restored = sqlite3.connect("analysis-restored.db")
df_restored = pd.read_sql("SELECT * FROM results", conn_restored)
assert df.equals(df_restored), "Backup verification failed!"
print("✓ Backup verified")
