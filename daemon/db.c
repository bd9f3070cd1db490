/*
 * db.c: continuous replication of one watched database (runs in a worker).
 *
 * The replica is a chain of LTX files, one per sync, each with the next
 * TXID. Two positions are kept:
 *   cap  what has been captured: encoded from the WAL into a local temp
 *        LTX file, queued for upload;
 *   pos  what the replica holds: the last file whose upload succeeded.
 * A position is (TXID, WAL salts, WAL byte offset just after the last
 * frame copied, database size in pages).
 *
 * Reading the WAL safely. We keep one connection with a read transaction
 * open at all times except inside our own checkpoint. While it is open:
 *  - no checkpoint can backfill frames after our read mark, so frames we
 *    have not copied stay in the WAL;
 *  - the WAL cannot restart (new salts, frames overwritten from the start)
 *    unless our read mark is 0, i.e. the WAL was fully backfilled when the
 *    transaction began, and then only once and only if no frame was
 *    appended to the old WAL after our transaction began.
 * We take the read transaction (a) when we start watching, before the
 * first capture, and (b) in our checkpoint, under a write barrier (a
 * second connection holding BEGIN IMMEDIATE), right after capturing every
 * frame. After (b) the transaction is "clean": everything in the WAL when
 * it began was captured. So when, at a poll, the WAL's salts differ from
 * cap's:
 *  - with a clean transaction, the old WAL was completely captured, and
 *    the new WAL's committed frames follow it: capture them from offset 32;
 *  - otherwise continuity cannot be proven, and we capture a full-database
 *    file (every page) at the next TXID. We never silently skip a gap.
 *
 * Each poll (every sync interval, default 1 s) costs one stat() of the WAL
 * when nothing changed. When it changed, the WAL is scanned (salts and
 * checksums verified by wal.c) and the pages whose newest committed frame
 * lies after cap's offset are encoded, plus every page between the old and
 * new database size (growth pages, read through the WAL overlay): a file
 * that grows the database must carry all of them. Pages above the commit
 * size are dropped.
 *
 * Shipping uploads queued files strictly in TXID order, one at a time per
 * database. A failed upload is retried with backoff, with the same TXID
 * and the same bytes: the chain never gets a hole, and nothing is
 * acknowledged (sync --wait, the position file) before the upload
 * completed.
 *
 * Each capture reads only what is new: the index of the current WAL
 * generation (page -> newest committed frame) is kept between captures and
 * extended from where the last scan ended, with the running checksum
 * saved there, so its cost does not grow with the WAL.
 *
 * Checkpoints (Litestream's policy): PASSIVE when the WAL holds >= 1000
 * frames, or every minute when new data was captured. Sequence: barrier,
 * capture, end the read transaction, PASSIVE checkpoint, begin a new read
 * transaction (clean; mark 0 when everything was copied back), release
 * the barrier; then restart the WAL with a bookkeeping write of our own
 * (a row in _walrust_seq) and leave mark 0 by a hand-off between our two
 * connections (see db_handoff and db_checkpoint for why each step is
 * needed). When the application holds the write lock most of the time, a
 * hand-off copies back what we captured without the lock first, so the
 * barrier is short. The application's own checkpoints are also fine:
 * PASSIVE/FULL stop at our read mark, RESTART/TRUNCATE wait for it or, if
 * our mark is 0, restart the WAL, which the salts reveal.
 *
 * Restarts: pos is saved after each upload in a position file in the
 * state directory. On start we list the replica: when the file's TXID is
 * the replica's newest and its salts and offset still describe the WAL,
 * we continue from there; otherwise (a crash lost the queue, the database
 * was restored, another host wrote) we write a full-database file after
 * the replica's newest TXID, never restarting at 1. A request that a
 * killed run had fully sent may still land after we listed: L0 files are
 * conditional creates, so it cannot overwrite ours, nor ours it (see
 * db_verify_taken for what happens when we find our next TXID taken).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "compact.h"
#include "daemon.h"
#include "retention.h"

#define DB_CHECKPOINT_FRAMES 1000
#define DB_CHECKPOINT_MS 60000
#define DB_RETRY_MAX_MS 30000
#define DB_LEVELS 3
#define DB_RETENTION_CHECK_MS 15000
#define DB_WAL_SIZE_LIMIT "67108864" /* bytes */

struct db_pos {
	uint64_t txid;
	uint32_t salt1, salt2;
	int64_t wal_end;
	uint32_t commit;
	uint32_t page_size;
};

struct db_file {
	struct db_file *next;
	int fd;
	uint64_t len;
	int level;
	uint64_t min_txid, max_txid;
	int64_t ts;
	int64_t captured_ms;
	bool advances; /* an L0 file: pos becomes `after` when shipped */
	struct db_pos after;
	db_snapshot_cb done; /* a snapshot someone waits for */
	uint32_t pages, page_size; /* a snapshot's */
	void *done_arg;
};

struct db_waiter {
	struct db_waiter *next;
	uint64_t txid;
	int64_t deadline_ms;
	db_wait_cb cb;
	void *arg;
};

struct db {
	struct db *next;
	uv_loop_t *loop;
	char *path, *walpath, *name, *posfile;
	struct storage *s;
	json_t *args;
	sqlite3 *conn, *barrier;
	int db_fd;
	uv_timer_t timer;
	int64_t interval_ms;
	enum db_state state;
	struct db_pos cap, pos;
	bool started, have_cap, txn_clean, listing, shipping, stopping,
		closed, force_poll;
	struct db_file *queue;
	int64_t last_sync_ms, last_ckpt_ms, next_ship_ms;
	bool dirty;
	unsigned failures;
	char *last_error;
	uint64_t files, bytes;
	struct db_waiter *waiters;
	struct stat last_wal;
	/* The index of the current WAL generation, kept between captures and
	 * extended by the frames appended since: a capture reads only what
	 * is new, however large the WAL has grown. */
	struct wal_index *widx;
	unsigned ckpt_fails; /* checkpoints in a row that found the db busy */
	/* Our read transaction may have read mark 0 (it began with the WAL
	 * copied back whole). Then the application's own checkpoints fail
	 * (a mark-0 reader forbids copying back), which costs it write
	 * throughput; once the application has written again we move to a
	 * mark above 0 by a hand-off. */
	bool mark_zero;
	struct db_pos ckpt_done; /* cap when the WAL was last copied back whole */
	/* Local copies of what we uploaded at levels 0..2: the inputs of the
	 * next compaction, read from here instead of downloaded again. */
	struct db_spool {
		int fd; /* -1 when empty */
		int64_t end;
		struct db_spool_ent {
			uint64_t min, max;
			int64_t off, len;
		} *e;
		size_t n, cap;
	} spool[DB_LEVELS];
	db_stopped_cb on_stopped;
	void *stopped_arg;
	/* Compaction and retention (see the section at the end). */
	struct replica_file *known; /* files in the replica we know of */
	size_t nknown, capknown;
	bool compacting, deleting;
	int64_t level_ms[DB_LEVELS + 1]; /* interval per level 1..3 */
	int64_t next_level_ms[DB_LEVELS + 1];
	int64_t snapshot_interval_ms, snapshot_retention_ms, l0_retention_ms;
	int64_t retention_check_ms; /* l0-retention-check-interval */
	int64_t next_snapshot_ms, next_retention_ms;
};

static void db_known_add(struct db *d, int level, uint64_t mn, uint64_t mx,
			 int64_t ts);
static void db_housekeeping(struct db *d, int64_t now);
static void db_spool_add(struct db *d, const struct db_file *f);
struct db_spool;
static void db_spool_close(struct db_spool *sp);

