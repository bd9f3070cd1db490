/* test-compact.c: compaction (compact.c).
 *
 * The merge against a model: every file is generated from a page-version
 * map (page content is a function of page number and version), applied to
 * the model in order, and the merged output must decode to exactly the
 * model's pages. Covered: newest wins, pages above a shrunken commit are
 * dropped, growth, snapshot + incrementals = the full database (random
 * histories), the output header, the checksum mode and its chain check,
 * damaged inputs (each fails the merge), chain validation, a chain that
 * breaks the growth rule, 20,000 pages with bounded heap, the lock page;
 * and the plan: wall-clock alignment, source selection, gaps, caps, the
 * snapshot level. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compact.h"
#include "daemon.h"
#include "suites.h"

#ifndef FIXTURES
#define FIXTURES "tests/unit/fixtures"
#endif

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN 1
#endif

#ifdef TEST_ASAN
size_t __sanitizer_get_current_allocated_bytes(void);
#endif

/* Bytes of heap in use now. */
static size_t heap_in_use(void)
{
#ifdef TEST_ASAN
	return __sanitizer_get_current_allocated_bytes();
#else
	struct mallinfo2 mi = mallinfo2();
	return mi.uordblks + mi.hblkhd;
#endif
}

/* ------------------------------------------------ memory sink and source */

struct buf {
	uint8_t *p;
	size_t len, cap;
};

static int buf_write(void *ctx, const void *p, size_t n)
{
	struct buf *b = ctx;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n)
			cap *= 2;
		uint8_t *np = realloc(b->p, cap);
		if (!np)
			return -ENOMEM;
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}

static void buf_free(struct buf *b)
{
	free(b->p);
	memset(b, 0, sizeof *b);
}

/* A sink that keeps nothing but the count and the heap's peak. */
struct peak {
	size_t bytes, peak;
};

static int peak_write(void *ctx, const void *p, size_t n)
{
	struct peak *k = ctx;
	(void)p;
	k->bytes += n;
	size_t h = heap_in_use();
	if (h > k->peak)
		k->peak = h;
	return 0;
}

struct src {
	const uint8_t *p;
	size_t len, pos;
};

static ssize_t src_read(void *ctx, void *out, size_t n)
{
	struct src *s = ctx;
	size_t k = s->len - s->pos;
	if (k > n)
		k = n;
	memcpy(out, s->p + s->pos, k);
	s->pos += k;
	return (ssize_t)k;
}

/* --------------------------------------------------------------- pages */

/* Page content: a function of (pgno, version), compressible but distinct. */
static void fill_page(uint8_t *p, uint32_t ps, uint32_t pgno, uint32_t ver)
{
	uint32_t x = pgno * 2654435761u ^ ver * 40503u;
	memset(p, (int)(x & 0xff), ps);
	util_be32_put(p, pgno);
	util_be32_put(p + 4, ver);
	for (uint32_t i = 8; i < ps; i += 61) {
		x = x * 1103515245u + 12345u;
		p[i] = (uint8_t)(x >> 16);
	}
}

/* One LTX file of the tests. */
struct tfile {
	uint64_t min, max;
	uint32_t commit;
	int64_t ts;
	uint32_t *pgnos, *vers; /* ascending page numbers and their versions */
	size_t npages;
	struct buf data;
	uint64_t pre, post; /* checksums (0 with NoChecksum) */
};

static void tfile_free(struct tfile *f)
{
	free(f->pgnos);
	free(f->vers);
	buf_free(&f->data);
}

/* Encode f (pages from pgnos/vers) with page size ps. */
static void tfile_encode(struct tfile *f, uint32_t ps, bool checksums)
{
	struct ltx_header h = {
		.flags = checksums ? 0 : LTX_FLAG_NO_CHECKSUM,
		.page_size = ps,
		.commit = f->commit,
		.min_txid = f->min,
		.max_txid = f->max,
		.timestamp = f->ts,
		.pre_apply_checksum = checksums && f->min != 1 ? f->pre : 0,
		/* compaction must zero these */
		.wal_offset = 32,
		.wal_size = 4096,
		.wal_salt1 = 7,
		.wal_salt2 = 9,
		.node_id = 42,
	};
	struct ltx_enc *e = NULL;
	char *err = NULL;
	uint8_t *page = malloc(ps);
	ck_assert_ptr_nonnull(page);
	buf_free(&f->data);
	ck_assert_msg(ltx_enc_new(&e, &h, buf_write, &f->data, &err) == 0,
		      "header: %s", err);
	for (size_t i = 0; i < f->npages; i++) {
		fill_page(page, ps, f->pgnos[i], f->vers[i]);
		int rc = ltx_enc_page(e, f->pgnos[i], page, &err);
		ck_assert_msg(rc == 0, "enc page %u: %s", f->pgnos[i], err);
	}
	ck_assert_msg(ltx_enc_finish(e, checksums ? f->post : 0, NULL, &err) == 0,
		      "finish: %s", err);
	ltx_enc_free(e);
	free(page);
}

/* ---------------------------------------------------------------- model */

/* The database: version of each page 1..commit (0: never written). */
struct model {
	uint32_t ps, commit, cap;
	uint32_t *ver;
};

static void model_init(struct model *m, uint32_t ps)
{
	memset(m, 0, sizeof *m);
	m->ps = ps;
}

