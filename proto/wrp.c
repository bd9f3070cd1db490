/*
 * wrp.c: the walrust control protocol (v1): line framing, encoding, message
 * builders, request parsing and the reply checker. proto/PROTOCOL.md is the
 * prose definition; keep the two in step.
 *
 * Framing. A message is one line of compact JSON ended by '\n', at most
 * WRP_MAX_LINE bytes including the newline (so at most WRP_MAX_LINE - 1
 * bytes of content). struct wrp_reader accumulates bytes and hands each
 * complete line to a callback. A line that cannot fit is reported once
 * (too_long) as soon as that is known, without buffering more than the cap,
 * and the bytes up to its newline are then skipped; the next line is read
 * normally. A line wholly inside one feed is passed straight from the
 * caller's buffer (no copy); the line given to the callback is not
 * NUL-terminated.
 *
 * Stopping. When the callback returns non-zero, wrp_reader_feed returns that
 * value at once without touching the reader again (so the callback may free
 * the connection that holds it) and the rest of that feed is dropped: the
 * reader must then be cleared before any reuse. A callback that returns 0
 * must leave the reader alive.
 *
 * Parsing is strict: every request is checked against wrp_commands[] (names,
 * types, required arguments, no unknown ones) so that the daemon's command
 * handlers only ever see well-typed arguments, and every error reply is
 * built here, with the request's id when it could be read. Error messages
 * never quote argument values (the "aws" object carries credentials), only
 * names, cut to a few dozen bytes so that a reply always fits in a line.
 *
 * The checker (wrp_check_message) is the executable form of PROTOCOL.md for
 * server->client lines: envelope members and their types, result/error
 * shapes, the closed set of error codes, and the data of the events this
 * version defines. Unknown event names and extra members inside result,
 * error and event data are allowed: those are the additive changes of the
 * versioning rules.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wrp.h"

/* Longest line content (the newline excluded). */
#define WRP_MAX_CONTENT ((size_t)WRP_MAX_LINE - 1)
/* Longest string id accepted; replies must always fit in a line. */
#define WRP_MAX_ID 256
/* Names quoted in error messages are cut to this many bytes. */
#define WRP_NAME_QUOTE 64
/* A reader buffer larger than this is released after each line. */
#define WRP_READER_KEEP (64 * 1024)

/* ---------------------------------------------------------------- table */

/* Remote storage arguments shared by snapshot, restore, list and watch. */
#define WRP_STORAGE_ARGS                                                       \
	{"bucket", WRP_STRING, false}, {"endpoint", WRP_STRING, false},        \
		{"aws", WRP_OBJECT, false}

static const struct wrp_arg wrp_args_none[] = {{NULL, WRP_STRING, false}};

static const struct wrp_arg wrp_args_snapshot[] = {
	{"database", WRP_STRING, true},
	WRP_STORAGE_ARGS,
	{NULL, WRP_STRING, false},
};

static const struct wrp_arg wrp_args_restore[] = {
	{"name", WRP_STRING, true},
	{"output", WRP_STRING, true},
	WRP_STORAGE_ARGS,
	{"point_in_time", WRP_STRING, false},
	{"txid", WRP_INTEGER, false},
	{"force", WRP_BOOLEAN, false},
	{"integrity_check", WRP_STRING, false},
	{NULL, WRP_STRING, false},
};

static const struct wrp_arg wrp_args_list[] = {
	WRP_STORAGE_ARGS,
	{NULL, WRP_STRING, false},
};

static const struct wrp_arg wrp_args_watch[] = {
	{"database", WRP_STRING, true},
	WRP_STORAGE_ARGS,
	{"sync_interval_ms", WRP_INTEGER, false},
	{NULL, WRP_STRING, false},
};

static const struct wrp_arg wrp_args_unwatch[] = {
	{"database", WRP_STRING, true},
	{NULL, WRP_STRING, false},
};

