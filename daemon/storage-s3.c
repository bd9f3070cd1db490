/*
 * storage-s3.c: the S3 backend of the storage seam, over http.c (transfers
 * on the loop), sigv4.c (signing) and s3-xml.c (documents).
 *
 * Addressing: AWS itself (no endpoint configured) is reached virtual-host
 * style, https://BUCKET.s3.REGION.amazonaws.com/KEY (path style for bucket
 * names with dots, which break the TLS wildcard); a custom endpoint
 * (MinIO, SeaweedFS, R2, loopback test servers) path style,
 * ENDPOINT/BUCKET/KEY.
 *
 * Every request carries Host, x-amz-date and x-amz-content-sha256 (the
 * real SHA-256 of the payload; file bodies are hashed on the thread pool
 * first, per part for multipart), plus x-amz-security-token with a session
 * token; all of them are signed. Without credentials requests go unsigned
 * (anonymous local servers).
 *
 * One logical request (`struct s3_call`) is retried on connection errors,
 * timeouts, 5xx but 501, 408 and 429 with capped exponential backoff and
 * full jitter (delay uniform in [0, min(2 s, 100 ms * 2^attempt)]),
 * re-signed at each attempt; 401/403 fail at once. Operations:
 *
 *   put     single PUT up to the multipart threshold, else
 *           CreateMultipartUpload, equal-size parts (the last one shorter)
 *           a window of `concurrency` at a time, Complete (which may
 *           answer 200 with an <Error>: retried), Abort on failure. The
 *           litestream-timestamp metadata goes on the PUT or the Create.
 *           storage_put_new adds If-None-Match: * to the PUT or the
 *           Complete (412, or 409 ConditionalRequestConflict: -EEXIST; a
 *           retry of a request that landed gets 412 too, so the caller
 *           compares bytes); a store that answers 501 gets the request
 *           again without it, and plain PUTs from then on.
 *   get     into the caller's fd (truncated before each attempt), byte
 *           count checked against Content-Length.
 *   list    ListObjectsV2 pages (encoding-type=url), keys made relative to
 *           the replica root.
 *   delete  DeleteObjects batches of 1000 with Content-MD5.
 *
 * Secrets never appear in messages; only variable names do.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "daemon.h"
#include "http.h"
#include "storage.h"
#include "walrust.h"

#define S3_DEFAULT_MAX_ATTEMPTS 5
#define S3_DEFAULT_CONCURRENCY 8
#define S3_DEFAULT_THRESHOLD (16ULL << 20)
#define S3_DEFAULT_PART_SIZE (8ULL << 20)
#define S3_MIN_PART_SIZE (5ULL << 20)
#define S3_MAX_PART_SIZE (5ULL << 30)
#define S3_MAX_PUT_SIZE (5ULL << 30)
#define S3_MAX_PARTS 10000
#define S3_BACKOFF_BASE_MS 100
#define S3_BACKOFF_CAP_MS 2000
#define S3_LIST_PAGE_MAX (32u << 20)
#define S3_DELETE_BATCH 1000
#define S3_MAX_EXTRA_HEADERS 4
#define S3_EMPTY_SHA256 \
	"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define S3_COMPLETE_STALL_S 600
#define S3_META_TIMESTAMP "x-amz-meta-litestream-timestamp"

struct s3 {
	struct storage base;
	struct http *http;
	char *bucket;
	char *root;       /* "" or "prefix/" */
	char *endpoint;   /* for messages: scheme://authority[/path] */
	char *origin;     /* scheme://authority for URLs */
	char *host;       /* Host header */
	char *base_path;  /* "" (virtual host) or "[/path]/bucket" (encoded) */
	char *region;
	char *access_key_id; /* NULL: anonymous */
	char *secret_access_key;
	char *session_token;
	int max_attempts;
	int concurrency;
	uint64_t threshold;
	uint64_t part_size;
	uint64_t rng;
	/* The store answered a conditional write with 501 NotImplemented:
	 * storage_put_new sends plain PUTs from then on (see s3_put). */
	bool no_conditional;
};

/* ------------------------------------------------------------ one request */
struct s3_call;
typedef void (*s3_call_cb)(struct s3_call *c, int status, const char *err,
			   const struct http_response *r);

struct s3_call {
	struct s3 *s3;
	const char *method;
	char *path;  /* canonical (encoded) absolute path */
	char *query; /* canonical query or "" */
	const char *what; /* for messages: "GET", "PUT part", ... */
	char *key;        /* object key for messages (absolute), or NULL */
	struct {
		const char *name;
		char *value;
	} hdr[S3_MAX_EXTRA_HEADERS];
	size_t nhdr;
	enum http_body_kind body;
	char *body_buf;
	int body_fd;
	uint64_t body_off, body_len;
	char payload_hash[65];
	enum http_sink_kind sink;
	size_t sink_max;
	int sink_fd;
	bool priority;
	long low_speed_time; /* 0: http's default */
	bool error_in_200; /* a 200 with an <Error> body is a failure */
	bool ok_404;       /* 404 (but NoSuchBucket) is success */
	int attempt;
	bool got_response; /* some attempt got an HTTP status line */
	int64_t started_ms;  /* first attempt: the retry budget */
	uv_timer_t *timer;
	s3_call_cb cb;
	void *arg;
};

static uint64_t s3_rand(struct s3 *s3)
{
	/* xorshift64*: jitter only, no need for more */
	uint64_t x = s3->rng;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	s3->rng = x;
	return x * 0x2545F4914F6CDD1DULL;
}

static struct s3_call *s3_call_new(struct s3 *s3, const char *method,
				   const char *what)
{
	struct s3_call *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	c->s3 = s3;
	c->method = method;
	c->what = what;
	c->body_fd = -1;
	c->sink_fd = -1;
	c->priority = true;
	memcpy(c->payload_hash, S3_EMPTY_SHA256, sizeof c->payload_hash);
	return c;
}

static int s3_call_header(struct s3_call *c, const char *name,
			  const char *value)
{
	if (c->nhdr == S3_MAX_EXTRA_HEADERS)
		return -E2BIG;
	char *v = strdup(value);
	if (!v)
		return -ENOMEM;
	c->hdr[c->nhdr].name = name;
	c->hdr[c->nhdr].value = v;
	c->nhdr++;
	return 0;
}

static void s3_on_timer_closed(uv_handle_t *h)
{
	free(h);
}

static void s3_call_free(struct s3_call *c)
{
	if (!c)
		return;
	if (c->timer)
		uv_close((uv_handle_t *)c->timer, s3_on_timer_closed);
	for (size_t i = 0; i < c->nhdr; i++)
		free(c->hdr[i].value);
	free(c->path);
	free(c->query);
	free(c->key);
	free(c->body_buf);
	free(c);
}