static void model_apply(struct model *m, const struct tfile *f)
{
	if (f->commit + 1 > m->cap) {
		m->ver = realloc(m->ver, (f->commit + 1) * sizeof *m->ver);
		ck_assert_ptr_nonnull(m->ver);
		memset(m->ver + m->cap, 0,
		       (f->commit + 1 - m->cap) * sizeof *m->ver);
		m->cap = f->commit + 1;
	}
	for (size_t i = 0; i < f->npages; i++)
		m->ver[f->pgnos[i]] = f->vers[i];
	/* pages above the new size are gone */
	for (uint32_t p = f->commit + 1; p < m->cap; p++)
		m->ver[p] = 0;
	m->commit = f->commit;
}

/* Database checksum of the model (for files with checksums). */
static uint64_t model_checksum(const struct model *m)
{
	uint64_t x = 0;
	uint8_t *page = malloc(m->ps);
	uint32_t lock = ltx_lock_pgno(m->ps);
	for (uint32_t p = 1; p <= m->commit; p++) {
		if (p == lock)
			continue;
		fill_page(page, m->ps, p, m->ver[p]);
		x ^= ltx_page_checksum(p, page, m->ps);
	}
	free(page);
	return LTX_CHECKSUM_FLAG | x;
}

/* ----------------------------------------------------- file generators */

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL; /* never 0 */

static uint32_t rnd(uint32_t n)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return n ? (uint32_t)(rng_state % n) : 0;
}

static uint32_t version_counter;

static void tfile_add(struct tfile *f, uint32_t pgno, uint32_t ver)
{
	f->pgnos = realloc(f->pgnos, (f->npages + 1) * sizeof *f->pgnos);
	f->vers = realloc(f->vers, (f->npages + 1) * sizeof *f->vers);
	ck_assert(f->pgnos && f->vers);
	f->pgnos[f->npages] = pgno;
	f->vers[f->npages] = ver;
	f->npages++;
}

/* A file with explicit pages ("pgno" list, each with a fresh version). */
static void tfile_pages(struct tfile *f, uint64_t min, uint64_t max,
			uint32_t commit, int64_t ts, const uint32_t *pgnos,
			size_t n)
{
	memset(f, 0, sizeof *f);
	f->min = min;
	f->max = max;
	f->commit = commit;
	f->ts = ts;
	for (size_t i = 0; i < n; i++)
		tfile_add(f, pgnos[i], ++version_counter);
}

static void tfile_snapshot(struct tfile *f, uint64_t max, uint32_t commit,
			   uint32_t ps, int64_t ts)
{
	uint32_t lock = ltx_lock_pgno(ps);
	memset(f, 0, sizeof *f);
	f->min = 1;
	f->max = max;
	f->commit = commit;
	f->ts = ts;
	for (uint32_t p = 1; p <= commit; p++)
		if (p != lock)
			tfile_add(f, p, ++version_counter);
}

/* A random incremental after a database of `prev` pages, following rule 2:
 * every page of a growth is present. */
static void tfile_random(struct tfile *f, uint64_t txid, uint32_t prev,
			 uint32_t ps, uint32_t maxpages)
{
	uint32_t lock = ltx_lock_pgno(ps), commit;
	switch (rnd(4)) {
	case 0: /* shrink */
		commit = prev > 1 ? 1 + rnd(prev) : prev;
		break;
	case 1: /* grow */
		commit = prev + 1 + rnd(maxpages / 4 + 1);
		if (commit > maxpages)
			commit = maxpages;
		break;
	default:
		commit = prev;
	}
	memset(f, 0, sizeof *f);
	f->min = f->max = txid;
	f->commit = commit;
	f->ts = (int64_t)txid * 1000;
	for (uint32_t p = 1; p <= commit; p++) {
		if (p == lock)
			continue;
		if (p > prev || rnd(5) == 0)
			tfile_add(f, p, ++version_counter);
	}
}

/* ----------------------------------------------------- running a merge */

struct merged {
	int rc;
	char *err;
	struct ltx_header h;
	struct buf out;
};

static void merged_free(struct merged *m)
{
	free(m->err);
	buf_free(&m->out);
}

static struct merged merge(struct tfile **files, size_t n,
			   const struct compact_opts *o)
{
	struct merged r = {0};
	struct ltx_dec **decs = calloc(n + 1, sizeof *decs);
	struct src *srcs = calloc(n + 1, sizeof *srcs);
	ck_assert(decs && srcs);
	for (size_t i = 0; i < n; i++) {
		srcs[i].p = files[i]->data.p;
		srcs[i].len = files[i]->data.len;
		char *err = NULL;
		int rc = ltx_dec_new(&decs[i], src_read, &srcs[i], &err);
		ck_assert_msg(rc == 0, "input %zu: %s", i, err);
	}
	r.rc = compact_merge(decs, n, o, buf_write, &r.out, &r.h, &r.err);
	for (size_t i = 0; i < n; i++)
		ltx_dec_free(decs[i]);
	free(decs);
	free(srcs);
	return r;
}

/* Decode `out` and compare every page with the model; returns the number
 * of pages in the file. With `full`, the file must hold every page. */
