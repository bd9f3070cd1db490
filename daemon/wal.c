/*
 * wal.c: reading SQLite's write-ahead log without SQLite.
 *
 * THE FILE
 *
 * A WAL file ("<db>-wal") is a 32-byte header followed by zero or more
 * frames. Every integer in it is a big-endian 32-bit unsigned value. The
 * header:
 *
 *      0  magic             0x377f0682 or 0x377f0683
 *      4  format version    3007000
 *      8  page size         512 .. 65536, a power of two (stored as the
 *                           plain 32-bit value: 65536 is 0x00010000. The
 *                           "1 means 65536" encoding belongs to the 16-bit
 *                           field of the *database* header, not to this
 *                           one; SQLite's recovery treats a WAL whose page
 *                           size is below 512 as holding no data)
 *     12  checkpoint seq    incremented on every WAL restart
 *     16  salt-1            incremented on every restart
 *     20  salt-2            a fresh random value on every restart
 *     24  checksum-1        checksum of bytes 0..23
 *     28  checksum-2
 *
 * Each frame is a 24-byte frame header followed by one page image:
 *
 *      0  page number       never 0 (SQLite rejects a frame with page 0)
 *      4  commit size       non-zero only in the last frame of a
 *                           transaction (a "commit frame"): the database
 *                           size in pages after that transaction
 *      8  salt-1            copies of the header's salts
 *     12  salt-2
 *     16  checksum-1        cumulative checksum, see below
 *     20  checksum-2
 *
 * Frame n (1-based) starts at 32 + (n - 1) * (24 + page size).
 *
 * THE CHECKSUM
 *
 * SQLite's checksum (walChecksumBytes in SQLite's src/wal.c) reads its
 * input as 32-bit words x[0], x[1], ... (the input is always a multiple
 * of 8 bytes) and runs two 32-bit accumulators, wrapping on overflow:
 *
 *      for i in 0, 2, 4, ...:
 *              s0 += x[i] + s1
 *              s1 += x[i + 1] + s0
 *
 * The magic number selects how the words are read: 0x377f0682 (low bit
 * clear) means little-endian words, 0x377f0683 (low bit set) big-endian
 * words. A writer uses its CPU's native order, so a WAL written on x86 or
 * ARM says 0x377f0682. The two results are always *stored* big-endian,
 * whatever order was used to compute them. Reading the words in the wrong
 * order yields a different checksum, so a reader that ignores the magic
 * rejects every frame of a foreign WAL, or, worse, one that skips
 * validation copies whatever the file holds (Litestream's first data-loss
 * class).
 *
 * The checksum is cumulative. The header checksum covers header bytes
 * 0..23, starting from s0 = s1 = 0. The checksum of frame 1 continues from
 * the header's (s0, s1) over the first 8 bytes of the frame header (page
 * number and commit size) and then the page data; frame n + 1 continues
 * from frame n's result, and so on. Salts and checksum fields of a frame
 * header are not themselves checksummed. A frame's checksum therefore
 * vouches for every byte of the log before it, not only for itself.
 *
 * WHICH FRAMES ARE VALID
 *
 * SQLite's recovery (walIndexRecover/walDecodeFrame) reads frames in order
 * and accepts frame n only if its salts equal the header's, its page
 * number is not 0, and its checksum equals the running checksum. The first
 * frame that fails ends the log; nothing after it is ever looked at. That
 * rule is what makes the file safe to reuse:
 *
 *   - A WAL is reused after a checkpoint ("restart"): the next writer
 *     rewrites the header with salt-1 + 1 and a new random salt-2 and
 *     writes new frames from offset 32 on, over the old ones. The file is
 *     not truncated, so past the new frames lie frames of the previous
 *     generation. Their salts differ, so they are rejected even when their
 *     checksums happened to chain; and because the checksum is cumulative,
 *     a stale frame cannot be spliced in behind new ones either.
 *   - A crash in the middle of an append leaves a partially written frame
 *     whose checksum does not match: it and everything after it are noise.
 *
 * Of the valid frames only those up to and including the last commit
 * frame count. Frames after it belong to a transaction that is still open
 * (SQLite writes dirty pages to the WAL early when its page cache spills),
 * that was rolled back (a rollback in WAL mode merely forgets the frames;
 * the next transaction overwrites them, starting right after the last
 * commit frame), or that was torn by a crash. SQLite may even rewrite
 * frames of its open transaction in place and recompute their checksums
 * only when it commits. Copying any of them would replicate data that
 * never committed.
 *
 * WHAT THE REPLICATOR RELIES ON
 *
 *   - Committed frames are immutable while the WAL generation lives: a
 *     writer only ever appends after the last commit frame. A checkpoint
 *     copies ("backfills") frames into the database file but does not
 *     change the WAL.
 *   - A held read transaction prevents a WAL restart. SQLite restarts the
 *     log (in the next writer, or inside a TRUNCATE checkpoint) only when
 *     every frame is backfilled *and* it can lock read marks 1..4
 *     exclusively; a reader holding one of them blocks that, so the frames
 *     it can see are not overwritten underneath it. Caveat: a read
 *     transaction begun while the WAL was fully backfilled takes read mark
 *     0, which means "I read only the database file", and does not block
 *     a restart. Hence the replicator writes a row first (so at least one
 *     frame is live) and then begins its read transaction.
 *   - A restart always changes the salts (salt-1 is incremented, salt-2
 *     re-randomised; a TRUNCATE checkpoint empties the file and the next
 *     header gets new salts too). So (salt-1, salt-2, offset) names a
 *     position unambiguously: if the salts moved, the log restarted and
 *     any gap must be handled explicitly, never skipped over.
 *
 * THE INDEX
 *
 * wal_index_scan() verifies the header, then reads the file front to back
 * in large chunks (about 1 MiB of whole frames per read) and checks every
 * frame as above. It keeps two open-addressing hash maps from page number
 * to frame offset: the committed map, and a pending map for the open
 * transaction. A frame goes into the pending map; at each commit frame the
 * pending entries are merged into the committed map (a later frame for the
 * same page wins) and the pending map is emptied in O(1) by bumping its
 * generation counter. When the scan stops, whatever is pending is dropped.
 * Both maps grow with the number of distinct pages, never with the size
 * of the database or the number of frames.
 */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "walrust.h"