static void db_set_error(struct db *d, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void db_set_error(struct db *d, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *m = NULL;
	if (vasprintf(&m, fmt, ap) < 0)
		m = NULL;
	va_end(ap);
	if (m && (!d->last_error || strcmp(m, d->last_error) != 0))
		log_warn("%s: %s", d->path, m);
	free(d->last_error);
	d->last_error = m;
}

/* ------------------------------------------------------ position file */

static char *db_state_dir(void)
{
	const char *e = getenv("WALRUST_STATE_DIR");
	if (e && *e)
		return strdup(e);
	e = getenv("XDG_STATE_HOME");
	if (e && e[0] == '/')
		return util_strdup_printf("%s/walrust", e);
	e = getenv("HOME");
	if (e && e[0] == '/')
		return util_strdup_printf("%s/.local/state/walrust", e);
	return strdup("/var/lib/walrust/state");
}

static char *db_posfile_path(const char *path, const char *url)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (const char *p = path; *p; p++)
		h = (h ^ (unsigned char)*p) * 0x100000001b3ULL;
	h = (h ^ '\n') * 0x100000001b3ULL;
	for (const char *p = url; *p; p++)
		h = (h ^ (unsigned char)*p) * 0x100000001b3ULL;
	char *dir = db_state_dir();
	char *f = util_strdup_printf("%s/positions/%016" PRIx64 ".json", dir, h);
	free(dir);
	return f;
}

static void db_save_pos(struct db *d)
{
	json_t *j = json_pack("{s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I}",
			      "database", d->path, "replica",
			      storage_describe(d->s), "txid",
			      (json_int_t)d->pos.txid, "salt1",
			      (json_int_t)d->pos.salt1, "salt2",
			      (json_int_t)d->pos.salt2, "wal_end",
			      (json_int_t)d->pos.wal_end, "commit",
			      (json_int_t)d->pos.commit, "page_size",
			      (json_int_t)d->pos.page_size);
	char *tmp = util_strdup_printf("%s.tmp", d->posfile);
	char *dir = strdup(d->posfile);
	*strrchr(dir, '/') = '\0';
	util_mkdir_p(dir, 0700);
	if (json_dump_file(j, tmp, JSON_COMPACT) == 0)
		rename(tmp, d->posfile);
	free(tmp);
	free(dir);
	json_decref(j);
}

static bool db_load_pos(struct db *d, struct db_pos *p)
{
	json_t *j = json_load_file(d->posfile, 0, NULL);
	if (!j)
		return false;
	bool ok = json_is_string(json_object_get(j, "database")) &&
		  strcmp(json_string_value(json_object_get(j, "database")),
			 d->path) == 0;
	p->txid = (uint64_t)json_integer_value(json_object_get(j, "txid"));
	p->salt1 = (uint32_t)json_integer_value(json_object_get(j, "salt1"));
	p->salt2 = (uint32_t)json_integer_value(json_object_get(j, "salt2"));
	p->wal_end = json_integer_value(json_object_get(j, "wal_end"));
	p->commit = (uint32_t)json_integer_value(json_object_get(j, "commit"));
	p->page_size =
		(uint32_t)json_integer_value(json_object_get(j, "page_size"));
	json_decref(j);
	return ok && p->txid > 0;
}

/* ----------------------------------------------------- read transaction */

static int db_exec(sqlite3 *c, const char *sql)
{
	return sqlite3_exec(c, sql, NULL, NULL, NULL);
}

static int db_begin_read(struct db *d)
{
	if (db_exec(d->conn, "BEGIN") != SQLITE_OK ||
	    db_exec(d->conn, "SELECT count(*) FROM sqlite_master") != SQLITE_OK) {
		db_set_error(d, "cannot start a read transaction: %s",
			     sqlite3_errmsg(d->conn));
		db_exec(d->conn, "ROLLBACK");
		return -EIO;
	}
	return 0;
}

static int db_open_conn(struct db *d, char **err)
{
	if (sqlite3_open_v2(d->path, &d->conn,
			    SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
			    NULL) != SQLITE_OK)
		return util_err(err, -EIO, "cannot open %s: %s", d->path,
				d->conn ? sqlite3_errmsg(d->conn)
					: "out of memory");
	sqlite3_busy_timeout(d->conn, 5000);
	int persist = 1;
	sqlite3_file_control(d->conn, "main", SQLITE_FCNTL_PERSIST_WAL, &persist);
	sqlite3_stmt *st;
	bool wal = false;
	if (sqlite3_prepare_v2(d->conn, "PRAGMA journal_mode=WAL", -1, &st,
			       NULL) == SQLITE_OK) {
		if (sqlite3_step(st) == SQLITE_ROW)
			wal = strcmp((const char *)sqlite3_column_text(st, 0),
				     "wal") == 0;
		sqlite3_finalize(st);
	}
	if (!wal)
		return util_err(err, -EINVAL,
				"%s cannot be switched to WAL mode: %s", d->path,
				sqlite3_errmsg(d->conn));
	db_exec(d->conn, "PRAGMA wal_autocheckpoint=0");
	/* We read pages ourselves; SQLite only needs the schema. */
	db_exec(d->conn, "PRAGMA cache_size=-64");
	return db_begin_read(d) < 0 ? util_err(err, -EIO, "%s", d->last_error)
				    : 0;
}

/* -------------------------------------------------------------- capture */

/* Encode pages: the sorted `pages` (those <= commit) merged with the
 * range (grow_from, commit], read through src, into a new temp file. */
static int db_encode(struct db *d, struct snapshot_src *src,
		     const struct ltx_header *h, const uint32_t *pages,
		     size_t npages, uint32_t grow_from, int *out_fd,
		     uint64_t *out_len, char **err)
{
	struct ltx_enc *enc = NULL;
	uint8_t *page = malloc(h->page_size);
	int fd = util_tmpfile(), rc;
	if (fd < 0 || !page) {
		rc = util_err(err, fd < 0 ? fd : -ENOMEM,
			      "cannot create a temp file");
		goto out;
	}
	rc = ltx_enc_new(&enc, h, util_write_cb, &fd, err);
	if (rc < 0)
		goto out;
	uint32_t lock = ltx_lock_pgno(h->page_size);
	size_t i = 0;
	uint32_t g = grow_from + 1;
	for (;;) {
		uint32_t next = UINT32_MAX;
		while (i < npages && pages[i] > h->commit)
			i = npages; /* sorted: nothing further is <= commit */
		if (i < npages)
			next = pages[i];
		if (g <= h->commit && g < next)
			next = g;
		if (next == UINT32_MAX || next > h->commit)
			break;
		if (i < npages && pages[i] == next)
			i++;
		if (g == next)
			g++;
		if (next == lock)
			continue;
		rc = snapshot_read_page(src, next, page, err);
		if (rc == 0)
			rc = ltx_enc_page(enc, next, page, err);
		if (rc < 0)
			goto out;
	}
	rc = ltx_enc_finish(enc, 0, NULL, err);
	if (rc < 0)
		goto out;
	*out_len = ltx_enc_bytes(enc);
	*out_fd = fd;
	fd = -1;
out:
	ltx_enc_free(enc);
	free(page);
	if (fd >= 0)
		close(fd);
	return rc;
}

static void db_ship(struct db *d);
static bool db_wal_changed(struct db *d);