static const struct wrp_arg wrp_args_sync[] = {
	{"database", WRP_STRING, true},
	{"wait", WRP_BOOLEAN, false},
	{"timeout_ms", WRP_INTEGER, false},
	{NULL, WRP_STRING, false},
};

const struct wrp_command wrp_commands[] = {
	{"hello", wrp_args_none, false},
	{"snapshot", wrp_args_snapshot, true},
	{"restore", wrp_args_restore, true},
	{"list", wrp_args_list, false},
	{"status", wrp_args_none, false},
	{"shutdown", wrp_args_none, false},
	{"watch", wrp_args_watch, false},
	{"unwatch", wrp_args_unwatch, false},
	{"sync", wrp_args_sync, false},
	{NULL, NULL, false},
};

/* Members of the "aws" argument: all optional strings. */
static const char *const wrp_aws_members[] = {
	"access_key_id", "secret_access_key", "session_token",
	"region",        "endpoint_url",      NULL,
};

/* Every error code of this protocol version. */
static const char *const wrp_error_codes[] = {
	WRP_E_BAD_REQUEST, WRP_E_TOO_LONG,   WRP_E_VERSION,
	WRP_E_UNKNOWN_CMD, WRP_E_NOT_FOUND,  WRP_E_NO_SNAPSHOT,
	WRP_E_BEFORE_FIRST, WRP_E_AUTH,      WRP_E_UNREACHABLE,
	WRP_E_STORAGE,     WRP_E_CHECKSUM,   WRP_E_IN_USE,
	WRP_E_INVALID,     WRP_E_IO,         WRP_E_SHUTTING_DOWN,
	WRP_E_TIMEOUT,     WRP_E_INTERNAL,   NULL,
};

const struct wrp_command *wrp_command_find(const char *name)
{
	const struct wrp_command *c;

	if (!name)
		return NULL;
	for (c = wrp_commands; c->name; c++)
		if (strcmp(c->name, name) == 0)
			return c;
	return NULL;
}

static bool wrp_in_list(const char *const *list, const char *s)
{
	for (; *list; list++)
		if (strcmp(*list, s) == 0)
			return true;
	return false;
}

static const struct wrp_arg *wrp_arg_find(const struct wrp_command *cmd,
					  const char *name)
{
	const struct wrp_arg *a;

	for (a = cmd->args; a->name; a++)
		if (strcmp(a->name, name) == 0)
			return a;
	return NULL;
}

static const char *wrp_type_name(enum wrp_type t)
{
	switch (t) {
	case WRP_STRING:
		return "a string";
	case WRP_INTEGER:
		return "an integer";
	case WRP_BOOLEAN:
		return "a boolean";
	case WRP_OBJECT:
		return "an object";
	}
	return "?";
}

static bool wrp_type_ok(const json_t *v, enum wrp_type t)
{
	switch (t) {
	case WRP_STRING:
		return json_is_string(v);
	case WRP_INTEGER:
		return json_is_integer(v);
	case WRP_BOOLEAN:
		return json_is_boolean(v);
	case WRP_OBJECT:
		return json_is_object(v);
	}
	return false;
}

/* -------------------------------------------------------------- framing */

void wrp_reader_init(struct wrp_reader *r)
{
	memset(r, 0, sizeof(*r));
}

void wrp_reader_clear(struct wrp_reader *r)
{
	free(r->buf);
	memset(r, 0, sizeof(*r));
}

/* Release a big buffer once it holds no partial line. */
static void wrp_reader_shrink(struct wrp_reader *r)
{
	if (r->len == 0 && r->cap > WRP_READER_KEEP) {
		free(r->buf);
		r->buf = NULL;
		r->cap = 0;
	}
}

/* Append to the partial line; r->len + n <= WRP_MAX_CONTENT is checked by
 * the caller. */
