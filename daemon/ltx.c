/* ltx.c: the LTX codec (Litestream's transaction file format).
 *
 * THE FORMAT
 *
 * An LTX file carries a set of database pages and enough metadata to apply
 * them to a database in a known state. Litestream (0.5.x) and the Go `ltx`
 * library (github.com/superfly/ltx) define it; walrust must write files they
 * read and read files they wrote. All integers are big-endian.
 *
 *	header (100) | page frames ... | 6 zero bytes | page index | trailer (16)
 *
 * The header starts with the magic "LTX1" and then holds: flags (u32; only
 * NoChecksum, 0x2, exists), page size (u32, a power of two in 512..65536),
 * commit (u32, the database size in pages after applying the file), min and
 * max TXID (u64), timestamp (i64 ms since the epoch), pre-apply checksum
 * (u64), WAL offset, WAL size (i64), WAL salts (2 x u32), node id (u64) and 20
 * reserved zero bytes. A file whose min TXID is 1 is a *snapshot*.
 *
 * Each page frame starts with a 6-byte page header: the page number (u32) and
 * page flags (u16). Two frame forms exist:
 *
 *  - block form (flags 0x0001, Litestream >= 0.5.16, the only form this
 *    encoder writes): a u32 length N, then N bytes of one raw LZ4 block that
 *    decodes to exactly page-size bytes;
 *  - legacy form (flags 0x0000, Litestream 0.5.0 to 0.5.15): one standard
 *    LZ4 frame with no length prefix. Its end is found by parsing it: the
 *    decoder feeds LZ4F_decompress() from its read-ahead buffer, and that
 *    function stops exactly at the end of the frame.
 *
 * One file may mix both forms. The frames end with a page header of six zero
 * bytes (page number 0 with flags 0).
 *
 * The page index follows: per page, in page order, three unsigned LEB128
 * varints (page number, absolute file offset of the frame's page header,
 * frame size including page header, length prefix and payload), then a single
 * 0x00 byte, then a u64 with the length of that varint region including the
 * 0x00 terminator. A reader holding the file size can thus locate the index
 * (it starts at size - 16 - 8 - length) and fetch single pages by range.
 *
 * The trailer is the post-apply checksum (u64) and the file checksum (u64).
 *
 * CHECKSUMS
 *
 * All checksums are CRC-64/GO-ISO (crc64.c) with bit 63 set, so a real one is
 * never zero. The page checksum is CRC(pgno as 4 big-endian bytes || page);
 * the database checksum is the XOR of the page checksums of every page but
 * the lock page, with bit 63 set. The pre-apply and post-apply checksums are
 * the database checksums before and after applying the file; both are zero
 * in NoChecksum files (Litestream writes every file that way).
 *
 * The file checksum is one running CRC over: the 100 header bytes; for every
 * page its 6-byte page header, its 4-byte length prefix when present (block
 * form only: a legacy frame has none, so only the 6 header bytes are hashed)
 * and then the *uncompressed* page; the 6 zero bytes; the whole index
 * including its u64 length; the 8-byte post-apply field. Compressed payload
 * bytes are never hashed, so two encoders with different LZ4 output agree.
 * (Checked against the Go sources: Decoder.DecodePage hashes the page header,
 * the size prefix of block frames and the decoded data, and Decoder.Close
 * hashes everything after the end marker but the last 8 bytes.)
 *
 * INVARIANTS
 *
 * The header rules are those of Go's Header.Validate, plus zero reserved
 * bytes: valid flags and page size; 1 <= min TXID <= max TXID; WAL offset and
 * size not negative; WAL salts or a WAL size need a non-zero WAL offset; a
 * snapshot has pre-apply 0; a NoChecksum file has pre-apply 0; any other file
 * has a pre-apply checksum with bit 63 set.
 *
 * Pages: every page number is >= 1 and <= commit and never the lock page
 * (0x40000000 / page_size + 1; SQLite never stores data there). Pages come
 * in strictly ascending order; a snapshot carries exactly 1..commit, skipping
 * the lock page. Every page decodes to exactly page-size bytes.
 *
 * Trailer: with NoChecksum the post-apply checksum is 0, otherwise it has
 * bit 63 set, and a file with commit 0 (a deleted database) has post-apply
 * 0x8000000000000000 -- so, like Go's, this encoder cannot write a NoChecksum
 * file with commit 0, while the decoder (like Go's) lets one pass with
 * post-apply 0. The file checksum has bit 63 set and matches.
 *
 * The encoder refuses to produce a file that breaks any rule (including, for
 * a snapshot with checksums, a post-apply checksum that differs from the XOR
 * of its pages, as Go's decoder checks). The decoder checks every rule, and
 * more than Go does: the index must list exactly the pages it saw, with the
 * same offsets and sizes, and its stored length must match; nothing may
 * follow the trailer. Errors are -EINVAL for a malformed or truncated file
 * and -EBADMSG for a checksum mismatch, with a message saying what and where.
 *
 * MEMORY
 *
 * Both directions stream. The encoder holds one compression buffer and a
 * 64 KiB output buffer (two writes per page cost more than the page); the
 * decoder one read-ahead buffer big enough for the largest block frame, and
 * an LZ4 frame context for legacy pages. The only state that grows with the
 * page count is the index: the encoder must write it at the end, and the
 * decoder must compare it with the pages it saw. Both keep it as the varint
 * bytes the index should contain, in memory up to LTX_SPOOL_MEM and in an
 * anonymous tmpfile() beyond, read back sequentially.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lz4.h>
#include <lz4frame.h>

#include "walrust.h"

#define LTX_SPOOL_MEM (256u << 10)
#define LTX_SPOOL_MIN 4096u /* a power of two, as LTX_SPOOL_MEM */
#define LTX_OBUF_SIZE (64u << 10) /* encoder output buffer */
#define LTX_VARINT_MAX 10
#define LTX_BLOCK_FRAME_HEADER_SIZE (LTX_PAGE_HEADER_SIZE + 4)
/* Read-ahead: the largest block frame (header, length, compressed page). */
#define LTX_RBUF_SIZE                                                         \
	(LTX_BLOCK_FRAME_HEADER_SIZE + LZ4_COMPRESSBOUND(LTX_MAX_PAGE_SIZE))