/* Capture what the WAL holds beyond cap. Synchronous, local only. */
static int db_capture(struct db *d)
{
	struct snapshot_src src = {.db_fd = d->db_fd, .wal_fd = -1};
	uint32_t *pages = NULL;
	size_t npages = 0;
	char *err = NULL;
	int rc = 0;
	struct stat st;

	if (stat(d->walpath, &st) == 0)
		d->last_wal = st;
	src.wal_fd = open(d->walpath, O_RDONLY | O_CLOEXEC);
	if (src.wal_fd < 0) {
		if (errno != ENOENT) {
			db_set_error(d, "cannot open %s: %s", d->walpath,
				     strerror(errno));
			return -EIO;
		}
		if (d->have_cap)
			return 0; /* no WAL yet: nothing new */
	} else {
		rc = d->widx ? wal_index_extend(d->widx, src.wal_fd, &err) : 1;
		if (rc == 1) {
			wal_index_free(d->widx);
			d->widx = NULL;
			rc = wal_index_scan(&d->widx, src.wal_fd, &err);
		}
		if (rc < 0) {
			wal_index_free(d->widx);
			d->widx = NULL;
			db_set_error(d, "cannot read the WAL: %s", err);
			goto out;
		}
		src.wal = d->widx;
	}
	const struct wal_header *wh = src.wal ? wal_index_header(src.wal) : NULL;
	uint32_t frames = src.wal ? wal_index_frames(src.wal) : 0;
	int64_t end = src.wal ? wal_index_end(src.wal) : 0;
	bool same_gen = wh && frames > 0 && d->have_cap &&
			wh->salt1 == d->cap.salt1 && wh->salt2 == d->cap.salt2;
	int64_t from;
	bool full = false;
	if (same_gen && end >= d->cap.wal_end) {
		if (end == d->cap.wal_end)
			goto out; /* nothing new */
		from = d->cap.wal_end;
	} else if (d->have_cap && frames == 0) {
		goto out; /* a restarted WAL with no commit yet */
	} else if (d->have_cap && d->txn_clean && !same_gen) {
		from = WAL_HEADER_SIZE;
	} else {
		full = true;
		from = WAL_HEADER_SIZE;
	}

	long long page_size = 0;
	sqlite3_stmt *ps;
	if (sqlite3_prepare_v2(d->conn, "PRAGMA page_size", -1, &ps, NULL) ==
	    SQLITE_OK) {
		if (sqlite3_step(ps) == SQLITE_ROW)
			page_size = sqlite3_column_int64(ps, 0);
		sqlite3_finalize(ps);
	}
	if (frames > 0 && wh->page_size != (uint32_t)page_size) {
		db_set_error(d, "WAL page size %u differs from the database's %lld",
			     wh->page_size, page_size);
		rc = -EINVAL;
		goto out;
	}
	uint32_t commit;
	if (frames > 0) {
		commit = wal_index_commit(src.wal);
	} else {
		struct stat dst;
		fstat(d->db_fd, &dst);
		commit = page_size ? (uint32_t)(dst.st_size / page_size) : 0;
	}
	src.page_size = (uint32_t)page_size;
	src.frame = malloc(WAL_FRAME_HEADER_SIZE + src.page_size);
	if (!full && frames > 0) {
		rc = wal_index_pages(src.wal, from, &pages, &npages);
		if (rc < 0)
			goto out;
	}
	if (frames == 0)
		src.wal = NULL;
	uint64_t txid = d->cap.txid + 1;
	struct ltx_header h = {
		.flags = LTX_FLAG_NO_CHECKSUM,
		.page_size = src.page_size,
		.commit = commit,
		.min_txid = txid,
		.max_txid = txid,
		.timestamp = util_now_ms(),
	};
	if (frames > 0) {
		h.wal_offset = from;
		h.wal_size = end - from;
		h.wal_salt1 = wh->salt1;
		h.wal_salt2 = wh->salt2;
	}
	uint32_t grow_from = full ? 0 : (d->have_cap ? d->cap.commit : 0);
	struct db_file *f = calloc(1, sizeof *f);
	if (!f || !src.frame) {
		free(f);
		rc = -ENOMEM;
		goto out;
	}
	rc = db_encode(d, &src, &h, pages, npages, grow_from, &f->fd, &f->len,
		       &err);
	if (rc < 0) {
		db_set_error(d, "cannot encode txid %" PRIu64 ": %s", txid, err);
		free(f);
		goto out;
	}
	f->level = 0;
	f->min_txid = f->max_txid = txid;
	f->ts = h.timestamp;
	f->captured_ms = util_now_ms();
	f->advances = true;
	f->after = (struct db_pos){
		.txid = txid,
		.salt1 = wh && frames ? wh->salt1 : 0,
		.salt2 = wh && frames ? wh->salt2 : 0,
		.wal_end = frames ? end : 0,
		.commit = commit,
		.page_size = src.page_size,
	};
	struct db_file **tail = &d->queue;
	while (*tail)
		tail = &(*tail)->next;
	*tail = f;
	d->cap = f->after;
	d->have_cap = true;
	d->dirty = true;
	if (full)
		log_info("%s: full-database file at txid %" PRIu64 " (%u pages)",
			 d->path, txid, commit);
out:
	free(err);
	free(pages);
	free(src.frame);
	if (src.wal_fd >= 0)
		close(src.wal_fd);
	return rc;
}

/* ----------------------------------------------------------- checkpoint */

/* Give back the pages of the database's -shm file that SQLite mapped into
 * this process: ours are touched only at checkpoints (a restart of the WAL
 * clears its hash tables, all 32 KB of them), and with a thousand
 * databases they would be a third of the worker's resident memory. The
 * mapping is MAP_SHARED: dropping pages only unmaps them here; the next
 * access maps them again from the file, unchanged (madvise(2)). */
static void db_shm_release(struct db *d)
{
	FILE *f = fopen("/proc/self/maps", "re");
	if (!f)
		return;
	size_t plen = strlen(d->path);
	char line[PATH_MAX + 128];
	while (fgets(line, sizeof line, f)) {
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = 0;
		char *name = strchr(line, '/');
		if (!name || strncmp(name, d->path, plen) != 0 ||
		    strcmp(name + plen, "-shm") != 0)
			continue;
		unsigned long lo, hi;
		if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && hi > lo)
			madvise((void *)lo, hi - lo, MADV_DONTNEED);
	}
	fclose(f);
}

/*
 * Backfilling without the write lock. An application that writes back to
 * back may keep the write lock for many seconds at a time, and our read
 * mark, taken at our last checkpoint, stops its own checkpoints from
 * copying anything newer back: its WAL grows, and the checkpoint we do
 * once we get the lock would have to copy all of it while the
 * application waits (long enough for its busy timeout to expire). So
 * when the lock is busy we move our read mark forward by a hand-off
 * between our two connections and let a PASSIVE checkpoint copy back
 * what we have captured, the application writing on:
 *
 *   1. the barrier connection starts a read transaction R2 (mark m2);
 *   2. capture: everything up to m2, and more, is now captured;
 *   3. end our read transaction R1 and run a PASSIVE checkpoint: it
 *      copies back at most up to m2, which R2 still pins;
 *   4. start our read transaction R3, then end R2.
 *
 * R3 is clean (everything in the WAL when it began was captured) in the
 * sense the capture needs: the WAL can restart under R3 only if R3's
 * mark is 0, that is, if the WAL was completely copied back when R3
 * began; while R2 was held nothing past m2 could be copied back, and
 * before that R1 pinned our earlier capture; so a WAL that restarts
 * under R3 held nothing we had not captured. At every moment one of our
 * read transactions is open, so frames we have not read cannot be
 * overwritten. The WAL file itself only restarts at the next checkpoint
 * under the lock, which is then short: little is left to copy back.
 */
static void db_handoff(struct db *d, bool backfill)
{
	sqlite3 *b = d->barrier;
	if (db_exec(b, "BEGIN") != SQLITE_OK ||
	    db_exec(b, "SELECT count(*) FROM sqlite_master") != SQLITE_OK) {
		db_exec(b, "ROLLBACK");
		return;
	}
	if (db_capture(d) == 0) {
		db_exec(d->conn, "COMMIT");
		int log = 0, ckpt = 0, rc = SQLITE_OK;
		if (backfill)
			rc = sqlite3_wal_checkpoint_v2(
				d->conn, "main", SQLITE_CHECKPOINT_PASSIVE,
				&log, &ckpt);
		d->txn_clean = db_begin_read(d) == 0;
		/* Copied back whole, the WAL gave R3 mark 0. Otherwise R2
		 * pinned frames above 0 that nothing could copy back under
		 * a mark-0 R1. */
		d->mark_zero = backfill && log >= 0 && log == ckpt;
		if (backfill && rc == SQLITE_OK)
			log_debug("%s: backfilled %d of %d frames without the "
				  "lock", d->path, ckpt, log);
		else if (backfill)
			log_debug("%s: no backfill without the lock: %s "
				  "(the application's checkpoint is running)",
				  d->path, sqlite3_errstr(rc));
	}
	db_exec(b, "ROLLBACK");
}

static int db_barrier_open(struct db *d)
{
	if (d->barrier)
		return 0;
	if (sqlite3_open_v2(d->path, &d->barrier,
			    SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
			    NULL) != SQLITE_OK) {
		sqlite3_close(d->barrier);
		d->barrier = NULL;
		return -EIO;
	}
	db_exec(d->barrier, "PRAGMA wal_autocheckpoint=0");
	db_exec(d->barrier, "PRAGMA cache_size=-64");
	/* When our bookkeeping write restarts the WAL, SQLite truncates the
	 * file to this size: a burst of writes does not leave a WAL file of
	 * its peak size behind (Litestream truncates at ~500 MB). */
	db_exec(d->barrier, "PRAGMA journal_size_limit=" DB_WAL_SIZE_LIMIT);
	return 0;
}

