/*
 * fuzz-wrp.c: libFuzzer harness for the control protocol (proto/wrp.c).
 *
 * Input: byte 0 is a control byte, the rest is the stream a peer would send.
 *   bits 0-5  chunk size for the second pass (0: one byte at a time)
 *   bits 6-7  mode: 0 or 1 plain; 2 the line callback asks to stop after
 *             the third line; 3 every 0xff byte in the stream stands for
 *             64 KiB of 'a', so that short inputs reach the oversized-line
 *             path (1.25 MiB at most in all)
 *
 * The stream goes through wrp_reader twice, whole and in chunks; both passes
 * must see the same lines. Every line of the first pass goes through
 * wrp_parse_request and wrp_check_message (in mode 3, only lines under
 * 64 KiB: parsing megabytes of JSON would only fuzz jansson, slowly). Invariants (abort on violation):
 *  - the reader never holds more than WRP_MAX_LINE - 1 bytes;
 *  - a parse failure always yields an error reply that encodes within the
 *    line cap and passes wrp_check_message;
 *  - a parse success yields a known command and an "args" object, and the
 *    replies and events built for its id pass wrp_check_message.
 *
 * Build (from the configured top directory, for config.h):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. -Iproto \
 *     tests/fuzz/fuzz-wrp.c proto/wrp.c $(pkg-config --cflags --libs jansson) \
 *     -o fuzz-wrp
 * Run:   ./fuzz-wrp -max_len=8192 NEW_CORPUS_DIR tests/fuzz/corpus/wrp
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wrp.h"

#define FUZZ_EXPAND (64 * 1024)
#define FUZZ_MAX_EXPANDED (1280 * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fuzz_pass {
	char *log; /* every line, length-prefixed, and too_long marks */
	size_t len, cap;
	unsigned events;
	bool stop;
	bool check;       /* run the protocol checks on each line */
	size_t check_max; /* ... when shorter than this */
};

/* Append to the log (memcpy, not a byte loop: the harness is
 * instrumented, and lines can be a megabyte long). */
static void fuzz_log(struct fuzz_pass *p, const void *data, size_t n)
{
	if (p->len + n > p->cap) {
		size_t cap = p->cap ? p->cap : 4096;
		char *nlog;

		while (cap < p->len + n)
			cap *= 2;
		nlog = realloc(p->log, cap);
		if (!nlog)
			abort();
		p->log = nlog;
		p->cap = cap;
	}
	memcpy(p->log + p->len, data, n);
	p->len += n;
}

static void fuzz_expect_valid(json_t *msg)
{
	size_t len;
	char *line, *why = NULL;

	if (!msg)
		return; /* out of memory */
	line = wrp_encode(msg, &len);
	json_decref(msg);
	if (!line)
		abort(); /* a reply we build must fit in a line */
	if (wrp_check_message(line, len, &why) != 0) {
		fprintf(stderr, "invalid reply %s: %s\n", line, why);
		abort();
	}
	free(line);
}

static void fuzz_line(const char *line, size_t len)
{
	const struct wrp_command *cmd = NULL;
	json_t *err = NULL, *req, *args, *id;
	char *why = NULL;

	req = wrp_parse_request(line, len, &cmd, &err);
	if (req) {
		if (!cmd || err || !wrp_command_find(cmd->name))
			abort();
		args = json_object_get(req, "args");
		id = json_object_get(req, "id");
		if (!json_is_object(args))
			abort();
		(void)wrp_arg_string(args, "database");
		(void)wrp_arg_int(args, "txid", 0);
		(void)wrp_arg_bool(args, "force", false);
		fuzz_expect_valid(wrp_reply_ok(id, json_incref(args)));
		fuzz_expect_valid(wrp_reply_error(id, WRP_E_INTERNAL, "%s",
						  cmd->name));
		fuzz_expect_valid(wrp_event(
			id, "progress",
			json_pack("{s:s,s:i,s:i}", "phase", cmd->name, "done",
				  1, "total", 2)));
		json_decref(req);
	} else {
		if (cmd)
			abort();
		fuzz_expect_valid(err);
	}
	if (wrp_check_message(line, len, &why) == 0) {
		if (why)
			abort();
	} else {
		if (!why)
			abort();
		free(why);
	}
}

static int fuzz_cb(void *arg, const char *line, size_t len, bool too_long)
{
	struct fuzz_pass *p = arg;

	p->events++;
	if (too_long) {
		if (line)
			abort();
		fuzz_log(p, "T", 1);
	} else {
		if (len >= WRP_MAX_LINE || memchr(line, '\n', len))
			abort();
		fuzz_log(p, "L", 1);
		fuzz_log(p, &len, sizeof(len));
		fuzz_log(p, line, len);
		if (p->check && len < p->check_max)
			fuzz_line(line, len);
	}
	return p->stop && p->events == 3 ? 1 : 0;
}

static void fuzz_feed(const char *s, size_t n, size_t chunk,
		      struct fuzz_pass *p)
{
	struct wrp_reader r;
	size_t off;
	int rc = 0;

	wrp_reader_init(&r);
	for (off = 0; off < n && rc == 0; off += chunk) {
		size_t k = n - off < chunk ? n - off : chunk;

		rc = wrp_reader_feed(&r, s + off, k, fuzz_cb, p);
		if (rc == 0 && r.len >= WRP_MAX_LINE)
			abort();
		if (rc != 0 && rc != 1)
			abort();
	}
	wrp_reader_clear(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_pass whole = {0}, split;
	const char *s;
	char *buf = NULL;
	size_t n, chunk, i, out;
	uint8_t ctl;

	if (size < 1)
		return 0;
	ctl = data[0];
	s = (const char *)data + 1;
	n = size - 1;
	chunk = ctl & 0x3f ? ctl & 0x3f : 1;
	whole.stop = ctl >> 6 == 2;
	whole.check = true;
	whole.check_max = WRP_MAX_LINE;

	if (ctl >> 6 == 3) {
		size_t ff = 0;

		for (i = 0; i < n; i++)
			ff += (uint8_t)s[i] == 0xff;
		if (n + ff * FUZZ_EXPAND > FUZZ_MAX_EXPANDED)
			return 0;
		buf = malloc(n + ff * FUZZ_EXPAND + 1);
		if (!buf)
			return 0;
		for (i = 0, out = 0; i < n; i++) {
			if ((uint8_t)s[i] == 0xff) {
				memset(buf + out, 'a', FUZZ_EXPAND);
				out += FUZZ_EXPAND;
			} else {
				buf[out++] = s[i];
			}
		}
		s = buf;
		n = out;
		/* big streams: bigger chunks, or this takes forever */
		chunk *= 4096;
		whole.check_max = FUZZ_EXPAND;
	}

	split = whole;
	split.check = false;
	fuzz_feed(s, n, n ? n : 1, &whole);
	fuzz_feed(s, n, chunk, &split);
	if (whole.events != split.events || whole.len != split.len ||
	    (whole.len && memcmp(whole.log, split.log, whole.len)))
		abort();
	free(whole.log);
	free(split.log);
	free(buf);
	return 0;
}