static size_t check_output(const struct buf *out, const struct model *m,
			   bool full, uint64_t *post)
{
	struct src s = {out->p, out->len, 0};
	struct ltx_dec *d = NULL;
	char *err = NULL;
	uint8_t *page = malloc(m->ps), *want = malloc(m->ps);
	uint32_t pgno, lock = ltx_lock_pgno(m->ps), expect = 1;
	size_t count = 0;
	int rc;

	ck_assert_msg(ltx_dec_new(&d, src_read, &s, &err) == 0, "%s", err);
	ck_assert_uint_eq(ltx_dec_header(d)->commit, m->commit);
	while ((rc = ltx_dec_page(d, &pgno, page, &err)) > 0) {
		ck_assert_uint_le(pgno, m->commit);
		ck_assert_uint_ne(pgno, lock);
		if (full) {
			ck_assert_uint_eq(pgno, expect);
			expect = pgno + 1 == lock ? pgno + 2 : pgno + 1;
		}
		ck_assert_msg(m->ver[pgno] != 0, "page %u was never written",
			      pgno);
		fill_page(want, m->ps, pgno, m->ver[pgno]);
		ck_assert_msg(memcmp(page, want, m->ps) == 0,
			      "page %u differs (version %u wanted)", pgno,
			      m->ver[pgno]);
		count++;
	}
	ck_assert_msg(rc == 0, "%s", err);
	ck_assert_msg(ltx_dec_finish(d, post, NULL, &err) == 0, "%s", err);
	ltx_dec_free(d);
	free(page);
	free(want);
	return count;
}

static void check_header(const struct ltx_header *h, const struct tfile *first,
			 const struct tfile *last, uint32_t ps)
{
	ck_assert_uint_eq(h->flags, LTX_FLAG_NO_CHECKSUM);
	ck_assert_uint_eq(h->page_size, ps);
	ck_assert_uint_eq(h->min_txid, first->min);
	ck_assert_uint_eq(h->max_txid, last->max);
	ck_assert_uint_eq(h->commit, last->commit);
	ck_assert_int_eq(h->timestamp, last->ts);
	ck_assert_uint_eq(h->pre_apply_checksum, 0);
	ck_assert_int_eq(h->wal_offset, 0);
	ck_assert_int_eq(h->wal_size, 0);
	ck_assert_uint_eq(h->wal_salt1, 0);
	ck_assert_uint_eq(h->wal_salt2, 0);
	ck_assert_uint_eq(h->node_id, 0);
}

/* -------------------------------------------------------------- merges */

START_TEST(test_merge_newest_wins)
{
	const uint32_t ps = 512;
	struct tfile a, b, c;
	struct model m;
	uint32_t pa[] = {1, 3, 5}, pb[] = {3, 4}, pc[] = {1, 6};

	tfile_pages(&a, 2, 2, 5, 1000, pa, 3);
	tfile_pages(&b, 3, 4, 5, 2000, pb, 2);
	tfile_pages(&c, 5, 5, 6, 3000, pc, 2); /* grows to 6 */
	struct tfile *in[] = {&a, &b, &c};
	model_init(&m, ps);
	for (int i = 0; i < 3; i++) {
		tfile_encode(in[i], ps, false);
		model_apply(&m, in[i]);
	}
	struct merged r = merge(in, 3, NULL);
	ck_assert_msg(r.rc == 0, "%s", r.err);
	check_header(&r.h, &a, &c, ps);
	/* 1 from c, 3 and 4 from b, 5 from a, 6 from c */
	ck_assert_uint_eq(check_output(&r.out, &m, false, NULL), 5);
	merged_free(&r);

	/* A single input is re-encoded as itself, WAL fields dropped. */
	r = merge(in, 1, NULL);
	ck_assert_msg(r.rc == 0, "%s", r.err);
	check_header(&r.h, &a, &a, ps);
	merged_free(&r);
	for (int i = 0; i < 3; i++)
		tfile_free(in[i]);
	free(m.ver);
}
END_TEST

START_TEST(test_merge_shrink_and_grow)
{
	const uint32_t ps = 1024;
	struct tfile a, b, c, d;
	struct model m;
	uint32_t pa[] = {2, 6, 8, 10}, pb[] = {1}, pc[] = {5, 6, 7},
		 pd[] = {5, 7}; /* d: grows 4 -> 7 without page 6 */

	tfile_pages(&a, 10, 10, 10, 1, pa, 4);
	tfile_pages(&b, 11, 11, 4, 2, pb, 1);
	tfile_pages(&c, 12, 12, 7, 3, pc, 3);
	tfile_pages(&d, 12, 12, 7, 3, pd, 2);
	struct tfile *all[] = {&a, &b, &c, &d};
	for (int i = 0; i < 4; i++)
		tfile_encode(all[i], ps, false);

	/* shrink: pages 6, 8, 10 are above the final commit */
	model_init(&m, ps);
	model_apply(&m, &a);
	model_apply(&m, &b);
	struct tfile *ab[] = {&a, &b};
	struct merged r = merge(ab, 2, NULL);
	ck_assert_msg(r.rc == 0, "%s", r.err);
	ck_assert_uint_eq(r.h.commit, 4);
	ck_assert_uint_eq(check_output(&r.out, &m, false, NULL), 2); /* 1, 2 */
	merged_free(&r);

	/* shrink, then grow: 5..7 come from c, a's 6 is dead */
	model_apply(&m, &c);
	struct tfile *abc[] = {&a, &b, &c};
	r = merge(abc, 3, NULL);
	ck_assert_msg(r.rc == 0, "%s", r.err);
	ck_assert_uint_eq(r.h.commit, 7);
	ck_assert_uint_eq(check_output(&r.out, &m, false, NULL), 5);
	merged_free(&r);

	/* a growth without every new page would resurrect a's page 6 */
	struct tfile *abd[] = {&a, &b, &d};
	r = merge(abd, 3, NULL);
	ck_assert_int_eq(r.rc, -EINVAL);
	ck_assert_msg(strstr(r.err, "page 6 of input 0") &&
			      strstr(r.err, "growth rule"),
		      "%s", r.err);
	merged_free(&r);
	for (int i = 0; i < 4; i++)
		tfile_free(all[i]);
	free(m.ver);
}
END_TEST

