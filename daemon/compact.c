/* compact.c: merging LTX files into the files of the higher levels.
 *
 * WHAT LITESTREAM DOES (v0.5.16: compactor.go, compaction_level.go, store.go,
 * db.go; and superfly/ltx compactor.go)
 *
 * Levels. L0 holds one file per sync. L1, L2 and L3 are compactions made
 * every 30 s, 5 min and 1 h; L9 holds snapshots, made every 24 h by default
 * (snapshot interval) and kept 24 h (snapshot retention). Level L (1..3) is
 * always made from level L-1 only.
 *
 * Schedule. One monitor per level sleeps until the next wall-clock multiple
 * of the level's interval (CompactionLevel.NextCompactionAt: now truncated
 * to the interval, plus the interval) and then compacts every database
 * (Store.CompactDB). A run is skipped as "too early" when the newest file of
 * the destination level was created after the last multiple
 * (PrevCompactionAt = now.Truncate(interval)), so a level gets at most one
 * file per interval even across restarts. The alignment is of *when* the
 * compaction runs, not of which files it takes.
 *
 * Inputs. Compactor.Compact(dst) takes the newest destination file's max
 * TXID, seeks the source level to max + 1 and takes *every* source file
 * from there on (LTXFiles(src, seek) lists the files whose min TXID >=
 * seek). The output is named after the smallest min and the largest max of
 * its inputs. L9 is not made by merging: DB.Snapshot streams the whole
 * database at its current position, skipped when the newest L9 already
 * reaches that TXID.
 *
 * The merge (ltx.Compactor.Compact): all inputs must have the same page
 * size and contiguous TXIDs (IsContiguous: min <= prev max + 1 and max >
 * prev max). The output header takes page size, min TXID and pre-apply
 * checksum from the first input, commit, max TXID and timestamp from the
 * last, flags from the caller (Litestream passes NoChecksum), and nothing
 * else: WAL offset/size/salts and node id stay zero. Pages are merged by
 * page number, the newest input holding a page wins, pages above the final
 * commit are skipped. Every input decoder is closed (which verifies its
 * file checksum) before the output's trailer is written; the post-apply
 * checksum is the last input's.
 *
 * THE MERGE HERE
 *
 * compact_merge follows the same rules with walrust's streaming codec. Each
 * input holds one decoded page ("head"); each step writes the smallest head
 * page number, taking the copy of the newest input that has it, and then
 * advances every input that had that page. Memory is one page buffer per
 * input plus each decoder's read-ahead (and its index spool, in memory up
 * to 1 MiB, on disk beyond) and the encoder: it depends on the number of
 * inputs, never on the size of the database. The minimum is found by a
 * linear scan, which costs less than decoding the page for the handful to
 * few dozen inputs a level merges (see compact_job.max_inputs). Checked
 * against the real thing: `litestream restore` (0.5.17) restores, byte for
 * byte, a file replica whose L9 file is this merge of a snapshot and an
 * incremental, and one whose L1 file merges two incrementals (a growth,
 * then a shrink) on top of an L9 snapshot.
 *
 * Invariants the merge checks (each with its own error):
 *  - the chain: n >= 1, equal page sizes, contiguous TXIDs;
 *  - a page written is <= the final commit, never the lock page (the
 *    decoders reject it on input), in ascending order (the merge order);
 *  - staleness: if a page's winning copy comes from input i but a later
 *    input shrank the database below that page, the copy is stale and some
 *    later input should have carried the page again when the database grew
 *    back (page-set rule 2); a chain breaking that rule is refused instead
 *    of producing a file with old data;
 *  - a snapshot output (inputs[0] is a snapshot) holds every page 1..commit
 *    but the lock page; a missing one is reported by number;
 *  - every input is read to its end and ltx_dec_finish verifies it (index,
 *    trailer, file checksum); with checksums, each link's pre-apply must
 *    equal its predecessor's post-apply.
 * The output header breaks no rule of ltx_header_validate. With NoChecksum
 * (the default) an output whose commit is 0 (an emptied database) cannot
 * be written: the format needs post-apply 0x8000000000000000 there, which a
 * NoChecksum file cannot carry, so that is refused (as Go's encoder does).
 * Because inputs are verified only at their end, bytes go out before the
 * merge knows it succeeds; on failure the output has no trailer and must be
 * dropped by the caller (never uploaded).
 *
 * THE PLAN
 *
 * compact_plan decides, from a listing, what the next file of a level is.
 * Let `boundary` be now rounded down to a multiple of the level's interval
 * (counted from the Unix epoch, which matches Go's Time.Truncate for every
 * interval that divides a day: 30 s, 5 min, 1 h, 24 h).
 *
 *  - Levels 1..8 take the source level's files (level - 1) whose min TXID
 *    is past the newest destination file's max (all of them when the
 *    destination level is empty), oldest first, as Litestream, but only
 *    those whose timestamp is <= boundary: the run stops at the first file
 *    written after the boundary. Litestream's runs happen at the
 *    boundaries, so it takes (up to its own latency) the same files; making
 *    the cut exact makes the plan idempotent: asked again within the same
 *    interval it finds nothing, without needing the upload times that
 *    Litestream's "too early" test reads and a listing may not have (ours
 *    carries LTX header timestamps, which for a compaction is its newest
 *    input's time). Litestream's test is kept too, for files it wrote: when
 *    the newest destination file's timestamp is after the boundary, the
 *    level was compacted in this interval already.
 *  - Files of one level that overlap are resolved by taking the one that
 *    reaches furthest and skipping those it contains. If the source level
 *    has a gap, only the run before it is planned and job->gap is set (the
 *    merge refuses a non-contiguous chain); a gap between the destination
 *    and the first source file is planned anyway, as Litestream does, with
 *    job->gap set: the replica lost data there, the caller should say so,
 *    and only a new snapshot repairs the chain. When the first input has
 *    min TXID 1 the output is a snapshot.
 *  - Level 9 (walrust's addition: a snapshot made in the replica, without
 *    reading the database) takes the restore plan of the state at the
 *    boundary (replica_plan with not_after = boundary: the newest snapshot,
 *    then the chain) when it reaches past the newest L9 file. The merge of
 *    a snapshot with the incrementals after it is a snapshot at the chain's
 *    end, page for page what applying them in order gives. job->gap is set
 *    when the chain stops short of the newest file it could use.
 *  - max_inputs caps the inputs (the oldest are taken, the rest wait for
 *    the next call, which is due at once since the new file is older than
 *    the boundary), bounding the merge's memory after a long outage.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "compact.h"
#include "daemon.h"

/* ---------------------------------------------------------------- merge */