static void db_barrier_close(struct db *d)
{
	/* Checkpoints are rare: do not keep a second connection's memory
	 * around for each of possibly thousands of databases. */
	sqlite3_close(d->barrier);
	d->barrier = NULL;
}

static void db_checkpoint(struct db *d)
{
	if (db_barrier_open(d) < 0)
		return;
	/* A large WAL: copy most of it back first, without the lock, so
	 * that little is left to do while the application waits. */
	if (d->cap.page_size &&
	    d->cap.wal_end - WAL_HEADER_SIZE >=
		    (int64_t)DB_CHECKPOINT_FRAMES *
			    (WAL_FRAME_HEADER_SIZE + d->cap.page_size))
		db_handoff(d, true);
	/* Wait for the write lock briefly: this blocks the worker's loop.
	 * An application that writes back to back leaves only short gaps;
	 * each failure doubles the wait, up to a second, and meanwhile the
	 * hand-off copies back what we captured. */
	unsigned f = d->ckpt_fails < 5 ? d->ckpt_fails : 5;
	sqlite3_busy_timeout(d->barrier, (50 << f) > 1000 ? 1000 : 50 << f);
	if (db_exec(d->barrier, "BEGIN IMMEDIATE") != SQLITE_OK) {
		d->ckpt_fails++;
		return; /* the application is writing: next time */
	}
	d->ckpt_fails = 0;
	int64_t t0 = util_now_ms();
	if (db_capture(d) == 0) {
		db_exec(d->conn, "COMMIT");
		int log = 0, ckpt = 0, rc;
		/* SQLITE_BUSY: the application's own checkpoint is running
		 * (it copies back up to our old read mark, and meanwhile
		 * does not write); it ends soon. */
		for (int i = 0; i < 200; i++) {
			rc = sqlite3_wal_checkpoint_v2(
				d->conn, "main", SQLITE_CHECKPOINT_PASSIVE,
				&log, &ckpt);
			if (rc != SQLITE_BUSY)
				break;
			uv_sleep(5);
		}
		if (rc != SQLITE_OK)
			log_debug("%s: checkpoint: %s", d->path,
				  sqlite3_errmsg(d->conn));
		/* Still under the write lock: the WAL is copied back whole
		 * (unless an application reader pins part of it), so this
		 * read transaction gets mark 0 and is clean: the WAL held
		 * nothing we had not captured when it began. The
		 * application's next write restarts the WAL; the salts
		 * changing next is continuity, not a gap. (A bookkeeping
		 * write of our own here would not restart it: our barrier's
		 * snapshot predates the checkpoint, and SQLite restarts the
		 * WAL only for a writer whose snapshot read nothing from it;
		 * the WAL would grow for ever.) */
		d->txn_clean = db_begin_read(d) == 0;
		d->mark_zero = d->txn_clean && log == ckpt;
		if (d->mark_zero)
			d->ckpt_done = d->cap;
		log_debug("%s: checkpoint (%d frames, %d backfilled) in %d ms",
			  d->path, log, ckpt, (int)(util_now_ms() - t0));
	}
	db_exec(d->barrier, "ROLLBACK");
	if (d->mark_zero) {
		/* Now restart the WAL, by a write of our own that began
		 * after the copy back (so SQLite lets it restart the WAL)
		 * and then leave mark 0 by a hand-off: a mark-0 reader
		 * forbids copying back, and the application's automatic
		 * checkpoint would then fail at every commit, each time
		 * after sorting the whole WAL (which costs it most of its
		 * write rate). If the application writes first, its write
		 * restarts the WAL; ours then simply follows. Both are
		 * continuity: the old WAL was captured whole. */
		sqlite3_busy_timeout(d->barrier, 50);
		if (db_exec(d->barrier, "BEGIN IMMEDIATE") == SQLITE_OK) {
			db_exec(d->barrier,
				"CREATE TABLE IF NOT EXISTS _walrust_seq "
				"(id INTEGER PRIMARY KEY, seq INTEGER)");
			db_exec(d->barrier,
				"INSERT INTO _walrust_seq (id, seq) VALUES (1, 1) "
				"ON CONFLICT (id) DO UPDATE SET seq = seq + 1");
			if (db_exec(d->barrier, "COMMIT") != SQLITE_OK)
				db_exec(d->barrier, "ROLLBACK");
		}
		if (db_wal_changed(d)) {
			db_handoff(d, false);
			d->mark_zero = false;
		}
	}
	if (!d->mark_zero)
		db_barrier_close(d);
	db_shm_release(d);
	d->last_ckpt_ms = util_now_ms();
	d->dirty = false;
}

/* ------------------------------------------------------------- shipping */

static void db_wake_waiters(struct db *d, bool all_fail, const char *why)
{
	int64_t now = util_now_ms();
	for (struct db_waiter **pp = &d->waiters; *pp;) {
		struct db_waiter *w = *pp;
		int st = 1;
		if (all_fail)
			st = -ECANCELED;
		else if (d->pos.txid >= w->txid)
			st = 0;
		else if (w->deadline_ms && now >= w->deadline_ms)
			st = -ETIMEDOUT;
		if (st == 1) {
			pp = &w->next;
			continue;
		}
		*pp = w->next;
		w->cb(w->arg, st, d->pos.txid, why);
		free(w);
	}
}

static void db_maybe_stopped(struct db *d);

static void db_verify_taken(struct db *d);
static void db_start_listing(struct db *d);

static void db_shipped(void *arg, int status, const char *err)
{
	struct db *d = arg;
	struct db_file *f = d->queue;
	if (status == -EEXIST && f->advances && !d->closed) {
		db_verify_taken(d); /* still shipping */
		return;
	}
	d->shipping = false;
	if (status < 0) {
		d->failures++;
		int64_t delay = 250LL << (d->failures < 7 ? d->failures : 7);
		if (delay > DB_RETRY_MAX_MS)
			delay = DB_RETRY_MAX_MS;
		d->next_ship_ms = util_now_ms() + delay;
		db_set_error(d, "upload of txid %" PRIu64 " failed (%s); retrying",
			     f->max_txid, err ? err : "storage error");
		d->state = DB_ERROR;
		db_maybe_stopped(d);
		return;
	}
	d->failures = 0;
	d->queue = f->next;
	if (f->done)
		f->done(f->done_arg, 0, f->max_txid, f->len, f->pages,
			f->page_size, NULL);
	if (f->advances) {
		d->pos = f->after;
		db_save_pos(d);
	}
	d->files++;
	d->bytes += f->len;
	db_known_add(d, f->level, f->min_txid, f->max_txid, f->ts);
	d->last_sync_ms = util_now_ms();
	free(d->last_error);
	d->last_error = NULL;
	d->state = DB_REPLICATING;
	db_spool_add(d, f);
	close(f->fd);
	free(f);
	db_wake_waiters(d, false, NULL);
	db_ship(d);
	db_maybe_stopped(d);
}

static void db_ship(struct db *d)
{
	if (d->shipping || !d->queue || util_now_ms() < d->next_ship_ms)
		return;
	struct db_file *f = d->queue;
	char *key = replica_key(storage_kind(d->s), d->name, f->level,
				f->min_txid, f->max_txid);
	/* An L0 file is created only if its TXID is free (see
	 * db_verify_taken); the other levels rewrite what they cover. */
	int rc = (f->advances ? storage_put_new : storage_put)(
		d->s, key, f->fd, f->len, f->ts, db_shipped, d);
	free(key);
	if (rc < 0) {
		db_set_error(d, "cannot start an upload: %s", strerror(-rc));
		d->next_ship_ms = util_now_ms() + 1000;
		return;
	}
	d->shipping = true;
}

/* An L0 file's conditional create found its TXID taken. Either our own
 * PUT landed on an attempt whose answer was lost (a reset, a timeout) and
 * the retry was refused, or someone else wrote that TXID: the request of a
 * killed worker that landed late, or a second replicator of the same
 * database. Download what is there and compare: the same bytes are our
 * upload; other bytes mean our chain no longer continues the replica's, so
 * everything captured on top of it is dropped and we start over from a
 * listing, which ends in a full-database file at the replica's next TXID.
 * Nothing is overwritten either way. */