static int wrp_reader_append(struct wrp_reader *r, const char *p, size_t n)
{
	size_t need = r->len + n, cap = r->cap ? r->cap : 4096;
	char *nbuf;

	if (need <= r->cap) {
		memcpy(r->buf + r->len, p, n);
		r->len = need;
		return 0;
	}
	while (cap < need)
		cap *= 2;
	if (cap > WRP_MAX_CONTENT)
		cap = WRP_MAX_CONTENT;
	nbuf = realloc(r->buf, cap);
	if (!nbuf)
		return -ENOMEM;
	r->buf = nbuf;
	r->cap = cap;
	memcpy(r->buf + r->len, p, n);
	r->len = need;
	return 0;
}

int wrp_reader_feed(struct wrp_reader *r, const char *data, size_t n,
		    wrp_line_fn fn, void *arg)
{
	size_t off = 0;
	int rc = 0;

	while (off < n) {
		const char *p = data + off;
		const char *nl = memchr(p, '\n', n - off);
		size_t seg = nl ? (size_t)(nl - p) : n - off;

		if (r->discarding) {
			/* Inside an oversized line, already reported. */
			off += nl ? seg + 1 : seg;
			if (nl)
				r->discarding = false;
			continue;
		}
		if (seg > WRP_MAX_CONTENT - r->len) {
			/* Too long: report it now, skip up to its newline. */
			r->len = 0;
			wrp_reader_shrink(r);
			r->discarding = !nl;
			off += nl ? seg + 1 : seg;
			rc = fn(arg, NULL, 0, true);
			if (rc)
				goto out;
			continue;
		}
		if (!nl) {
			/* A partial line: keep it for the next feed. */
			rc = wrp_reader_append(r, p, seg);
			goto out;
		}
		off += seg + 1;
		if (r->len == 0) {
			rc = fn(arg, p, seg, false);
		} else {
			size_t len;

			rc = wrp_reader_append(r, p, seg);
			if (rc)
				goto out;
			len = r->len;
			r->len = 0;
			rc = fn(arg, r->buf, len, false);
			if (rc == 0)
				wrp_reader_shrink(r);
		}
		if (rc)
			goto out;
	}
out:
	return rc;
}

/* ------------------------------------------------------------- encoding */

char *wrp_encode(const json_t *msg, size_t *len)
{
	char *s = NULL, *line = NULL;
	size_t n;

	if (!msg)
		goto out;
	s = json_dumps(msg, JSON_COMPACT);
	if (!s)
		goto out;
	n = strlen(s);
	if (n > WRP_MAX_CONTENT)
		goto out;
	line = realloc(s, n + 2);
	if (!line)
		goto out;
	s = NULL;
	line[n] = '\n';
	line[n + 1] = '\0';
	if (len)
		*len = n + 1;
out:
	free(s);
	return line;
}

/* ------------------------------------------------------------- builders */

/* A JSON string from text that may not be valid UTF-8 (a path in an error
 * message, say): bytes of invalid sequences become '?'. */
static json_t *wrp_string_lossy(const char *s)
{
	json_t *j = json_string(s);
	char *copy;
	size_t i;

	if (j || !s)
		return j;
	copy = strdup(s);
	if (!copy)
		return NULL;
	for (i = 0; copy[i]; i++)
		if ((unsigned char)copy[i] >= 0x80)
			copy[i] = '?';
	j = json_string(copy);
	free(copy);
	return j;
}

/* {"v":1,"id":id}: id copied (a new reference), NULL meaning null. */
static json_t *wrp_envelope(const json_t *id)
{
	json_t *msg = json_object();

	if (!msg)
		return NULL;
	if (json_object_set_new(msg, "v", json_integer(WRP_VERSION)) ||
	    json_object_set_new(msg, "id",
				id ? json_deep_copy(id) : json_null())) {
		json_decref(msg);
		return NULL;
	}
	return msg;
}

json_t *wrp_request(json_t *id, const char *cmd, json_t *args)
{
	json_t *msg = NULL;

	if (!args)
		args = json_object();
	if (!id || !cmd || !args)
		goto out;
	msg = wrp_envelope(id);
	if (!msg)
		goto out;
	if (json_object_set_new(msg, "cmd", json_string(cmd)) ||
	    json_object_set(msg, "args", args)) {
		json_decref(msg);
		msg = NULL;
	}
out:
	json_decref(id);
	json_decref(args);
	return msg;
}