struct compact_input {
	struct ltx_dec *dec;
	const struct ltx_header *h;
	uint8_t *page;	       /* the head page */
	uint32_t pgno;	       /* its number; 0 once the input is exhausted */
	uint32_t later_commit; /* smallest commit of the inputs after this one */
	uint64_t post_apply;   /* after ltx_dec_finish */
};

/* Prefix a decoder's error with the input it came from. */
static int compact_input_err(char **err, int rc, size_t i,
			     const struct ltx_header *h, const char *what,
			     char *e)
{
	rc = util_err(err, rc,
		      "input %zu (TXIDs %016" PRIx64 "-%016" PRIx64 "): %s: %s",
		      i, h->min_txid, h->max_txid, what,
		      e ? e : strerror(-rc));
	free(e);
	return rc;
}

static int compact_advance(struct compact_input *in, size_t i, char **err)
{
	char *e = NULL;
	int rc = ltx_dec_page(in->dec, &in->pgno, in->page, &e);
	if (rc < 0)
		return compact_input_err(err, rc, i, in->h, "reading a page", e);
	if (rc == 0)
		in->pgno = 0;
	return 0;
}

static int compact_check_chain(struct ltx_dec **inputs, size_t n,
			       const struct compact_opts *o, char **err)
{
	if (n == 0)
		return util_err(err, -EINVAL, "compaction needs at least one input");
	for (size_t i = 0; i < n; i++) {
		if (!inputs[i])
			return util_err(err, -EINVAL, "input %zu is NULL", i);
		const struct ltx_header *h = ltx_dec_header(inputs[i]);
		if (o->checksums && (h->flags & LTX_FLAG_NO_CHECKSUM))
			return util_err(err, -EINVAL,
					"input %zu (TXIDs %016" PRIx64 "-%016" PRIx64
					") has no checksums (NoChecksum): compact it without checksums",
					i, h->min_txid, h->max_txid);
		if (i == 0)
			continue;
		const struct ltx_header *p = ltx_dec_header(inputs[i - 1]);
		if (h->page_size != p->page_size)
			return util_err(err, -EINVAL,
					"input %zu has page size %" PRIu32
					" but input %zu has %" PRIu32,
					i, h->page_size, i - 1, p->page_size);
		if (h->min_txid > p->max_txid + 1)
			return util_err(err, -EINVAL,
					"non-contiguous inputs: input %zu (TXIDs %016" PRIx64
					"-%016" PRIx64 ") leaves a gap after input %zu (TXIDs %016" PRIx64
					"-%016" PRIx64 ")",
					i, h->min_txid, h->max_txid, i - 1,
					p->min_txid, p->max_txid);
		if (h->max_txid <= p->max_txid)
			return util_err(err, -EINVAL,
					"inputs out of order: input %zu (TXIDs %016" PRIx64
					"-%016" PRIx64 ") does not reach past input %zu (TXIDs %016" PRIx64
					"-%016" PRIx64 ")",
					i, h->min_txid, h->max_txid, i - 1,
					p->min_txid, p->max_txid);
	}
	return 0;
}

