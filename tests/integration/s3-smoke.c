/*
 * s3-smoke.c: the S3 backend against a real S3-compatible server.
 *
 *   s3-smoke s3://BUCKET[/PREFIX]                 full round trip
 *   s3-smoke s3://BUCKET[/PREFIX] --keep          the round trip, but the
 *                                                 objects stay (for HEAD
 *                                                 checks of the metadata)
 *   s3-smoke s3://BUCKET[/PREFIX] --expect=ERRNO  a LIST then a small PUT:
 *                                                 the first failure must
 *                                                 be -ERRNO
 *                                                 (EACCES, EHOSTUNREACH,
 *                                                 ENOENT, ...)
 *
 * Configuration comes from the environment as for walrustd:
 * AWS_ENDPOINT_URL_S3, AWS_REGION, AWS_ACCESS_KEY_ID,
 * AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN.
 *
 * The round trip: PUT a small object, a 40 MiB one (multipart: 8 MiB
 * parts) and one with an awkward key at once, list (flat and with a delimiter), GET both back and
 * compare, GET a missing key (-ENOENT), delete both, list again (empty),
 * free the storage and check that the loop closes with no handle left.
 * Exit status 0 on success.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "storage.h"
#include "walrust.h"

#define SMALL_SIZE 1234
#define BIG_SIZE (40u << 20)
/* URI- and XML-hostile characters, and a non-ASCII one */
#define ODD_KEY "smoke/odd key+%&'=\xc3\xa9~.bin"


struct wait {
	bool done;
	int status;
	char *err;
	char **keys, **prefixes;
	size_t nkeys, nprefixes;
};

static void on_done(void *arg, int status, const char *err)
{
	struct wait *w = arg;
	w->done = true;
	w->status = status;
	w->err = err ? strdup(err) : NULL;
}

static char **dupv(char **v, size_t n)
{
	char **o = calloc(n + 1, sizeof *o);
	for (size_t i = 0; o && i < n; i++)
		o[i] = strdup(v[i]);
	return o;
}

static void freev(char **v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i]);
	free(v);
}

static void on_list(void *arg, int status, const char *err, char **keys,
		    size_t nkeys, char **prefixes, size_t nprefixes)
{
	struct wait *w = arg;
	on_done(arg, status, err);
	w->keys = dupv(keys, nkeys);
	w->nkeys = nkeys;
	w->prefixes = dupv(prefixes, nprefixes);
	w->nprefixes = nprefixes;
}

static void wait_for(uv_loop_t *loop, struct wait *w)
{
	while (!w->done)
		uv_run(loop, UV_RUN_ONCE);
}

static void wait_clear(struct wait *w)
{
	free(w->err);
	freev(w->keys, w->nkeys);
	freev(w->prefixes, w->nprefixes);
	memset(w, 0, sizeof *w);
}

static int failures;

#define CHECK(cond, ...)                                                   \
	do {                                                               \
		if (!(cond)) {                                             \
			fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
			fprintf(stderr, __VA_ARGS__);                      \
			fputc('\n', stderr);                               \
			failures++;                                        \
		}                                                          \
	} while (0)

static int temp_fd(void)
{
	char path[] = "/tmp/s3-smoke-XXXXXX";
	int fd = mkstemp(path);
	if (fd >= 0)
		unlink(path);
	return fd;
}

static int fill_random(int fd, size_t len, unsigned seed)
{
	uint8_t *buf = malloc(len);
	if (!buf)
		return -ENOMEM;
	uint64_t x = seed * 0x9E3779B97F4A7C15ULL + 1;
	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		buf[i] = (uint8_t)x;
	}
	int rc = util_pwrite_all(fd, buf, len, 0);
	free(buf);
	return rc;
}

static bool same_content(int a, int b, size_t len)
{
	off_t end = lseek(b, 0, SEEK_END);
	if (end != (off_t)len)
		return false;
	uint8_t *x = malloc(len), *y = malloc(len);
	bool same = x && y && util_pread_all(a, x, len, 0) == (ssize_t)len &&
		    util_pread_all(b, y, len, 0) == (ssize_t)len &&
		    memcmp(x, y, len) == 0;
	free(x);
	free(y);
	return same;
}

static bool has(char **v, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i], s) == 0)
			return true;
	return false;
}

static int parse_url(const char *url, char **bucket, char **prefix)
{
	if (strncmp(url, "s3://", 5) == 0)
		url += 5;
	const char *slash = strchr(url, '/');
	*bucket = slash ? strndup(url, (size_t)(slash - url)) : strdup(url);
	*prefix = strdup(slash ? slash + 1 : "");
	return *bucket && **bucket ? 0 : -EINVAL;
}

