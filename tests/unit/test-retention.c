/* test-retention.c: retention (retention.c).
 *
 * Hand-made replicas for each rule (Litestream's, and where walrust keeps
 * more), leases, the repair of a deletion that would cut a chain; and a
 * property test: replicas grown by a simulated replicator (syncs, the
 * compaction plan of compact.c for L1-L3 and L9, lost uploads healed by a
 * fresh snapshot, upload-time jitter), retention run over and over, and
 * after every run each time in the window that was restorable (checked with
 * replica_plan, as restore.c does) still is, the newest state is still
 * reachable, and the chain from the oldest kept snapshot reaches the newest
 * file. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compact.h"
#include "daemon.h"
#include "retention.h"
#include "suites.h"

#define SEC 1000LL
#define MINUTE (60 * SEC)
#define HOUR (60 * MINUTE)

static struct replica_file F(int level, uint64_t mn, uint64_t mx, int64_t ts)
{
	struct replica_file f = {.level = level, .min_txid = mn,
				 .max_txid = mx, .timestamp = ts};
	return f;
}

/* ---------------------------------------------------------------- checks */

/* What restore.c would do for time t (t <= 0: latest): 1 and the TXID
 * when it succeeds, 0 when there is no snapshot or the chain has a gap. */
static int restore_at(const struct replica_file *f, size_t n, int64_t t,
		      uint64_t *reached)
{
	size_t *plan = malloc((n + 1) * sizeof *plan);
	uint64_t newest = 0;
	ck_assert_ptr_nonnull(plan);
	size_t np = replica_plan(f, n, UINT64_MAX, t, plan, reached);
	free(plan);
	for (size_t i = 0; i < n; i++)
		if ((t <= 0 || f[i].timestamp <= t) && f[i].max_txid > newest)
			newest = f[i].max_txid;
	return np > 0 && *reached == newest;
}

/* files minus the deleted ones (del: ascending indices). */
static size_t kept_files(const struct replica_file *f, size_t n,
			 const size_t *del, size_t nd, struct replica_file *out)
{
	size_t m = 0, k = 0;
	for (size_t i = 0; i < n; i++) {
		if (k < nd && del[k] == i) {
			k++;
			continue;
		}
		out[m++] = f[i];
	}
	ck_assert_uint_eq(k, nd);
	return m;
}

