/* test-lease.c: the worker's lease table (lease.c): matching by database
 * name and replica, replacement and release per owner, expiry, the wire
 * form, and the table's leases keeping retention (retention.c) from
 * deleting the files an in-flight restore planned. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "lease.h"
#include "retention.h"
#include "suites.h"

#define SEC 1000LL
#define MINUTE (60 * SEC)
#define HOUR (60 * MINUTE)

static const char *const R1 = "s3://bucket/prefix";
static const char *const R2 = "file:///srv/replica";

START_TEST(test_match_replace_release)
{
	struct lease_table t = {0};
	struct retention_lease a[] = {{0, 5, 9, 0}, {1, 1, 4, 0}};
	struct retention_lease b[] = {{-1, 1, 100, 0}};
	const int64_t now = 1000 * SEC;
	size_t n;

	ck_assert_int_eq(lease_table_set(&t, 1, "app", R1, a, 2, now + MINUTE), 0);
	ck_assert_int_eq(lease_table_set(&t, 2, "app", R2, b, 1, now + MINUTE), 0);
	ck_assert_int_eq(lease_table_set(&t, 3, "other", R1, b, 1, now + MINUTE),
			 0);

	/* name and replica must both match */
	struct retention_lease *l = lease_table_find(&t, "app", R1, now, &n);
	ck_assert_uint_eq(n, 2);
	ck_assert_int_eq(l[0].level, 0);
	ck_assert_uint_eq(l[0].min_txid, 5);
	ck_assert_uint_eq(l[0].max_txid, 9);
	ck_assert_int_eq(l[1].level, 1);
	ck_assert(l[0].until_ms == now + MINUTE && l[1].until_ms == now + MINUTE);
	free(l);
	ck_assert_ptr_null(lease_table_find(&t, "ap", R1, now, &n));
	ck_assert_uint_eq(n, 0);
	ck_assert_ptr_null(lease_table_find(&t, "app", "s3://bucket", now, &n));

	/* two owners on one database: both sets */
	ck_assert_int_eq(lease_table_set(&t, 4, "app", R1, b, 1, now + MINUTE), 0);
	l = lease_table_find(&t, "app", R1, now, &n);
	ck_assert_uint_eq(n, 3);
	free(l);

	/* a new set replaces the owner's old one */
	ck_assert_int_eq(lease_table_set(&t, 1, "app", R1, b, 1, now + MINUTE), 0);
	l = lease_table_find(&t, "app", R1, now, &n);
	ck_assert_uint_eq(n, 2);
	ck_assert(l[0].level == -1 && l[1].level == -1);
	free(l);
	ck_assert_uint_eq(t.n, 4);

	/* an empty set releases */
	ck_assert_int_eq(lease_table_set(&t, 1, "app", R1, NULL, 0, 0), 0);
	ck_assert_int_eq(lease_table_set(&t, 4, "app", R1, NULL, 0, 0), 0);
	ck_assert_ptr_null(lease_table_find(&t, "app", R1, now, &n));
	ck_assert_uint_eq(t.n, 2);
	/* releasing what is not there is fine */
	ck_assert_int_eq(lease_table_set(&t, 99, "app", R1, NULL, 0, 0), 0);
	ck_assert_uint_eq(t.n, 2);
	lease_table_clear(&t);
	ck_assert_uint_eq(t.n, 0);
}
END_TEST

START_TEST(test_expiry_and_renewal)
{
	struct lease_table t = {0};
	struct retention_lease a[] = {{0, 5, 9, 0}};
	int64_t now = 1000 * SEC;
	size_t n;

	ck_assert_int_eq(lease_table_set(&t, 7, "app", R1, a, 1, now + 30 * SEC),
			 0);
	free(lease_table_find(&t, "app", R1, now + 29 * SEC, &n));
	ck_assert_uint_eq(n, 1);
	/* renewed before it expires: lives on */
	ck_assert_int_eq(lease_table_set(&t, 7, "app", R1, a, 1, now + 50 * SEC),
			 0);
	free(lease_table_find(&t, "app", R1, now + 40 * SEC, &n));
	ck_assert_uint_eq(n, 1);
	/* not renewed: gone at its expiry, and pruned from the table */
	ck_assert_ptr_null(lease_table_find(&t, "app", R1, now + 50 * SEC, &n));
	ck_assert_uint_eq(n, 0);
	ck_assert_uint_eq(t.n, 0);

	/* lease_table_expire drops only the expired entries */
	lease_table_set(&t, 1, "app", R1, a, 1, now + 10 * SEC);
	lease_table_set(&t, 2, "app", R1, a, 1, now + 20 * SEC);
	lease_table_set(&t, 3, "app", R1, a, 1, now + 30 * SEC);
	lease_table_expire(&t, now + 20 * SEC);
	ck_assert_uint_eq(t.n, 1);
	ck_assert_int_eq(t.e[0].owner, 3);
	lease_table_clear(&t);
}
END_TEST