json_t *wrp_reply_ok(const json_t *id, json_t *result)
{
	json_t *msg = NULL;

	if (!result)
		result = json_object();
	if (!result)
		goto out;
	msg = wrp_envelope(id);
	if (!msg)
		goto out;
	if (json_object_set_new(msg, "ok", json_true()) ||
	    json_object_set(msg, "result", result)) {
		json_decref(msg);
		msg = NULL;
	}
out:
	json_decref(result);
	return msg;
}

json_t *wrp_reply_error(const json_t *id, const char *code, const char *fmt,
			...)
{
	json_t *msg = NULL, *err = NULL;
	char *text = NULL;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&text, fmt, ap);
	va_end(ap);
	if (n < 0) {
		text = NULL;
		goto out;
	}
	err = json_object();
	if (!err || json_object_set_new(err, "code", json_string(code)) ||
	    json_object_set_new(err, "message", wrp_string_lossy(text)))
		goto out;
	msg = wrp_envelope(id);
	if (!msg)
		goto out;
	if (json_object_set_new(msg, "ok", json_false()) ||
	    json_object_set(msg, "error", err)) {
		json_decref(msg);
		msg = NULL;
	}
out:
	json_decref(err);
	free(text);
	return msg;
}

json_t *wrp_event(const json_t *id, const char *event, json_t *data)
{
	json_t *msg = NULL;

	if (!data)
		data = json_object();
	if (!data || !event)
		goto out;
	msg = wrp_envelope(id);
	if (!msg)
		goto out;
	if (json_object_set_new(msg, "event", json_string(event)) ||
	    json_object_set(msg, "data", data)) {
		json_decref(msg);
		msg = NULL;
	}
out:
	json_decref(data);
	return msg;
}

/* ------------------------------------------------------- request parsing */

static bool wrp_id_ok(const json_t *id)
{
	if (json_is_integer(id))
		return true;
	return json_is_string(id) && json_string_length(id) <= WRP_MAX_ID;
}

/* Check args against the command's table; 0 or -1 with *errmsg set. */
static int wrp_check_args(const struct wrp_command *cmd, const json_t *args,
			  char **errmsg)
{
	const struct wrp_arg *a;
	const char *key;
	json_t *val;
	char list[6 * (WRP_NAME_QUOTE + 4)] = "";
	size_t used = 0;
	int unknown = 0, rc = -1;

	/* Every unknown name first: a typo should not read as "missing". */
	json_object_foreach((json_t *)args, key, val) {
		if (wrp_arg_find(cmd, key))
			continue;
		if (++unknown <= 5 && used < sizeof(list) - 1) {
			int n = snprintf(list + used, sizeof(list) - used,
					 "%s\"%.*s\"", unknown > 1 ? ", " : "",
					 WRP_NAME_QUOTE, key);

			used = n < 0 ? used : used + (size_t)n;
		}
	}
	if (unknown) {
		if (asprintf(errmsg, "unknown argument%s for %s: %s%s",
			     unknown > 1 ? "s" : "", cmd->name, list,
			     unknown > 5 ? ", ..." : "") < 0)
			*errmsg = NULL;
		goto out;
	}
	for (a = cmd->args; a->name; a++) {
		val = json_object_get(args, a->name);
		if (!val && a->required) {
			if (asprintf(errmsg,
				     "missing required argument \"%s\" for %s",
				     a->name, cmd->name) < 0)
				*errmsg = NULL;
			goto out;
		}
		if (val && !wrp_type_ok(val, a->type)) {
			if (asprintf(errmsg, "argument \"%s\" of %s must be %s",
				     a->name, cmd->name,
				     wrp_type_name(a->type)) < 0)
				*errmsg = NULL;
			goto out;
		}
	}
	/* The members of "aws" (never quote their values). */
	val = json_object_get(args, "aws");
	if (json_is_object(val)) {
		json_t *m;

		json_object_foreach(val, key, m) {
			if (!wrp_in_list(wrp_aws_members, key)) {
				if (asprintf(errmsg,
					     "unknown member \"%.*s\" in \"aws\"",
					     WRP_NAME_QUOTE, key) < 0)
					*errmsg = NULL;
				goto out;
			}
			if (!json_is_string(m)) {
				if (asprintf(errmsg,
					     "\"aws.%s\" must be a string",
					     key) < 0)
					*errmsg = NULL;
				goto out;
			}
		}
	}
	rc = 0;
out:
	return rc;
}