struct db_verify {
	struct db *d;
	int fd;
};

static bool db_same_bytes(int a, int b, uint64_t len)
{
	struct stat st;
	if (fstat(a, &st) < 0 || (uint64_t)st.st_size != len)
		return false;
	enum { CHUNK = 64 * 1024 };
	uint8_t *x = malloc(2 * CHUNK);
	bool same = x != NULL;
	for (uint64_t off = 0; same && off < len; off += CHUNK) {
		size_t n = len - off < CHUNK ? (size_t)(len - off) : CHUNK;
		same = util_pread_all(a, x, n, (off_t)off) == (ssize_t)n &&
		       util_pread_all(b, x + CHUNK, n, (off_t)off) ==
			       (ssize_t)n &&
		       memcmp(x, x + CHUNK, n) == 0;
	}
	free(x);
	return same;
}

static void db_diverged(struct db *d)
{
	uint64_t txid = d->queue->max_txid;
	struct db_file **pp = &d->queue;
	while (*pp) {
		struct db_file *f = *pp;
		if (!f->advances && !f->done) { /* a compaction: still valid */
			pp = &f->next;
			continue;
		}
		*pp = f->next;
		if (f->done)
			f->done(f->done_arg, -EAGAIN, f->max_txid, 0, 0, 0,
				"the replica changed under this snapshot "
				"(another writer?); try again");
		close(f->fd);
		free(f);
	}
	d->shipping = false;
	d->started = false;
	d->have_cap = false;
	d->state = DB_STARTING;
	db_set_error(d, "txid %" PRIu64 " is already in the replica with "
		     "other bytes (a second replicator of this database, or a "
		     "late upload of a killed worker); starting again from the "
		     "replica's newest TXID with a full-database file", txid);
	if (d->stopping) { /* the next run lists and continues */
		db_ship(d); /* compactions left in the queue */
		db_maybe_stopped(d);
	} else
		db_start_listing(d);
}

static void db_verify_got(void *arg, int status, const char *err)
{
	struct db_verify *v = arg;
	struct db *d = v->d;
	struct db_file *f = d->queue;
	bool same = status == 0 && db_same_bytes(v->fd, f->fd, f->len);
	close(v->fd);
	free(v);
	if (same) {
		log_info("%s: txid %" PRIu64 " was already uploaded (an answer "
			 "lost on the way)", d->path, f->max_txid);
		db_shipped(d, 0, NULL);
	} else if (status == 0) {
		db_diverged(d);
	} else { /* try the upload again later */
		db_shipped(d, status == -ENOENT ? -EAGAIN : status,
			   status == -ENOENT ? "the object that refused the "
					       "upload is gone"
					     : err);
	}
}

static void db_verify_taken(struct db *d)
{
	struct db_file *f = d->queue;
	struct db_verify *v = calloc(1, sizeof *v);
	char *key = replica_key(storage_kind(d->s), d->name, f->level,
				f->min_txid, f->max_txid);
	int rc = !v || !key ? -ENOMEM : 0;
	if (v)
		v->fd = -1;
	if (rc == 0) {
		v->d = d;
		v->fd = util_tmpfile();
		rc = v->fd < 0 ? v->fd : 0;
	}
	if (rc == 0)
		rc = storage_get(d->s, key, v->fd, db_verify_got, v);
	free(key);
	if (rc < 0) {
		if (v && v->fd >= 0)
			close(v->fd);
		free(v);
		db_shipped(d, rc, "cannot read back a refused upload");
	}
}

/* ----------------------------------------------------------------- poll */

static bool db_wal_changed(struct db *d)
{
	struct stat st;
	if (stat(d->walpath, &st) < 0)
		return false;
	return st.st_ino != d->last_wal.st_ino ||
	       st.st_size != d->last_wal.st_size ||
	       st.st_mtim.tv_sec != d->last_wal.st_mtim.tv_sec ||
	       st.st_mtim.tv_nsec != d->last_wal.st_mtim.tv_nsec;
}

static void db_poll(struct db *d)
{
	if (!d->started || d->closed)
		return;
	bool changed = d->force_poll || db_wal_changed(d) || !d->have_cap;
	d->force_poll = false;
	if (changed && db_capture(d) < 0)
		d->state = DB_ERROR;
	if (changed && d->mark_zero && !d->stopping &&
	    db_barrier_open(d) == 0) {
		db_handoff(d, false); /* see db_checkpoint */
		d->mark_zero = false;
		db_barrier_close(d);
	}
	int64_t now = util_now_ms();
	uint32_t frames = 0;
	if (d->cap.wal_end > WAL_HEADER_SIZE && d->cap.page_size)
		frames = (uint32_t)((d->cap.wal_end - WAL_HEADER_SIZE) /
				    (WAL_FRAME_HEADER_SIZE + d->cap.page_size));
	/* A WAL copied back whole stays that size until the application
	 * writes again (and restarts it): no need to do it again. */
	bool done = d->ckpt_done.wal_end == d->cap.wal_end &&
		    d->ckpt_done.salt1 == d->cap.salt1 &&
		    d->ckpt_done.salt2 == d->cap.salt2;
	if (!d->stopping &&
	    ((frames >= DB_CHECKPOINT_FRAMES && !done) || !d->txn_clean ||
	     (d->dirty && now - d->last_ckpt_ms >= DB_CHECKPOINT_MS)))
		db_checkpoint(d);
	db_ship(d);
	db_wake_waiters(d, false, NULL);
	db_housekeeping(d, now);
}

static void db_tick(uv_timer_t *t)
{
	db_poll(t->data);
}

/* ------------------------------------------------------------ lifecycle */

static void db_listed(void *arg, int status, const char *err, char **keys,
		      size_t nkeys, char **prefixes, size_t nprefixes)
{
	struct db *d = arg;
	d->listing = false;
	if (d->closed)
		return;
	if (status < 0) {
		db_set_error(d, "cannot list the replica: %s",
			     err ? err : "storage error");
		d->state = DB_ERROR;
		return; /* the timer retries */
	}
	uint64_t max = 0;
	for (size_t i = 0; i < nkeys; i++) {
		struct replica_file f;
		if (replica_parse_key(storage_kind(d->s), d->name, keys[i], &f) < 0)
			continue;
		if (f.max_txid > max)
			max = f.max_txid;
		db_known_add(d, f.level, f.min_txid, f.max_txid, 0);
		replica_file_clear(&f);
	}
	struct db_pos saved;
	bool loaded = max > 0 && db_load_pos(d, &saved);
	d->cap = (struct db_pos){.txid = max};
	d->have_cap = false;
	const char *why = max == 0 ? "a new replica" : "no position saved";
	if (loaded && saved.txid != max)
		why = "the replica moved past the saved position";
	if (loaded && saved.txid == max) {
		why = "the WAL was restarted since the saved position";
		/* Continue only if the WAL still holds what we last copied:
		 * same salts and at least that long (salts name a WAL
		 * generation; committed frames are never rewritten in one). */
		int fd = open(d->walpath, O_RDONLY | O_CLOEXEC);
		uint8_t hb[WAL_HEADER_SIZE];
		struct wal_header h;
		struct stat st;
		bool hdr = fd >= 0 && fstat(fd, &st) == 0 &&
			   util_pread_all(fd, hb, sizeof hb, 0) ==
				   WAL_HEADER_SIZE &&
			   wal_header_decode(&h, hb, NULL) == 0;
		if (hdr && h.salt1 == saved.salt1 && h.salt2 == saved.salt2 &&
		    st.st_size >= saved.wal_end) {
			d->cap = saved;
			d->have_cap = true;
		}
		if (fd >= 0)
			close(fd);
	}
	d->pos = d->cap;
	d->started = true;
	d->state = DB_REPLICATING;
	log_info("%s: watching as \"%s\" in %s from txid %" PRIu64 "%s%s%s",
		 d->path, d->name, storage_describe(d->s), max,
		 d->have_cap ? "" : " (a full-database file comes first: ",
		 d->have_cap ? "" : why, d->have_cap ? "" : ")");
	db_poll(d);
	for (struct db_waiter *w = d->waiters; w; w = w->next)
		if (w->txid == UINT64_MAX)
			w->txid = d->have_cap ? d->cap.txid : d->cap.txid + 1;
}

