/* test-ltx.c: the LTX codec.
 *
 * Round trips at every page size; an independent builder (below) that writes
 * block-form, legacy LZ4-frame-form and deliberately malformed files with
 * correct checksums, so that each decoder rule is reached on its own; byte
 * flips and truncations; real files written by Litestream 0.5.17. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lz4.h>
#include <lz4frame.h>

#include "suites.h"
#include "walrust.h"

#ifndef FIXTURES
#define FIXTURES "tests/unit/fixtures"
#endif

#define FLAG LTX_CHECKSUM_FLAG

/* ------------------------------------------------ memory sink and source */

struct buf {
	uint8_t *p;
	size_t len, cap;
};

static void buf_put(struct buf *b, const void *p, size_t n)
{
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n)
			cap *= 2;
		b->p = realloc(b->p, cap);
		ck_assert_ptr_nonnull(b->p);
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

static void buf_free(struct buf *b)
{
	free(b->p);
	memset(b, 0, sizeof *b);
}

static int buf_write(void *ctx, const void *p, size_t n)
{
	buf_put(ctx, p, n);
	return 0;
}

/* A sink that fails with -ENOSPC once `limit` bytes are written. */
struct limited {
	size_t n, limit;
};

static int limited_write(void *ctx, const void *p, size_t n)
{
	struct limited *l = ctx;
	(void)p;
	if (l->n + n > l->limit)
		return -ENOSPC;
	l->n += n;
	return 0;
}

struct src {
	const uint8_t *p;
	size_t len, pos;
	size_t chunk;	/* largest read, 0 for unlimited */
	size_t fail_at; /* -EIO once pos reaches it, 0 for never */
};

static ssize_t src_read(void *ctx, void *out, size_t n)
{
	struct src *s = ctx;
	if (s->fail_at && s->pos >= s->fail_at)
		return -EIO;
	size_t k = s->len - s->pos;
	if (k > n)
		k = n;
	if (s->chunk && k > s->chunk)
		k = s->chunk;
	memcpy(out, s->p + s->pos, k);
	s->pos += k;
	return (ssize_t)k;
}

/* ------------------------------------------------------------- pages */

enum { GEN_MIXED, GEN_RANDOM, GEN_ZERO };

static void gen_page(uint8_t *p, uint32_t len, uint32_t pgno, int kind)
{
	uint64_t x = 0x9E3779B97F4A7C15ULL * (pgno + 1);
	if (kind == GEN_ZERO) {
		memset(p, 0, len);
		if (len >= 4)
			util_be32_put(p, pgno);
		return;
	}
	uint32_t nrand = kind == GEN_RANDOM ? len : len / 4;
	for (uint32_t i = 0; i < len; i++) {
		if (i < nrand) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			p[i] = (uint8_t)(x >> 32);
		} else {
			p[i] = (uint8_t)((i / 8) * 3 + pgno);
		}
	}
	if (len >= 4)
		util_be32_put(p, pgno);
}

/* A digest of a sequence of (pgno, page). */
static uint64_t digest_add(uint64_t d, uint32_t pgno, const void *page,
			   uint32_t len)
{
	uint8_t b[4];
	util_be32_put(b, pgno);
	d = crc64_iso(d, b, 4);
	return crc64_iso(d, page, len);
}

static uint64_t expected_digest(const uint32_t *pgnos, size_t n, uint32_t ps,
				int kind)
{
	uint8_t *page = malloc(ps);
	uint64_t d = 0;
	for (size_t i = 0; i < n; i++) {
		gen_page(page, ps, pgnos[i], kind);
		d = digest_add(d, pgnos[i], page, ps);
	}
	free(page);
	return d;
}

static uint64_t db_checksum(const uint32_t *pgnos, size_t n, uint32_t ps,
			    int kind)
{
	uint8_t *page = malloc(ps);
	uint64_t c = FLAG;
	for (size_t i = 0; i < n; i++) {
		gen_page(page, ps, pgnos[i], kind);
		c = FLAG | (c ^ ltx_page_checksum(pgnos[i], page, ps));
	}
	free(page);
	return c;
}

static void header_init(struct ltx_header *h, uint32_t ps, uint32_t commit,
			bool snapshot, bool nock)
{
	memset(h, 0, sizeof *h);
	h->flags = nock ? LTX_FLAG_NO_CHECKSUM : 0;
	h->page_size = ps;
	h->commit = commit;
	h->min_txid = snapshot ? 1 : 5;
	h->max_txid = snapshot ? 1 : 7;
	h->timestamp = 1700000000123;
	h->pre_apply_checksum = snapshot || nock ? 0 : FLAG | 0x1234567;
	h->wal_offset = 32;
	h->wal_size = 4096 * 3;
	h->wal_salt1 = 0x11223344;
	h->wal_salt2 = 0x55667788;
	h->node_id = 42;
}

static void header_eq(const struct ltx_header *a, const struct ltx_header *b)
{
	ck_assert_uint_eq(a->flags, b->flags);
	ck_assert_uint_eq(a->page_size, b->page_size);
	ck_assert_uint_eq(a->commit, b->commit);
	ck_assert_uint_eq(a->min_txid, b->min_txid);
	ck_assert_uint_eq(a->max_txid, b->max_txid);
	ck_assert_int_eq(a->timestamp, b->timestamp);
	ck_assert_uint_eq(a->pre_apply_checksum, b->pre_apply_checksum);
	ck_assert_int_eq(a->wal_offset, b->wal_offset);
	ck_assert_int_eq(a->wal_size, b->wal_size);
	ck_assert_uint_eq(a->wal_salt1, b->wal_salt1);
	ck_assert_uint_eq(a->wal_salt2, b->wal_salt2);
	ck_assert_uint_eq(a->node_id, b->node_id);
}

/* Encode pages with the real encoder; asserts success. */
static void encode(struct buf *out, const struct ltx_header *h,
		   const uint32_t *pgnos, size_t n, int kind, uint64_t post,
		   uint64_t *fck)
{
	struct ltx_enc *e = NULL;
	char *err = NULL;
	uint8_t *page = malloc(h->page_size);
	int rc = ltx_enc_new(&e, h, buf_write, out, &err);
	ck_assert_msg(rc == 0, "ltx_enc_new: %d %s", rc, err ? err : "");
	for (size_t i = 0; i < n; i++) {
		gen_page(page, h->page_size, pgnos[i], kind);
		rc = ltx_enc_page(e, pgnos[i], page, &err);
		ck_assert_msg(rc == 0, "ltx_enc_page %u: %s", pgnos[i],
			      err ? err : "");
	}
	rc = ltx_enc_finish(e, post, fck, &err);
	ck_assert_msg(rc == 0, "ltx_enc_finish: %s", err ? err : "");
	ck_assert_uint_eq(ltx_enc_bytes(e), out->len);
	ltx_enc_free(e);
	free(page);
}

struct result {
	struct ltx_header h;
	uint32_t npages;
	uint64_t digest, post, fck;
	char *err;
};