/* Call the owner, then free the call. */
static void s3_call_finish(struct s3_call *c, int status, const char *err,
			   const struct http_response *r)
{
	c->cb(c, status, err, r);
	s3_call_free(c);
}

static void s3_on_response(void *arg, const struct http_response *r);

static int s3_call_send(struct s3_call *c, char **err)
{
	struct s3 *s3 = c->s3;
	struct sigv4_header sh[4 + S3_MAX_EXTRA_HEADERS];
	char *lines[5 + S3_MAX_EXTRA_HEADERS] = {0};
	char date[17];
	char *auth = NULL, *url = NULL;
	size_t n = 0;
	int rc = 0;

	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(date, sizeof date, "%Y%m%dT%H%M%SZ", &tm);

	if (c->sink == HTTP_SINK_FD && ftruncate(c->sink_fd, 0) < 0) {
		rc = -errno;
		util_err(err, rc, "%s: cannot truncate the download file: %s",
			 s3->base.describe, strerror(errno));
		goto out;
	}

	sh[n++] = (struct sigv4_header){"host", s3->host};
	sh[n++] = (struct sigv4_header){"x-amz-content-sha256",
					c->payload_hash};
	sh[n++] = (struct sigv4_header){"x-amz-date", date};
	if (s3->session_token)
		sh[n++] = (struct sigv4_header){"x-amz-security-token",
						s3->session_token};
	for (size_t i = 0; i < c->nhdr; i++)
		sh[n++] = (struct sigv4_header){c->hdr[i].name,
						c->hdr[i].value};
	if (s3->access_key_id) {
		struct sigv4_creds cr = {s3->access_key_id,
					 s3->secret_access_key,
					 s3->session_token};
		struct sigv4_request sr = {
			.method = c->method,
			.path = c->path,
			.query = c->query,
			.headers = sh,
			.nheaders = n,
			.payload_hash = c->payload_hash,
			.amz_date = date,
			.region = s3->region,
			.service = "s3",
		};
		if ((rc = sigv4_sign(&sr, &cr, &auth, err)))
			goto out;
	}
	size_t nl = 0;
	for (size_t i = 0; i < n; i++) {
		if (!(lines[nl++] = util_strdup_printf("%s: %s", sh[i].name,
						       sh[i].value))) {
			rc = -ENOMEM;
			goto out;
		}
	}
	if (auth && !(lines[nl++] = util_strdup_printf("Authorization: %s",
						       auth))) {
		rc = -ENOMEM;
		goto out;
	}
	url = util_strdup_printf("%s%s%s%s", s3->origin, c->path,
				 c->query[0] ? "?" : "", c->query);
	if (!url) {
		rc = -ENOMEM;
		goto out;
	}
	struct http_request hr = {
		.method = c->method,
		.url = url,
		.headers = (const char *const *)lines,
		.nheaders = nl,
		.body = c->body,
		.body_buf = c->body_buf,
		.body_fd = c->body_fd,
		.body_off = c->body_off,
		.body_len = c->body_len,
		.sink = c->sink,
		.sink_max = c->sink_max,
		.sink_fd = c->sink_fd,
		.priority = c->priority,
		.owner = s3,
		.low_speed_time = c->low_speed_time,
		.cb = s3_on_response,
		.arg = c,
	};
	rc = http_submit(s3->http, &hr, err);
out:
	if (auth) {
		OPENSSL_cleanse(auth, strlen(auth));
		free(auth);
	}
	for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++)
		free(lines[i]);
	free(url);
	return rc;
}

/* Start a call: 0 (its callback will fire) or an error (it will not; the
 * call is freed). */
static int s3_call_start(struct s3_call *c, char **err)
{
	int rc = s3_call_send(c, err);
	if (rc)
		s3_call_free(c);
	return rc;
}

static void s3_on_backoff(uv_timer_t *t)
{
	struct s3_call *c = t->data;
	char *err = NULL;
	int rc = s3_call_send(c, &err);
	if (rc)
		s3_call_finish(c, rc, err ? err : "cannot send request", NULL);
	free(err);
}

#define S3_RETRY_BUDGET_MS 20000

static bool s3_retriable(const struct http_response *r)
{
	switch (r->error) {
	case 0: /* 501 NotImplemented does not heal either */
		return (r->status >= 500 && r->status != 501) ||
		       r->status == 408 || r->status == 429;
	case -ECANCELED:
	case -ENOMEM:
	case -EFBIG:
	case -EPROTO: /* TLS and protocol mismatches do not heal */
		return false;
	default: /* refused, reset, stalled, poll errors: transient */
		return true;
	}
}

/* The storage status and message for a final failure. */
static int s3_call_failure(struct s3_call *c, const struct http_response *r,
			   const char *why, char **msg)
{
	struct s3 *s3 = c->s3;
	const char *d = s3->base.describe;
	char *code = NULL, *message = NULL;
	char *what = util_strdup_printf("%s%s%s", c->what, c->key ? " " : "",
					c->key ? c->key : "");
	int rc;

	if (r->error && !why) {
		if (!c->got_response &&
		    (!r->connected || r->error != -ETIMEDOUT)) {
			/* No attempt ever got an HTTP answer. */
			bool cert = r->error == -EPROTO &&
				    strstr(r->curl_error, "certificate");
			rc = util_err(msg, -EHOSTUNREACH,
				      "%s: cannot reach the S3 endpoint %s "
				      "after %d attempt%s: %s%s",
				      d, s3->endpoint, c->attempt + 1,
				      c->attempt ? "s" : "", r->curl_error,
				      cert ? " (a private certificate "
					     "authority: set AWS_CA_BUNDLE "
					     "to its certificate file)"
					   : "");
		} else if (r->error == -ETIMEDOUT) {
			rc = util_err(msg, -ETIMEDOUT,
				      "%s: %s: transfer stalled after %d "
				      "attempts (%s): %s",
				      d, what ? what : c->what, c->attempt + 1,
				      s3->endpoint, r->curl_error);
		} else {
			rc = util_err(msg, r->error == -ECONNRESET ? -EIO
								   : r->error,
				      "%s: %s: %s (%s)", d, what ? what : c->what,
				      r->curl_error, s3->endpoint);
		}
		goto out;
	}
	if (r->body_len)
		s3_xml_parse_error(r->body, r->body_len, &code, &message);
	const char *cs = code ? code : "", *ms = message ? message : "";
	if (why) {
		rc = util_err(msg, -EIO, "%s: %s: %s (after %d attempts)", d,
			      what ? what : c->what, why, c->attempt + 1);
	} else if (r->status == 401 || r->status == 403 ||
		   strcmp(cs, "InvalidToken") == 0 ||
		   strcmp(cs, "ExpiredToken") == 0 ||
		   strcmp(cs, "TokenRefreshRequired") == 0) {
		if (s3->access_key_id)
			rc = util_err(msg, -EACCES,
				      "%s: access denied (HTTP %ld %s: %s); "
				      "check AWS_ACCESS_KEY_ID and "
				      "AWS_SECRET_ACCESS_KEY%s",
				      d, r->status, code ? cs : "(no code)", ms,
				      s3->session_token
					      ? " and AWS_SESSION_TOKEN"
					      : "");
		else
			rc = util_err(msg, -EACCES,
				      "%s: access denied (HTTP %ld %s: %s); no "
				      "credentials are set: set "
				      "AWS_ACCESS_KEY_ID and "
				      "AWS_SECRET_ACCESS_KEY",
				      d, r->status, code ? cs : "(no code)", ms);
	} else if (strcmp(cs, "NoSuchBucket") == 0) {
		rc = util_err(msg, -ENOENT,
			      "%s: the bucket \"%s\" does not exist at %s", d,
			      s3->bucket, s3->endpoint);
	} else if (r->status == 404) {
		rc = util_err(msg, -ENOENT, "%s: %s: not found%s%s%s", d,
			      what ? what : c->what, code ? " (" : "", cs,
			      code ? ")" : "");
	} else if (r->status == 501 || strcmp(cs, "NotImplemented") == 0) {
		rc = util_err(msg, -ENOTSUP,
			      "%s: %s: not implemented by this store (HTTP %ld "
			      "%s: %s)", d, what ? what : c->what, r->status,
			      code ? cs : "(no code)", ms);
	} else if (r->status == 412 ||
		   (r->status == 409 &&
		    strcmp(cs, "ConditionalRequestConflict") == 0)) {
		/* 412: the conditional create found the key; 409: another
		 * conditional write of it was in progress (AWS) */
		rc = util_err(msg, -EEXIST, "%s: %s: the object already exists",
			      d, what ? what : c->what);
	} else {
		rc = util_err(msg, -EIO, "%s: %s: HTTP %ld%s%s%s%s%s", d,
			      what ? what : c->what, r->status,
			      code ? " " : "", cs, message ? ": " : "", ms,
			      c->attempt + 1 > 1 ? " (retries exhausted)" : "");
	}
out:
	free(code);
	free(message);
	free(what);
	return rc;
}

