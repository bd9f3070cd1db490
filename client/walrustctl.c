/*
 * walrustctl.c: the thin client of walrustd. argv -> one request on the
 * control socket -> a human line, a small table, or the result as JSON.
 * Links only proto/ (wrp), jansson and libc.
 *
 * Every line from the daemon is checked with wrp_check_message; events for
 * our request drive the progress bar (stderr, when it is a terminal) and the
 * warnings; the reply with our id (or an error reply with id null, which can
 * only be about our one request) ends the conversation. There is no timeout:
 * restores can take long, and so can a sync (sync --timeout is the
 * daemon's, an error reply). The caller's AWS_* variables travel in "aws"
 * for this one request (watch: for that database's replication); they are
 * never printed.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "wrp.h"

enum {
	CTL_EXIT_OK = 0,
	CTL_EXIT_DAEMON = 1,  /* the daemon answered with an error */
	CTL_EXIT_USAGE = 2,   /* bad command line */
	CTL_EXIT_CONNECT = 3, /* cannot connect to the daemon */
	CTL_EXIT_PROTO = 4,   /* bad reply, connection lost */
};

/* Line callback results (non-zero stops the reader). */
enum { CTL_MORE = 0, CTL_DONE = 1, CTL_BAD = 2 };

#define CTL_REQUEST_ID 1
#define CTL_BAR_WIDTH 24

struct ctl {
	const char *cmd;
	bool json, quiet;
	bool no_wait;    /* sync --no-wait */
	bool bar;        /* draw a progress bar on stderr */
	bool bar_drawn;  /* a bar is on screen: clear it before printing */
	json_t *warned;  /* warning messages already printed */
	json_t *reply;   /* the final reply */
	char *why;       /* what went wrong, for CTL_BAD */
};

static const struct {
	const char *env;
	const char *member;
} ctl_aws_env[] = {
	{"AWS_ACCESS_KEY_ID", "access_key_id"},
	{"AWS_SECRET_ACCESS_KEY", "secret_access_key"},
	{"AWS_SESSION_TOKEN", "session_token"},
	{"AWS_REGION", "region"},
	{"AWS_DEFAULT_REGION", "region"}, /* only when AWS_REGION is unset */
	{"AWS_ENDPOINT_URL_S3", "endpoint_url"},
};

static void ctl_help(FILE *f)
{
	fputs("Usage: walrustctl [OPTIONS] COMMAND [ARGS]\n"
	      "Talk to walrustd, the SQLite replicator, over its control "
	      "socket.\n"
	      "\n"
	      "Commands:\n"
	      "  hello                       the daemon's version and pid\n"
	      "  snapshot DB                 snapshot database file DB now\n"
	      "  restore NAME OUTPUT [--at TIME] [--txid N] [--force]\n"
	      "          [--integrity-check full|quick|none]\n"
	      "                              restore database NAME into the "
	      "file OUTPUT\n"
	      "  list                        the databases in the bucket\n"
	      "  watch DB                    replicate database file DB "
	      "continuously\n"
	      "  unwatch DB                  stop replicating DB (after a final "
	      "sync)\n"
	      "  sync DB [--no-wait] [--timeout SECONDS]\n"
	      "                              wait until the transactions "
	      "committed to DB\n"
	      "                              are in the replica\n"
	      "  status                      the daemon's state and watched "
	      "databases\n"
	      "  shutdown                    stop the daemon (after a final "
	      "sync)\n"
	      "\n"
	      "Options:\n"
	      "  -s, --socket PATH     control socket (default: "
	      "$WALRUST_SOCKET,\n"
	      "                        $XDG_RUNTIME_DIR/walrust/walrustd.sock "
	      "or\n"
	      "                        /tmp/walrust-UID/walrustd.sock)\n"
	      "  -b, --bucket URL      replica: s3://BUCKET/PATH or a directory "
	      "(default:\n"
	      "                        $WALRUST_BUCKET, else the daemon's "
	      "default)\n"
	      "  -e, --endpoint URL    S3 endpoint (S3-compatible storage)\n"
	      "      --json            print the result (or error) as one line "
	      "of JSON\n"
	      "  -q, --quiet           no progress bar, no confirmation "
	      "messages\n"
	      "      --at TIME         restore: state at TIME (RFC 3339)\n"
	      "      --txid N          restore: state at transaction ID N\n"
	      "      --force           restore: even over a database in use "
	      "(non-empty -wal)\n"
	      "      --integrity-check MODE\n"
	      "                        restore: full (PRAGMA integrity_check, "
	      "default),\n"
	      "                        quick (quick_check) or none\n"
	      "      --no-wait         sync: start shipping now, do not wait\n"
	      "      --timeout SECONDS sync: give up (exit status 1) after "
	      "SECONDS\n"
	      "  -h, --help            this help\n"
	      "  -V, --version         the version\n"
	      "\n"
	      "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, "
	      "AWS_REGION (or\n"
	      "AWS_DEFAULT_REGION) and AWS_ENDPOINT_URL_S3 go to the daemon "
	      "for this request.\n"
	      "\n"
	      "Exit status: 0 success; 1 the daemon answered with an error; 2 "
	      "usage error;\n"
	      "3 cannot connect to the daemon; 4 protocol error (bad reply, "
	      "connection lost).\n",
	      f);
}