static void db_start_listing(struct db *d)
{
	char *prefix = replica_prefix(storage_kind(d->s), d->name);
	int rc = storage_list(d->s, prefix, NULL, db_listed, d);
	free(prefix);
	if (rc == 0)
		d->listing = true;
}

static void db_timer_cb(uv_timer_t *t)
{
	struct db *d = t->data;
	if (!d->started) {
		if (!d->listing)
			db_start_listing(d);
		return;
	}
	db_tick(t);
}

int db_new(struct db **out, uv_loop_t *loop, const char *path,
	   const char *name, struct storage *s, json_t *args,
	   int64_t interval_ms, char **err)
{
	struct db *d = calloc(1, sizeof *d);
	if (!d)
		return -ENOMEM;
	d->loop = loop;
	d->db_fd = -1;
	for (int l = 0; l < DB_LEVELS; l++)
		d->spool[l].fd = -1;
	d->path = strdup(path);
	d->walpath = util_strdup_printf("%s-wal", path);
	d->name = name ? strdup(name) : replica_name_from_path(path);
	d->s = s;
	d->args = json_incref(args);
	d->interval_ms = interval_ms > 0 ? interval_ms : 1000;
	d->posfile = db_posfile_path(path, storage_describe(s));
	d->state = DB_STARTING;
	d->last_ckpt_ms = util_now_ms();
	/* Litestream's defaults; a configuration file may change them. */
	static const int64_t dflt_levels[DB_LEVELS + 1] = {
		0, COMPACT_L1_INTERVAL_MS, COMPACT_L2_INTERVAL_MS,
		COMPACT_L3_INTERVAL_MS};
	json_t *lv = json_object_get(args, "level_intervals_ms");
	for (int l = 1; l <= DB_LEVELS; l++) {
		json_t *v = json_array_get(lv, (size_t)(l - 1));
		d->level_ms[l] = json_is_integer(v) && json_integer_value(v) > 0
					 ? json_integer_value(v)
					 : dflt_levels[l];
	}
	d->snapshot_interval_ms = wrp_arg_int(args, "snapshot_interval_ms",
					      COMPACT_SNAPSHOT_INTERVAL_MS);
	d->snapshot_retention_ms = wrp_arg_int(args, "snapshot_retention_ms",
					       RETENTION_SNAPSHOT_MS);
	d->l0_retention_ms = wrp_arg_int(args, "l0_retention_ms",
					 RETENTION_L0_MS);
	d->retention_check_ms = wrp_arg_int(args, "retention_check_ms",
					    DB_RETENTION_CHECK_MS);
	if (d->retention_check_ms < 1000)
		d->retention_check_ms = 1000;
	d->next_snapshot_ms = util_now_ms() + d->snapshot_interval_ms;
	int rc = 0;
	if (!d->name || !replica_name_valid(d->name)) {
		rc = util_err(err, -EINVAL, "cannot derive a name from %s", path);
		goto fail;
	}
	d->db_fd = open(path, O_RDONLY | O_CLOEXEC);
	if (d->db_fd < 0) {
		rc = util_err(err, -ENOENT, "database not found or unreadable: %s (%s)",
			      path, strerror(errno));
		goto fail;
	}
	rc = db_open_conn(d, err);
	if (rc < 0)
		goto fail;
	uv_timer_init(loop, &d->timer);
	d->timer.data = d;
	uv_timer_start(&d->timer, db_timer_cb, (uint64_t)d->interval_ms,
		       (uint64_t)d->interval_ms);
	db_start_listing(d);
	*out = d;
	return 0;
fail:
	d->s = NULL; /* the caller keeps its storage on failure */
	if (d->conn)
		sqlite3_close(d->conn);
	if (d->db_fd >= 0)
		close(d->db_fd);
	json_decref(d->args);
	free(d->path);
	free(d->walpath);
	free(d->name);
	free(d->posfile);
	free(d);
	return rc;
}

static void db_closed(uv_handle_t *h)
{
	struct db *d = h->data;
	while (d->queue) {
		struct db_file *f = d->queue;
		d->queue = f->next;
		if (f->done)
			f->done(f->done_arg, -ECANCELED, f->max_txid, 0, 0, 0,
				d->last_error ? d->last_error
					      : "stopped watching");
		close(f->fd);
		free(f);
	}
	storage_free(d->s);
	json_decref(d->args);
	for (size_t i = 0; i < d->nknown; i++)
		replica_file_clear(&d->known[i]);
	free(d->known);
	wal_index_free(d->widx);
	for (int l = 0; l < DB_LEVELS; l++)
		db_spool_close(&d->spool[l]);
	free(d->last_error);
	free(d->path);
	free(d->walpath);
	free(d->name);
	free(d->posfile);
	if (d->on_stopped)
		d->on_stopped(d, d->stopped_arg);
	free(d);
}

static void db_maybe_stopped(struct db *d)
{
	if (!d->stopping || d->closed)
		return;
	/* Finish uploading what was captured, unless uploads keep failing. */
	if ((d->queue && d->failures < 3) || d->shipping || d->listing ||
	    d->compacting || d->deleting)
		return;
	d->closed = true;
	db_wake_waiters(d, true, "stopped watching");
	if (d->conn) {
		db_exec(d->conn, "ROLLBACK");
		sqlite3_close(d->conn);
	}
	if (d->barrier)
		sqlite3_close(d->barrier);
	if (d->db_fd >= 0)
		close(d->db_fd);
	uv_timer_stop(&d->timer);
	uv_close((uv_handle_t *)&d->timer, db_closed);
}

void db_stop(struct db *d, db_stopped_cb cb, void *arg)
{
	d->on_stopped = cb;
	d->stopped_arg = arg;
	if (d->stopping)
		return;
	if (d->started && !d->closed) {
		d->force_poll = true;
		db_poll(d); /* a final capture */
	}
	d->stopping = true;
	d->state = DB_STOPPING;
	db_maybe_stopped(d);
}

/* A level-9 snapshot at the captured TXID: the image limited to the WAL
 * frames captured so far, which is exactly the state at cap.txid (our read
 * mark is at or below cap's offset, so nothing newer was backfilled). */
void db_snapshot(struct db *d, db_snapshot_cb cb, void *arg)
{
	char *err = NULL;
	struct snapshot_src src = {.db_fd = d->db_fd, .wal_fd = -1};
	int rc = 0;
	if (!d->started || d->closed || d->stopping) {
		cb(arg, -EAGAIN, 0, 0, 0, 0,
		   "the database is not replicating yet");
		return;
	}
	d->force_poll = true;
	db_poll(d);
	if (!d->have_cap || d->cap.txid == 0) {
		cb(arg, -EAGAIN, 0, 0, 0, 0,
		   d->last_error ? d->last_error : "nothing captured yet");
		return;
	}
	src.page_size = d->cap.page_size;
	src.wal_fd = open(d->walpath, O_RDONLY | O_CLOEXEC);
	if (src.wal_fd >= 0 && d->cap.wal_end > WAL_HEADER_SIZE) {
		rc = wal_index_scan_limit(&src.wal, src.wal_fd, d->cap.wal_end,
					  &err);
		if (rc == 0 && (wal_index_header(src.wal)->salt1 != d->cap.salt1 ||
				wal_index_header(src.wal)->salt2 != d->cap.salt2 ||
				wal_index_end(src.wal) != d->cap.wal_end)) {
			wal_index_free(src.wal); /* restarted: the db file */
			src.wal = NULL;
		}
	}
	src.frame = malloc(WAL_FRAME_HEADER_SIZE + src.page_size);
	struct db_file *f = calloc(1, sizeof *f);
	struct ltx_header h = {
		.flags = LTX_FLAG_NO_CHECKSUM,
		.page_size = d->cap.page_size,
		.commit = d->cap.commit,
		.min_txid = 1,
		.max_txid = d->cap.txid,
		.timestamp = util_now_ms(),
	};
	if (rc == 0 && (!f || !src.frame))
		rc = -ENOMEM;
	if (rc == 0)
		rc = db_encode(d, &src, &h, NULL, 0, 0, &f->fd, &f->len, &err);
	if (rc < 0) {
		cb(arg, rc, 0, 0, 0, 0, err ? err : strerror(-rc));
		free(f);
		goto out;
	}
	f->level = REPLICA_SNAPSHOT_LEVEL;
	f->pages = h.commit;
	f->page_size = h.page_size;
	f->min_txid = 1;
	f->max_txid = d->cap.txid;
	f->ts = h.timestamp;
	f->captured_ms = util_now_ms();
	f->done = cb;
	f->done_arg = arg;
	struct db_file **tail = &d->queue;
	while (*tail)
		tail = &(*tail)->next;
	*tail = f;
	db_ship(d);
out:
	free(err);
	free(src.frame);
	wal_index_free(src.wal);
	if (src.wal_fd >= 0)
		close(src.wal_fd);
}

