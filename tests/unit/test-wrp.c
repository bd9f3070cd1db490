/*
 * test-wrp.c: the control protocol (proto/wrp.c): framing, request parsing
 * (one test per error code), builders checked by wrp_check_message, the
 * checker's rejections, every golden transcript in proto/examples (with the
 * result members PROTOCOL.md documents for each command), and PROTOCOL.md
 * against the command table and the error codes.
 */
#include "config.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "suites.h"
#include "wrp.h"

#ifndef PROTO_EXAMPLES
#define PROTO_EXAMPLES "proto/examples"
#endif
#define PROTO_DOC PROTO_EXAMPLES "/../PROTOCOL.md"

/* Every error code of this version (wrp.c's closed set). */
static const char *const all_codes[] = {
	WRP_E_BAD_REQUEST, WRP_E_TOO_LONG,     WRP_E_VERSION,
	WRP_E_UNKNOWN_CMD, WRP_E_NOT_FOUND,    WRP_E_NO_SNAPSHOT,
	WRP_E_BEFORE_FIRST, WRP_E_AUTH,        WRP_E_UNREACHABLE,
	WRP_E_STORAGE,     WRP_E_CHECKSUM,     WRP_E_IN_USE,
	WRP_E_INVALID,     WRP_E_IO,           WRP_E_SHUTTING_DOWN,
	WRP_E_TIMEOUT,     WRP_E_INTERNAL,
};

/* ------------------------------------------------------------- framing */

#define MAX_LINES 16

struct lines {
	char *line[MAX_LINES];
	int n;
	int too_long;
	int order[MAX_LINES]; /* -1 for too_long, else index into line */
	int events;
	int stop_after; /* return 7 after this many events (0: never) */
};

static int lines_cb(void *arg, const char *line, size_t len, bool too_long)
{
	struct lines *l = arg;

	ck_assert_int_lt(l->events, MAX_LINES);
	if (too_long) {
		ck_assert_ptr_null(line);
		l->too_long++;
		l->order[l->events++] = -1;
	} else {
		ck_assert_int_lt(l->n, MAX_LINES);
		ck_assert_ptr_null(memchr(line, '\n', len));
		l->line[l->n] = strndup(line, len);
		l->order[l->events++] = l->n++;
	}
	if (l->stop_after && l->events == l->stop_after)
		return 7;
	return 0;
}

static void lines_free(struct lines *l)
{
	for (int i = 0; i < l->n; i++)
		free(l->line[i]);
	memset(l, 0, sizeof(*l));
}

START_TEST(test_split_feeds)
{
	const char *msg = "{\"v\":1,\"id\":1,\"cmd\":\"hello\"}\n";
	struct wrp_reader r;
	struct lines l = {0};

	wrp_reader_init(&r);
	for (size_t i = 0; msg[i]; i++)
		ck_assert_int_eq(wrp_reader_feed(&r, msg + i, 1, lines_cb, &l),
				 0);
	ck_assert_int_eq(l.n, 1);
	ck_assert_str_eq(l.line[0], "{\"v\":1,\"id\":1,\"cmd\":\"hello\"}");
	lines_free(&l);
	wrp_reader_clear(&r);
}
END_TEST

START_TEST(test_many_lines_one_feed)
{
	const char *data = "a\nbb\n\nccc\ndd";
	struct wrp_reader r;
	struct lines l = {0};

	wrp_reader_init(&r);
	ck_assert_int_eq(wrp_reader_feed(&r, data, strlen(data), lines_cb, &l),
			 0);
	ck_assert_int_eq(l.n, 4);
	ck_assert_str_eq(l.line[0], "a");
	ck_assert_str_eq(l.line[1], "bb");
	ck_assert_str_eq(l.line[2], "");
	ck_assert_str_eq(l.line[3], "ccc");
	/* "dd" waits for its newline */
	ck_assert_uint_eq(r.len, 2);
	ck_assert_int_eq(wrp_reader_feed(&r, "d\n", 2, lines_cb, &l), 0);
	ck_assert_int_eq(l.n, 5);
	ck_assert_str_eq(l.line[4], "ddd");
	ck_assert_uint_eq(r.len, 0);
	lines_free(&l);
	wrp_reader_clear(&r);
}
END_TEST

START_TEST(test_no_newline_yet)
{
	struct wrp_reader r;
	struct lines l = {0};

	wrp_reader_init(&r);
	ck_assert_int_eq(wrp_reader_feed(&r, "{\"v\":1", 6, lines_cb, &l), 0);
	ck_assert_int_eq(wrp_reader_feed(&r, "", 0, lines_cb, &l), 0);
	ck_assert_int_eq(l.events, 0);
	ck_assert_int_eq(wrp_reader_feed(&r, "}", 1, lines_cb, &l), 0);
	ck_assert_int_eq(l.events, 0);
	ck_assert_int_eq(wrp_reader_feed(&r, "\n", 1, lines_cb, &l), 0);
	ck_assert_int_eq(l.n, 1);
	ck_assert_str_eq(l.line[0], "{\"v\":1}");
	lines_free(&l);
	wrp_reader_clear(&r);
}
END_TEST

/* 2 MiB of 'x', a newline, then a good line: in one feed and in chunks. */
START_TEST(test_oversize_skipped)
{
	size_t big = 2 * 1024 * 1024, total = big + 1 + 3;
	char *data = malloc(total);
	size_t chunks[] = {total, 65536, 4093, 997};
	struct wrp_reader r;

	ck_assert_ptr_nonnull(data);
	memset(data, 'x', big);
	memcpy(data + big, "\nok\n", 4);
	for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
		struct lines l = {0};
		size_t max_len = 0, max_cap = 0;
		int rc = 0;

		wrp_reader_init(&r);
		for (size_t off = 0; off < total && !rc; off += chunks[c]) {
			size_t n = total - off < chunks[c] ? total - off
							     : chunks[c];

			rc = wrp_reader_feed(&r, data + off, n, lines_cb, &l);
			if (r.len > max_len)
				max_len = r.len;
			if (r.cap > max_cap)
				max_cap = r.cap;
		}
		ck_assert_int_eq(rc, 0);
		/* never buffers more than the cap */
		ck_assert_uint_lt(max_len, WRP_MAX_LINE);
		ck_assert_uint_le(max_cap, WRP_MAX_LINE);
		ck_assert_int_eq(l.too_long, 1);
		ck_assert_int_eq(l.n, 1);
		ck_assert_int_eq(l.order[0], -1);
		ck_assert_str_eq(l.line[0], "ok");
		ck_assert(!r.discarding);
		lines_free(&l);
		wrp_reader_clear(&r);
	}
	free(data);
}
END_TEST