/* Schedule the next attempt after a jittered backoff: 0, or an error
 * when no timer could be had. */
static int s3_call_backoff(struct s3_call *c)
{
	struct s3 *s3 = c->s3;
	uint64_t cap = c->attempt >= 16
			       ? S3_BACKOFF_CAP_MS
			       : (uint64_t)S3_BACKOFF_BASE_MS << c->attempt;
	if (cap > S3_BACKOFF_CAP_MS)
		cap = S3_BACKOFF_CAP_MS;
	uint64_t delay = s3_rand(s3) % (cap + 1); /* full jitter */
	if (!c->timer) {
		c->timer = malloc(sizeof *c->timer);
		if (!c->timer)
			return -ENOMEM;
		int rc = uv_timer_init(s3->base.loop, c->timer);
		if (rc < 0) {
			free(c->timer);
			c->timer = NULL;
			return rc;
		}
		c->timer->data = c;
	}
	c->attempt++;
	return uv_timer_start(c->timer, s3_on_backoff, delay, 0);
}

static void s3_on_response(void *arg, const struct http_response *r)
{
	struct s3_call *c = arg;
	struct s3 *s3 = c->s3;
	const char *why = NULL;
	char *code = NULL, *message = NULL, *msg = NULL, *detail = NULL;
	bool retry = false;

	if (r->error == -ECANCELED) {
		s3_call_finish(c, -ECANCELED, "cancelled", r);
		return;
	}
	if (!r->error && r->status >= 200 && r->status <= 299) {
		if (c->error_in_200 &&
		    s3_xml_parse_error(r->body, r->body_len, &code,
				       &message) == 1) {
			why = "the server answered 200 with an error";
			retry = true;
		} else if (c->sink == HTTP_SINK_FD && r->content_length >= 0 &&
			   r->body_bytes != (uint64_t)r->content_length) {
			why = "short body";
			retry = true;
		} else {
			s3_call_finish(c, 0, NULL, r);
			goto out;
		}
	} else if (!r->error && r->status == 404 && c->ok_404) {
		bool no_bucket =
			r->body_len &&
			s3_xml_parse_error(r->body, r->body_len, &code,
					   &message) == 1 &&
			strcmp(code, "NoSuchBucket") == 0;
		if (!no_bucket) {
			s3_call_finish(c, 0, NULL, r);
			goto out;
		}
	} else {
		retry = s3_retriable(r);
	}
	if (r->status > 0)
		c->got_response = true;
	if (!c->started_ms)
		c->started_ms = util_now_ms();

	/* Retry within max_attempts and a time budget, so a dead or hung
	 * endpoint fails in seconds rather than minutes. */
	if (retry && c->attempt + 1 < s3->max_attempts &&
	    util_now_ms() - c->started_ms < S3_RETRY_BUDGET_MS &&
	    s3_call_backoff(c) == 0)
		goto out;
	if (why && code)
		detail = util_strdup_printf("%s (%s: %s)", why, code,
					    message ? message : "");
	int rc = s3_call_failure(c, r, why ? (detail ? detail : why) : NULL,
				 &msg);
	s3_call_finish(c, rc, msg ? msg : "S3 request failed", r);
out:
	free(detail);
	free(code);
	free(message);
	free(msg);
}

/* ------------------------------------------------------------ helpers */
static char *s3_full_key(struct s3 *s3, const char *key)
{
	return util_strdup_printf("%s%s", s3->root, key);
}

static char *s3_object_path(struct s3 *s3, const char *full_key)
{
	char *enc = sigv4_uri_encode(full_key, true);
	if (!enc)
		return NULL;
	char *p = util_strdup_printf("%s/%s", s3->base_path, enc);
	free(enc);
	return p;
}

static char *s3_bucket_path(struct s3 *s3)
{
	return strdup(s3->base_path[0] ? s3->base_path : "/");
}

static char *s3_query(const char *const *names, const char *const *values,
		      size_t n)
{
	return sigv4_canonical_query(names, values, n);
}

/* A zero-delay callback (for operations with nothing to do): a call that
 * succeeds never fires its callback from inside itself. */
struct s3_defer {
	uv_timer_t timer;
	void (*fn)(void *arg);
	void *arg;
};

static void s3_defer_closed(uv_handle_t *h)
{
	free(h->data);
}

static void s3_defer_fire(uv_timer_t *t)
{
	struct s3_defer *d = t->data;
	d->fn(d->arg);
	uv_close((uv_handle_t *)&d->timer, s3_defer_closed);
}

static int s3_defer(struct s3 *s3, void (*fn)(void *), void *arg)
{
	struct s3_defer *d = calloc(1, sizeof *d);
	if (!d)
		return -ENOMEM;
	int rc = uv_timer_init(s3->base.loop, &d->timer);
	if (rc < 0) {
		free(d);
		return rc;
	}
	d->timer.data = d;
	d->fn = fn;
	d->arg = arg;
	uv_timer_start(&d->timer, s3_defer_fire, 0, 0);
	return 0;
}