static int ctl_usage_error(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

static int ctl_usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("walrustctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\nTry 'walrustctl --help'.\n", stderr);
	return CTL_EXIT_USAGE;
}

/* ------------------------------------------------------------ arguments */

static char *ctl_join(const char *dir, const char *base)
{
	size_t n = strlen(dir);
	char *out;

	if (asprintf(&out, "%s%s%s", dir, n && dir[n - 1] == '/' ? "" : "/",
		     base) < 0)
		return NULL;
	return out;
}

/*
 * PATH made absolute for the daemon, whose working directory is not ours:
 * the real path of its directory plus its base name (the file itself may
 * not exist yet, or be a symlink the daemon should see as such). When the
 * directory does not exist either, just prefix the working directory.
 * Returns malloc'd, or NULL with errno set.
 */
static char *ctl_abspath(const char *path)
{
	char *copy = NULL, *dir = NULL, *out = NULL, *slash, *base;
	char cwd[PATH_MAX];
	size_t n;

	copy = strdup(path);
	if (!copy)
		goto out;
	n = strlen(copy);
	while (n > 1 && copy[n - 1] == '/')
		copy[--n] = '\0';
	slash = strrchr(copy, '/');
	if (!slash) {
		base = copy;
		dir = realpath(".", NULL);
	} else {
		base = slash + 1;
		if (slash == copy) {
			dir = strdup("/");
		} else {
			*slash = '\0';
			dir = realpath(copy, NULL);
			*slash = '/';
		}
	}
	if (dir && *base && strcmp(base, ".") && strcmp(base, "..")) {
		out = ctl_join(dir, base);
		goto out;
	}
	if (dir && (out = realpath(copy, NULL)))
		goto out;
	/* The directory does not exist: make the path absolute as it is. */
	if (copy[0] == '/') {
		out = strdup(copy);
		goto out;
	}
	if (!getcwd(cwd, sizeof(cwd)))
		goto out;
	out = ctl_join(cwd, copy);
out:
	free(dir);
	free(copy);
	return out;
}

static bool ctl_cmd_takes(const struct wrp_command *cmd, const char *arg)
{
	const struct wrp_arg *a;

	for (a = cmd->args; a->name; a++)
		if (strcmp(a->name, arg) == 0)
			return true;
	return false;
}

/* Set a string member; fails (usage error) when it is not valid UTF-8. */
static int ctl_set_string(json_t *obj, const char *key, const char *what,
			  const char *value)
{
	json_t *s = json_string(value);

	if (!s || json_object_set_new(obj, key, s))
		return ctl_usage_error("%s is not valid UTF-8", what);
	return 0;
}

/* "aws": the caller's AWS_* variables, never printed. */
static int ctl_aws(json_t *args)
{
	json_t *aws = json_object();
	size_t i;
	int rc = 0;

	if (!aws)
		return -ENOMEM;
	for (i = 0; i < sizeof(ctl_aws_env) / sizeof(ctl_aws_env[0]); i++) {
		const char *v = getenv(ctl_aws_env[i].env);

		if (!v || !*v || json_object_get(aws, ctl_aws_env[i].member))
			continue;
		rc = ctl_set_string(aws, ctl_aws_env[i].member,
				    ctl_aws_env[i].env, v);
		if (rc)
			goto out;
	}
	if (json_object_size(aws))
		rc = json_object_set(args, "aws", aws) ? -ENOMEM : 0;
out:
	json_decref(aws);
	return rc;
}