#define WAL_MAGIC_LE 0x377f0682u
#define WAL_MAGIC_BE 0x377f0683u
#define WAL_FORMAT_VERSION 3007000u
#define WAL_MIN_PAGE_SIZE 512u
#define WAL_MAX_PAGE_SIZE 65536u
#define WAL_READ_CHUNK (1u << 20)
#define WAL_MAP_MIN_SLOTS 64u
#define WAL_MAP_MAX_SLOTS (1u << 31)

/* One slot of a page map. The slot is in use iff gen == the map's gen, so
 * bumping the map's gen empties the whole map at once. */
struct wal_slot {
	uint32_t pgno;
	uint32_t gen;
	int64_t off;
};

struct wal_map {
	struct wal_slot *slots; /* NULL until the first insert */
	uint32_t mask;          /* number of slots - 1 (a power of two) */
	uint32_t count;         /* slots in use */
	uint32_t gen;
};

struct wal_index {
	struct wal_header hdr; /* all zero when the file is < 32 bytes */
	uint32_t commit;
	uint32_t frames;
	int64_t end;
	uint32_t cks[2]; /* the running checksum at `end` */
	struct wal_map map; /* committed pages only */
};

/* ------------------------------------------------------------ checksum */

static inline uint32_t wal_get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static inline uint32_t wal_get_le32(const uint8_t *p)
{
	return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[1] << 8 | (uint32_t)p[0];
}

/* Extend the checksum (s[0], s[1]) over len bytes (a multiple of 8), with
 * big-endian words when `be`, little-endian words otherwise. */
static void wal_checksum(bool be, const uint8_t *p, size_t len, uint32_t s[2])
{
	uint32_t s0 = s[0], s1 = s[1];
	size_t i;

	if (be) {
		for (i = 0; i + 8 <= len; i += 8) {
			s0 += wal_get_be32(p + i) + s1;
			s1 += wal_get_be32(p + i + 4) + s0;
		}
	} else {
		for (i = 0; i + 8 <= len; i += 8) {
			s0 += wal_get_le32(p + i) + s1;
			s1 += wal_get_le32(p + i + 4) + s0;
		}
	}
	s[0] = s0;
	s[1] = s1;
}

/* -------------------------------------------------------------- header */

