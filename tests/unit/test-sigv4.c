/* test-sigv4.c: the signer against the worked examples of the AWS S3
 * documentation ("Signature Calculations for the Authorization Header:
 * Transferring Payload in a Single Chunk"), plus encoding and query rules. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "suites.h"
#include "walrust.h"

#define EMPTY_SHA256 \
	"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define EX_DATE "20130524T000000Z"
#define EX_HOST "examplebucket.s3.amazonaws.com"

static const struct sigv4_creds ex_creds = {
	.access_key_id = "AKIAIOSFODNN7EXAMPLE",
	.secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
	.session_token = NULL,
};

/* Sign and return the malloc'd Authorization value (fails the test on
 * error). */
static char *sign(const char *method, const char *path, const char *query,
		  const struct sigv4_header *h, size_t nh, const char *payload,
		  const struct sigv4_creds *c)
{
	struct sigv4_request r = {
		.method = method,
		.path = path,
		.query = query,
		.headers = h,
		.nheaders = nh,
		.payload_hash = payload,
		.amz_date = EX_DATE,
		.region = "us-east-1",
		.service = "s3",
	};
	char *auth = NULL, *err = NULL;
	int rc = sigv4_sign(&r, c, &auth, &err);
	ck_assert_msg(rc == 0, "sigv4_sign: %d %s", rc, err ? err : "");
	free(err);
	ck_assert_ptr_nonnull(auth);
	return auth;
}

static const char *sig_of(const char *auth)
{
	const char *s = strstr(auth, "Signature=");
	ck_assert_ptr_nonnull(s);
	return s + strlen("Signature=");
}