json_t *wrp_parse_request(const char *line, size_t len,
			  const struct wrp_command **cmdp, json_t **error_reply)
{
	json_t *req = NULL, *id = NULL, *v, *cmdv, *args, *val;
	const struct wrp_command *cmd = NULL;
	const char *code = WRP_E_BAD_REQUEST, *key;
	char *msg = NULL;
	json_error_t jerr;

	if (error_reply)
		*error_reply = NULL;
	if (cmdp)
		*cmdp = NULL;

	if (len > WRP_MAX_CONTENT) {
		code = WRP_E_TOO_LONG;
		if (asprintf(&msg, "request line longer than %d bytes",
			     WRP_MAX_LINE) < 0)
			msg = NULL;
		goto fail;
	}
	req = json_loadb(line, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES,
			 &jerr);
	if (!req) {
		/* jansson quotes the offending token: drop it, it may be a
		 * piece of a secret. */
		char *near = strstr(jerr.text, " near '");

		if (near)
			*near = '\0';
		if (asprintf(&msg, "malformed JSON at byte %d: %s",
			     jerr.position, jerr.text) < 0)
			msg = NULL;
		goto fail;
	}
	if (!json_is_object(req)) {
		msg = strdup("a request must be a JSON object");
		goto fail;
	}
	/* The id first, so that the other errors can carry it. */
	val = json_object_get(req, "id");
	if (wrp_id_ok(val))
		id = val;

	v = json_object_get(req, "v");
	if (!v) {
		msg = strdup("missing \"v\"");
		goto fail;
	}
	if (!json_is_integer(v)) {
		msg = strdup("\"v\" must be an integer");
		goto fail;
	}
	if (json_integer_value(v) != WRP_VERSION) {
		code = WRP_E_VERSION;
		if (asprintf(&msg,
			     "protocol version %" JSON_INTEGER_FORMAT
			     " is not supported (this side speaks %d)",
			     json_integer_value(v), WRP_VERSION) < 0)
			msg = NULL;
		goto fail;
	}
	if (!id) {
		val = json_object_get(req, "id");
		if (!val)
			msg = strdup("missing \"id\"");
		else if (json_is_string(val))
			msg = strdup("\"id\" string longer than 256 bytes");
		else
			msg = strdup("\"id\" must be an integer or a string");
		goto fail;
	}
	json_object_foreach(req, key, val) {
		if (strcmp(key, "v") && strcmp(key, "id") &&
		    strcmp(key, "cmd") && strcmp(key, "args")) {
			if (asprintf(&msg, "unknown member \"%.*s\" in request",
				     WRP_NAME_QUOTE, key) < 0)
				msg = NULL;
			goto fail;
		}
	}
	cmdv = json_object_get(req, "cmd");
	if (!cmdv) {
		msg = strdup("missing \"cmd\"");
		goto fail;
	}
	if (!json_is_string(cmdv)) {
		msg = strdup("\"cmd\" must be a string");
		goto fail;
	}
	cmd = wrp_command_find(json_string_value(cmdv));
	if (!cmd) {
		code = WRP_E_UNKNOWN_CMD;
		if (asprintf(&msg, "unknown command \"%.*s\"", WRP_NAME_QUOTE,
			     json_string_value(cmdv)) < 0)
			msg = NULL;
		goto fail;
	}
	args = json_object_get(req, "args");
	if (!args) {
		/* Omitted means {}: handlers always find an object. */
		args = json_object();
		if (!args || json_object_set_new(req, "args", args)) {
			code = WRP_E_INTERNAL;
			msg = strdup("out of memory");
			goto fail;
		}
	} else if (!json_is_object(args)) {
		msg = strdup("\"args\" must be an object");
		goto fail;
	}
	/* Omitted args too: {} lacks the required ones. */
	if (wrp_check_args(cmd, args, &msg))
		goto fail;
	if (cmdp)
		*cmdp = cmd;
	return req;

fail:
	if (error_reply)
		*error_reply = wrp_reply_error(id, code, "%s",
					       msg ? msg : "out of memory");
	free(msg);
	json_decref(req);
	return NULL;
}

