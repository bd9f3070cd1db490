/*
 * sigv4.c: AWS Signature Version 4 for S3 (header-based authentication).
 *
 * The algorithm (AWS "Signature Calculations for the Authorization Header:
 * Transferring Payload in a Single Chunk"):
 *
 *   canonical request = METHOD \n
 *                       canonical URI (already URI-encoded, not re-encoded
 *                         for S3) \n
 *                       canonical query (names and values encoded, sorted
 *                         by name then value, "name=value" joined by &) \n
 *                       canonical headers (lowercase name ":" trimmed value
 *                         \n, sorted by name; repeated names joined by ",") \n
 *                       signed headers (names joined by ";") \n
 *                       payload hash (hex SHA-256 or UNSIGNED-PAYLOAD)
 *   string to sign    = "AWS4-HMAC-SHA256" \n amz-date \n
 *                       date/region/service/aws4_request \n
 *                       hex(SHA-256(canonical request))
 *   signing key       = HMAC(HMAC(HMAC(HMAC("AWS4" secret, date), region),
 *                       service), "aws4_request")
 *   signature         = hex(HMAC(signing key, string to sign))
 *
 * The signing key changes once a day per region/service, so it is cached.
 * The cache is keyed by a SHA-256 over (secret, date, region, service) so
 * that no copy of the secret is kept here. This file is pure: no libuv, no
 * curl; it uses OpenSSL 3's one-shot HMAC() and SHA256() only.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "walrust.h"

#define SIGV4_ALGORITHM "AWS4-HMAC-SHA256"
#define SIGV4_CACHE_SLOTS 4

struct sigv4_cache_slot {
	bool used;
	uint8_t id[SHA256_DIGEST_LENGTH];  /* SHA-256(secret\0date\0region\0svc) */
	uint8_t key[SHA256_DIGEST_LENGTH]; /* the derived signing key */
};

static struct sigv4_cache_slot sigv4_cache[SIGV4_CACHE_SLOTS];
static unsigned sigv4_cache_next;
static pthread_mutex_t sigv4_cache_lock = PTHREAD_MUTEX_INITIALIZER;

static void sigv4_hex(const uint8_t *in, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * len] = '\0';
}

void sigv4_sha256_hex(const void *buf, size_t len, char out[65])
{
	uint8_t md[SHA256_DIGEST_LENGTH];
	SHA256(buf ? buf : (const void *)"", len, md);
	sigv4_hex(md, sizeof md, out);
}

static int sigv4_hmac(const void *key, size_t keylen, const void *msg,
		      size_t msglen, uint8_t out[SHA256_DIGEST_LENGTH])
{
	unsigned int outlen = 0;
	if (!HMAC(EVP_sha256(), key, (int)keylen, msg, msglen, out, &outlen) ||
	    outlen != SHA256_DIGEST_LENGTH)
		return -EIO;
	return 0;
}

static bool sigv4_unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
	       c == '~';
}

char *sigv4_uri_encode(const char *s, bool keep_slash)
{
	static const char digits[] = "0123456789ABCDEF";
	size_t n = strlen(s);
	char *out = malloc(3 * n + 1);
	if (!out)
		return NULL;
	char *p = out;
	for (const unsigned char *q = (const unsigned char *)s; *q; q++) {
		if (sigv4_unreserved(*q) || (keep_slash && *q == '/')) {
			*p++ = (char)*q;
		} else {
			*p++ = '%';
			*p++ = digits[*q >> 4];
			*p++ = digits[*q & 15];
		}
	}
	*p = '\0';
	return out;
}

struct sigv4_pair {
	char *name;
	char *value;
	size_t order; /* original position: keeps the sort stable */
};

static int sigv4_pair_cmp(const void *a, const void *b)
{
	const struct sigv4_pair *x = a, *y = b;
	int c = strcmp(x->name, y->name);
	if (c)
		return c;
	c = strcmp(x->value, y->value);
	if (c)
		return c;
	return x->order < y->order ? -1 : x->order > y->order;
}

static void sigv4_pairs_free(struct sigv4_pair *p, size_t n)
{
	if (!p)
		return;
	for (size_t i = 0; i < n; i++) {
		free(p[i].name);
		free(p[i].value);
	}
	free(p);
}

char *sigv4_canonical_query(const char *const *names, const char *const *values,
			    size_t n)
{
	struct sigv4_pair *p = calloc(n ? n : 1, sizeof *p);
	char *out = NULL;
	size_t len = 1;
	if (!p)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		const char *v = values && values[i] ? values[i] : "";
		p[i].name = sigv4_uri_encode(names[i], false);
		p[i].value = sigv4_uri_encode(v, false);
		p[i].order = i;
		if (!p[i].name || !p[i].value)
			goto out;
		len += strlen(p[i].name) + strlen(p[i].value) + 2;
	}
	qsort(p, n, sizeof *p, sigv4_pair_cmp);
	out = malloc(len);
	if (!out)
		goto out;
	char *w = out;
	for (size_t i = 0; i < n; i++) {
		w += sprintf(w, "%s%s=%s", i ? "&" : "", p[i].name, p[i].value);
	}
	*w = '\0';