static int errno_by_name(const char *name)
{
	static const struct {
		const char *n;
		int e;
	} t[] = {{"EACCES", EACCES},	   {"EHOSTUNREACH", EHOSTUNREACH},
		 {"ENOENT", ENOENT},	   {"ETIMEDOUT", ETIMEDOUT},
		 {"EIO", EIO},		   {"EINVAL", EINVAL}};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
		if (strcmp(t[i].n, name) == 0)
			return t[i].e;
	return 0;
}

/* A LIST, then (if it worked) a small PUT: the first failure must be
 * -want. (Listing first catches a missing bucket on servers that create
 * buckets on upload, as SeaweedFS does for admin identities.) */
static int expect_error(uv_loop_t *loop, struct storage *s, int want)
{
	struct wait w = {0};
	int fd = temp_fd();
	fill_random(fd, SMALL_SIZE, 7);
	int64_t t0 = util_now_ms();
	const char *op = "list";
	int rc = s->ops->list(s, "smoke/", NULL, on_list, &w);
	if (rc == 0) {
		wait_for(loop, &w);
		rc = w.status;
	}
	if (rc == 0) {
		wait_clear(&w);
		op = "put";
		rc = s->ops->put(s, "smoke/expect.bin", fd, SMALL_SIZE,
				 util_now_ms(), on_done, &w);
		if (rc == 0) {
			wait_for(loop, &w);
			rc = w.status;
		}
	}
	printf("%s -> %d (%s) after %lld ms: %s\n", op, rc, strerror(-rc),
	       (long long)(util_now_ms() - t0), w.err ? w.err : "");
	CHECK(rc == -want, "expected -%d, got %d", want, rc);
	wait_clear(&w);
	close(fd);
	return 0;
}