/* ------------------------------------------------------------ put */
struct s3_put {
	struct s3 *s3;
	char *key;  /* absolute */
	char *path;
	int fd;
	uint64_t len;
	char ts[48];
	storage_cb cb;
	void *arg;
	bool excl; /* If-None-Match: * (on the PUT, or on the Complete) */

	uv_work_t work;
	int hash_rc;
	size_t nparts; /* 0: single PUT */
	uint64_t psize;
	char (*hash)[65]; /* one (single) or per part */

	char *upload_id;
	char **etags;
	size_t next_part, inflight;
	int status;
	char *err;
	bool completing;
};

static void s3_put_free(struct s3_put *p)
{
	if (!p)
		return;
	if (p->etags)
		for (size_t i = 0; i < p->nparts; i++)
			free(p->etags[i]);
	free(p->etags);
	free(p->hash);
	free(p->upload_id);
	free(p->key);
	free(p->path);
	free(p->err);
	free(p);
}

static void s3_put_finish(struct s3_put *p, int status, const char *err)
{
	storage_cb cb = p->cb;
	void *arg = p->arg;
	char *e = err ? strdup(err) : NULL;
	s3_put_free(p);
	cb(arg, status, status ? (e ? e : "S3 upload failed") : NULL);
	free(e);
}

static void s3_put_hash_work(uv_work_t *w)
{
	struct s3_put *p = w->data;
	size_t n = p->nparts ? p->nparts : 1;
	uint64_t psize = p->nparts ? p->psize : p->len;
	size_t bufsz = 1u << 20;
	uint8_t *buf = malloc(bufsz);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int rc = 0;

	if (!buf || !ctx) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n && !rc; i++) {
		uint64_t off = (uint64_t)i * psize;
		uint64_t left = i + 1 == n ? p->len - off : psize;
		unsigned char md[EVP_MAX_MD_SIZE];
		unsigned int mdlen = 0;
		if (!EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
			rc = -EIO;
			break;
		}
		while (left > 0) {
			size_t want = left < bufsz ? (size_t)left : bufsz;
			ssize_t got = util_pread_all(p->fd, buf, want,
						     (off_t)off);
			if (got < 0) {
				rc = (int)got;
				break;
			}
			if ((size_t)got != want) {
				rc = -ENODATA;
				break;
			}
			EVP_DigestUpdate(ctx, buf, want);
			off += want;
			left -= want;
		}
		if (rc)
			break;
		EVP_DigestFinal_ex(ctx, md, &mdlen);
		for (unsigned j = 0; j < mdlen; j++)
			snprintf(p->hash[i] + 2 * j, 3, "%02x", md[j]);
	}
out:
	EVP_MD_CTX_free(ctx);
	free(buf);
	p->hash_rc = rc;
}

/* A conditional write the store does not implement (501): note it and
 * write plainly, now and from then on. Stores that ignore the header do
 * the same without telling; those that honour it (AWS, R2, Tigris, MinIO,
 * SeaweedFS) never get here. */
static bool s3_put_unconditional(struct s3_put *p, int status)
{
	if (status != -ENOTSUP || !p->excl)
		return false;
	p->excl = false;
	if (!p->s3->no_conditional)
		log_warn("%s: the store does not implement conditional writes "
			 "(If-None-Match); replication uses plain PUTs, which "
			 "cannot stop a late upload from overwriting a file",
			 p->s3->base.describe);
	p->s3->no_conditional = true;
	return true;
}

static void s3_put_send(struct s3_put *p);

static void s3_put_single_done(struct s3_call *c, int status, const char *err,
			       const struct http_response *r)
{
	struct s3_put *p = c->arg;
	if (s3_put_unconditional(p, status)) {
		s3_put_send(p);
		return;
	}
	s3_put_finish(p, status, err);
}

static void s3_put_abort_done(struct s3_call *c, int status, const char *err,
			      const struct http_response *r)
{
	struct s3_put *p = c->arg;
	/* the abort's own result does not matter: report the first failure */
	s3_put_finish(p, p->status, p->err);
}

/* A part or the Complete failed (or finished after one did): once nothing
 * is in flight, abort the upload and report. */
static void s3_put_fail(struct s3_put *p, int status, const char *err)
{
	if (!p->status) {
		p->status = status;
		p->err = err ? strdup(err) : NULL;
	}
	if (p->inflight > 0)
		return;
	if (!p->upload_id) {
		s3_put_finish(p, p->status, p->err);
		return;
	}
	struct s3_call *c = s3_call_new(p->s3, "DELETE", "AbortMultipartUpload");
	const char *names[] = {"uploadId"};
	const char *values[] = {p->upload_id};
	if (!c || !(c->path = strdup(p->path)) ||
	    !(c->query = s3_query(names, values, 1))) {
		s3_call_free(c);
		s3_put_finish(p, p->status, p->err);
		return;
	}
	c->cb = s3_put_abort_done;
	c->arg = p;
	if (s3_call_start(c, NULL))
		s3_put_finish(p, p->status, p->err);
}

static void s3_put_complete(struct s3_put *p);

static void s3_put_complete_done(struct s3_call *c, int status,
				 const char *err, const struct http_response *r)
{
	struct s3_put *p = c->arg;
	if (s3_put_unconditional(p, status)) {
		s3_put_complete(p);
		return;
	}
	if (status) {
		s3_put_fail(p, status, err);
		return;
	}
	s3_put_finish(p, 0, NULL);
}

static void s3_put_complete(struct s3_put *p)
{
	char *err = NULL;
	int rc = -ENOMEM;
	struct s3_call *c = s3_call_new(p->s3, "POST",
					"CompleteMultipartUpload");
	const char *names[] = {"uploadId"};
	const char *values[] = {p->upload_id};
	if (!c || !(c->path = strdup(p->path)) ||
	    !(c->query = s3_query(names, values, 1)) ||
	    !(c->key = strdup(p->key)) ||
	    !(c->body_buf = s3_xml_complete_body((const char *const *)p->etags,
						 p->nparts)) ||
	    s3_call_header(c, "content-type", "application/xml") ||
	    (p->excl && s3_call_header(c, "if-none-match", "*"))) {
		s3_call_free(c);
		goto fail;
	}
	c->body = HTTP_BODY_MEM;
	c->body_len = strlen(c->body_buf);
	sigv4_sha256_hex(c->body_buf, c->body_len, c->payload_hash);
	c->error_in_200 = true;
	/* S3 may take minutes, trickling whitespace, before it answers */
	c->low_speed_time = S3_COMPLETE_STALL_S;
	c->cb = s3_put_complete_done;
	c->arg = p;
	if ((rc = s3_call_start(c, &err)))
		goto fail;
	return;
fail:
	s3_put_fail(p, rc, err ? err : "cannot start CompleteMultipartUpload");
	free(err);
}

