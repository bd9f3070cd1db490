/* Unit tests for util.c: time parsing and formatting, big-endian helpers. */
#include "config.h"

#include <check.h>
#include <string.h>

#include "suites.h"
#include "walrust.h"

START_TEST(test_parse_time)
{
	int64_t ms;
	ck_assert_int_eq(util_parse_time("2024-01-15T10:30:00Z", &ms), 0);
	ck_assert_int_eq(ms, 1705314600000LL);
	ck_assert_int_eq(util_parse_time("2024-01-15T10:30:00.250Z", &ms), 0);
	ck_assert_int_eq(ms, 1705314600250LL);
	ck_assert_int_eq(util_parse_time("2024-01-15T12:30:00+02:00", &ms), 0);
	ck_assert_int_eq(ms, 1705314600000LL);
	ck_assert_int_eq(util_parse_time("2024-01-15T10:30:00", &ms), 0);
	ck_assert_int_eq(ms, 1705314600000LL);
	ck_assert_int_eq(util_parse_time("2024-01-15", &ms), 0);
	ck_assert_int_eq(ms, 1705276800000LL);
	ck_assert_int_eq(util_parse_time("1970-01-01T00:00:00Z", &ms), 0);
	ck_assert_int_eq(ms, 0);
	ck_assert_int_lt(util_parse_time("yesterday", &ms), 0);
	ck_assert_int_lt(util_parse_time("2024-13-01T00:00:00Z", &ms), 0);
	ck_assert_int_lt(util_parse_time("2024-01-15T10:30:00Zjunk", &ms), 0);
	ck_assert_int_lt(util_parse_time("", &ms), 0);
}
END_TEST

START_TEST(test_rfc3339)
{
	char buf[48];
	util_rfc3339_ms(1705314600000LL, buf, sizeof buf);
	ck_assert_str_eq(buf, "2024-01-15T10:30:00Z");
	util_rfc3339_ms(1705314600250LL, buf, sizeof buf);
	ck_assert_str_eq(buf, "2024-01-15T10:30:00.25Z");
	util_rfc3339_ms(1705314600007LL, buf, sizeof buf);
	ck_assert_str_eq(buf, "2024-01-15T10:30:00.007Z");
	int64_t back;
	ck_assert_int_eq(util_parse_time(buf, &back), 0);
	ck_assert_int_eq(back, 1705314600007LL);
}
END_TEST

START_TEST(test_be)
{
	uint8_t b[8];
	util_be64_put(b, 0x0102030405060708ULL);
	ck_assert_int_eq(b[0], 1);
	ck_assert_int_eq(b[7], 8);
	ck_assert(util_be64(b) == 0x0102030405060708ULL);
	util_be32_put(b, 0xdeadbeef);
	ck_assert_uint_eq(util_be32(b), 0xdeadbeef);
}
END_TEST

Suite *util_suite(void)
{
	Suite *s = suite_create("util");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_parse_time);
	tcase_add_test(tc, test_rfc3339);
	tcase_add_test(tc, test_be);
	suite_add_tcase(s, tc);
	return s;
}