#define LTX_RESERVED_OFFSET 80

/* ------------------------------------------------------------ the spool */

/* Append-only bytes, kept in memory up to LTX_SPOOL_MEM and spilled to an
 * anonymous temp file beyond, then read back once from the start. */
struct ltx_spool {
	uint8_t *buf;
	size_t cap;
	size_t len;	/* bytes in buf */
	size_t pos;	/* read position in buf */
	FILE *f;	/* spill file; NULL while everything fits in buf */
	uint64_t total; /* bytes appended */
	uint64_t left;  /* bytes not yet read back */
};

static int ltx_spool_append(struct ltx_spool *s, const void *p, size_t n,
			    char **err)
{
	if (s->len + n > s->cap && s->cap < LTX_SPOOL_MEM) {
		size_t cap = s->cap ? s->cap * 2 : LTX_SPOOL_MIN; /* to MEM */
		uint8_t *nb = realloc(s->buf, cap);
		if (!nb)
			return util_err(err, -ENOMEM, "out of memory");
		s->buf = nb;
		s->cap = cap;
	}
	if (s->len + n > s->cap) {
		if (!s->f) {
			s->f = tmpfile();
			if (!s->f)
				return util_err(err, -errno,
						"cannot create index spill file: %s",
						strerror(errno));
		}
		if (fwrite(s->buf, 1, s->len, s->f) != s->len)
			return util_err(err, -EIO,
					"cannot write index spill file");
		s->len = 0;
	}
	memcpy(s->buf + s->len, p, n);
	s->len += n;
	s->total += n;
	return 0;
}

/* Switch from appending to reading back from the first byte. */
static int ltx_spool_rewind(struct ltx_spool *s, char **err)
{
	s->pos = 0;
	s->left = s->total;
	if (!s->f)
		return 0;
	if (fwrite(s->buf, 1, s->len, s->f) != s->len || fflush(s->f) != 0 ||
	    fseeko(s->f, 0, SEEK_SET) != 0)
		return util_err(err, -EIO, "cannot write index spill file");
	s->len = 0;
	return 0;
}

/* Next chunk of the spooled bytes: 1 with p and n set, 0 at the end. */
static int ltx_spool_chunk(struct ltx_spool *s, const uint8_t **p, size_t *n,
			   char **err)
{
	if (s->pos == s->len) {
		if (!s->f || s->left == 0)
			return 0;
		size_t want = s->left < s->cap ? (size_t)s->left : s->cap;
		s->len = fread(s->buf, 1, want, s->f);
		s->pos = 0;
		if (s->len != want)
			return util_err(err, -EIO,
					"cannot read index spill file");
	}
	*p = s->buf + s->pos;
	*n = s->len - s->pos;
	s->pos = s->len;
	s->left -= *n;
	return 1;
}

/* Next spooled byte, -1 at the end, or a negative errno below -1. */
static int ltx_spool_getc(struct ltx_spool *s, char **err)
{
	if (s->pos == s->len) {
		const uint8_t *p;
		size_t n;
		int rc = ltx_spool_chunk(s, &p, &n, err);
		if (rc <= 0)
			return rc < 0 ? rc : -1;
		s->pos -= n; /* hand the chunk back to the byte reader */
	}
	return s->buf[s->pos++];
}

static void ltx_spool_clear(struct ltx_spool *s)
{
	free(s->buf);
	if (s->f)
		fclose(s->f);
	memset(s, 0, sizeof *s);
}

/* ------------------------------------------------------------- varints */