/* Random histories: a snapshot and incrementals, merged whole and in
 * parts, always equal to applying them one by one. */
START_TEST(test_merge_snapshot_random)
{
	const uint32_t sizes[] = {512, 4096};
	for (int seed = 1; seed <= 40; seed++) {
		rng_state = 0x9E3779B97F4A7C15ULL * (uint64_t)seed;
		uint32_t ps = sizes[seed % 2], maxpages = 40 + rnd(200);
		size_t n = 2 + rnd(10);
		struct tfile *f = calloc(n, sizeof *f), **in = calloc(n, sizeof *in);
		struct model m;
		ck_assert(f && in);
		model_init(&m, ps);
		tfile_snapshot(&f[0], 1 + rnd(3), 1 + rnd(maxpages), ps, 500);
		for (size_t i = 1; i < n; i++)
			tfile_random(&f[i], f[i - 1].max + 1, f[i - 1].commit, ps,
				     maxpages);
		for (size_t i = 0; i < n; i++) {
			tfile_encode(&f[i], ps, false);
			model_apply(&m, &f[i]);
			in[i] = &f[i];
		}
		/* the whole chain: a full snapshot */
		struct merged r = merge(in, n, NULL);
		ck_assert_msg(r.rc == 0, "seed %d: %s", seed, r.err);
		ck_assert_uint_eq(r.h.min_txid, 1);
		ck_assert_uint_eq(r.h.max_txid, f[n - 1].max);
		size_t lockp = ltx_lock_pgno(ps) <= m.commit;
		ck_assert_uint_eq(check_output(&r.out, &m, true, NULL),
				  m.commit - lockp);

		/* incrementals merged first, then the snapshot + that */
		if (n > 2) {
			struct merged r2 = merge(in + 1, n - 1, NULL);
			ck_assert_msg(r2.rc == 0, "seed %d: %s", seed, r2.err);
			ck_assert_uint_eq(r2.h.min_txid, f[1].min);
			struct tfile mid = {.min = r2.h.min_txid,
					    .max = r2.h.max_txid,
					    .data = r2.out};
			struct tfile *two[] = {&f[0], &mid};
			struct merged r3 = merge(two, 2, NULL);
			ck_assert_msg(r3.rc == 0, "seed %d: %s", seed, r3.err);
			ck_assert_uint_eq(r3.out.len, r.out.len);
			ck_assert(memcmp(r3.out.p, r.out.p, r.out.len) == 0);
			merged_free(&r3);
			merged_free(&r2);
		}
		merged_free(&r);
		for (size_t i = 0; i < n; i++)
			tfile_free(&f[i]);
		free(f);
		free(in);
		free(m.ver);
	}
}
END_TEST

/* With checksums: the output carries the chain's checksums, and a broken
 * link is caught. */
START_TEST(test_merge_checksums)
{
	const uint32_t ps = 512;
	struct tfile s, a, b;
	struct model m;
	uint32_t pa[] = {2, 4, 5}, pb[] = {1, 3};
	struct compact_opts o = {.checksums = true};

	model_init(&m, ps);
	tfile_snapshot(&s, 3, 4, ps, 10);
	model_apply(&m, &s);
	s.post = model_checksum(&m);
	tfile_pages(&a, 4, 4, 5, 20, pa, 3);
	a.pre = s.post;
	model_apply(&m, &a);
	a.post = model_checksum(&m);
	tfile_pages(&b, 5, 6, 5, 30, pb, 2);
	b.pre = a.post;
	model_apply(&m, &b);
	b.post = model_checksum(&m);
	tfile_encode(&s, ps, true);
	tfile_encode(&a, ps, true);
	tfile_encode(&b, ps, true);

	struct tfile *in[] = {&s, &a, &b};
	struct merged r = merge(in, 3, &o);
	ck_assert_msg(r.rc == 0, "%s", r.err);
	ck_assert_uint_eq(r.h.flags, 0);
	uint64_t post = 0;
	ck_assert_uint_eq(check_output(&r.out, &m, true, &post), 5);
	ck_assert_uint_eq(post, b.post);
	merged_free(&r);

	/* incrementals only: pre-apply of the first, post-apply of the last */
	r = merge(in + 1, 2, &o);
	ck_assert_msg(r.rc == 0, "%s", r.err);
	ck_assert_uint_eq(r.h.pre_apply_checksum, a.pre);
	merged_free(&r);

	/* a broken link */
	b.pre = a.post ^ 1;
	tfile_encode(&b, ps, true);
	r = merge(in, 3, &o);
	ck_assert_int_eq(r.rc, -EBADMSG);
	ck_assert_msg(strstr(r.err, "broken chain: input 2"), "%s", r.err);
	merged_free(&r);

	/* NoChecksum inputs cannot give a file with checksums */
	tfile_encode(&a, ps, false);
	r = merge(in, 2, &o);
	ck_assert_int_eq(r.rc, -EINVAL);
	ck_assert_msg(strstr(r.err, "input 1") && strstr(r.err, "NoChecksum"),
		      "%s", r.err);
	merged_free(&r);
	/* ...but mixing them without checksums is fine */
	r = merge(in, 2, NULL);
	ck_assert_msg(r.rc == 0, "%s", r.err);
	merged_free(&r);

	tfile_free(&s);
	tfile_free(&a);
	tfile_free(&b);
	free(m.ver);
}
END_TEST