static int decode(const uint8_t *p, size_t len, size_t chunk, struct result *r)
{
	struct src s = {.p = p, .len = len, .chunk = chunk};
	struct ltx_dec *d = NULL;
	uint8_t *page = NULL;
	uint32_t pgno;
	int rc;

	free(r->err);
	memset(r, 0, sizeof *r);
	rc = ltx_dec_new(&d, src_read, &s, &r->err);
	if (rc < 0)
		goto out;
	r->h = *ltx_dec_header(d);
	page = malloc(r->h.page_size);
	while ((rc = ltx_dec_page(d, &pgno, page, &r->err)) > 0) {
		r->digest = digest_add(r->digest, pgno, page, r->h.page_size);
		r->npages++;
	}
	if (rc < 0)
		goto out;
	rc = ltx_dec_finish(d, &r->post, &r->fck, &r->err);
out:
	free(page);
	ltx_dec_free(d);
	return rc;
}

static void result_clear(struct result *r)
{
	free(r->err);
	r->err = NULL;
}

/* Decode must fail with `want` and a message containing `substr`. */
static void reject_at(const uint8_t *p, size_t len, int want,
		      const char *substr, int line)
{
	struct result r = {0};
	int rc = decode(p, len, 0, &r);
	const char *msg = r.err ? r.err : "(no message)";
	ck_assert_msg(rc == want, "line %d: rc %d, want %d (%s)", line, rc,
		      want, msg);
	ck_assert_msg(r.err != NULL && strstr(r.err, substr) != NULL,
		      "line %d: message \"%s\" lacks \"%s\"", line, msg,
		      substr);
	result_clear(&r);
}
#define ck_reject(p, len, want, substr)                                       \
	reject_at((p), (len), (want), (substr), __LINE__)

/* ---------------------------------------------------- independent builder */

enum { F_LEGACY, F_BLOCK };

struct tpage {
	uint32_t pgno;
	int form;
	int32_t len_delta; /* compress page_size + len_delta bytes */
	int flags;	   /* page flags to write; -1: by form */
};

struct bopts {
	bool drop_index_entry;	/* leave the last page out of the index */
	bool extra_index_entry; /* list a page the file does not hold */
	int64_t size_delta;	/* added to the first entry's size */
	int64_t index_len_delta;
	size_t trailing; /* junk bytes after the trailer */
	bool bad_varint; /* an index varint longer than 64 bits */
	int legacy_block_id;
};

