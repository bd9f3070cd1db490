/* restore.c: rebuild a database from its replica, to the latest state, a
 * TXID or a point in time.
 *
 * The algorithm (see replica.c for the plan):
 *  1. List the database's files across all levels. For a point in time,
 *     read each candidate's LTX header for its timestamp (a ranged GET of
 *     its first 100 bytes, not the file) and ignore files newer than the
 *     target.
 *  2. Plan: the newest usable snapshot, then the chain forward. A plan that
 *     stops short of the newest usable file means a gap in the replica; we
 *     fail instead of restoring short of the target (a known way other
 *     replicators lost data).
 *  3. Lease the planned files against the retention of the worker that
 *     replicates the database, if one in this walrustd does (lease.c),
 *     and download them in parallel into anonymous temp files. A planned
 *     file missing at download (404: deleted since the listing, before
 *     the lease took hold, or by another process) is no gap: list, plan
 *     and lease again, up to RESTORE_REPLANS times, then fail with a
 *     storage error. A point-in-time restore first leases every file up
 *     to the target while it reads their timestamps.
 *  4. Apply them in order to "<out>.tmp": each file is decoded streaming
 *     (page order, sizes, index and file checksum verified by ltx.c), each
 *     link of the chain checked (a file that starts right after its
 *     predecessor must have a pre-apply checksum equal to the predecessor's
 *     post-apply checksum, when both carry checksums), pages written in
 *     place in runs of consecutive pages, so the newest page wins, with
 *     writeback started as we go; each downloaded file is dropped once
 *     applied; the file is cut to the final commit size; the lock page
 *     stays zero.
 *  5. Verify the whole image against the last post-apply checksum (read
 *     back; skipped for a plan that is a single snapshot, whose decoder
 *     already summed exactly these pages against that checksum), fsync,
 *     run PRAGMA integrity_check (or quick_check, or nothing, as asked) on
 *     the temp file, and only then rename it over <out> and fsync the
 *     directory.
 * Any failure removes "<out>.tmp" and leaves <out> exactly as it was. A
 * restore over a database whose "-wal" is not empty is refused (someone is
 * using it) unless forced; when we do replace <out>, stale -wal/-shm files
 * are removed first so SQLite cannot replay them over the new image. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon.h"
#include "retention.h"

/* Plans made again when planned files disappear during the download. */
#define RESTORE_REPLANS 2

struct restore {
	struct job_ctx *j;
	struct storage *s;
	const char *name;
	struct storage_listing l;
	struct replica_file *files;
	int *fds; /* downloaded copy of files[i], or -1 */
	size_t n;
	uint64_t bytes;
	size_t total;
	char *vanished; /* a planned file was not found: what storage said */
};

