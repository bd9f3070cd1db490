/*
 * wrp.h: the walrust control protocol, framing and envelope, on jansson.
 * Shared by walrustd, walrustctl and the tests. proto/PROTOCOL.md is the
 * prose definition; this file and wrp.c are its only implementation.
 *
 * One message per line: compact JSON, '\n'-terminated, at most WRP_MAX_LINE
 * bytes including the newline.
 *   request  {"v":1,"id":ID,"cmd":"snapshot","args":{...}}
 *   event    {"v":1,"id":ID,"event":"progress","data":{...}}
 *   reply    {"v":1,"id":ID,"ok":true,"result":{...}}
 *            {"v":1,"id":ID,"ok":false,"error":{"code":"...","message":"..."}}
 * ID is an integer or a string chosen by the client, echoed back.
 */
#ifndef WALRUST_WRP_H
#define WALRUST_WRP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* Bump me when a change is not backward compatible, and document it in
 * PROTOCOL.md ("Versioning"). */
#define WRP_VERSION 1
#define WRP_MAX_LINE (1024 * 1024)

/* Error codes (the "code" string of an error reply). */
#define WRP_E_BAD_REQUEST "bad_request"       /* malformed JSON, bad envelope,
						 missing or mistyped args */
#define WRP_E_TOO_LONG "line_too_long"
#define WRP_E_VERSION "unsupported_version"
#define WRP_E_UNKNOWN_CMD "unknown_command"
#define WRP_E_NOT_FOUND "not_found"           /* local database missing */
#define WRP_E_NO_SNAPSHOT "no_snapshot"       /* nothing in the replica */
#define WRP_E_BEFORE_FIRST "before_first_snapshot"
#define WRP_E_AUTH "auth"                     /* credentials rejected */
#define WRP_E_UNREACHABLE "unreachable"       /* endpoint unreachable */
#define WRP_E_STORAGE "storage"               /* other storage failure */
#define WRP_E_CHECKSUM "checksum"             /* corrupt, truncated, chain gap */
#define WRP_E_IN_USE "in_use"                 /* output has a live -wal */
#define WRP_E_INVALID "invalid_argument"      /* e.g. name with "../" */
#define WRP_E_IO "io"                         /* local I/O error */
#define WRP_E_SHUTTING_DOWN "shutting_down"
#define WRP_E_TIMEOUT "timeout"               /* sync: timeout_ms passed */
#define WRP_E_INTERNAL "internal"

/* Argument types for the command table. */
enum wrp_type { WRP_STRING, WRP_INTEGER, WRP_BOOLEAN, WRP_OBJECT };
struct wrp_arg {
	const char *name;
	enum wrp_type type;
	bool required;
};
struct wrp_command {
	const char *name;
	const struct wrp_arg *args; /* terminated by {NULL} */
	bool streams;               /* may send progress events */
};
/* The table of every command, terminated by {NULL}. */
extern const struct wrp_command wrp_commands[];
const struct wrp_command *wrp_command_find(const char *name);

/* ---- line framing ---- */
struct wrp_reader {
	char *buf;
	size_t len, cap;
	bool discarding; /* inside an oversized line */
};
/* Called once per complete line (without '\n'); too_long set (line NULL)
 * once for each oversized line, which is then skipped. Return non-zero to
 * stop feeding (the value is returned by wrp_reader_feed). */
typedef int (*wrp_line_fn)(void *arg, const char *line, size_t len,
			   bool too_long);
void wrp_reader_init(struct wrp_reader *r);
int wrp_reader_feed(struct wrp_reader *r, const char *data, size_t n,
		    wrp_line_fn fn, void *arg);
void wrp_reader_clear(struct wrp_reader *r);

/* Compact JSON + '\n', malloc'd; *len set. NULL if over WRP_MAX_LINE. */
char *wrp_encode(const json_t *msg, size_t *len);

/* ---- building messages (each returns a new reference) ---- */
/* wrp_request steals both id and args (NULL args: {}). */
json_t *wrp_request(json_t *id, const char *cmd, json_t *args);
json_t *wrp_reply_ok(const json_t *id, json_t *result);         /* steals */
json_t *wrp_reply_error(const json_t *id, const char *code, const char *fmt,
			...) __attribute__((format(printf, 3, 4)));
json_t *wrp_event(const json_t *id, const char *event, json_t *data); /* steals */

/* ---- parsing and checking ---- */
/* Parse one request line: JSON object, v == WRP_VERSION, id int or string,
 * cmd a known command, args an object whose members match the command's
 * table (unknown members are rejected). On failure returns NULL and sets
 * *error_reply to a ready error reply (with the id when one could be read).
 * On success *cmd points into the table. */
json_t *wrp_parse_request(const char *line, size_t len,
			  const struct wrp_command **cmd, json_t **error_reply);
/* Check any server->client line against the protocol (envelope shape, types,
 * known error code). 0 when valid, -1 with *why (malloc'd) otherwise. Used
 * by tests and walrustctl. */
int wrp_check_message(const char *line, size_t len, char **why);
/* Helpers to read args with defaults. */
const char *wrp_arg_string(const json_t *args, const char *name);
bool wrp_arg_bool(const json_t *args, const char *name, bool dflt);
long long wrp_arg_int(const json_t *args, const char *name, long long dflt);

/* The control socket path: $WALRUST_SOCKET, else
 * $XDG_RUNTIME_DIR/walrust/walrustd.sock, else /tmp/walrust-<uid>/walrustd.sock.
 * Returns 0, or -ENAMETOOLONG. */
int wrp_socket_path(char *buf, size_t len);

#endif