static size_t ltx_uvarint_put(uint8_t *p, uint64_t v)
{
	size_t n = 0;
	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

/* Feed one byte of a varint: 1 when complete, 0 when more follow, -1 on
 * overflow (as Go's binary.ReadUvarint: at most 10 bytes, fitting 64 bits). */
static int ltx_uvarint_step(uint64_t *v, unsigned *i, uint8_t b)
{
	if (*i == LTX_VARINT_MAX - 1 && b > 1)
		return -1;
	*v |= (uint64_t)(b & 0x7f) << (7 * *i);
	(*i)++;
	if (b < 0x80)
		return 1;
	return *i == LTX_VARINT_MAX ? -1 : 0;
}

static int ltx_index_entry_put(struct ltx_spool *s, uint32_t pgno,
			       uint64_t off, uint64_t size, char **err)
{
	uint8_t b[3 * LTX_VARINT_MAX];
	size_t n = ltx_uvarint_put(b, pgno);
	n += ltx_uvarint_put(b + n, off);
	n += ltx_uvarint_put(b + n, size);
	return ltx_spool_append(s, b, n, err);
}

/* ------------------------------------------------------ header, helpers */

uint32_t ltx_lock_pgno(uint32_t page_size)
{
	if (page_size == 0)
		return 0;
	return 0x40000000u / page_size + 1;
}

uint64_t ltx_page_checksum(uint32_t pgno, const void *page, uint32_t page_size)
{
	uint8_t b[4];
	util_be32_put(b, pgno);
	return LTX_CHECKSUM_FLAG |
	       crc64_iso(crc64_iso(0, b, sizeof b), page, page_size);
}

bool ltx_header_is_snapshot(const struct ltx_header *h)
{
	return h->min_txid == 1;
}

static bool ltx_page_size_valid(uint32_t sz)
{
	return sz >= LTX_MIN_PAGE_SIZE && sz <= LTX_MAX_PAGE_SIZE &&
	       (sz & (sz - 1)) == 0;
}

int ltx_header_validate(const struct ltx_header *h, char **err)
{
	bool nock = h->flags & LTX_FLAG_NO_CHECKSUM;

	if (h->flags & ~LTX_FLAG_NO_CHECKSUM)
		return util_err(err, -EINVAL, "invalid header flags 0x%08" PRIx32,
				h->flags);
	if (!ltx_page_size_valid(h->page_size))
		return util_err(err, -EINVAL, "invalid page size %" PRIu32,
				h->page_size);
	if (h->min_txid == 0)
		return util_err(err, -EINVAL, "min TXID must be at least 1");
	if (h->min_txid > h->max_txid)
		return util_err(err, -EINVAL,
				"TXIDs out of order: min %" PRIu64
				" > max %" PRIu64,
				h->min_txid, h->max_txid);
	if (h->wal_offset < 0)
		return util_err(err, -EINVAL, "negative WAL offset %" PRId64,
				h->wal_offset);
	if (h->wal_size < 0)
		return util_err(err, -EINVAL, "negative WAL size %" PRId64,
				h->wal_size);
	if ((h->wal_salt1 || h->wal_salt2) && h->wal_offset == 0)
		return util_err(err, -EINVAL, "WAL salt without a WAL offset");
	if (h->wal_size != 0 && h->wal_offset == 0)
		return util_err(err, -EINVAL, "WAL size without a WAL offset");
	if (ltx_header_is_snapshot(h)) {
		if (h->pre_apply_checksum != 0)
			return util_err(err, -EINVAL,
					"pre-apply checksum must be 0 on a snapshot");
	} else if (nock) {
		if (h->pre_apply_checksum != 0)
			return util_err(err, -EINVAL,
					"pre-apply checksum must be 0 with NoChecksum");
	} else {
		if (h->pre_apply_checksum == 0)
			return util_err(err, -EINVAL,
					"pre-apply checksum required");
		if (!(h->pre_apply_checksum & LTX_CHECKSUM_FLAG))
			return util_err(err, -EINVAL,
					"invalid pre-apply checksum %016" PRIx64,
					h->pre_apply_checksum);
	}
	return 0;
}

void ltx_header_encode(const struct ltx_header *h, uint8_t out[LTX_HEADER_SIZE])
{
	memset(out, 0, LTX_HEADER_SIZE);
	memcpy(out, LTX_MAGIC, 4);
	util_be32_put(out + 4, h->flags);
	util_be32_put(out + 8, h->page_size);
	util_be32_put(out + 12, h->commit);
	util_be64_put(out + 16, h->min_txid);
	util_be64_put(out + 24, h->max_txid);
	util_be64_put(out + 32, (uint64_t)h->timestamp);
	util_be64_put(out + 40, h->pre_apply_checksum);
	util_be64_put(out + 48, (uint64_t)h->wal_offset);
	util_be64_put(out + 56, (uint64_t)h->wal_size);
	util_be32_put(out + 64, h->wal_salt1);
	util_be32_put(out + 68, h->wal_salt2);
	util_be64_put(out + 72, h->node_id);
}

int ltx_header_decode(struct ltx_header *h, const uint8_t in[LTX_HEADER_SIZE],
		      char **err)
{
	if (memcmp(in, LTX_MAGIC, 4) != 0)
		return util_err(err, -EINVAL, "bad magic");
	memset(h, 0, sizeof *h);
	h->flags = util_be32(in + 4);
	h->page_size = util_be32(in + 8);
	h->commit = util_be32(in + 12);
	h->min_txid = util_be64(in + 16);
	h->max_txid = util_be64(in + 24);
	h->timestamp = (int64_t)util_be64(in + 32);
	h->pre_apply_checksum = util_be64(in + 40);
	h->wal_offset = (int64_t)util_be64(in + 48);
	h->wal_size = (int64_t)util_be64(in + 56);
	h->wal_salt1 = util_be32(in + 64);
	h->wal_salt2 = util_be32(in + 68);
	h->node_id = util_be64(in + 72);
	for (int i = LTX_RESERVED_OFFSET; i < LTX_HEADER_SIZE; i++)
		if (in[i] != 0)
			return util_err(err, -EINVAL,
					"reserved header byte %d is not zero", i);
	return ltx_header_validate(h, err);
}

/* The page that must follow `prev` in a snapshot. */
static uint32_t ltx_snapshot_next(uint32_t prev, uint32_t lock)
{
	uint32_t next = prev + 1;
	return next == lock ? next + 1 : next;
}

/* Page-number rules shared by encoder and decoder. */
static int ltx_check_pgno(const struct ltx_header *h, uint32_t lock,
			  uint32_t prev, uint32_t pgno, char **err)
{
	if (pgno == 0)
		return util_err(err, -EINVAL, "page number 0");
	if (pgno > h->commit)
		return util_err(err, -EINVAL,
				"page %" PRIu32 " beyond commit %" PRIu32, pgno,
				h->commit);
	if (pgno == lock)
		return util_err(err, -EINVAL,
				"page %" PRIu32 " is the lock page", pgno);
	if (ltx_header_is_snapshot(h)) {
		uint32_t want = ltx_snapshot_next(prev, lock);
		if (pgno != want)
			return util_err(err, -EINVAL,
					"page %" PRIu32 " out of order after %" PRIu32
					" (a snapshot needs %" PRIu32 ")",
					pgno, prev, want);
	} else if (pgno <= prev) {
		return util_err(err, -EINVAL,
				"page %" PRIu32 " out of order after %" PRIu32,
				pgno, prev);
	}
	return 0;
}

/* A snapshot must end with every page up to commit. */
static int ltx_check_snapshot_end(const struct ltx_header *h, uint32_t lock,
				  uint32_t prev, char **err)
{
	if (!ltx_header_is_snapshot(h))
		return 0;
	uint32_t want = ltx_snapshot_next(prev, lock);
	if (prev < h->commit && want <= h->commit)
		return util_err(err, -EINVAL,
				"snapshot ends after page %" PRIu32
				", missing pages %" PRIu32 "..%" PRIu32,
				prev, want, h->commit);
	return 0;
}

/* Trailer rules: Go's Trailer.Validate, plus the deleted-database rule of
 * Go's encoder (commit 0 needs post-apply 0x8000000000000000, so an encoder
 * cannot write a NoChecksum file with commit 0; a decoder lets one pass with
 * post-apply 0, as Go's decoder does). */
static int ltx_check_post_apply(const struct ltx_header *h, uint64_t post,
				bool encoding, char **err)
{
	bool nock = h->flags & LTX_FLAG_NO_CHECKSUM;

	if (nock && post != 0)
		return util_err(err, -EINVAL,
				"post-apply checksum must be 0 with NoChecksum, is %016" PRIx64,
				post);
	if (!nock && !(post & LTX_CHECKSUM_FLAG))
		return util_err(err, -EINVAL,
				"invalid post-apply checksum %016" PRIx64, post);
	if (h->commit == 0 && post != LTX_CHECKSUM_FLAG && (encoding || !nock))
		return util_err(err, -EINVAL,
				"post-apply checksum of an empty database must be %016" PRIx64
				", is %016" PRIx64,
				(uint64_t)LTX_CHECKSUM_FLAG, post);
	return 0;
}

/* ------------------------------------------------------------- encoder */

struct ltx_enc {
	struct ltx_header h;
	ltx_write_fn write;
	void *ctx;
	uint64_t crc;	  /* running file checksum (unflagged) */
	uint64_t n;	  /* bytes written */
	uint64_t db_xor;  /* XOR of page checksums (snapshots with checksums) */
	uint32_t prev;	  /* last page added, 0 before the first */
	uint32_t lock;
	bool broken;	  /* a write failed: the output is unusable */
	bool finished;
	uint8_t *cbuf;
	int cbuf_cap;
	uint8_t *obuf; /* output not yet handed to write, LTX_OBUF_SIZE */
	size_t olen;
	struct ltx_spool index; /* the index varints */
};

static int ltx_enc_out(struct ltx_enc *e, const void *buf, size_t len,
		       char **err)
{
	int rc = e->write(e->ctx, buf, len);
	if (rc < 0) {
		e->broken = true;
		return util_err(err, rc, "ltx write: %s", strerror(-rc));
	}
	return 0;
}

static int ltx_enc_flush(struct ltx_enc *e, char **err)
{
	int rc = e->olen ? ltx_enc_out(e, e->obuf, e->olen, err) : 0;
	e->olen = 0;
	return rc;
}

static int ltx_enc_write(struct ltx_enc *e, const void *buf, size_t len,
			 bool hash, char **err)
{
	int rc = 0;
	if (e->olen + len > LTX_OBUF_SIZE)
		rc = ltx_enc_flush(e, err);
	if (rc == 0 && len >= LTX_OBUF_SIZE)
		rc = ltx_enc_out(e, buf, len, err);
	else if (rc == 0) {
		memcpy(e->obuf + e->olen, buf, len);
		e->olen += len;
	}
	if (rc < 0)
		return rc;
	if (hash)
		e->crc = crc64_iso(e->crc, buf, len);
	e->n += len;
	return 0;
}

static int ltx_enc_usable(const struct ltx_enc *e, char **err)
{
	if (e->broken)
		return util_err(err, -EIO, "ltx encoder failed earlier");
	if (e->finished)
		return util_err(err, -EINVAL, "ltx encoder already finished");
	return 0;
}

int ltx_enc_new(struct ltx_enc **out, const struct ltx_header *h,
		ltx_write_fn write, void *ctx, char **err)
{
	struct ltx_enc *e = NULL;
	uint8_t b[LTX_HEADER_SIZE];
	int rc;

	*out = NULL;
	rc = ltx_header_validate(h, err);
	if (rc < 0)
		goto out;
	e = calloc(1, sizeof *e);
	if (!e) {
		rc = util_err(err, -ENOMEM, "out of memory");
		goto out;
	}
	e->h = *h;
	e->write = write;
	e->ctx = ctx;
	e->lock = ltx_lock_pgno(h->page_size);
	e->cbuf_cap = LZ4_compressBound((int)h->page_size);
	e->cbuf = malloc((size_t)e->cbuf_cap);
	e->obuf = malloc(LTX_OBUF_SIZE);
	if (!e->cbuf || !e->obuf) {
		rc = util_err(err, -ENOMEM, "out of memory");
		goto out;
	}
	ltx_header_encode(h, b);
	rc = ltx_enc_write(e, b, sizeof b, true, err);
	if (rc < 0)
		goto out;
	*out = e;
	e = NULL;
out:
	ltx_enc_free(e);
	return rc;
}

int ltx_enc_page(struct ltx_enc *e, uint32_t pgno, const void *page, char **err)
{
	uint8_t fh[LTX_BLOCK_FRAME_HEADER_SIZE];
	uint64_t off = e->n;
	int rc, n;

	rc = ltx_enc_usable(e, err);
	if (rc < 0)
		return rc;
	rc = ltx_check_pgno(&e->h, e->lock, e->prev, pgno, err);
	if (rc < 0)
		return rc;
	n = LZ4_compress_default(page, (char *)e->cbuf, (int)e->h.page_size,
				 e->cbuf_cap);
	if (n <= 0)
		return util_err(err, -EIO, "LZ4 compression of page %" PRIu32
				" failed", pgno);
	util_be32_put(fh, pgno);
	fh[4] = 0;
	fh[5] = LTX_PAGE_FLAG_BLOCK;
	util_be32_put(fh + LTX_PAGE_HEADER_SIZE, (uint32_t)n);
	/* Index entry first: a failure then leaves nothing half-written. */
	rc = ltx_index_entry_put(&e->index, pgno, off,
				 sizeof fh + (uint64_t)n, err);
	if (rc < 0) {
		e->broken = true;
		return rc;
	}
	rc = ltx_enc_write(e, fh, sizeof fh, true, err);
	if (rc < 0)
		return rc;
	rc = ltx_enc_write(e, e->cbuf, (size_t)n, false, err);
	if (rc < 0)
		return rc;
	e->crc = crc64_iso(e->crc, page, e->h.page_size);
	if (ltx_header_is_snapshot(&e->h) &&
	    !(e->h.flags & LTX_FLAG_NO_CHECKSUM))
		e->db_xor ^= ltx_page_checksum(pgno, page, e->h.page_size);
	e->prev = pgno;
	return 0;
}

int ltx_enc_finish(struct ltx_enc *e, uint64_t post_apply,
		   uint64_t *file_checksum, char **err)
{
	uint8_t b[LTX_TRAILER_SIZE];
	const uint8_t *p;
	size_t n;
	int rc;

	rc = ltx_enc_usable(e, err);
	if (rc < 0)
		return rc;
	rc = ltx_check_snapshot_end(&e->h, e->lock, e->prev, err);
	if (rc < 0)
		return rc;
	rc = ltx_check_post_apply(&e->h, post_apply, true, err);
	if (rc < 0)
		return rc;
	if (ltx_header_is_snapshot(&e->h) &&
	    !(e->h.flags & LTX_FLAG_NO_CHECKSUM) &&
	    (LTX_CHECKSUM_FLAG | e->db_xor) != post_apply)
		return util_err(err, -EINVAL,
				"post-apply checksum %016" PRIx64
				" does not match the snapshot's pages (%016" PRIx64 ")",
				post_apply, (uint64_t)(LTX_CHECKSUM_FLAG | e->db_xor));

	/* From here on, any failure leaves a partial file. */
	e->broken = true;
	memset(b, 0, LTX_PAGE_HEADER_SIZE);
	rc = ltx_enc_write(e, b, LTX_PAGE_HEADER_SIZE, true, err);
	if (rc < 0)
		return rc;
	rc = ltx_spool_rewind(&e->index, err);
	if (rc < 0)
		return rc;
	while ((rc = ltx_spool_chunk(&e->index, &p, &n, err)) > 0) {
		rc = ltx_enc_write(e, p, n, true, err);
		if (rc < 0)
			return rc;
	}
	if (rc < 0)
		return rc;
	b[0] = 0; /* index terminator */
	util_be64_put(b + 1, e->index.total + 1);
	rc = ltx_enc_write(e, b, 9, true, err);
	if (rc < 0)
		return rc;
	util_be64_put(b, post_apply);
	e->crc = crc64_iso(e->crc, b, 8);
	util_be64_put(b + 8, LTX_CHECKSUM_FLAG | e->crc);
	rc = ltx_enc_write(e, b, LTX_TRAILER_SIZE, false, err);
	if (rc == 0)
		rc = ltx_enc_flush(e, err);
	if (rc < 0)
		return rc;
	e->broken = false;
	e->finished = true;
	ltx_spool_clear(&e->index);
	if (file_checksum)
		*file_checksum = LTX_CHECKSUM_FLAG | e->crc;
	return 0;
}

uint64_t ltx_enc_bytes(const struct ltx_enc *e)
{
	return e->n;
}

void ltx_enc_free(struct ltx_enc *e)
{
	if (!e)
		return;
	ltx_spool_clear(&e->index);
	free(e->cbuf);
	free(e->obuf);
	free(e);
}

/* ------------------------------------------------------------- decoder */

enum ltx_dec_state {
	LTX_DEC_PAGES,	/* reading page frames */
	LTX_DEC_END,	/* end marker seen; index and trailer unread */
	LTX_DEC_DONE,	/* ltx_dec_finish succeeded */
	LTX_DEC_FAILED, /* an error: every later call fails */
};

struct ltx_dec {
	ltx_read_fn read;
	void *ctx;
	struct ltx_header h;
	enum ltx_dec_state state;
	int failed_rc;
	uint8_t *rbuf; /* read-ahead, LTX_RBUF_SIZE */
	size_t rpos, rlen;
	uint64_t off;	 /* file offset of rbuf[rpos] */
	uint64_t crc;	 /* running file checksum (unflagged) */
	uint64_t db_xor; /* XOR of page checksums (snapshots with checksums) */
	uint32_t prev;
	uint32_t lock;
	uint64_t post_apply, file_checksum; /* after finish */
	LZ4F_dctx *dctx; /* for legacy frames, created on first use */
	struct ltx_spool index; /* the index varints the pages call for */
};

static int ltx_dec_fail(struct ltx_dec *d, int rc)
{
	d->state = LTX_DEC_FAILED;
	d->failed_rc = rc;
	return rc;
}

/* Make at least `need` (<= LTX_RBUF_SIZE) bytes available at rbuf + rpos;
 * at end of input that is a truncated `what`. */
static int ltx_dec_fill(struct ltx_dec *d, size_t need, const char *what,
			char **err)
{
	if (d->rlen - d->rpos >= need)
		return 0;
	if (d->rpos > 0) {
		memmove(d->rbuf, d->rbuf + d->rpos, d->rlen - d->rpos);
		d->rlen -= d->rpos;
		d->rpos = 0;
	}
	while (d->rlen < need) {
		size_t room = LTX_RBUF_SIZE - d->rlen;
		ssize_t n = d->read(d->ctx, d->rbuf + d->rlen, room);
		if (n < 0)
			return util_err(err, (int)n, "ltx read: %s",
					strerror((int)-n));
		if ((size_t)n > room)
			return util_err(err, -EIO,
					"ltx read callback overran its buffer");
		if (n == 0)
			return util_err(err, -EINVAL,
					"truncated %s at offset %" PRIu64, what,
					d->off + d->rlen);
		d->rlen += (size_t)n;
	}
	return 0;
}

static void ltx_dec_consume(struct ltx_dec *d, size_t n, bool hash)
{
	if (hash)
		d->crc = crc64_iso(d->crc, d->rbuf + d->rpos, n);
	d->rpos += n;
	d->off += n;
}

int ltx_dec_new(struct ltx_dec **out, ltx_read_fn read, void *ctx, char **err)
{
	struct ltx_dec *d;
	int rc;

	*out = NULL;
	d = calloc(1, sizeof *d);
	if (!d)
		return util_err(err, -ENOMEM, "out of memory");
	d->read = read;
	d->ctx = ctx;
	d->rbuf = malloc(LTX_RBUF_SIZE);
	if (!d->rbuf) {
		rc = util_err(err, -ENOMEM, "out of memory");
		goto out;
	}
	rc = ltx_dec_fill(d, LTX_HEADER_SIZE, "header", err);
	if (rc < 0)
		goto out;
	rc = ltx_header_decode(&d->h, d->rbuf, err);
	if (rc < 0)
		goto out;
	ltx_dec_consume(d, LTX_HEADER_SIZE, true);
	d->lock = ltx_lock_pgno(d->h.page_size);
	*out = d;
	d = NULL;
out:
	ltx_dec_free(d);
	return rc;
}

const struct ltx_header *ltx_dec_header(const struct ltx_dec *d)
{
	return &d->h;
}

/* Block form: u32 length, then one LZ4 block. */
static int ltx_dec_block(struct ltx_dec *d, uint32_t pgno, void *page,
			 uint64_t *size, char **err)
{
	uint32_t ps = d->h.page_size;
	int rc = ltx_dec_fill(d, LTX_BLOCK_FRAME_HEADER_SIZE, "page frame", err);
	if (rc < 0)
		return rc;
	uint32_t n = util_be32(d->rbuf + d->rpos + LTX_PAGE_HEADER_SIZE);
	if (n == 0 || n > (uint32_t)LZ4_compressBound((int)ps))
		return util_err(err, -EINVAL,
				"page %" PRIu32 ": compressed length %" PRIu32
				" out of range",
				pgno, n);
	ltx_dec_consume(d, LTX_BLOCK_FRAME_HEADER_SIZE, true);
	rc = ltx_dec_fill(d, n, "page frame", err);
	if (rc < 0)
		return rc;
	int got = LZ4_decompress_safe((const char *)d->rbuf + d->rpos, page,
				      (int)n, (int)ps);
	if (got < 0)
		return util_err(err, -EINVAL,
				"page %" PRIu32 ": corrupt LZ4 block, or it "
				"decodes to more than %" PRIu32 " bytes",
				pgno, ps);
	if ((uint32_t)got != ps)
		return util_err(err, -EINVAL,
				"decoded page is %d bytes, want %" PRIu32, got,
				ps);
	ltx_dec_consume(d, n, false);
	*size = LTX_BLOCK_FRAME_HEADER_SIZE + (uint64_t)n;
	return 0;
}

/* Legacy form: one LZ4 frame, whose end only parsing reveals. */
static int ltx_dec_frame(struct ltx_dec *d, uint32_t pgno, void *page,
			 uint64_t *size, char **err)
{
	uint32_t ps = d->h.page_size;
	uint8_t extra[64];
	size_t produced = 0, r;
	uint64_t flen = 0;
	int rc;

	ltx_dec_consume(d, LTX_PAGE_HEADER_SIZE, true);
	if (!d->dctx) {
		r = LZ4F_createDecompressionContext(&d->dctx, LZ4F_VERSION);
		if (LZ4F_isError(r)) {
			d->dctx = NULL;
			return util_err(err, -ENOMEM, "LZ4 frame context: %s",
					LZ4F_getErrorName(r));
		}
	}
	LZ4F_resetDecompressionContext(d->dctx);
	do {
		if (d->rpos == d->rlen) {
			rc = ltx_dec_fill(d, 1, "page frame", err);
			if (rc < 0)
				return rc;
		}
		uint8_t *dst = produced < ps ? (uint8_t *)page + produced
					     : extra;
		size_t dst_n = produced < ps ? ps - produced : sizeof extra;
		size_t src_n = d->rlen - d->rpos;
		r = LZ4F_decompress(d->dctx, dst, &dst_n, d->rbuf + d->rpos,
				    &src_n, NULL);
		if (LZ4F_isError(r))
			return util_err(err, -EINVAL,
					"page %" PRIu32 ": corrupt LZ4 frame: %s",
					pgno, LZ4F_getErrorName(r));
		if (produced >= ps && dst_n > 0)
			return util_err(err, -EINVAL,
					"decoded page is more than %" PRIu32
					" bytes, want %" PRIu32,
					ps, ps);
		if (r != 0 && dst_n == 0 && src_n == 0)
			return util_err(err, -EINVAL,
					"page %" PRIu32 ": LZ4 frame stalled",
					pgno);
		produced += dst_n;
		flen += src_n;
		ltx_dec_consume(d, src_n, false);
		if (flen > UINT32_MAX)
			return util_err(err, -EINVAL,
					"page %" PRIu32 ": LZ4 frame too long",
					pgno);
	} while (r != 0);
	if (produced != ps)
		return util_err(err, -EINVAL,
				"decoded page is %zu bytes, want %" PRIu32,
				produced, ps);
	*size = LTX_PAGE_HEADER_SIZE + flen;
	return 0;
}

static int ltx_dec_page_inner(struct ltx_dec *d, uint32_t *pgno_out,
			      void *page, char **err)
{
	uint64_t off = d->off, size = 0;
	int rc;

	rc = ltx_dec_fill(d, LTX_PAGE_HEADER_SIZE, "page header", err);
	if (rc < 0)
		return rc;
	uint32_t pgno = util_be32(d->rbuf + d->rpos);
	uint16_t flags = (uint16_t)(d->rbuf[d->rpos + 4] << 8 |
				    d->rbuf[d->rpos + 5]);
	if (pgno == 0 && flags == 0) {
		ltx_dec_consume(d, LTX_PAGE_HEADER_SIZE, true);
		rc = ltx_check_snapshot_end(&d->h, d->lock, d->prev, err);
		if (rc < 0)
			return rc;
		d->state = LTX_DEC_END;
		return 0;
	}
	if (flags & ~LTX_PAGE_FLAG_BLOCK)
		return util_err(err, -EINVAL,
				"page %" PRIu32 " has invalid flags 0x%04x at offset %" PRIu64,
				pgno, flags, off);
	rc = ltx_check_pgno(&d->h, d->lock, d->prev, pgno, err);
	if (rc < 0)
		return rc;
	if (flags & LTX_PAGE_FLAG_BLOCK)
		rc = ltx_dec_block(d, pgno, page, &size, err);
	else
		rc = ltx_dec_frame(d, pgno, page, &size, err);
	if (rc < 0)
		return rc;
	d->crc = crc64_iso(d->crc, page, d->h.page_size);
	if (ltx_header_is_snapshot(&d->h) &&
	    !(d->h.flags & LTX_FLAG_NO_CHECKSUM))
		d->db_xor ^= ltx_page_checksum(pgno, page, d->h.page_size);
	rc = ltx_index_entry_put(&d->index, pgno, off, size, err);
	if (rc < 0)
		return rc;
	d->prev = pgno;
	*pgno_out = pgno;
	return 1;
}

int ltx_dec_page(struct ltx_dec *d, uint32_t *pgno, void *page, char **err)
{
	switch (d->state) {
	case LTX_DEC_FAILED:
		return util_err(err, d->failed_rc, "ltx decoder failed earlier");
	case LTX_DEC_END:
	case LTX_DEC_DONE:
		return 0;
	case LTX_DEC_PAGES:
		break;
	}
	int rc = ltx_dec_page_inner(d, pgno, page, err);
	return rc < 0 ? ltx_dec_fail(d, rc) : rc;
}

/* One varint of the stored index. */
static int ltx_dec_uvarint(struct ltx_dec *d, uint64_t *v, char **err)
{
	unsigned i = 0;
	int r;

	*v = 0;
	do {
		int rc = ltx_dec_fill(d, 1, "page index", err);
		if (rc < 0)
			return rc;
		r = ltx_uvarint_step(v, &i, d->rbuf[d->rpos]);
		ltx_dec_consume(d, 1, true);
		if (r < 0)
			return util_err(err, -EINVAL,
					"varint overflow in page index at offset %" PRIu64,
					d->off - 1);
	} while (r == 0);
	return 0;
}

/* One varint of the expected index: 0 ok, 1 at the end. */
static int ltx_spool_uvarint(struct ltx_spool *s, uint64_t *v, char **err)
{
	unsigned i = 0;
	int r;

	*v = 0;
	do {
		int c = ltx_spool_getc(s, err);
		if (c == -1 && i == 0)
			return 1;
		if (c == -1)
			return util_err(err, -EIO, "index spool ends mid-varint");
		if (c < 0)
			return c;
		r = ltx_uvarint_step(v, &i, (uint8_t)c);
		if (r < 0)
			return util_err(err, -EIO, "index spool is corrupt");
	} while (r == 0);
	return 0;
}

/* Compare the stored page index, entry by entry, with the pages seen. */
static int ltx_dec_index(struct ltx_dec *d, char **err)
{
	uint64_t start = d->off, want[3], got[3], stored;
	int rc;

	rc = ltx_spool_rewind(&d->index, err);
	if (rc < 0)
		return rc;
	for (;;) {
		rc = ltx_dec_uvarint(d, &got[0], err);
		if (rc < 0)
			return rc;
		int end = ltx_spool_uvarint(&d->index, &want[0], err);
		if (end < 0)
			return end;
		if (got[0] == 0) {
			if (!end)
				return util_err(err, -EINVAL,
						"page index is missing page %" PRIu64,
						want[0]);
			break;
		}
		for (int i = 1; i < 3; i++) {
			rc = ltx_dec_uvarint(d, &got[i], err);
			if (rc < 0)
				return rc;
		}
		if (end)
			return util_err(err, -EINVAL,
					"page index lists page %" PRIu64
					", which the file does not hold",
					got[0]);
		for (int i = 1; i < 3; i++) {
			rc = ltx_spool_uvarint(&d->index, &want[i], err);
			if (rc < 0)
				return rc;
			if (rc > 0)
				return util_err(err, -EIO, "index spool is short");
		}
		if (memcmp(got, want, sizeof got) != 0)
			return util_err(err, -EINVAL,
					"page index entry (page %" PRIu64
					", offset %" PRIu64 ", size %" PRIu64
					") does not match the file (page %" PRIu64
					", offset %" PRIu64 ", size %" PRIu64 ")",
					got[0], got[1], got[2], want[0], want[1],
					want[2]);
	}
	uint64_t len = d->off - start;
	rc = ltx_dec_fill(d, 8, "page index length", err);
	if (rc < 0)
		return rc;
	stored = util_be64(d->rbuf + d->rpos);
	ltx_dec_consume(d, 8, true);
	if (stored != len)
		return util_err(err, -EINVAL,
				"page index length is %" PRIu64 ", want %" PRIu64,
				stored, len);
	return 0;
}

static int ltx_dec_finish_inner(struct ltx_dec *d, char **err)
{
	uint64_t post, stored, computed;
	uint8_t probe;
	int rc;

	rc = ltx_dec_index(d, err);
	if (rc < 0)
		return rc;
	rc = ltx_dec_fill(d, LTX_TRAILER_SIZE, "trailer", err);
	if (rc < 0)
		return rc;
	post = util_be64(d->rbuf + d->rpos);
	stored = util_be64(d->rbuf + d->rpos + 8);
	ltx_dec_consume(d, 8, true);
	ltx_dec_consume(d, 8, false);
	if (d->rpos < d->rlen)
		return util_err(err, -EINVAL,
				"trailing bytes after the trailer at offset %" PRIu64,
				d->off);
	ssize_t n = d->read(d->ctx, &probe, 1);
	if (n < 0)
		return util_err(err, (int)n, "ltx read: %s", strerror((int)-n));
	if (n > 0)
		return util_err(err, -EINVAL,
				"trailing bytes after the trailer at offset %" PRIu64,
				d->off);
	computed = LTX_CHECKSUM_FLAG | d->crc;
	if (stored != computed)
		return util_err(err, -EBADMSG,
				"file checksum mismatch: stored %016" PRIx64
				", computed %016" PRIx64,
				stored, computed);
	rc = ltx_check_post_apply(&d->h, post, false, err);
	if (rc < 0)
		return rc;
	if (ltx_header_is_snapshot(&d->h) &&
	    !(d->h.flags & LTX_FLAG_NO_CHECKSUM) &&
	    post != (LTX_CHECKSUM_FLAG | d->db_xor))
		return util_err(err, -EBADMSG,
				"post-apply checksum mismatch: stored %016" PRIx64
				", snapshot pages give %016" PRIx64,
				post, (uint64_t)(LTX_CHECKSUM_FLAG | d->db_xor));
	d->post_apply = post;
	d->file_checksum = stored;
	return 0;
}

int ltx_dec_finish(struct ltx_dec *d, uint64_t *post_apply,
		   uint64_t *file_checksum, char **err)
{
	void *scratch = NULL;
	uint32_t pgno;
	int rc = 0;

	if (d->state == LTX_DEC_FAILED)
		return util_err(err, d->failed_rc, "ltx decoder failed earlier");
	if (d->state == LTX_DEC_PAGES) {
		/* Pages left unread: decode (and verify) them anyway. */
		scratch = malloc(d->h.page_size);
		if (!scratch) {
			rc = util_err(err, -ENOMEM, "out of memory");
			goto out;
		}
		while ((rc = ltx_dec_page(d, &pgno, scratch, err)) > 0)
			;
		if (rc < 0)
			goto out;
	}
	if (d->state == LTX_DEC_END) {
		rc = ltx_dec_finish_inner(d, err);
		if (rc < 0) {
			ltx_dec_fail(d, rc);
			goto out;
		}
		d->state = LTX_DEC_DONE;
		ltx_spool_clear(&d->index);
	}
	if (post_apply)
		*post_apply = d->post_apply;
	if (file_checksum)
		*file_checksum = d->file_checksum;
out:
	free(scratch);
	return rc;
}

void ltx_dec_free(struct ltx_dec *d)
{
	if (!d)
		return;
	if (d->dctx)
		LZ4F_freeDecompressionContext(d->dctx);
	ltx_spool_clear(&d->index);
	free(d->rbuf);
	free(d);
}