/* WRP_MAX_LINE bytes including the newline pass; one more does not. */
START_TEST(test_line_limit_exact)
{
	size_t n = WRP_MAX_LINE;
	char *data = malloc(n + 1);
	struct wrp_reader r;
	struct lines l = {0};

	ck_assert_ptr_nonnull(data);
	memset(data, 'y', n + 1);
	data[n - 1] = '\n';
	wrp_reader_init(&r);
	/* buffered path: half, then the rest */
	ck_assert_int_eq(wrp_reader_feed(&r, data, n / 2, lines_cb, &l), 0);
	ck_assert_int_eq(wrp_reader_feed(&r, data + n / 2, n - n / 2, lines_cb,
					 &l),
			 0);
	ck_assert_int_eq(l.n, 1);
	ck_assert_int_eq(l.too_long, 0);
	ck_assert_uint_eq(strlen(l.line[0]), n - 1);
	/* direct path */
	ck_assert_int_eq(wrp_reader_feed(&r, data, n, lines_cb, &l), 0);
	ck_assert_int_eq(l.n, 2);
	/* one byte more */
	data[n - 1] = 'y';
	data[n] = '\n';
	ck_assert_int_eq(wrp_reader_feed(&r, data, n + 1, lines_cb, &l), 0);
	ck_assert_int_eq(l.n, 2);
	ck_assert_int_eq(l.too_long, 1);
	ck_assert_int_eq(wrp_reader_feed(&r, data, n / 2, lines_cb, &l), 0);
	ck_assert_int_eq(wrp_reader_feed(&r, data + n / 2, n + 1 - n / 2,
					 lines_cb, &l),
			 0);
	ck_assert_int_eq(l.too_long, 2);
	ck_assert_int_eq(wrp_reader_feed(&r, "z\n", 2, lines_cb, &l), 0);
	ck_assert_int_eq(l.n, 3);
	ck_assert_str_eq(l.line[2], "z");
	lines_free(&l);
	wrp_reader_clear(&r);
	free(data);
}
END_TEST

START_TEST(test_callback_stops)
{
	const char *data = "one\ntwo\nthree\n";
	struct wrp_reader r;
	struct lines l = {.stop_after = 2};

	wrp_reader_init(&r);
	ck_assert_int_eq(wrp_reader_feed(&r, data, strlen(data), lines_cb, &l),
			 7);
	ck_assert_int_eq(l.n, 2);
	ck_assert_str_eq(l.line[1], "two");
	lines_free(&l);
	wrp_reader_clear(&r);
}
END_TEST

/* ------------------------------------------------------------- encoding */

START_TEST(test_encode)
{
	json_t *msg = json_pack("{s:i, s:s, s:{s:[i,i]}}", "v", 1, "id", "x",
				"args", "a", 1, 2);
	size_t len = 0;
	char *line = wrp_encode(msg, &len);
	char *big;
	json_t *huge;

	ck_assert_ptr_nonnull(line);
	ck_assert_str_eq(line, "{\"v\":1,\"id\":\"x\",\"args\":{\"a\":[1,2]}}\n");
	ck_assert_uint_eq(len, strlen(line));
	free(line);
	json_decref(msg);

	big = malloc(WRP_MAX_LINE);
	memset(big, 'a', WRP_MAX_LINE - 1);
	big[WRP_MAX_LINE - 1] = '\0';
	huge = json_pack("{s:s}", "k", big);
	ck_assert_ptr_null(wrp_encode(huge, &len));
	json_decref(huge);
	free(big);
}
END_TEST

/* ------------------------------------------------------ request parsing */

/* Parse `line`; expect failure with `code`, the given id (JSON text, "null"
 * for none, NULL not to check) and, when `frag` is set, a message containing it. */
static void expect_error(const char *line, const char *code, const char *id,
			 const char *frag)
{
	const struct wrp_command *cmd = (void *)1;
	json_t *err = NULL, *req, *want;
	json_t *e;
	char *enc, *why = NULL;
	size_t len;

	req = wrp_parse_request(line, strlen(line), &cmd, &err);
	ck_assert_msg(req == NULL, "parsed: %s", line);
	ck_assert_ptr_null(cmd);
	ck_assert_ptr_nonnull(err);
	e = json_object_get(err, "error");
	ck_assert_str_eq(json_string_value(json_object_get(e, "code")), code);
	if (id) {
		want = json_loads(id, JSON_DECODE_ANY, NULL);
		ck_assert_msg(json_equal(want, json_object_get(err, "id")),
			      "id for %s", line);
		json_decref(want);
	}
	if (frag)
		ck_assert_msg(strstr(json_string_value(json_object_get(
					     e, "message")),
				     frag),
			      "message \"%s\" lacks \"%s\"",
			      json_string_value(json_object_get(e, "message")),
			      frag);
	enc = wrp_encode(err, &len);
	ck_assert_ptr_nonnull(enc);
	ck_assert_msg(wrp_check_message(enc, len, &why) == 0, "%s", why);
	free(enc);
	json_decref(err);
}

START_TEST(test_parse_ok)
{
	const char *line = "{\"v\":1,\"id\":\"q\",\"cmd\":\"restore\",\"args\":"
			   "{\"name\":\"app\",\"output\":\"/x\",\"txid\":9,"
			   "\"force\":true,\"aws\":{\"region\":\"r\"}}}";
	const struct wrp_command *cmd = NULL;
	json_t *err = (void *)1, *req, *args;

	req = wrp_parse_request(line, strlen(line), &cmd, &err);
	ck_assert_ptr_nonnull(req);
	ck_assert_ptr_null(err);
	ck_assert_ptr_eq(cmd, wrp_command_find("restore"));
	ck_assert(cmd->streams);
	args = json_object_get(req, "args");
	ck_assert_str_eq(wrp_arg_string(args, "name"), "app");
	ck_assert_ptr_null(wrp_arg_string(args, "bucket"));
	ck_assert_ptr_null(wrp_arg_string(args, "txid"));
	ck_assert_int_eq(wrp_arg_int(args, "txid", -1), 9);
	ck_assert_int_eq(wrp_arg_int(args, "name", -1), -1);
	ck_assert(wrp_arg_bool(args, "force", false));
	ck_assert(wrp_arg_bool(args, "nope", true));
	json_decref(req);

	/* args omitted: an empty object is put in */
	line = "{\"v\":1,\"id\":-3,\"cmd\":\"status\"}";
	req = wrp_parse_request(line, strlen(line), &cmd, &err);
	ck_assert_ptr_nonnull(req);
	ck_assert_str_eq(cmd->name, "status");
	ck_assert(json_is_object(json_object_get(req, "args")));
	ck_assert_uint_eq(json_object_size(json_object_get(req, "args")), 0);
	json_decref(req);

	/* the replication commands */
	line = "{\"v\":1,\"id\":\"w\",\"cmd\":\"watch\",\"args\":"
	       "{\"database\":\"/a.db\",\"bucket\":\"s3://b\","
	       "\"sync_interval_ms\":250,\"aws\":{\"region\":\"r\"}}}";
	req = wrp_parse_request(line, strlen(line), &cmd, &err);
	ck_assert_ptr_nonnull(req);
	ck_assert_str_eq(cmd->name, "watch");
	ck_assert(!cmd->streams);
	args = json_object_get(req, "args");
	ck_assert_int_eq(wrp_arg_int(args, "sync_interval_ms", -1), 250);
	json_decref(req);
	line = "{\"v\":1,\"id\":2,\"cmd\":\"sync\",\"args\":"
	       "{\"database\":\"/a.db\",\"wait\":false,\"timeout_ms\":0}}";
	req = wrp_parse_request(line, strlen(line), &cmd, &err);
	ck_assert_ptr_nonnull(req);
	ck_assert_str_eq(cmd->name, "sync");
	args = json_object_get(req, "args");
	ck_assert(!wrp_arg_bool(args, "wait", true));
	ck_assert_int_eq(wrp_arg_int(args, "timeout_ms", -1), 0);
	json_decref(req);
	/* values are the command's to check: a negative timeout parses */
	line = "{\"v\":1,\"id\":3,\"cmd\":\"sync\",\"args\":"
	       "{\"database\":\"/a.db\",\"timeout_ms\":-5}}";
	req = wrp_parse_request(line, strlen(line), &cmd, &err);
	ck_assert_ptr_nonnull(req);
	args = json_object_get(req, "args");
	ck_assert(wrp_arg_bool(args, "wait", true));
	json_decref(req);
	line = "{\"v\":1,\"id\":4,\"cmd\":\"unwatch\",\"args\":"
	       "{\"database\":\"/a.db\"}}";
	req = wrp_parse_request(line, strlen(line), &cmd, &err);
	ck_assert_ptr_nonnull(req);
	ck_assert_str_eq(cmd->name, "unwatch");
	json_decref(req);

	/* whitespace around tokens is fine; NULL out-parameters too */
	line = " { \"cmd\" : \"hello\" , \"v\" : 1 , \"id\" : 0 }\r";
	req = wrp_parse_request(line, strlen(line), NULL, NULL);
	ck_assert_ptr_nonnull(req);
	json_decref(req);
}
END_TEST

