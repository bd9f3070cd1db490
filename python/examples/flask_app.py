"""Flask Integration of the Python API document.

S3_BUCKET (required) and S3_ENDPOINT as in the document; APP_DB overrides
the database path (/data/app.db).
"""
import os
from typing import Any, Dict, Tuple

from flask import Flask

from walrust import Walrust

APP_DB = os.environ.get("APP_DB", "/data/app.db")

app = Flask(__name__)

# Initialize walrust
ws = Walrust(
    os.environ["S3_BUCKET"],
    endpoint=os.environ.get("S3_ENDPOINT"),
)


@app.route("/backup", methods=["POST"])
def backup() -> Tuple[Dict[str, Any], int]:
    """Trigger manual backup"""
    try:
        ws.snapshot(APP_DB)
        return {"status": "success"}, 200
    except RuntimeError as e:
        return {"status": "error", "message": str(e)}, 500


@app.route("/backups", methods=["GET"])
def list_backups() -> Tuple[Dict[str, Any], int]:
    """List available backups"""
    try:
        dbs = ws.list()
        return {"databases": dbs}, 200
    except RuntimeError as e:
        return {"status": "error", "message": str(e)}, 500


if __name__ == "__main__":
    app.run()