static bool deleted(const size_t *del, size_t nd, size_t i)
{
	for (size_t k = 0; k < nd; k++)
		if (del[k] == i)
			return true;
	return false;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

/* The guarantee: every time of [now - retention, now] restorable before
 * is restorable after; the latest restore reaches as far as before. */
static void check_window(const struct replica_file *before, size_t nb,
			 const struct replica_file *after, size_t na,
			 int64_t cutoff, int64_t now, const char *what)
{
	int64_t *times = malloc((nb + 1) * sizeof *times);
	size_t nt = 0;
	uint64_t rb, ra;
	ck_assert_ptr_nonnull(times);
	times[nt++] = cutoff > 1 ? cutoff : 1;
	for (size_t i = 0; i < nb; i++)
		if (before[i].timestamp > cutoff && before[i].timestamp <= now)
			times[nt++] = before[i].timestamp;
	qsort(times, nt, sizeof *times, cmp_i64);
	for (size_t k = 0; k < nt; k++) {
		if (k > 0 && times[k] == times[k - 1])
			continue;
		if (!restore_at(before, nb, times[k], &rb))
			continue;
		ck_assert_msg(restore_at(after, na, times[k], &ra),
			      "%s: time %lld was restorable (txid %llu) and is not any more",
			      what, (long long)times[k], (unsigned long long)rb);
	}
	int okb = restore_at(before, nb, 0, &rb);
	int oka = restore_at(after, na, 0, &ra);
	ck_assert_msg(!okb || oka, "%s: the latest state is no longer restorable",
		      what);
	ck_assert_msg(ra >= rb, "%s: latest restore reached %llu, now %llu",
		      what, (unsigned long long)rb, (unsigned long long)ra);
	free(times);
}

/* The chain from the oldest kept L9 snapshot reaches the newest file
 * through incrementals: newer L9 snapshots are left out, and compactions
 * that start at TXID 1 count as incrementals (min 2) so that the plan
 * must start from that snapshot. */
static void check_chain_from_oldest(const struct replica_file *f, size_t n,
				    const char *what)
{
	size_t oldest = SIZE_MAX;
	uint64_t newest = 0, reached;
	for (size_t i = 0; i < n; i++) {
		if (f[i].max_txid > newest)
			newest = f[i].max_txid;
		if (f[i].level == REPLICA_SNAPSHOT_LEVEL && f[i].min_txid == 1 &&
		    (oldest == SIZE_MAX || f[i].max_txid < f[oldest].max_txid))
			oldest = i;
	}
	if (oldest == SIZE_MAX)
		return;
	struct replica_file *g = malloc((n + 1) * sizeof *g);
	size_t m = 0, *plan = malloc((n + 1) * sizeof *plan);
	ck_assert(g && plan);
	for (size_t i = 0; i < n; i++) {
		if (i != oldest && f[i].min_txid == 1 &&
		    (f[i].level == REPLICA_SNAPSHOT_LEVEL || f[i].max_txid < 2))
			continue;
		g[m] = f[i];
		if (i != oldest && f[i].min_txid == 1)
			g[m].min_txid = 2;
		m++;
	}
	size_t np = replica_plan(g, m, UINT64_MAX, 0, plan, &reached);
	ck_assert_msg(np > 0 && reached == newest,
		      "%s: the chain from snapshot 1-%llu stops at %llu, the newest file is %llu",
		      what, (unsigned long long)f[oldest].max_txid,
		      (unsigned long long)reached, (unsigned long long)newest);
	free(g);
	free(plan);
}

static size_t run(const struct replica_file *f, size_t n,
		  const struct retention_opts *o, int64_t now, size_t *del)
{
	size_t nd = retention_plan(f, n, o, now, del);
	for (size_t k = 1; k < nd; k++)
		ck_assert_uint_lt(del[k - 1], del[k]);
	struct replica_file *kept = malloc((n + 1) * sizeof *kept);
	ck_assert_ptr_nonnull(kept);
	size_t nk = kept_files(f, n, del, nd, kept);
	check_window(f, n, kept, nk, now - o->snapshot_retention_ms, now,
		     "run");
	free(kept);
	return nd;
}

/* ------------------------------------------------------------ the rules */

START_TEST(test_rules)
{
	const int64_t now = 100 * HOUR;
	struct replica_file f[] = {
		/* 0 */ F(9, 1, 10, 50 * HOUR),
		/* 1 */ F(9, 1, 20, 70 * HOUR), /* the base: newest <= cutoff */
		/* 2 */ F(9, 1, 30, 90 * HOUR),
		/* 3 */ F(3, 1, 12, 55 * HOUR),
		/* 4 */ F(3, 13, 22, 72 * HOUR),
		/* 5 */ F(3, 23, 31, 95 * HOUR),
		/* 6 */ F(2, 1, 12, 55 * HOUR),
		/* 7 */ F(2, 13, 18, 65 * HOUR),
		/* 8 */ F(2, 19, 22, 72 * HOUR),
		/* 9 */ F(2, 23, 31, 95 * HOUR),
		/* 10 */ F(2, 32, 33, now - 10 * MINUTE),
		/* 11 */ F(1, 1, 12, 55 * HOUR),
		/* 12 */ F(1, 13, 18, 65 * HOUR),
		/* 13 */ F(1, 19, 20, 70 * HOUR),
		/* 14 */ F(1, 21, 22, 72 * HOUR),
		/* 15 */ F(1, 23, 31, 95 * HOUR),
		/* 16 */ F(1, 32, 33, now - 10 * MINUTE),
		/* 17 */ F(1, 34, 34, now - 2 * MINUTE),
		/* 18 */ F(0, 32, 32, now - 12 * MINUTE),
		/* 19 */ F(0, 33, 33, now - 10 * MINUTE),
		/* 20 */ F(0, 34, 34, now - 2 * MINUTE),
		/* 21 */ F(0, 35, 35, now - 1 * MINUTE),
	};
	size_t n = sizeof f / sizeof f[0], del[32];
	struct retention_opts o = {.snapshot_retention_ms = 24 * HOUR,
				   .l0_retention_ms = 5 * MINUTE};
	size_t want[] = {0, 3, 6, 7, 11, 12, 13, 18, 19};
	size_t nd = run(f, n, &o, now, del);
	ck_assert_uint_eq(nd, sizeof want / sizeof want[0]);
	for (size_t k = 0; k < nd; k++)
		ck_assert_uint_eq(del[k], want[k]);

	/* Litestream would also have deleted the base (ts before the
	 * cutoff), leaving 76 h..90 h without a snapshot; it stays, and a
	 * restore to 80 h works from it. */
	struct replica_file kept[32];
	size_t nk = kept_files(f, n, del, nd, kept);
	uint64_t reached;
	ck_assert(restore_at(kept, nk, 80 * HOUR, &reached));
	ck_assert_uint_eq(reached, 22);
	check_chain_from_oldest(kept, nk, "rules");

	/* a second run finds nothing more */
	ck_assert_uint_eq(retention_plan(kept, nk, &o, now, del), 0);

	/* an L1 file level 2 has not compacted stays: drop L2 19-22 */
	struct replica_file g[32];
	size_t m = 0;
	for (size_t i = 0; i < n; i++)
		if (i != 8)
			g[m++] = f[i];
	nd = run(g, m, &o, now, del);
	bool l1_19 = false;
	for (size_t k = 0; k < nd; k++)
		if (g[del[k]].level == 1 && g[del[k]].min_txid == 19)
			l1_19 = true;
	ck_assert(!l1_19);
	ck_assert_uint_eq(nd, sizeof want / sizeof want[0] - 1);

	/* no retention configured: nothing */
	struct retention_opts none = {0};
	ck_assert_uint_eq(retention_plan(f, n, &none, now, del), 0);
	ck_assert_uint_eq(retention_plan(f, n, NULL, now, del), 0);
}
END_TEST

START_TEST(test_no_base)
{
	/* every snapshot is inside the window (or has no known time): no
	 * base, so neither snapshots nor L1..L3 go, only covered L0 */
	const int64_t now = 100 * HOUR;
	struct replica_file f[] = {
		F(9, 1, 10, 0),	       /* unknown time: never old */
		F(9, 1, 20, 80 * HOUR), F(1, 1, 10, 78 * HOUR),
		F(1, 11, 20, 80 * HOUR), F(1, 21, 22, 90 * HOUR),
		F(0, 21, 21, 89 * HOUR), F(0, 22, 22, 90 * HOUR),
	};
	size_t del[8];
	struct retention_opts o = {.snapshot_retention_ms = 24 * HOUR,
				   .l0_retention_ms = 5 * MINUTE};
	size_t nd = run(f, 7, &o, now, del);
	ck_assert_uint_eq(nd, 1);
	ck_assert_uint_eq(del[0], 5); /* L0 21: covered, old; 22 is newest */
}
END_TEST

START_TEST(test_l0)
{
	const int64_t now = 10 * HOUR;
	struct retention_opts o = {.snapshot_retention_ms = 1000 * HOUR,
				   .l0_retention_ms = 5 * MINUTE};
	size_t del[16], nd;

	/* covered by an old L1: gone; covered by a new L1: kept; the walk
	 * stops at the first recent L0 */
	struct replica_file a[] = {
		/* 0 */ F(9, 1, 9, 1 * HOUR),
		/* 1 */ F(0, 10, 10, now - 20 * MINUTE),
		/* 2 */ F(0, 11, 11, now - 19 * MINUTE),
		/* 3 */ F(0, 12, 12, now - 18 * MINUTE),
		/* 4 */ F(1, 10, 12, now - 18 * MINUTE),
		/* 5 */ F(0, 13, 13, now - 3 * MINUTE),
		/* 6 */ F(0, 14, 14, now - 2 * MINUTE),
		/* 7 */ F(1, 13, 14, now - 2 * MINUTE),
	};
	nd = run(a, 8, &o, now, del);
	ck_assert_uint_eq(nd, 3);
	ck_assert_uint_eq(del[0], 1);
	ck_assert_uint_eq(del[2], 3);

	/* l0-retention 0 disables L0 deletion, as Litestream */
	struct retention_opts off = o;
	off.l0_retention_ms = 0;
	ck_assert_uint_eq(retention_plan(a, 8, &off, now, del), 0);

	/* not covered: L1 has a hole at 12..13 (Litestream, comparing with
	 * the highest L1 TXID only, would delete 12 and 13) */
	struct replica_file b[] = {
		F(9, 1, 9, 1 * HOUR),	     F(0, 10, 10, now - 30 * MINUTE),
		F(0, 11, 11, now - 29 * MINUTE), F(0, 12, 12, now - 28 * MINUTE),
		F(0, 13, 13, now - 27 * MINUTE), F(0, 14, 14, now - 26 * MINUTE),
		F(1, 10, 11, now - 29 * MINUTE), F(1, 14, 14, now - 26 * MINUTE),
		F(0, 15, 15, now - 1 * MINUTE),
	};
	nd = run(b, 9, &o, now, del);
	ck_assert_uint_eq(nd, 3); /* 10, 11, 14 */
	ck_assert(deleted(del, nd, 1) && deleted(del, nd, 2) &&
		  deleted(del, nd, 5));

	/* the newest L0 file always stays */
	struct replica_file c[] = {F(9, 1, 9, 1 * HOUR),
				   F(0, 10, 10, now - 30 * MINUTE),
				   F(0, 11, 11, now - 29 * MINUTE),
				   F(1, 10, 11, now - 29 * MINUTE)};
	nd = run(c, 4, &o, now, del);
	ck_assert_uint_eq(nd, 1);
	ck_assert_uint_eq(del[0], 1);

	/* unknown times stop the walk */
	struct replica_file d[] = {F(9, 1, 9, 1 * HOUR), F(0, 10, 10, 0),
				   F(0, 11, 11, now - 29 * MINUTE),
				   F(1, 10, 11, now - 29 * MINUTE),
				   F(0, 12, 12, now)};
	ck_assert_uint_eq(run(d, 5, &o, now, del), 0);
}
END_TEST

START_TEST(test_leases)
{
	const int64_t now = 100 * HOUR;
	struct replica_file f[] = {
		/* 0 */ F(9, 1, 10, 50 * HOUR),
		/* 1 */ F(9, 1, 20, 70 * HOUR), /* the base */
		/* 2 */ F(3, 1, 12, 55 * HOUR),
		/* 3 */ F(3, 13, 22, 72 * HOUR),
		/* 4 */ F(2, 1, 12, 55 * HOUR),
		/* 5 */ F(2, 13, 22, 72 * HOUR),
		/* 6 */ F(1, 1, 12, 55 * HOUR),
		/* 7 */ F(1, 13, 18, 65 * HOUR),
		/* 8 */ F(1, 19, 22, 72 * HOUR),
		/* 9 */ F(0, 22, 22, 72 * HOUR),
		/* 10 */ F(0, 23, 23, now),
	};
	size_t n = sizeof f / sizeof f[0], del[16], nd;
	struct retention_lease l[3];
	struct retention_opts o = {.snapshot_retention_ms = 24 * HOUR,
				   .l0_retention_ms = 5 * MINUTE,
				   .max_level = 3, .leases = l};

	nd = run(f, n, &o, now, del); /* 0, 2, 4, 6, 7, 9 */
	ck_assert_uint_eq(nd, 6);

	/* an in-flight restore that planned snapshot 1-10, exactly */
	l[0] = (struct retention_lease){9, 1, 10, now + MINUTE};
	o.nleases = 1;
	nd = run(f, n, &o, now, del);
	ck_assert_uint_eq(nd, 5);
	ck_assert(!deleted(del, nd, 0));

	/* a TXID range on every level */
	l[1] = (struct retention_lease){-1, 14, 14, 0};
	o.nleases = 2;
	nd = run(f, n, &o, now, del);
	ck_assert_uint_eq(nd, 4); /* 2, 4, 6, 9 */
	ck_assert(!deleted(del, nd, 7));

	/* expired leases protect nothing */
	l[0].until_ms = now;
	l[1].until_ms = now - 1;
	nd = run(f, n, &o, now, del);
	ck_assert_uint_eq(nd, 6);

	/* a lease on one level only */
	l[2] = (struct retention_lease){0, 1, 100, 0};
	o.leases = l + 2;
	o.nleases = 1;
	nd = run(f, n, &o, now, del);
	ck_assert_uint_eq(nd, 5);
	ck_assert(!deleted(del, nd, 9));
}
END_TEST

/* The L0 rule alone would delete L0 5 (covered by an L1 file older than
 * l0-retention) and keep L0 6 (the newest): a restore to a time after L0
 * 6 but before the L1 file's timestamp (upload times make that possible)
 * would meet a hole. The check puts L0 5 back. */
START_TEST(test_repair)
{
	const int64_t now = 10 * HOUR;
	struct replica_file f[] = {
		F(9, 1, 4, 1 * HOUR),
		F(0, 5, 5, now - 20 * MINUTE),
		F(0, 6, 6, now - 19 * MINUTE),
		F(1, 5, 6, now - 15 * MINUTE),
	};
	size_t del[4];
	struct retention_opts o = {.snapshot_retention_ms = 24 * HOUR,
				   .l0_retention_ms = 5 * MINUTE};
	ck_assert_uint_eq(run(f, 4, &o, now, del), 0);

	/* with the L1 file stamped like its last input, no hole: L0 5 goes */
	f[3].timestamp = f[2].timestamp;
	ck_assert_uint_eq(run(f, 4, &o, now, del), 1);
	ck_assert_uint_eq(del[0], 1);
}
END_TEST

/* ------------------------------------------------- the simulated replica */

struct sim {
	struct replica_file *f;
	size_t n, cap;
	uint64_t txid;
	int64_t now;
	uint64_t rng;
	bool jitter, holes;
};

static uint32_t sim_rnd(struct sim *s, uint32_t n)
{
	s->rng ^= s->rng << 13;
	s->rng ^= s->rng >> 7;
	s->rng ^= s->rng << 17;
	return n ? (uint32_t)(s->rng % n) : 0;
}

static void sim_add(struct sim *s, struct replica_file f)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 64;
		s->f = realloc(s->f, s->cap * sizeof *s->f);
		ck_assert_ptr_nonnull(s->f);
	}
	s->f[s->n++] = f;
}