/* ------------------------------------------------------------- checking */

static int wrp_why(char **why, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int wrp_why(char **why, const char *fmt, ...)
{
	va_list ap;

	if (!why)
		return -1;
	va_start(ap, fmt);
	if (vasprintf(why, fmt, ap) < 0)
		*why = NULL;
	va_end(ap);
	return -1;
}

/* An optional non-negative integer member. */
static bool wrp_count_ok(const json_t *obj, const char *name)
{
	json_t *v = json_object_get(obj, name);

	return !v || (json_is_integer(v) && json_integer_value(v) >= 0);
}

static int wrp_check_event(const json_t *msg, char **why)
{
	const char *event;
	json_t *data, *done, *total;
	const char *p;

	if (!json_is_string(json_object_get(msg, "event")))
		return wrp_why(why, "\"event\" must be a string");
	event = json_string_value(json_object_get(msg, "event"));
	if (!*event)
		return wrp_why(why, "\"event\" is empty");
	for (p = event; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || *p == '_'))
			return wrp_why(why, "bad event name");
	if (json_is_null(json_object_get(msg, "id")))
		return wrp_why(why, "an event must carry its request's id");
	if (json_object_get(msg, "ok") || json_object_get(msg, "result") ||
	    json_object_get(msg, "error"))
		return wrp_why(why, "an event has no ok/result/error");
	data = json_object_get(msg, "data");
	if (!json_is_object(data))
		return wrp_why(why, "event \"data\" must be an object");
	if (strcmp(event, "progress") == 0) {
		if (!json_is_string(json_object_get(data, "phase")))
			return wrp_why(why, "progress \"phase\" must be a "
					    "string");
		if (!wrp_count_ok(data, "done") ||
		    !wrp_count_ok(data, "total") ||
		    !wrp_count_ok(data, "bytes"))
			return wrp_why(why, "progress done/total/bytes must "
					    "be non-negative integers");
		done = json_object_get(data, "done");
		total = json_object_get(data, "total");
		if (done && total &&
		    json_integer_value(done) > json_integer_value(total))
			return wrp_why(why, "progress done > total");
	} else if (strcmp(event, "warning") == 0) {
		if (!json_is_string(json_object_get(data, "message")))
			return wrp_why(why, "warning \"message\" must be a "
					    "string");
	}
	return 0;
}

static int wrp_check_reply(const json_t *msg, char **why)
{
	json_t *ok = json_object_get(msg, "ok");
	json_t *result = json_object_get(msg, "result");
	json_t *err = json_object_get(msg, "error");
	json_t *code;

	if (!ok)
		return wrp_why(why, "neither \"ok\" nor \"event\"");
	if (!json_is_boolean(ok))
		return wrp_why(why, "\"ok\" must be a boolean");
	if (json_object_get(msg, "data"))
		return wrp_why(why, "a reply has no \"data\"");
	if (json_is_true(ok)) {
		if (err)
			return wrp_why(why, "\"ok\":true with an \"error\"");
		if (!json_is_object(result))
			return wrp_why(why, "\"result\" must be an object");
		if (json_is_null(json_object_get(msg, "id")))
			return wrp_why(why, "a success reply needs an id");
		return 0;
	}
	if (result)
		return wrp_why(why, "\"ok\":false with a \"result\"");
	if (!json_is_object(err))
		return wrp_why(why, "\"error\" must be an object");
	code = json_object_get(err, "code");
	if (!json_is_string(code))
		return wrp_why(why, "error \"code\" must be a string");
	if (!wrp_in_list(wrp_error_codes, json_string_value(code)))
		return wrp_why(why, "unknown error code \"%.*s\"",
			       WRP_NAME_QUOTE, json_string_value(code));
	if (!json_is_string(json_object_get(err, "message")))
		return wrp_why(why, "error \"message\" must be a string");
	return 0;
}