out:
	sigv4_pairs_free(p, n);
	return out;
}

/* Lowercase the name; trim the value and squeeze inner runs of spaces
 * (AWS "Trimall"). */
static int sigv4_header_canon(const struct sigv4_header *h,
			      struct sigv4_pair *out)
{
	out->name = strdup(h->name);
	out->value = malloc(strlen(h->value) + 1);
	if (!out->name || !out->value)
		return -ENOMEM;
	for (char *c = out->name; *c; c++)
		if (*c >= 'A' && *c <= 'Z')
			*c = (char)(*c - 'A' + 'a');
	const char *s = h->value;
	while (*s == ' ' || *s == '\t')
		s++;
	char *w = out->value;
	bool space = false;
	for (; *s; s++) {
		if (*s == ' ' || *s == '\t') {
			space = true;
			continue;
		}
		if (space && w != out->value)
			*w++ = ' ';
		space = false;
		*w++ = *s;
	}
	*w = '\0';
	return 0;
}

static int sigv4_name_cmp(const void *a, const void *b)
{
	const struct sigv4_pair *x = a, *y = b;
	int c = strcmp(x->name, y->name);
	if (c)
		return c;
	return x->order < y->order ? -1 : x->order > y->order;
}

/* A growable string. */
struct sigv4_buf {
	char *p;
	size_t len, cap;
	bool oom;
};