/* The page a snapshot must hold after `prev`. */
static uint32_t compact_snapshot_next(uint32_t prev, uint32_t lock)
{
	uint32_t next = prev + 1;
	return next == lock ? next + 1 : next;
}

/* Verify every input to its end; with checksums, check each link. */
static int compact_finish_inputs(struct compact_input *in, size_t n,
				 const struct compact_opts *o, char **err)
{
	for (size_t i = 0; i < n; i++) {
		char *e = NULL;
		int rc = ltx_dec_finish(in[i].dec, &in[i].post_apply, NULL, &e);
		if (rc < 0)
			return compact_input_err(err, rc, i, in[i].h,
						 "verifying the file", e);
	}
	if (!o->checksums)
		return 0;
	for (size_t i = 1; i < n; i++) {
		const struct ltx_header *h = in[i].h, *p = in[i - 1].h;
		if (h->min_txid != p->max_txid + 1 ||
		    ltx_header_is_snapshot(h))
			continue;
		if (h->pre_apply_checksum != in[i - 1].post_apply)
			return util_err(err, -EBADMSG,
					"broken chain: input %zu (TXIDs %016" PRIx64 "-%016" PRIx64
					") expects pre-apply checksum %016" PRIx64
					" but input %zu ends with %016" PRIx64,
					i, h->min_txid, h->max_txid,
					h->pre_apply_checksum, i - 1,
					in[i - 1].post_apply);
	}
	return 0;
}

/* The merge loop proper. */
static int compact_pages(struct compact_input *in, size_t n,
			 struct ltx_enc *enc, const struct ltx_header *h,
			 char **err)
{
	uint32_t lock = ltx_lock_pgno(h->page_size), want = 1;
	bool snapshot = ltx_header_is_snapshot(h);
	int rc;

	for (size_t i = 0; i < n; i++) {
		rc = compact_advance(&in[i], i, err);
		if (rc < 0)
			return rc;
	}
	for (;;) {
		uint32_t pgno = 0;
		size_t win = 0;
		for (size_t i = 0; i < n; i++)
			if (in[i].pgno && (pgno == 0 || in[i].pgno <= pgno)) {
				pgno = in[i].pgno; /* the last one wins a tie */
				win = i;
			}
		if (pgno == 0)
			break;
		if (pgno <= h->commit) {
			if (pgno > in[win].later_commit)
				return util_err(err, -EINVAL,
						"page %" PRIu32 " of input %zu (TXIDs %016" PRIx64
						"-%016" PRIx64 ") was cut off by a later input shrinking the database to %" PRIu32
						" pages, and no input after that carries it again: the chain breaks the growth rule",
						pgno, win, in[win].h->min_txid,
						in[win].h->max_txid,
						in[win].later_commit);
			if (snapshot && pgno != want)
				return util_err(err, -EINVAL,
						"no input holds page %" PRIu32
						": the inputs do not make a complete database",
						want);
			char *e = NULL;
			rc = ltx_enc_page(enc, pgno, in[win].page, &e);
			if (rc < 0) {
				rc = util_err(err, rc, "writing page %" PRIu32 ": %s",
					      pgno, e ? e : strerror(-rc));
				free(e);
				return rc;
			}
			want = compact_snapshot_next(pgno, lock);
		}
		for (size_t i = 0; i < n; i++)
			if (in[i].pgno == pgno) {
				rc = compact_advance(&in[i], i, err);
				if (rc < 0)
					return rc;
			}
	}
	if (snapshot && want <= h->commit)
		return util_err(err, -EINVAL,
				"no input holds pages %" PRIu32 "..%" PRIu32
				": the inputs do not make a complete database",
				want, h->commit);
	return 0;
}