int wrp_check_message(const char *line, size_t len, char **why)
{
	json_t *msg = NULL, *v, *id, *val;
	json_error_t jerr;
	const char *key;
	int rc = -1;

	if (why)
		*why = NULL;
	if (len && line[len - 1] == '\n')
		len--;
	if (len > WRP_MAX_CONTENT) {
		wrp_why(why, "line longer than %d bytes", WRP_MAX_LINE);
		goto out;
	}
	if (memchr(line, '\n', len)) {
		wrp_why(why, "newline inside a message");
		goto out;
	}
	msg = json_loadb(line, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES,
			 &jerr);
	if (!msg) {
		wrp_why(why, "malformed JSON: %s", jerr.text);
		goto out;
	}
	if (!json_is_object(msg)) {
		wrp_why(why, "a message must be a JSON object");
		goto out;
	}
	json_object_foreach(msg, key, val) {
		if (strcmp(key, "v") && strcmp(key, "id") &&
		    strcmp(key, "ok") && strcmp(key, "result") &&
		    strcmp(key, "error") && strcmp(key, "event") &&
		    strcmp(key, "data")) {
			wrp_why(why, "unknown member \"%.*s\"",
				WRP_NAME_QUOTE, key);
			goto out;
		}
	}
	v = json_object_get(msg, "v");
	if (!json_is_integer(v) || json_integer_value(v) != WRP_VERSION) {
		wrp_why(why, "\"v\" must be %d", WRP_VERSION);
		goto out;
	}
	id = json_object_get(msg, "id");
	if (!id) {
		wrp_why(why, "missing \"id\"");
		goto out;
	}
	if (!json_is_null(id) && !wrp_id_ok(id)) {
		wrp_why(why, "\"id\" must be an integer, a string (at most "
			     "256 bytes) or null");
		goto out;
	}
	if (json_object_get(msg, "event"))
		rc = wrp_check_event(msg, why);
	else
		rc = wrp_check_reply(msg, why);
out:
	if (rc && why && !*why)
		*why = strdup("invalid message");
	json_decref(msg);
	return rc;
}

/* ------------------------------------------------------------ arg helpers */

const char *wrp_arg_string(const json_t *args, const char *name)
{
	return json_string_value(json_object_get(args, name));
}

bool wrp_arg_bool(const json_t *args, const char *name, bool dflt)
{
	json_t *v = json_object_get(args, name);

	return json_is_boolean(v) ? json_is_true(v) : dflt;
}

long long wrp_arg_int(const json_t *args, const char *name, long long dflt)
{
	json_t *v = json_object_get(args, name);

	return json_is_integer(v) ? (long long)json_integer_value(v) : dflt;
}

/* --------------------------------------------------------------- socket */

int wrp_socket_path(char *buf, size_t len)
{
	const char *env = getenv("WALRUST_SOCKET");
	int n;

	if (env && *env)
		n = snprintf(buf, len, "%s", env);
	else if ((env = getenv("XDG_RUNTIME_DIR")) && env[0] == '/')
		n = snprintf(buf, len, "%s/walrust/walrustd.sock", env);
	else
		n = snprintf(buf, len, "/tmp/walrust-%u/walrustd.sock",
			     (unsigned)getuid());
	if (n < 0 || (size_t)n >= len)
		return -ENAMETOOLONG;
	return 0;
}