START_TEST(test_merge_corrupt_input)
{
	const uint32_t ps = 512;
	struct tfile s, a;
	uint32_t pa[] = {1, 2, 3};

	tfile_snapshot(&s, 1, 8, ps, 10);
	tfile_pages(&a, 2, 2, 8, 20, pa, 3);
	tfile_encode(&s, ps, false);
	tfile_encode(&a, ps, false);
	struct tfile *in[] = {&s, &a};
	struct merged r;

	/* a flipped bit in the file checksum: only the end tells */
	a.data.p[a.data.len - 1] ^= 0x01;
	r = merge(in, 2, NULL);
	ck_assert_int_eq(r.rc, -EBADMSG);
	ck_assert_msg(strstr(r.err, "input 1") &&
			      strstr(r.err, "file checksum mismatch"),
		      "%s", r.err);
	merged_free(&r);
	a.data.p[a.data.len - 1] ^= 0x01;

	/* a flipped bit in the first page's data (uncompressed bytes are
	 * hashed, so any change to the page is caught) */
	size_t off = LTX_HEADER_SIZE + LTX_PAGE_HEADER_SIZE + 4 + 3;
	s.data.p[off] ^= 0x40;
	r = merge(in, 2, NULL);
	ck_assert_int_lt(r.rc, 0);
	ck_assert_msg(strstr(r.err, "input 0"), "%s", r.err);
	merged_free(&r);
	s.data.p[off] ^= 0x40;

	/* a truncated input */
	size_t len = a.data.len;
	a.data.len = len - 20;
	r = merge(in, 2, NULL);
	ck_assert_int_eq(r.rc, -EINVAL);
	ck_assert_msg(strstr(r.err, "input 1") && strstr(r.err, "truncated"),
		      "%s", r.err);
	merged_free(&r);
	a.data.len = len;

	/* intact again: passes */
	r = merge(in, 2, NULL);
	ck_assert_msg(r.rc == 0, "%s", r.err);
	merged_free(&r);
	tfile_free(&s);
	tfile_free(&a);
}
END_TEST

static void read_fixture(const char *name, struct buf *b)
{
	char path[512];
	snprintf(path, sizeof path, "%s/%s", FIXTURES, name);
	FILE *fp = fopen(path, "rb");
	ck_assert_msg(fp != NULL, "cannot open %s", path);
	uint8_t chunk[4096];
	size_t k;
	while ((k = fread(chunk, 1, sizeof chunk, fp)) > 0)
		ck_assert_int_eq(buf_write(b, chunk, k), 0);
	fclose(fp);
}

START_TEST(test_merge_chain_rules)
{
	struct tfile a, b, c, big;
	uint32_t p1[] = {1};
	struct merged r;

	tfile_pages(&a, 2, 3, 4, 1, p1, 1);
	tfile_pages(&b, 5, 5, 4, 2, p1, 1); /* gap: 4 is missing */
	tfile_pages(&c, 3, 3, 4, 2, p1, 1); /* does not reach past a */
	tfile_pages(&big, 4, 4, 4, 2, p1, 1);
	tfile_encode(&a, 512, false);
	tfile_encode(&b, 512, false);
	tfile_encode(&c, 512, false);
	tfile_encode(&big, 1024, false);

	struct tfile *gap[] = {&a, &b};
	r = merge(gap, 2, NULL);
	ck_assert_int_eq(r.rc, -EINVAL);
	ck_assert_msg(strstr(r.err, "non-contiguous inputs: input 1"), "%s",
		      r.err);
	ck_assert_uint_eq(r.out.len, 0); /* refused before writing */
	merged_free(&r);

	struct tfile *back[] = {&a, &c};
	r = merge(back, 2, NULL);
	ck_assert_int_eq(r.rc, -EINVAL);
	ck_assert_msg(strstr(r.err, "does not reach past input 0"), "%s", r.err);
	merged_free(&r);

	struct tfile *sizes[] = {&a, &big};
	r = merge(sizes, 2, NULL);
	ck_assert_int_eq(r.rc, -EINVAL);
	ck_assert_msg(strstr(r.err, "page size 1024"), "%s", r.err);
	merged_free(&r);

	r = merge(gap, 0, NULL);
	ck_assert_int_eq(r.rc, -EINVAL);
	merged_free(&r);

	/* Litestream's own L0 files, TXIDs 1 and 3: not a chain. */
	struct tfile l1 = {0}, l3 = {0};
	read_fixture("litestream-l0-snapshot.ltx", &l1.data);
	read_fixture("litestream-l0-incr.ltx", &l3.data);
	struct tfile *ls[] = {&l1, &l3};
	r = merge(ls, 2, NULL);
	ck_assert_int_eq(r.rc, -EINVAL);
	ck_assert_msg(strstr(r.err, "non-contiguous"), "%s", r.err);
	merged_free(&r);
	/* each alone re-encodes into a valid file of the same TXIDs */
	r = merge(ls, 1, NULL);
	ck_assert_msg(r.rc == 0, "%s", r.err);
	ck_assert_uint_eq(r.h.min_txid, 1);
	ck_assert_uint_eq(r.h.max_txid, 1);
	merged_free(&r);
	r = merge(ls + 1, 1, NULL);
	ck_assert_msg(r.rc == 0, "%s", r.err);
	ck_assert_uint_eq(r.h.min_txid, 3);
	merged_free(&r);

	buf_free(&l1.data);
	buf_free(&l3.data);
	tfile_free(&a);
	tfile_free(&b);
	tfile_free(&c);
	tfile_free(&big);
}
END_TEST