int compact_merge(struct ltx_dec **inputs, size_t n,
		  const struct compact_opts *o, ltx_write_fn write, void *ctx,
		  struct ltx_header *out_hdr, char **err)
{
	static const struct compact_opts defaults;
	struct compact_input *in = NULL;
	struct ltx_enc *enc = NULL;
	struct ltx_header h;
	int rc;

	if (!o)
		o = &defaults;
	rc = compact_check_chain(inputs, n, o, err);
	if (rc < 0)
		return rc;
	const struct ltx_header *first = ltx_dec_header(inputs[0]);
	const struct ltx_header *last = ltx_dec_header(inputs[n - 1]);
	memset(&h, 0, sizeof h);
	h.flags = o->checksums ? 0 : LTX_FLAG_NO_CHECKSUM;
	h.page_size = first->page_size;
	h.commit = last->commit;
	h.min_txid = first->min_txid;
	h.max_txid = last->max_txid;
	h.timestamp = last->timestamp;
	h.pre_apply_checksum = o->checksums ? first->pre_apply_checksum : 0;
	if (!o->checksums && h.commit == 0)
		return util_err(err, -EINVAL,
				"the chain ends with an empty database (commit 0), which a NoChecksum file cannot hold: compact it with checksums");

	in = calloc(n, sizeof *in);
	if (!in) {
		rc = util_err(err, -ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		in[i].dec = inputs[i];
		in[i].h = ltx_dec_header(inputs[i]);
		in[i].page = malloc(h.page_size);
		if (!in[i].page) {
			rc = util_err(err, -ENOMEM, "out of memory");
			goto out;
		}
	}
	in[n - 1].later_commit = UINT32_MAX;
	for (size_t i = n - 1; i-- > 0;) {
		uint32_t c = in[i + 1].h->commit;
		in[i].later_commit = c < in[i + 1].later_commit
					     ? c
					     : in[i + 1].later_commit;
	}

	char *e = NULL;
	rc = ltx_enc_new(&enc, &h, write, ctx, &e);
	if (rc < 0) {
		rc = util_err(err, rc, "output header: %s", e ? e : strerror(-rc));
		free(e);
		goto out;
	}
	rc = compact_pages(in, n, enc, &h, err);
	if (rc < 0)
		goto out;
	rc = compact_finish_inputs(in, n, o, err);
	if (rc < 0)
		goto out;
	rc = ltx_enc_finish(enc, o->checksums ? in[n - 1].post_apply : 0, NULL,
			    &e);
	if (rc < 0) {
		rc = util_err(err, rc, "finishing the output: %s",
			      e ? e : strerror(-rc));
		free(e);
		goto out;
	}
	if (out_hdr)
		*out_hdr = h;
out:
	ltx_enc_free(enc);
	if (in)
		for (size_t i = 0; i < n; i++)
			free(in[i].page);
	free(in);
	return rc;
}

/* ----------------------------------------------------------------- plan */

struct compact_ent {
	uint64_t min, max;
	size_t i;
};

/* By min TXID ascending, then max descending: the file reaching furthest
 * comes first among those starting at the same TXID. */
static int compact_ent_cmp(const void *a, const void *b)
{
	const struct compact_ent *x = a, *y = b;
	if (x->min != y->min)
		return x->min < y->min ? -1 : 1;
	if (x->max != y->max)
		return x->max > y->max ? -1 : 1;
	return 0;
}

/* The newest file (highest max TXID) of a level, or SIZE_MAX. */
static size_t compact_newest(const struct replica_file *files, size_t n,
			     int level)
{
	size_t best = SIZE_MAX;
	for (size_t i = 0; i < n; i++)
		if (files[i].level == level &&
		    (best == SIZE_MAX || files[i].max_txid > files[best].max_txid))
			best = i;
	return best;
}

static void compact_cap(struct compact_job *job, size_t *np)
{
	if (job->max_inputs && *np > job->max_inputs)
		*np = job->max_inputs;
}

static int compact_plan_snapshot(const struct replica_file *files, size_t n,
				 size_t dst, struct compact_job *job,
				 size_t *idx)
{
	int64_t at = job->due_ms > 0 ? job->due_ms : 1;
	uint64_t reached, newest = 0;
	size_t np = replica_plan(files, n, UINT64_MAX, at, idx, &reached);
	if (np == 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (files[i].timestamp <= at && files[i].max_txid > newest)
			newest = files[i].max_txid;
	job->gap = reached < newest;
	compact_cap(job, &np);
	reached = files[idx[np - 1]].max_txid;
	if (dst != SIZE_MAX && reached <= files[dst].max_txid)
		return 0;
	job->n = np;
	job->min_txid = 1;
	job->max_txid = reached;
	job->snapshot = true;
	return 1;
}

static int compact_plan_level(const struct replica_file *files, size_t n,
			      size_t dst, struct compact_job *job,
			      size_t *idx, char **err)
{
	struct compact_ent *ent;
	uint64_t seek = dst == SIZE_MAX ? 1 : files[dst].max_txid + 1, cur = 0;
	size_t m = 0, np = 0;

	ent = malloc((n ? n : 1) * sizeof *ent);
	if (!ent)
		return util_err(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++)
		if (files[i].level == job->level - 1 &&
		    files[i].min_txid >= seek) {
			ent[m].min = files[i].min_txid;
			ent[m].max = files[i].max_txid;
			ent[m].i = i;
			m++;
		}
	qsort(ent, m, sizeof *ent, compact_ent_cmp);
	for (size_t k = 0; k < m; k++) {
		const struct replica_file *f = &files[ent[k].i];
		if (np > 0 && ent[k].max <= cur)
			continue; /* contained in the previous input */
		if (np > 0 && ent[k].min > cur + 1) {
			job->gap = true; /* the run stops at a hole */
			break;
		}
		if (f->timestamp > job->due_ms)
			break; /* written after the boundary: next time */
		if (np == 0 && dst != SIZE_MAX && ent[k].min > seek)
			job->gap = true; /* a hole before the first input */
		idx[np++] = ent[k].i;
		cur = ent[k].max;
	}
	free(ent);
	compact_cap(job, &np);
	if (np == 0)
		return 0;
	job->n = np;
	job->min_txid = files[idx[0]].min_txid;
	job->max_txid = files[idx[np - 1]].max_txid;
	job->snapshot = job->min_txid == 1;
	return 1;
}

int compact_plan(const struct replica_file *files, size_t n, int64_t now_ms,
		 struct compact_job *job, size_t *idx, char **err)
{
	if (job->level < 1 || job->level > REPLICA_SNAPSHOT_LEVEL)
		return util_err(err, -EINVAL,
				"cannot compact into level %d (levels 1..%d)",
				job->level, REPLICA_SNAPSHOT_LEVEL);
	if (job->interval_ms <= 0)
		return util_err(err, -EINVAL,
				"level %d needs an interval > 0", job->level);
	if (now_ms < 0)
		return util_err(err, -EINVAL, "time %" PRId64 " is before 1970",
				now_ms);
	job->n = 0;
	job->min_txid = job->max_txid = 0;
	job->snapshot = job->gap = false;
	job->due_ms = now_ms - now_ms % job->interval_ms;
	job->next_ms = job->due_ms + job->interval_ms;

	size_t dst = compact_newest(files, n, job->level);
	if (dst != SIZE_MAX && files[dst].timestamp > job->due_ms)
		return 0; /* compacted in this interval already */
	if (job->level == REPLICA_SNAPSHOT_LEVEL)
		return compact_plan_snapshot(files, n, dst, job, idx);
	return compact_plan_level(files, n, dst, job, idx, err);
}
