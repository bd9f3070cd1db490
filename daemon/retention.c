/* retention.c: which replica files may go.
 *
 * WHAT LITESTREAM DOES (v0.5.16: db.go, store.go, compactor.go)
 *
 * Snapshots. After every run of the snapshot level (every snapshot
 * interval, 24 h by default), DB.EnforceSnapshotRetention deletes the L9
 * files created before now - snapshot-retention (24 h by default), but
 * never the newest L9 file. It returns the max TXID of the snapshot just
 * before the oldest one kept (the newest deleted one; 0 when none was
 * deleted), and Store.EnforceSnapshotRetention hands it to
 * EnforceRetentionByTXID for every compaction level but L0: files whose max
 * TXID is below it are deleted, except the newest file of each level.
 * L1..L3 are thus never deleted by age alone, only once a deleted snapshot
 * has passed them, and without checking that the next level has compacted
 * them.
 *
 * L0. DB.EnforceL0RetentionByTime runs every 15 s and after each L1
 * compaction. With l0-retention <= 0 it does nothing (0 disables it, and
 * L0 files are then never deleted; the default is 5 min). It takes the
 * highest max TXID of L1 (no L1 file: nothing to do), walks L0 in TXID
 * order, stops at the first file created after now - l0-retention (so the
 * files kept stay contiguous), and deletes those whose max TXID is <= that
 * L1 TXID; when it walked the whole level the newest L0 file is kept.
 *
 * "Created" is the listing's time: S3 LastModified, or the file's mtime,
 * which the file backend sets to the LTX header timestamp.
 *
 * WHAT WALRUST DOES
 *
 * The same rules, with these changes (all but one keep more than
 * Litestream would):
 *
 *  1. The base. Let the window start be cutoff = now - snapshot-retention
 *     and B the newest snapshot (min TXID 1, any level) whose timestamp is
 *     <= cutoff. B is kept: a restore to a time just after the cutoff needs
 *     it, and Litestream, which deletes it, cannot restore those times
 *     until the next snapshot. L9 files strictly older than B (max TXID
 *     below B's and timestamp before the cutoff) are deleted; so are files
 *     of levels 1..8 whose max TXID <= B's, as none of them can serve a
 *     restore that starts from B or a newer snapshot (Litestream keeps
 *     those that end exactly at B's TXID: the one change that deletes
 *     more). Except: B itself, the newest file of each level, and files
 *     that level L+1 has not compacted yet (a file of level L < max_level
 *     goes only once a file of level L+1 covers its TXID range; otherwise
 *     the next compaction of L+1 would meet a hole). Without a B, no
 *     snapshot and no L1..L8 file is deleted.
 *  2. L0. Walked in TXID order, stopping at the first file newer than
 *     now - l0-retention, as Litestream. A file goes when an L1 file
 *     *covers its TXID range* (Litestream only compares it with the
 *     highest L1 TXID, which a hole in L1 fools) and that L1 file is
 *     itself older than l0-retention. The second condition deletes the L0
 *     files of one L1 file all together: deleting only the older ones
 *     would leave, for restores to a time between the newest deleted L0
 *     file and the L1 file's timestamp, a chain with a hole in it (the L1
 *     file is too new to use, the L0 files after the hole are not), which
 *     restore rightly refuses. The newest L0 file always stays.
 *  3. Unknown timestamps (<= 0) never count as old: such a file is never
 *     B, and it stops the L0 walk.
 *  4. Leases protect the files in-flight readers need (see below).
 *  5. The guarantee is then checked, and repaired, on the result.
 *
 * THE GUARANTEE, AND HOW IT IS CHECKED
 *
 * A restore to time t (restore.c) plans with replica_plan over the files
 * whose timestamp is <= t: the newest such snapshot, then the chain, and it
 * fails when the chain stops short of the newest such file (a gap). Call t
 * "restorable" over a set of files when there is a usable snapshot and no
 * gap. The promise: every t in [cutoff, now] that was restorable before the
 * deletion stays restorable after it, and the latest restore reaches at
 * least the TXID it reached before. (Granularity may coarsen: when L0
 * files go, a restore to a time between two L1 files lands on the older
 * one. That is Litestream's model.)
 *
 * The plan over the files usable at t only changes at file timestamps, so
 * checking t = cutoff and every file timestamp in (cutoff, now] covers the
 * window (times before the oldest deleted file's timestamp see the same
 * files before and after, and are skipped). Each check is one sweep over
 * the files sorted by min TXID: from the newest usable snapshot, extend
 * the reach by every usable file that starts at or before reach + 1; it
 * reaches exactly what replica_plan's furthest-first walk reaches. If a
 * time fails, every file of the plan that served it before is put back,
 * and the whole check starts over; it ends because each round keeps at
 * least one more file, and keeping everything passes trivially. Rules 1-3
 * are designed never to fail the check on a replica that Litestream's or
 * walrust's compaction produced (the property test in test-retention.c
 * grows such replicas for days); what it catches are leases that keep one
 * L0 file of an L1 group whose neighbours go, upload-time stamps later
 * than the data they hold, holes, odd levels.
 *
 * LEASES
 *
 * A reader that needs files (a restore that planned its chain, a
 * compaction reading its inputs) holds a lease per file (level, min, max)
 * or one lease for a TXID range at every level (level -1), with an expiry
 * so a crashed reader does not pin files for ever; it renews the lease
 * while it reads. The owner of retention (the worker that replicates the
 * database) keeps the live leases and passes them here; leased files are
 * never deleted, whatever the rules say. The race between listing and
 * leasing is closed on the reader's side: it plans, takes its leases, and
 * then lists again to check every planned file still exists (or treats a
 * missing file as a reason to plan again, never as a gap).
 *
 * MEMORY AND TIME
 *
 * O(n) memory; O(n log n) for the rules and O(n) per checked time, so
 * O(n * t) for the check, t the number of distinct timestamps in the
 * window after the oldest deleted file's: about 0.2 s for the 7,000 files
 * of two days at Litestream's default intervals when the whole window is
 * checked (a snapshot-retention run), milliseconds for an L0-only run.
 */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "retention.h"