static void round_trip(uv_loop_t *loop, struct storage *s, bool keep)
{
	struct wait w1 = {0}, w2 = {0}, w = {0};
	int small = temp_fd(), big = temp_fd();
	int64_t ts = 1705314600123; /* 2024-01-15T10:30:00.123Z */
	int rc;

	CHECK(small >= 0 && big >= 0, "temp files");
	CHECK(fill_random(small, SMALL_SIZE, 1) == 0, "fill small");
	CHECK(fill_random(big, BIG_SIZE, 2) == 0, "fill big");

	int64_t t0 = util_now_ms();
	rc = s->ops->put(s, "smoke/small.bin", small, SMALL_SIZE, ts, on_done,
			 &w1);
	CHECK(rc == 0, "put small: %d", rc);
	rc = s->ops->put(s, "smoke/big.bin", big, BIG_SIZE, ts, on_done, &w2);
	CHECK(rc == 0, "put big: %d", rc);
	rc = s->ops->put(s, ODD_KEY, small, SMALL_SIZE, ts, on_done, &w);
	CHECK(rc == 0, "put odd: %d", rc);
	wait_for(loop, &w1);
	wait_for(loop, &w2);
	wait_for(loop, &w);
	CHECK(w.status == 0, "put odd key: %d %s", w.status, w.err);
	wait_clear(&w);
	CHECK(w1.status == 0, "put small: %d %s", w1.status, w1.err);
	CHECK(w2.status == 0, "put big: %d %s", w2.status, w2.err);
	printf("put small + 40 MiB: %d, %d (%lld ms)\n", w1.status, w2.status,
	       (long long)(util_now_ms() - t0));
	wait_clear(&w1);
	wait_clear(&w2);

	rc = s->ops->list(s, "smoke/", NULL, on_list, &w);
	CHECK(rc == 0, "list: %d", rc);
	wait_for(loop, &w);
	CHECK(w.status == 0, "list: %d %s", w.status, w.err);
	CHECK(w.nkeys == 3 && has(w.keys, w.nkeys, "smoke/small.bin") &&
		      has(w.keys, w.nkeys, "smoke/big.bin") &&
		      has(w.keys, w.nkeys, ODD_KEY),
	      "list: %zu keys", w.nkeys);
	printf("list smoke/: %zu keys\n", w.nkeys);
	wait_clear(&w);

	rc = s->ops->list(s, "", "/", on_list, &w);
	CHECK(rc == 0, "list /: %d", rc);
	wait_for(loop, &w);
	CHECK(w.status == 0 && has(w.prefixes, w.nprefixes, "smoke/"),
	      "list with delimiter: %d %s, %zu prefixes", w.status, w.err,
	      w.nprefixes);
	printf("list '' delimiter '/': %zu keys, %zu prefixes\n", w.nkeys,
	       w.nprefixes);
	wait_clear(&w);

	int g1 = temp_fd(), g2 = temp_fd();
	/* junk in the target must be truncated away */
	CHECK(fill_random(g1, SMALL_SIZE * 3, 9) == 0, "fill g1");
	t0 = util_now_ms();
	rc = s->ops->get(s, "smoke/small.bin", g1, on_done, &w1);
	CHECK(rc == 0, "get small: %d", rc);
	rc = s->ops->get(s, "smoke/big.bin", g2, on_done, &w2);
	CHECK(rc == 0, "get big: %d", rc);
	wait_for(loop, &w1);
	wait_for(loop, &w2);
	CHECK(w1.status == 0, "get small: %d %s", w1.status, w1.err);
	CHECK(w2.status == 0, "get big: %d %s", w2.status, w2.err);
	CHECK(same_content(small, g1, SMALL_SIZE), "small differs");
	CHECK(same_content(big, g2, BIG_SIZE), "big differs");
	printf("get both: %d, %d, contents %s (%lld ms)\n", w1.status,
	       w2.status,
	       same_content(small, g1, SMALL_SIZE) &&
			       same_content(big, g2, BIG_SIZE)
		       ? "equal"
		       : "DIFFER",
	       (long long)(util_now_ms() - t0));
	wait_clear(&w1);
	wait_clear(&w2);

	rc = s->ops->get(s, ODD_KEY, g1, on_done, &w);
	CHECK(rc == 0, "get odd: %d", rc);
	wait_for(loop, &w);
	CHECK(w.status == 0 && same_content(small, g1, SMALL_SIZE),
	      "get odd key: %d %s", w.status, w.err);
	wait_clear(&w);

	rc = s->ops->get(s, "smoke/missing.bin", g1, on_done, &w);
	CHECK(rc == 0, "get missing: %d", rc);
	wait_for(loop, &w);
	CHECK(w.status == -ENOENT, "get missing: %d %s", w.status, w.err);
	printf("get missing: %d (%s)\n", w.status, w.err ? w.err : "");
	wait_clear(&w);

	if (keep)
		goto out;
	const char *keys[] = {"smoke/small.bin", "smoke/big.bin", ODD_KEY,
			      "smoke/never-existed.bin"};
	rc = s->ops->del(s, keys, 4, on_done, &w);
	CHECK(rc == 0, "delete: %d", rc);
	wait_for(loop, &w);
	CHECK(w.status == 0, "delete: %d %s", w.status, w.err);
	printf("delete: %d\n", w.status);
	wait_clear(&w);

	rc = s->ops->del(s, keys, 0, on_done, &w);
	CHECK(rc == 0, "delete none: %d", rc);
	CHECK(!w.done, "delete none fired its callback inside the call");
	wait_for(loop, &w);
	CHECK(w.status == 0, "delete none: %d", w.status);
	wait_clear(&w);

	rc = s->ops->list(s, "smoke/", NULL, on_list, &w);
	CHECK(rc == 0, "list: %d", rc);
	wait_for(loop, &w);
	CHECK(w.status == 0 && w.nkeys == 0, "list after delete: %d %zu",
	      w.status, w.nkeys);
	printf("list after delete: %zu keys\n", w.nkeys);
	wait_clear(&w);
out:
	close(small);
	close(big);
	close(g1);
	close(g2);
}

int main(int argc, char **argv)
{
	uv_loop_t loop;
	struct storage *s = NULL;
	char *bucket = NULL, *prefix = NULL, *err = NULL;
	int rc;

	if (argc < 2 || parse_url(argv[1], &bucket, &prefix)) {
		fprintf(stderr, "usage: %s s3://BUCKET[/PREFIX] [--keep|--expect=ERRNO]\n",
			argv[0]);
		return 2;
	}
	uv_loop_init(&loop);
	rc = storage_s3_new(&s, &loop, bucket, prefix, NULL, &err);
	if (argc > 2 && strncmp(argv[2], "--expect=", 9) == 0) {
		int want = errno_by_name(argv[2] + 9);
		if (rc) {
			printf("storage_s3_new -> %d: %s\n", rc, err);
			CHECK(rc == -want, "expected -%d", want);
		} else {
			expect_error(&loop, s, want);
		}
	} else if (rc) {
		fprintf(stderr, "storage_s3_new: %d %s\n", rc, err);
		failures++;
	} else {
		printf("storage %s\n", s->describe);
		round_trip(&loop, s,
			   argc > 2 && strcmp(argv[2], "--keep") == 0);
	}
	if (s)
		s->ops->free(s);
	uv_run(&loop, UV_RUN_DEFAULT);
	rc = uv_loop_close(&loop);
	CHECK(rc == 0, "uv_loop_close: %s (a handle was left open)",
	      uv_strerror(rc));
	free(err);
	free(bucket);
	free(prefix);
	printf("%s\n", failures ? "FAILED" : "OK");
	return failures ? 1 : 0;
}