/* Compaction per compact_plan; the header timestamp is the last input's,
 * or later with jitter (as an upload time would be). */
static void sim_compact(struct sim *s, int level, int64_t interval)
{
	struct compact_job j = {.level = level, .interval_ms = interval,
				.max_inputs = 64};
	size_t *idx = malloc((s->n + 1) * sizeof *idx);
	char *err = NULL;
	ck_assert_ptr_nonnull(idx);
	int rc = compact_plan(s->f, s->n, s->now, &j, idx, &err);
	ck_assert_msg(rc >= 0, "%s", err);
	if (rc == 1) {
		int64_t ts = s->f[idx[j.n - 1]].timestamp;
		if (s->jitter) {
			ts += sim_rnd(s, 120) * SEC;
			if (ts > s->now)
				ts = s->now;
		}
		sim_add(s, F(level, j.min_txid, j.max_txid, ts));
	}
	free(idx);
}

static void sim_retention(struct sim *s, const struct retention_opts *o,
			  bool clean)
{
	size_t *del = malloc((s->n + 1) * sizeof *del);
	struct replica_file *kept = malloc((s->n + 1) * sizeof *kept);
	char what[64];
	ck_assert(del && kept);
	size_t nd = retention_plan(s->f, s->n, o, s->now, del);
	size_t nk = kept_files(s->f, s->n, del, nd, kept);
	snprintf(what, sizeof what, "t=%lld min", (long long)(s->now / MINUTE));
	check_window(s->f, s->n, kept, nk, s->now - o->snapshot_retention_ms,
		     s->now, what);
	if (clean)
		check_chain_from_oldest(kept, nk, what);
	for (size_t k = 0; k < nd; k++) {
		const struct replica_file *d = &s->f[del[k]];
		/* leases hold */
		for (size_t j = 0; j < o->nleases; j++) {
			const struct retention_lease *l = &o->leases[j];
			ck_assert(!((l->until_ms == 0 || l->until_ms > s->now) &&
				    (l->level < 0 || l->level == d->level) &&
				    d->min_txid <= l->max_txid &&
				    d->max_txid >= l->min_txid));
		}
		/* L0 only when covered by an L1 file old enough */
		if (d->level == 0) {
			ck_assert(o->l0_retention_ms > 0);
			bool covered = false;
			for (size_t i = 0; i < s->n; i++)
				if (s->f[i].level == 1 &&
				    s->f[i].min_txid <= d->min_txid &&
				    s->f[i].max_txid >= d->max_txid &&
				    s->f[i].timestamp <=
					    s->now - o->l0_retention_ms)
					covered = true;
			ck_assert(covered);
		}
		/* never the newest file of a level */
		bool newer = false;
		for (size_t i = 0; i < s->n; i++)
			if (s->f[i].level == d->level &&
			    s->f[i].max_txid > d->max_txid)
				newer = true;
		ck_assert(newer);
	}
	memcpy(s->f, kept, nk * sizeof *kept);
	s->n = nk;
	free(del);
	free(kept);
}