#define RETENTION_LEVELS 256 /* replica_parse_key accepts levels 0..255 */

struct retention_ent {
	uint64_t min, max;
	int64_t ts;
	int level;
	size_t i; /* index into files */
};

/* A set of covering files: sorted by min TXID, with the running max of
 * their max TXIDs, so "does a file cover [min, max]" is one search. */
struct retention_cover {
	struct retention_ent *e;
	uint64_t *pmax;
	size_t n;
};

struct retention {
	const struct replica_file *f;
	size_t n;
	struct retention_ent *ent; /* by level, then min asc, max desc */
	size_t lstart[RETENTION_LEVELS + 1]; /* level L: [lstart[L], lstart[L+1]) */
	uint64_t *pmax;		   /* running max of max TXIDs within a level */
	size_t *by_min;		   /* every index, by min TXID asc */
	bool *del;
	size_t *plan; /* replica_plan scratch */
	int64_t *times;
};

static int retention_ent_cmp(const void *a, const void *b)
{
	const struct retention_ent *x = a, *y = b;
	if (x->level != y->level)
		return x->level < y->level ? -1 : 1;
	if (x->min != y->min)
		return x->min < y->min ? -1 : 1;
	if (x->max != y->max)
		return x->max > y->max ? -1 : 1;
	return x->i < y->i ? -1 : x->i > y->i;
}