void db_sync(struct db *d, int64_t timeout_ms, db_wait_cb cb, void *arg)
{
	if (d->started) {
		d->force_poll = true;
		db_poll(d);
	}
	if (!cb)
		return;
	struct db_waiter *w = calloc(1, sizeof *w);
	/* Everything committed before now is at or below the captured TXID;
	 * before the first listing, the first capture (set in db_listed). */
	w->txid = !d->started ? UINT64_MAX
		  : d->have_cap ? d->cap.txid
				: d->cap.txid + 1;
	w->deadline_ms = timeout_ms > 0 ? util_now_ms() + timeout_ms : 0;
	w->cb = cb;
	w->arg = arg;
	w->next = d->waiters;
	d->waiters = w;
	db_wake_waiters(d, false, NULL);
}

const char *db_path(const struct db *d)
{
	return d->path;
}

const char *db_name(const struct db *d)
{
	return d->name;
}

json_t *db_status(const struct db *d)
{
	static const char *const states[] = {"starting", "replicating",
					     "stopping", "error"};
	int64_t lag = 0, now = util_now_ms();
	if (d->queue)
		lag = now - d->queue->captured_ms;
	char last[48] = "";
	if (d->last_sync_ms)
		util_rfc3339_ms(d->last_sync_ms, last, sizeof last);
	return json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:s?,s:s?,s:I,s:I}",
			 "name", d->name, "database", d->path, "bucket",
			 storage_describe(d->s), "state", states[d->state],
			 "txid", (json_int_t)d->pos.txid, "captured_txid",
			 (json_int_t)d->cap.txid, "wal_offset",
			 (json_int_t)d->pos.wal_end, "lag_ms", (json_int_t)lag,
			 "last_sync", d->last_sync_ms ? last : NULL,
			 "last_error", d->last_error, "files",
			 (json_int_t)d->files, "bytes", (json_int_t)d->bytes);
}

uint64_t db_txid(const struct db *d)
{
	return d->pos.txid;
}

json_t *db_args(const struct db *d)
{
	return d->args;
}

struct storage *db_storage(const struct db *d)
{
	return d->s;
}

/* ------------------------------------------- compaction and retention
 *
 * The worker is the replica's only writer, so it knows the replica's files:
 * those listed at start (timestamps unknown, which retention treats as
 * recent) and each it uploaded since. On each poll:
 *  - for levels 1..3, at wall-clock multiples of the level's interval
 *    (Litestream: 30 s, 5 min, 1 h), compact_plan picks the files of the
 *    level below; they are downloaded, merged (compact_merge: newest page
 *    wins, bounded memory) and the result queued for upload like any file;
 *  - every snapshot interval (24 h) a level-9 snapshot of the database;
 *  - every 15 s, retention_plan picks what may go (nothing that a restore
 *    of a time still in the retention window needs; L0 only once covered
 *    by an L1 file older than l0-retention, never a file a restore job
 *    has leased: see lease.c) and it is deleted.
 * One compaction and one deletion at a time per database; retention never
 * runs during a compaction, so the compaction's inputs need no lease. */

struct db_compaction {
	struct db *d;
	int level;
	size_t n, pending;
	struct replica_file *in;
	struct db_input {
		int fd;
		int64_t off, end; /* a range of a spool; end -1: the file */
	} *src;
	int status;
	char *err;
};

/*
 * The spool. Compacting level L reads the files of level L-1 that this
 * worker uploaded itself moments or minutes before; downloading them again
 * would cost one GET per file (an L0 file a second). So each file uploaded
 * at levels 0-2 is also appended to a local spool file of its level (one
 * unlinked temp file per level, opened when needed), and a compaction
 * reads its inputs from there when it finds them, else downloads them.
 * Once a compaction of level L+1 has consumed everything in level L's
 * spool, the spool is closed: its disk space is what was uploaded at that
 * level since the last compaction (30 s, 5 min, 1 h by default), capped
 * at DB_SPOOL_MAX bytes, beyond which files are simply not kept.
 */
#define DB_SPOOL_MAX (64LL << 20)

static void db_spool_close(struct db_spool *sp)
{
	if (sp->fd >= 0)
		close(sp->fd);
	free(sp->e);
	*sp = (struct db_spool){.fd = -1};
}

static void db_spool_add(struct db *d, const struct db_file *f)
{
	if (f->level < 0 || f->level >= DB_LEVELS)
		return;
	struct db_spool *sp = &d->spool[f->level];
	if (sp->end + (int64_t)f->len > DB_SPOOL_MAX)
		return;
	if (sp->n == sp->cap) {
		size_t cap = sp->cap ? sp->cap * 2 : 8;
		struct db_spool_ent *e = realloc(sp->e, cap * sizeof *e);
		if (!e)
			return;
		sp->e = e;
		sp->cap = cap;
	}
	if (sp->fd < 0 && (sp->fd = util_tmpfile()) < 0) {
		sp->fd = -1;
		return;
	}
	char buf[65536];
	for (uint64_t done = 0; done < f->len;) {
		size_t want = f->len - done < sizeof buf ? f->len - done
							 : sizeof buf;
		ssize_t n = util_pread_all(f->fd, buf, want, (off_t)done);
		if (n != (ssize_t)want ||
		    util_pwrite_all(sp->fd, buf, want, sp->end + done) < 0)
			return; /* not kept: the compaction downloads it */
		done += want;
	}
	sp->e[sp->n++] = (struct db_spool_ent){
		.min = f->min_txid, .max = f->max_txid,
		.off = sp->end, .len = (int64_t)f->len};
	sp->end += (int64_t)f->len;
}

/* The spooled copy of a level-`level` file, as a new descriptor (dup). */
static bool db_spool_find(struct db *d, int level, uint64_t mn, uint64_t mx,
			  struct db_input *in)
{
	if (level < 0 || level >= DB_LEVELS)
		return false;
	struct db_spool *sp = &d->spool[level];
	for (size_t i = 0; i < sp->n; i++)
		if (sp->e[i].min == mn && sp->e[i].max == mx) {
			int fd = dup(sp->fd);
			if (fd < 0)
				return false;
			*in = (struct db_input){fd, sp->e[i].off,
						sp->e[i].off + sp->e[i].len};
			return true;
		}
	return false;
}

/* A compaction up to `max` consumed level `level`'s files up to max. */
static void db_spool_consumed(struct db *d, int level, uint64_t max)
{
	if (level < 0 || level >= DB_LEVELS)
		return;
	struct db_spool *sp = &d->spool[level];
	size_t k = 0;
	for (size_t i = 0; i < sp->n; i++)
		if (sp->e[i].max > max)
			sp->e[k++] = sp->e[i];
	sp->n = k;
	if (k == 0)
		db_spool_close(sp);
}

static void db_known_add(struct db *d, int level, uint64_t mn, uint64_t mx,
			 int64_t ts)
{
	char *key = replica_key(storage_kind(d->s), d->name, level, mn, mx);
	for (size_t i = 0; i < d->nknown; i++)
		if (strcmp(d->known[i].key, key) == 0) {
			if (ts)
				d->known[i].timestamp = ts;
			free(key);
			return;
		}
	if (d->nknown == d->capknown) {
		size_t nc = d->capknown ? d->capknown * 2 : 8;
		struct replica_file *nv = realloc(d->known, nc * sizeof *nv);
		if (!nv) {
			free(key);
			return;
		}
		d->known = nv;
		d->capknown = nc;
	}
	d->known[d->nknown++] = (struct replica_file){
		.level = level, .min_txid = mn, .max_txid = mx,
		.timestamp = ts, .key = key};
}