static ssize_t restore_read(void *ctx, void *buf, size_t len)
{
	int fd = *(int *)ctx;
	for (;;) {
		ssize_t n = read(fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		return n < 0 ? -errno : n;
	}
}

static void restore_progress(void *arg, size_t done)
{
	struct restore *r = arg;
	job_event(r->j, "progress",
		  json_pack("{s:s,s:I,s:I}", "phase", "download", "done",
			    (json_int_t)done, "total", (json_int_t)r->total));
}

/* Download keys[0..m) into fds[0..m) (whole, or the first `limit` bytes):
 * 0; -ENOENT with r->vanished set when one was gone (the caller plans
 * again); else an error reported with job_fail. */
static int restore_download(struct restore *r, const char **keys,
			    const int *fds, size_t m, uint64_t limit)
{
	char *err = NULL;
	r->total = m;
	int rc = storage_get_many_wait(r->s, keys, fds, m, limit,
				       restore_progress, r, &err);
	if (rc == -ENOENT) {
		/* Listed, then gone: not a gap. The caller plans again. */
		free(r->vanished);
		r->vanished = strdup(err ? err : "not found");
	} else if (rc < 0) {
		rc = job_fail(r->j, rc, storage_error_code(rc),
			      "download from %s failed: %s",
			      storage_describe(r->s), err ? err : strerror(-rc));
	}
	free(err);
	return rc;
}

/* Download files[idx[0..n)] that are not downloaded yet. */
static int restore_fetch(struct restore *r, const size_t *idx, size_t n)
{
	const char **keys = calloc(n + 1, sizeof *keys);
	int *fds = calloc(n + 1, sizeof *fds);
	size_t m = 0;
	int rc = 0;
	if (!keys || !fds) {
		rc = job_fail(r->j, -ENOMEM, WRP_E_INTERNAL, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		size_t k = idx[i];
		if (r->fds[k] >= 0)
			continue;
		int fd = util_tmpfile();
		if (fd < 0) {
			rc = job_fail(r->j, fd, WRP_E_IO,
				      "cannot create a temp file: %s",
				      strerror(-fd));
			goto out;
		}
		r->fds[k] = fd;
		keys[m] = r->files[k].key;
		fds[m++] = fd;
	}
	rc = restore_download(r, keys, fds, m, 0);
	for (size_t i = 0; rc == 0 && i < m; i++) {
		struct stat st;
		if (fstat(fds[i], &st) == 0)
			r->bytes += (uint64_t)st.st_size;
	}
out:
	free(keys);
	free(fds);
	return rc;
}

/* Headers are fetched this many files at a time (one temp file each). */
#define RESTORE_HEADER_BATCH 64

/* Learn the timestamp of every file up to target from its LTX header: a
 * ranged GET of the header's bytes only, never the whole file (a point in
 * time in a replica with many large snapshots would otherwise download
 * all of them). */
static int restore_timestamps(struct restore *r, uint64_t target)
{
	size_t *idx = calloc(r->n + 1, sizeof *idx), m = 0;
	const char *keys[RESTORE_HEADER_BATCH];
	int fds[RESTORE_HEADER_BATCH];
	size_t nfd = 0;
	int rc = 0;
	if (!idx)
		return job_fail(r->j, -ENOMEM, WRP_E_INTERNAL, "out of memory");
	for (size_t i = 0; i < r->n; i++)
		if (r->files[i].max_txid <= target)
			idx[m++] = i;
	for (size_t at = 0; rc == 0 && at < m; at += RESTORE_HEADER_BATCH) {
		size_t k = m - at < RESTORE_HEADER_BATCH ? m - at
							 : RESTORE_HEADER_BATCH;
		for (nfd = 0; nfd < k; nfd++) {
			if ((fds[nfd] = util_tmpfile()) < 0) {
				rc = job_fail(r->j, fds[nfd], WRP_E_IO,
					      "cannot create a temp file: %s",
					      strerror(-fds[nfd]));
				break;
			}
			keys[nfd] = r->files[idx[at + nfd]].key;
		}
		if (rc == 0)
			rc = restore_download(r, keys, fds, k, LTX_HEADER_SIZE);
		for (size_t i = 0; rc == 0 && i < k; i++) {
			uint8_t buf[LTX_HEADER_SIZE];
			struct ltx_header h;
			char *err = NULL;
			struct replica_file *f = &r->files[idx[at + i]];
			if (util_pread_all(fds[i], buf, sizeof buf, 0) !=
				    (ssize_t)sizeof buf ||
			    ltx_header_decode(&h, buf, &err) < 0) {
				rc = job_fail(r->j, -EINVAL, WRP_E_CHECKSUM,
					      "%s: bad LTX header: %s", f->key,
					      err ? err : "file too short");
				free(err);
				break;
			}
			f->timestamp = h.timestamp;
		}
		for (size_t i = 0; i < nfd; i++)
			close(fds[i]);
	}
	free(idx);
	return rc;
}

/* SQLite URI for a read-only, lock-free open of path. */
static char *restore_uri(const char *path)
{
	size_t n = strlen(path);
	char *u = malloc(n * 3 + 32), *p = u;
	if (!u)
		return NULL;
	p += sprintf(p, "file:");
	for (const char *c = path; *c; c++) {
		if (*c == '%' || *c == '?' || *c == '#')
			p += sprintf(p, "%%%02X", (unsigned char)*c);
		else
			*p++ = *c;
	}
	strcpy(p, "?immutable=1");
	return u;
}

/* PRAGMA integrity_check (mode "full") or quick_check ("quick") of the
 * restored temp file. */
static int restore_integrity(const char *path, const char *mode, char **err)
{
	char *uri = restore_uri(path);
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int rc = -EIO;
	const char *sql = strcmp(mode, "quick") == 0 ? "PRAGMA quick_check"
						     : "PRAGMA integrity_check";
	/* a 512 KiB page cache (SQLite's default is 2 MiB): measured on a
	 * 1 GiB database, integrity_check is no slower with it */
	if (sqlite3_open_v2(uri, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI,
			    NULL) != SQLITE_OK ||
	    sqlite3_exec(db, "PRAGMA cache_size=-512", NULL, NULL, NULL) !=
		    SQLITE_OK ||
	    sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		util_err(err, rc, "cannot open restored database: %s",
			 db ? sqlite3_errmsg(db) : "out of memory");
		goto out;
	}
	if (sqlite3_step(st) != SQLITE_ROW) {
		util_err(err, rc, "%s did not run: %s", sql + 7,
			 sqlite3_errmsg(db));
		goto out;
	}
	const char *res = (const char *)sqlite3_column_text(st, 0);
	if (!res || strcmp(res, "ok") != 0) {
		util_err(err, rc, "%s failed: %s", sql + 7,
			 res ? res : "(null)");
		goto out;
	}
	rc = 0;
out:
	sqlite3_finalize(st);
	sqlite3_close(db);
	free(uri);
	return rc;
}

/* Pages are written in runs of consecutive page numbers, up to this many
 * bytes per pwrite (a 4 KiB pwrite per page costs more in the kernel than
 * decoding the page); writeback of what is written is started every
 * RESTORE_WRITEBACK bytes, so that the final fsync finds little left to do
 * and the disk works while we decode. */
#define RESTORE_RUN_BYTES (256 * 1024)
#define RESTORE_WRITEBACK ((off_t)32 * 1024 * 1024)

/* Database checksum of the image in fd (commit pages of page_size), read
 * in runs of RESTORE_RUN_BYTES. */
static int restore_db_checksum(int fd, uint32_t page_size, uint32_t commit,
			       uint64_t *out)
{
	uint32_t per = page_size >= RESTORE_RUN_BYTES
			       ? 1
			       : RESTORE_RUN_BYTES / page_size;
	uint8_t *buf = malloc((size_t)per * page_size);
	if (!buf)
		return -ENOMEM;
	uint32_t lock = ltx_lock_pgno(page_size);
	uint64_t c = 0;
	int rc = 0;
	for (uint32_t pg = 1; pg <= commit && rc == 0; pg += per) {
		uint32_t k = commit - pg + 1 < per ? commit - pg + 1 : per;
		size_t len = (size_t)k * page_size;
		ssize_t got = util_pread_all(fd, buf, len,
					     (off_t)(pg - 1) * page_size);
		if (got != (ssize_t)len) {
			rc = got < 0 ? (int)got : -EIO;
			break;
		}
		for (uint32_t i = 0; i < k; i++)
			if (pg + i != lock)
				c ^= ltx_page_checksum(
					pg + i, buf + (size_t)i * page_size,
					page_size);
	}
	free(buf);
	*out = LTX_CHECKSUM_FLAG | c;
	return rc;
}

struct restore_out {
	int fd;
	uint8_t *buf;	  /* the run: pages first..first+n-1 */
	uint32_t cap;	  /* pages it holds */
	uint32_t n, first;
	uint32_t page_size;
	off_t unsynced_from, written_to;
};

static int restore_out_flush(struct restore_out *o)
{
	if (!o->n)
		return 0;
	off_t off = (off_t)(o->first - 1) * o->page_size;
	size_t len = (size_t)o->n * o->page_size;
	int rc = util_pwrite_all(o->fd, o->buf, len, off);
	o->n = 0;
	if (rc < 0)
		return rc;
	if (off + (off_t)len > o->written_to)
		o->written_to = off + (off_t)len;
#ifdef SYNC_FILE_RANGE_WRITE
	if (o->written_to - o->unsynced_from >= RESTORE_WRITEBACK) {
		/* advisory: fsync still decides durability */
		(void)sync_file_range(o->fd, o->unsynced_from,
				      o->written_to - o->unsynced_from,
				      SYNC_FILE_RANGE_WRITE);
		o->unsynced_from = o->written_to;
	}
#endif
	return 0;
}

/* Apply the plan to out_fd; *last gets the final header. */
static int restore_apply(struct restore *r, const size_t *plan, size_t n,
			 int out_fd, struct ltx_header *last, uint64_t *pages)
{
	memset(last, 0, sizeof *last);
	struct ltx_dec *d = NULL;
	struct restore_out o = {.fd = out_fd};
	uint64_t prev_post = 0, prev_max = 0, post = 0, fck;
	uint32_t page_size = 0;
	int rc = 0;
	char *err = NULL;
	const char *cur = "?";
	/* A plan that is one snapshot with checksums: its decoder has already
	 * checked that the pages add up to the post-apply checksum, so the
	 * read-back below would only repeat that. */
	bool snapshot_only = false;
	*pages = 0;
	for (size_t i = 0; i < n; i++) {
		struct replica_file *f = &r->files[plan[i]];
		cur = f->key;
		int fd = r->fds[plan[i]];
		if (lseek(fd, 0, SEEK_SET) < 0) {
			rc = job_fail(r->j, -errno, WRP_E_IO, "seek: %s",
				      strerror(errno));
			goto out;
		}
		rc = ltx_dec_new(&d, restore_read, &fd, &err);
		if (rc < 0)
			goto bad;
		const struct ltx_header *h = ltx_dec_header(d);
		if (h->min_txid != f->min_txid || h->max_txid != f->max_txid) {
			rc = -EINVAL;
			util_err(&err, rc, "header TXIDs %" PRIu64 "-%" PRIu64
				 " do not match the file name",
				 h->min_txid, h->max_txid);
			goto bad;
		}
		if (page_size == 0) {
			page_size = h->page_size;
			o.page_size = page_size;
			o.cap = page_size >= RESTORE_RUN_BYTES
					? 1
					: RESTORE_RUN_BYTES / page_size;
			o.buf = malloc((size_t)o.cap * page_size);
			if (!o.buf) {
				rc = job_fail(r->j, -ENOMEM, WRP_E_INTERNAL,
					      "out of memory");
				goto out;
			}
		} else if (h->page_size != page_size) {
			rc = -EINVAL;
			util_err(&err, rc, "page size %u differs from %u",
				 h->page_size, page_size);
			goto bad;
		}
		if (i > 0 && h->min_txid == prev_max + 1 &&
		    h->pre_apply_checksum && prev_post &&
		    h->pre_apply_checksum != prev_post) {
			rc = -EBADMSG;
			util_err(&err, rc,
				 "chain broken: pre-apply checksum %016" PRIx64
				 " does not match the previous file's post-apply %016" PRIx64,
				 h->pre_apply_checksum, prev_post);
			goto bad;
		}
		snapshot_only = n == 1 && ltx_header_is_snapshot(h) &&
				!(h->flags & LTX_FLAG_NO_CHECKSUM);
		uint32_t pgno;
		for (;;) {
			/* decode straight into the run buffer's next slot */
			if (o.n == o.cap && (rc = restore_out_flush(&o)) < 0)
				goto werr;
			uint8_t *slot = o.buf + (size_t)o.n * page_size;
			rc = ltx_dec_page(d, &pgno, slot, &err);
			if (rc != 1)
				break;
			if (o.n && pgno != o.first + o.n) {
				/* the page does not extend the run: write the
				 * run, then start a new one with this page */
				if ((rc = restore_out_flush(&o)) < 0)
					goto werr;
				memmove(o.buf, slot, page_size);
				o.n = 0;
			}
			if (!o.n)
				o.first = pgno;
			o.n++;
			(*pages)++;
		}
		if (rc < 0)
			goto bad;
		if ((rc = restore_out_flush(&o)) < 0)
			goto werr;
		rc = ltx_dec_finish(d, &post, &fck, &err);
		if (rc < 0)
			goto bad;
		*last = *h;
		prev_post = post;
		prev_max = h->max_txid;
		ltx_dec_free(d);
		d = NULL;
		/* applied: free the downloaded copy now, before the kernel
		 * spends disk bandwidth writing it back */
		close(fd);
		r->fds[plan[i]] = -1;
		job_event(r->j, "progress",
			  json_pack("{s:s,s:I,s:I}", "phase", "apply", "done",
				    (json_int_t)(i + 1), "total", (json_int_t)n));
	}
	if (ftruncate(out_fd, (off_t)last->commit * page_size) < 0) {
		rc = job_fail(r->j, -errno, WRP_E_IO, "truncate: %s",
			      strerror(errno));
		goto out;
	}
	if (post && !snapshot_only) {
		uint64_t have;
		rc = restore_db_checksum(out_fd, page_size, last->commit, &have);
		if (rc < 0) {
			rc = job_fail(r->j, rc, WRP_E_IO,
				      "cannot read back the restored database: %s",
				      strerror(-rc));
			goto out;
		}
		if (have != post) {
			rc = job_fail(r->j, -EBADMSG, WRP_E_CHECKSUM,
				      "restored database checksum %016" PRIx64
				      " does not match the replica's %016" PRIx64,
				      have, post);
			goto out;
		}
	}
	rc = 0;
	goto out;
werr:
	rc = job_fail(r->j, rc, WRP_E_IO,
		      "cannot write the restored database: %s", strerror(-rc));
	goto out;
bad:
	job_fail(r->j, rc, WRP_E_CHECKSUM, "corrupt replica file %s: %s", cur,
		 err ? err : strerror(-rc));
out:
	ltx_dec_free(d);
	free(o.buf);
	free(err);
	return rc;
}

/* Whether another process has the database open: SQLite holds POSIX locks
 * on the -shm file (WAL mode) or the database file while it uses them. */
static bool restore_in_use(const char *output, const char *shm)
{
	const char *files[] = {shm, output};
	for (size_t i = 0; i < 2; i++) {
		int fd = open(files[i], O_RDWR | O_CLOEXEC);
		if (fd < 0)
			continue;
		struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
		bool busy = fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
		close(fd);
		if (busy)
			return true;
	}
	return false;
}

static int restore_cmp(const void *a, const void *b)
{
	const struct replica_file *x = a, *y = b;
	if (x->max_txid != y->max_txid)
		return x->max_txid < y->max_txid ? -1 : 1;
	if (x->min_txid != y->min_txid)
		return x->min_txid < y->min_txid ? -1 : 1;
	return x->level - y->level;
}

/* Lease the plan's files: one TXID range per level (a superset of the
 * plan at most, which only delays retention). Best effort: without an
 * answer we go on, and a file deleted anyway is planned around. */
static void restore_lease_plan(struct restore *r, const size_t *plan,
			       size_t np)
{
	struct retention_lease *l = calloc(np + 1, sizeof *l);
	size_t m = 0;
	if (!l)
		return;
	for (size_t i = 0; i < np; i++) {
		const struct replica_file *f = &r->files[plan[i]];
		size_t k = 0;
		while (k < m && l[k].level != f->level)
			k++;
		if (k == m)
			l[m++] = (struct retention_lease){.level = f->level,
							  .min_txid = f->min_txid,
							  .max_txid = f->max_txid};
		if (f->min_txid < l[k].min_txid)
			l[k].min_txid = f->min_txid;
		if (f->max_txid > l[k].max_txid)
			l[k].max_txid = f->max_txid;
	}
	job_lease(r->j, r->name, storage_describe(r->s), l, m);
	free(l);
}

/* Forget a listing, its plan and its downloads (before planning again). */
static void restore_reset(struct restore *r)
{
	for (size_t i = 0; r->files && i < r->n; i++) {
		replica_file_clear(&r->files[i]);
		if (r->fds[i] >= 0)
			close(r->fds[i]);
	}
	free(r->files);
	free(r->fds);
	r->files = NULL;
	r->fds = NULL;
	r->n = 0;
	storage_listing_clear(&r->l);
	free(r->vanished);
	r->vanished = NULL;
}

/* List, plan, lease and download: 0 with plan[0..*np) downloaded (*plan
 * malloc'd); -ENOENT with r->vanished set when a planned file was missing
 * at download (plan again); else an error reported with job_fail. */
static int restore_prepare(struct restore *r, const char *pit,
			   long long want_txid, int64_t not_after,
			   size_t **planp, size_t *npp)
{
	struct job_ctx *j = r->j;
	const char *name = r->name;
	char *err = NULL;
	size_t *plan = NULL;
	int rc;

	char *prefix = replica_prefix(storage_kind(r->s), name);
	rc = storage_list_wait(r->s, prefix, NULL, &r->l, &err);
	free(prefix);
	if (rc < 0) {
		rc = job_fail(j, rc, storage_error_code(rc), "cannot list the replica: %s",
			      err ? err : strerror(-rc));
		goto out;
	}
	r->files = calloc(r->l.nkeys + 1, sizeof *r->files);
	r->fds = calloc(r->l.nkeys + 1, sizeof *r->fds);
	plan = calloc(r->l.nkeys + 1, sizeof *plan);
	if (!r->files || !r->fds || !plan) {
		rc = job_fail(j, -ENOMEM, WRP_E_INTERNAL, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < r->l.nkeys; i++)
		if (replica_parse_key(storage_kind(r->s), name, r->l.keys[i],
				      &r->files[r->n]) == 0)
			r->n++;
	qsort(r->files, r->n, sizeof *r->files, restore_cmp);
	for (size_t i = 0; i < r->n + 1; i++)
		r->fds[i] = -1;
	if (r->n == 0) {
		rc = job_fail(j, -ENOENT, WRP_E_NO_SNAPSHOT,
			      "no backup of \"%s\" found in %s", name,
			      storage_describe(r->s));
		goto out;
	}
	uint64_t target = want_txid > 0 ? (uint64_t)want_txid : UINT64_MAX;
	if (pit) {
		/* Every file up to the target is read for its timestamp. */
		struct retention_lease all = {.level = -1, .min_txid = 0,
					      .max_txid = target};
		job_lease(j, name, storage_describe(r->s), &all, 1);
		rc = restore_timestamps(r, target);
		if (rc < 0)
			goto out;
	}
	uint64_t reached, newest = 0;
	size_t np = replica_plan(r->files, r->n, target, not_after, plan, &reached);
	for (size_t i = 0; i < r->n; i++)
		if (r->files[i].max_txid <= target &&
		    (not_after <= 0 || r->files[i].timestamp <= not_after) &&
		    r->files[i].max_txid > newest)
			newest = r->files[i].max_txid;
	if (np == 0) {
		int64_t earliest = INT64_MAX;
		uint64_t first = UINT64_MAX;
		for (size_t i = 0; i < r->n; i++)
			if (r->files[i].min_txid == 1) {
				if (r->files[i].max_txid < first)
					first = r->files[i].max_txid;
				if (r->files[i].timestamp < earliest)
					earliest = r->files[i].timestamp;
			}
		if (pit && earliest != INT64_MAX) {
			char buf[48];
			util_rfc3339_ms(earliest, buf, sizeof buf);
			rc = job_fail(j, -ENOENT, WRP_E_BEFORE_FIRST,
				      "point in time %s is before the first snapshot of \"%s\" (earliest available: %s)",
				      pit, name, buf);
		} else if (want_txid > 0 && first != UINT64_MAX) {
			rc = job_fail(j, -ENOENT, WRP_E_BEFORE_FIRST,
				      "txid %lld is before the first snapshot of \"%s\" (txid %" PRIu64 ")",
				      want_txid, name, first);
		} else {
			rc = job_fail(j, -ENOENT, WRP_E_NO_SNAPSHOT,
				      "no snapshot of \"%s\" found in %s", name,
				      storage_describe(r->s));
		}
		goto out;
	}
	if (reached < newest) {
		rc = job_fail(j, -EBADMSG, WRP_E_CHECKSUM,
			      "the replica of \"%s\" has a gap: the chain stops at txid %" PRIu64 " but files reach txid %" PRIu64,
			      name, reached, newest);
		goto out;
	}
	if (want_txid > 0 && reached != (uint64_t)want_txid) {
		rc = job_fail(j, -ENOENT, WRP_E_NO_SNAPSHOT,
			      "txid %lld is not in the replica of \"%s\" (restorable up to %" PRIu64 ")",
			      want_txid, name, reached);
		goto out;
	}
	restore_lease_plan(r, plan, np);
	rc = restore_fetch(r, plan, np);
	if (rc < 0)
		goto out;
	*planp = plan;
	*npp = np;
	plan = NULL;
out:
	free(plan);
	free(err);
	return rc;
}

int restore_run(struct job_ctx *j, json_t *args, json_t **result)
{
	const char *name = wrp_arg_string(args, "name");
	const char *output = wrp_arg_string(args, "output");
	const char *pit = wrp_arg_string(args, "point_in_time");
	long long want_txid = wrp_arg_int(args, "txid", 0);
	bool force = wrp_arg_bool(args, "force", false);
	const char *check = wrp_arg_string(args, "integrity_check");
	struct restore r = {.j = j, .name = name};
	size_t *plan = NULL;
	char *tmp = NULL, *err = NULL, *walp = NULL, *shmp = NULL;
	int out_fd = -1, rc;
	bool made_tmp = false;
	int64_t not_after = 0;

	if (!replica_name_valid(name)) {
		rc = job_fail(j, -EINVAL, WRP_E_INVALID,
			      "invalid database name \"%s\": a name is a file name without its extension (no \"/\", not \"..\")",
			      name);
		goto out;
	}
	if (!check)
		check = "full";
	if (strcmp(check, "full") && strcmp(check, "quick") &&
	    strcmp(check, "none")) {
		rc = job_fail(j, -EINVAL, WRP_E_INVALID,
			      "integrity_check must be \"full\", \"quick\" or \"none\", not \"%s\"",
			      check);
		goto out;
	}
	if (output[0] != '/') {
		rc = job_fail(j, -EINVAL, WRP_E_INVALID,
			      "output path must be absolute: %s", output);
		goto out;
	}
	if (pit && util_parse_time(pit, &not_after) < 0) {
		rc = job_fail(j, -EINVAL, WRP_E_INVALID,
			      "point_in_time \"%s\" is not an ISO 8601 time such as 2024-01-15T10:30:00Z",
			      pit);
		goto out;
	}
	if (want_txid < 0) {
		rc = job_fail(j, -EINVAL, WRP_E_INVALID, "txid must be >= 1");
		goto out;
	}
	struct stat st;
	if (stat(output, &st) == 0 && !S_ISREG(st.st_mode)) {
		rc = job_fail(j, -EINVAL, WRP_E_INVALID,
			      "output %s exists and is not a regular file", output);
		goto out;
	}
	walp = util_strdup_printf("%s-wal", output);
	shmp = util_strdup_printf("%s-shm", output);
	if (restore_in_use(output, shmp)) {
		rc = job_fail(j, -EBUSY, WRP_E_IN_USE,
			      "refusing to restore over %s: another process has it open; stop the application first",
			      output);
		goto out;
	}
	if (stat(walp, &st) == 0 && st.st_size > 0 && !force) {
		rc = job_fail(j, -EBUSY, WRP_E_IN_USE,
			      "refusing to restore over %s: %s is not empty, so the database is in use; stop the application first or force the restore",
			      output, walp);
		goto out;
	}

	rc = job_open_storage(j, args, &r.s);
	if (rc < 0)
		goto out;
	size_t np = 0;
	for (int attempt = 0;; attempt++) {
		rc = restore_prepare(&r, pit, want_txid, not_after, &plan, &np);
		if (rc != -ENOENT || !r.vanished)
			break;
		if (attempt == RESTORE_REPLANS) {
			rc = job_fail(j, rc, WRP_E_STORAGE,
				      "files of \"%s\" kept disappearing from %s during the restore (planned %d time%s; last: %s): is another process deleting them?",
				      name, storage_describe(r.s), attempt + 1,
				      attempt ? "s" : "", r.vanished);
			goto out;
		}
		char *m = util_strdup_printf(
			"a planned file disappeared from the replica during the download (%s); planning again",
			r.vanished);
		log_info("restore of %s: %s", name, m);
		job_event(j, "warning", json_pack("{s:s}", "message", m));
		free(m);
		restore_reset(&r);
	}
	if (rc < 0)
		goto out;

	tmp = util_strdup_printf("%s.tmp", output);
	out_fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (out_fd < 0) {
		rc = job_fail(j, -errno, WRP_E_IO, "cannot create %s: %s", tmp,
			      strerror(errno));
		goto out;
	}
	made_tmp = true;
	struct ltx_header last = {0};
	uint64_t pages;
	rc = restore_apply(&r, plan, np, out_fd, &last, &pages);
	if (rc < 0)
		goto out;
	if (fsync(out_fd) < 0) {
		rc = job_fail(j, -errno, WRP_E_IO, "fsync %s: %s", tmp,
			      strerror(errno));
		goto out;
	}
	job_event(j, "progress",
		  json_pack("{s:s,s:I,s:I}", "phase", "verify", "done",
			    (json_int_t)0, "total", (json_int_t)1));
	if (last.commit > 0 && strcmp(check, "none") != 0) {
		rc = restore_integrity(tmp, check, &err);
		if (rc < 0) {
			rc = job_fail(j, rc, WRP_E_CHECKSUM, "%s", err);
			goto out;
		}
	}
	/* Replace <out>: stale -wal/-shm must not be replayed over it. */
	unlink(walp);
	unlink(shmp);
	if (rename(tmp, output) < 0) {
		rc = job_fail(j, -errno, WRP_E_IO, "cannot rename %s to %s: %s",
			      tmp, output, strerror(errno));
		goto out;
	}
	made_tmp = false;
	util_fsync_dir(output);
	char tsbuf[48];
	util_rfc3339_ms(last.timestamp, tsbuf, sizeof tsbuf);
	*result = json_pack("{s:s,s:s,s:s,s:I,s:s,s:I,s:I,s:I,s:s}", "name",
			    name, "output", output, "bucket",
			    storage_describe(r.s), "txid",
			    (json_int_t)last.max_txid, "timestamp", tsbuf,
			    "files", (json_int_t)np, "pages",
			    (json_int_t)last.commit, "bytes",
			    (json_int_t)r.bytes, "integrity_check", check);
	log_info("restored %s to %s: txid %" PRIu64 ", %zu files", name,
		 output, last.max_txid, np);
	rc = 0;
out:
	if (out_fd >= 0)
		close(out_fd);
	if (made_tmp)
		unlink(tmp);
	restore_reset(&r);
	free(plan);
	storage_free(r.s);
	free(tmp);
	free(err);
	free(walp);
	free(shmp);
	return rc;
}