START_TEST(test_parse_bad_request)
{
	expect_error("", WRP_E_BAD_REQUEST, "null", "malformed JSON");
	expect_error("{\"v\":1,\"id\":1", WRP_E_BAD_REQUEST, "null",
		     "malformed JSON");
	expect_error("{\"v\":1,\"id\":1,\"cmd\":\"hello\"} x", WRP_E_BAD_REQUEST,
		     "null", "malformed JSON");
	expect_error("{\"v\":1,\"id\":1,\"id\":2,\"cmd\":\"hello\"}",
		     WRP_E_BAD_REQUEST, "null", "malformed JSON");
	expect_error("42", WRP_E_BAD_REQUEST, "null", "JSON object");
	expect_error("{\"v\":1,\"cmd\":\"hello\"}", WRP_E_BAD_REQUEST, "null",
		     "missing \"id\"");
	expect_error("{\"v\":1,\"id\":true,\"cmd\":\"hello\"}",
		     WRP_E_BAD_REQUEST, "null", "integer or a string");
	expect_error("{\"v\":1,\"id\":null,\"cmd\":\"hello\"}",
		     WRP_E_BAD_REQUEST, "null", "integer or a string");
	expect_error("{\"v\":1,\"id\":2.0,\"cmd\":\"hello\"}", WRP_E_BAD_REQUEST,
		     "null", "integer or a string");
	expect_error("{\"id\":3,\"cmd\":\"hello\"}", WRP_E_BAD_REQUEST, "3",
		     "missing \"v\"");
	expect_error("{\"v\":\"1\",\"id\":3,\"cmd\":\"hello\"}",
		     WRP_E_BAD_REQUEST, "3", "\"v\" must be an integer");
	expect_error("{\"v\":1,\"id\":4}", WRP_E_BAD_REQUEST, "4",
		     "missing \"cmd\"");
	expect_error("{\"v\":1,\"id\":4,\"cmd\":[\"hello\"]}",
		     WRP_E_BAD_REQUEST, "4", "\"cmd\" must be a string");
	expect_error("{\"v\":1,\"id\":4,\"cmd\":\"hello\",\"x\":1}",
		     WRP_E_BAD_REQUEST, "4", "unknown member \"x\"");
	expect_error("{\"v\":1,\"id\":5,\"cmd\":\"list\",\"args\":null}",
		     WRP_E_BAD_REQUEST, "5", "\"args\" must be an object");
	expect_error("{\"v\":1,\"id\":\"s\",\"cmd\":\"snapshot\",\"args\":{}}",
		     WRP_E_BAD_REQUEST, "\"s\"",
		     "missing required argument \"database\" for snapshot");
	/* args omitted is {}: the required ones are still missing */
	expect_error("{\"v\":1,\"id\":\"s\",\"cmd\":\"restore\"}",
		     WRP_E_BAD_REQUEST, "\"s\"",
		     "missing required argument \"name\" for restore");
	expect_error("{\"v\":1,\"id\":6,\"cmd\":\"snapshot\",\"args\":"
		     "{\"database\":7}}",
		     WRP_E_BAD_REQUEST, "6",
		     "argument \"database\" of snapshot must be a string");
	expect_error("{\"v\":1,\"id\":6,\"cmd\":\"restore\",\"args\":"
		     "{\"name\":\"a\",\"output\":\"/o\",\"txid\":1.5}}",
		     WRP_E_BAD_REQUEST, "6", "must be an integer");
	expect_error("{\"v\":1,\"id\":6,\"cmd\":\"restore\",\"args\":"
		     "{\"name\":\"a\",\"output\":\"/o\",\"force\":1}}",
		     WRP_E_BAD_REQUEST, "6", "must be a boolean");
	expect_error("{\"v\":1,\"id\":6,\"cmd\":\"list\",\"args\":"
		     "{\"aws\":\"key\"}}",
		     WRP_E_BAD_REQUEST, "6", "must be an object");
	/* unknown names are all named, before "missing" */
	expect_error("{\"v\":1,\"id\":7,\"cmd\":\"snapshot\",\"args\":"
		     "{\"databse\":\"/a\",\"bukket\":\"b\"}}",
		     WRP_E_BAD_REQUEST, "7",
		     "unknown arguments for snapshot: \"databse\", \"bukket\"");
	expect_error("{\"v\":1,\"id\":7,\"cmd\":\"hello\",\"args\":"
		     "{\"a\":1,\"b\":1,\"c\":1,\"d\":1,\"e\":1,\"f\":1}}",
		     WRP_E_BAD_REQUEST, "7", "\"e\", ...");
	/* aws members: names checked, values never quoted */
	expect_error("{\"v\":1,\"id\":8,\"cmd\":\"list\",\"args\":{\"aws\":"
		     "{\"secret\":\"s3cr3t\"}}}",
		     WRP_E_BAD_REQUEST, "8", "unknown member \"secret\" in");
	expect_error("{\"v\":1,\"id\":8,\"cmd\":\"list\",\"args\":{\"aws\":"
		     "{\"region\":1}}}",
		     WRP_E_BAD_REQUEST, "8", "\"aws.region\" must be a string");
	/* the replication commands */
	expect_error("{\"v\":1,\"id\":9,\"cmd\":\"watch\"}", WRP_E_BAD_REQUEST,
		     "9", "missing required argument \"database\" for watch");
	expect_error("{\"v\":1,\"id\":9,\"cmd\":\"watch\",\"args\":"
		     "{\"database\":\"/a\",\"sync_interval_ms\":1.5}}",
		     WRP_E_BAD_REQUEST, "9",
		     "argument \"sync_interval_ms\" of watch must be an integer");
	expect_error("{\"v\":1,\"id\":9,\"cmd\":\"watch\",\"args\":"
		     "{\"database\":\"/a\",\"aws\":{\"token\":\"t\"}}}",
		     WRP_E_BAD_REQUEST, "9", "unknown member \"token\" in");
	expect_error("{\"v\":1,\"id\":9,\"cmd\":\"watch\",\"args\":"
		     "{\"database\":\"/a\",\"wait\":true}}",
		     WRP_E_BAD_REQUEST, "9", "unknown argument for watch: \"wait\"");
	expect_error("{\"v\":1,\"id\":9,\"cmd\":\"unwatch\",\"args\":"
		     "{\"database\":\"/a\",\"bucket\":\"s3://b\"}}",
		     WRP_E_BAD_REQUEST, "9",
		     "unknown argument for unwatch: \"bucket\"");
	expect_error("{\"v\":1,\"id\":9,\"cmd\":\"unwatch\",\"args\":"
		     "{\"database\":null}}",
		     WRP_E_BAD_REQUEST, "9",
		     "argument \"database\" of unwatch must be a string");
	expect_error("{\"v\":1,\"id\":9,\"cmd\":\"sync\",\"args\":"
		     "{\"wait\":true}}",
		     WRP_E_BAD_REQUEST, "9",
		     "missing required argument \"database\" for sync");
	expect_error("{\"v\":1,\"id\":9,\"cmd\":\"sync\",\"args\":"
		     "{\"database\":\"/a\",\"wait\":0}}",
		     WRP_E_BAD_REQUEST, "9", "argument \"wait\" of sync must be a boolean");
	expect_error("{\"v\":1,\"id\":9,\"cmd\":\"sync\",\"args\":"
		     "{\"database\":\"/a\",\"timeout_ms\":\"5s\"}}",
		     WRP_E_BAD_REQUEST, "9",
		     "argument \"timeout_ms\" of sync must be an integer");
	expect_error("{\"v\":1,\"id\":9,\"cmd\":\"sync\",\"args\":"
		     "{\"database\":\"/a\",\"timeout\":5,\"aws\":{}}}",
		     WRP_E_BAD_REQUEST, "9",
		     "unknown arguments for sync: \"timeout\", \"aws\"");
}
END_TEST