int wal_header_decode(struct wal_header *h, const uint8_t buf[WAL_HEADER_SIZE],
		      char **err)
{
	struct wal_header t;
	uint32_t s[2] = {0, 0};

	t.magic = util_be32(buf);
	t.version = util_be32(buf + 4);
	t.page_size = util_be32(buf + 8);
	t.ckpt_seq = util_be32(buf + 12);
	t.salt1 = util_be32(buf + 16);
	t.salt2 = util_be32(buf + 20);
	t.cksum1 = util_be32(buf + 24);
	t.cksum2 = util_be32(buf + 28);

	if (t.magic != WAL_MAGIC_LE && t.magic != WAL_MAGIC_BE)
		return util_err(err, -EINVAL,
				"wal: bad magic 0x%08x (want 0x%08x or 0x%08x)",
				t.magic, WAL_MAGIC_LE, WAL_MAGIC_BE);
	if (t.version != WAL_FORMAT_VERSION)
		return util_err(err, -EINVAL,
				"wal: unsupported format version %u (want %u)",
				t.version, WAL_FORMAT_VERSION);
	if (t.page_size < WAL_MIN_PAGE_SIZE || t.page_size > WAL_MAX_PAGE_SIZE ||
	    (t.page_size & (t.page_size - 1)) != 0)
		return util_err(err, -EINVAL, "wal: bad page size %u",
				t.page_size);
	wal_checksum(t.magic & 1, buf, 24, s);
	if (s[0] != t.cksum1 || s[1] != t.cksum2)
		return util_err(err, -EINVAL,
				"wal: header checksum mismatch (stored %08x%08x, "
				"computed %08x%08x)",
				t.cksum1, t.cksum2, s[0], s[1]);
	*h = t;
	return 0;
}

/* ------------------------------------------------------------ page map */

static inline uint32_t wal_map_hash(uint32_t pgno)
{
	uint32_t h = pgno * 0x9e3779b1u;
	return h ^ (h >> 16);
}

static struct wal_slot *wal_map_find(const struct wal_map *m, uint32_t pgno)
{
	if (!m->slots)
		return NULL;
	for (uint32_t i = wal_map_hash(pgno) & m->mask;; i = (i + 1) & m->mask) {
		struct wal_slot *s = &m->slots[i];
		if (s->gen != m->gen)
			return NULL;
		if (s->pgno == pgno)
			return s;
	}
}

/* Double the slots (or allocate the first ones) and rehash. */
static int wal_map_grow(struct wal_map *m)
{
	uint32_t old = m->slots ? m->mask + 1 : 0;
	uint32_t cap = old ? old * 2 : WAL_MAP_MIN_SLOTS;
	struct wal_slot *slots;

	if (old >= WAL_MAP_MAX_SLOTS)
		return -ENOMEM;
	slots = calloc(cap, sizeof *slots);
	if (!slots)
		return -ENOMEM;
	for (uint32_t j = 0; j < old; j++) {
		const struct wal_slot *s = &m->slots[j];
		if (s->gen != m->gen)
			continue;
		uint32_t i = wal_map_hash(s->pgno) & (cap - 1);
		while (slots[i].gen)
			i = (i + 1) & (cap - 1);
		slots[i] = (struct wal_slot){s->pgno, 1, s->off};
	}
	free(m->slots);
	m->slots = slots;
	m->mask = cap - 1;
	m->gen = 1;
	return 0;
}

/* Map pgno to off. Returns 1 when pgno was new, 0 when it was updated,
 * -ENOMEM. The map is kept at most half full so probes stay short. */
static int wal_map_put(struct wal_map *m, uint32_t pgno, int64_t off)
{
	int rc;

	if (!m->slots || ((size_t)m->count + 1) * 2 > (size_t)m->mask + 1) {
		rc = wal_map_grow(m);
		if (rc < 0)
			return rc;
	}
	for (uint32_t i = wal_map_hash(pgno) & m->mask;; i = (i + 1) & m->mask) {
		struct wal_slot *s = &m->slots[i];
		if (s->gen != m->gen) {
			*s = (struct wal_slot){pgno, m->gen, off};
			m->count++;
			return 1;
		}
		if (s->pgno == pgno) {
			s->off = off;
			return 0;
		}
	}
}