START_TEST(test_merge_missing_snapshot_page)
{
	/* A snapshot then a growth file that lacks page 6: the merged
	 * snapshot would have a hole, so the merge names the page. */
	struct tfile s, a;
	uint32_t pa[] = {5, 7};
	tfile_snapshot(&s, 1, 4, 512, 1);
	tfile_pages(&a, 2, 2, 7, 2, pa, 2);
	tfile_encode(&s, 512, false);
	tfile_encode(&a, 512, false);
	struct tfile *in[] = {&s, &a};
	struct merged r = merge(in, 2, NULL);
	ck_assert_int_eq(r.rc, -EINVAL);
	ck_assert_msg(strstr(r.err, "no input holds page 6"), "%s", r.err);
	merged_free(&r);

	/* ... and one that ends short of its commit */
	uint32_t pb[] = {5};
	struct tfile b;
	tfile_pages(&b, 2, 2, 6, 2, pb, 1);
	tfile_encode(&b, 512, false);
	in[1] = &b;
	r = merge(in, 2, NULL);
	ck_assert_int_eq(r.rc, -EINVAL);
	ck_assert_msg(strstr(r.err, "no input holds pages 6..6"), "%s", r.err);
	merged_free(&r);

	/* an emptied database cannot be a NoChecksum file */
	struct tfile z;
	tfile_pages(&z, 2, 2, 0, 2, NULL, 0);
	z.pre = LTX_CHECKSUM_FLAG | 123;
	z.post = LTX_CHECKSUM_FLAG; /* the empty database */
	tfile_encode(&z, 512, true);
	in[1] = &z;
	r = merge(in, 2, NULL);
	ck_assert_int_eq(r.rc, -EINVAL);
	ck_assert_msg(strstr(r.err, "commit 0"), "%s", r.err);
	merged_free(&r);
	tfile_free(&s);
	tfile_free(&a);
	tfile_free(&b);
	tfile_free(&z);
}
END_TEST

/* 20,000 pages: it works, and the heap the merge uses does not grow with
 * the database (an 80 MB database merged in well under 8 MB). */
START_TEST(test_merge_large)
{
	const uint32_t ps = 4096, pages = 20000;
	struct tfile s, a, b;
	struct model m;
	uint32_t pa[] = {1, 777, 19999, 20000};

	model_init(&m, ps);
	tfile_snapshot(&s, 10, pages, ps, 1);
	model_apply(&m, &s);
	tfile_pages(&a, 11, 11, pages, 2, pa, 4);
	model_apply(&m, &a);
	memset(&b, 0, sizeof b);
	b.min = b.max = 12;
	b.commit = pages + 10; /* grows: carries 20001..20010 */
	b.ts = 3;
	for (uint32_t p = 1; p <= pages; p += 997)
		tfile_add(&b, p, ++version_counter);
	for (uint32_t p = pages + 1; p <= b.commit; p++)
		tfile_add(&b, p, ++version_counter);
	model_apply(&m, &b);
	tfile_encode(&s, ps, false);
	tfile_encode(&a, ps, false);
	tfile_encode(&b, ps, false);
	struct tfile *in[] = {&s, &a, &b};

	struct merged r = merge(in, 3, NULL);
	ck_assert_msg(r.rc == 0, "%s", r.err);
	ck_assert_uint_eq(check_output(&r.out, &m, true, NULL), pages + 10);
	merged_free(&r);

	/* again into a sink that keeps nothing, watching the heap */
	struct ltx_dec *decs[3];
	struct src srcs[3];
	for (int i = 0; i < 3; i++) {
		srcs[i] = (struct src){in[i]->data.p, in[i]->data.len, 0};
		ck_assert_int_eq(ltx_dec_new(&decs[i], src_read, &srcs[i], NULL),
				 0);
	}
	struct peak k = {0};
	size_t base = heap_in_use();
	char *err = NULL;
	ck_assert_int_eq(compact_merge(decs, 3, NULL, peak_write, &k, NULL,
				       &err),
			 0);
	ck_assert_uint_gt(k.bytes, (size_t)(pages + 10) * 10);
	size_t used = k.peak > base ? k.peak - base : 0;
	ck_assert_msg(used < (size_t)8 << 20,
		      "the merge used %zu bytes of heap for a %u-page database",
		      used, m.commit);
	for (int i = 0; i < 3; i++)
		ltx_dec_free(decs[i]);
	tfile_free(&s);
	tfile_free(&a);
	tfile_free(&b);
	free(m.ver);
}
END_TEST

/* A snapshot across the lock page (64 KiB pages put it at 16385). */
START_TEST(test_merge_lock_page)
{
	const uint32_t ps = 65536, lock = 16385;
	struct tfile s, a;
	struct model m;
	uint32_t pa[] = {lock - 1, lock + 1, lock + 2, lock + 3};

	model_init(&m, ps);
	tfile_snapshot(&s, 1, lock + 1, ps, 1);
	model_apply(&m, &s);
	tfile_pages(&a, 2, 2, lock + 3, 2, pa, 4); /* grows past the lock */
	model_apply(&m, &a);
	tfile_encode(&s, ps, false);
	tfile_encode(&a, ps, false);
	struct tfile *in[] = {&s, &a};
	struct merged r = merge(in, 2, NULL);
	ck_assert_msg(r.rc == 0, "%s", r.err);
	ck_assert_uint_eq(check_output(&r.out, &m, true, NULL), lock + 2);
	merged_free(&r);
	tfile_free(&s);
	tfile_free(&a);
	free(m.ver);
}
END_TEST