static void s3_put_next_parts(struct s3_put *p);

static void s3_put_part_done(struct s3_call *c, int status, const char *err,
			     const struct http_response *r)
{
	struct s3_put *p = c->arg;
	size_t i = (size_t)(c->body_off / p->psize);
	p->inflight--;
	if (!status && (!r->etag || !*r->etag)) {
		status = -EIO;
		err = "UploadPart answered without an ETag";
	}
	if (!status && !(p->etags[i] = strdup(r->etag))) {
		status = -ENOMEM;
		err = "out of memory";
	}
	if (status || p->status) {
		s3_put_fail(p, status ? status : p->status, err);
		return;
	}
	s3_put_next_parts(p);
}

static void s3_put_next_parts(struct s3_put *p)
{
	struct s3 *s3 = p->s3;
	while (!p->status && p->next_part < p->nparts &&
	       p->inflight < (size_t)s3->concurrency) {
		size_t i = p->next_part++;
		char num[24];
		char *err = NULL;
		snprintf(num, sizeof num, "%zu", i + 1);
		const char *names[] = {"partNumber", "uploadId"};
		const char *values[] = {num, p->upload_id};
		struct s3_call *c = s3_call_new(s3, "PUT", "UploadPart");
		if (!c || !(c->path = strdup(p->path)) ||
		    !(c->query = s3_query(names, values, 2)) ||
		    !(c->key = strdup(p->key))) {
			s3_call_free(c);
			s3_put_fail(p, -ENOMEM, "out of memory");
			return;
		}
		c->body = HTTP_BODY_FD;
		c->body_fd = p->fd;
		c->body_off = (uint64_t)i * p->psize;
		c->body_len = i + 1 == p->nparts ? p->len - c->body_off
						 : p->psize;
		memcpy(c->payload_hash, p->hash[i], 65);
		c->priority = false; /* snapshots yield to small files */
		c->cb = s3_put_part_done;
		c->arg = p;
		int rc = s3_call_start(c, &err);
		if (rc) {
			s3_put_fail(p, rc, err ? err : "cannot start UploadPart");
			free(err);
			return;
		}
		p->inflight++;
	}
	if (!p->status && p->inflight == 0 && p->next_part == p->nparts &&
	    !p->completing) {
		p->completing = true;
		s3_put_complete(p);
	}
}

static void s3_put_create_done(struct s3_call *c, int status, const char *err,
			       const struct http_response *r)
{
	struct s3_put *p = c->arg;
	char *e = NULL;
	if (status) {
		s3_put_finish(p, status, err);
		return;
	}
	int rc = s3_xml_parse_upload_id(r->body, r->body_len, &p->upload_id,
					&e);
	if (rc) {
		char *m = util_strdup_printf("%s: %s", p->s3->base.describe,
					     e ? e : "bad response");
		s3_put_finish(p, -EIO, m);
		free(m);
		free(e);
		return;
	}
	s3_put_next_parts(p);
}

static void s3_put_hash_done(uv_work_t *w, int status)
{
	struct s3_put *p = w->data;
	int rc = status < 0 ? status : p->hash_rc;
	if (rc) {
		char *m = util_strdup_printf(
			"%s: PUT %s: cannot read the source file: %s",
			p->s3->base.describe, p->key,
			rc == -ENODATA ? "it is shorter than the upload length"
				       : strerror(-rc));
		s3_put_finish(p, rc, m);
		free(m);
		return;
	}
	s3_put_send(p);
}

/* The PUT, or the CreateMultipartUpload that starts the parts. */
static void s3_put_send(struct s3_put *p)
{
	struct s3 *s3 = p->s3;
	struct s3_call *c = NULL;
	char *err = NULL;
	int rc;

	if (!p->nparts) {
		c = s3_call_new(s3, "PUT", "PUT");
		if (!c || !(c->path = strdup(p->path)) ||
		    !(c->query = strdup("")) || !(c->key = strdup(p->key)) ||
		    s3_call_header(c, S3_META_TIMESTAMP, p->ts) ||
		    (p->excl && s3_call_header(c, "if-none-match", "*"))) {
			rc = -ENOMEM;
			goto fail_call;
		}
		c->body = HTTP_BODY_FD;
		c->body_fd = p->fd;
		c->body_off = 0;
		c->body_len = p->len;
		memcpy(c->payload_hash, p->hash[0], 65);
		c->cb = s3_put_single_done;
	} else {
		const char *names[] = {"uploads"};
		c = s3_call_new(s3, "POST", "CreateMultipartUpload");
		if (!c || !(c->path = strdup(p->path)) ||
		    !(c->query = s3_query(names, NULL, 1)) ||
		    !(c->key = strdup(p->key)) ||
		    s3_call_header(c, S3_META_TIMESTAMP, p->ts)) {
			rc = -ENOMEM;
			goto fail_call;
		}
		c->sink_max = 1u << 20;
		c->cb = s3_put_create_done;
	}
	c->arg = p;
	rc = s3_call_start(c, &err);
	if (rc)
		goto fail;
	return;
fail_call:
	s3_call_free(c);
fail:
	s3_put_finish(p, rc, err ? err : "cannot start the upload");
	free(err);
}

static int storage_s3_put(struct storage *s, const char *key, int fd,
			  uint64_t len, int64_t ts_ms, bool excl, storage_cb cb,
			  void *arg)
{
	struct s3 *s3 = (struct s3 *)s;
	struct s3_put *p = NULL;
	int rc = -ENOMEM;

	if (!key || !*key || fd < 0 || !cb)
		return -EINVAL;
	p = calloc(1, sizeof *p);
	if (!p)
		goto out;
	p->s3 = s3;
	p->fd = fd;
	p->len = len;
	p->cb = cb;
	p->arg = arg;
	p->excl = excl && !s3->no_conditional;
	util_rfc3339_ms(ts_ms, p->ts, sizeof p->ts);
	if (!(p->key = s3_full_key(s3, key)) ||
	    !(p->path = s3_object_path(s3, p->key)))
		goto out;
	if (len > s3->threshold) {
		uint64_t psize = s3->part_size;
		if ((len + psize - 1) / psize > S3_MAX_PARTS) {
			/* keep parts equal: grow them, 1 MiB aligned */
			psize = (len + S3_MAX_PARTS - 1) / S3_MAX_PARTS;
			psize = (psize + (1u << 20) - 1) & ~((1ULL << 20) - 1);
		}
		if (psize > S3_MAX_PART_SIZE) {
			rc = -EFBIG;
			goto out;
		}
		p->psize = psize;
		p->nparts = (size_t)((len + psize - 1) / psize);
		p->etags = calloc(p->nparts, sizeof *p->etags);
		if (!p->etags)
			goto out;
	}
	p->hash = calloc(p->nparts ? p->nparts : 1, sizeof *p->hash);
	if (!p->hash)
		goto out;
	p->work.data = p;
	rc = uv_queue_work(s->loop, &p->work, s3_put_hash_work,
			   s3_put_hash_done);
	if (rc < 0)
		goto out;
	p = NULL;
	rc = 0;
out:
	s3_put_free(p);
	return rc;
}

