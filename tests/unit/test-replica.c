/* Unit tests for replica.c: key layout (both backends), names, and the
 * restore plan, including gaps (failure mode 4: a restore must not report
 * success short of its target) and compacted levels. */
#include "config.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "suites.h"

START_TEST(test_keys)
{
	char *k = replica_key(STORAGE_S3, "app", 0, 1, 1);
	ck_assert_str_eq(k, "app/0000/0000000000000001-0000000000000001.ltx");
	free(k);
	k = replica_key(STORAGE_S3, "app", 9, 1, 0x2a);
	ck_assert_str_eq(k, "app/0009/0000000000000001-000000000000002a.ltx");
	free(k);
	k = replica_key(STORAGE_FILE, "app", 9, 1, 0x2a);
	ck_assert_str_eq(k, "app/ltx/9/0000000000000001-000000000000002a.ltx");
	struct replica_file f;
	ck_assert_int_eq(replica_parse_key(STORAGE_FILE, "app", k, &f), 0);
	ck_assert_int_eq(f.level, 9);
	ck_assert(f.min_txid == 1 && f.max_txid == 0x2a);
	replica_file_clear(&f);
	free(k);
	ck_assert_int_eq(replica_parse_key(STORAGE_S3, "app",
					   "app/000a/0000000000000003-0000000000000007.ltx",
					   &f), 0);
	ck_assert_int_eq(f.level, 10);
	replica_file_clear(&f);
	/* Not ours / malformed. */
	ck_assert_int_lt(replica_parse_key(STORAGE_S3, "app",
					   "apple/0000/0000000000000001-0000000000000001.ltx",
					   &f), 0);
	ck_assert_int_lt(replica_parse_key(STORAGE_S3, "app",
					   "app/0000/0000000000000002-0000000000000001.ltx",
					   &f), 0);
	ck_assert_int_lt(replica_parse_key(STORAGE_S3, "app",
					   "app/0000/0000000000000001-00000000000000G1.ltx",
					   &f), 0);
	ck_assert_int_lt(replica_parse_key(STORAGE_S3, "app",
					   "app/0000/0000000000000001-0000000000000001.ltx.tmp",
					   &f), 0);
}
END_TEST

START_TEST(test_names)
{
	ck_assert(replica_name_valid("app"));
	ck_assert(replica_name_valid("my.app-1"));
	ck_assert(!replica_name_valid(""));
	ck_assert(!replica_name_valid(".."));
	ck_assert(!replica_name_valid("../etc"));
	ck_assert(!replica_name_valid("a/b"));
	ck_assert(!replica_name_valid("a\nb"));
	char *n = replica_name_from_path("/data/app.db");
	ck_assert_str_eq(n, "app");
	free(n);
	n = replica_name_from_path("/data/app");
	ck_assert_str_eq(n, "app");
	free(n);
	n = replica_name_from_path("/data/a.b.sqlite");
	ck_assert_str_eq(n, "a.b");
	free(n);
}
END_TEST

static struct replica_file F(int level, uint64_t mn, uint64_t mx, int64_t ts)
{
	struct replica_file f = {.level = level, .min_txid = mn,
				 .max_txid = mx, .timestamp = ts};
	return f;
}

START_TEST(test_plan)
{
	struct replica_file files[] = {
		F(0, 1, 1, 10), F(0, 2, 2, 20), F(0, 3, 3, 30), F(0, 4, 4, 40),
		F(1, 1, 3, 30), F(9, 1, 3, 30), F(0, 5, 5, 50),
	};
	size_t n = sizeof files / sizeof files[0], out[16], np;
	uint64_t reached;
	np = replica_plan(files, n, UINT64_MAX, 0, out, &reached);
	ck_assert_uint_eq(reached, 5);
	/* snapshot 1-3 at L9 (highest level at equal max), then 4, 5 */
	ck_assert_uint_eq(np, 3);
	ck_assert_int_eq(files[out[0]].level, 9);
	ck_assert_uint_eq(files[out[1]].max_txid, 4);
	ck_assert_uint_eq(files[out[2]].max_txid, 5);
	/* by TXID */
	np = replica_plan(files, n, 2, 0, out, &reached);
	ck_assert_uint_eq(reached, 2);
	ck_assert_uint_eq(np, 2);
	/* by time: nothing newer than 35 */
	np = replica_plan(files, n, UINT64_MAX, 35, out, &reached);
	ck_assert_uint_eq(reached, 3);
	/* before the first snapshot */
	np = replica_plan(files, n, UINT64_MAX, 5, out, &reached);
	ck_assert_uint_eq(np, 0);
}
END_TEST

START_TEST(test_plan_gap)
{
	/* 3 is missing: the plan stops at 2 although 4 exists. */
	struct replica_file files[] = {F(0, 1, 1, 0), F(0, 2, 2, 0),
				       F(0, 4, 4, 0)};
	size_t out[4];
	uint64_t reached;
	size_t np = replica_plan(files, 3, UINT64_MAX, 0, out, &reached);
	ck_assert_uint_eq(np, 2);
	ck_assert_uint_eq(reached, 2);
}
END_TEST

Suite *replica_suite(void)
{
	Suite *s = suite_create("replica");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_keys);
	tcase_add_test(tc, test_names);
	tcase_add_test(tc, test_plan);
	tcase_add_test(tc, test_plan_gap);
	suite_add_tcase(s, tc);
	return s;
}
