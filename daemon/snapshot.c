/* snapshot.c: a consistent full image of a live database, uploaded as one
 * LTX snapshot file (min TXID 1) at level 9.
 *
 * Consistency without copying the file or VACUUM INTO (which renumbers
 * pages): we open our own connection and hold a read transaction, then
 * read the database file overlaid with the newest committed frame of each
 * page in the WAL. While we hold the read transaction:
 *  - a checkpoint may backfill frames into the database file, but only
 *    frames at or before our read mark, whose content we would read from
 *    the WAL anyway (and frames after our mark are never backfilled);
 *  - the WAL can only be restarted if our mark is 0, that is when the
 *    database file already holds the complete state and cannot be
 *    backfilled under us. A restart changes the salts, so every frame we
 *    read is checked against the salts of the scan; on a mismatch the page
 *    comes from the database file instead.
 * The image may therefore be a commit newer than our read mark, but it is
 * always one committed state. The same two facts let the scan read the
 * database file ahead, 128 KiB at a time: a file page we take (not in the
 * WAL, or the WAL restarted under a mark of 0) cannot change while the
 * transaction lasts. Pages stream through the LTX encoder into an
 * unlinked temp file: memory does not grow with the database. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon.h"

/* Bytes of the database file read at once by a snapshot's page scan. */
#define SNAPSHOT_READAHEAD (128u * 1024)

/* Highest TXID already in the replica for `name` (0 when none). */
static int snapshot_max_txid(struct job_ctx *j, struct storage *s,
			     const char *name, uint64_t *max)
{
	char *prefix = replica_prefix(storage_kind(s), name), *err = NULL;
	struct storage_listing l;
	int rc = storage_list_wait(s, prefix, NULL, &l, &err);
	free(prefix);
	*max = 0;
	if (rc < 0) {
		job_fail(j, rc, storage_error_code(rc), "cannot list the replica: %s",
			 err ? err : strerror(-rc));
		free(err);
		return rc;
	}
	for (size_t i = 0; i < l.nkeys; i++) {
		struct replica_file f;
		if (replica_parse_key(storage_kind(s), name, l.keys[i], &f) < 0)
			continue;
		if (f.max_txid > *max)
			*max = f.max_txid;
		replica_file_clear(&f);
	}
	storage_listing_clear(&l);
	return 0;
}

/* Read page pgno of the image into page. */
int snapshot_read_page(struct snapshot_src *src, uint32_t pgno, uint8_t *page,
		       char **err)
{
	uint32_t ps = src->page_size;
	if (src->wal) {
		int64_t off = wal_index_lookup(src->wal, pgno);
		if (off >= 0) {
			ssize_t n = util_pread_all(src->wal_fd, src->frame,
						   WAL_FRAME_HEADER_SIZE + ps, off);
			const struct wal_header *h = wal_index_header(src->wal);
			if (n == (ssize_t)(WAL_FRAME_HEADER_SIZE + ps) &&
			    util_be32(src->frame) == pgno &&
			    util_be32(src->frame + 8) == h->salt1 &&
			    util_be32(src->frame + 12) == h->salt2) {
				memcpy(page, src->frame + WAL_FRAME_HEADER_SIZE, ps);
				return 0;
			}
			/* The WAL was restarted under us: the database file
			 * holds this state (see the comment at the top). */
		}
	}
	if (src->ra) {
		if (pgno < src->ra_first || pgno - src->ra_first >= src->ra_n) {
			ssize_t got = util_pread_all(
				src->db_fd, src->ra, (size_t)src->ra_cap * ps,
				(off_t)(pgno - 1) * ps);
			if (got < 0)
				return util_err(err, (int)got,
						"cannot read page %u: %s", pgno,
						strerror((int)-got));
			src->ra_first = pgno;
			src->ra_n = (uint32_t)((size_t)got / ps);
			if (src->ra_n == 0)
				return util_err(err, -EIO,
						"page %u is beyond the end of the database file",
						pgno);
		}
		memcpy(page, src->ra + (size_t)(pgno - src->ra_first) * ps, ps);
		return 0;
	}
	ssize_t n = util_pread_all(src->db_fd, page, ps, (off_t)(pgno - 1) * ps);
	if (n < 0)
		return util_err(err, (int)n, "cannot read page %u: %s", pgno,
				strerror((int)-n));
	if ((size_t)n != ps)
		return util_err(err, -EIO,
				"page %u is beyond the end of the database file",
				pgno);
	return 0;
}

static int snapshot_sql_int(sqlite3 *db, const char *sql, long long *out)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return -EIO;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*out = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 0 : -EIO;
}