static ssize_t db_input_read(void *ctx, void *buf, size_t len)
{
	struct db_input *in = ctx;
	if (in->end >= 0 && (int64_t)len > in->end - in->off)
		len = (size_t)(in->end - in->off);
	for (;;) {
		ssize_t n = pread(in->fd, buf, len, in->off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n > 0)
			in->off += n;
		return n < 0 ? -errno : n;
	}
}

static void db_compaction_free(struct db_compaction *cx)
{
	for (size_t i = 0; i < cx->n; i++) {
		replica_file_clear(&cx->in[i]);
		if (cx->src[i].fd >= 0)
			close(cx->src[i].fd);
	}
	free(cx->in);
	free(cx->src);
	free(cx->err);
	free(cx);
}

static void db_compaction_merge(struct db_compaction *cx)
{
	struct db *d = cx->d;
	struct ltx_dec **decs = calloc(cx->n, sizeof *decs);
	struct ltx_header out_h;
	char *err = NULL;
	int out = -1, rc = decs ? 0 : -ENOMEM;
	for (size_t i = 0; rc == 0 && i < cx->n; i++)
		rc = ltx_dec_new(&decs[i], db_input_read, &cx->src[i], &err);
	if (rc == 0) {
		out = util_tmpfile();
		rc = out < 0 ? out : 0;
	}
	if (rc == 0)
		rc = compact_merge(decs, cx->n, NULL, util_write_cb, &out, &out_h,
				   &err);
	for (size_t i = 0; decs && i < cx->n; i++)
		ltx_dec_free(decs[i]);
	free(decs);
	struct db_file *f = rc == 0 ? calloc(1, sizeof *f) : NULL;
	if (!f) {
		log_warn("%s: compaction to level %d failed: %s", d->path,
			 cx->level, err ? err : strerror(rc ? -rc : ENOMEM));
		if (out >= 0)
			close(out);
		free(err);
		return;
	}
	struct stat st;
	fstat(out, &st);
	f->fd = out;
	f->len = (uint64_t)st.st_size;
	f->level = cx->level;
	f->min_txid = out_h.min_txid;
	f->max_txid = out_h.max_txid;
	f->ts = out_h.timestamp;
	f->captured_ms = util_now_ms();
	struct db_file **tail = &d->queue;
	while (*tail)
		tail = &(*tail)->next;
	*tail = f;
	log_debug("%s: compacted %zu files into level %d (%" PRIu64 "-%" PRIu64 ")",
		  d->path, cx->n, cx->level, f->min_txid, f->max_txid);
	db_spool_consumed(d, cx->level - 1, f->max_txid);
	free(err);
	db_ship(d);
}

static void db_compaction_got(void *arg, int status, const char *err)
{
	struct db_compaction *cx = arg;
	if (status < 0 && cx->status == 0) {
		cx->status = status;
		cx->err = strdup(err ? err : "download failed");
	}
	if (--cx->pending > 0)
		return;
	struct db *d = cx->d;
	d->compacting = false;
	if (cx->status == 0 && !d->closed)
		db_compaction_merge(cx);
	else
		log_warn("%s: compaction to level %d skipped: %s", d->path,
			 cx->level, cx->err ? cx->err : "stopped");
	db_compaction_free(cx);
	db_maybe_stopped(d);
}

static void db_compact(struct db *d, int level, const size_t *idx, size_t n)
{
	struct db_compaction *cx = calloc(1, sizeof *cx);
	cx->d = d;
	cx->level = level;
	cx->in = calloc(n, sizeof *cx->in);
	cx->src = calloc(n, sizeof *cx->src);
	for (size_t i = 0; i < n; i++) {
		cx->in[i] = d->known[idx[i]];
		cx->in[i].key = strdup(d->known[idx[i]].key);
		cx->src[i] = (struct db_input){.fd = -1, .end = -1};
	}
	cx->n = n;
	d->compacting = true;
	cx->pending = 1; /* held while starting */
	size_t local = 0;
	for (size_t i = 0; i < n; i++) {
		const struct replica_file *in = &cx->in[i];
		if (db_spool_find(d, in->level, in->min_txid, in->max_txid,
				  &cx->src[i])) {
			local++;
			continue;
		}
		cx->src[i].fd = util_tmpfile();
		if (cx->src[i].fd < 0 ||
		    storage_get(d->s, cx->in[i].key, cx->src[i].fd,
				db_compaction_got, cx) < 0) {
			cx->status = -EIO;
			break;
		}
		cx->pending++;
	}
	log_debug("%s: compacting %zu files into level %d (%zu from the "
		  "spool)", d->path, n, level, local);
	db_compaction_got(cx, 0, NULL);
}

static void db_deleted(void *arg, int status, const char *err)
{
	struct db *d = arg;
	d->deleting = false;
	if (status < 0)
		log_warn("%s: retention: delete failed: %s", d->path,
			 err ? err : "storage error");
	db_maybe_stopped(d);
}

static void db_retention(struct db *d, int64_t now)
{
	size_t *del = malloc((d->nknown + 1) * sizeof *del);
	if (!del)
		return;
	/* Files a restore is reading are leased (lease.c): never deleted. */
	size_t nleases = 0;
	struct retention_lease *leases =
		worker_leases(d->name, storage_describe(d->s), now, &nleases);
	struct retention_opts o = {
		.snapshot_retention_ms = d->snapshot_retention_ms,
		.l0_retention_ms = d->l0_retention_ms,
		.max_level = DB_LEVELS,
		.leases = leases,
		.nleases = nleases,
	};
	size_t n = retention_plan(d->known, d->nknown, &o, now, del);
	free(leases);
	if (n == 0) {
		free(del);
		return;
	}
	const char **keys = calloc(n, sizeof *keys);
	for (size_t i = 0; i < n; i++)
		keys[i] = d->known[del[i]].key;
	if (storage_delete(d->s, keys, n, db_deleted, d) == 0) {
		d->deleting = true;
		log_debug("%s: retention: deleting %zu files", d->path, n);
		/* Forget them now (indices ascending: compact from the end). */
		for (size_t i = n; i-- > 0;) {
			replica_file_clear(&d->known[del[i]]);
			d->known[del[i]] = d->known[--d->nknown];
		}
	}
	free(keys);
	free(del);
}

static void db_snapshot_done(void *arg, int status, uint64_t txid,
			     uint64_t bytes, uint32_t pages, uint32_t page_size,
			     const char *err)
{
	struct db *d = arg;
	(void)pages;
	(void)page_size;
	if (status < 0)
		log_warn("%s: scheduled snapshot failed: %s", d->path,
			 err ? err : "error");
	else
		log_info("%s: scheduled snapshot at txid %" PRIu64 " (%" PRIu64
			 " bytes)", d->path, txid, bytes);
}

static void db_housekeeping(struct db *d, int64_t now)
{
	if (!d->started || d->stopping || d->closed || d->failures)
		return;
	if (now >= d->next_snapshot_ms) {
		d->next_snapshot_ms = now + d->snapshot_interval_ms;
		db_snapshot(d, db_snapshot_done, d);
	}
	if (!d->compacting) {
		size_t *idx = malloc((d->nknown + 1) * sizeof *idx);
		for (int l = 1; idx && l <= DB_LEVELS; l++) {
			if (now < d->next_level_ms[l])
				continue;
			struct compact_job job = {.level = l,
						  .interval_ms = d->level_ms[l],
						  .max_inputs = 512};
			char *err = NULL;
			int rc = compact_plan(d->known, d->nknown, now, &job, idx,
					      &err);
			d->next_level_ms[l] = rc >= 0 && job.next_ms > now
						      ? job.next_ms
						      : now + d->level_ms[l];
			free(err);
			if (rc > 0 && job.n > 0) {
				db_compact(d, l, idx, job.n);
				/* Inputs from the spool are merged at once:
				 * go on with the next level (a level whose
				 * interval is the sync interval would
				 * otherwise starve those above it). */
				if (d->compacting)
					break;
			}
		}
		free(idx);
	}
	if (!d->deleting && !d->compacting && now >= d->next_retention_ms) {
		d->next_retention_ms = now + d->retention_check_ms;
		db_retention(d, now);
	}
}