/* ----------------------------------------------------------------- plan */

static struct replica_file F(int level, uint64_t mn, uint64_t mx, int64_t ts)
{
	struct replica_file f = {.level = level, .min_txid = mn,
				 .max_txid = mx, .timestamp = ts};
	return f;
}

#define SEC 1000LL
#define MINUTE (60 * SEC)

START_TEST(test_plan_l1_alignment)
{
	/* L0 files every 10 s from t = 100 s (TXID 1 at 100 s). */
	struct replica_file f[64];
	size_t n = 0, idx[64];
	for (int i = 0; i < 12; i++)
		f[n++] = F(0, (uint64_t)i + 1, (uint64_t)i + 1, 100 * SEC + i * 10 * SEC);
	/* TXIDs 1..12 at 100, 110, ..., 210 s */
	struct compact_job j = {.level = 1, .interval_ms = 30 * SEC};
	char *err = NULL;

	/* at 125 s the boundary is 120 s: TXIDs 1..3 (100..120 s) */
	ck_assert_int_eq(compact_plan(f, n, 125 * SEC, &j, idx, &err), 1);
	ck_assert_int_eq(j.due_ms, 120 * SEC);
	ck_assert_int_eq(j.next_ms, 150 * SEC);
	ck_assert_uint_eq(j.n, 3);
	ck_assert_uint_eq(j.min_txid, 1);
	ck_assert_uint_eq(j.max_txid, 3);
	ck_assert(j.snapshot); /* starts at TXID 1 */
	ck_assert(!j.gap);
	for (size_t k = 0; k < j.n; k++)
		ck_assert_uint_eq(f[idx[k]].min_txid, k + 1);
	f[n++] = F(1, 1, 3, 120 * SEC);

	/* again in the same interval: nothing, whenever asked */
	ck_assert_int_eq(compact_plan(f, n, 125 * SEC, &j, idx, &err), 0);
	ck_assert_int_eq(compact_plan(f, n, 149 * SEC, &j, idx, &err), 0);
	ck_assert_int_eq(j.next_ms, 150 * SEC);

	/* at 150 s: 4..6 (130..150 s), an incremental */
	ck_assert_int_eq(compact_plan(f, n, 150 * SEC, &j, idx, &err), 1);
	ck_assert_uint_eq(j.min_txid, 4);
	ck_assert_uint_eq(j.max_txid, 6);
	ck_assert(!j.snapshot);
	f[n++] = F(1, 4, 6, 150 * SEC);

	/* a long pause: at 1000 s everything left, or max_inputs of it */
	j.max_inputs = 4;
	ck_assert_int_eq(compact_plan(f, n, 1000 * SEC, &j, idx, &err), 1);
	ck_assert_uint_eq(j.min_txid, 7);
	ck_assert_uint_eq(j.max_txid, 10);
	f[n++] = F(1, 7, 10, 190 * SEC);
	ck_assert_int_eq(compact_plan(f, n, 1000 * SEC, &j, idx, &err), 1);
	ck_assert_uint_eq(j.min_txid, 11);
	ck_assert_uint_eq(j.max_txid, 12);
	f[n++] = F(1, 11, 12, 210 * SEC);
	ck_assert_int_eq(compact_plan(f, n, 1000 * SEC, &j, idx, &err), 0);

	/* Litestream's "too early": its L1 was uploaded after the boundary */
	struct replica_file g[] = {F(0, 1, 1, 100 * SEC), F(0, 2, 2, 130 * SEC),
				   F(1, 1, 1, 125 * SEC)};
	j.max_inputs = 0;
	ck_assert_int_eq(compact_plan(g, 3, 140 * SEC, &j, idx, &err), 0);
	ck_assert_int_eq(compact_plan(g, 3, 150 * SEC, &j, idx, &err), 1);
	ck_assert_uint_eq(j.min_txid, 2);

	/* L2 and L3 take from the level below, aligned to their own
	 * intervals: 1 h since the epoch, whatever the offset of now */
	struct replica_file h[] = {F(1, 1, 5, 3599 * SEC), F(1, 6, 9, 3600 * SEC),
				   F(1, 10, 12, 3601 * SEC), F(0, 13, 13, 3000 * SEC)};
	struct compact_job l3 = {.level = 3, .interval_ms = 60 * MINUTE};
	ck_assert_int_eq(compact_plan(h, 4, 7199 * SEC, &l3, idx, &err), 0);
	struct compact_job l2 = {.level = 2, .interval_ms = 5 * MINUTE};
	ck_assert_int_eq(compact_plan(h, 4, 3659 * SEC, &l2, idx, &err), 1);
	ck_assert_int_eq(l2.due_ms, 3600 * SEC);
	ck_assert_uint_eq(l2.min_txid, 1);
	ck_assert_uint_eq(l2.max_txid, 9); /* not 10-12 (3601 s) nor L0 */
	ck_assert_uint_eq(l2.n, 2);
}
END_TEST