/* ------------------------------------------------------------- transport */

static int ctl_connect(const char *path, int *fdp)
{
	struct sockaddr_un sa;
	socklen_t elen = sizeof(int);
	int fd = -1, rc = 0, err = 0;
	struct pollfd pfd;

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		rc = -ENAMETOOLONG;
		goto out;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
		goto out;
	if (errno != EINTR && errno != EINPROGRESS) {
		rc = -errno;
		goto out;
	}
	/* Interrupted: the connection goes on; wait for its outcome. */
	pfd.fd = fd;
	pfd.events = POLLOUT;
	while (poll(&pfd, 1, -1) < 0) {
		if (errno != EINTR) {
			rc = -errno;
			goto out;
		}
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
		rc = -errno;
	else if (err)
		rc = -err;
out:
	if (rc && fd >= 0)
		close(fd);
	else
		*fdp = fd;
	return rc;
}

static int ctl_send(int fd, const char *buf, size_t len)
{
	ssize_t n;

	while (len) {
		n = send(fd, buf, len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* ---------------------------------------------------------------- output */

static void ctl_human_bytes(long long b, char *out, size_t len)
{
	static const char *const units[] = {"kB", "MB", "GB", "TB", "PB", "EB"};
	double v = (double)b;
	int u = -1;

	if (b < 1000) {
		snprintf(out, len, "%lld B", b);
		return;
	}
	while (v >= 1000 && u < 5) {
		v /= 1000;
		u++;
	}
	snprintf(out, len, "%.1f %s", v, units[u]);
}

static const char *ctl_str(const json_t *obj, const char *key)
{
	const char *s = json_string_value(json_object_get(obj, key));

	return s ? s : "?";
}

static long long ctl_int(const json_t *obj, const char *key)
{
	return (long long)json_integer_value(json_object_get(obj, key));
}

static void ctl_bar_clear(struct ctl *c)
{
	if (c->bar_drawn) {
		fputs("\r\033[K", stderr);
		fflush(stderr);
		c->bar_drawn = false;
	}
}

static void ctl_bar(struct ctl *c, const json_t *data)
{
	json_t *done = json_object_get(data, "done");
	json_t *total = json_object_get(data, "total");
	json_t *bytes = json_object_get(data, "bytes");
	char size[32] = "";
	char bar[CTL_BAR_WIDTH + 1];
	long long d, t;
	int i, fill;

	if (!c->bar)
		return;
	if (bytes)
		ctl_human_bytes((long long)json_integer_value(bytes), size,
				sizeof(size));
	fprintf(stderr, "\r\033[K%-8.32s", ctl_str(data, "phase"));
	if (done && total && json_integer_value(total) > 0) {
		d = (long long)json_integer_value(done);
		t = (long long)json_integer_value(total);
		fill = (int)(d * CTL_BAR_WIDTH / t);
		for (i = 0; i < CTL_BAR_WIDTH; i++)
			bar[i] = i < fill ? '#' : '.';
		bar[CTL_BAR_WIDTH] = '\0';
		fprintf(stderr, " [%s] %lld/%lld", bar, d, t);
	} else if (done) {
		fprintf(stderr, " %lld", (long long)json_integer_value(done));
	}
	if (*size)
		fprintf(stderr, "  %s", size);
	fflush(stderr);
	c->bar_drawn = true;
}

/* Print a warning once (it may come as an event and in the result). */
static void ctl_warn(struct ctl *c, const char *msg)
{
	size_t i;
	json_t *w;

	json_array_foreach(c->warned, i, w)
		if (strcmp(json_string_value(w), msg) == 0)
			return;
	json_array_append_new(c->warned, json_string(msg));
	ctl_bar_clear(c);
	fprintf(stderr, "walrustctl: warning: %s\n", msg);
}

static void ctl_print_uptime(long long ms)
{
	long long s = ms / 1000;
	long long d = s / 86400, h = s / 3600 % 24, m = s / 60 % 60;

	if (d)
		printf("%lldd %lldh %lldm %llds\n", d, h, m, s % 60);
	else if (h)
		printf("%lldh %lldm %llds\n", h, m, s % 60);
	else if (m)
		printf("%lldm %llds\n", m, s % 60);
	else
		printf("%llds\n", s % 60);
}

/* A duration for a table cell: "0 ms", "850 ms", "12.3 s", "4m 05s",
 * "2h 03m", "3d 04h". */
static void ctl_human_ms(long long ms, char *out, size_t len)
{
	long long s = ms / 1000;

	if (ms < 1000)
		snprintf(out, len, "%lld ms", ms < 0 ? 0 : ms);
	else if (ms < 60000)
		snprintf(out, len, "%.1f s", (double)ms / 1000);
	else if (s < 3600)
		snprintf(out, len, "%lldm %02llds", s / 60, s % 60);
	else if (s < 86400)
		snprintf(out, len, "%lldh %02lldm", s / 3600, s / 60 % 60);
	else
		snprintf(out, len, "%lldd %02lldh", s / 86400, s / 3600 % 24);
}

/* Columns (code points, roughly) that s takes. */
static int ctl_width(const char *s)
{
	int n = 0;

	for (; *s; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			n++;
	return n;
}

/* Text from the daemon in a table cell, padded to width: control
 * characters (a newline in an error message) become '?'. */
static void ctl_cell(const char *s, int width)
{
	int n = ctl_width(s);

	for (; *s; s++)
		putchar((unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s);
	printf("%*s", width > n ? width - n : 0, "");
}

/* One line of the databases table. */
struct ctl_db_row {
	const char *name, *sync, *error;
	char txid[24], lag[24];
};

/* Tolerates an older daemon's entries (a string, or a "path"). */
static void ctl_db_row(const json_t *e, struct ctl_db_row *row)
{
	json_t *v;

	row->name = json_string_value(e);
	if (!row->name)
		row->name = json_string_value(json_object_get(e, "name"));
	if (!row->name)
		row->name = ctl_str(e, "path");
	v = json_object_get(e, "txid");
	if (json_is_integer(v))
		snprintf(row->txid, sizeof(row->txid), "%lld",
			 (long long)json_integer_value(v));
	else
		snprintf(row->txid, sizeof(row->txid), "-");
	v = json_object_get(e, "lag_ms");
	if (json_is_integer(v))
		ctl_human_ms((long long)json_integer_value(v), row->lag,
			     sizeof(row->lag));
	else
		snprintf(row->lag, sizeof(row->lag), "-");
	row->sync = json_string_value(json_object_get(e, "last_sync"));
	if (!row->sync)
		row->sync = json_object_get(e, "last_sync") ? "never" : "-";
	row->error = json_string_value(json_object_get(e, "last_error"));
	if (!row->error)
		row->error = "-";
}

/* NAME TXID LAG LAST SYNC ERROR; the last column is not padded. */
static void ctl_print_databases(const json_t *dbs)
{
	int wname = 4, wtxid = 4, wlag = 3, wsync = 9;
	struct ctl_db_row row;
	json_t *e;
	size_t i;

	if (!json_array_size(dbs)) {
		printf("(no watched databases)\n");
		return;
	}
	json_array_foreach(dbs, i, e) {
		ctl_db_row(e, &row);
		if (ctl_width(row.name) > wname)
			wname = ctl_width(row.name);
		if ((int)strlen(row.txid) > wtxid)
			wtxid = (int)strlen(row.txid);
		if ((int)strlen(row.lag) > wlag)
			wlag = (int)strlen(row.lag);
		if (ctl_width(row.sync) > wsync)
			wsync = ctl_width(row.sync);
	}
	printf("%-*s  %*s  %*s  %-*s  %s\n", wname, "NAME", wtxid, "TXID", wlag,
	       "LAG", wsync, "LAST SYNC", "ERROR");
	json_array_foreach(dbs, i, e) {
		ctl_db_row(e, &row);
		ctl_cell(row.name, wname);
		printf("  %*s  %*s  ", wtxid, row.txid, wlag, row.lag);
		ctl_cell(row.sync, wsync);
		printf("  ");
		ctl_cell(row.error, 0);
		printf("\n");
	}
}

static void ctl_print_status(const json_t *r)
{
	json_t *workers = json_object_get(r, "workers");
	json_t *dbs = json_object_get(r, "databases");
	json_t *e;
	size_t i;

	printf("%-16s%s\n", "version", ctl_str(r, "version"));
	printf("%-16s%lld\n", "pid", ctl_int(r, "pid"));
	printf("%-16s", "uptime");
	ctl_print_uptime(ctl_int(r, "uptime_ms"));
	printf("%-16s%s\n", "socket", ctl_str(r, "socket"));
	printf("%-16s%s\n", "default bucket", ctl_str(r, "default_bucket"));
	printf("%-16s%lld\n", "jobs", ctl_int(r, "jobs"));
	printf("\n%-10s%s\n", "WORKER", "RESTARTS");
	json_array_foreach(workers, i, e)
		printf("%-10lld%lld\n", ctl_int(e, "pid"),
		       ctl_int(e, "restarts"));
	printf("\n");
	ctl_print_databases(dbs);
}

static void ctl_print_result(struct ctl *c, const json_t *r)
{
	char size[32];
	const char *bucket;
	json_t *e;
	size_t i;

	if (strcmp(c->cmd, "list") == 0) {
		json_array_foreach(json_object_get(r, "databases"), i, e)
			if (json_is_string(e))
				printf("%s\n", json_string_value(e));
		return;
	}
	if (strcmp(c->cmd, "status") == 0) {
		ctl_print_status(r);
		return;
	}
	if (c->quiet)
		return;
	if (strcmp(c->cmd, "hello") == 0) {
		printf("walrustd %s (protocol %lld, pid %lld)\n",
		       ctl_str(r, "version"), ctl_int(r, "protocol"),
		       ctl_int(r, "pid"));
	} else if (strcmp(c->cmd, "snapshot") == 0) {
		bucket = ctl_str(r, "bucket");
		ctl_human_bytes(ctl_int(r, "bytes"), size, sizeof(size));
		printf("snapshot %s: txid %lld, %lld pages (%lld B), %s -> %s%s"
		       "%s\n",
		       ctl_str(r, "name"), ctl_int(r, "txid"),
		       ctl_int(r, "pages"), ctl_int(r, "page_size"), size,
		       bucket,
		       *bucket && bucket[strlen(bucket) - 1] == '/' ? "" : "/",
		       ctl_str(r, "key"));
	} else if (strcmp(c->cmd, "restore") == 0) {
		const char *chk = ctl_str(r, "integrity_check");
		printf("restored %s to %s (txid %lld, at %s; %s)\n",
		       ctl_str(r, "name"), ctl_str(r, "output"),
		       ctl_int(r, "txid"), ctl_str(r, "timestamp"),
		       strcmp(chk, "none") == 0 ? "no integrity check"
		       : strcmp(chk, "quick") == 0 ? "quick_check ok"
						   : "integrity_check ok");
	} else if (strcmp(c->cmd, "watch") == 0) {
		printf("watching %s -> %s (%s, txid %lld in the replica)\n",
		       ctl_str(r, "name"), ctl_str(r, "bucket"),
		       ctl_str(r, "state"), ctl_int(r, "txid"));
	} else if (strcmp(c->cmd, "unwatch") == 0) {
		printf("stopped watching %s: txid %lld in the replica\n",
		       ctl_str(r, "name"), ctl_int(r, "txid"));
	} else if (strcmp(c->cmd, "sync") == 0) {
		if (c->no_wait) {
			ctl_human_ms(ctl_int(r, "lag_ms"), size, sizeof(size));
			printf("sync of %s started: txid %lld in the replica, "
			       "lag %s\n",
			       ctl_str(r, "name"), ctl_int(r, "txid"), size);
		} else {
			printf("synced %s: txid %lld in the replica\n",
			       ctl_str(r, "name"), ctl_int(r, "txid"));
		}
	} else if (strcmp(c->cmd, "shutdown") == 0) {
		printf("walrustd is shutting down\n");
	}
}

/* ------------------------------------------------------------- the reply */

static int ctl_line(void *arg, const char *line, size_t len, bool too_long)
{
	struct ctl *c = arg;
	json_t *msg, *id, *data;
	const char *event;
	int rc = CTL_MORE;

	if (too_long) {
		if (asprintf(&c->why, "a line from walrustd is longer than %d "
				      "bytes",
			     WRP_MAX_LINE) < 0)
			c->why = NULL;
		return CTL_BAD;
	}
	if (wrp_check_message(line, len, &c->why))
		return CTL_BAD;
	msg = json_loadb(line, len, 0, NULL);
	if (!msg) {
		c->why = strdup("out of memory");
		return CTL_BAD;
	}
	id = json_object_get(msg, "id");
	event = json_string_value(json_object_get(msg, "event"));
	if (event) {
		/* Ours only; unknown events are ignored (additive). */
		if (!json_is_integer(id) ||
		    json_integer_value(id) != CTL_REQUEST_ID)
			goto out;
		data = json_object_get(msg, "data");
		if (strcmp(event, "progress") == 0)
			ctl_bar(c, data);
		else if (strcmp(event, "warning") == 0)
			ctl_warn(c, ctl_str(data, "message"));
		goto out;
	}
	/* A reply: ours, or an error with id null (about our one request:
	 * it could not be read). */
	if (json_is_null(id) || (json_is_integer(id) &&
				 json_integer_value(id) == CTL_REQUEST_ID)) {
		c->reply = json_incref(msg);
		rc = CTL_DONE;
	}
out:
	json_decref(msg);
	return rc;
}

/* Send the request and read up to its reply. 0 or an exit code. */
static int ctl_exchange(struct ctl *c, int fd, const char *sock, json_t *req)
{
	struct wrp_reader r;
	char buf[65536];
	char *line;
	size_t len;
	ssize_t n;
	int rc = CTL_EXIT_OK, frc;

	wrp_reader_init(&r);
	line = wrp_encode(req, &len);
	if (!line) {
		fprintf(stderr, "walrustctl: request too large\n");
		rc = CTL_EXIT_USAGE;
		goto out;
	}
	frc = ctl_send(fd, line, len);
	explicit_bzero(line, len); /* it may hold credentials */
	free(line);
	if (frc) {
		fprintf(stderr, "walrustctl: sending to %s: %s\n", sock,
			strerror(-frc));
		rc = CTL_EXIT_PROTO;
		goto out;
	}
	for (;;) {
		n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ctl_bar_clear(c);
			fprintf(stderr, "walrustctl: reading from %s: %s\n",
				sock, strerror(errno));
			rc = CTL_EXIT_PROTO;
			goto out;
		}
		if (n == 0) {
			ctl_bar_clear(c);
			fprintf(stderr, "walrustctl: connection to walrustd "
					"closed before the reply\n");
			rc = CTL_EXIT_PROTO;
			goto out;
		}
		frc = wrp_reader_feed(&r, buf, (size_t)n, ctl_line, c);
		if (frc == CTL_DONE)
			break;
		if (frc) {
			ctl_bar_clear(c);
			fprintf(stderr, "walrustctl: protocol error: %s\n",
				c->why ? c->why : "invalid message");
			rc = CTL_EXIT_PROTO;
			goto out;
		}
	}
	ctl_bar_clear(c);
out:
	wrp_reader_clear(&r);
	return rc;
}

static int ctl_finish(struct ctl *c)
{
	json_t *result, *err, *w;
	size_t i;

	if (json_is_true(json_object_get(c->reply, "ok"))) {
		result = json_object_get(c->reply, "result");
		json_array_foreach(json_object_get(result, "warnings"), i, w)
			if (json_is_string(w))
				ctl_warn(c, json_string_value(w));
		if (c->json) {
			json_dumpf(result, stdout, JSON_COMPACT);
			putchar('\n');
		} else {
			ctl_print_result(c, result);
		}
		return CTL_EXIT_OK;
	}
	err = json_object_get(c->reply, "error");
	if (c->json) {
		json_dumpf(err, stdout, JSON_COMPACT);
		putchar('\n');
	}
	fprintf(stderr, "walrustctl: %s failed: %s (%s)\n", c->cmd,
		ctl_str(err, "message"), ctl_str(err, "code"));
	return CTL_EXIT_DAEMON;
}

/* ------------------------------------------------------------------ main */

enum {
	OPT_JSON = 256,
	OPT_AT,
	OPT_TXID,
	OPT_FORCE,
	OPT_NO_WAIT,
	OPT_TIMEOUT,
	OPT_CHECK
};

static const struct option ctl_options[] = {
	{"socket", required_argument, NULL, 's'},
	{"json", no_argument, NULL, OPT_JSON},
	{"bucket", required_argument, NULL, 'b'},
	{"endpoint", required_argument, NULL, 'e'},
	{"quiet", no_argument, NULL, 'q'},
	{"help", no_argument, NULL, 'h'},
	{"version", no_argument, NULL, 'V'},
	{"at", required_argument, NULL, OPT_AT},
	{"txid", required_argument, NULL, OPT_TXID},
	{"force", no_argument, NULL, OPT_FORCE},
	{"integrity-check", required_argument, NULL, OPT_CHECK},
	{"no-wait", no_argument, NULL, OPT_NO_WAIT},
	{"timeout", required_argument, NULL, OPT_TIMEOUT},
	{NULL, 0, NULL, 0},
};

int main(int argc, char **argv)
{
	struct ctl c = {0};
	const struct wrp_command *cmd;
	const char *sock = NULL, *bucket = NULL, *endpoint = NULL;
	const char *at = NULL, *txid = NULL, *timeout = NULL, *check = NULL;
	char sockbuf[PATH_MAX], *path = NULL, *end;
	json_t *args = NULL, *req = NULL;
	bool force = false;
	long long txid_val = 0, timeout_ms = 0;
	double secs;
	int opt, nargs, want, fd = -1, rc;

	argv[0] = (char *)"walrustctl"; /* getopt's messages */
	while ((opt = getopt_long(argc, argv, "s:b:e:qhV", ctl_options,
				  NULL)) != -1) {
		switch (opt) {
		case 's':
			sock = optarg;
			break;
		case 'b':
			bucket = optarg;
			break;
		case 'e':
			endpoint = optarg;
			break;
		case 'q':
			c.quiet = true;
			break;
		case OPT_JSON:
			c.json = true;
			break;
		case OPT_AT:
			at = optarg;
			break;
		case OPT_TXID:
			txid = optarg;
			break;
		case OPT_FORCE:
			force = true;
			break;
		case OPT_CHECK:
			check = optarg;
			break;
		case OPT_NO_WAIT:
			c.no_wait = true;
			break;
		case OPT_TIMEOUT:
			timeout = optarg;
			break;
		case 'h':
			ctl_help(stdout);
			return CTL_EXIT_OK;
		case 'V':
			printf("walrustctl %s (protocol %d)\n", PACKAGE_VERSION,
			       WRP_VERSION);
			return CTL_EXIT_OK;
		default:
			fputs("Try 'walrustctl --help'.\n", stderr);
			return CTL_EXIT_USAGE;
		}
	}
	if (optind >= argc)
		return ctl_usage_error("no command given");
	c.cmd = argv[optind++];
	nargs = argc - optind;
	cmd = wrp_command_find(c.cmd);
	if (!cmd)
		return ctl_usage_error("unknown command '%s'", c.cmd);
	if ((at || txid || force || check) && strcmp(c.cmd, "restore"))
		return ctl_usage_error("--at, --txid, --force and "
				       "--integrity-check are options of "
				       "restore");
	if (check && strcmp(check, "full") && strcmp(check, "quick") &&
	    strcmp(check, "none"))
		return ctl_usage_error("--integrity-check: full, quick or "
				       "none, not '%s'",
				       check);
	if ((c.no_wait || timeout) && strcmp(c.cmd, "sync"))
		return ctl_usage_error("--no-wait and --timeout are options of "
				       "sync");
	if (c.no_wait && timeout)
		return ctl_usage_error("--timeout is for waiting: not with "
				       "--no-wait");
	if (timeout) {
		/* Decimal seconds, rounded up to a millisecond. */
		errno = 0;
		secs = strtod(timeout, &end);
		if (!*timeout || strspn(timeout, "0123456789.") !=
					 strlen(timeout) ||
		    errno || *end || !(secs >= 0 && secs <= 1e12))
			return ctl_usage_error("--timeout: not a number of "
					       "seconds: '%s'",
					       timeout);
		timeout_ms = (long long)(secs * 1000);
		if ((double)timeout_ms < secs * 1000)
			timeout_ms++;
	}
	if (txid) {
		errno = 0;
		txid_val = strtoll(txid, &end, 10);
		if (errno || end == txid || *end || txid_val < 0)
			return ctl_usage_error("--txid: not a transaction ID: "
					       "'%s'",
					       txid);
	}

	rc = CTL_EXIT_USAGE;
	args = json_object();
	c.warned = json_array();
	if (!args || !c.warned)
		goto oom;
	/* restore NAME OUTPUT; snapshot, watch, unwatch, sync DB */
	if (strcmp(c.cmd, "restore") == 0)
		want = 2;
	else
		want = ctl_cmd_takes(cmd, "database") ? 1 : 0;
	if (want) {
		const char *p;

		if (nargs != want) {
			rc = ctl_usage_error("usage: walrustctl %s %s", c.cmd,
					     want == 1 ? "DB" : "NAME OUTPUT");
			goto out;
		}
		p = argv[optind + want - 1];
		if (!*p) {
			rc = ctl_usage_error("empty path");
			goto out;
		}
		path = ctl_abspath(p);
		if (!path) {
			rc = ctl_usage_error("%s: %s", p, strerror(errno));
			goto out;
		}
		if (want == 1) {
			if (ctl_set_string(args, "database", "DB", path))
				goto out;
		} else {
			if (ctl_set_string(args, "name", "NAME",
					   argv[optind]) ||
			    ctl_set_string(args, "output", "OUTPUT", path))
				goto out;
		}
	} else if (nargs) {
		rc = ctl_usage_error("%s takes no arguments", c.cmd);
		goto out;
	}
	if (at && ctl_set_string(args, "point_in_time", "--at", at))
		goto out;
	if (txid && json_object_set_new(args, "txid", json_integer(txid_val)))
		goto oom;
	if (force && json_object_set_new(args, "force", json_true()))
		goto oom;
	if (check &&
	    ctl_set_string(args, "integrity_check", "--integrity-check", check))
		goto out;
	if (c.no_wait && json_object_set_new(args, "wait", json_false()))
		goto oom;
	if (timeout &&
	    json_object_set_new(args, "timeout_ms", json_integer(timeout_ms)))
		goto oom;
	if (ctl_cmd_takes(cmd, "bucket")) {
		if (!bucket)
			bucket = getenv("WALRUST_BUCKET");
		if (bucket && *bucket &&
		    ctl_set_string(args, "bucket", "the bucket", bucket))
			goto out;
		if (endpoint && *endpoint &&
		    ctl_set_string(args, "endpoint", "the endpoint", endpoint))
			goto out;
	}
	if (ctl_cmd_takes(cmd, "aws") && ctl_aws(args))
		goto out;

	if (!sock) {
		if (wrp_socket_path(sockbuf, sizeof(sockbuf))) {
			rc = ctl_usage_error("socket path too long");
			goto out;
		}
		sock = sockbuf;
	}
	rc = ctl_connect(sock, &fd);
	if (rc) {
		fprintf(stderr, "walrustctl: cannot connect to %s: %s (is "
				"walrustd running?)\n",
			sock, strerror(-rc));
		rc = CTL_EXIT_CONNECT;
		goto out;
	}
	req = wrp_request(json_integer(CTL_REQUEST_ID), c.cmd, args);
	args = NULL;
	if (!req)
		goto oom;
	c.bar = !c.quiet && cmd->streams && isatty(STDERR_FILENO);
	rc = ctl_exchange(&c, fd, sock, req);
	if (rc == CTL_EXIT_OK)
		rc = ctl_finish(&c);
	goto out;
oom:
	fprintf(stderr, "walrustctl: out of memory\n");
	rc = CTL_EXIT_PROTO;
out:
	if (fd >= 0)
		close(fd);
	json_decref(req);
	json_decref(args);
	json_decref(c.reply);
	json_decref(c.warned);
	free(c.why);
	free(path);
	return rc;
}