/* A long string id is not echoed (the reply must fit in a line). */
START_TEST(test_parse_long_id)
{
	char line[600];
	char id[300];

	memset(id, 'i', 256);
	id[256] = '\0';
	snprintf(line, sizeof(line), "{\"v\":1,\"id\":\"%s\",\"cmd\":\"x\"}", id);
	expect_error(line, WRP_E_UNKNOWN_CMD, NULL, "unknown command");
	memset(id, 'i', 257);
	id[257] = '\0';
	snprintf(line, sizeof(line), "{\"v\":1,\"id\":\"%s\",\"cmd\":\"x\"}", id);
	expect_error(line, WRP_E_BAD_REQUEST, "null", "longer than 256");
}
END_TEST

START_TEST(test_parse_malformed_hides_token)
{
	const char *line = "{\"v\":1,\"id\":1,\"cmd\":\"list\",\"args\":{\"aws\":"
			   "{\"secret_access_key\":TOPSECRET}}}";
	json_t *err = NULL;
	const char *m;

	ck_assert_ptr_null(wrp_parse_request(line, strlen(line), NULL, &err));
	m = json_string_value(
		json_object_get(json_object_get(err, "error"), "message"));
	ck_assert_ptr_nonnull(strstr(m, "malformed JSON at byte"));
	ck_assert_ptr_null(strstr(m, "TOPSECRET"));
	json_decref(err);
}
END_TEST

START_TEST(test_parse_version)
{
	expect_error("{\"v\":2,\"id\":9,\"cmd\":\"hello\"}", WRP_E_VERSION, "9",
		     "protocol version 2");
	expect_error("{\"v\":0,\"id\":\"z\",\"cmd\":\"nope\"}", WRP_E_VERSION,
		     "\"z\"", NULL);
	/* no readable id: still the version error, with id null */
	expect_error("{\"v\":2,\"cmd\":\"hello\"}", WRP_E_VERSION, "null", NULL);
}
END_TEST

START_TEST(test_parse_unknown_command)
{
	char line[400];
	char name[200];

	expect_error("{\"v\":1,\"id\":10,\"cmd\":\"vacuum\"}", WRP_E_UNKNOWN_CMD,
		     "10", "unknown command \"vacuum\"");
	expect_error("{\"v\":1,\"id\":11,\"cmd\":\"\"}", WRP_E_UNKNOWN_CMD,
		     "11", NULL);
	/* long names are cut in the message */
	memset(name, 'n', 150);
	name[150] = '\0';
	snprintf(line, sizeof(line), "{\"v\":1,\"id\":12,\"cmd\":\"%s\"}", name);
	expect_error(line, WRP_E_UNKNOWN_CMD, "12", NULL);
}
END_TEST

START_TEST(test_parse_too_long)
{
	size_t n = WRP_MAX_LINE;
	char *line = malloc(n);

	memset(line, ' ', n);
	line[0] = '{';
	line[n - 1] = '}';
	/* a line of WRP_MAX_LINE bytes has no room for its newline */
	json_t *err = NULL;
	ck_assert_ptr_null(wrp_parse_request(line, n, NULL, &err));
	ck_assert_str_eq(json_string_value(json_object_get(
				 json_object_get(err, "error"), "code")),
			 WRP_E_TOO_LONG);
	json_decref(err);
	free(line);
}
END_TEST

START_TEST(test_command_table)
{
	const struct wrp_command *c;
	const char *names[] = {"hello",  "snapshot", "restore", "list",
			       "status", "shutdown", "watch",   "unwatch",
			       "sync"};
	int n = 0;

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		c = wrp_command_find(names[i]);
		ck_assert_ptr_nonnull(c);
		ck_assert_str_eq(c->name, names[i]);
		ck_assert_ptr_nonnull(c->args);
	}
	for (c = wrp_commands; c->name; c++)
		n++;
	ck_assert_int_eq(n, sizeof(names) / sizeof(names[0]));
	ck_assert_ptr_null(wrp_command_find("HELLO"));
	ck_assert_ptr_null(wrp_command_find(NULL));
	ck_assert(wrp_command_find("snapshot")->streams);
	ck_assert(!wrp_command_find("list")->streams);
	c = wrp_command_find("restore");
	ck_assert_str_eq(c->args[0].name, "name");
	ck_assert(c->args[0].required);
	/* the replication commands: the database first, required */
	for (size_t i = 6; i < sizeof(names) / sizeof(names[0]); i++) {
		c = wrp_command_find(names[i]);
		ck_assert(!c->streams);
		ck_assert_str_eq(c->args[0].name, "database");
		ck_assert_int_eq(c->args[0].type, WRP_STRING);
		ck_assert(c->args[0].required);
		for (size_t j = 1; c->args[j].name; j++)
			ck_assert(!c->args[j].required);
	}
	c = wrp_command_find("watch");
	ck_assert_int_eq(c->args[4].type, WRP_INTEGER);
	ck_assert_str_eq(c->args[4].name, "sync_interval_ms");
	ck_assert_ptr_null(c->args[5].name);
	c = wrp_command_find("unwatch");
	ck_assert_ptr_null(c->args[1].name);
	c = wrp_command_find("sync");
	ck_assert_str_eq(c->args[1].name, "wait");
	ck_assert_int_eq(c->args[1].type, WRP_BOOLEAN);
	ck_assert_str_eq(c->args[2].name, "timeout_ms");
	ck_assert_int_eq(c->args[2].type, WRP_INTEGER);
	ck_assert_ptr_null(c->args[3].name);
}
END_TEST