START_TEST(test_plan_gaps_and_overlaps)
{
	size_t idx[16];
	char *err = NULL;
	struct compact_job j = {.level = 1, .interval_ms = 30 * SEC};

	/* a hole inside the source: only the run before it */
	struct replica_file a[] = {F(0, 5, 5, 1), F(0, 6, 6, 2), F(0, 8, 8, 3),
				   F(1, 1, 4, 1)};
	ck_assert_int_eq(compact_plan(a, 4, 60 * SEC, &j, idx, &err), 1);
	ck_assert_uint_eq(j.min_txid, 5);
	ck_assert_uint_eq(j.max_txid, 6);
	ck_assert(j.gap);
	/* once that is compacted, the run after the hole, still flagged */
	struct replica_file b[] = {F(0, 8, 8, 3), F(1, 1, 4, 1), F(1, 5, 6, 2)};
	ck_assert_int_eq(compact_plan(b, 3, 60 * SEC, &j, idx, &err), 1);
	ck_assert_uint_eq(j.min_txid, 8);
	ck_assert(j.gap);

	/* overlaps in one level: the furthest-reaching wins, contained ones
	 * are skipped; files below the destination are ignored */
	struct replica_file c[] = {F(0, 2, 2, 1), F(0, 3, 3, 1), F(0, 3, 5, 1),
				   F(0, 4, 4, 1), F(0, 6, 6, 1), F(1, 1, 2, 1)};
	ck_assert_int_eq(compact_plan(c, 6, 60 * SEC, &j, idx, &err), 1);
	ck_assert_uint_eq(j.n, 2);
	ck_assert_uint_eq(c[idx[0]].max_txid, 5);
	ck_assert_uint_eq(c[idx[1]].max_txid, 6);
	ck_assert(!j.gap);

	/* nothing newer than the destination */
	struct replica_file d[] = {F(0, 1, 1, 1), F(1, 1, 1, 1)};
	ck_assert_int_eq(compact_plan(d, 2, 60 * SEC, &j, idx, &err), 0);
	ck_assert_int_eq(compact_plan(NULL, 0, 60 * SEC, &j, idx, &err), 0);

	/* bad arguments */
	struct compact_job bad = {.level = 0, .interval_ms = 1};
	ck_assert_int_eq(compact_plan(d, 2, 1, &bad, idx, &err), -EINVAL);
	ck_assert_msg(strstr(err, "level 0"), "%s", err);
	free(err);
	err = NULL;
	bad.level = 2;
	bad.interval_ms = 0;
	ck_assert_int_eq(compact_plan(d, 2, 1, &bad, idx, &err), -EINVAL);
	free(err);
}
END_TEST

START_TEST(test_plan_snapshot_level)
{
	size_t idx[16];
	char *err = NULL;
	struct compact_job j = {.level = REPLICA_SNAPSHOT_LEVEL,
				.interval_ms = 24 * 60 * MINUTE};
	const int64_t day = 24 * 60 * MINUTE;
	struct replica_file f[] = {
		F(9, 1, 10, day / 2),	  F(1, 1, 10, day / 2),
		F(1, 11, 20, day - 5 * SEC), F(0, 21, 21, day - SEC),
		F(0, 22, 22, day + SEC), /* after the boundary */
	};
	ck_assert_int_eq(compact_plan(f, 5, day + 10 * MINUTE, &j, idx, &err), 1);
	ck_assert(j.snapshot);
	ck_assert_uint_eq(j.min_txid, 1);
	ck_assert_uint_eq(j.max_txid, 21);
	ck_assert_uint_eq(j.n, 3);
	ck_assert_int_eq(f[idx[0]].level, 9); /* the base, then the chain */
	ck_assert_uint_eq(f[idx[1]].min_txid, 11);
	ck_assert_uint_eq(f[idx[2]].min_txid, 21);
	ck_assert(!j.gap);

	/* with that snapshot written, nothing until the next day */
	struct replica_file g[6];
	memcpy(g, f, sizeof f);
	g[5] = F(9, 1, 21, day - SEC);
	ck_assert_int_eq(compact_plan(g, 6, day + 10 * MINUTE, &j, idx, &err), 0);
	ck_assert_int_eq(compact_plan(g, 6, 2 * day, &j, idx, &err), 1);
	ck_assert_uint_eq(j.max_txid, 22);
	ck_assert_uint_eq(j.n, 2);

	/* a hole stops the chain: planned to the hole, flagged */
	struct replica_file h[] = {F(9, 1, 10, 1), F(0, 11, 11, 2),
				   F(0, 13, 13, 3)};
	ck_assert_int_eq(compact_plan(h, 3, day, &j, idx, &err), 1);
	ck_assert_uint_eq(j.max_txid, 11);
	ck_assert(j.gap);
	/* no snapshot at all: nothing */
	struct replica_file k[] = {F(0, 11, 11, 2)};
	ck_assert_int_eq(compact_plan(k, 1, day, &j, idx, &err), 0);
}
END_TEST

Suite *compact_suite(void)
{
	Suite *s = suite_create("compact");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_merge_newest_wins);
	tcase_add_test(tc, test_merge_shrink_and_grow);
	tcase_add_test(tc, test_merge_snapshot_random);
	tcase_add_test(tc, test_merge_checksums);
	tcase_add_test(tc, test_merge_corrupt_input);
	tcase_add_test(tc, test_merge_chain_rules);
	tcase_add_test(tc, test_merge_missing_snapshot_page);
	tcase_add_test(tc, test_merge_large);
	tcase_add_test(tc, test_merge_lock_page);
	tcase_add_test(tc, test_plan_l1_alignment);
	tcase_add_test(tc, test_plan_gaps_and_overlaps);
	tcase_add_test(tc, test_plan_snapshot_level);
	suite_add_tcase(s, tc);
	return s;
}