static int retention_time_cmp(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

static bool retention_level_ok(int level)
{
	return level >= 0 && level < RETENTION_LEVELS;
}

/* Does a file of the set cover [min, max]? The last file starting at or
 * before min, with the furthest reach among those, decides. */
static bool retention_covered(const struct retention_cover *c, uint64_t min,
			      uint64_t max)
{
	size_t lo = 0, hi = c->n;
	while (lo < hi) { /* first entry with e.min > min */
		size_t mid = lo + (hi - lo) / 2;
		if (c->e[mid].min <= min)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo > 0 && c->pmax[lo - 1] >= max;
}

static void retention_cover_init(struct retention_cover *c,
				 struct retention_ent *e, uint64_t *pmax,
				 size_t n)
{
	c->e = e;
	c->pmax = pmax;
	c->n = n;
}

/* ---------------------------------------------------- the check (sweep) */

struct retention_state {
	bool snapshot;	 /* a usable snapshot exists */
	uint64_t reached; /* what the restore plan reaches */
	uint64_t newest;  /* the newest usable file's max TXID */
};

static bool retention_usable(const struct retention *r, size_t i,
			     const bool *del, int64_t t)
{
	if (del && del[i])
		return false;
	return t <= 0 || r->f[i].timestamp <= t;
}

/* What a restore to time t (t <= 0: the newest state) sees. */
static struct retention_state retention_state_at(const struct retention *r,
						  const bool *del, int64_t t)
{
	struct retention_state s = {0};
	uint64_t cur = 0;

	for (size_t i = 0; i < r->n; i++) {
		if (!retention_usable(r, i, del, t))
			continue;
		if (r->f[i].max_txid > s.newest)
			s.newest = r->f[i].max_txid;
		if (r->f[i].min_txid == 1) {
			s.snapshot = true;
			if (r->f[i].max_txid > cur)
				cur = r->f[i].max_txid;
		}
	}
	if (!s.snapshot)
		return s;
	for (size_t k = 0; k < r->n; k++) {
		size_t i = r->by_min[k];
		if (!retention_usable(r, i, del, t) || r->f[i].max_txid <= cur)
			continue;
		if (r->f[i].min_txid > cur + 1)
			break;
		cur = r->f[i].max_txid;
	}
	s.reached = cur;
	return s;
}

static bool retention_ok(struct retention_state s)
{
	return s.snapshot && s.reached == s.newest;
}

/* 1 when t passes; 0 when it failed and files were put back; -1 when it
 * failed and nothing could be put back (cannot happen; give up then). */
static int retention_check_at(struct retention *r, int64_t t)
{
	struct retention_state all = retention_state_at(r, NULL, t);
	struct retention_state kept = retention_state_at(r, r->del, t);
	bool fail = retention_ok(all) && !retention_ok(kept);
	if (t <= 0 && kept.reached < all.reached)
		fail = true;
	if (!fail)
		return 1;
	uint64_t reached;
	size_t np = replica_plan(r->f, r->n, UINT64_MAX, t, r->plan, &reached);
	bool changed = false;
	for (size_t k = 0; k < np; k++)
		if (r->del[r->plan[k]]) {
			r->del[r->plan[k]] = false;
			changed = true;
		}
	return changed ? 0 : -1;
}

/* Put back files until every time of the window passes. */
static void retention_verify(struct retention *r, int64_t cutoff,
			     int64_t now)
{
	size_t nt = 0;

	if (cutoff < 1)
		cutoff = 1; /* replica_plan reads not_after <= 0 as "latest" */
	r->times[nt++] = cutoff;
	for (size_t i = 0; i < r->n; i++)
		if (r->f[i].timestamp > cutoff && r->f[i].timestamp <= now)
			r->times[nt++] = r->f[i].timestamp;
	qsort(r->times, nt, sizeof *r->times, retention_time_cmp);

	for (;;) {
		bool any = false;
		int64_t tmin = INT64_MAX;
		for (size_t i = 0; i < r->n; i++)
			if (r->del[i]) {
				any = true;
				if (r->f[i].timestamp < tmin)
					tmin = r->f[i].timestamp;
			}
		if (!any)
			return;
		int rc = retention_check_at(r, 0);
		for (size_t k = 0; rc == 1 && k < nt; k++) {
			if (k > 0 && r->times[k] == r->times[k - 1])
				continue;
			/* Before the oldest deleted file, nothing differs. */
			if (r->times[k] < tmin)
				continue;
			rc = retention_check_at(r, r->times[k]);
		}
		if (rc == 1)
			return;
		if (rc < 0) {
			memset(r->del, 0, r->n * sizeof *r->del);
			return;
		}
	}
}

/* ------------------------------------------------------------ the rules */

/* The newest snapshot with a known timestamp <= cutoff, or SIZE_MAX. */
static size_t retention_base(const struct retention *r, int64_t cutoff)
{
	size_t b = SIZE_MAX;
	for (size_t i = 0; i < r->n; i++) {
		const struct replica_file *f = &r->f[i];
		if (f->min_txid != 1 || f->timestamp <= 0 ||
		    f->timestamp > cutoff)
			continue;
		if (b == SIZE_MAX || f->max_txid > r->f[b].max_txid ||
		    (f->max_txid == r->f[b].max_txid && f->level > r->f[b].level))
			b = i;
	}
	return b;
}

/* The index (into files) of the newest file of a level, or SIZE_MAX. */
static size_t retention_newest(const struct retention *r, int level)
{
	size_t s = r->lstart[level], e = r->lstart[level + 1];
	if (s == e)
		return SIZE_MAX;
	for (size_t k = s; k < e; k++)
		if (r->ent[k].max == r->pmax[e - 1])
			return r->ent[k].i;
	return SIZE_MAX;
}

static void retention_cover_level(const struct retention *r, int level,
				  struct retention_cover *c)
{
	size_t s = r->lstart[level];
	retention_cover_init(c, r->ent + s, r->pmax + s,
			     r->lstart[level + 1] - s);
}

/* Rule 1: snapshots older than the base, levels 1..8 up to the base. */
static void retention_rule_base(struct retention *r, int64_t cutoff,
				int max_level)
{
	size_t b = retention_base(r, cutoff);
	if (b == SIZE_MAX)
		return;
	uint64_t base = r->f[b].max_txid;
	for (int level = 1; level < RETENTION_LEVELS; level++) {
		size_t newest = retention_newest(r, level);
		struct retention_cover up = {0};
		bool need_cover = level < max_level;
		if (need_cover)
			retention_cover_level(r, level + 1, &up);
		for (size_t k = r->lstart[level]; k < r->lstart[level + 1];
		     k++) {
			const struct retention_ent *e = &r->ent[k];
			if (e->i == b || e->i == newest)
				continue;
			if (level == REPLICA_SNAPSHOT_LEVEL) {
				if (e->max < base && e->ts > 0 &&
				    e->ts < cutoff)
					r->del[e->i] = true;
				continue;
			}
			if (e->max > base)
				continue;
			if (need_cover && !retention_covered(&up, e->min, e->max))
				continue;
			r->del[e->i] = true;
		}
	}
}

/* Rule 2: L0 files covered by an L1 file older than l0-retention. */
static int retention_rule_l0(struct retention *r, int64_t threshold)
{
	size_t s1 = r->lstart[1], e1 = r->lstart[2], m = 0;
	struct retention_ent *old = malloc((e1 - s1 + 1) * sizeof *old);
	uint64_t *pmax = malloc((e1 - s1 + 1) * sizeof *pmax);
	struct retention_cover c;
	int rc = 0;

	if (!old || !pmax) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t k = s1; k < e1; k++) {
		if (r->ent[k].ts <= 0 || r->ent[k].ts > threshold)
			continue;
		old[m] = r->ent[k];
		pmax[m] = m && pmax[m - 1] > old[m].max ? pmax[m - 1]
							: old[m].max;
		m++;
	}
	retention_cover_init(&c, old, pmax, m);
	size_t newest = retention_newest(r, 0);
	for (size_t k = r->lstart[0]; k < r->lstart[1]; k++) {
		const struct retention_ent *e = &r->ent[k];
		if (e->ts <= 0 || e->ts > threshold)
			break; /* too recent: keep the rest contiguous */
		if (e->i != newest && retention_covered(&c, e->min, e->max))
			r->del[e->i] = true;
	}
out:
	free(old);
	free(pmax);
	return rc;
}

/* Rule 4: leases. */
static void retention_rule_leases(struct retention *r,
				  const struct retention_opts *o, int64_t now)
{
	for (size_t j = 0; j < o->nleases; j++) {
		const struct retention_lease *l = &o->leases[j];
		if (l->until_ms != 0 && l->until_ms <= now)
			continue; /* expired */
		for (size_t i = 0; i < r->n; i++) {
			const struct replica_file *f = &r->f[i];
			if ((l->level < 0 || l->level == f->level) &&
			    f->min_txid <= l->max_txid &&
			    f->max_txid >= l->min_txid)
				r->del[i] = false;
		}
	}
}

static int retention_by_min_cmp(const void *a, const void *b)
{
	const struct retention_ent *x = a, *y = b;
	if (x->min != y->min)
		return x->min < y->min ? -1 : 1;
	return x->max > y->max ? -1 : x->max < y->max;
}

static int retention_init(struct retention *r, const struct replica_file *f,
			  size_t n)
{
	struct retention_ent *tmp;
	size_t m = 0;

	memset(r, 0, sizeof *r);
	r->f = f;
	r->n = n;
	r->ent = malloc(n * sizeof *r->ent);
	r->pmax = malloc(n * sizeof *r->pmax);
	r->by_min = malloc(n * sizeof *r->by_min);
	r->del = calloc(n, sizeof *r->del);
	r->plan = malloc(n * sizeof *r->plan);
	r->times = malloc((n + 1) * sizeof *r->times);
	tmp = malloc(n * sizeof *tmp);
	if (!r->ent || !r->pmax || !r->by_min || !r->del || !r->plan ||
	    !r->times || !tmp) {
		free(tmp);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		struct retention_ent e = {.min = f[i].min_txid,
					  .max = f[i].max_txid,
					  .ts = f[i].timestamp,
					  .level = f[i].level,
					  .i = i};
		tmp[i] = e;
		if (retention_level_ok(e.level))
			r->ent[m++] = e;
	}
	qsort(tmp, n, sizeof *tmp, retention_by_min_cmp);
	for (size_t i = 0; i < n; i++)
		r->by_min[i] = tmp[i].i;
	free(tmp);
	qsort(r->ent, m, sizeof *r->ent, retention_ent_cmp);
	size_t k = 0;
	for (int level = 0; level <= RETENTION_LEVELS; level++) {
		while (k < m && r->ent[k].level < level)
			k++;
		r->lstart[level] = k;
	}
	for (k = 0; k < m; k++)
		r->pmax[k] = k > 0 && r->ent[k - 1].level == r->ent[k].level &&
					     r->pmax[k - 1] > r->ent[k].max
				     ? r->pmax[k - 1]
				     : r->ent[k].max;
	return 0;
}

static void retention_clear(struct retention *r)
{
	free(r->ent);
	free(r->pmax);
	free(r->by_min);
	free(r->del);
	free(r->plan);
	free(r->times);
}

size_t retention_plan(const struct replica_file *files, size_t n,
		      const struct retention_opts *o, int64_t now_ms,
		      size_t *delete_idx)
{
	struct retention r;
	size_t count = 0;

	if (!o || n == 0 || o->snapshot_retention_ms <= 0)
		return 0;
	if (retention_init(&r, files, n) < 0)
		goto out;
	int max_level = o->max_level > 0 ? o->max_level : RETENTION_MAX_LEVEL;
	if (max_level >= REPLICA_SNAPSHOT_LEVEL)
		max_level = REPLICA_SNAPSHOT_LEVEL - 1;
	int64_t cutoff = now_ms - o->snapshot_retention_ms;

	retention_rule_base(&r, cutoff, max_level);
	if (o->l0_retention_ms > 0 &&
	    retention_rule_l0(&r, now_ms - o->l0_retention_ms) < 0) {
		count = 0;
		goto out;
	}
	retention_rule_leases(&r, o, now_ms);
	retention_verify(&r, cutoff, now_ms);
	for (size_t i = 0; i < n; i++)
		if (r.del[i])
			delete_idx[count++] = i;
out:
	retention_clear(&r);
	return count;
}
