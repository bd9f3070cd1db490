/* fuzz-ltx.c: libFuzzer harness for the LTX decoder.
 *
 * The input is an LTX file. It is decoded twice from memory, once in one
 * large read and once in 7-byte reads, and both runs must agree; a file that
 * decodes is then re-encoded and decoded again, and must give the same pages.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. -Idaemon \
 *     tests/fuzz/fuzz-ltx.c daemon/ltx.c daemon/crc64.c daemon/util.c \
 *     -llz4 -o fuzz-ltx && ./fuzz-ltx tests/fuzz/corpus/ltx
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "walrust.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct mem_src {
	const uint8_t *p;
	size_t len, pos, chunk;
};

static ssize_t mem_read(void *ctx, void *buf, size_t len)
{
	struct mem_src *s = ctx;
	size_t n = s->len - s->pos;
	if (n > len)
		n = len;
	if (s->chunk && n > s->chunk)
		n = s->chunk;
	memcpy(buf, s->p + s->pos, n);
	s->pos += n;
	return (ssize_t)n;
}

struct mem_sink {
	uint8_t *p;
	size_t len, cap;
};

static int mem_write(void *ctx, const void *buf, size_t len)
{
	struct mem_sink *s = ctx;
	if (s->len + len > s->cap) {
		size_t cap = s->cap ? s->cap : 4096;
		while (cap < s->len + len)
			cap *= 2;
		uint8_t *p = realloc(s->p, cap);
		if (!p)
			return -ENOMEM;
		s->p = p;
		s->cap = cap;
	}
	memcpy(s->p + s->len, buf, len);
	s->len += len;
	return 0;
}

struct outcome {
	int rc;
	uint32_t npages;
	uint64_t digest, post, fck;
};

/* Decode; when `enc` is not NULL, re-encode every page into it. */
static struct outcome decode(const uint8_t *data, size_t size, size_t chunk,
			     struct mem_sink *enc)
{
	struct mem_src src = {.p = data, .len = size, .chunk = chunk};
	struct outcome o = {0};
	struct ltx_dec *d = NULL;
	struct ltx_enc *e = NULL;
	uint8_t *page = NULL;
	char *err = NULL;
	uint32_t pgno;

	o.rc = ltx_dec_new(&d, mem_read, &src, &err);
	if (o.rc < 0)
		goto out;
	const struct ltx_header *h = ltx_dec_header(d);
	page = malloc(h->page_size);
	if (!page)
		abort();
	if (enc && ltx_enc_new(&e, h, mem_write, enc, NULL) < 0)
		abort(); /* the decoder accepted this header */
	while ((o.rc = ltx_dec_page(d, &pgno, page, &err)) > 0) {
		uint8_t b[4];
		util_be32_put(b, pgno);
		o.digest = crc64_iso(crc64_iso(o.digest, b, 4), page,
				     h->page_size);
		o.npages++;
		if (e && ltx_enc_page(e, pgno, page, NULL) < 0)
			abort(); /* the decoder accepted this page */
	}
	if (o.rc < 0)
		goto out;
	o.rc = ltx_dec_finish(d, &o.post, &o.fck, &err);
	if (o.rc == 0 && e) {
		int rc = ltx_enc_finish(e, o.post, NULL, NULL);
		/* the one file a decoder accepts and an encoder refuses: a
		 * NoChecksum file with commit 0 */
		if (rc < 0 && !(h->commit == 0 &&
				(h->flags & LTX_FLAG_NO_CHECKSUM)))
			abort();
		if (rc < 0)
			enc->len = 0;
	}
out:
	if (o.rc < 0 && !err)
		abort(); /* every error carries a message */
	free(err);
	free(page);
	ltx_enc_free(e);
	ltx_dec_free(d);
	return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mem_sink enc = {0};
	struct outcome a = decode(data, size, 0, &enc);
	struct outcome b = decode(data, size, 7, NULL);

	if (a.rc != b.rc || a.npages != b.npages || a.digest != b.digest ||
	    a.post != b.post || a.fck != b.fck)
		abort();
	if (a.rc == 0 && enc.len > 0) {
		struct outcome c = decode(enc.p, enc.len, 0, NULL);
		if (c.rc != 0 || c.npages != a.npages || c.digest != a.digest ||
		    c.post != a.post)
			abort();
	}
	free(enc.p);
	return 0;
}
