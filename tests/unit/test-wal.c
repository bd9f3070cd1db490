/*
 * test-wal.c: the WAL reader against WAL files written by real SQLite,
 * and against deliberately damaged copies of them.
 *
 * Every WAL here comes from libsqlite3 (journal_mode=WAL,
 * wal_autocheckpoint=0), copied while the connection is still open. The
 * expectations come from SQLite too: the frame count from
 * `PRAGMA wal_checkpoint(PASSIVE)`, the database size from
 * `PRAGMA page_count`, and the page image from the database file after
 * `PRAGMA wal_checkpoint(TRUNCATE)`. Damaged copies are checked against
 * an oracle (check_index) that walks the frame headers naively.
 */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "suites.h"
#include "walrust.h"

#define HDR WAL_HEADER_SIZE
#define FHDR WAL_FRAME_HEADER_SIZE

static const unsigned page_sizes[] = {512, 4096, 65536};

struct blob {
	uint8_t *p;
	size_t n;
};

/* A database in a private temp directory, open in WAL mode. */
struct tw {
	char dir[PATH_MAX - 64];
	char db_path[PATH_MAX];
	char wal_path[PATH_MAX];
	sqlite3 *db;
	unsigned page_size;
};

/* ------------------------------------------------------------- helpers */

static uint32_t get_be32(const uint8_t *p)
{
	return util_be32(p);
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[1] << 8 | (uint32_t)p[0];
}

/* SQLite's checksum, written out independently of daemon/wal.c. */
static void tw_cksum(bool be, const uint8_t *p, size_t len, uint32_t s[2])
{
	for (size_t i = 0; i < len; i += 8) {
		uint32_t x0 = be ? get_be32(p + i) : get_le32(p + i);
		uint32_t x1 = be ? get_be32(p + i + 4) : get_le32(p + i + 4);
		s[0] += x0 + s[1];
		s[1] += x1 + s[0];
	}
}

/* Sign one frame (header + page) continuing the chain s. */
static void tw_sign_frame(uint8_t *f, unsigned page_size, bool be,
			  uint32_t s[2])
{
	tw_cksum(be, f, 8, s);
	tw_cksum(be, f + FHDR, page_size, s);
	util_be32_put(f + 16, s[0]);
	util_be32_put(f + 20, s[1]);
}

/* Rewrite the magic and every checksum of a WAL image: the header with
 * big-endian words when hdr_be, all whole frames (chained from the header
 * checksum) with big-endian words when frames_be. */
static void tw_resign(uint8_t *p, size_t n, bool hdr_be, bool frames_be)
{
	unsigned page_size = get_be32(p + 8);
	size_t fsz = FHDR + page_size;
	uint32_t s[2] = {0, 0};

	util_be32_put(p, hdr_be ? 0x377f0683u : 0x377f0682u);
	tw_cksum(hdr_be, p, 24, s);
	util_be32_put(p + 24, s[0]);
	util_be32_put(p + 28, s[1]);
	for (size_t off = HDR; off + fsz <= n; off += fsz)
		tw_sign_frame(p + off, page_size, frames_be, s);
}

static size_t tw_frame_off(unsigned page_size, uint32_t i /* 1-based */)
{
	return HDR + (size_t)(i - 1) * (FHDR + page_size);
}

/* Index of the last commit frame among frames 1..limit (0 if none),
 * looking only at the commit fields. */
static uint32_t tw_last_commit(const uint8_t *wal, size_t len, uint32_t limit)
{
	unsigned page_size = get_be32(wal + 8);
	uint32_t last = 0;

	for (uint32_t i = 1; i <= limit; i++) {
		size_t off = tw_frame_off(page_size, i);
		ck_assert(off + FHDR + page_size <= len);
		if (get_be32(wal + off + 4))
			last = i;
	}
	return last;
}

static uint32_t tw_nframes(const uint8_t *wal, size_t len)
{
	size_t fsz = FHDR + get_be32(wal + 8);
	return len < HDR ? 0 : (uint32_t)((len - HDR) / fsz);
}

static int tw_scan(const uint8_t *p, size_t n, struct wal_index **w,
		   char **err)
{
	int fd = memfd_create("wal", MFD_CLOEXEC);
	int rc;

	ck_assert_int_ge(fd, 0);
	if (n)
		ck_assert_int_eq(util_write_all(fd, p, n), 0);
	rc = wal_index_scan(w, fd, err);
	close(fd);
	return rc;
}