START_TEST(test_property_random)
{
	for (int seed = 1; seed <= 8; seed++) {
		struct sim s = {.rng = 0x2545F4914F6CDD1DULL * (uint64_t)seed,
				.now = 1000 * HOUR,
				.jitter = seed % 2 == 0,
				.holes = seed % 3 == 0};
		struct retention_lease lease = {0};
		struct retention_opts o = {
			.snapshot_retention_ms = (12 + 12 * (seed % 3)) * HOUR,
			.l0_retention_ms = seed % 4 == 3 ? 0 : (20 + seed) * MINUTE,
			.leases = &lease,
		};
		int64_t end = s.now + 4 * 24 * HOUR, next_sync = s.now;
		bool heal = false, clean = true;

		for (; s.now < end; s.now += MINUTE) {
			if (s.now >= next_sync) {
				s.txid++;
				if (heal) {
					/* a fresh snapshot of the database */
					sim_add(&s, F(9, 1, s.txid, s.now));
					heal = false;
				} else if (s.holes && s.txid > 1 &&
					   sim_rnd(&s, 40) == 0) {
					heal = true; /* this upload is lost */
					clean = false;
				} else {
					sim_add(&s, F(0, s.txid, s.txid, s.now));
				}
				next_sync = s.now + (1 + sim_rnd(&s, 20)) * MINUTE;
			}
			/* each level runs at its boundaries, as Litestream's
			 * monitors do */
			if (s.now % (30 * MINUTE) == 0)
				sim_compact(&s, 1, 30 * MINUTE);
			if (s.now % (2 * HOUR) == 0)
				sim_compact(&s, 2, 2 * HOUR);
			if (s.now % (6 * HOUR) == 0)
				sim_compact(&s, 3, 6 * HOUR);
			if (s.now % (24 * HOUR) == 0)
				sim_compact(&s, REPLICA_SNAPSHOT_LEVEL,
					    24 * HOUR);
			if (s.now % (30 * MINUTE) == 0) {
				o.nleases = 0;
				if (s.n && sim_rnd(&s, 3) == 0) {
					const struct replica_file *p =
						&s.f[sim_rnd(&s, (uint32_t)s.n)];
					lease = (struct retention_lease){
						sim_rnd(&s, 2) ? p->level : -1,
						p->min_txid, p->max_txid,
						s.now + sim_rnd(&s, 2) * HOUR};
					o.nleases = 1;
				}
				sim_retention(&s, &o, clean);
			}
		}
		size_t per[10] = {0};
		for (size_t i = 0; i < s.n; i++)
			per[s.f[i].level]++;
		/* retention did its job: the replica stays small (L0 only
		 * when l0-retention is on: 0 disables it) */
		ck_assert_msg(s.n - per[0] < 300 &&
				      (o.l0_retention_ms <= 0 || per[0] < 50),
			      "seed %d: %zu files left (L0 %zu, L1 %zu, L2 %zu, L3 %zu, L9 %zu)",
			      seed, s.n, per[0], per[1], per[2], per[3],
			      per[REPLICA_SNAPSHOT_LEVEL]);
		ck_assert_uint_ge(per[REPLICA_SNAPSHOT_LEVEL], 1);
		free(s.f);
	}
}
END_TEST

Suite *retention_suite(void)
{
	Suite *s = suite_create("retention");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_rules);
	tcase_add_test(tc, test_no_base);
	tcase_add_test(tc, test_l0);
	tcase_add_test(tc, test_leases);
	tcase_add_test(tc, test_repair);
	tcase_add_test(tc, test_property_random);
	suite_add_tcase(s, tc);
	return s;
}
