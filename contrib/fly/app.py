"""A tiny web app writing to SQLite; walrustd replicates /data/app.db."""
import http.server
import sqlite3

DB = "/data/app.db"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        c = sqlite3.connect(DB)
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("CREATE TABLE IF NOT EXISTS hits(at TEXT DEFAULT CURRENT_TIMESTAMP)")
        c.execute("INSERT INTO hits DEFAULT VALUES")
        c.commit()
        n = c.execute("SELECT count(*) FROM hits").fetchone()[0]
        c.close()
        body = f"{n} hits\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


http.server.ThreadingHTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