static void sigv4_buf_add(struct sigv4_buf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void sigv4_buf_str(struct sigv4_buf *b, const char *s)
{
	sigv4_buf_add(b, s, strlen(s));
}

static int sigv4_signing_key(const char *secret, const char *date,
			     const char *region, const char *service,
			     uint8_t key[SHA256_DIGEST_LENGTH])
{
	uint8_t id[SHA256_DIGEST_LENGTH];
	int rc = 0;
	size_t ls = strlen(secret), ld = strlen(date), lr = strlen(region),
	       lv = strlen(service);
	size_t n = ls + ld + lr + lv + 3;
	char *m = malloc(n);
	if (!m)
		return -ENOMEM;
	memcpy(m, secret, ls + 1);
	memcpy(m + ls + 1, date, ld + 1);
	memcpy(m + ls + ld + 2, region, lr + 1);
	memcpy(m + ls + ld + lr + 3, service, lv);
	SHA256((const unsigned char *)m, n, id);
	OPENSSL_cleanse(m, n);
	free(m);

	pthread_mutex_lock(&sigv4_cache_lock);
	for (int i = 0; i < SIGV4_CACHE_SLOTS; i++) {
		if (sigv4_cache[i].used &&
		    CRYPTO_memcmp(sigv4_cache[i].id, id, sizeof id) == 0) {
			memcpy(key, sigv4_cache[i].key, SHA256_DIGEST_LENGTH);
			pthread_mutex_unlock(&sigv4_cache_lock);
			return 0;
		}
	}
	pthread_mutex_unlock(&sigv4_cache_lock);

	char *k0 = util_strdup_printf("AWS4%s", secret);
	uint8_t k1[SHA256_DIGEST_LENGTH], k2[SHA256_DIGEST_LENGTH],
		k3[SHA256_DIGEST_LENGTH];
	if (!k0)
		return -ENOMEM;
	if ((rc = sigv4_hmac(k0, strlen(k0), date, ld, k1)) ||
	    (rc = sigv4_hmac(k1, sizeof k1, region, lr, k2)) ||
	    (rc = sigv4_hmac(k2, sizeof k2, service, lv, k3)) ||
	    (rc = sigv4_hmac(k3, sizeof k3, "aws4_request", 12, key)))
		goto out;

	pthread_mutex_lock(&sigv4_cache_lock);
	struct sigv4_cache_slot *slot =
		&sigv4_cache[sigv4_cache_next++ % SIGV4_CACHE_SLOTS];
	slot->used = true;
	memcpy(slot->id, id, sizeof id);
	memcpy(slot->key, key, SHA256_DIGEST_LENGTH);
	pthread_mutex_unlock(&sigv4_cache_lock);
out:
	OPENSSL_cleanse(k0, strlen(k0));
	free(k0);
	OPENSSL_cleanse(k1, sizeof k1);
	OPENSSL_cleanse(k2, sizeof k2);
	OPENSSL_cleanse(k3, sizeof k3);
	return rc;
}

static bool sigv4_amz_date_ok(const char *d)
{
	if (!d || strlen(d) != 16 || d[8] != 'T' || d[15] != 'Z')
		return false;
	for (int i = 0; i < 15; i++)
		if (i != 8 && (d[i] < '0' || d[i] > '9'))
			return false;
	return true;
}

int sigv4_sign(const struct sigv4_request *r, const struct sigv4_creds *c,
	       char **authorization, char **err)
{
	struct sigv4_pair *h = NULL;
	struct sigv4_buf creq = {0}, signed_names = {0}, sts = {0};
	char date[9], scope_hash[65], sig[65];
	uint8_t key[SHA256_DIGEST_LENGTH], mac[SHA256_DIGEST_LENGTH];
	size_t n = r->nheaders;
	int rc = 0;

	*authorization = NULL;
	if (!c || !c->access_key_id || !c->secret_access_key ||
	    !*c->access_key_id || !*c->secret_access_key) {
		rc = util_err(err, -EINVAL, "sigv4: missing credentials");
		goto out;
	}
	if (!r->method || !r->path || r->path[0] != '/' || !r->region ||
	    !r->service || !r->payload_hash || !sigv4_amz_date_ok(r->amz_date)) {
		rc = util_err(err, -EINVAL, "sigv4: incomplete request");
		goto out;
	}
	memcpy(date, r->amz_date, 8);
	date[8] = '\0';

	h = calloc(n ? n : 1, sizeof *h);
	if (!h) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		h[i].order = i;
		if (!r->headers[i].name || !r->headers[i].value ||
		    !*r->headers[i].name) {
			rc = util_err(err, -EINVAL, "sigv4: bad header %zu", i);
			goto out;
		}
		if ((rc = sigv4_header_canon(&r->headers[i], &h[i])))
			goto out;
	}
	qsort(h, n, sizeof *h, sigv4_name_cmp);

	sigv4_buf_str(&creq, r->method);
	sigv4_buf_str(&creq, "\n");
	sigv4_buf_str(&creq, r->path);
	sigv4_buf_str(&creq, "\n");
	sigv4_buf_str(&creq, r->query ? r->query : "");
	sigv4_buf_str(&creq, "\n");
	for (size_t i = 0; i < n;) {
		size_t j = i + 1;
		sigv4_buf_str(&creq, h[i].name);
		sigv4_buf_str(&creq, ":");
		sigv4_buf_str(&creq, h[i].value);
		while (j < n && strcmp(h[j].name, h[i].name) == 0) {
			sigv4_buf_str(&creq, ",");
			sigv4_buf_str(&creq, h[j].value);
			j++;
		}
		sigv4_buf_str(&creq, "\n");
		if (signed_names.len)
			sigv4_buf_str(&signed_names, ";");
		sigv4_buf_str(&signed_names, h[i].name);
		i = j;
	}
	sigv4_buf_str(&creq, "\n");
	sigv4_buf_str(&creq, signed_names.p ? signed_names.p : "");
	sigv4_buf_str(&creq, "\n");
	sigv4_buf_str(&creq, r->payload_hash);
	if (creq.oom || signed_names.oom) {
		rc = -ENOMEM;
		goto out;
	}
	sigv4_sha256_hex(creq.p, creq.len, scope_hash);

	char *scope = util_strdup_printf("%s/%s/%s/aws4_request", date,
					 r->region, r->service);
	if (!scope) {
		rc = -ENOMEM;
		goto out;
	}
	sigv4_buf_str(&sts, SIGV4_ALGORITHM "\n");
	sigv4_buf_str(&sts, r->amz_date);
	sigv4_buf_str(&sts, "\n");
	sigv4_buf_str(&sts, scope);
	sigv4_buf_str(&sts, "\n");
	sigv4_buf_str(&sts, scope_hash);
	if (sts.oom) {
		free(scope);
		rc = -ENOMEM;
		goto out;
	}
	if ((rc = sigv4_signing_key(c->secret_access_key, date, r->region,
				    r->service, key)) ||
	    (rc = sigv4_hmac(key, sizeof key, sts.p, sts.len, mac))) {
		free(scope);
		util_err(err, rc, "sigv4: signing failed");
		goto out;
	}
	sigv4_hex(mac, sizeof mac, sig);
	*authorization = util_strdup_printf(
		SIGV4_ALGORITHM " Credential=%s/%s,SignedHeaders=%s,Signature=%s",
		c->access_key_id, scope, signed_names.p ? signed_names.p : "",
		sig);
	free(scope);
	if (!*authorization)
		rc = -ENOMEM;
out:
	OPENSSL_cleanse(key, sizeof key);
	sigv4_pairs_free(h, n);
	free(creq.p);
	free(signed_names.p);
	free(sts.p);
	return rc;
}