/* Scan and require success. */
static struct wal_index *tw_scan_ok(const uint8_t *p, size_t n)
{
	struct wal_index *w = NULL;
	char *err = NULL;
	int rc = tw_scan(p, n, &w, &err);

	ck_assert_msg(rc == 0, "scan failed: %d %s", rc, err ? err : "");
	ck_assert_ptr_nonnull(w);
	ck_assert_ptr_null(err);
	return w;
}

/* The oracle: `w` must index exactly the frames 1..n of `wal` (frames
 * parsed naively, no checksum involved): frame count, end offset, commit
 * size and, for every page, the offset of its newest frame among 1..n. */
static void check_index(const struct wal_index *w, const uint8_t *wal,
			size_t len, uint32_t n)
{
	const struct wal_header *h = wal_index_header(w);
	unsigned page_size = get_be32(wal + 8);
	size_t fsz = FHDR + page_size;
	uint32_t total = tw_nframes(wal, len), maxpg = 0;
	int64_t *last;

	ck_assert_uint_eq(h->page_size, page_size);
	ck_assert_uint_le(n, total);
	ck_assert_uint_eq(wal_index_frames(w), n);
	ck_assert_int_eq(wal_index_end(w), (int64_t)(HDR + n * fsz));
	if (n) {
		uint32_t c = get_be32(wal + tw_frame_off(page_size, n) + 4);
		ck_assert_uint_ne(c, 0);
		ck_assert_uint_eq(wal_index_commit(w), c);
	} else {
		ck_assert_uint_eq(wal_index_commit(w), 0);
	}
	for (uint32_t i = 1; i <= total; i++) {
		uint32_t pg = get_be32(wal + tw_frame_off(page_size, i));
		ck_assert_uint_lt(pg, 1u << 24);
		if (pg > maxpg)
			maxpg = pg;
	}
	last = malloc(((size_t)maxpg + 2) * sizeof *last);
	ck_assert_ptr_nonnull(last);
	for (uint32_t pg = 0; pg <= maxpg + 1; pg++)
		last[pg] = -1;
	for (uint32_t i = 1; i <= n; i++) {
		size_t off = tw_frame_off(page_size, i);
		last[get_be32(wal + off)] = (int64_t)off;
	}
	for (uint32_t pg = 0; pg <= maxpg + 1; pg++)
		ck_assert_msg(wal_index_lookup(w, pg) == last[pg],
			      "page %u: lookup %lld, want %lld", pg,
			      (long long)wal_index_lookup(w, pg),
			      (long long)last[pg]);
	ck_assert_int_eq(wal_index_lookup(w, UINT32_MAX), -1);
	free(last);
}

static struct blob tw_slurp(const char *path)
{
	struct blob b = {NULL, 0};
	FILE *f = fopen(path, "rb");
	struct stat st;

	ck_assert_msg(f != NULL, "open %s: %s", path, strerror(errno));
	ck_assert_int_eq(fstat(fileno(f), &st), 0);
	b.n = (size_t)st.st_size;
	b.p = malloc(b.n ? b.n : 1);
	ck_assert_ptr_nonnull(b.p);
	ck_assert_uint_eq(fread(b.p, 1, b.n, f), b.n);
	fclose(f);
	return b;
}

static void tw_exec(struct tw *g, const char *sql)
{
	char *msg = NULL;
	int rc = sqlite3_exec(g->db, sql, NULL, NULL, &msg);

	ck_assert_msg(rc == SQLITE_OK, "%s: %s", sql, msg ? msg : "?");
	sqlite3_free(msg);
}