/* ------------------------------------------------------------ get */
struct s3_get {
	storage_cb cb;
	void *arg;
};

static void s3_get_done(struct s3_call *c, int status, const char *err,
			const struct http_response *r)
{
	struct s3_get *g = c->arg;
	storage_cb cb = g->cb;
	void *arg = g->arg;
	free(g);
	cb(arg, status, status ? err : NULL);
}

static int storage_s3_get(struct storage *s, const char *key, int fd,
			  uint64_t limit, storage_cb cb, void *arg)
{
	char range[64];
	struct s3 *s3 = (struct s3 *)s;
	struct s3_get *g = NULL;
	struct s3_call *c = NULL;
	int rc = -ENOMEM;

	if (!key || !*key || fd < 0 || !cb)
		return -EINVAL;
	g = calloc(1, sizeof *g);
	c = s3_call_new(s3, "GET", "GET");
	if (!g || !c || !(c->key = s3_full_key(s3, key)) ||
	    !(c->path = s3_object_path(s3, c->key)) ||
	    !(c->query = strdup("")))
		goto out;
	if (limit) {
		/* 206 with the first bytes (all of a shorter object) */
		snprintf(range, sizeof range, "bytes=0-%" PRIu64, limit - 1);
		if (s3_call_header(c, "range", range))
			goto out;
	}
	g->cb = cb;
	g->arg = arg;
	c->sink = HTTP_SINK_FD;
	c->sink_fd = fd;
	c->cb = s3_get_done;
	c->arg = g;
	rc = s3_call_start(c, NULL);
	c = NULL;
	if (rc == 0)
		g = NULL;
out:
	s3_call_free(c);
	free(g);
	return rc;
}

/* ------------------------------------------------------------ list */
struct s3_list {
	struct s3 *s3;
	char *prefix; /* absolute */
	char *delimiter;
	char **keys, **prefixes;
	size_t nkeys, nprefixes;
	storage_list_cb cb;
	void *arg;
};

static void s3_strv_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static void s3_list_free(struct s3_list *l)
{
	if (!l)
		return;
	s3_strv_free(l->keys, l->nkeys);
	s3_strv_free(l->prefixes, l->nprefixes);
	free(l->prefix);
	free(l->delimiter);
	free(l);
}

static void s3_list_finish(struct s3_list *l, int status, const char *err)
{
	storage_list_cb cb = l->cb;
	void *arg = l->arg;
	char **keys = l->keys, **prefixes = l->prefixes;
	size_t nk = l->nkeys, np = l->nprefixes;
	l->keys = l->prefixes = NULL;
	l->nkeys = l->nprefixes = 0;
	char *e = err ? strdup(err) : NULL;
	s3_list_free(l);
	if (status)
		cb(arg, status, e ? e : "S3 listing failed", NULL, 0, NULL, 0);
	else
		cb(arg, 0, NULL, keys, nk, prefixes, np);
	s3_strv_free(keys, nk);
	s3_strv_free(prefixes, np);
	free(e);
}

/* Move the page's entries into the listing, relative to the root. */
static int s3_list_take(struct s3_list *l, char **v, size_t n, char ***dst,
			size_t *ndst)
{
	size_t rl = strlen(l->s3->root);
	char **nv = realloc(*dst, (*ndst + n + 1) * sizeof **dst);
	if (!nv)
		return -ENOMEM;
	*dst = nv;
	for (size_t i = 0; i < n; i++) {
		if (strncmp(v[i], l->s3->root, rl) != 0 || !v[i][rl])
			continue; /* outside the root, or the root itself */
		char *rel = strdup(v[i] + rl);
		if (!rel)
			return -ENOMEM;
		nv[(*ndst)++] = rel;
	}
	return 0;
}

static int s3_list_page(struct s3_list *l, const char *token, char **err);

static void s3_list_page_done(struct s3_call *c, int status, const char *err,
			      const struct http_response *r)
{
	struct s3_list *l = c->arg;
	struct s3_list_page pg;
	char *e = NULL, *m = NULL;
	int rc;

	if (status) {
		s3_list_finish(l, status, err);
		return;
	}
	if ((rc = s3_xml_parse_list(r->body, r->body_len, &pg, &e))) {
		m = util_strdup_printf("%s: %s", l->s3->base.describe,
				       e ? e : "bad listing");
		s3_list_finish(l, -EIO, m);
		goto out;
	}
	if ((rc = s3_list_take(l, pg.keys, pg.nkeys, &l->keys, &l->nkeys)) ||
	    (rc = s3_list_take(l, pg.prefixes, pg.nprefixes, &l->prefixes,
			       &l->nprefixes))) {
		s3_list_finish(l, rc, "out of memory");
		goto out;
	}
	if (!pg.truncated) {
		s3_list_finish(l, 0, NULL);
		goto out;
	}
	if ((rc = s3_list_page(l, pg.next_token, &e)))
		s3_list_finish(l, rc, e ? e : "cannot list the next page");
out:
	s3_xml_list_clear(&pg);
	free(e);
	free(m);
}

static int s3_list_page(struct s3_list *l, const char *token, char **err)
{
	const char *names[5] = {"list-type", "prefix", "encoding-type"};
	const char *values[5] = {"2", l->prefix, "url"};
	size_t n = 3;
	struct s3_call *c = s3_call_new(l->s3, "GET", "ListObjectsV2");

	if (l->delimiter && *l->delimiter) {
		names[n] = "delimiter";
		values[n++] = l->delimiter;
	}
	if (token) {
		names[n] = "continuation-token";
		values[n++] = token;
	}
	if (!c || !(c->path = s3_bucket_path(l->s3)) ||
	    !(c->query = s3_query(names, values, n)) ||
	    !(c->key = util_strdup_printf("prefix \"%s\"", l->prefix))) {
		s3_call_free(c);
		return -ENOMEM;
	}
	c->sink = HTTP_SINK_MEM;
	c->sink_max = S3_LIST_PAGE_MAX;
	c->cb = s3_list_page_done;
	c->arg = l;
	return s3_call_start(c, err);
}