static void wal_map_clear(struct wal_map *m)
{
	m->count = 0;
	if (!m->slots)
		return;
	if (++m->gen == 0) {
		memset(m->slots, 0, ((size_t)m->mask + 1) * sizeof *m->slots);
		m->gen = 1;
	}
}

static void wal_map_release(struct wal_map *m)
{
	free(m->slots);
	*m = (struct wal_map){0};
}

/* --------------------------------------------------------------- scan */

/* The frames of the transaction that has not committed (yet). */
struct wal_pending {
	struct wal_map map;
	uint32_t *pgnos; /* distinct pages, in order of first appearance */
	size_t n, cap;
};

static int wal_pending_add(struct wal_pending *p, uint32_t pgno, int64_t off)
{
	int rc = wal_map_put(&p->map, pgno, off);

	if (rc <= 0)
		return rc;
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 64;
		uint32_t *v = realloc(p->pgnos, cap * sizeof *v);
		if (!v)
			return -ENOMEM;
		p->pgnos = v;
		p->cap = cap;
	}
	p->pgnos[p->n++] = pgno;
	return 0;
}

/* Move every pending page into the committed map; empty the pending set. */
static int wal_pending_commit(struct wal_pending *p, struct wal_map *committed)
{
	for (size_t i = 0; i < p->n; i++) {
		const struct wal_slot *s = wal_map_find(&p->map, p->pgnos[i]);
		int rc = s ? wal_map_put(committed, s->pgno, s->off) : -EFAULT;
		if (rc < 0)
			return rc;
	}
	p->n = 0;
	wal_map_clear(&p->map);
	return 0;
}

static void wal_pending_release(struct wal_pending *p)
{
	wal_map_release(&p->map);
	free(p->pgnos);
}

/* Check one frame against the header's salts and the running checksum
 * `s`; on success `s` advances past the frame. */
static bool wal_frame_valid(const struct wal_header *h, const uint8_t *f,
			    uint32_t s[2])
{
	uint32_t t[2] = {s[0], s[1]};
	bool be = h->magic & 1;

	if (util_be32(f + 8) != h->salt1 || util_be32(f + 12) != h->salt2)
		return false;
	if (util_be32(f) == 0)
		return false;
	wal_checksum(be, f, 8, t);
	wal_checksum(be, f + WAL_FRAME_HEADER_SIZE, h->page_size, t);
	if (t[0] != util_be32(f + 16) || t[1] != util_be32(f + 20))
		return false;
	s[0] = t[0];
	s[1] = t[1];
	return true;
}

int wal_index_scan(struct wal_index **out, int fd, char **err)
{
	return wal_index_scan_limit(out, fd, INT64_MAX, err);
}

/* Scan frames from w->end (the running checksum there in w->cks) until the
 * first invalid frame, `limit` or the end of the file; commit frames
 * advance w->commit, w->frames, w->end and w->cks. */
static int wal_scan_frames(struct wal_index *w, int fd, int64_t limit,
			   char **err)
{
	struct wal_pending pend = {0};
	uint8_t *buf = NULL;
	size_t fsz, chunk;
	uint32_t s[2] = {w->cks[0], w->cks[1]}, seen = w->frames;
	int64_t off = w->end;
	ssize_t n;
	bool stop = false;
	int rc;

	fsz = WAL_FRAME_HEADER_SIZE + (size_t)w->hdr.page_size;
	chunk = WAL_READ_CHUNK / fsz;
	chunk = (chunk ? chunk : 1) * fsz;
	buf = malloc(chunk);
	if (!buf) {
		rc = util_err(err, -ENOMEM, "wal: out of memory");
		goto out;
	}

	while (!stop) {
		n = util_pread_all(fd, buf, chunk, off);
		if (n < 0) {
			rc = util_err(err, (int)n,
				      "wal: reading at offset %lld: %s",
				      (long long)off, strerror((int)-n));
			goto out;
		}
		/* A short read is the end of the file; a partial frame at the
		 * end is not a frame. */
		if ((size_t)n < chunk)
			stop = true;
		for (size_t i = 0; i + fsz <= (size_t)n; i += fsz) {
			const uint8_t *f = buf + i;
			uint32_t commit;

			if (off + (int64_t)fsz > limit) {
				stop = true;
				break;
			}
			if (seen == UINT32_MAX || !wal_frame_valid(&w->hdr, f, s)) {
				stop = true;
				break;
			}
			seen++;
			rc = wal_pending_add(&pend, util_be32(f), off);
			commit = util_be32(f + 4);
			if (rc == 0 && commit)
				rc = wal_pending_commit(&pend, &w->map);
			if (rc < 0) {
				rc = util_err(err, rc, "wal: out of memory "
					      "indexing %u frames", seen);
				goto out;
			}
			if (commit) {
				w->commit = commit;
				w->frames = seen;
				w->end = off + (int64_t)fsz;
				w->cks[0] = s[0];
				w->cks[1] = s[1];
			}
			off += (int64_t)fsz;
		}
	}
	rc = 0;
out:
	free(buf);
	wal_pending_release(&pend);
	return rc;
}