START_TEST(test_wire_form)
{
	struct retention_lease a[] = {{0, 5, 9, 0},
				      {9, 1, 1000, 0},
				      {-1, 0, UINT64_MAX, 0}};
	json_t *j = lease_json(a, 3);
	char *s = json_dumps(j, JSON_COMPACT);
	ck_assert_str_eq(s, "[[0,5,9],[9,1,1000],[-1,0,9223372036854775807]]");
	free(s);
	struct retention_lease *b;
	size_t n;
	ck_assert_int_eq(lease_parse(j, &b, &n), 0);
	ck_assert_uint_eq(n, 3);
	ck_assert(b[0].level == 0 && b[0].min_txid == 5 && b[0].max_txid == 9);
	ck_assert(b[1].level == 9 && b[1].max_txid == 1000);
	/* INT64_MAX on the wire: no end */
	ck_assert(b[2].level == -1 && b[2].max_txid == UINT64_MAX);
	free(b);
	json_decref(j);

	j = json_array();
	ck_assert_int_eq(lease_parse(j, &b, &n), 0);
	ck_assert_uint_eq(n, 0);
	ck_assert_ptr_null(b);
	json_decref(j);

	static const char *const bad[] = {
		"{}",	      "[[0,1]]",   "[[0,1,2,3]]", "[[0,\"1\",2]]",
		"[[-2,1,2]]", "[[256,1,2]]", "[[0,-1,2]]", "[[0,5,4]]",
		"[1]",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		j = json_loads(bad[i], 0, NULL);
		ck_assert_ptr_nonnull(j);
		ck_assert_msg(lease_parse(j, &b, &n) < 0, "accepted %s", bad[i]);
		json_decref(j);
	}
	ck_assert_int_lt(lease_parse(NULL, &b, &n), 0);
}
END_TEST

static struct replica_file F(int level, uint64_t mn, uint64_t mx, int64_t ts)
{
	struct replica_file f = {.level = level, .min_txid = mn,
				 .max_txid = mx, .timestamp = ts};
	return f;
}

static bool deleted(const size_t *del, size_t nd, size_t i)
{
	for (size_t k = 0; k < nd; k++)
		if (del[k] == i)
			return true;
	return false;
}

/* What db.c does: the table's leases on the database go to retention. */
static size_t retention_with(struct lease_table *t, const struct replica_file *f,
			     size_t n, int64_t now, size_t *del)
{
	size_t nl;
	struct retention_lease *l = lease_table_find(t, "app", R1, now, &nl);
	struct retention_opts o = {.snapshot_retention_ms = 24 * HOUR,
				   .l0_retention_ms = 1 * SEC,
				   .max_level = 3,
				   .leases = l,
				   .nleases = nl};
	size_t nd = retention_plan(f, n, &o, now, del);
	free(l);
	return nd;
}

START_TEST(test_restore_plan_survives_retention)
{
	/* A restore planned snapshot L1 1-10 and the L0 files 11..14 (no L1
	 * file covered them yet); then compaction wrote L1 11-14, and after
	 * l0-retention those L0 files may go, but not while leased. */
	const int64_t now = 100 * SEC;
	struct replica_file f[] = {
		/* 0 */ F(1, 1, 10, 10 * SEC),
		/* 1 */ F(0, 11, 11, 11 * SEC),
		/* 2 */ F(0, 12, 12, 12 * SEC),
		/* 3 */ F(0, 13, 13, 13 * SEC),
		/* 4 */ F(0, 14, 14, 14 * SEC),
		/* 5 */ F(1, 11, 14, 20 * SEC),
		/* 6 */ F(0, 15, 15, now),
	};
	size_t n = sizeof f / sizeof f[0], del[8], nd;
	struct lease_table t = {0};

	nd = retention_with(&t, f, n, now, del);
	ck_assert_uint_eq(nd, 4); /* 1..4 */

	/* the restore's lease: one range per level of its plan */
	struct retention_lease plan[] = {{1, 1, 10, 0}, {0, 11, 14, 0}};
	ck_assert_int_eq(lease_table_set(&t, 1, "app", R1, plan, 2,
					 now + 30 * SEC), 0);
	nd = retention_with(&t, f, n, now, del);
	ck_assert_uint_eq(nd, 0);
	/* someone else's lease on another replica does not count */
	ck_assert_int_eq(lease_table_set(&t, 1, "app", R2, plan, 2,
					 now + 30 * SEC), 0);
	nd = retention_with(&t, f, n, now, del);
	ck_assert_uint_eq(nd, 4);
	ck_assert(deleted(del, nd, 1) && deleted(del, nd, 4));

	/* leased again, then expired: retention resumes */
	ck_assert_int_eq(lease_table_set(&t, 1, "app", R1, plan, 2,
					 now + 30 * SEC), 0);
	nd = retention_with(&t, f, n, now + 29 * SEC, del);
	ck_assert_uint_eq(nd, 0);
	nd = retention_with(&t, f, n, now + 30 * SEC, del);
	ck_assert_uint_eq(nd, 4);
	ck_assert_uint_eq(t.n, 0);
	lease_table_clear(&t);
}
END_TEST

Suite *lease_suite(void)
{
	Suite *s = suite_create("lease");
	TCase *tc = tcase_create("lease");
	tcase_add_test(tc, test_match_replace_release);
	tcase_add_test(tc, test_expiry_and_renewal);
	tcase_add_test(tc, test_wire_form);
	tcase_add_test(tc, test_restore_plan_survives_retention);
	suite_add_tcase(s, tc);
	return s;
}