/* ------------------------------------------------- builders and checker */

static void expect_valid(json_t *msg)
{
	size_t len;
	char *line, *why = NULL;

	ck_assert_ptr_nonnull(msg);
	line = wrp_encode(msg, &len);
	ck_assert_ptr_nonnull(line);
	ck_assert_msg(wrp_check_message(line, len, &why) == 0, "%s: %s", line,
		      why);
	ck_assert_ptr_null(why);
	/* without the newline too */
	ck_assert_int_eq(wrp_check_message(line, len - 1, NULL), 0);
	free(line);
	json_decref(msg);
}

static void expect_invalid(const char *line, const char *frag)
{
	char *why = NULL;

	ck_assert_msg(wrp_check_message(line, strlen(line), &why) == -1,
		      "accepted: %s", line);
	ck_assert_ptr_nonnull(why);
	if (frag)
		ck_assert_msg(strstr(why, frag), "\"%s\" lacks \"%s\"", why,
			      frag);
	free(why);
}

START_TEST(test_builders_valid)
{
	json_t *id = json_integer(7), *sid = json_string("abc");
	json_t *req, *err;
	const struct wrp_command *cmd;
	char *line;
	size_t len;

	expect_valid(wrp_reply_ok(id, json_pack("{s:s,s:i,s:i}", "version",
						"0.1.0", "protocol", 1, "pid",
						42)));
	expect_valid(wrp_reply_ok(sid, NULL));
	for (size_t i = 0; i < sizeof(all_codes) / sizeof(all_codes[0]); i++)
		expect_valid(wrp_reply_error(id, all_codes[i], "failed: %s %d",
					     "x", (int)i));
	expect_valid(wrp_reply_error(NULL, WRP_E_BAD_REQUEST, "no id"));
	/* a message that is not UTF-8 still makes a valid reply */
	expect_valid(wrp_reply_error(id, WRP_E_IO, "open %s", "/tmp/\xff\xfe"));
	expect_valid(wrp_event(id, "progress",
			       json_pack("{s:s,s:i,s:i,s:I}", "phase",
					 "download", "done", 3, "total", 10,
					 "bytes", (json_int_t)123456)));
	expect_valid(wrp_event(sid, "warning",
			       json_pack("{s:s}", "message", "careful")));
	/* unknown events are allowed (additive), with any data */
	expect_valid(wrp_event(sid, "log", NULL));

	/* a request built here parses back */
	req = wrp_request(json_string("r"), "snapshot",
			  json_pack("{s:s}", "database", "/a.db"));
	line = wrp_encode(req, &len);
	json_decref(req);
	req = wrp_parse_request(line, len - 1, &cmd, &err);
	ck_assert_ptr_nonnull(req);
	ck_assert_str_eq(cmd->name, "snapshot");
	json_decref(req);
	free(line);
	req = wrp_request(json_integer(1), "hello", NULL);
	ck_assert(json_is_object(json_object_get(req, "args")));
	json_decref(req);

	json_decref(id);
	json_decref(sid);
}
END_TEST

START_TEST(test_check_rejects)
{
	expect_invalid("", "malformed");
	expect_invalid("[]", "object");
	expect_invalid("{\"v\":1,\"id\":1,\"ok\":true,\"result\":{}}x", NULL);
	expect_invalid("{\"v\":2,\"id\":1,\"ok\":true,\"result\":{}}", "\"v\"");
	expect_invalid("{\"id\":1,\"ok\":true,\"result\":{}}", "\"v\"");
	expect_invalid("{\"v\":1,\"ok\":true,\"result\":{}}", "missing \"id\"");
	expect_invalid("{\"v\":1,\"id\":1.5,\"ok\":true,\"result\":{}}", "id");
	expect_invalid("{\"v\":1,\"id\":null,\"ok\":true,\"result\":{}}", "id");
	expect_invalid("{\"v\":1,\"id\":1}", "neither");
	expect_invalid("{\"v\":1,\"id\":1,\"ok\":1,\"result\":{}}", "boolean");
	expect_invalid("{\"v\":1,\"id\":1,\"ok\":true}", "result");
	expect_invalid("{\"v\":1,\"id\":1,\"ok\":true,\"result\":[]}", "result");
	expect_invalid("{\"v\":1,\"id\":1,\"ok\":true,\"result\":{},"
		       "\"error\":{\"code\":\"io\",\"message\":\"m\"}}",
		       "error");
	expect_invalid("{\"v\":1,\"id\":1,\"ok\":false,\"result\":{}}", NULL);
	expect_invalid("{\"v\":1,\"id\":1,\"ok\":false}", "error");
	expect_invalid("{\"v\":1,\"id\":1,\"ok\":false,\"error\":\"io\"}",
		       "error");
	expect_invalid("{\"v\":1,\"id\":1,\"ok\":false,\"error\":"
		       "{\"code\":\"oops\",\"message\":\"m\"}}",
		       "unknown error code");
	expect_invalid("{\"v\":1,\"id\":1,\"ok\":false,\"error\":"
		       "{\"code\":\"Timeout\",\"message\":\"m\"}}",
		       "unknown error code");
	expect_invalid("{\"v\":1,\"id\":1,\"ok\":false,\"error\":"
		       "{\"code\":\"io\"}}",
		       "message");
	expect_invalid("{\"v\":1,\"id\":1,\"ok\":false,\"error\":"
		       "{\"code\":5,\"message\":\"m\"}}",
		       "code");
	expect_invalid("{\"v\":1,\"id\":1,\"ok\":true,\"result\":{},\"x\":1}",
		       "unknown member");
	expect_invalid("{\"v\":1,\"id\":1,\"v\":1,\"ok\":true,\"result\":{}}",
		       "duplicate");
	expect_invalid("{\"v\":1,\"id\":1,\n\"ok\":true,\"result\":{}}",
		       "newline");
	/* events */
	expect_invalid("{\"v\":1,\"id\":null,\"event\":\"progress\",\"data\":"
		       "{\"phase\":\"x\"}}",
		       "id");
	expect_invalid("{\"v\":1,\"id\":1,\"event\":\"progress\"}", "data");
	expect_invalid("{\"v\":1,\"id\":1,\"event\":5,\"data\":{}}", "event");
	expect_invalid("{\"v\":1,\"id\":1,\"event\":\"\",\"data\":{}}", "empty");
	expect_invalid("{\"v\":1,\"id\":1,\"event\":\"Log!\",\"data\":{}}",
		       "event name");
	expect_invalid("{\"v\":1,\"id\":1,\"event\":\"progress\",\"data\":{}}",
		       "phase");
	expect_invalid("{\"v\":1,\"id\":1,\"event\":\"progress\",\"data\":"
		       "{\"phase\":\"d\",\"done\":-1}}",
		       "non-negative");
	expect_invalid("{\"v\":1,\"id\":1,\"event\":\"progress\",\"data\":"
		       "{\"phase\":\"d\",\"bytes\":\"1\"}}",
		       "non-negative");
	expect_invalid("{\"v\":1,\"id\":1,\"event\":\"progress\",\"data\":"
		       "{\"phase\":\"d\",\"done\":4,\"total\":3}}",
		       "done > total");
	expect_invalid("{\"v\":1,\"id\":1,\"event\":\"warning\",\"data\":{}}",
		       "message");
	expect_invalid("{\"v\":1,\"id\":1,\"event\":\"warning\",\"data\":"
		       "{\"message\":\"m\"},\"ok\":true}",
		       "no ok");
}
END_TEST