static void put_uvarint(struct buf *b, uint64_t v)
{
	uint8_t t[10];
	size_t n = 0;
	while (v >= 0x80) {
		t[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	t[n++] = (uint8_t)v;
	buf_put(b, t, n);
}

/* crc64_iso(crc, n zero bytes) in 64 steps, after a one-time setup per n:
 * the CRC register's update over zero bytes is linear over GF(2), so it is
 * the XOR of the images of the register's set bits. It lets the builder
 * checksum 1 GiB of (nearly) zero pages without reading them. */
static uint64_t crc_zeros(uint64_t crc, size_t n)
{
	static size_t cached_n;
	static uint64_t col[64];
	if (cached_n != n) {
		uint8_t *z = calloc(1, n);
		for (int i = 0; i < 64; i++)
			col[i] = ~crc64_iso(~(1ULL << i), z, n);
		free(z);
		cached_n = n;
	}
	uint64_t r = ~crc, out = 0;
	for (int i = 0; i < 64; i++)
		if (r >> i & 1)
			out ^= col[i];
	return ~out;
}

/* Write an LTX file by hand, with a correct file checksum, whatever the
 * pages. Returns the file checksum. */
static uint64_t build(struct buf *out, const struct ltx_header *h,
		      const struct tpage *pg, size_t n, int kind, uint64_t post,
		      const struct bopts *o)
{
	static const struct bopts none;
	uint8_t b[LTX_HEADER_SIZE];
	struct buf idx = {0};
	uint64_t crc = 0;

	if (!o)
		o = &none;
	ltx_header_encode(h, b);
	buf_put(out, b, LTX_HEADER_SIZE);
	crc = crc64_iso(crc, b, LTX_HEADER_SIZE);
	if (o->bad_varint)
		for (int i = 0; i < 11; i++)
			buf_put(&idx, "\xff", 1);
	for (size_t i = 0; i < n; i++) {
		uint32_t len = (uint32_t)((int64_t)h->page_size + pg[i].len_delta);
		uint8_t *data = malloc(len);
		size_t off = out->len;
		int flags = pg[i].flags >= 0 ? pg[i].flags
					     : pg[i].form == F_BLOCK ? 1 : 0;
		gen_page(data, len, pg[i].pgno, kind);
		util_be32_put(b, pg[i].pgno);
		b[4] = (uint8_t)(flags >> 8);
		b[5] = (uint8_t)flags;
		if (pg[i].form == F_BLOCK) {
			int cap = LZ4_compressBound((int)len);
			char *c = malloc((size_t)cap);
			int cn = LZ4_compress_default((const char *)data, c,
						      (int)len, cap);
			ck_assert_int_gt(cn, 0);
			util_be32_put(b + 6, (uint32_t)cn);
			buf_put(out, b, 10);
			crc = crc64_iso(crc, b, 10);
			buf_put(out, c, (size_t)cn);
			free(c);
		} else {
			LZ4F_preferences_t prefs;
			memset(&prefs, 0, sizeof prefs);
			prefs.frameInfo.blockSizeID =
				o->legacy_block_id ? (LZ4F_blockSizeID_t)o->legacy_block_id
						   : LZ4F_max64KB;
			prefs.frameInfo.contentChecksumFlag =
				LZ4F_contentChecksumEnabled;
			size_t cap = LZ4F_compressFrameBound(len, &prefs);
			char *c = malloc(cap);
			size_t cn = LZ4F_compressFrame(c, cap, data, len, &prefs);
			ck_assert(!LZ4F_isError(cn));
			buf_put(out, b, 6);
			crc = crc64_iso(crc, b, 6);
			buf_put(out, c, cn);
			free(c);
		}
		if (kind == GEN_ZERO && len > 4) {
			crc = crc64_iso(crc, data, 4); /* the pgno stamp */
			crc = crc_zeros(crc, len - 4);
		} else {
			crc = crc64_iso(crc, data, len);
		}
		free(data);
		bool last = i + 1 == n;
		if (!(last && o->drop_index_entry)) {
			put_uvarint(&idx, pg[i].pgno);
			put_uvarint(&idx, off);
			put_uvarint(&idx, (uint64_t)((int64_t)(out->len - off) +
						     (i == 0 ? o->size_delta : 0)));
		}
	}
	memset(b, 0, 6);
	buf_put(out, b, 6);
	crc = crc64_iso(crc, b, 6);
	if (o->extra_index_entry) {
		put_uvarint(&idx, 999999);
		put_uvarint(&idx, 100);
		put_uvarint(&idx, 10);
	}
	put_uvarint(&idx, 0);
	util_be64_put(b, (uint64_t)((int64_t)idx.len + o->index_len_delta));
	buf_put(&idx, b, 8);
	util_be64_put(b, post);
	buf_put(&idx, b, 8);
	crc = crc64_iso(crc, idx.p, idx.len);
	buf_put(out, idx.p, idx.len);
	util_be64_put(b, FLAG | crc);
	buf_put(out, b, 8);
	for (size_t i = 0; i < o->trailing; i++)
		buf_put(out, "x", 1);
	buf_free(&idx);
	return FLAG | crc;
}

static size_t make_tpages(struct tpage *tp, const uint32_t *pgnos, size_t n,
			  int form)
{
	for (size_t i = 0; i < n; i++) {
		tp[i].pgno = pgnos[i];
		tp[i].form = form < 0 ? (int)(i % 2) : form;
		tp[i].len_delta = 0;
		tp[i].flags = -1;
	}
	return n;
}

/* ------------------------------------------------------------ the tests */

START_TEST(test_checksum_vectors)
{
	uint8_t page[1024];
	memset(page, 0x31, 512);
	ck_assert_uint_eq(FLAG | ltx_page_checksum(1, page, 512),
			  0xEB1A999231044DDDULL);
	uint64_t c = FLAG;
	for (uint32_t pgno = 1; pgno <= 3; pgno++) {
		memset(page, 0x80 + (int)pgno, sizeof page);
		c = FLAG | (c ^ ltx_page_checksum(pgno, page, sizeof page));
	}
	ck_assert_uint_eq(c, 0x8A249272AD9F7DEAULL);
	ck_assert(ltx_page_checksum(7, page, 512) & FLAG);
}
END_TEST

START_TEST(test_lock_pgno)
{
	ck_assert_uint_eq(ltx_lock_pgno(4096), 262145);
	ck_assert_uint_eq(ltx_lock_pgno(512), 2097153);
	ck_assert_uint_eq(ltx_lock_pgno(65536), 16385);
}
END_TEST

START_TEST(test_header_roundtrip)
{
	struct ltx_header h, h2;
	uint8_t b[LTX_HEADER_SIZE];
	char *err = NULL;

	header_init(&h, 4096, 10, false, false);
	h.timestamp = -5; /* negative timestamps survive */
	ltx_header_encode(&h, b);
	ck_assert(memcmp(b, "LTX1", 4) == 0);
	ck_assert_uint_eq(util_be32(b + 8), 4096);
	ck_assert_uint_eq(util_be64(b + 72), 42);
	for (int i = 80; i < LTX_HEADER_SIZE; i++)
		ck_assert_uint_eq(b[i], 0);
	ck_assert_int_eq(ltx_header_decode(&h2, b, &err), 0);
	header_eq(&h, &h2);
	ck_assert(!ltx_header_is_snapshot(&h2));

	b[0] = 'X';
	ck_assert_int_eq(ltx_header_decode(&h2, b, &err), -EINVAL);
	ck_assert_str_eq(err, "bad magic");
	free(err);
	err = NULL;
	b[0] = 'L';
	b[99] = 1;
	ck_assert_int_eq(ltx_header_decode(&h2, b, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "reserved"));
	free(err);
}
END_TEST

START_TEST(test_header_validate)
{
	static const struct {
		const char *field;
		const char *msg;
	} cases[] = {
		{"flags1", "invalid header flags"},
		{"flags4", "invalid header flags"},
		{"ps0", "invalid page size"},
		{"ps256", "invalid page size"},
		{"ps1000", "invalid page size"},
		{"ps131072", "invalid page size"},
		{"min0", "min TXID"},
		{"max<min", "out of order"},
		{"walneg", "negative WAL offset"},
		{"sizeneg", "negative WAL size"},
		{"salt1", "WAL salt"},
		{"salt2", "WAL salt"},
		{"size", "WAL size without"},
		{"snap-pre", "must be 0 on a snapshot"},
		{"nock-pre", "must be 0 with NoChecksum"},
		{"pre0", "pre-apply checksum required"},
		{"preflag", "invalid pre-apply checksum"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct ltx_header h;
		const char *f = cases[i].field;
		char *err = NULL;
		header_init(&h, 4096, 3, false, false);
		if (!strcmp(f, "flags1"))
			h.flags = 1;
		else if (!strcmp(f, "flags4"))
			h.flags = 6;
		else if (!strncmp(f, "ps", 2))
			h.page_size = (uint32_t)atoi(f + 2);
		else if (!strcmp(f, "min0"))
			h.min_txid = 0;
		else if (!strcmp(f, "max<min"))
			h.max_txid = 4;
		else if (!strcmp(f, "walneg"))
			h.wal_offset = -1;
		else if (!strcmp(f, "sizeneg"))
			h.wal_size = -1;
		else if (!strcmp(f, "salt1") || !strcmp(f, "salt2")) {
			h.wal_offset = 0;
			h.wal_size = 0;
			if (!strcmp(f, "salt1"))
				h.wal_salt2 = 0;
			else
				h.wal_salt1 = 0;
		} else if (!strcmp(f, "size")) {
			h.wal_offset = 0;
			h.wal_salt1 = h.wal_salt2 = 0;
		} else if (!strcmp(f, "snap-pre"))
			h.min_txid = 1;
		else if (!strcmp(f, "nock-pre"))
			h.flags = LTX_FLAG_NO_CHECKSUM;
		else if (!strcmp(f, "pre0"))
			h.pre_apply_checksum = 0;
		else if (!strcmp(f, "preflag"))
			h.pre_apply_checksum = 0x1234;
		ck_assert_msg(ltx_header_validate(&h, &err) == -EINVAL, "%s", f);
		ck_assert_msg(err && strstr(err, cases[i].msg), "%s: %s", f,
			      err ? err : "(null)");
		free(err);

		/* the same header is refused by the decoder and the encoder */
		uint8_t b[LTX_HEADER_SIZE];
		struct ltx_header h2;
		struct ltx_enc *e = (struct ltx_enc *)(uintptr_t)1;
		struct buf out = {0};
		ltx_header_encode(&h, b);
		ck_assert_int_eq(ltx_header_decode(&h2, b, NULL), -EINVAL);
		ck_assert_int_eq(ltx_enc_new(&e, &h, buf_write, &out, NULL),
				 -EINVAL);
		ck_assert_ptr_null(e);
		ck_assert_uint_eq(out.len, 0);
	}
	/* valid corner cases */
	struct ltx_header h;
	header_init(&h, 512, 0, true, true);
	h.wal_offset = h.wal_size = 0;
	h.wal_salt1 = h.wal_salt2 = 0;
	ck_assert_int_eq(ltx_header_validate(&h, NULL), 0);
	h.page_size = 65536;
	h.wal_offset = 32; /* offset alone is fine */
	ck_assert_int_eq(ltx_header_validate(&h, NULL), 0);
}
END_TEST

static const uint32_t incr_pgnos[] = {2, 3, 7, 9};

START_TEST(test_roundtrip_page_sizes)
{
	static const size_t chunks[] = {0, 7, 4093};
	for (uint32_t ps = 512; ps <= 65536; ps *= 2) {
		for (int variant = 0; variant < 4; variant++) {
			bool snapshot = variant < 2, nock = variant % 2;
			uint32_t snap_pgnos[5] = {1, 2, 3, 4, 5};
			const uint32_t *pgnos = snapshot ? snap_pgnos : incr_pgnos;
			size_t n = snapshot ? 5 : 4;
			int kind = variant == 3 ? GEN_RANDOM : GEN_MIXED;
			struct ltx_header h;
			struct buf out = {0};
			uint64_t fck = 0, post;

			header_init(&h, ps, snapshot ? 5 : 12, snapshot, nock);
			post = nock ? 0
			       : snapshot ? db_checksum(pgnos, n, ps, kind)
					  : FLAG | 0xabcdef;
			encode(&out, &h, pgnos, n, kind, post, &fck);
			ck_assert(fck & FLAG);
			ck_assert_uint_eq(util_be64(out.p + out.len - 8), fck);
			ck_assert_uint_eq(util_be64(out.p + out.len - 16), post);

			/* the independent builder writes the same bytes */
			struct tpage tp[5];
			struct buf b2 = {0};
			make_tpages(tp, pgnos, n, F_BLOCK);
			ck_assert_uint_eq(build(&b2, &h, tp, n, kind, post, NULL),
					  fck);
			ck_assert_uint_eq(b2.len, out.len);
			ck_assert(memcmp(b2.p, out.p, out.len) == 0);
			buf_free(&b2);

			uint64_t want = expected_digest(pgnos, n, ps, kind);
			for (size_t c = 0; c < 3; c++) {
				struct result r = {0};
				int rc = decode(out.p, out.len, chunks[c], &r);
				ck_assert_msg(rc == 0, "ps %u variant %d: %s", ps,
					      variant, r.err);
				header_eq(&r.h, &h);
				ck_assert_uint_eq(r.npages, n);
				ck_assert_uint_eq(r.digest, want);
				ck_assert_uint_eq(r.post, post);
				ck_assert_uint_eq(r.fck, fck);
				result_clear(&r);
			}
			buf_free(&out);
		}
	}
}
END_TEST

START_TEST(test_empty_files)
{
	/* commit 0: a deleted database; post-apply is the empty checksum */
	struct ltx_header h;
	struct buf out = {0};
	struct result r = {0};
	uint64_t fck;

	header_init(&h, 4096, 0, false, false);
	encode(&out, &h, NULL, 0, GEN_MIXED, FLAG, &fck);
	ck_assert_int_eq(decode(out.p, out.len, 0, &r), 0);
	ck_assert_uint_eq(r.npages, 0);
	ck_assert_uint_eq(r.post, FLAG);
	result_clear(&r);
	buf_free(&out);

	/* and with no post-apply flag, the builder's file is refused */
	build(&out, &h, NULL, 0, GEN_MIXED, FLAG | 5, NULL);
	ck_reject(out.p, out.len, -EINVAL, "empty database");
	buf_free(&out);

	/* an incremental file may carry no pages */
	header_init(&h, 4096, 9, false, true);
	encode(&out, &h, NULL, 0, GEN_MIXED, 0, &fck);
	ck_assert_int_eq(decode(out.p, out.len, 1, &r), 0);
	ck_assert_uint_eq(r.npages, 0);
	result_clear(&r);
	buf_free(&out);
}
END_TEST

START_TEST(test_legacy_and_mixed)
{
	static const uint32_t snap[] = {1, 2, 3, 4, 5, 6};
	static const uint32_t ps_list[] = {512, 4096, 65536};
	static const size_t chunks[] = {0, 1, 13};

	for (size_t p = 0; p < 3; p++) {
		uint32_t ps = ps_list[p];
		for (int form = -1; form <= F_LEGACY; form++) {
			/* form -1: alternating legacy and block */
			for (int nock = 0; nock < 2; nock++) {
				struct ltx_header h;
				struct tpage tp[6];
				struct buf out = {0};
				header_init(&h, ps, 6, true, nock);
				uint64_t post = nock ? 0 : db_checksum(snap, 6, ps, GEN_MIXED);
				make_tpages(tp, snap, 6, form);
				uint64_t fck = build(&out, &h, tp, 6, GEN_MIXED,
						     post, NULL);
				uint64_t want = expected_digest(snap, 6, ps, GEN_MIXED);
				for (size_t c = 0; c < 3; c++) {
					if (chunks[c] == 1 && ps == 65536)
						continue;
					struct result r = {0};
					int rc = decode(out.p, out.len, chunks[c], &r);
					ck_assert_msg(rc == 0, "ps %u form %d: %s", ps,
						      form, r.err);
					ck_assert_uint_eq(r.npages, 6);
					ck_assert_uint_eq(r.digest, want);
					ck_assert_uint_eq(r.fck, fck);
					ck_assert_uint_eq(r.post, post);
					result_clear(&r);
				}
				buf_free(&out);
			}
		}
	}

	/* a legacy frame with 4 MiB blocks (pierrec/lz4's default) */
	struct ltx_header h;
	struct tpage tp[2];
	struct buf out = {0};
	struct bopts o = {.legacy_block_id = LZ4F_max4MB};
	struct result r = {0};
	header_init(&h, 4096, 9, false, true);
	make_tpages(tp, incr_pgnos, 2, F_LEGACY);
	build(&out, &h, tp, 2, GEN_RANDOM, 0, &o);
	ck_assert_int_eq(decode(out.p, out.len, 0, &r), 0);
	ck_assert_uint_eq(r.digest, expected_digest(incr_pgnos, 2, 4096, GEN_RANDOM));
	result_clear(&r);
	buf_free(&out);
}
END_TEST

/* Build a 4096-byte-page file from tpages and expect a rejection. */
static void reject_built(const struct ltx_header *h, const struct tpage *tp,
			 size_t n, uint64_t post, const struct bopts *o,
			 int want, const char *substr)
{
	struct buf out = {0};
	build(&out, h, tp, n, GEN_MIXED, post, o);
	ck_reject(out.p, out.len, want, substr);
	buf_free(&out);
}

START_TEST(test_reject_page_rules)
{
	struct ltx_header h;
	struct tpage tp[8];

	header_init(&h, 4096, 10, false, true);
	make_tpages(tp, (const uint32_t[]){3, 2}, 2, F_BLOCK);
	reject_built(&h, tp, 2, 0, NULL, -EINVAL, "page 2 out of order after 3");
	make_tpages(tp, (const uint32_t[]){9, 7}, 2, F_LEGACY);
	reject_built(&h, tp, 2, 0, NULL, -EINVAL, "page 7 out of order after 9");
	make_tpages(tp, (const uint32_t[]){4, 4}, 2, F_BLOCK);
	reject_built(&h, tp, 2, 0, NULL, -EINVAL, "out of order");
	make_tpages(tp, (const uint32_t[]){4, 11}, 2, F_BLOCK);
	reject_built(&h, tp, 2, 0, NULL, -EINVAL, "page 11 beyond commit 10");
	make_tpages(tp, (const uint32_t[]){0}, 1, F_BLOCK);
	reject_built(&h, tp, 1, 0, NULL, -EINVAL, "page number 0");
	make_tpages(tp, (const uint32_t[]){5}, 1, F_BLOCK);
	tp[0].flags = 2;
	reject_built(&h, tp, 1, 0, NULL, -EINVAL, "invalid flags 0x0002");
	tp[0].flags = 0x8001;
	reject_built(&h, tp, 1, 0, NULL, -EINVAL, "invalid flags");

	/* snapshots: every page 1..commit */
	header_init(&h, 4096, 4, true, true);
	make_tpages(tp, (const uint32_t[]){1, 2, 4}, 3, F_BLOCK);
	reject_built(&h, tp, 3, 0, NULL, -EINVAL, "page 4 out of order after 2");
	make_tpages(tp, (const uint32_t[]){2, 3, 4}, 3, F_BLOCK);
	reject_built(&h, tp, 3, 0, NULL, -EINVAL, "out of order");
	make_tpages(tp, (const uint32_t[]){1, 2, 3}, 3, F_LEGACY);
	reject_built(&h, tp, 3, 0, NULL, -EINVAL, "missing pages 4..4");
	reject_built(&h, tp, 0, 0, NULL, -EINVAL, "missing pages 1..4");

	/* the lock page, cheaply with 64 KiB pages: 16385 */
	header_init(&h, 65536, 16390, false, true);
	make_tpages(tp, (const uint32_t[]){16384, 16385}, 2, F_BLOCK);
	{
		struct buf out = {0};
		build(&out, &h, tp, 2, GEN_ZERO, 0, NULL);
		ck_reject(out.p, out.len, -EINVAL, "page 16385 is the lock page");
		buf_free(&out);
		make_tpages(tp, (const uint32_t[]){16384, 16386, 16390}, 3,
			    F_BLOCK);
		build(&out, &h, tp, 3, GEN_ZERO, 0, NULL);
		struct result r = {0};
		ck_assert_int_eq(decode(out.p, out.len, 0, &r), 0);
		ck_assert_uint_eq(r.npages, 3);
		result_clear(&r);
		buf_free(&out);
	}
}
END_TEST

START_TEST(test_reject_page_data)
{
	struct ltx_header h;
	struct tpage tp[2];

	header_init(&h, 4096, 10, false, true);
	make_tpages(tp, (const uint32_t[]){5}, 1, F_BLOCK);
	tp[0].len_delta = -96;
	reject_built(&h, tp, 1, 0, NULL, -EINVAL,
		     "decoded page is 4000 bytes, want 4096");
	tp[0].len_delta = 100;
	reject_built(&h, tp, 1, 0, NULL, -EINVAL, "more than 4096 bytes");
	tp[0].form = F_LEGACY;
	reject_built(&h, tp, 1, 0, NULL, -EINVAL, "decoded page is more than 4096");
	tp[0].len_delta = -96;
	reject_built(&h, tp, 1, 0, NULL, -EINVAL,
		     "decoded page is 4000 bytes, want 4096");
	tp[0].len_delta = -4096;
	reject_built(&h, tp, 1, 0, NULL, -EINVAL, "decoded page is 0 bytes");

	/* compressed length out of range, patched into a good file */
	struct buf out = {0};
	make_tpages(tp, (const uint32_t[]){5}, 1, F_BLOCK);
	build(&out, &h, tp, 1, GEN_MIXED, 0, NULL);
	util_be32_put(out.p + LTX_HEADER_SIZE + 6, 0);
	ck_reject(out.p, out.len, -EINVAL, "compressed length 0 out of range");
	util_be32_put(out.p + LTX_HEADER_SIZE + 6, 0xffffffff);
	ck_reject(out.p, out.len, -EINVAL, "out of range");
	util_be32_put(out.p + LTX_HEADER_SIZE + 6, 3);
	ck_reject(out.p, out.len, -EINVAL, "corrupt LZ4 block");
	buf_free(&out);

	/* garbage where a legacy frame should be */
	make_tpages(tp, (const uint32_t[]){5}, 1, F_LEGACY);
	build(&out, &h, tp, 1, GEN_MIXED, 0, NULL);
	out.p[LTX_HEADER_SIZE + 6] ^= 0xff; /* LZ4 frame magic */
	ck_reject(out.p, out.len, -EINVAL, "corrupt LZ4 frame");
	buf_free(&out);
}
END_TEST

START_TEST(test_reject_index_trailer)
{
	struct ltx_header h;
	struct tpage tp[3];
	struct bopts o;

	header_init(&h, 4096, 10, false, true);
	make_tpages(tp, (const uint32_t[]){2, 5, 6}, 3, -1);
	o = (struct bopts){.drop_index_entry = true};
	reject_built(&h, tp, 3, 0, &o, -EINVAL, "page index is missing page 6");
	o = (struct bopts){.extra_index_entry = true};
	reject_built(&h, tp, 3, 0, &o, -EINVAL, "lists page 999999");
	o = (struct bopts){.size_delta = 1};
	reject_built(&h, tp, 3, 0, &o, -EINVAL, "does not match the file");
	o = (struct bopts){.index_len_delta = -1};
	reject_built(&h, tp, 3, 0, &o, -EINVAL, "page index length");
	o = (struct bopts){.bad_varint = true};
	reject_built(&h, tp, 3, 0, &o, -EINVAL, "varint overflow in page index");
	o = (struct bopts){.trailing = 1};
	reject_built(&h, tp, 3, 0, &o, -EINVAL, "trailing bytes");
	reject_built(&h, tp, 3, FLAG | 1, NULL, -EINVAL,
		     "must be 0 with NoChecksum");

	header_init(&h, 4096, 10, false, false);
	reject_built(&h, tp, 3, 0, NULL, -EINVAL, "invalid post-apply");
	reject_built(&h, tp, 3, 12345, NULL, -EINVAL, "invalid post-apply");

	/* a snapshot whose post-apply is not its pages' checksum */
	header_init(&h, 1024, 3, true, false);
	make_tpages(tp, (const uint32_t[]){1, 2, 3}, 3, -1);
	reject_built(&h, tp, 3, FLAG | 77, NULL, -EBADMSG,
		     "post-apply checksum mismatch");
}
END_TEST

/* One good file, encoded by the encoder, then damaged in many ways. */
START_TEST(test_reject_damage)
{
	static const uint32_t pgnos[] = {1, 2, 3};
	struct ltx_header h;
	struct buf out = {0};
	uint64_t fck;

	header_init(&h, 1024, 3, true, false);
	encode(&out, &h, pgnos, 3, GEN_RANDOM,
	       db_checksum(pgnos, 3, 1024, GEN_RANDOM), &fck);
	uint8_t *p = malloc(out.len);
	size_t len = out.len;
	uint64_t idxlen = util_be64(out.p + len - 24);
	size_t idx = len - 24 - (size_t)idxlen;

#define DAMAGE(off, want, substr)                                             \
	do {                                                                  \
		memcpy(p, out.p, len);                                        \
		p[(off)] ^= 0x5a;                                             \
		ck_reject(p, len, want, substr);                              \
	} while (0)
	DAMAGE(0, -EINVAL, "bad magic");
	DAMAGE(4, -EINVAL, "invalid header flags");
	DAMAGE(10, -EINVAL, "invalid page size");
	DAMAGE(35, -EBADMSG, "file checksum mismatch"); /* timestamp */
	DAMAGE(90, -EINVAL, "reserved");
	/* random pages are stored as literals: a flipped payload byte
	 * decodes to other data */
	uint32_t clen = util_be32(out.p + LTX_HEADER_SIZE + 6);
	DAMAGE(LTX_HEADER_SIZE + 10 + clen / 2, -EBADMSG,
	       "file checksum mismatch");
	DAMAGE(LTX_HEADER_SIZE + 3, -EINVAL, "page 91 beyond commit 3");
	DAMAGE(idx, -EINVAL, "page index");
	DAMAGE(idx + 1, -EINVAL, "does not match the file");
	DAMAGE(len - 20, -EINVAL, "page index length");
	DAMAGE(len - 12, -EBADMSG, "file checksum mismatch"); /* post-apply */
	DAMAGE(len - 1, -EBADMSG, "file checksum mismatch");
	DAMAGE(len - 8, -EBADMSG, "file checksum mismatch");
	DAMAGE(idx - 3, -EINVAL, ""); /* end marker */
#undef DAMAGE

	/* every single-byte flip is rejected, except in LZ4 bits that do not
	 * change the output (the low nibble of a last-sequence token) */
	uint64_t want = expected_digest(pgnos, 3, 1024, GEN_RANDOM);
	for (size_t off = 0; off < len; off++) {
		struct result r = {0};
		memcpy(p, out.p, len);
		p[off] ^= 0x01;
		int rc = decode(p, len, 0, &r);
		ck_assert_msg(rc == -EINVAL || rc == -EBADMSG ||
				      (rc == 0 && r.digest == want),
			      "flip at %zu: rc %d", off, rc);
		result_clear(&r);
	}

	/* truncated anywhere */
	for (size_t cut = 0; cut < len; cut++) {
		struct result r = {0};
		int rc = decode(out.p, cut, cut % 3 ? 5 : 0, &r);
		ck_assert_msg(rc == -EINVAL, "cut at %zu: rc %d", cut, rc);
		ck_assert_msg(strstr(r.err, "truncated") != NULL,
			      "cut at %zu: %s", cut, r.err);
		result_clear(&r);
	}

	/* a read error comes back as it is */
	{
		struct src s = {.p = out.p, .len = len, .fail_at = len / 2,
				.chunk = 100};
		struct ltx_dec *d = NULL;
		char *err = NULL;
		uint8_t page[1024];
		uint32_t pgno;
		int rc = ltx_dec_new(&d, src_read, &s, &err);
		ck_assert_int_eq(rc, 0);
		while ((rc = ltx_dec_page(d, &pgno, page, &err)) > 0)
			;
		if (rc == 0)
			rc = ltx_dec_finish(d, NULL, NULL, &err);
		ck_assert_int_eq(rc, -EIO);
		/* and sticks */
		ck_assert_int_eq(ltx_dec_finish(d, NULL, NULL, NULL), -EIO);
		ck_assert_int_eq(ltx_dec_page(d, &pgno, page, NULL), -EIO);
		free(err);
		ltx_dec_free(d);
	}
	free(p);
	buf_free(&out);
}
END_TEST

/* A larger file truncated at every 1/50th, mixed forms. */
START_TEST(test_truncate_fiftieths)
{
	uint32_t pgnos[40];
	struct tpage tp[40];
	struct ltx_header h;
	struct buf out = {0};

	for (uint32_t i = 0; i < 40; i++)
		pgnos[i] = i + 1;
	header_init(&h, 4096, 40, true, true);
	make_tpages(tp, pgnos, 40, -1);
	build(&out, &h, tp, 40, GEN_MIXED, 0, NULL);
	for (size_t i = 0; i < 50; i++) {
		size_t cut = out.len * i / 50;
		struct result r = {0};
		int rc = decode(out.p, cut, 0, &r);
		ck_assert_msg(rc == -EINVAL, "cut at %zu: rc %d", cut, rc);
		result_clear(&r);
	}
	struct result r = {0};
	ck_assert_int_eq(decode(out.p, out.len, 0, &r), 0);
	ck_assert_uint_eq(r.npages, 40);
	result_clear(&r);
	buf_free(&out);
}
END_TEST

START_TEST(test_encoder_rules)
{
	struct ltx_header h;
	struct buf out = {0};
	struct ltx_enc *e = NULL;
	char *err = NULL;
	uint8_t page[4096];

	header_init(&h, 4096, 10, false, false);
	ck_assert_int_eq(ltx_enc_new(&e, &h, buf_write, &out, &err), 0);
	/* output is buffered: what counts is what the encoder produced */
	ck_assert_uint_eq(ltx_enc_bytes(e), LTX_HEADER_SIZE);
	gen_page(page, 4096, 3, GEN_MIXED);
	ck_assert_int_eq(ltx_enc_page(e, 3, page, &err), 0);
	uint64_t before = ltx_enc_bytes(e);
	ck_assert_int_eq(ltx_enc_page(e, 3, page, &err), -EINVAL);
	ck_assert_str_eq(err, "page 3 out of order after 3");
	free(err);
	err = NULL;
	ck_assert_int_eq(ltx_enc_page(e, 2, page, NULL), -EINVAL);
	ck_assert_int_eq(ltx_enc_page(e, 0, page, NULL), -EINVAL);
	ck_assert_int_eq(ltx_enc_page(e, 11, page, &err), -EINVAL);
	ck_assert_str_eq(err, "page 11 beyond commit 10");
	free(err);
	err = NULL;
	ck_assert_uint_eq(ltx_enc_bytes(e), before); /* refused: nothing */
	gen_page(page, 4096, 10, GEN_MIXED);
	ck_assert_int_eq(ltx_enc_page(e, 10, page, NULL), 0);
	ck_assert_int_eq(ltx_enc_finish(e, 0, NULL, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "invalid post-apply"));
	free(err);
	err = NULL;
	ck_assert_int_eq(ltx_enc_finish(e, 77, NULL, NULL), -EINVAL);
	ck_assert_int_eq(ltx_enc_finish(e, FLAG | 77, NULL, NULL), 0);
	ck_assert_int_eq(ltx_enc_page(e, 10, page, NULL), -EINVAL);
	ck_assert_int_eq(ltx_enc_finish(e, FLAG | 77, NULL, NULL), -EINVAL);
	ltx_enc_free(e);
	struct result r = {0};
	ck_assert_int_eq(decode(out.p, out.len, 0, &r), 0);
	ck_assert_uint_eq(r.npages, 2);
	result_clear(&r);
	buf_free(&out);

	/* NoChecksum: post-apply must be 0; commit 0 then impossible */
	header_init(&h, 4096, 10, false, true);
	ck_assert_int_eq(ltx_enc_new(&e, &h, buf_write, &out, NULL), 0);
	ck_assert_int_eq(ltx_enc_finish(e, FLAG, NULL, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "must be 0 with NoChecksum"));
	free(err);
	err = NULL;
	ltx_enc_free(e);
	buf_free(&out);
	header_init(&h, 4096, 0, false, true);
	ck_assert_int_eq(ltx_enc_new(&e, &h, buf_write, &out, NULL), 0);
	ck_assert_int_eq(ltx_enc_finish(e, 0, NULL, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "empty database"));
	free(err);
	err = NULL;
	ltx_enc_free(e);
	buf_free(&out);
	/* ... but the decoder accepts one (post-apply 0), as Go's does */
	build(&out, &h, NULL, 0, GEN_MIXED, 0, NULL);
	ck_assert_int_eq(decode(out.p, out.len, 0, &r), 0);
	result_clear(&r);
	buf_free(&out);

	/* the lock page */
	header_init(&h, 65536, 16390, false, true);
	uint8_t *big = calloc(1, 65536);
	ck_assert_int_eq(ltx_enc_new(&e, &h, buf_write, &out, NULL), 0);
	ck_assert_int_eq(ltx_enc_page(e, 16385, big, &err), -EINVAL);
	ck_assert_str_eq(err, "page 16385 is the lock page");
	free(err);
	err = NULL;
	ltx_enc_free(e);
	buf_free(&out);
	free(big);

	/* snapshots */
	header_init(&h, 4096, 3, true, false);
	ck_assert_int_eq(ltx_enc_new(&e, &h, buf_write, &out, NULL), 0);
	ck_assert_int_eq(ltx_enc_page(e, 2, page, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "a snapshot needs 1"));
	free(err);
	err = NULL;
	uint32_t pg12[] = {1, 2}, pg123[] = {1, 2, 3};
	for (uint32_t i = 0; i < 2; i++) {
		gen_page(page, 4096, pg12[i], GEN_MIXED);
		ck_assert_int_eq(ltx_enc_page(e, pg12[i], page, NULL), 0);
	}
	ck_assert_int_eq(ltx_enc_finish(e, FLAG, NULL, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "missing pages 3..3"));
	free(err);
	err = NULL;
	gen_page(page, 4096, 3, GEN_MIXED);
	ck_assert_int_eq(ltx_enc_page(e, 3, page, NULL), 0);
	ck_assert_int_eq(ltx_enc_finish(e, FLAG | 1, NULL, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "does not match the snapshot"));
	free(err);
	err = NULL;
	ck_assert_int_eq(ltx_enc_finish(e, db_checksum(pg123, 3, 4096, GEN_MIXED),
					NULL, NULL),
			 0);
	ltx_enc_free(e);
	buf_free(&out);

	/* write errors come back (output is buffered: once the buffer is
	 * handed on, at the latest from finish) and stick */
	struct limited l = {.limit = 200};
	header_init(&h, 4096, 40, false, true);
	ck_assert_int_eq(ltx_enc_new(&e, &h, limited_write, &l, NULL), 0);
	int wrc = 0;
	uint32_t pg = 1;
	for (; pg <= 40 && wrc == 0; pg++) {
		gen_page(page, 4096, pg, GEN_RANDOM);
		wrc = ltx_enc_page(e, pg, page, &err);
	}
	ck_assert_int_eq(wrc, -ENOSPC); /* 40 random pages > the buffer */
	ck_assert_uint_lt(pg, 40);
	free(err);
	err = NULL;
	ck_assert_int_eq(ltx_enc_page(e, pg, page, NULL), -EIO);
	ck_assert_int_eq(ltx_enc_finish(e, 0, NULL, NULL), -EIO);
	ltx_enc_free(e);
	l = (struct limited){.limit = 50};
	header_init(&h, 4096, 1, false, true);
	ck_assert_int_eq(ltx_enc_new(&e, &h, limited_write, &l, NULL), 0);
	gen_page(page, 4096, 1, GEN_RANDOM);
	ck_assert_int_eq(ltx_enc_page(e, 1, page, NULL), 0); /* buffered */
	ck_assert_int_eq(ltx_enc_finish(e, 0, NULL, &err), -ENOSPC);
	ck_assert_int_eq(ltx_enc_finish(e, 0, NULL, NULL), -EIO);
	ltx_enc_free(e);
	free(err);
	ltx_enc_free(NULL);
	ltx_dec_free(NULL);
}
END_TEST

/* A snapshot across the lock page: page size 64 KiB puts it at 16385, so
 * 16389 pages, 1 GiB of page data, are needed. The builder writes them
 * cheaply (zero pages stamped with their number, checksummed with
 * crc_zeros); the decoder's pass over 1 GiB remains, about a second. The
 * encoder shares the page-number rules (ltx_check_pgno) and is checked
 * against the lock page on an incremental file in test_encoder_rules. */
START_TEST(test_snapshot_lock_page)
{
	const uint32_t ps = 65536, commit = 16390, lock = 16385, n = commit - 1;
	struct tpage *tp = malloc(n * sizeof *tp);
	struct ltx_header h;
	struct buf out = {0};
	uint32_t i = 0;

	for (uint32_t pgno = 1; pgno <= commit; pgno++) {
		if (pgno == lock)
			continue;
		tp[i].pgno = pgno;
		tp[i].form = pgno % 4096 == 0 || pgno == lock + 1 ? F_LEGACY
								  : F_BLOCK;
		tp[i].len_delta = 0;
		tp[i].flags = -1;
		i++;
	}
	header_init(&h, ps, commit, true, true);
	uint64_t fck = build(&out, &h, tp, n, GEN_ZERO, 0, NULL);

	struct src s = {.p = out.p, .len = out.len};
	struct ltx_dec *d = NULL;
	uint8_t *page = malloc(ps);
	uint32_t pgno, want = 1, bad = 0, count = 0;
	uint64_t fck2 = 0;
	char *err = NULL;
	int rc;
	ck_assert_int_eq(ltx_dec_new(&d, src_read, &s, NULL), 0);
	while ((rc = ltx_dec_page(d, &pgno, page, &err)) > 0) {
		if (want == lock)
			want++;
		if (pgno != want || util_be32(page) != pgno ||
		    page[ps / 2] != 0 || page[ps - 1] != 0)
			bad++;
		want++;
		count++;
	}
	ck_assert_msg(rc == 0, "%s", err ? err : "");
	ck_assert_int_eq(ltx_dec_page(d, &pgno, page, NULL), 0); /* again */
	ck_assert_uint_eq(bad, 0);
	ck_assert_uint_eq(count, n);
	ck_assert_int_eq(ltx_dec_finish(d, NULL, &fck2, &err), 0);
	ck_assert_uint_eq(fck2, fck);
	ltx_dec_free(d);
	free(page);
	free(tp);
	buf_free(&out);
}
END_TEST

/* Enough pages that both index spools spill to their temp files. */
START_TEST(test_index_spill)
{
	const uint32_t n = 150000;
	struct ltx_header h;
	struct buf out = {0};
	struct ltx_enc *e = NULL;
	uint8_t page[512];
	uint64_t fck, want = 0;

	header_init(&h, 512, n, false, true);
	ck_assert_int_eq(ltx_enc_new(&e, &h, buf_write, &out, NULL), 0);
	memset(page, 0, sizeof page);
	int failed = 0;
	for (uint32_t pgno = 1; pgno <= n; pgno++) {
		util_be32_put(page, pgno);
		failed |= ltx_enc_page(e, pgno, page, NULL);
		want = digest_add(want, pgno, page, 512);
	}
	ck_assert_int_eq(failed, 0);
	ck_assert_int_eq(ltx_enc_finish(e, 0, &fck, NULL), 0);
	ltx_enc_free(e);
	ck_assert_uint_gt(util_be64(out.p + out.len - 24), 1u << 20);

	struct result r = {0};
	ck_assert_int_eq(decode(out.p, out.len, 0, &r), 0);
	ck_assert_uint_eq(r.npages, n);
	ck_assert_uint_eq(r.digest, want);
	ck_assert_uint_eq(r.fck, fck);
	result_clear(&r);

	/* an index entry near the end that disagrees is still caught */
	out.p[out.len - 26] ^= 1;
	ck_reject(out.p, out.len, -EINVAL, "page index");
	buf_free(&out);
}
END_TEST

/* ------------------------------------------------- Litestream's own files */

static uint8_t *slurp(const char *name, size_t *len)
{
	char path[512];
	snprintf(path, sizeof path, "%s/%s", FIXTURES, name);
	FILE *f = fopen(path, "rb");
	ck_assert_msg(f != NULL, "cannot open %s", path);
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	uint8_t *p = malloc((size_t)n);
	ck_assert_uint_eq(fread(p, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return p;
}

START_TEST(test_litestream_fixtures)
{
	static const char *names[] = {"litestream-l0-snapshot.ltx",
				      "litestream-l0-incr.ltx"};
	for (int i = 0; i < 2; i++) {
		size_t len;
		uint8_t *p = slurp(names[i], &len);
		struct result r = {0}, r2 = {0};
		int rc = decode(p, len, 0, &r);
		ck_assert_msg(rc == 0, "%s: %s", names[i], r.err);
		ck_assert_uint_eq(r.h.flags, LTX_FLAG_NO_CHECKSUM);
		ck_assert_uint_eq(r.h.page_size, 4096);
		ck_assert_uint_eq(r.post, 0);
		ck_assert_uint_eq(r.fck, util_be64(p + len - 8));
		ck_assert(r.npages >= 1);
		if (i == 0) {
			ck_assert(ltx_header_is_snapshot(&r.h));
			ck_assert_uint_eq(r.h.max_txid, 1);
			ck_assert_uint_eq(r.npages, r.h.commit);
		} else {
			ck_assert(!ltx_header_is_snapshot(&r.h));
			ck_assert_uint_eq(r.h.min_txid, 3);
			ck_assert_uint_eq(r.h.max_txid, 3);
		}
		ck_assert_int_eq(decode(p, len, 3, &r2), 0);
		ck_assert_uint_eq(r2.digest, r.digest);
		result_clear(&r2);

		/* any flipped byte is rejected, or (inside LZ4 data) decodes
		 * to the very same pages */
		uint8_t *q = malloc(len);
		for (size_t off = 0; off < len; off++) {
			memcpy(q, p, len);
			q[off] ^= 0x10;
			rc = decode(q, len, 0, &r2);
			ck_assert_msg(rc == -EINVAL || rc == -EBADMSG ||
					      (rc == 0 && r2.digest == r.digest),
				      "%s: flip at %zu: rc %d", names[i], off, rc);
			result_clear(&r2);
		}
		free(q);
		result_clear(&r);
		free(p);
	}

	/* page 1 of the snapshot is a SQLite header; re-encoded by walrust
	 * the pages come back the same */
	size_t len;
	uint8_t *p = slurp(names[0], &len);
	struct src s = {.p = p, .len = len};
	struct ltx_dec *d = NULL;
	struct ltx_enc *e = NULL;
	struct buf out = {0};
	uint8_t page[4096];
	uint32_t pgno;
	int rc;
	ck_assert_int_eq(ltx_dec_new(&d, src_read, &s, NULL), 0);
	ck_assert_int_eq(ltx_enc_new(&e, ltx_dec_header(d), buf_write, &out,
				     NULL),
			 0);
	while ((rc = ltx_dec_page(d, &pgno, page, NULL)) > 0) {
		if (pgno == 1)
			ck_assert(memcmp(page, "SQLite format 3", 16) == 0);
		ck_assert_int_eq(ltx_enc_page(e, pgno, page, NULL), 0);
	}
	ck_assert_int_eq(rc, 0);
	uint64_t fck_ls, fck_ours;
	ck_assert_int_eq(ltx_dec_finish(d, NULL, &fck_ls, NULL), 0);
	ck_assert_int_eq(ltx_enc_finish(e, 0, &fck_ours, NULL), 0);
	/* same compressed sizes => same index => same file checksum */
	if (out.len == len)
		ck_assert_uint_eq(fck_ours, fck_ls);
	struct result r = {0};
	ck_assert_int_eq(decode(out.p, out.len, 0, &r), 0);
	result_clear(&r);
	ltx_dec_free(d);
	ltx_enc_free(e);
	buf_free(&out);
	free(p);
}
END_TEST

Suite *ltx_suite(void)
{
	Suite *s = suite_create("ltx");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_checksum_vectors);
	tcase_add_test(tc, test_lock_pgno);
	tcase_add_test(tc, test_header_roundtrip);
	tcase_add_test(tc, test_header_validate);
	tcase_add_test(tc, test_roundtrip_page_sizes);
	tcase_add_test(tc, test_empty_files);
	tcase_add_test(tc, test_legacy_and_mixed);
	tcase_add_test(tc, test_reject_page_rules);
	tcase_add_test(tc, test_reject_page_data);
	tcase_add_test(tc, test_reject_index_trailer);
	tcase_add_test(tc, test_reject_damage);
	tcase_add_test(tc, test_truncate_fiftieths);
	tcase_add_test(tc, test_encoder_rules);
	tcase_add_test(tc, test_litestream_fixtures);
	tcase_add_test(tc, test_index_spill);
	tcase_add_test(tc, test_snapshot_lock_page);
	suite_add_tcase(s, tc);
	return s;
}