/* Run a statement and return column `col` of its first row. */
static long long tw_int(struct tw *g, const char *sql, int col)
{
	sqlite3_stmt *st = NULL;
	long long v;

	ck_assert_int_eq(sqlite3_prepare_v2(g->db, sql, -1, &st, NULL),
			 SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	v = sqlite3_column_int64(st, col);
	sqlite3_finalize(st);
	return v;
}

static void tw_open(struct tw *g, unsigned page_size)
{
	const char *tmp = getenv("TMPDIR");
	char sql[128];

	memset(g, 0, sizeof *g);
	g->page_size = page_size;
	snprintf(g->dir, sizeof g->dir, "%s/walrust-test-wal-XXXXXX",
		 tmp && *tmp ? tmp : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(g->dir));
	snprintf(g->db_path, sizeof g->db_path, "%s/t.db", g->dir);
	snprintf(g->wal_path, sizeof g->wal_path, "%s/t.db-wal", g->dir);
	ck_assert_int_eq(sqlite3_open(g->db_path, &g->db), SQLITE_OK);
	snprintf(sql, sizeof sql, "PRAGMA page_size=%u;", page_size);
	tw_exec(g, sql);
	tw_exec(g, "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;");
	ck_assert_int_eq(tw_int(g, "PRAGMA page_size", 0), page_size);
}

static void tw_close(struct tw *g)
{
	char path[PATH_MAX + 8];

	ck_assert_int_eq(sqlite3_close(g->db), SQLITE_OK);
	g->db = NULL;
	unlink(g->db_path);
	unlink(g->wal_path);
	snprintf(path, sizeof path, "%s-shm", g->db_path);
	unlink(path);
	rmdir(g->dir);
}

/* Transactions of every kind: create, a big insert that grows the
 * database, an update of existing pages, many small transactions that
 * rewrite the same pages, a delete, and more growth. */
static void tw_workload(struct tw *g, int rows, int small)
{
	char sql[512];

	tw_exec(g, "CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT, v BLOB);"
		   "CREATE INDEX t_k ON t(k);");
	snprintf(sql, sizeof sql,
		 "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 "
		 "FROM c WHERE i < %d) INSERT INTO t SELECT i, "
		 "hex(randomblob(8)), randomblob(%u) FROM c;",
		 rows, g->page_size / 4);
	tw_exec(g, sql);
	snprintf(sql, sizeof sql,
		 "UPDATE t SET v = randomblob(%u) WHERE id %% 3 = 0;",
		 g->page_size / 4);
	tw_exec(g, sql);
	for (int i = 0; i < small; i++) {
		snprintf(sql, sizeof sql,
			 "UPDATE t SET k = 'u%d' WHERE id = %d;", i,
			 (i * 37) % rows + 1);
		tw_exec(g, sql);
	}
	tw_exec(g, "DELETE FROM t WHERE id % 5 = 0;");
	snprintf(sql, sizeof sql,
		 "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 "
		 "FROM c WHERE i < %d) INSERT INTO t SELECT %d + i, "
		 "hex(randomblob(8)), randomblob(%u) FROM c;",
		 rows / 4, rows, g->page_size / 8);
	tw_exec(g, sql);
}

/* A small real WAL (every frame valid, last frame a commit) of this page
 * size; the connection is closed and the files removed. */
static struct blob tw_small_wal(unsigned page_size)
{
	struct tw g;
	struct blob wal;

	tw_open(&g, page_size);
	tw_workload(&g, page_size == 65536 ? 30 : 60, 8);
	wal = tw_slurp(g.wal_path);
	tw_close(&g);
	ck_assert_uint_gt(tw_nframes(wal.p, wal.n), 4);
	ck_assert_uint_eq((wal.n - HDR) % (FHDR + page_size), 0);
	return wal;
}

/* ------------------------------------------------- real WALs, end to end */

START_TEST(test_real_wal)
{
	static const struct {
		unsigned page_size;
		int rows, small;
	} cfg[] = {{512, 400, 500}, {4096, 400, 100}, {65536, 100, 20}};
	unsigned page_size = cfg[_i].page_size;
	size_t fsz = FHDR + page_size;
	struct tw g;
	struct blob wal, db, want;
	struct wal_index *w;
	uint32_t commit, log;
	uint8_t *img;

	tw_open(&g, page_size);
	tw_workload(&g, cfg[_i].rows, cfg[_i].small);
	commit = (uint32_t)tw_int(&g, "PRAGMA page_count", 0);
	/* Copies taken while the connection is open: nothing was
	 * checkpointed (wal_autocheckpoint=0). */
	wal = tw_slurp(g.wal_path);
	db = tw_slurp(g.db_path);
	log = (uint32_t)tw_int(&g, "PRAGMA wal_checkpoint(PASSIVE)", 1);
	tw_exec(&g, "PRAGMA wal_checkpoint(TRUNCATE);");
	want = tw_slurp(g.db_path);
	tw_close(&g);

	w = tw_scan_ok(wal.p, wal.n);
	ck_assert_uint_eq(wal_index_header(w)->magic, 0x377f0682u);
	ck_assert_uint_eq(wal_index_header(w)->version, 3007000u);
	ck_assert_uint_eq(wal_index_header(w)->page_size, page_size);
	ck_assert_uint_eq(wal_index_frames(w), log);
	ck_assert_uint_eq(wal_index_commit(w), commit);
	ck_assert_int_eq(wal_index_end(w), (int64_t)wal.n);
	ck_assert_uint_eq(wal.n, HDR + (size_t)log * fsz);
	check_index(w, wal.p, wal.n, log);

	/* Database file overlaid with the newest committed frame of each
	 * page == what SQLite's own checkpoint produced. */
	ck_assert_uint_eq(want.n, (size_t)commit * page_size);
	img = calloc(commit, page_size);
	ck_assert_ptr_nonnull(img);
	for (uint32_t pg = 1; pg <= commit; pg++) {
		int64_t off = wal_index_lookup(w, pg);
		size_t at = (size_t)(pg - 1) * page_size;
		if (off >= 0) {
			ck_assert_uint_le((size_t)off + fsz, wal.n);
			ck_assert_uint_eq(get_be32(wal.p + off), pg);
			memcpy(img + at, wal.p + off + FHDR, page_size);
		} else if (at + page_size <= db.n) {
			memcpy(img + at, db.p + at, page_size);
		}
	}
	ck_assert_msg(memcmp(img, want.p, want.n) == 0,
		      "rebuilt image differs from the checkpointed database");
	free(img);
	wal_index_free(w);
	free(wal.p);
	free(db.p);
	free(want.p);
}
END_TEST

/* ---------------------------------------------------------- byte order */

START_TEST(test_byte_order)
{
	unsigned page_size = page_sizes[_i];
	struct blob wal = tw_small_wal(page_size);
	uint32_t n = tw_nframes(wal.p, wal.n);
	uint8_t *c = malloc(wal.n);
	struct wal_index *w;

	ck_assert_ptr_nonnull(c);
	/* The test's own signer reproduces SQLite's bytes exactly. */
	memcpy(c, wal.p, wal.n);
	tw_resign(c, wal.n, false, false);
	ck_assert(memcmp(c, wal.p, wal.n) == 0);

	/* Big-endian checksums, magic 0x377f0683: scans fully. */
	memcpy(c, wal.p, wal.n);
	tw_resign(c, wal.n, true, true);
	ck_assert(memcmp(c + 16, wal.p + 16, 8) == 0);
	ck_assert(memcmp(c + 24, wal.p + 24, 8) != 0);
	w = tw_scan_ok(c, wal.n);
	ck_assert_uint_eq(wal_index_header(w)->magic, 0x377f0683u);
	check_index(w, c, wal.n, n);
	wal_index_free(w);

	/* Magic says little-endian, frames signed big-endian: no frame. */
	memcpy(c, wal.p, wal.n);
	tw_resign(c, wal.n, false, true);
	w = tw_scan_ok(c, wal.n);
	ck_assert_uint_eq(wal_index_header(w)->magic, 0x377f0682u);
	check_index(w, c, wal.n, 0);
	ck_assert_int_eq(wal_index_end(w), HDR);
	wal_index_free(w);

	/* Magic says big-endian, frames signed little-endian: no frame. */
	memcpy(c, wal.p, wal.n);
	tw_resign(c, wal.n, true, false);
	w = tw_scan_ok(c, wal.n);
	ck_assert_uint_eq(wal_index_header(w)->magic, 0x377f0683u);
	check_index(w, c, wal.n, 0);
	wal_index_free(w);

	/* A header checksummed in the other order than its magic says. */
	memcpy(c, wal.p, wal.n);
	tw_resign(c, wal.n, false, false);
	util_be32_put(c, 0x377f0683u);
	{
		uint32_t s[2] = {0, 0};
		tw_cksum(false, c, 24, s);
		util_be32_put(c + 24, s[0]);
		util_be32_put(c + 28, s[1]);
	}
	ck_assert_int_eq(tw_scan(c, wal.n, &w, NULL), -EINVAL);
	ck_assert_ptr_null(w);

	free(c);
	free(wal.p);
}
END_TEST

/* ------------------------------------------------------------- extend */

/* Extending an index by the frames appended since gives exactly the index
 * a fresh scan gives, at every commit boundary and at torn tails; a new
 * generation (another header) or a truncated file answers 1. */
START_TEST(test_extend)
{
	unsigned page_size = page_sizes[_i];
	size_t fsz = FHDR + page_size;
	struct blob wal = tw_small_wal(page_size);
	uint32_t total = tw_nframes(wal.p, wal.n);
	int fd = memfd_create("wal", MFD_CLOEXEC);
	struct wal_index *w = NULL;
	char *err = NULL;

	ck_assert_int_ge(fd, 0);
	/* Start with the header and one frame, then grow the file a frame
	 * (and at the end a torn half frame) at a time. */
	ck_assert_int_eq(util_write_all(fd, wal.p, HDR + fsz), 0);
	ck_assert_int_eq(wal_index_scan(&w, fd, &err), 0);
	for (uint32_t i = 2; i <= total; i++) {
		ck_assert_int_eq(util_pwrite_all(fd, wal.p + HDR + (i - 1) * fsz,
						 fsz, (off_t)(HDR + (i - 1) * fsz)),
				 0);
		if (i % 3 == 0) {
			/* a torn frame after the last one: not a frame */
			ck_assert_int_eq(util_pwrite_all(
					fd, wal.p + HDR + (i - 1) * fsz, fsz / 2,
					(off_t)(HDR + i * fsz)), 0);
		}
		ck_assert_int_eq(wal_index_extend(w, fd, &err), 0);
		check_index(w, wal.p, HDR + i * fsz,
			    tw_last_commit(wal.p, HDR + i * fsz, i));
		if (i % 3 == 0)
			ck_assert_int_eq(ftruncate(fd, (off_t)(HDR + i * fsz)), 0);
	}
	/* Nothing new: still the same. */
	ck_assert_int_eq(wal_index_extend(w, fd, &err), 0);
	check_index(w, wal.p, wal.n, tw_last_commit(wal.p, wal.n, total));

	/* A restarted WAL (salt-1 + 1, re-signed header): another
	 * generation, whatever follows. */
	uint8_t hdr[HDR];
	memcpy(hdr, wal.p, HDR);
	hdr[19]++;
	uint32_t s[2] = {0, 0};
	tw_cksum(get_be32(hdr) & 1, hdr, 24, s);
	for (int k = 0; k < 4; k++) {
		hdr[24 + k] = (uint8_t)(s[0] >> (24 - 8 * k));
		hdr[28 + k] = (uint8_t)(s[1] >> (24 - 8 * k));
	}
	ck_assert_int_eq(util_pwrite_all(fd, hdr, HDR, 0), 0);
	ck_assert_int_eq(wal_index_extend(w, fd, &err), 1);
	/* Truncated below a header (TRUNCATE checkpoint): the same. */
	ck_assert_int_eq(ftruncate(fd, 0), 0);
	ck_assert_int_eq(wal_index_extend(w, fd, &err), 1);
	ck_assert_ptr_null(err);
	wal_index_free(w);
	close(fd);
	free(wal.p);
}
END_TEST

/* --------------------------------------------------------------- salts */

/* A real restart: old-generation frames stay in the file after the new
 * ones; only the new generation counts. */
START_TEST(test_salts_restart)
{
	unsigned page_size = page_sizes[_i];
	size_t fsz = FHDR + page_size;
	struct tw g;
	struct blob old, wal;
	struct wal_index *w;
	uint32_t log, n;

	tw_open(&g, page_size);
	tw_workload(&g, page_size == 65536 ? 30 : 60, 8);
	old = tw_slurp(g.wal_path);
	tw_exec(&g, "PRAGMA wal_checkpoint(RESTART);");
	tw_exec(&g, "UPDATE t SET k = 'after-restart' WHERE id = 1;");
	wal = tw_slurp(g.wal_path);
	log = (uint32_t)tw_int(&g, "PRAGMA wal_checkpoint(PASSIVE)", 1);
	tw_close(&g);

	/* The scenario really is "new frames, then stale frames". */
	ck_assert_uint_eq(wal.n, old.n);
	ck_assert_uint_eq(get_be32(wal.p + 16), get_be32(old.p + 16) + 1);
	ck_assert(log >= 1 && log + 1 < tw_nframes(wal.p, wal.n));
	ck_assert(memcmp(wal.p + tw_frame_off(page_size, log + 1) + 8,
			 old.p + 16, 8) == 0);

	w = tw_scan_ok(wal.p, wal.n);
	check_index(w, wal.p, wal.n, log);
	wal_index_free(w);

	/* Splice the old generation's last (commit) frame right after the
	 * new frames and re-sign its checksum into the new chain: only the
	 * salts tell it apart now. */
	n = log;
	{
		size_t len = HDR + (size_t)(n + 1) * fsz;
		uint8_t *c = malloc(len);
		uint8_t *f = c + HDR + (size_t)n * fsz;
		const uint8_t *prev = wal.p + tw_frame_off(page_size, n);
		uint32_t s[2] = {get_be32(prev + 16), get_be32(prev + 20)};
		uint32_t s2[2] = {s[0], s[1]};

		ck_assert_ptr_nonnull(c);
		memcpy(c, wal.p, HDR + (size_t)n * fsz);
		memcpy(f, old.p + old.n - fsz, fsz);
		ck_assert_uint_ne(get_be32(f + 4), 0);
		ck_assert(memcmp(f + 8, c + 16, 8) != 0);
		tw_sign_frame(f, page_size, false, s);
		w = tw_scan_ok(c, len);
		check_index(w, c, len, n);
		wal_index_free(w);

		/* Control: with the header's salts the same frame counts, so
		 * the salts alone stopped the scan above. */
		memcpy(f + 8, c + 16, 8);
		tw_sign_frame(f, page_size, false, s2);
		w = tw_scan_ok(c, len);
		check_index(w, c, len, n + 1);
		wal_index_free(w);
		free(c);
	}
	free(old.p);
	free(wal.p);
}
END_TEST

/* Overwrite a frame in the middle of a WAL with an older generation's
 * frame, re-signed so that its checksum chains: the scan stops before. */
START_TEST(test_salts_overwrite)
{
	unsigned page_size = page_sizes[_i];
	struct blob wal = tw_small_wal(page_size);
	uint32_t total = tw_nframes(wal.p, wal.n), k = total / 2 + 1;
	uint8_t *f = wal.p + tw_frame_off(page_size, k);
	const uint8_t *prev = wal.p + tw_frame_off(page_size, k - 1);
	uint32_t s[2] = {get_be32(prev + 16), get_be32(prev + 20)};
	struct wal_index *w;

	/* The previous generation: salt-1 one lower, another salt-2. */
	util_be32_put(f + 8, get_be32(wal.p + 16) - 1);
	util_be32_put(f + 12, get_be32(wal.p + 20) ^ 0x5a5a5a5au);
	tw_sign_frame(f, page_size, false, s);
	w = tw_scan_ok(wal.p, wal.n);
	check_index(w, wal.p, wal.n, tw_last_commit(wal.p, wal.n, k - 1));
	ck_assert_uint_lt(wal_index_frames(w), k);
	wal_index_free(w);
	free(wal.p);
}
END_TEST

/* ---------------------------------------------------- torn transactions */

/* A real open transaction whose pages spilled into the WAL. */
START_TEST(test_torn_spill)
{
	unsigned page_size = page_sizes[_i];
	struct tw g;
	struct blob a, b;
	struct wal_index *wa, *wb;
	char sql[256];
	uint32_t na;

	tw_open(&g, page_size);
	tw_workload(&g, page_size == 65536 ? 30 : 60, 8);
	a = tw_slurp(g.wal_path);
	na = tw_nframes(a.p, a.n);
	tw_exec(&g, "PRAGMA cache_size=2; BEGIN;");
	snprintf(sql, sizeof sql,
		 "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 "
		 "FROM c WHERE i < 100) INSERT INTO t SELECT 100000 + i, "
		 "'spill', randomblob(%u) FROM c;"
		 "UPDATE t SET k = 'spilled' WHERE id < 20;",
		 page_size / 2);
	tw_exec(&g, sql);
	b = tw_slurp(g.wal_path);
	tw_exec(&g, "ROLLBACK;");
	tw_close(&g);

	/* The spill appended uncommitted frames after the committed ones. */
	ck_assert_uint_gt(b.n, a.n);
	ck_assert(memcmp(a.p, b.p, a.n) == 0);
	for (uint32_t i = na + 1; i <= tw_nframes(b.p, b.n); i++)
		ck_assert_uint_eq(get_be32(b.p + tw_frame_off(page_size, i) + 4),
				  0);

	wa = tw_scan_ok(a.p, a.n);
	wb = tw_scan_ok(b.p, b.n);
	check_index(wa, a.p, a.n, na);
	check_index(wb, b.p, b.n, na);
	ck_assert_uint_eq(wal_index_commit(wa), wal_index_commit(wb));
	wal_index_free(wa);
	wal_index_free(wb);
	free(a.p);
	free(b.p);
}
END_TEST

/* The last transaction loses its commit marker (validly re-signed): all
 * its frames are out, including pages also written before. */
START_TEST(test_torn_last_txn)
{
	unsigned page_size = page_sizes[_i];
	struct blob wal = tw_small_wal(page_size);
	uint32_t total = tw_nframes(wal.p, wal.n);
	uint32_t prev = tw_last_commit(wal.p, wal.n, total - 1);
	struct wal_index *w;

	ck_assert_uint_ne(get_be32(wal.p + tw_frame_off(page_size, total) + 4),
			  0);
	util_be32_put(wal.p + tw_frame_off(page_size, total) + 4, 0);
	tw_resign(wal.p, wal.n, false, false);
	w = tw_scan_ok(wal.p, wal.n);
	check_index(w, wal.p, wal.n, prev);
	ck_assert_uint_lt(prev, total);
	wal_index_free(w);
	free(wal.p);
}
END_TEST

/* ------------------------------------------------------ corrupted frame */

START_TEST(test_flipped_byte)
{
	unsigned page_size = page_sizes[_i];
	struct blob wal = tw_small_wal(page_size);
	uint32_t total = tw_nframes(wal.p, wal.n), k = total / 2 + 1;
	uint32_t want = tw_last_commit(wal.p, wal.n, k - 1);
	size_t f = tw_frame_off(page_size, k);
	static const size_t where[] = {FHDR + 100, 3, 7};
	struct wal_index *w;
	uint8_t *c;

	/* In the page data, in the page number, in the commit field. */
	for (size_t j = 0; j < sizeof where / sizeof where[0]; j++) {
		wal.p[f + where[j]] ^= 0x01;
		w = tw_scan_ok(wal.p, wal.n);
		check_index(w, wal.p, wal.n, want);
		ck_assert_uint_lt(wal_index_frames(w), k);
		wal_index_free(w);
		wal.p[f + where[j]] ^= 0x01;
	}
	/* A frame for page 0 (no such page), validly signed: SQLite's
	 * recovery rejects it, so it ends the log too. */
	c = malloc(wal.n);
	ck_assert_ptr_nonnull(c);
	memcpy(c, wal.p, wal.n);
	util_be32_put(c + f, 0);
	tw_resign(c, wal.n, false, false);
	w = tw_scan_ok(c, wal.n);
	check_index(w, c, wal.n, want);
	wal_index_free(w);
	free(c);

	/* Intact again: everything counts. */
	w = tw_scan_ok(wal.p, wal.n);
	check_index(w, wal.p, wal.n, total);
	wal_index_free(w);
	free(wal.p);
}
END_TEST

/* --------------------------------------------------------- truncation */

static void check_truncated(const struct blob *wal, size_t len)
{
	struct wal_index *w = tw_scan_ok(wal->p, len);

	if (len < HDR) {
		ck_assert_uint_eq(wal_index_header(w)->magic, 0);
		ck_assert_uint_eq(wal_index_frames(w), 0);
		ck_assert_uint_eq(wal_index_commit(w), 0);
		ck_assert_int_eq(wal_index_end(w), HDR);
		ck_assert_int_eq(wal_index_lookup(w, 1), -1);
	} else {
		uint32_t whole = tw_nframes(wal->p, len);
		check_index(w, wal->p, len,
			    tw_last_commit(wal->p, len, whole));
		ck_assert_int_le(wal_index_end(w), (int64_t)len);
	}
	wal_index_free(w);
}

START_TEST(test_truncated)
{
	unsigned page_size = page_sizes[_i];
	struct blob wal = tw_small_wal(page_size);
	uint32_t total = tw_nframes(wal.p, wal.n);
	size_t fsz = FHDR + page_size;

	for (size_t len = 0; len <= HDR + FHDR + 8; len++)
		check_truncated(&wal, len);
	for (uint32_t i = 1; i <= total; i++) {
		size_t b = HDR + (size_t)i * fsz;
		const size_t cuts[] = {b - fsz + FHDR, b - fsz + FHDR + 1,
				       b - fsz / 2, b - 1, b};
		for (size_t j = 0; j < sizeof cuts / sizeof cuts[0]; j++)
			check_truncated(&wal, cuts[j]);
	}
	free(wal.p);
}
END_TEST

/* ------------------------------------------------------------- header */

static void check_bad_header(const uint8_t *p, size_t n, const char *what)
{
	static char sentinel;
	struct wal_index *w = (struct wal_index *)(void *)&sentinel;
	struct wal_header h;
	char *err = NULL;

	ck_assert_int_eq(tw_scan(p, n, &w, &err), -EINVAL);
	ck_assert_ptr_null(w);
	ck_assert_msg(err && strstr(err, what), "error '%s' lacks '%s'",
		      err ? err : "(null)", what);
	free(err);
	err = NULL;
	ck_assert_int_eq(wal_header_decode(&h, p, &err), -EINVAL);
	ck_assert_ptr_nonnull(err);
	free(err);
	ck_assert_int_eq(wal_header_decode(&h, p, NULL), -EINVAL);
}

START_TEST(test_bad_header)
{
	struct blob wal = tw_small_wal(4096);
	uint8_t c[HDR + FHDR + 4096];
	static const uint32_t bad_sizes[] = {0, 1, 256, 1000, 131072};
	struct wal_header h;

	ck_assert_uint_ge(wal.n, sizeof c);
	ck_assert_int_eq(wal_header_decode(&h, wal.p, NULL), 0);
	ck_assert_uint_eq(h.page_size, 4096);
	ck_assert_uint_eq(h.salt1, get_be32(wal.p + 16));
	ck_assert_uint_eq(h.salt2, get_be32(wal.p + 20));
	ck_assert_uint_eq(h.ckpt_seq, get_be32(wal.p + 12));
	ck_assert_uint_eq(h.cksum1, get_be32(wal.p + 24));
	ck_assert_uint_eq(h.cksum2, get_be32(wal.p + 28));

	/* Header only, and header plus a partial frame: valid, empty. */
	for (size_t len = HDR; len < HDR + FHDR + 4096; len += 1000) {
		struct wal_index *w = tw_scan_ok(wal.p, len);
		ck_assert_uint_eq(wal_index_header(w)->salt1, h.salt1);
		ck_assert_uint_eq(wal_index_frames(w), 0);
		ck_assert_int_eq(wal_index_end(w), HDR);
		wal_index_free(w);
	}

	memcpy(c, wal.p, sizeof c);
	util_be32_put(c, 0x377f0684u);
	check_bad_header(c, sizeof c, "magic");
	check_bad_header(c, HDR, "magic");
	memset(c, 0, HDR);
	check_bad_header(c, sizeof c, "magic");

	memcpy(c, wal.p, sizeof c);
	util_be32_put(c + 4, 3007001u);
	tw_resign(c, HDR, false, false);
	check_bad_header(c, sizeof c, "version");

	for (size_t i = 0; i < sizeof bad_sizes / sizeof bad_sizes[0]; i++) {
		memcpy(c, wal.p, sizeof c);
		util_be32_put(c + 8, bad_sizes[i]);
		tw_resign(c, HDR, false, false);
		check_bad_header(c, sizeof c, "page size");
	}

	for (size_t byte = 0; byte < 32; byte++) {
		if (byte < 12)
			continue; /* magic/version/page size checked first */
		memcpy(c, wal.p, sizeof c);
		c[byte] ^= 0x80;
		check_bad_header(c, sizeof c, "checksum");
	}
	free(wal.p);
}
END_TEST

START_TEST(test_empty)
{
	static const uint8_t junk[HDR - 1] = {0x37, 0x7f, 0x06, 0x82};
	struct wal_index *w;

	for (size_t len = 0; len < sizeof junk; len += 5) {
		w = tw_scan_ok(junk, len);
		ck_assert_uint_eq(wal_index_frames(w), 0);
		ck_assert_uint_eq(wal_index_commit(w), 0);
		ck_assert_int_eq(wal_index_end(w), HDR);
		ck_assert_int_eq(wal_index_lookup(w, 0), -1);
		ck_assert_int_eq(wal_index_lookup(w, 1), -1);
		wal_index_free(w);
	}
	wal_index_free(NULL);
}
END_TEST

/* An unreadable fd is an error, not an empty WAL. */
START_TEST(test_bad_fd)
{
	struct wal_index *w = NULL;
	char *err = NULL;
	int fd = memfd_create("wal", MFD_CLOEXEC);

	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert_int_eq(wal_index_scan(&w, fd, &err), -EBADF);
	ck_assert_ptr_null(w);
	ck_assert_ptr_nonnull(err);
	free(err);
}
END_TEST

Suite *wal_suite(void)
{
	Suite *s = suite_create("wal");
	TCase *tc = tcase_create("wal");
	int nps = (int)(sizeof page_sizes / sizeof page_sizes[0]);

	tcase_set_timeout(tc, 300);
	tcase_add_loop_test(tc, test_real_wal, 0, nps);
	tcase_add_loop_test(tc, test_byte_order, 0, nps);
	tcase_add_loop_test(tc, test_salts_restart, 0, nps);
	tcase_add_loop_test(tc, test_salts_overwrite, 0, nps);
	tcase_add_loop_test(tc, test_torn_spill, 0, nps);
	tcase_add_loop_test(tc, test_torn_last_txn, 0, nps);
	tcase_add_loop_test(tc, test_flipped_byte, 0, nps);
	tcase_add_loop_test(tc, test_truncated, 0, nps);
	tcase_add_test(tc, test_bad_header);
	tcase_add_test(tc, test_empty);
	tcase_add_test(tc, test_bad_fd);
	tcase_add_loop_test(tc, test_extend, 0, nps);
	suite_add_tcase(s, tc);
	return s;
}