START_TEST(test_socket_path)
{
	char buf[256];
	char small[8];

	setenv("WALRUST_SOCKET", "/run/x.sock", 1);
	ck_assert_int_eq(wrp_socket_path(buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "/run/x.sock");
	ck_assert_int_eq(wrp_socket_path(small, sizeof(small)), -ENAMETOOLONG);
	unsetenv("WALRUST_SOCKET");
	setenv("XDG_RUNTIME_DIR", "/run/user/1000", 1);
	ck_assert_int_eq(wrp_socket_path(buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "/run/user/1000/walrust/walrustd.sock");
	setenv("XDG_RUNTIME_DIR", "relative", 1);
	ck_assert_int_eq(wrp_socket_path(buf, sizeof(buf)), 0);
	ck_assert_ptr_nonnull(strstr(buf, "/tmp/walrust-"));
	unsetenv("XDG_RUNTIME_DIR");
	ck_assert_int_eq(wrp_socket_path(buf, sizeof(buf)), 0);
	ck_assert_int_eq(strncmp(buf, "/tmp/walrust-", 13), 0);
	ck_assert_ptr_nonnull(strstr(buf, "/walrustd.sock"));
}
END_TEST

/* ------------------------------------------------------ golden examples */

/*
 * Each file is JSONL: {"comment":..} lines, and {"dir":"c2s"|"s2c", ...}
 * with "msg" (a message object), or for c2s "raw" (the exact line) or
 * "oversize" (a line of that many bytes). Checks: every s2c passes
 * wrp_check_message; every c2s goes through wrp_parse_request (or the
 * reader, for oversize) and is answered by a later s2c reply with its id,
 * which for a parse failure must carry the same code and message; every
 * s2c reply answers exactly one request and every event a request sent
 * before it.
 */
struct golden {
	json_t *entries; /* array of the file's non-comment lines */
};

static int oversize_cb(void *arg, const char *line, size_t len,
		       bool too_long)
{
	int *n = arg;

	if (too_long)
		(*n)++;
	return 0;
}

/* The reply a c2s entry expects: {"id":.., "error": .. or null}. */
static json_t *golden_expect(const char *file, int lineno, json_t *e)
{
	json_t *msg = json_object_get(e, "msg");
	json_t *raw = json_object_get(e, "raw");
	json_t *over = json_object_get(e, "oversize");
	json_t *req, *err = NULL, *out;
	char *line = NULL;
	size_t len = 0;

	if (over) {
		struct wrp_reader r;
		size_t n = (size_t)json_integer_value(over);
		char *data = malloc(n + 1);
		int too_long = 0;

		ck_assert_msg(json_is_integer(over) && n >= WRP_MAX_LINE,
			      "%s:%d: oversize too small", file, lineno);
		memset(data, 'x', n);
		data[n] = '\n';
		wrp_reader_init(&r);
		ck_assert_int_eq(wrp_reader_feed(&r, data, n + 1, oversize_cb,
						 &too_long),
				 0);
		wrp_reader_clear(&r);
		free(data);
		ck_assert_int_eq(too_long, 1);
		return json_pack("{s:n,s:{s:s}}", "id", "error", "code",
				 WRP_E_TOO_LONG);
	}
	if (msg) {
		ck_assert_msg(json_is_object(msg), "%s:%d: msg", file, lineno);
		line = wrp_encode(msg, &len);
		ck_assert_ptr_nonnull(line);
		len--;
	} else {
		ck_assert_msg(json_is_string(raw), "%s:%d: no msg/raw/oversize",
			      file, lineno);
		line = strdup(json_string_value(raw));
		len = strlen(line);
	}
	req = wrp_parse_request(line, len, NULL, &err);
	free(line);
	if (req) {
		out = json_pack("{s:O,s:n}", "id", json_object_get(req, "id"),
				"error");
		json_decref(req);
		return out;
	}
	out = json_pack("{s:O,s:O}", "id", json_object_get(err, "id"), "error",
			json_object_get(err, "error"));
	json_decref(err);
	return out;
}

/*
 * The result members of each command's success reply, as PROTOCOL.md
 * documents them: "member:T ...", T being s (string), i (integer >= 0),
 * b (boolean), a (array) or n (string or null). Replies may carry more
 * members (additive changes); these must be there.
 */
static const struct {
	const char *cmd;
	const char *members;
} golden_results[] = {
	{"hello", "version:s protocol:i pid:i"},
	{"snapshot", "name:s database:s bucket:s txid:i key:s pages:i "
		     "page_size:i bytes:i timestamp:s wal_mode:b warnings:a"},
	{"restore", "name:s output:s bucket:s txid:i timestamp:s files:i "
		    "pages:i bytes:i"},
	{"list", "bucket:s databases:a"},
	{"status", "version:s pid:i uptime_ms:i socket:s default_bucket:s "
		   "workers:a jobs:i jobs_peak_rss_kb:i databases:a"},
	{"shutdown", ""},
	{"watch", "name:s database:s bucket:s txid:i state:s"},
	{"unwatch", "name:s database:s txid:i"},
	{"sync", "name:s database:s txid:i lag_ms:i"},
};
/* A member of status's "databases". */
static const char *const golden_status_db =
	"name:s database:s bucket:s state:s txid:i captured_txid:i "
	"wal_offset:i lag_ms:i last_sync:n last_error:n files:i bytes:i";
static const char *const golden_states[] = {"starting", "replicating",
					    "stopping", "error", NULL};

static const char *golden_result_spec(const char *cmd)
{
	for (size_t i = 0; i < sizeof(golden_results) / sizeof(golden_results[0]);
	     i++)
		if (strcmp(golden_results[i].cmd, cmd) == 0)
			return golden_results[i].members;
	return NULL;
}

static void golden_shape(const char *where, const json_t *obj,
			 const char *spec)
{
	char *copy = strdup(spec), *save = NULL, *tok;

	ck_assert_ptr_nonnull(copy);
	ck_assert_msg(json_is_object(obj), "%s: not an object", where);
	for (tok = strtok_r(copy, " ", &save); tok;
	     tok = strtok_r(NULL, " ", &save)) {
		char *colon = strchr(tok, ':');
		json_t *v;
		bool ok = false;

		ck_assert_ptr_nonnull(colon);
		*colon = '\0';
		v = json_object_get(obj, tok);
		switch (colon[1]) {
		case 's':
			ok = json_is_string(v);
			break;
		case 'i':
			ok = json_is_integer(v) && json_integer_value(v) >= 0;
			break;
		case 'b':
			ok = json_is_boolean(v);
			break;
		case 'a':
			ok = json_is_array(v);
			break;
		case 'n':
			ok = json_is_string(v) || json_is_null(v);
			break;
		}
		ck_assert_msg(ok, "%s: member \"%s\" missing or not of type %c",
			      where, tok, colon[1]);
	}
	free(copy);
}

static void golden_state(const char *where, const json_t *obj)
{
	const char *st = json_string_value(json_object_get(obj, "state"));
	size_t i;

	for (i = 0; golden_states[i]; i++)
		if (strcmp(golden_states[i], st) == 0)
			return;
	ck_abort_msg("%s: unknown state \"%s\"", where, st);
}

/* A success reply to cmd, from file:line. */
static void golden_check_result(const char *file, int lineno, const char *cmd,
				const json_t *result)
{
	const char *spec = golden_result_spec(cmd);
	const char *prev = NULL;
	char where[256];
	json_t *e;
	size_t i;

	snprintf(where, sizeof(where), "%s:%d: %s result", file, lineno, cmd);
	ck_assert_msg(spec != NULL, "%s: no documented shape", where);
	golden_shape(where, result, spec);
	if (strcmp(cmd, "watch") == 0)
		golden_state(where, result);
	if (strcmp(cmd, "list") == 0)
		json_array_foreach(json_object_get(result, "databases"), i, e)
			ck_assert_msg(json_is_string(e), "%s: a name", where);
	if (strcmp(cmd, "status") != 0)
		return;
	json_array_foreach(json_object_get(result, "databases"), i, e) {
		const char *db;

		snprintf(where, sizeof(where), "%s:%d: status databases[%zu]",
			 file, lineno, i);
		golden_shape(where, e, golden_status_db);
		golden_state(where, e);
		ck_assert_msg(json_integer_value(json_object_get(
				      e, "captured_txid")) >=
				      json_integer_value(json_object_get(e, "txid")),
			      "%s: captured_txid < txid", where);
		if (json_equal(json_object_get(e, "captured_txid"),
			       json_object_get(e, "txid")))
			ck_assert_msg(json_integer_value(json_object_get(
					      e, "lag_ms")) == 0,
				      "%s: lag without a transaction to ship",
				      where);
		db = json_string_value(json_object_get(e, "database"));
		ck_assert_msg(!prev || strcmp(prev, db) < 0,
			      "%s: not sorted by database", where);
		prev = db;
	}
}

static void golden_check_file(const char *dir, const char *name,
			      json_t *seen_cmds)
{
	char path[1024], *buf = NULL;
	size_t cap = 0;
	ssize_t n;
	FILE *f;
	int lineno = 0;
	json_t *c2s = json_array(), *s2c = json_array();

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "r");
	ck_assert_msg(f != NULL, "open %s", path);
	while ((n = getline(&buf, &cap, f)) >= 0) {
		json_error_t jerr;
		json_t *e, *msg, *dirv;
		char *enc, *why = NULL;
		size_t len;

		lineno++;
		e = json_loadb(buf, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
		ck_assert_msg(json_is_object(e), "%s:%d: %s", name, lineno,
			      jerr.text);
		if (json_object_get(e, "comment") && json_object_size(e) == 1) {
			json_decref(e);
			continue;
		}
		dirv = json_object_get(e, "dir");
		ck_assert_msg(json_is_string(dirv), "%s:%d: dir", name, lineno);
		json_object_set_new(e, "lineno", json_integer(lineno));
		if (strcmp(json_string_value(dirv), "c2s") == 0) {
			json_t *exp = golden_expect(name, lineno, e);
			const char *cmd = json_string_value(json_object_get(
				json_object_get(e, "msg"), "cmd"));

			if (cmd && json_is_null(json_object_get(exp, "error")))
				json_object_set_new(seen_cmds, cmd,
						    json_true());
			json_object_set_new(e, "expect", exp);
			json_object_set_new(e, "at", json_integer((json_int_t)
							json_array_size(s2c)));
			json_array_append(c2s, e);
		} else {
			ck_assert_msg(strcmp(json_string_value(dirv), "s2c") ==
					      0,
				      "%s:%d: dir", name, lineno);
			msg = json_object_get(e, "msg");
			ck_assert_msg(json_is_object(msg), "%s:%d: msg", name,
				      lineno);
			enc = wrp_encode(msg, &len);
			ck_assert_ptr_nonnull(enc);
			ck_assert_msg(wrp_check_message(enc, len, &why) == 0,
				      "%s:%d: %s", name, lineno, why);
			free(enc);
			json_array_append(s2c, e);
		}
		json_decref(e);
	}
	free(buf);
	fclose(f);

	/* Match each request to the first unclaimed reply with its id. */
	size_t i, j;
	json_t *req, *rep;
	json_array_foreach(c2s, i, req) {
		json_t *exp = json_object_get(req, "expect");
		json_t *id = json_object_get(exp, "id");
		json_t *experr = json_object_get(exp, "error");
		int rl = (int)json_integer_value(json_object_get(req, "lineno"));
		bool found = false;

		for (j = (size_t)json_integer_value(json_object_get(req, "at"));
		     j < json_array_size(s2c); j++) {
			json_t *m;

			rep = json_array_get(s2c, j);
			m = json_object_get(rep, "msg");
			if (json_object_get(rep, "claimed") ||
			    !json_object_get(m, "ok") ||
			    !json_equal(json_object_get(m, "id"), id))
				continue;
			found = true;
			json_object_set_new(rep, "claimed", json_true());
			/* Request checking is wrp_parse_request's alone: an
			 * accepted request never gets its errors. */
			if (json_is_null(experr) &&
			    json_is_false(json_object_get(m, "ok"))) {
				const char *code = json_string_value(
					json_object_get(json_object_get(m,
									"error"),
							"code"));

				ck_assert_msg(strcmp(code, WRP_E_BAD_REQUEST) &&
						      strcmp(code,
							     WRP_E_UNKNOWN_CMD) &&
						      strcmp(code, WRP_E_VERSION) &&
						      strcmp(code, WRP_E_TOO_LONG),
					      "%s:%d: %s for a valid request",
					      name, rl, code);
			}
			if (json_is_null(experr) &&
			    json_is_true(json_object_get(m, "ok")))
				golden_check_result(
					name, (int)json_integer_value(
						      json_object_get(rep,
								      "lineno")),
					json_string_value(json_object_get(
						json_object_get(req, "msg"),
						"cmd")),
					json_object_get(m, "result"));
			if (!json_is_null(experr)) {
				json_t *got = json_object_get(m, "error");
				const char *wm = json_string_value(
					json_object_get(experr, "message"));
				const char *gm = json_string_value(
					json_object_get(got, "message"));

				ck_assert_msg(got != NULL,
					      "%s:%d: should fail", name, rl);
				ck_assert_str_eq(
					json_string_value(
						json_object_get(got, "code")),
					json_string_value(
						json_object_get(experr, "code")));
				if (wm && strncmp(wm, "malformed JSON", 14))
					ck_assert_str_eq(gm, wm);
			}
			break;
		}
		ck_assert_msg(found, "%s:%d: no reply", name, rl);
	}
	/* Every reply answers a request; every event follows its request. */
	json_array_foreach(s2c, j, rep) {
		json_t *m = json_object_get(rep, "msg");
		int rl = (int)json_integer_value(json_object_get(rep, "lineno"));

		if (json_object_get(m, "ok")) {
			ck_assert_msg(json_object_get(rep, "claimed") != NULL,
				      "%s:%d: reply to nothing", name, rl);
			continue;
		}
		bool found = false;
		json_array_foreach(c2s, i, req) {
			if (json_integer_value(json_object_get(req, "at")) >
			    (json_int_t)j)
				break;
			if (json_equal(json_object_get(json_object_get(
						       req, "expect"),
						       "id"),
				       json_object_get(m, "id")))
				found = true;
		}
		ck_assert_msg(found, "%s:%d: event before its request", name,
			      rl);
	}
	json_decref(c2s);
	json_decref(s2c);
}

START_TEST(test_golden_examples)
{
	DIR *d = opendir(PROTO_EXAMPLES);
	struct dirent *de;
	json_t *seen = json_object();
	const struct wrp_command *c;
	int files = 0;

	ck_assert_msg(d != NULL, "opendir %s", PROTO_EXAMPLES);
	while ((de = readdir(d))) {
		size_t n = strlen(de->d_name);

		if (n < 7 || strcmp(de->d_name + n - 6, ".jsonl"))
			continue;
		golden_check_file(PROTO_EXAMPLES, de->d_name, seen);
		files++;
	}
	closedir(d);
	ck_assert_int_ge(files, 1);
	/* each command has an accepted request in its own example file, and
	 * a documented result */
	for (c = wrp_commands; c->name; c++) {
		ck_assert_msg(json_object_get(seen, c->name),
			      "no example of %s", c->name);
		ck_assert_msg(golden_result_spec(c->name) != NULL,
			      "no result shape for %s", c->name);
	}
	json_decref(seen);
}
END_TEST

/* PROTOCOL.md documents each command (a section naming each argument) and
 * exactly the error codes of wrp.c. */
START_TEST(test_protocol_doc)
{
	FILE *f = fopen(PROTO_DOC, "r");
	const struct wrp_command *c;
	const struct wrp_arg *a;
	char *doc, *table, *end, needle[128];
	long size;

	ck_assert_msg(f != NULL, "open %s", PROTO_DOC);
	ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
	size = ftell(f);
	ck_assert_int_gt(size, 0);
	rewind(f);
	doc = calloc(1, (size_t)size + 1);
	ck_assert_ptr_nonnull(doc);
	ck_assert_uint_eq(fread(doc, 1, (size_t)size, f), (size_t)size);
	fclose(f);

	for (c = wrp_commands; c->name; c++) {
		char *sec, *next;

		snprintf(needle, sizeof(needle), "\n### %s\n", c->name);
		sec = strstr(doc, needle);
		if (!sec) {
			snprintf(needle, sizeof(needle), "\n### %s \xe2\x80\x94 streams\n",
				 c->name);
			sec = strstr(doc, needle);
		}
		ck_assert_msg(sec != NULL, "no section for %s", c->name);
		ck_assert_msg((strstr(needle, "streams") != NULL) == c->streams,
			      "%s: \"streams\" in the title", c->name);
		sec += strlen(needle);
		next = strstr(sec, "\n## ");
		end = strstr(sec, "\n### ");
		if (!end || (next && next < end))
			end = next;
		ck_assert_ptr_nonnull(end);
		*end = '\0';
		for (a = c->args; a->name; a++) {
			snprintf(needle, sizeof(needle), "`%s`", a->name);
			ck_assert_msg(strstr(sec, needle), "%s: %s undocumented",
				      c->name, a->name);
		}
		*end = '\n';
	}
	table = strstr(doc, "\n## Error codes\n");
	ck_assert_ptr_nonnull(table);
	end = strstr(table + 1, "\n## ");
	ck_assert_ptr_nonnull(end);
	*end = '\0';
	for (size_t i = 0; i < sizeof(all_codes) / sizeof(all_codes[0]); i++) {
		snprintf(needle, sizeof(needle), "\n| `%s` |", all_codes[i]);
		ck_assert_msg(strstr(table, needle), "code %s undocumented",
			      all_codes[i]);
	}
	/* ... and no other (one table row per code) */
	{
		size_t rows = 0;

		for (char *p = table; (p = strstr(p, "\n| `")); p++)
			rows++;
		ck_assert_uint_eq(rows, sizeof(all_codes) / sizeof(all_codes[0]));
	}
	free(doc);
}
END_TEST

Suite *wrp_suite(void)
{
	Suite *s = suite_create("wrp");
	TCase *tc;

	tc = tcase_create("framing");
	tcase_add_test(tc, test_split_feeds);
	tcase_add_test(tc, test_many_lines_one_feed);
	tcase_add_test(tc, test_no_newline_yet);
	tcase_add_test(tc, test_oversize_skipped);
	tcase_add_test(tc, test_line_limit_exact);
	tcase_add_test(tc, test_callback_stops);
	tcase_add_test(tc, test_encode);
	suite_add_tcase(s, tc);

	tc = tcase_create("parse");
	tcase_add_test(tc, test_parse_ok);
	tcase_add_test(tc, test_parse_bad_request);
	tcase_add_test(tc, test_parse_long_id);
	tcase_add_test(tc, test_parse_malformed_hides_token);
	tcase_add_test(tc, test_parse_version);
	tcase_add_test(tc, test_parse_unknown_command);
	tcase_add_test(tc, test_parse_too_long);
	tcase_add_test(tc, test_command_table);
	suite_add_tcase(s, tc);

	tc = tcase_create("check");
	tcase_add_test(tc, test_builders_valid);
	tcase_add_test(tc, test_check_rejects);
	tcase_add_test(tc, test_socket_path);
	suite_add_tcase(s, tc);

	tc = tcase_create("golden");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_golden_examples);
	tcase_add_test(tc, test_protocol_doc);
	suite_add_tcase(s, tc);
	return s;
}
