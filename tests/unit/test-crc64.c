/* test-crc64.c: CRC-64/GO-ISO check values, chaining, and the slicing-by-8
 * path against a bit-at-a-time reference. */
#include "config.h"

#include <stdint.h>
#include <string.h>

#include "suites.h"
#include "walrust.h"

/* Bit-at-a-time reference: reflected poly 0xD800000000000000. */
static uint64_t ref_crc64(uint64_t crc, const uint8_t *p, size_t len)
{
	crc = ~crc;
	while (len--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = (crc & 1) ? (crc >> 1) ^ 0xD800000000000000ULL
					: crc >> 1;
	}
	return ~crc;
}

static void fill_random(uint8_t *p, size_t n, uint64_t seed)
{
	uint64_t x = seed | 1;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (uint8_t)(x >> 24);
	}
}

START_TEST(test_check_value)
{
	ck_assert_uint_eq(crc64_iso(0, "123456789", 9), 0xB90956C775A41001ULL);
	/* not CRC-64/XZ */
	ck_assert_uint_ne(crc64_iso(0, "123456789", 9), 0x995DC9BBDF1939FAULL);
	ck_assert_uint_eq(crc64_iso(0, "", 0), 0);
	ck_assert_uint_eq(crc64_iso(0, "a", 1), ref_crc64(0, (const uint8_t *)"a", 1));
}
END_TEST

START_TEST(test_chaining)
{
	const char *s = "123456789";
	for (size_t cut = 0; cut <= 9; cut++) {
		uint64_t c = crc64_iso(0, s, cut);
		c = crc64_iso(c, s + cut, 9 - cut);
		ck_assert_uint_eq(c, 0xB90956C775A41001ULL);
	}
	/* byte by byte */
	uint64_t c = 0;
	for (size_t i = 0; i < 9; i++)
		c = crc64_iso(c, s + i, 1);
	ck_assert_uint_eq(c, 0xB90956C775A41001ULL);
}
END_TEST

START_TEST(test_against_reference)
{
	static uint8_t buf[4099];
	fill_random(buf, sizeof buf, 0x1234);
	/* every length and misalignment near the 8-byte stride */
	for (size_t off = 0; off < 9; off++) {
		for (size_t len = 0; len + off <= 80; len++)
			ck_assert_uint_eq(crc64_iso(0, buf + off, len),
					  ref_crc64(0, buf + off, len));
	}
	uint64_t whole = crc64_iso(0, buf, sizeof buf);
	ck_assert_uint_eq(whole, ref_crc64(0, buf, sizeof buf));
	for (size_t cut = 0; cut <= sizeof buf; cut += 97) {
		uint64_t c = crc64_iso(crc64_iso(0, buf, cut), buf + cut,
				       sizeof buf - cut);
		ck_assert_uint_eq(c, whole);
	}
	/* a non-zero starting value chains like Go's crc64.Update */
	ck_assert_uint_eq(crc64_iso(0xdeadbeefcafef00dULL, buf, 1000),
			  ref_crc64(0xdeadbeefcafef00dULL, buf, 1000));
}
END_TEST

Suite *crc64_suite(void)
{
	Suite *s = suite_create("crc64");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_check_value);
	tcase_add_test(tc, test_chaining);
	tcase_add_test(tc, test_against_reference);
	suite_add_tcase(s, tc);
	return s;
}