int wal_index_scan_limit(struct wal_index **out, int fd, int64_t limit,
			 char **err)
{
	struct wal_index *w = NULL;
	uint8_t hb[WAL_HEADER_SIZE];
	ssize_t n;
	int rc;

	*out = NULL;
	w = calloc(1, sizeof *w);
	if (!w) {
		rc = util_err(err, -ENOMEM, "wal: out of memory");
		goto out;
	}
	w->end = WAL_HEADER_SIZE;

	n = util_pread_all(fd, hb, sizeof hb, 0);
	if (n < 0) {
		rc = util_err(err, (int)n, "wal: reading header: %s",
			      strerror((int)-n));
		goto out;
	}
	if (n < WAL_HEADER_SIZE) {
		/* No WAL yet (or not even its header): nothing committed. */
		*out = w;
		w = NULL;
		rc = 0;
		goto out;
	}
	rc = wal_header_decode(&w->hdr, hb, err);
	if (rc < 0)
		goto out;
	w->cks[0] = w->hdr.cksum1;
	w->cks[1] = w->hdr.cksum2;
	rc = wal_scan_frames(w, fd, limit, err);
	if (rc < 0)
		goto out;
	*out = w;
	w = NULL;
out:
	wal_index_free(w);
	return rc;
}

int wal_index_extend(struct wal_index *w, int fd, char **err)
{
	uint8_t hb[WAL_HEADER_SIZE];
	struct wal_header h;
	ssize_t n;

	if (w->hdr.page_size == 0)
		return 1; /* there was no WAL: scan it afresh */
	n = util_pread_all(fd, hb, sizeof hb, 0);
	if (n < 0)
		return util_err(err, (int)n, "wal: reading header: %s",
				strerror((int)-n));
	/* A file shorter than a header (truncated) or any other header is
	 * another generation. */
	if (n < WAL_HEADER_SIZE ||
	    wal_header_decode(&h, hb, NULL) < 0 ||
	    memcmp(&h, &w->hdr, sizeof h) != 0)
		return 1;
	return wal_scan_frames(w, fd, INT64_MAX, err);
}

const struct wal_header *wal_index_header(const struct wal_index *w)
{
	return &w->hdr;
}

uint32_t wal_index_commit(const struct wal_index *w)
{
	return w->commit;
}

uint32_t wal_index_frames(const struct wal_index *w)
{
	return w->frames;
}

int64_t wal_index_end(const struct wal_index *w)
{
	return w->end;
}

int64_t wal_index_lookup(const struct wal_index *w, uint32_t pgno)
{
	const struct wal_slot *s;

	if (pgno == 0)
		return -1;
	s = wal_map_find(&w->map, pgno);
	return s ? s->off : -1;
}

void wal_index_free(struct wal_index *w)
{
	if (!w)
		return;
	wal_map_release(&w->map);
	free(w);
}

static int wal_pgno_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

int wal_index_pages(const struct wal_index *w, int64_t min_off,
		    uint32_t **pgnos, size_t *n)
{
	const struct wal_map *m = &w->map;
	size_t k = 0;
	uint32_t *v = malloc(((size_t)m->count + 1) * sizeof *v);
	if (!v)
		return -ENOMEM;
	for (uint64_t i = 0; m->slots && i <= m->mask; i++) {
		const struct wal_slot *sl = &m->slots[i];
		if (sl->gen == m->gen && sl->off >= min_off)
			v[k++] = sl->pgno;
	}
	qsort(v, k, sizeof *v, wal_pgno_cmp);
	*pgnos = v;
	*n = k;
	return 0;
}