START_TEST(test_get_object_range)
{
	const struct sigv4_header h[] = {
		{"Host", EX_HOST},
		{"Range", "bytes=0-9"},
		{"x-amz-content-sha256", EMPTY_SHA256},
		{"x-amz-date", EX_DATE},
	};
	char *auth = sign("GET", "/test.txt", "", h, 4, EMPTY_SHA256, &ex_creds);
	ck_assert_str_eq(
		auth,
		"AWS4-HMAC-SHA256 "
		"Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/"
		"aws4_request,SignedHeaders=host;range;x-amz-content-sha256;"
		"x-amz-date,Signature="
		"f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
	free(auth);
}
END_TEST

START_TEST(test_put_object)
{
	const char *body = "Welcome to Amazon S3.";
	char hash[65];
	sigv4_sha256_hex(body, strlen(body), hash);
	ck_assert_str_eq(
		hash,
		"44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
	char *path = sigv4_uri_encode("/test$file.text", true);
	ck_assert_str_eq(path, "/test%24file.text");
	/* unsorted and mixed-case on purpose */
	const struct sigv4_header h[] = {
		{"x-amz-storage-class", "REDUCED_REDUNDANCY"},
		{"Date", "Fri, 24 May 2013 00:00:00 GMT"},
		{"X-Amz-Date", EX_DATE},
		{"Host", EX_HOST},
		{"x-amz-content-sha256", hash},
	};
	char *auth = sign("PUT", path, "", h, 5, hash, &ex_creds);
	ck_assert(strstr(auth, "SignedHeaders=date;host;x-amz-content-sha256;"
			       "x-amz-date;x-amz-storage-class,"));
	ck_assert_str_eq(
		sig_of(auth),
		"98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
	free(auth);
	free(path);
}
END_TEST

START_TEST(test_get_lifecycle)
{
	const char *names[] = {"lifecycle"};
	char *q = sigv4_canonical_query(names, NULL, 1);
	ck_assert_str_eq(q, "lifecycle=");
	const struct sigv4_header h[] = {
		{"Host", EX_HOST},
		{"x-amz-date", EX_DATE},
		{"x-amz-content-sha256", EMPTY_SHA256},
	};
	char *auth = sign("GET", "/", q, h, 3, EMPTY_SHA256, &ex_creds);
	ck_assert_str_eq(
		sig_of(auth),
		"fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
	free(auth);
	free(q);
}
END_TEST

START_TEST(test_list_objects)
{
	const char *names[] = {"prefix", "max-keys"};
	const char *values[] = {"J", "2"};
	char *q = sigv4_canonical_query(names, values, 2);
	ck_assert_str_eq(q, "max-keys=2&prefix=J");
	const struct sigv4_header h[] = {
		{"Host", EX_HOST},
		{"x-amz-date", EX_DATE},
		{"x-amz-content-sha256", EMPTY_SHA256},
	};
	char *auth = sign("GET", "/", q, h, 3, EMPTY_SHA256, &ex_creds);
	ck_assert_str_eq(
		sig_of(auth),
		"34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
	free(auth);
	free(q);
}
END_TEST

START_TEST(test_header_trim_and_cache)
{
	/* Extra spaces around and inside a value are squeezed (Trimall): the
	 * signature of the GET example must not change. Signing twice (the
	 * second time from the key cache) gives the same answer. */
	const struct sigv4_header h[] = {
		{"host", "  " EX_HOST "\t"},
		{"RANGE", "bytes=0-9   "},
		{"x-amz-content-sha256", EMPTY_SHA256},
		{"x-amz-date", EX_DATE},
	};
	for (int i = 0; i < 3; i++) {
		char *auth = sign("GET", "/test.txt", "", h, 4, EMPTY_SHA256,
				  &ex_creds);
		ck_assert_str_eq(sig_of(auth),
				 "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48"
				 "dd91039c6036bdb41");
		free(auth);
	}
	/* Another secret must not hit the cached key. */
	struct sigv4_creds other = ex_creds;
	other.secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEZ";
	char *auth = sign("GET", "/test.txt", "", h, 4, EMPTY_SHA256, &other);
	ck_assert_str_ne(sig_of(auth), "f0e8bdb87c964420e857bd35b5d6ed310bd44f0"
				       "170aba48dd91039c6036bdb41");
	free(auth);
}
END_TEST

START_TEST(test_session_token_signed)
{
	struct sigv4_creds c = ex_creds;
	c.session_token = "FQoGZXIvYXdzEXAMPLETOKEN";
	const struct sigv4_header plain[] = {
		{"Host", EX_HOST},
		{"x-amz-content-sha256", EMPTY_SHA256},
		{"x-amz-date", EX_DATE},
	};
	const struct sigv4_header tok[] = {
		{"Host", EX_HOST},
		{"x-amz-content-sha256", EMPTY_SHA256},
		{"x-amz-date", EX_DATE},
		{"x-amz-security-token", c.session_token},
	};
	char *a = sign("GET", "/test.txt", "", plain, 3, EMPTY_SHA256, &c);
	char *b = sign("GET", "/test.txt", "", tok, 4, EMPTY_SHA256, &c);
	ck_assert(strstr(b, "SignedHeaders=host;x-amz-content-sha256;"
			    "x-amz-date;x-amz-security-token,"));
	ck_assert_str_ne(sig_of(a), sig_of(b));
	free(a);
	free(b);
}
END_TEST

START_TEST(test_uri_encode)
{
	char *s = sigv4_uri_encode("a b/c~d-e_f.g+h=i&j%k\xc3\xa9", false);
	ck_assert_str_eq(s, "a%20b%2Fc~d-e_f.g%2Bh%3Di%26j%25k%C3%A9");
	free(s);
	s = sigv4_uri_encode("app/0000/0000000000000001-0000000000000001.ltx",
			     true);
	ck_assert_str_eq(s, "app/0000/0000000000000001-0000000000000001.ltx");
	free(s);
	s = sigv4_uri_encode("", true);
	ck_assert_str_eq(s, "");
	free(s);
}
END_TEST

START_TEST(test_canonical_query)
{
	/* ListObjectsV2 as storage-s3.c sends it: sorted by name, '/' in a
	 * value encoded as %2F, an empty value kept as "name=". */
	const char *names[] = {"prefix", "list-type", "encoding-type",
			       "delimiter", "continuation-token"};
	const char *values[] = {"app/0000/", "2", "url", "/", "1ueGcxLPRx1Tr/XYE="};
	char *q = sigv4_canonical_query(names, values, 5);
	ck_assert_str_eq(q, "continuation-token=1ueGcxLPRx1Tr%2FXYE%3D&"
			    "delimiter=%2F&encoding-type=url&list-type=2&"
			    "prefix=app%2F0000%2F");
	free(q);
	/* Same name twice: sorted by value. Uppercase sorts before lower. */
	const char *n2[] = {"b", "a", "a", "B"};
	const char *v2[] = {"1", "z", "y", NULL};
	q = sigv4_canonical_query(n2, v2, 4);
	ck_assert_str_eq(q, "B=&a=y&a=z&b=1");
	free(q);
	const char *n3[] = {"uploads"};
	q = sigv4_canonical_query(n3, NULL, 1);
	ck_assert_str_eq(q, "uploads=");
	free(q);
	q = sigv4_canonical_query(NULL, NULL, 0);
	ck_assert_str_eq(q, "");
	free(q);
}
END_TEST

START_TEST(test_bad_input)
{
	const struct sigv4_header h[] = {{"Host", EX_HOST}};
	struct sigv4_request r = {
		.method = "GET", .path = "/", .query = "", .headers = h,
		.nheaders = 1, .payload_hash = EMPTY_SHA256,
		.amz_date = "2013-05-24", .region = "us-east-1", .service = "s3",
	};
	char *auth = NULL, *err = NULL;
	ck_assert_int_lt(sigv4_sign(&r, &ex_creds, &auth, &err), 0);
	ck_assert_ptr_null(auth);
	ck_assert_ptr_nonnull(err);
	free(err);
	err = NULL;
	r.amz_date = EX_DATE;
	struct sigv4_creds none = {NULL, NULL, NULL};
	ck_assert_int_lt(sigv4_sign(&r, &none, &auth, &err), 0);
	ck_assert_ptr_null(auth);
	free(err);
}
END_TEST

Suite *sigv4_suite(void)
{
	Suite *s = suite_create("sigv4");
	TCase *tc = tcase_create("sigv4");
	tcase_add_test(tc, test_get_object_range);
	tcase_add_test(tc, test_put_object);
	tcase_add_test(tc, test_get_lifecycle);
	tcase_add_test(tc, test_list_objects);
	tcase_add_test(tc, test_header_trim_and_cache);
	tcase_add_test(tc, test_session_token_signed);
	tcase_add_test(tc, test_uri_encode);
	tcase_add_test(tc, test_canonical_query);
	tcase_add_test(tc, test_bad_input);
	suite_add_tcase(s, tc);
	return s;
}