int snapshot_run(struct job_ctx *j, json_t *args, json_t **result)
{
	const char *path = wrp_arg_string(args, "database");
	struct storage *s = NULL;
	sqlite3 *db = NULL;
	struct snapshot_src src = {.db_fd = -1, .wal_fd = -1};
	struct ltx_enc *enc = NULL;
	char *name = NULL, *err = NULL, *key = NULL, *walpath = NULL;
	uint8_t *page = NULL;
	int tmp = -1, rc;
	json_t *warnings = json_array();
	bool wal_mode = false;

	if (path[0] != '/') {
		rc = job_fail(j, -EINVAL, WRP_E_INVALID,
			      "database path must be absolute: %s", path);
		goto out;
	}
	struct stat st;
	if (stat(path, &st) < 0 || access(path, R_OK) < 0) {
		rc = job_fail(j, -errno, WRP_E_NOT_FOUND,
			      "database not found or unreadable: %s (%s)", path,
			      strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = job_fail(j, -EINVAL, WRP_E_NOT_FOUND,
			      "database is not a regular file: %s", path);
		goto out;
	}
	name = replica_name_from_path(path);
	if (!name || !replica_name_valid(name)) {
		rc = job_fail(j, -EINVAL, WRP_E_INVALID,
			      "cannot derive a database name from %s", path);
		goto out;
	}
	src.db_fd = open(path, O_RDONLY | O_CLOEXEC);
	if (src.db_fd < 0) {
		rc = job_fail(j, -errno, WRP_E_NOT_FOUND,
			      "cannot open database %s: %s", path,
			      strerror(errno));
		goto out;
	}
	/* One snapshot of a database at a time (across processes), so each
	 * gets its own TXID. flock does not touch SQLite's POSIX locks. */
	if (flock(src.db_fd, LOCK_EX) < 0) {
		rc = job_fail(j, -errno, WRP_E_IO, "cannot lock %s: %s", path,
			      strerror(errno));
		goto out;
	}
	if (st.st_size > 0) {
		char magic[16];
		if (util_pread_all(src.db_fd, magic, 16, 0) != 16 ||
		    memcmp(magic, "SQLite format 3", 16) != 0) {
			rc = job_fail(j, -EINVAL, WRP_E_INVALID,
				      "not an SQLite database: %s", path);
			goto out;
		}
	}

	rc = job_open_storage(j, args, &s);
	if (rc < 0)
		goto out;
	uint64_t max_txid;
	rc = snapshot_max_txid(j, s, name, &max_txid);
	if (rc < 0)
		goto out;
	uint64_t txid = max_txid + 1;

	/* Our own connection and read transaction. */
	int flags = access(path, W_OK) == 0 ? SQLITE_OPEN_READWRITE
					    : SQLITE_OPEN_READONLY;
	if (sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, NULL) !=
	    SQLITE_OK) {
		rc = job_fail(j, -EIO, WRP_E_IO, "cannot open %s: %s", path,
			      db ? sqlite3_errmsg(db) : "out of memory");
		goto out;
	}
	sqlite3_busy_timeout(db, 5000);
	int persist = 1;
	sqlite3_file_control(db, "main", SQLITE_FCNTL_PERSIST_WAL, &persist);
	sqlite3_stmt *jm;
	if (sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &jm, NULL) ==
	    SQLITE_OK) {
		if (sqlite3_step(jm) == SQLITE_ROW)
			wal_mode = strcmp((const char *)sqlite3_column_text(jm, 0),
					  "wal") == 0;
		sqlite3_finalize(jm);
	}
	if (!wal_mode)
		json_array_append_new(
			warnings,
			json_sprintf("%s is not in WAL mode; it was snapshotted, but continuous replication needs PRAGMA journal_mode=WAL",
				     path));
	long long page_size = 0, page_count = 0;
	if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK ||
	    snapshot_sql_int(db, "SELECT count(*) FROM sqlite_master",
			     &page_count) < 0 ||
	    snapshot_sql_int(db, "PRAGMA page_size", &page_size) < 0 ||
	    snapshot_sql_int(db, "PRAGMA page_count", &page_count) < 0) {
		rc = job_fail(j, -EIO, WRP_E_IO,
			      "cannot start a read transaction on %s: %s", path,
			      sqlite3_errmsg(db));
		goto out;
	}
	src.page_size = (uint32_t)page_size;
	uint32_t commit = (uint32_t)page_count;
	if (wal_mode) {
		walpath = util_strdup_printf("%s-wal", path);
		src.wal_fd = open(walpath, O_RDONLY | O_CLOEXEC);
		if (src.wal_fd >= 0) {
			rc = wal_index_scan(&src.wal, src.wal_fd, &err);
			if (rc < 0) {
				rc = job_fail(j, rc, WRP_E_IO,
					      "cannot read the WAL of %s: %s",
					      path, err);
				goto out;
			}
			if (wal_index_frames(src.wal) > 0 &&
			    wal_index_header(src.wal)->page_size == src.page_size)
				commit = wal_index_commit(src.wal);
			else {
				wal_index_free(src.wal);
				src.wal = NULL;
			}
		}
	}

	rc = util_tmpfile();
	if (rc < 0) {
		rc = job_fail(j, rc, WRP_E_IO, "cannot create a temp file: %s",
			      strerror(-rc));
		goto out;
	}
	tmp = rc;
	int64_t ts = util_now_ms();
	/* NoChecksum, as Litestream writes: its restore re-encodes files
	 * with that flag and rejects a post-apply checksum. The file
	 * checksum (over the uncompressed pages) still protects each file. */
	struct ltx_header h = {
		.flags = LTX_FLAG_NO_CHECKSUM,
		.page_size = src.page_size,
		.commit = commit,
		.min_txid = 1,
		.max_txid = txid,
		.timestamp = ts,
	};
	rc = ltx_enc_new(&enc, &h, util_write_cb, &tmp, &err);
	if (rc < 0) {
		rc = job_fail(j, rc, WRP_E_INTERNAL, "ltx: %s", err);
		goto out;
	}
	page = malloc(src.page_size);
	src.frame = malloc(WAL_FRAME_HEADER_SIZE + src.page_size);
	/* pages are read in order, SNAPSHOT_READAHEAD bytes at a time */
	src.ra_cap = src.page_size >= SNAPSHOT_READAHEAD
			     ? 1
			     : SNAPSHOT_READAHEAD / src.page_size;
	src.ra = malloc((size_t)src.ra_cap * src.page_size);
	if (!page || !src.frame || !src.ra) {
		rc = job_fail(j, -ENOMEM, WRP_E_INTERNAL, "out of memory");
		goto out;
	}
	uint32_t lock = ltx_lock_pgno(src.page_size);
	for (uint32_t pg = 1; pg <= commit; pg++) {
		if (pg == lock)
			continue;
		rc = snapshot_read_page(&src, pg, page, &err);
		if (rc < 0) {
			rc = job_fail(j, rc, WRP_E_IO, "%s: %s", path, err);
			goto out;
		}
		rc = ltx_enc_page(enc, pg, page, &err);
		if (rc < 0) {
			rc = job_fail(j, rc, WRP_E_INTERNAL, "ltx: %s", err);
			goto out;
		}
		if ((pg & 16383) == 0)
			job_event(j, "progress",
				  json_pack("{s:s,s:I,s:I}", "phase", "read",
					    "done", (json_int_t)pg, "total",
					    (json_int_t)commit));
	}
	uint64_t file_cksum;
	rc = ltx_enc_finish(enc, 0, &file_cksum, &err);
	if (rc < 0) {
		rc = job_fail(j, rc, WRP_E_INTERNAL, "ltx: %s", err);
		goto out;
	}
	uint64_t bytes = ltx_enc_bytes(enc);
	/* The image is complete: let the application checkpoint again. */
	sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);

	key = replica_key(storage_kind(s), name, REPLICA_SNAPSHOT_LEVEL, 1, txid);
	job_event(j, "progress",
		  json_pack("{s:s,s:I,s:I,s:I}", "phase", "upload", "done",
			    (json_int_t)0, "total", (json_int_t)1, "bytes",
			    (json_int_t)bytes));
	rc = storage_put_wait(s, key, tmp, bytes, ts, &err);
	if (rc < 0) {
		rc = job_fail(j, rc, storage_error_code(rc),
			      "upload of %s to %s failed: %s", key,
			      storage_describe(s), err ? err : strerror(-rc));
		goto out;
	}
	char tsbuf[48];
	util_rfc3339_ms(ts, tsbuf, sizeof tsbuf);
	char *objname = storage_object_name(s, key);
	*result = json_pack("{s:s,s:s,s:s,s:I,s:s,s:I,s:I,s:I,s:s,s:b,s:O}",
			    "name", name, "database", path, "bucket",
			    storage_describe(s), "txid", (json_int_t)txid, "key",
			    objname, "pages", (json_int_t)commit, "page_size",
			    (json_int_t)src.page_size, "bytes",
			    (json_int_t)bytes, "timestamp", tsbuf, "wal_mode",
			    wal_mode, "warnings", warnings);
	free(objname);
	log_info("snapshot of %s: txid %llu, %u pages, %llu bytes -> %s/%s",
		 path, (unsigned long long)txid, commit,
		 (unsigned long long)bytes, storage_describe(s), key);
	rc = 0;
out:
	ltx_enc_free(enc);
	if (db) {
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		sqlite3_close(db);
	}
	wal_index_free(src.wal);
	if (src.wal_fd >= 0)
		close(src.wal_fd);
	if (src.db_fd >= 0)
		close(src.db_fd);
	if (tmp >= 0)
		close(tmp);
	storage_free(s);
	free(src.frame);
	free(src.ra);
	free(page);
	free(name);
	free(err);
	free(key);
	free(walpath);
	json_decref(warnings);
	return rc;
}