static int storage_s3_list(struct storage *s, const char *prefix,
			   const char *delimiter, storage_list_cb cb, void *arg)
{
	struct s3 *s3 = (struct s3 *)s;
	struct s3_list *l = calloc(1, sizeof *l);
	int rc = -ENOMEM;

	if (!cb) {
		free(l);
		return -EINVAL;
	}
	if (!l)
		return -ENOMEM;
	l->s3 = s3;
	l->cb = cb;
	l->arg = arg;
	if (!(l->prefix = s3_full_key(s3, prefix ? prefix : "")) ||
	    (delimiter && !(l->delimiter = strdup(delimiter))))
		goto out;
	rc = s3_list_page(l, NULL, NULL);
	if (rc == 0)
		l = NULL;
out:
	s3_list_free(l);
	return rc;
}

/* ------------------------------------------------------------ delete */
struct s3_del {
	struct s3 *s3;
	char **keys; /* absolute */
	size_t n, next;
	storage_cb cb;
	void *arg;
};

static void s3_del_free(struct s3_del *d)
{
	if (!d)
		return;
	s3_strv_free(d->keys, d->n);
	free(d);
}

static void s3_del_finish(struct s3_del *d, int status, const char *err)
{
	storage_cb cb = d->cb;
	void *arg = d->arg;
	char *e = err ? strdup(err) : NULL;
	s3_del_free(d);
	cb(arg, status, status ? (e ? e : "S3 delete failed") : NULL);
	free(e);
}

static void s3_del_nothing(void *arg)
{
	s3_del_finish(arg, 0, NULL);
}

static int s3_del_batch(struct s3_del *d, char **err);

static void s3_del_batch_done(struct s3_call *c, int status, const char *err,
			      const struct http_response *r)
{
	struct s3_del *d = c->arg;
	char *key = NULL, *code = NULL, *message = NULL, *m = NULL, *e = NULL;

	if (status) {
		s3_del_finish(d, status, err);
		return;
	}
	if (r->status != 404 && r->body_len) {
		int n = s3_xml_parse_delete_result(r->body, r->body_len, &key,
						   &code, &message);
		if (n != 0 && !(n > 0 && code &&
				strcmp(code, "NoSuchKey") == 0)) {
			m = util_strdup_printf(
				"%s: DeleteObjects: %s%s%s: %s", d->s3->base.describe,
				n > 0 ? "cannot delete " : "",
				n > 0 && key ? key : "",
				n > 0 ? "" : "bad response",
				code ? code : "malformed XML");
			s3_del_finish(d, -EIO, m);
			goto out;
		}
	}
	if (d->next == d->n) {
		s3_del_finish(d, 0, NULL);
		goto out;
	}
	int rc = s3_del_batch(d, &e);
	if (rc)
		s3_del_finish(d, rc, e ? e : "cannot start DeleteObjects");
out:
	free(key);
	free(code);
	free(message);
	free(m);
	free(e);
}

static int s3_del_batch(struct s3_del *d, char **err)
{
	size_t n = d->n - d->next;
	if (n > S3_DELETE_BATCH)
		n = S3_DELETE_BATCH;
	const char *names[] = {"delete"};
	unsigned char md5[EVP_MAX_MD_SIZE];
	unsigned int md5len = 0;
	char b64[32];
	struct s3_call *c = s3_call_new(d->s3, "POST", "DeleteObjects");
	if (!c || !(c->path = s3_bucket_path(d->s3)) ||
	    !(c->query = s3_query(names, NULL, 1)) ||
	    !(c->body_buf = s3_xml_delete_body(
		      (const char *const *)d->keys + d->next, n)))
		goto nomem;
	c->body = HTTP_BODY_MEM;
	c->body_len = strlen(c->body_buf);
	if (!EVP_Digest(c->body_buf, c->body_len, md5, &md5len, EVP_md5(),
			NULL))
		goto nomem;
	EVP_EncodeBlock((unsigned char *)b64, md5, (int)md5len);
	if (s3_call_header(c, "content-md5", b64) ||
	    s3_call_header(c, "content-type", "application/xml"))
		goto nomem;
	sigv4_sha256_hex(c->body_buf, c->body_len, c->payload_hash);
	c->ok_404 = true;
	c->sink_max = 4u << 20;
	c->cb = s3_del_batch_done;
	c->arg = d;
	d->next += n;
	return s3_call_start(c, err);
nomem:
	s3_call_free(c);
	return -ENOMEM;
}

static int storage_s3_del(struct storage *s, const char *const *keys, size_t n,
			  storage_cb cb, void *arg)
{
	struct s3 *s3 = (struct s3 *)s;
	struct s3_del *d = NULL;
	int rc = -ENOMEM;

	if (!cb || (n && !keys))
		return -EINVAL;
	d = calloc(1, sizeof *d);
	if (!d)
		return -ENOMEM;
	d->s3 = s3;
	d->cb = cb;
	d->arg = arg;
	d->keys = calloc(n ? n : 1, sizeof *d->keys);
	if (!d->keys)
		goto out;
	for (size_t i = 0; i < n; i++) {
		if (!keys[i] || !*keys[i]) {
			rc = -EINVAL;
			goto out;
		}
		if (!(d->keys[i] = s3_full_key(s3, keys[i])))
			goto out;
		d->n = i + 1;
	}
	d->n = n;
	rc = n ? s3_del_batch(d, NULL) : s3_defer(s3, s3_del_nothing, d);
	if (rc == 0)
		d = NULL;
out:
	s3_del_free(d);
	return rc;
}

/* ------------------------------------------------------------ lifetime */
static void storage_s3_free(struct storage *s)
{
	struct s3 *s3 = (struct s3 *)s;
	if (!s3)
		return;
	/* handles close on the loop: run it afterwards to release them */
	http_release(s3->http, s3);
	free(s3->bucket);
	free(s3->root);
	free(s3->endpoint);
	free(s3->origin);
	free(s3->host);
	free(s3->base_path);
	free(s3->region);
	free(s3->access_key_id);
	if (s3->secret_access_key) {
		OPENSSL_cleanse(s3->secret_access_key,
				strlen(s3->secret_access_key));
		free(s3->secret_access_key);
	}
	if (s3->session_token) {
		OPENSSL_cleanse(s3->session_token, strlen(s3->session_token));
		free(s3->session_token);
	}
	free(s3->base.describe);
	free(s3);
}

static const struct storage_ops storage_s3_ops = {
	.name = "s3",
	.put = storage_s3_put,
	.get = storage_s3_get,
	.list = storage_s3_list,
	.del = storage_s3_del,
	.free = storage_s3_free,
};

/* An option, else the environment variable; NULL when empty. */
static const char *s3_setting(const char *opt, const char *env)
{
	const char *v = opt && *opt ? opt : getenv(env);
	return v && *v ? v : NULL;
}

/* Split an endpoint URL into origin (scheme://authority), host (authority)
 * and an optional base path (no trailing slash). No scheme means https. */
static int s3_parse_endpoint(struct s3 *s3, const char *ep, char **err)
{
	const char *scheme = "https";
	const char *rest = ep;
	if (strncmp(ep, "http://", 7) == 0) {
		scheme = "http";
		rest = ep + 7;
	} else if (strncmp(ep, "https://", 8) == 0) {
		rest = ep + 8;
	} else if (strstr(ep, "://")) {
		return util_err(err, -EINVAL,
				"S3 endpoint \"%s\": only http:// and https:// "
				"are supported", ep);
	}
	size_t alen = strcspn(rest, "/?#");
	if (alen == 0)
		return util_err(err, -EINVAL, "S3 endpoint \"%s\" has no host",
				ep);
	const char *path = rest + alen;
	size_t plen = strcspn(path, "?#");
	while (plen > 0 && path[plen - 1] == '/')
		plen--;
	s3->host = strndup(rest, alen);
	s3->origin = util_strdup_printf("%s://%.*s", scheme, (int)alen, rest);
	s3->endpoint = util_strdup_printf("%s://%.*s%.*s", scheme, (int)alen,
					  rest, (int)plen, path);
	char *enc = sigv4_uri_encode(s3->bucket, false);
	s3->base_path = enc ? util_strdup_printf("%.*s/%s", (int)plen, path,
						 enc)
			    : NULL;
	free(enc);
	if (!s3->host || !s3->origin || !s3->endpoint || !s3->base_path)
		return -ENOMEM;
	return 0;
}

int storage_s3_new(struct storage **out, uv_loop_t *loop, const char *bucket,
		   const char *prefix, const struct storage_opts *opts,
		   char **err)
{
	static const struct storage_opts none = {0};
	struct s3 *s3 = NULL;
	int rc = -ENOMEM;

	*out = NULL;
	if (!opts)
		opts = &none;
	if (!bucket || !*bucket || strchr(bucket, '/'))
		return util_err(err, -EINVAL, "S3: bad bucket name \"%s\"",
				bucket ? bucket : "");
	s3 = calloc(1, sizeof *s3);
	if (!s3)
		return -ENOMEM;
	s3->base.ops = &storage_s3_ops;
	s3->base.kind = STORAGE_S3;
	s3->base.loop = loop;

	/* the prefix, without slashes at either end */
	const char *p = prefix ? prefix : "";
	while (*p == '/')
		p++;
	size_t plen = strlen(p);
	while (plen > 0 && p[plen - 1] == '/')
		plen--;
	if (!(s3->bucket = strdup(bucket)) ||
	    !(s3->root = plen ? util_strdup_printf("%.*s/", (int)plen, p)
			      : strdup("")) ||
	    !(s3->base.describe = util_strdup_printf(
		      "s3://%s%s%.*s", bucket, plen ? "/" : "", (int)plen, p)))
		goto out;

	const char *region = s3_setting(opts->region, "AWS_REGION");
	if (!region)
		region = s3_setting(NULL, "AWS_DEFAULT_REGION");
	if (!(s3->region = strdup(region ? region : "us-east-1")))
		goto out;

	const char *akid = s3_setting(opts->access_key_id, "AWS_ACCESS_KEY_ID");
	const char *secret = s3_setting(opts->secret_access_key,
					"AWS_SECRET_ACCESS_KEY");
	const char *token = s3_setting(opts->session_token,
				       "AWS_SESSION_TOKEN");
	if (!akid != !secret) {
		rc = util_err(err, -EINVAL,
			      "%s: %s is set but %s is not; set both (or "
			      "neither, for anonymous access)",
			      s3->base.describe,
			      akid ? "AWS_ACCESS_KEY_ID"
				   : "AWS_SECRET_ACCESS_KEY",
			      akid ? "AWS_SECRET_ACCESS_KEY"
				   : "AWS_ACCESS_KEY_ID");
		goto out;
	}
	if (token && !akid) {
		rc = util_err(err, -EINVAL,
			      "%s: AWS_SESSION_TOKEN is set without "
			      "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
			      s3->base.describe);
		goto out;
	}
	if (akid && (!(s3->access_key_id = strdup(akid)) ||
		     !(s3->secret_access_key = strdup(secret)) ||
		     (token && !(s3->session_token = strdup(token)))))
		goto out;

	const char *ep = s3_setting(opts->endpoint, "AWS_ENDPOINT_URL_S3");
	if (!ep)
		ep = s3_setting(NULL, "AWS_ENDPOINT_URL");
	if (ep) {
		if ((rc = s3_parse_endpoint(s3, ep, err)))
			goto out;
	} else if (strchr(bucket, '.')) {
		/* dots break the *.s3 TLS wildcard: path style */
		char *aws = util_strdup_printf("https://s3.%s.amazonaws.com",
					       s3->region);
		rc = aws ? s3_parse_endpoint(s3, aws, err) : -ENOMEM;
		free(aws);
		if (rc)
			goto out;
	} else {
		rc = -ENOMEM;
		if (!(s3->host = util_strdup_printf("%s.s3.%s.amazonaws.com",
						    bucket, s3->region)) ||
		    !(s3->origin = util_strdup_printf("https://%s",
						      s3->host)) ||
		    !(s3->endpoint = strdup(s3->origin)) ||
		    !(s3->base_path = strdup("")))
			goto out;
	}

	s3->max_attempts = opts->max_attempts > 0 ? opts->max_attempts
						  : S3_DEFAULT_MAX_ATTEMPTS;
	s3->concurrency = opts->concurrency > 0 ? opts->concurrency
						: S3_DEFAULT_CONCURRENCY;
	s3->threshold = opts->multipart_threshold ? opts->multipart_threshold
						  : S3_DEFAULT_THRESHOLD;
	if (s3->threshold > S3_MAX_PUT_SIZE)
		s3->threshold = S3_MAX_PUT_SIZE;
	s3->part_size = opts->part_size ? opts->part_size
					: S3_DEFAULT_PART_SIZE;
	if (s3->part_size < S3_MIN_PART_SIZE ||
	    s3->part_size > S3_MAX_PART_SIZE) {
		rc = util_err(err, -EINVAL,
			      "%s: part size %llu is outside S3's limits "
			      "(5 MiB to 5 GiB)",
			      s3->base.describe,
			      (unsigned long long)s3->part_size);
		goto out;
	}
	s3->rng = (uint64_t)util_now_ms() * 0x9E3779B97F4A7C15ULL ^
		  (uint64_t)getpid() ^ (uint64_t)(uintptr_t)s3;
	if (!s3->rng)
		s3->rng = 1;

	struct http_opts ho = {.max_transfers = s3->concurrency};
	ho.verbose = getenv("WALRUST_HTTP_VERBOSE") != NULL;
	ho.ca_bundle = s3_setting(NULL, "AWS_CA_BUNDLE");
	if ((rc = http_new(&s3->http, loop, &ho, err)))
		goto out;
	*out = &s3->base;
	s3 = NULL;
	rc = 0;
out:
	if (s3)
		storage_s3_free(&s3->base);
	return rc;
}
