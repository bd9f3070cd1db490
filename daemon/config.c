/*
 * config.c: the configuration file.
 *
 * walrustd runs an unmodified litestream.yml. The format is Litestream
 * 0.5's (cmd/litestream/main.go: Config, DBConfig, ReplicaConfig and the
 * inline ReplicaSettings), read with libyaml's document loader so that every
 * node keeps its line and column for messages. What is accepted, and what
 * it becomes:
 *
 *   Text. With expand_env (Litestream's default; its -no-expand-env flag
 *   turns it off) the whole file is expanded before YAML sees it, exactly
 *   as Go's os.Expand does: $NAME (ASCII letters, digits, '_'), ${ANY} and
 *   the one-character specials $1 $$ $* ...; undefined variables become
 *   empty; "${}" and an unterminated "${" are eaten; a '$' followed by
 *   anything else, or last in the file, stays. $PID is the process id
 *   (Litestream 0.5.7+). Comments are expanded too, and positions refer to
 *   the expanded text.
 *
 *   Values. A null value (empty, ~, null) or an empty string means "not
 *   set": the default stays, so `endpoint: ${UNSET}` is harmless. Booleans
 *   take YAML 1.1's words (true/false, yes/no, on/off, y/n, any case).
 *   Durations are Go's time.ParseDuration syntax ("1h30m", "500ms") and
 *   become milliseconds; a bare number other than 0 is refused (yaml.v2
 *   would silently read it as nanoseconds). Anchors, aliases and "<<" merge
 *   keys work; a key given twice in one mapping is an error.
 *
 *   Top level.
 *     dbs                     the databases (below)
 *     exec                    command run and supervised (--exec)
 *     snapshot: {interval, retention}       default 24h, 24h
 *     levels: [{interval}, ...]             L1.. ; default 30s, 5m, 1h
 *     l0-retention            default 5m (>= 0)
 *     l0-retention-check-interval           default 15s
 *     retention: {enabled}    default true (false: never delete remotely)
 *     shutdown-sync-timeout, shutdown-sync-interval   30s, 500ms
 *     logging: {level}        debug|info|warn|error (trace = debug);
 *                             type/stderr/source are noted and ignored
 *     access-key-id, secret-access-key, region, bucket, endpoint,
 *     force-path-style, skip-verify, sync-interval
 *                             defaults for every replica (Litestream's
 *                             "global replica defaults", SetDefaults)
 *     addr, mcp-addr, validation, verify-compaction, heartbeat-url,
 *     heartbeat-interval, and the replica settings walrust does not
 *     implement (sign-payload, part-size, sse-*, ...) or that belong to
 *     other backends (account-name, host, nats ...): accepted, each noted
 *     in config->warnings.
 *     socket                  Litestream's is a mapping {enabled, path,
 *                             permissions} for its HTTP control socket: noted
 *                             and ignored. A plain string is walrust's own
 *                             extension: the JSON control socket's path.
 *     workers (int >= 1), default-replica (URL): walrust extensions.
 *   Any other key is a warning, never an error; keys starting with "x-"
 *   (the usual home of anchors) are ignored silently.
 *
 *   A database (dbs[i]).
 *     path                    file; "sqlite://" and "sqlite3://" prefixes
 *                             stripped, "~/" expanded, made absolute against
 *                             the current directory (Litestream's expand())
 *     dir + pattern [+ recursive, watch]    a directory of databases;
 *                             pattern is required (no default, as in
 *                             Litestream); exactly one of path and dir
 *     replica                 one replica (0.5 form)
 *     replicas                0.3's list form: the first entry is used, with
 *                             a warning (Litestream 0.5 refuses more than
 *                             one; walrust keeps going on the first)
 *     restore-if-db-not-exists, monitor-interval, checkpoint-interval,
 *     busy-timeout, min-checkpoint-page-count, truncate-page-n,
 *     max-sync-wal-bytes      as Litestream, defaults filled in
 *     snapshot: {interval, retention}       promoted to the top level unless
 *                             that sets the same field; two databases that
 *                             disagree are an error (Litestream 0.5.12)
 *     meta-path, meta-dir     checked for Litestream's rules, then ignored
 *     max-checkpoint-page-count             0.3 only: ignored, noted
 *   Without a replica the entry is an error unless default-replica is set.
 *
 *   A replica.
 *     url: s3://bucket[/path][?endpoint=..&region=..&forcePathStyle=..
 *          &skipVerify=..], file:///abs/path, or a bare absolute ("/", "~",
 *          "." ) path for a file replica. The bucket host is read as
 *          Litestream's s3.ParseHost does: bucket.s3[.region].amazonaws.com,
 *          DigitalOcean, Backblaze, Filebase, Scaleway, and MinIO's
 *          "bucket.host:port" (http, path style, us-east-1).
 *     type (s3 | file; default file, or the url's scheme) + bucket + path.
 *     endpoint (no scheme means https), region, access-key-id,
 *     secret-access-key (inherited from the top level when absent; a
 *     top-level bucket is inherited too, but a url's bucket beats it where
 *     Litestream would refuse the pair),
 *     force-path-style (default: true when an endpoint is configured, or for
 *     Filebase, Backblaze, MinIO and Supabase endpoints), skip-verify,
 *     sync-interval (default 1s, > 0).
 *     0.3's retention, retention-check-interval, snapshot-interval and
 *     validation-interval are noted and ignored (snapshots are global now).
 *     Other Litestream backends (gs, abs, sftp, webdav, nats, oss) are errors:
 *     silently not replicating would be worse. So is age encryption.
 *   The result is normalised: s3://bucket[/prefix] (prefix cleaned, no
 *   slashes at either end) with endpoint/region/credentials beside it, or
 *   file:///absolute/clean/path.
 *
 * Errors carry the file, line and column of the node at fault and the path
 * of the setting: "litestream.yml:7:5: dbs[0]: either path or dir is
 * required". Secret values are never quoted in messages.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "config-file.h"
#include "walrust.h"

#define CONFIG_UNSET INT64_MIN
#define CONFIG_BUDGET 200000 /* mapping pairs and list items visited */
#define CONFIG_MAX_DEPTH 32  /* nested "<<" merges */
#define CONFIG_MAX_FILE (4 << 20)
#define CONFIG_WHERE 256
#define CONFIG_SUN_PATH 108
#define CONFIG_MAX_WARNINGS 64

/* Replica settings as written, before inheritance and normalisation. */
struct config_rs {
	char *type, *url, *path, *bucket, *endpoint, *region;
	char *access_key_id, *secret_access_key;
	int force_path_style, skip_verify; /* -1 unset */
	int64_t sync_interval_ms;          /* CONFIG_UNSET */
	bool present;
	yaml_mark_t mark, url_mark, path_mark;
	char where[CONFIG_WHERE];
};

/* What a database entry says beyond struct config_db. */
struct config_rawdb {
	struct config_rs rs;
	bool has_replica, has_replicas, has_meta_path, has_meta_dir;
	int64_t snap_interval_ms, snap_retention_ms;
	yaml_mark_t mark, snap_interval_mark, snap_retention_mark;
};

struct config_parser {
	const char *file;
	yaml_document_t doc;
	struct config *c;
	char **err;
	long budget;
	struct config_rs global;
	struct config_rawdb *raw; /* parallel to c->dbs */
	size_t nraw;
	bool snap_interval_set, snap_retention_set;
	yaml_mark_t default_replica_mark, socket_mark;
};

typedef int (*config_pair_fn)(struct config_parser *p, const char *where,
			      const char *key, yaml_node_t *k, yaml_node_t *v,
			      void *ctx);

/* ------------------------------------------------------------ messages */

__attribute__((format(printf, 3, 0)))
static char *config_vmsg(const struct config_parser *p, const yaml_mark_t *m,
			 const char *fmt, va_list ap)
{
	char *msg = NULL, *s;
	if (vasprintf(&msg, fmt, ap) < 0)
		return NULL;
	if (m)
		s = util_strdup_printf("%s:%zu:%zu: %s", p->file, m->line + 1,
				       m->column + 1, msg);
	else
		s = util_strdup_printf("%s: %s", p->file, msg);
	free(msg);
	return s;
}

static char *config_vmsg_plain(const struct config_parser *p,
			       const yaml_mark_t *m, const char *msg)
{
	if (!m)
		return util_strdup_printf("%s: %s", p->file, msg);
	return util_strdup_printf("%s:%zu:%zu: %s", p->file, m->line + 1,
				  m->column + 1, msg);
}

__attribute__((format(printf, 3, 4)))
static int config_fail(struct config_parser *p, const yaml_mark_t *m,
		       const char *fmt, ...)
{
	if (p->err && !*p->err) {
		va_list ap;
		va_start(ap, fmt);
		*p->err = config_vmsg(p, m, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

__attribute__((format(printf, 3, 4)))
static int config_warn(struct config_parser *p, const yaml_mark_t *m,
		       const char *fmt, ...)
{
	struct config *c = p->c;
	char *s;
	if (c->nwarnings > CONFIG_MAX_WARNINGS)
		return 0;
	if (!c->warnings &&
	    !(c->warnings = calloc(CONFIG_MAX_WARNINGS + 1, sizeof *c->warnings)))
		return -ENOMEM;
	if (c->nwarnings == CONFIG_MAX_WARNINGS) {
		s = config_vmsg_plain(p, m, "further warnings suppressed");
	} else {
		va_list ap;
		va_start(ap, fmt);
		s = config_vmsg(p, m, fmt, ap);
		va_end(ap);
	}
	if (!s)
		return -ENOMEM;
	c->warnings[c->nwarnings++] = s;
	return 0;
}

/* "where.key", or "key" at the top level. */
static const char *config_key(char *buf, size_t n, const char *where,
			      const char *key)
{
	snprintf(buf, n, "%s%s%s", where, *where ? "." : "", key);
	return buf;
}

/* ----------------------------------------------------------- durations */

static const struct {
	const char *name;
	uint64_t ns;
} config_units[] = {
	{"ns", 1ULL},
	{"us", 1000ULL},
	{"\xc2\xb5s", 1000ULL}, /* U+00B5 micro sign */
	{"\xce\xbcs", 1000ULL}, /* U+03BC Greek mu */
	{"ms", 1000000ULL},
	{"s", 1000000000ULL},
	{"m", 60000000000ULL},
	{"h", 3600000000000ULL},
};

static bool config_digit(char c)
{
	return c >= '0' && c <= '9';
}

int config_parse_duration(const char *s, int64_t *ms)
{
	const uint64_t lim = 1ULL << 63;
	const char *p = s;
	uint64_t d = 0;
	bool neg = false;

	if (!s)
		return -EINVAL;
	if (*p == '-' || *p == '+')
		neg = *p++ == '-';
	if (strcmp(p, "0") == 0) {
		*ms = 0;
		return 0;
	}
	if (!*p)
		return -EINVAL;
	while (*p) {
		uint64_t v = 0, f = 0, unit = 0;
		double scale = 1;
		bool pre = false, post = false, over = false;

		if (!(*p == '.' || config_digit(*p)))
			return -EINVAL;
		for (; config_digit(*p); p++, pre = true) {
			if (v > lim / 10)
				return -ERANGE;
			v = v * 10 + (uint64_t)(*p - '0');
			if (v > lim)
				return -ERANGE;
		}
		if (*p == '.') {
			for (p++; config_digit(*p); p++) {
				post = true;
				if (over)
					continue;
				if (f > (lim - 1) / 10) {
					over = true;
					continue;
				}
				uint64_t y = f * 10 + (uint64_t)(*p - '0');
				if (y > lim) {
					over = true;
					continue;
				}
				f = y;
				scale *= 10;
			}
		}
		if (!pre && !post)
			return -EINVAL;
		size_t ulen = 0;
		while (p[ulen] && p[ulen] != '.' && !config_digit(p[ulen]))
			ulen++;
		for (size_t i = 0; i < sizeof config_units / sizeof config_units[0];
		     i++)
			if (strlen(config_units[i].name) == ulen &&
			    memcmp(config_units[i].name, p, ulen) == 0)
				unit = config_units[i].ns;
		if (!unit)
			return -EINVAL;
		p += ulen;
		if (v > lim / unit)
			return -ERANGE;
		v *= unit;
		if (f > 0) {
			v += (uint64_t)((double)f * ((double)unit / scale));
			if (v > lim)
				return -ERANGE;
		}
		d += v;
		if (d > lim)
			return -ERANGE;
	}
	int64_t ns;
	if (neg)
		ns = d == lim ? INT64_MIN : -(int64_t)d;
	else if (d > lim - 1)
		return -ERANGE;
	else
		ns = (int64_t)d;
	int64_t r = ns / 1000000;
	if (r == 0 && ns != 0)
		r = ns < 0 ? -1 : 1;
	*ms = r;
	return 0;
}

/* A duration for messages: "1h30m", "90s", "1500ms". */
static void config_fmt_ms(int64_t ms, char *buf, size_t n)
{
	if (ms % 1000 != 0 || ms <= 0) {
		snprintf(buf, n, "%" PRId64 "ms", ms);
		return;
	}
	int64_t s = ms / 1000;
	int64_t h = s / 3600, m = s / 60 % 60;
	s %= 60;
	int len = 0;
	buf[0] = '\0';
	if (h)
		len += snprintf(buf + len, n - (size_t)len, "%" PRId64 "h", h);
	if (m && (size_t)len < n)
		len += snprintf(buf + len, n - (size_t)len, "%" PRId64 "m", m);
	if (s && (size_t)len < n)
		snprintf(buf + len, n - (size_t)len, "%" PRId64 "s", s);
}

/* ------------------------------------------------------ env expansion */

static bool config_shell_special(char c)
{
	return strchr("*#$@!?-0123456789", c) != NULL && c != '\0';
}

static bool config_alnum(char c)
{
	return c == '_' || config_digit(c) || (c >= 'a' && c <= 'z') ||
	       (c >= 'A' && c <= 'Z');
}

struct config_buf {
	char *s;
	size_t len, cap;
};

static int config_buf_add(struct config_buf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *t = realloc(b->s, cap);
		if (!t)
			return -ENOMEM;
		b->s = t;
		b->cap = cap;
	}
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
	return 0;
}

static int config_env_value(struct config_buf *b, const char *name,
			    size_t nlen)
{
	char tmp[256];
	char *key = nlen < sizeof tmp ? tmp : malloc(nlen + 1);
	if (!key)
		return -ENOMEM;
	memcpy(key, name, nlen);
	key[nlen] = '\0';
	int rc = 0;
	if (strcmp(key, "PID") == 0) {
		char pid[24];
		int n = snprintf(pid, sizeof pid, "%ld", (long)getpid());
		rc = config_buf_add(b, pid, (size_t)n);
	} else if (strlen(key) == nlen) {
		const char *v = getenv(key);
		if (v)
			rc = config_buf_add(b, v, strlen(v));
	}
	if (key != tmp)
		free(key);
	return rc;
}

/* Go's os.Expand over s[0, len), with os.Getenv plus $PID. */
static int config_expand(const char *s, size_t len, char **out, size_t *outlen)
{
	struct config_buf b = {0};
	size_t i = 0;
	int rc = config_buf_add(&b, "", 0);
	for (size_t j = 0; rc == 0 && j < len; j++) {
		if (s[j] != '$' || j + 1 >= len)
			continue;
		if ((rc = config_buf_add(&b, s + i, j - i)))
			break;
		const char *t = s + j + 1;
		size_t tl = len - j - 1, w = 0;
		const char *name = NULL;
		size_t nlen = 0;
		if (t[0] == '{') {
			if (tl > 2 && config_shell_special(t[1]) && t[2] == '}') {
				name = t + 1;
				nlen = 1;
				w = 3;
			} else {
				w = 1; /* bad syntax: eat "${" */
				for (size_t k = 1; k < tl; k++) {
					if (t[k] != '}')
						continue;
					if (k == 1) {
						w = 2; /* eat "${}" */
					} else {
						name = t + 1;
						nlen = k - 1;
						w = k + 1;
					}
					break;
				}
			}
		} else if (config_shell_special(t[0])) {
			name = t;
			nlen = 1;
			w = 1;
		} else {
			while (w < tl && config_alnum(t[w]))
				w++;
			if (w) {
				name = t;
				nlen = w;
			}
		}
		if (name)
			rc = config_env_value(&b, name, nlen);
		else if (w == 0)
			rc = config_buf_add(&b, "$", 1); /* not a name: keep */
		j += w;
		i = j + 1;
	}
	if (rc == 0 && i < len)
		rc = config_buf_add(&b, s + i, len - i);
	if (rc) {
		free(b.s);
		return rc;
	}
	*out = b.s;
	*outlen = b.len;
	return 0;
}

/* ------------------------------------------------------------ nodes */

static yaml_node_t *config_node(struct config_parser *p, int i)
{
	return yaml_document_get_node(&p->doc, i);
}

static const char *config_kind(const yaml_node_t *n)
{
	return n->type == YAML_MAPPING_NODE    ? "a mapping"
	       : n->type == YAML_SEQUENCE_NODE ? "a list"
					       : "a value";
}

static bool config_null(const yaml_node_t *n)
{
	if (!n)
		return true;
	if (n->type != YAML_SCALAR_NODE ||
	    n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	const char *s = (const char *)n->data.scalar.value;
	return !*s || !strcmp(s, "~") || !strcmp(s, "null") ||
	       !strcmp(s, "Null") || !strcmp(s, "NULL");
}

/* The text of a scalar; an error for lists, mappings and NUL bytes. */
static int config_text(struct config_parser *p, yaml_node_t *n,
		       const char *key, const char **out)
{
	if (n->type != YAML_SCALAR_NODE)
		return config_fail(p, &n->start_mark,
				   "%s: expected a single value, got %s", key,
				   config_kind(n));
	const char *s = (const char *)n->data.scalar.value;
	if (strlen(s) != n->data.scalar.length)
		return config_fail(p, &n->start_mark,
				   "%s: contains a NUL character", key);
	*out = s;
	return 0;
}

static int config_str(struct config_parser *p, yaml_node_t *n,
		      const char *key, char **dst)
{
	const char *s;
	int rc;
	free(*dst);
	*dst = NULL;
	if (config_null(n))
		return 0;
	if ((rc = config_text(p, n, key, &s)))
		return rc;
	if (*s && !(*dst = strdup(s)))
		return -ENOMEM;
	return 0;
}

/* YAML 1.1 booleans, as yaml.v2 reads them. *dst: -1 (null), 0 or 1. */
static int config_bool(struct config_parser *p, yaml_node_t *n,
		       const char *key, int *dst)
{
	static const char *const yes[] = {"y", "yes", "true", "on"};
	static const char *const no[] = {"n", "no", "false", "off"};
	const char *s;
	int rc;
	*dst = -1;
	if (config_null(n))
		return 0;
	if ((rc = config_text(p, n, key, &s)))
		return rc;
	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0 || strcasecmp(s, no[i]) == 0) {
			*dst = strcasecmp(s, yes[i]) == 0;
			return 0;
		}
	}
	return config_fail(p, &n->start_mark,
			   "%s: expected true or false, got \"%.64s\"", key, s);
}

static int config_flag(struct config_parser *p, yaml_node_t *n,
		       const char *key, bool *dst)
{
	int v, rc = config_bool(p, n, key, &v);
	if (rc == 0)
		*dst = v == 1;
	return rc;
}

/* A duration >= min (0 or 1 ms), or CONFIG_UNSET when null. */
static int config_dur(struct config_parser *p, yaml_node_t *n,
		      const char *key, int64_t min, int64_t *dst)
{
	const char *s;
	int64_t ms;
	int rc;
	*dst = CONFIG_UNSET;
	if (config_null(n))
		return 0;
	if ((rc = config_text(p, n, key, &s)))
		return rc;
	rc = config_parse_duration(s, &ms);
	if (rc == -ERANGE)
		return config_fail(p, &n->start_mark,
				   "%s: duration \"%.64s\" is out of range",
				   key, s);
	if (rc) {
		size_t k = s[0] == '-' || s[0] == '+';
		bool number = s[k] && strspn(s + k, "0123456789.") ==
					      strlen(s + k);
		return config_fail(p, &n->start_mark,
				   "%s: invalid duration \"%.64s\"%s", key, s,
				   number ? " (a number needs a unit: 10s, "
					    "500ms, 5m, 1h)"
					  : " (use 500ms, 10s, 5m, 1h30m...)");
	}
	if (ms < min)
		return config_fail(p, &n->start_mark, "%s: must be %s", key,
				   min > 0 ? "greater than 0"
					   : "zero or more");
	*dst = ms;
	return 0;
}

/* A decimal integer in [min, max] ('_' separators allowed), or
 * CONFIG_UNSET when null. */
static int config_int(struct config_parser *p, yaml_node_t *n,
		      const char *key, int64_t min, int64_t max, int64_t *dst)
{
	const char *s, *q;
	bool neg = false, any = false;
	uint64_t v = 0;
	int rc;
	*dst = CONFIG_UNSET;
	if (config_null(n))
		return 0;
	if ((rc = config_text(p, n, key, &s)))
		return rc;
	q = s;
	if (*q == '-' || *q == '+')
		neg = *q++ == '-';
	for (; *q; q++) {
		if (*q == '_' && any)
			continue;
		if (!config_digit(*q))
			goto bad;
		any = true;
		if (v > (UINT64_MAX - 9) / 10)
			goto range;
		v = v * 10 + (uint64_t)(*q - '0');
		if (v > (uint64_t)INT64_MAX)
			goto range;
	}
	if (!any)
		goto bad;
	int64_t x = neg ? -(int64_t)v : (int64_t)v;
	if (x < min || x > max)
		goto range;
	*dst = x;
	return 0;
bad:
	return config_fail(p, &n->start_mark,
			   "%s: expected an integer, got \"%.64s\"", key, s);
range:
	return config_fail(p, &n->start_mark,
			   "%s: must be between %" PRId64 " and %" PRId64, key,
			   min, max);
}

/* Call fn for every pair of the mapping n: the pairs brought in by "<<"
 * merge keys first (so that the mapping's own keys override them; of
 * several merged mappings the first wins), then its own, each of which may
 * appear only once. */
static int config_each(struct config_parser *p, yaml_node_t *n,
		       const char *where, config_pair_fn fn, void *ctx,
		       int depth)
{
	char kb[CONFIG_WHERE];
	int rc;
	if (n->type != YAML_MAPPING_NODE)
		return config_fail(p, &n->start_mark,
				   "%s: expected a mapping, got %s",
				   *where ? where : "top level",
				   config_kind(n));
	if (depth > CONFIG_MAX_DEPTH)
		return config_fail(p, &n->start_mark,
				   "%s: merge keys nested too deeply",
				   *where ? where : "top level");
	yaml_node_pair_t *b = n->data.mapping.pairs.start;
	yaml_node_pair_t *e = n->data.mapping.pairs.top;
	for (yaml_node_pair_t *i = b; i < e; i++) {
		yaml_node_t *k = config_node(p, i->key);
		yaml_node_t *v = config_node(p, i->value);
		if (!k || !v || k->type != YAML_SCALAR_NODE ||
		    k->data.scalar.style != YAML_PLAIN_SCALAR_STYLE ||
		    strcmp((const char *)k->data.scalar.value, "<<") != 0)
			continue;
		if (--p->budget < 0)
			return config_fail(p, &k->start_mark,
					   "too many nodes (alias loop?)");
		if (v->type == YAML_MAPPING_NODE) {
			if ((rc = config_each(p, v, where, fn, ctx, depth + 1)))
				return rc;
			continue;
		}
		if (v->type != YAML_SEQUENCE_NODE)
			return config_fail(p, &v->start_mark,
					   "%s: \"<<\" needs a mapping or a "
					   "list of mappings",
					   *where ? where : "top level");
		yaml_node_item_t *sb = v->data.sequence.items.start;
		yaml_node_item_t *se = v->data.sequence.items.top;
		for (yaml_node_item_t *it = se; it > sb; it--) {
			yaml_node_t *m = config_node(p, it[-1]);
			if (!m || m->type != YAML_MAPPING_NODE)
				return config_fail(p, &v->start_mark,
						   "%s: \"<<\" needs a mapping "
						   "or a list of mappings",
						   *where ? where
							  : "top level");
			if ((rc = config_each(p, m, where, fn, ctx,
					      depth + 1)))
				return rc;
		}
	}
	for (yaml_node_pair_t *i = b; i < e; i++) {
		yaml_node_t *k = config_node(p, i->key);
		yaml_node_t *v = config_node(p, i->value);
		const char *key;
		if (!k || !v)
			return config_fail(p, &n->start_mark, "bad YAML node");
		if (--p->budget < 0)
			return config_fail(p, &k->start_mark,
					   "too many nodes (alias loop?)");
		if (k->type != YAML_SCALAR_NODE)
			return config_fail(p, &k->start_mark,
					   "%s: keys must be plain strings, "
					   "not %s",
					   *where ? where : "top level",
					   config_kind(k));
		if ((rc = config_text(p, k, *where ? where : "top level",
				      &key)))
			return rc;
		if (k->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
		    strcmp(key, "<<") == 0)
			continue;
		for (yaml_node_pair_t *j = b; j < i; j++) {
			yaml_node_t *k2 = config_node(p, j->key);
			if (k2 && k2->type == YAML_SCALAR_NODE &&
			    strcmp((const char *)k2->data.scalar.value, key) ==
				    0)
				return config_fail(
					p, &k->start_mark,
					"%s: given twice (first at line %zu)",
					config_key(kb, sizeof kb, where, key),
					k2->start_mark.line + 1);
		}
		if ((rc = fn(p, where, key, k, v, ctx)))
			return rc;
	}
	return 0;
}

/* -------------------------------------------------------- ignored keys */

/* Replica settings of Litestream that walrust does not implement. */
static const char *const config_rs_unsupported[] = {
	"validation-interval", "max-sync-ltx-files", "auto-recover",
	"sign-payload", "require-content-md5", "storage-class", "part-size",
	"concurrency", "sse-customer-algorithm", "sse-customer-key",
	"sse-customer-key-path", "sse-kms-key-id", NULL,
};
/* Settings of Litestream's other backends (abs, sftp, webdav, nats). */
static const char *const config_rs_foreign[] = {
	"account-name", "account-key", "sas-token", "host", "user", "password",
	"key-path", "concurrent-writes", "host-key", "webdav-url",
	"webdav-username", "webdav-password", "jwt", "seed", "creds", "nkey",
	"username", "token", "tls", "root-cas", "client-cert", "client-key",
	"max-reconnects", "reconnect-wait", "timeout", NULL,
};

static bool config_in(const char *const *list, const char *key)
{
	for (; *list; list++)
		if (strcmp(*list, key) == 0)
			return true;
	return false;
}

/* Litestream refuses age settings with identities or recipients (they
 * would silently write plaintext); so does walrust. */
static int config_age(struct config_parser *p, const char *key, yaml_node_t *v)
{
	if (config_null(v) || v->type != YAML_MAPPING_NODE)
		return 0;
	for (yaml_node_pair_t *i = v->data.mapping.pairs.start;
	     i < v->data.mapping.pairs.top; i++) {
		yaml_node_t *k = config_node(p, i->key);
		yaml_node_t *x = config_node(p, i->value);
		if (!k || !x || k->type != YAML_SCALAR_NODE)
			continue;
		const char *name = (const char *)k->data.scalar.value;
		if ((!strcmp(name, "identities") || !strcmp(name, "recipients")) &&
		    !config_null(x) &&
		    !(x->type == YAML_SEQUENCE_NODE &&
		      x->data.sequence.items.start ==
			      x->data.sequence.items.top))
			return config_fail(p, &x->start_mark,
					   "%s: age encryption is not supported "
					   "(nor by Litestream 0.5)",
					   key);
	}
	return 0;
}

/* ------------------------------------------------------ replica settings */

static void config_rs_init(struct config_rs *rs)
{
	memset(rs, 0, sizeof *rs);
	rs->force_path_style = rs->skip_verify = -1;
	rs->sync_interval_ms = CONFIG_UNSET;
}

static void config_rs_clear(struct config_rs *rs)
{
	free(rs->type);
	free(rs->url);
	free(rs->path);
	free(rs->bucket);
	free(rs->endpoint);
	free(rs->region);
	free(rs->access_key_id);
	free(rs->secret_access_key);
	config_rs_init(rs);
}

/* The settings shared by the top level and every replica. 0 handled, 1 not
 * one of them, < 0 error. */
static int config_rs_pair(struct config_parser *p, struct config_rs *rs,
			  const char *where, const char *key, yaml_node_t *k,
			  yaml_node_t *v)
{
	char kb[CONFIG_WHERE];
	const char *full = config_key(kb, sizeof kb, where, key);

	if (!strcmp(key, "sync-interval"))
		return config_dur(p, v, full, 1, &rs->sync_interval_ms);
	if (!strcmp(key, "access-key-id"))
		return config_str(p, v, full, &rs->access_key_id);
	if (!strcmp(key, "secret-access-key"))
		return config_str(p, v, full, &rs->secret_access_key);
	if (!strcmp(key, "region"))
		return config_str(p, v, full, &rs->region);
	if (!strcmp(key, "bucket"))
		return config_str(p, v, full, &rs->bucket);
	if (!strcmp(key, "endpoint"))
		return config_str(p, v, full, &rs->endpoint);
	if (!strcmp(key, "force-path-style"))
		return config_bool(p, v, full, &rs->force_path_style);
	if (!strcmp(key, "skip-verify"))
		return config_bool(p, v, full, &rs->skip_verify);
	if (!strcmp(key, "age"))
		return config_age(p, full, v);
	if (config_in(config_rs_unsupported, key))
		return config_null(v) ? 0
				      : config_warn(p, &k->start_mark,
						    "%s: not supported by "
						    "walrust; ignored",
						    full);
	if (config_in(config_rs_foreign, key))
		return config_null(v) ? 0
				      : config_warn(p, &k->start_mark,
						    "%s: a setting of a replica "
						    "type walrust does not "
						    "support; ignored",
						    full);
	return 1;
}

static int config_replica_pair(struct config_parser *p, const char *where,
			       const char *key, yaml_node_t *k, yaml_node_t *v,
			       void *ctx)
{
	struct config_rs *rs = ctx;
	char kb[CONFIG_WHERE];
	const char *full = config_key(kb, sizeof kb, where, key);
	int rc = config_rs_pair(p, rs, where, key, k, v);
	if (rc <= 0)
		return rc;
	if (!strcmp(key, "type"))
		return config_str(p, v, full, &rs->type);
	if (!strcmp(key, "url")) {
		rs->url_mark = v->start_mark;
		return config_str(p, v, full, &rs->url);
	}
	if (!strcmp(key, "path")) {
		rs->path_mark = v->start_mark;
		return config_str(p, v, full, &rs->path);
	}
	if (!strcmp(key, "name"))
		return 0; /* 0.3's replica name: harmless */
	if (!strcmp(key, "retention") || !strcmp(key, "retention-check-interval") ||
	    !strcmp(key, "snapshot-interval"))
		return config_warn(p, &k->start_mark,
				   "%s: a Litestream 0.3 setting; snapshots "
				   "are configured at the top level now "
				   "(snapshot: {interval, retention}); ignored",
				   full);
	return config_warn(p, &k->start_mark, "%s: unknown setting; ignored",
			   full);
}

/* Parse a replica mapping into rs (cleared first). */
static int config_replica(struct config_parser *p, yaml_node_t *v,
			  const char *where, struct config_rs *rs)
{
	config_rs_clear(rs);
	if (config_null(v))
		return 0;
	if (v->type != YAML_MAPPING_NODE)
		return config_fail(p, &v->start_mark,
				   "%s: expected a mapping (url: s3://bucket/"
				   "path, ...), got %s",
				   where, config_kind(v));
	rs->present = true;
	rs->mark = v->start_mark;
	snprintf(rs->where, sizeof rs->where, "%s", where);
	return config_each(p, v, where, config_replica_pair, rs, 0);
}

/* ------------------------------------------------------------ databases */

static void config_db_init(struct config_db *db, struct config_rawdb *raw)
{
	memset(db, 0, sizeof *db);
	db->monitor_interval_ms = 1000;
	db->checkpoint_interval_ms = 60000;
	db->busy_timeout_ms = 1000;
	db->min_checkpoint_page_count = 1000;
	db->truncate_page_n = 121359;
	db->max_sync_wal_bytes = 64 << 20;
	memset(raw, 0, sizeof *raw);
	config_rs_init(&raw->rs);
	raw->snap_interval_ms = raw->snap_retention_ms = CONFIG_UNSET;
}

static void config_replica_clear(struct config_replica *r)
{
	free(r->url);
	free(r->endpoint);
	free(r->region);
	free(r->access_key_id);
	free(r->secret_access_key);
	memset(r, 0, sizeof *r);
}

static void config_db_clear(struct config_db *db)
{
	free(db->path);
	free(db->dir);
	free(db->pattern);
	config_replica_clear(&db->replica);
}

static int config_set_dur(struct config_parser *p, yaml_node_t *v,
			  const char *key, int64_t min, int64_t *dst)
{
	int64_t x;
	int rc = config_dur(p, v, key, min, &x);
	if (rc == 0 && x != CONFIG_UNSET)
		*dst = x;
	return rc;
}

static int config_set_int(struct config_parser *p, yaml_node_t *v,
			  const char *key, int64_t min, int64_t max,
			  int64_t *dst)
{
	int64_t x;
	int rc = config_int(p, v, key, min, max, &x);
	if (rc == 0 && x != CONFIG_UNSET)
		*dst = x;
	return rc;
}

static int config_db_snapshot_pair(struct config_parser *p, const char *where,
				   const char *key, yaml_node_t *k,
				   yaml_node_t *v, void *ctx)
{
	struct config_rawdb *raw = ctx;
	char kb[CONFIG_WHERE];
	const char *full = config_key(kb, sizeof kb, where, key);
	if (!strcmp(key, "interval")) {
		raw->snap_interval_mark = v->start_mark;
		return config_dur(p, v, full, 1, &raw->snap_interval_ms);
	}
	if (!strcmp(key, "retention")) {
		raw->snap_retention_mark = v->start_mark;
		return config_dur(p, v, full, 1, &raw->snap_retention_ms);
	}
	return config_warn(p, &k->start_mark, "%s: unknown setting; ignored",
			   full);
}

static int config_db_pair(struct config_parser *p, const char *where,
			  const char *key, yaml_node_t *k, yaml_node_t *v,
			  void *ctx)
{
	size_t idx = *(size_t *)ctx;
	struct config_db *db = &p->c->dbs[idx];
	struct config_rawdb *raw = &p->raw[idx];
	char kb[CONFIG_WHERE];
	const char *full = config_key(kb, sizeof kb, where, key);

	if (!strcmp(key, "path"))
		return config_str(p, v, full, &db->path);
	if (!strcmp(key, "dir"))
		return config_str(p, v, full, &db->dir);
	if (!strcmp(key, "pattern"))
		return config_str(p, v, full, &db->pattern);
	if (!strcmp(key, "recursive"))
		return config_flag(p, v, full, &db->recursive);
	if (!strcmp(key, "watch"))
		return config_flag(p, v, full, &db->watch);
	if (!strcmp(key, "restore-if-db-not-exists"))
		return config_flag(p, v, full, &db->restore_if_missing);
	if (!strcmp(key, "monitor-interval"))
		return config_set_dur(p, v, full, 0, &db->monitor_interval_ms);
	if (!strcmp(key, "checkpoint-interval"))
		return config_set_dur(p, v, full, 0,
				      &db->checkpoint_interval_ms);
	if (!strcmp(key, "busy-timeout"))
		return config_set_dur(p, v, full, 0, &db->busy_timeout_ms);
	if (!strcmp(key, "min-checkpoint-page-count"))
		return config_set_int(p, v, full, 0, INT32_MAX,
				      &db->min_checkpoint_page_count);
	if (!strcmp(key, "truncate-page-n"))
		return config_set_int(p, v, full, 0, INT32_MAX,
				      &db->truncate_page_n);
	if (!strcmp(key, "max-sync-wal-bytes"))
		return config_set_int(p, v, full, 0, INT64_MAX,
				      &db->max_sync_wal_bytes);
	if (!strcmp(key, "snapshot")) {
		raw->snap_interval_ms = raw->snap_retention_ms = CONFIG_UNSET;
		if (config_null(v))
			return 0;
		return config_each(p, v, full, config_db_snapshot_pair, raw, 0);
	}
	if (!strcmp(key, "replica")) {
		if (raw->has_replicas)
			return config_fail(p, &k->start_mark,
					   "%s: cannot specify both 'replica' "
					   "and 'replicas'",
					   where);
		raw->has_replica = !config_null(v);
		return config_replica(p, v, full, &raw->rs);
	}
	if (!strcmp(key, "replicas")) {
		if (raw->has_replica)
			return config_fail(p, &k->start_mark,
					   "%s: cannot specify both 'replica' "
					   "and 'replicas'",
					   where);
		config_rs_clear(&raw->rs);
		raw->has_replicas = false;
		if (config_null(v))
			return 0;
		if (v->type != YAML_SEQUENCE_NODE)
			return config_fail(p, &v->start_mark,
					   "%s: expected a list, got %s", full,
					   config_kind(v));
		yaml_node_item_t *b = v->data.sequence.items.start;
		size_t n = (size_t)(v->data.sequence.items.top - b);
		if (n == 0)
			return 0;
		char w[CONFIG_WHERE + 4];
		snprintf(w, sizeof w, "%s[0]", full);
		yaml_node_t *first = config_node(p, *b);
		if (!first)
			return -EINVAL;
		if (first->type != YAML_MAPPING_NODE)
			return config_fail(p, &first->start_mark,
					   "%s: expected a mapping (url: "
					   "s3://bucket/path, ...), got %s",
					   w, config_kind(first));
		raw->has_replicas = true;
		int rc = config_replica(p, first, w, &raw->rs);
		if (rc)
			return rc;
		if (n > 1)
			return config_warn(p, &k->start_mark,
					   "%s: Litestream 0.3's list form; "
					   "walrust replicates to the first "
					   "entry only (%zu more ignored; "
					   "Litestream 0.5 takes a single "
					   "'replica')",
					   full, n - 1);
		return config_warn(p, &k->start_mark,
				   "%s: Litestream 0.3's list form; using its "
				   "entry (Litestream 0.5 calls it 'replica')",
				   full);
	}
	if (!strcmp(key, "meta-path")) {
		raw->has_meta_path = !config_null(v);
		return raw->has_meta_path
			       ? config_warn(p, &k->start_mark,
					     "%s: walrust keeps no metadata "
					     "directory; ignored",
					     full)
			       : 0;
	}
	if (!strcmp(key, "meta-dir")) {
		raw->has_meta_dir = !config_null(v);
		return raw->has_meta_dir
			       ? config_warn(p, &k->start_mark,
					     "%s: walrust keeps no metadata "
					     "directory; ignored",
					     full)
			       : 0;
	}
	if (!strcmp(key, "max-checkpoint-page-count"))
		return config_warn(p, &k->start_mark,
				   "%s: removed in Litestream 0.5 (use "
				   "truncate-page-n); ignored",
				   full);
	return config_warn(p, &k->start_mark, "%s: unknown setting; ignored",
			   full);
}

static void config_dbs_clear(struct config_parser *p)
{
	struct config *c = p->c;
	for (size_t i = 0; i < c->ndbs; i++)
		config_db_clear(&c->dbs[i]);
	for (size_t i = 0; i < p->nraw; i++)
		config_rs_clear(&p->raw[i].rs);
	free(c->dbs);
	free(p->raw);
	c->dbs = NULL;
	p->raw = NULL;
	c->ndbs = p->nraw = 0;
}

static int config_dbs(struct config_parser *p, yaml_node_t *v)
{
	struct config *c = p->c;
	int rc;
	config_dbs_clear(p);
	if (config_null(v))
		return 0;
	if (v->type != YAML_SEQUENCE_NODE)
		return config_fail(p, &v->start_mark,
				   "dbs: expected a list of databases, got %s",
				   config_kind(v));
	for (yaml_node_item_t *it = v->data.sequence.items.start;
	     it < v->data.sequence.items.top; it++) {
		size_t i = c->ndbs;
		char where[CONFIG_WHERE];
		yaml_node_t *n = config_node(p, *it);
		if (!n)
			return -EINVAL;
		if (--p->budget < 0)
			return config_fail(p, &n->start_mark,
					   "too many nodes (alias loop?)");
		snprintf(where, sizeof where, "dbs[%zu]", i);
		if (n->type != YAML_MAPPING_NODE)
			return config_fail(p, &n->start_mark,
					   "%s: expected a mapping (path: ..., "
					   "replica: ...), got %s",
					   where, config_kind(n));
		struct config_db *dbs = realloc(c->dbs, (i + 1) * sizeof *dbs);
		if (!dbs)
			return -ENOMEM;
		c->dbs = dbs;
		struct config_rawdb *raw = realloc(p->raw, (i + 1) * sizeof *raw);
		if (!raw)
			return -ENOMEM;
		p->raw = raw;
		config_db_init(&c->dbs[i], &p->raw[i]);
		c->ndbs++;
		p->nraw++;
		c->dbs[i].line = (int)(n->start_mark.line + 1);
		p->raw[i].mark = n->start_mark;
		if ((rc = config_each(p, n, where, config_db_pair, &i, 0)))
			return rc;
	}
	return 0;
}

/* ------------------------------------------------------------ top level */

static int config_snapshot_pair(struct config_parser *p, const char *where,
				const char *key, yaml_node_t *k, yaml_node_t *v,
				void *ctx)
{
	struct config *c = p->c;
	char kb[CONFIG_WHERE];
	const char *full = config_key(kb, sizeof kb, where, key);
	int64_t x;
	int rc;
	if (!strcmp(key, "interval") || !strcmp(key, "retention")) {
		bool iv = key[0] == 'i';
		if ((rc = config_dur(p, v, full, 1, &x)) || x == CONFIG_UNSET)
			return rc;
		*(iv ? &c->snapshot_interval_ms : &c->snapshot_retention_ms) = x;
		*(iv ? &p->snap_interval_set : &p->snap_retention_set) = true;
		return 0;
	}
	return config_warn(p, &k->start_mark, "%s: unknown setting; ignored",
			   full);
}

static int config_level_pair(struct config_parser *p, const char *where,
			     const char *key, yaml_node_t *k, yaml_node_t *v,
			     void *ctx)
{
	int64_t *dst = ctx;
	char kb[CONFIG_WHERE];
	const char *full = config_key(kb, sizeof kb, where, key);
	if (!strcmp(key, "interval"))
		return config_dur(p, v, full, 1, dst);
	return config_warn(p, &k->start_mark, "%s: unknown setting; ignored",
			   full);
}

static int config_levels(struct config_parser *p, yaml_node_t *v)
{
	struct config *c = p->c;
	int rc;
	if (config_null(v))
		return 0;
	if (v->type != YAML_SEQUENCE_NODE)
		return config_fail(p, &v->start_mark,
				   "levels: expected a list ([{interval: 5m}, "
				   "...]), got %s",
				   config_kind(v));
	yaml_node_item_t *b = v->data.sequence.items.start;
	size_t n = (size_t)(v->data.sequence.items.top - b);
	if (n > CONFIG_MAX_LEVELS)
		return config_fail(p, &v->start_mark,
				   "levels: at most %d levels (L1-L%d; L9 "
				   "holds snapshots), got %zu",
				   CONFIG_MAX_LEVELS, CONFIG_MAX_LEVELS, n);
	c->nlevels = 0;
	for (size_t i = 0; i < n; i++) {
		char where[CONFIG_WHERE];
		int64_t iv = CONFIG_UNSET;
		yaml_node_t *m = config_node(p, b[i]);
		if (!m)
			return -EINVAL;
		snprintf(where, sizeof where, "levels[%zu]", i);
		if ((rc = config_each(p, m, where, config_level_pair, &iv, 0)))
			return rc;
		if (iv == CONFIG_UNSET)
			return config_fail(p, &m->start_mark,
					   "%s.interval: required (greater "
					   "than 0)",
					   where);
		c->level_interval_ms[c->nlevels++] = iv;
	}
	return 0;
}

static int config_logging_pair(struct config_parser *p, const char *where,
			       const char *key, yaml_node_t *k, yaml_node_t *v,
			       void *ctx)
{
	static const char *const levels[] = {"debug", "info", "warn", "error"};
	char kb[CONFIG_WHERE];
	const char *full = config_key(kb, sizeof kb, where, key);
	const char *s;
	int rc, b;
	if (!strcmp(key, "level")) {
		if (config_null(v))
			return 0;
		if ((rc = config_text(p, v, full, &s)))
			return rc;
		int lv = -1;
		for (int i = 0; i < 4; i++)
			if (!strcasecmp(s, levels[i]))
				lv = i;
		if (!strcasecmp(s, "trace"))
			lv = 0;
		if (!strcasecmp(s, "warning"))
			lv = 2;
		if (lv >= 0) {
			p->c->log_level = lv;
			return 0;
		}
		return config_warn(p, &v->start_mark,
				   "%s: unknown level \"%.32s\" (debug, info, "
				   "warn, error); ignored",
				   full, s);
	}
	if (!strcmp(key, "type")) {
		if (config_null(v))
			return 0;
		if ((rc = config_text(p, v, full, &s)))
			return rc;
		if (!strcmp(s, "text"))
			return 0;
		return config_warn(p, &v->start_mark,
				   "%s: walrust logs plain text lines; "
				   "\"%.32s\" ignored",
				   full, s);
	}
	if (!strcmp(key, "stderr") || !strcmp(key, "source")) {
		if ((rc = config_bool(p, v, full, &b)) || b != 1)
			return rc;
		return config_warn(p, &k->start_mark,
				   "%s: walrust always logs to stderr, without "
				   "source positions; ignored",
				   full);
	}
	return config_warn(p, &k->start_mark, "%s: unknown setting; ignored",
			   full);
}

static int config_retention_pair(struct config_parser *p, const char *where,
				 const char *key, yaml_node_t *k,
				 yaml_node_t *v, void *ctx)
{
	char kb[CONFIG_WHERE];
	const char *full = config_key(kb, sizeof kb, where, key);
	int b, rc;
	if (!strcmp(key, "enabled")) {
		if ((rc = config_bool(p, v, full, &b)))
			return rc;
		p->c->retention_enabled = b != 0;
		return 0;
	}
	return config_warn(p, &k->start_mark, "%s: unknown setting; ignored",
			   full);
}

static int config_top_pair(struct config_parser *p, const char *where,
			   const char *key, yaml_node_t *k, yaml_node_t *v,
			   void *ctx)
{
	struct config *c = p->c;
	int64_t x;
	int rc = config_rs_pair(p, &p->global, "", key, k, v);
	if (rc <= 0)
		return rc;

	if (!strcmp(key, "dbs"))
		return config_dbs(p, v);
	if (!strcmp(key, "exec"))
		return config_str(p, v, key, &c->exec);
	if (!strcmp(key, "snapshot"))
		return config_null(v) ? 0
				      : config_each(p, v, key,
						    config_snapshot_pair, NULL,
						    0);
	if (!strcmp(key, "levels"))
		return config_levels(p, v);
	if (!strcmp(key, "l0-retention"))
		return config_set_dur(p, v, key, 0, &c->l0_retention_ms);
	if (!strcmp(key, "l0-retention-check-interval"))
		return config_set_dur(p, v, key, 1,
				      &c->l0_retention_check_interval_ms);
	if (!strcmp(key, "shutdown-sync-timeout"))
		return config_set_dur(p, v, key, 0,
				      &c->shutdown_sync_timeout_ms);
	if (!strcmp(key, "shutdown-sync-interval"))
		return config_set_dur(p, v, key, 1,
				      &c->shutdown_sync_interval_ms);
	if (!strcmp(key, "logging"))
		return config_null(v) ? 0
				      : config_each(p, v, key,
						    config_logging_pair, NULL,
						    0);
	if (!strcmp(key, "retention"))
		return config_null(v) ? 0
				      : config_each(p, v, key,
						    config_retention_pair, NULL,
						    0);
	if (!strcmp(key, "workers")) {
		if ((rc = config_int(p, v, key, 1, 1024, &x)))
			return rc;
		if (x != CONFIG_UNSET)
			c->workers = (int)x;
		return 0;
	}
	if (!strcmp(key, "default-replica")) {
		p->default_replica_mark = v->start_mark;
		return config_str(p, v, key, &c->default_replica);
	}
	if (!strcmp(key, "socket")) {
		if (v->type == YAML_MAPPING_NODE)
			return config_warn(p, &k->start_mark,
					   "socket: Litestream's HTTP control "
					   "socket is not provided; walrust "
					   "serves its JSON control socket at "
					   "its default path (set \"socket: "
					   "PATH\" to choose it); ignored");
		p->socket_mark = v->start_mark;
		return config_str(p, v, key, &c->socket);
	}
	if (config_null(v) || !strncmp(key, "x-", 2))
		return 0; /* x-*: a home for anchors, by convention */
	if (!strcmp(key, "addr"))
		return config_warn(p, &k->start_mark,
				   "addr: walrust serves no Prometheus metrics "
				   "endpoint; ignored");
	if (!strcmp(key, "mcp-addr"))
		return config_warn(p, &k->start_mark,
				   "mcp-addr: walrust has no MCP server; "
				   "ignored");
	if (!strcmp(key, "validation") || !strcmp(key, "verify-compaction") ||
	    !strcmp(key, "heartbeat-url") || !strcmp(key, "heartbeat-interval"))
		return config_warn(p, &k->start_mark,
				   "%s: not supported by walrust; ignored",
				   key);
	return config_warn(p, &k->start_mark, "%s: unknown setting; ignored",
			   key);
}

/* ------------------------------------------------------ normalisation */

/* Lexically clean an absolute path in place: no "//", "." or ".."
 * components, no trailing slash ("/" stays "/"). */
static void config_clean(char *s)
{
	size_t r = 0, w = 0;
	while (s[r]) {
		while (s[r] == '/')
			r++;
		if (!s[r])
			break;
		size_t len = strcspn(s + r, "/");
		if (len == 1 && s[r] == '.') {
			/* skip */
		} else if (len == 2 && s[r] == '.' && s[r + 1] == '.') {
			while (w > 0 && s[w - 1] != '/')
				w--;
			if (w > 0)
				w--;
		} else {
			s[w++] = '/';
			memmove(s + w, s + r, len);
			w += len;
		}
		r += len;
	}
	if (w == 0)
		s[w++] = '/';
	s[w] = '\0';
}

static const char *config_home(void)
{
	const char *h = getenv("HOME");
	if (h && *h)
		return h;
	struct passwd *pw = getpwuid(getuid());
	return pw && pw->pw_dir && *pw->pw_dir ? pw->pw_dir : NULL;
}

/* Litestream's expand(): strip sqlite:// and sqlite3://, expand "~" and
 * "~/", make absolute against the current directory; then clean. */
static int config_abs(struct config_parser *p, const yaml_mark_t *m,
		      const char *what, const char *in, char **out)
{
	const char *s = in;
	char *r = NULL;
	if (!strncmp(s, "sqlite3://", 10))
		s += 10;
	else if (!strncmp(s, "sqlite://", 9))
		s += 9;
	if (!*s)
		return config_fail(p, m, "%s: empty path", what);
	if (!strcmp(s, "~") || !strncmp(s, "~/", 2)) {
		const char *home = config_home();
		if (!home)
			return config_fail(p, m,
					   "%s: cannot expand ~: no home "
					   "directory",
					   what);
		r = util_strdup_printf("%s/%s", home, s + 1);
	} else if (s[0] == '/') {
		r = strdup(s);
	} else {
		char cwd[PATH_MAX];
		if (!getcwd(cwd, sizeof cwd))
			return config_fail(p, m, "%s: %s: cannot resolve the "
						 "current directory: %s",
					   what, s, strerror(errno));
		r = util_strdup_printf("%s/%s", cwd, s);
	}
	if (!r)
		return -ENOMEM;
	config_clean(r);
	*out = r;
	return 0;
}

static int config_hex(char c)
{
	if (config_digit(c))
		return c - '0';
	c = (char)tolower((unsigned char)c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Percent-decode s[0, n) ('+' is a space when plus). NULL on a bad
 * escape or a decoded NUL; *bad tells which (vs. out of memory). */
static char *config_unescape(const char *s, size_t n, bool plus, bool *bad)
{
	char *r = malloc(n + 1), *w = r;
	*bad = false;
	if (!r)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (s[i] != '%') {
			*w++ = plus && s[i] == '+' ? ' ' : s[i];
			continue;
		}
		int hi = i + 2 < n ? config_hex(s[i + 1]) : -1;
		int lo = i + 2 < n ? config_hex(s[i + 2]) : -1;
		if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
			free(r);
			*bad = true;
			return NULL;
		}
		*w++ = (char)(hi << 4 | lo);
		i += 2;
	}
	*w = '\0';
	return r;
}

/* A path inside a bucket, cleaned, without slashes at either end (""
 * for the bucket's root): Litestream's CleanReplicaURLPath. */
static char *config_clean_prefix(const char *s)
{
	char *t = util_strdup_printf("/%s", s);
	if (!t)
		return NULL;
	config_clean(t);
	memmove(t, t + 1, strlen(t));
	return t;
}

/* Host part of an endpoint ("https://h:9000/x" -> "h:9000"), lowercased. */
static char *config_endpoint_host(const char *ep)
{
	const char *s = strstr(ep, "://");
	s = s ? s + 3 : ep;
	char *h = strndup(s, strcspn(s, "/?#"));
	for (char *q = h; q && *q; q++)
		*q = (char)tolower((unsigned char)*q);
	return h;
}

static bool config_suffix(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);
	return a >= b && strcmp(s + a - b, suf) == 0;
}

/* Litestream's IsLocalEndpoint: these default to http://. */
static bool config_local_host(const char *host)
{
	char h[256];
	snprintf(h, sizeof h, "%s", host);
	char *colon = strrchr(h, ':');
	if (colon)
		*colon = '\0';
	return !strcmp(h, "localhost") || !strcmp(h, "127.0.0.1") ||
	       !strncmp(h, "192.168.", 8) || !strncmp(h, "10.", 3) ||
	       !strncmp(h, "172.16.", 7) || !strncmp(h, "172.17.", 7) ||
	       !strncmp(h, "172.18.", 7) || !strncmp(h, "172.19.", 7) ||
	       !strncmp(h, "172.2", 5) || !strncmp(h, "172.30.", 7) ||
	       !strncmp(h, "172.31.", 7) || config_suffix(h, ".local") ||
	       config_suffix(h, ".localhost");
}

/* An endpoint with a scheme (no trailing slash): https:// unless given, or
 * http:// for local hosts when local_http (Litestream's
 * EnsureEndpointScheme, used for ?endpoint=). */
static char *config_endpoint(const char *ep, bool local_http)
{
	char *r;
	if (!strncmp(ep, "http://", 7) || !strncmp(ep, "https://", 8)) {
		r = strdup(ep);
	} else {
		char *h = config_endpoint_host(ep);
		if (!h)
			return NULL;
		bool local = local_http && config_local_host(h);
		free(h);
		r = util_strdup_printf("%s://%s", local ? "http" : "https", ep);
	}
	for (size_t n = r ? strlen(r) : 0; n > 8 && r[n - 1] == '/'; n--)
		r[n - 1] = '\0';
	return r;
}

/* Providers that need path-style addressing (Litestream: Filebase,
 * Backblaze B2, MinIO-like "host:port", Supabase). */
static bool config_path_style_host(const char *ep)
{
	static const char *const clouds[] = {
		".amazonaws.com", ".digitaloceanspaces.com", ".backblazeb2.com",
		".filebase.com", ".scw.cloud", ".r2.cloudflarestorage.com",
		"tigris.dev", "t3.storage.dev", ".supabase.co", NULL,
	};
	char *h = config_endpoint_host(ep);
	bool r = false;
	if (!h)
		return false;
	if (!strcmp(h, "s3.filebase.com") || config_suffix(h, ".backblazeb2.com") ||
	    config_suffix(h, ".supabase.co"))
		r = true;
	else if (strchr(h, ':')) {
		r = true;
		for (size_t i = 0; clouds[i]; i++)
			if (strstr(h, clouds[i]))
				r = false;
	}
	free(h);
	return r;
}

struct config_s3 {
	char *bucket, *prefix, *region, *endpoint;
	bool force_path_style, skip_verify;
};

static void config_s3_clear(struct config_s3 *u)
{
	free(u->bucket);
	free(u->prefix);
	free(u->region);
	free(u->endpoint);
	memset(u, 0, sizeof *u);
}

/* "x.<mid>.<region><tail>" helpers for s3.ParseHost: split host (which
 * ends with tail) into an optional "bucket." and "s3.REGION". */
static bool config_split_s3_region(const char *host, const char *tail,
				   char **bucket, char **region)
{
	size_t hl = strlen(host), tl = strlen(tail);
	if (hl <= tl || strcmp(host + hl - tl, tail) != 0)
		return false;
	char *rest = strndup(host, hl - tl);
	if (!rest)
		return false;
	char *dot = strrchr(rest, '.');
	bool ok = false;
	if (dot && dot[1]) {
		*dot = '\0';
		size_t rl = strlen(rest);
		/* "s3" + any character in the original regex: accept s3 */
		if (!strcmp(rest, "s3")) {
			*bucket = strdup("");
			ok = true;
		} else if (rl > 3 && !strcmp(rest + rl - 3, ".s3")) {
			*bucket = strndup(rest, rl - 3);
			ok = true;
		}
		if (ok)
			*region = strdup(dot + 1);
	}
	free(rest);
	return ok;
}

/* Litestream's s3.ParseHost. */
static int config_s3_host(const char *host, struct config_s3 *u)
{
	size_t hl = strlen(host);
	char *b = NULL, *r = NULL;
	if (strchr(host, ':') && !strstr(host, ".com")) {
		const char *dot = strchr(host, '.');
		if (dot) {
			u->bucket = strndup(host, (size_t)(dot - host));
			u->endpoint = util_strdup_printf("http://%s", dot + 1);
		} else {
			u->bucket = strdup("");
			u->endpoint = util_strdup_printf("http://%s", host);
		}
		u->region = strdup("us-east-1");
		u->force_path_style = true;
	} else if (config_suffix(host, ".amazonaws.com")) {
		/* ^(.+)\.s3(?:\.([^.]+))?\.amazonaws\.com$, longest bucket */
		char *rest = strndup(host, hl - 14);
		if (!rest)
			return -ENOMEM;
		size_t rl = strlen(rest);
		char *dot = strrchr(rest, '.');
		if (rl > 3 && !strcmp(rest + rl - 3, ".s3")) {
			u->bucket = strndup(rest, rl - 3);
		} else if (dot && dot[1] && dot - rest > 3 &&
			   !strncmp(dot - 3, ".s3", 3)) {
			u->bucket = strndup(rest, (size_t)(dot - 3 - rest));
			u->region = strdup(dot + 1);
		} else {
			u->bucket = strdup(host);
		}
		free(rest);
	} else if (config_suffix(host, ".digitaloceanspaces.com") &&
		   hl > 23) {
		char *rest = strndup(host, hl - 23);
		if (!rest)
			return -ENOMEM;
		char *dot = strrchr(rest, '.');
		if (dot) {
			*dot = '\0';
			u->bucket = strdup(rest);
			u->region = strdup(dot + 1);
		} else {
			u->bucket = strdup("");
			u->region = strdup(rest);
		}
		free(rest);
		if (!u->region)
			return -ENOMEM;
		u->endpoint = util_strdup_printf(
			"https://%s.digitaloceanspaces.com", u->region);
	} else if (config_split_s3_region(host, ".backblazeb2.com", &b, &r)) {
		u->bucket = b;
		u->region = r;
		if (!r)
			return -ENOMEM;
		u->endpoint =
			util_strdup_printf("https://s3.%s.backblazeb2.com", r);
		u->force_path_style = true;
	} else if (!strcmp(host, "s3.filebase.com") ||
		   config_suffix(host, ".s3.filebase.com")) {
		u->bucket = strndup(host, hl > 15 ? hl - 16 : 0);
		u->endpoint = strdup("https://s3.filebase.com");
	} else if (config_split_s3_region(host, ".scw.cloud", &b, &r)) {
		u->bucket = b;
		u->region = r;
		if (!r)
			return -ENOMEM;
		u->endpoint = util_strdup_printf("https://s3.%s.scw.cloud", r);
	} else {
		u->bucket = strdup(host);
	}
	if (!u->bucket)
		return -ENOMEM;
	return 0;
}

static bool config_truthy(const char *v)
{
	return !strcmp(v, "true");
}

/* s3://host[/path][?query]: bucket, prefix and the settings of the host
 * and of the query that Litestream honours in a config file. */
static int config_s3_url(struct config_parser *p, const yaml_mark_t *m,
			 const char *where, const char *url,
			 struct config_s3 *u)
{
	const char *rest = url + 5;
	bool bad;
	int rc;
	if (!strncasecmp(rest, "arn:", 4))
		return config_fail(p, m,
				   "%s.url: S3 access point ARNs are not "
				   "supported by walrust",
				   where);
	size_t alen = strcspn(rest, "/?#");
	char *host = strndup(rest, alen);
	if (!host)
		return -ENOMEM;
	char *at = strrchr(host, '@');
	rc = config_s3_host(at ? at + 1 : host, u);
	free(host);
	if (rc)
		return rc;
	const char *path = rest + alen;
	size_t plen = strcspn(path, "?#");
	char *dec = config_unescape(path, plen, false, &bad);
	if (!dec)
		return bad ? config_fail(p, m, "%s.url: bad %%-escape in the "
					       "path",
					 where)
			   : -ENOMEM;
	u->prefix = config_clean_prefix(dec);
	free(dec);
	if (!u->prefix)
		return -ENOMEM;
	if (path[plen] != '?')
		return 0;

	const char *q = path + plen + 1;
	size_t qlen = strcspn(q, "#");
	bool fps_given = false;
	while (qlen > 0) {
		size_t n = strcspn(q, "&");
		if (n > qlen)
			n = qlen;
		size_t kl = strcspn(q, "=");
		if (kl > n)
			kl = n;
		char *k = config_unescape(q, kl, true, &bad);
		char *v = k ? config_unescape(q + (kl < n ? kl + 1 : n),
					      kl < n ? n - kl - 1 : 0, true,
					      &bad)
			    : NULL;
		if (!k || !v) {
			free(k);
			return bad ? config_fail(p, m,
						 "%s.url: bad %%-escape in "
						 "the query",
						 where)
				   : -ENOMEM;
		}
		rc = 0;
		if (!strcmp(k, "endpoint") && *v) {
			free(u->endpoint);
			u->endpoint = config_endpoint(v, true);
			if (!u->endpoint)
				rc = -ENOMEM;
			else if (!fps_given)
				u->force_path_style = true;
		} else if (!strcmp(k, "region") && *v) {
			free(u->region);
			if (!(u->region = strdup(v)))
				rc = -ENOMEM;
		} else if (!strcmp(k, "forcePathStyle") ||
			   !strcmp(k, "force-path-style")) {
			fps_given = true;
			u->force_path_style = config_truthy(v);
		} else if (!strcmp(k, "skipVerify") ||
			   !strcmp(k, "skip-verify")) {
			u->skip_verify = config_truthy(v);
		} else if (*k) {
			rc = config_warn(p, m,
					 "%s.url: query parameter \"%.32s\" not "
					 "supported by walrust; ignored",
					 where, k);
		}
		free(k);
		free(v);
		if (rc)
			return rc;
		q += n;
		qlen -= n;
		if (qlen > 0) {
			q++;
			qlen--;
		}
	}
	return 0;
}

/* file://[localhost]/abs/path -> the cleaned absolute path. */
static int config_file_url(struct config_parser *p, const yaml_mark_t *m,
			   const char *what, const char *url, char **out)
{
	const char *s = url + 7;
	bool bad;
	if (!strncmp(s, "localhost/", 10))
		s += 9;
	if (*s != '/')
		return config_fail(p, m,
				   "%s: a file URL must be absolute: "
				   "file:///path (got \"%.64s\")",
				   what, url);
	char *dec = config_unescape(s, strcspn(s, "?#"), false, &bad);
	if (!dec)
		return bad ? config_fail(p, m, "%s: bad %%-escape", what)
			   : -ENOMEM;
	config_clean(dec);
	*out = dec;
	return 0;
}

/* Length of a URL scheme ("s3" in "s3://..."): Litestream's ^\w+://. */
static size_t config_scheme(const char *url)
{
	size_t n = 0;
	while (config_alnum(url[n]))
		n++;
	return n > 0 && !strncmp(url + n, "://", 3) ? n : 0;
}

static int config_set(char **dst, const char *s)
{
	free(*dst);
	*dst = NULL;
	if (s && !(*dst = strdup(s)))
		return -ENOMEM;
	return 0;
}

/* Resolve a replica: inherit the top-level settings (Litestream's
 * SetDefaults), decide the type, normalise the location. own may be an
 * empty (not present) rs: only the inherited settings are filled. */
static int config_resolve(struct config_parser *p, const struct config_rs *own,
			  const yaml_mark_t *m, const char *where,
			  struct config_replica *out)
{
	const struct config_rs *g = &p->global;
	const yaml_mark_t *um = own->url ? &own->url_mark : m;
	const char *region = own->region ? own->region : g->region;
	const char *endpoint = own->endpoint ? own->endpoint : g->endpoint;
	const char *bucket = own->bucket ? own->bucket : g->bucket;
	int fps = own->force_path_style >= 0 ? own->force_path_style
					     : g->force_path_style;
	char type[16], what[CONFIG_WHERE + 8];
	char *path = NULL;
	struct config_s3 u = {0};
	int rc;

	memset(out, 0, sizeof *out);
	out->sync_interval_ms = own->sync_interval_ms != CONFIG_UNSET
					? own->sync_interval_ms
				: g->sync_interval_ms != CONFIG_UNSET
					? g->sync_interval_ms
					: 1000;
	out->skip_verify = own->skip_verify == 1 || g->skip_verify == 1;
	if ((rc = config_set(&out->access_key_id,
			     own->access_key_id ? own->access_key_id
						: g->access_key_id)) ||
	    (rc = config_set(&out->secret_access_key,
			     own->secret_access_key ? own->secret_access_key
						    : g->secret_access_key)) ||
	    (rc = config_set(&out->region, region)))
		goto out;
	if (endpoint && !(out->endpoint = config_endpoint(endpoint, false))) {
		rc = -ENOMEM;
		goto out;
	}
	out->force_path_style = fps >= 0 ? fps == 1 : endpoint != NULL;
	if (!own->present)
		goto out;

	size_t sl = own->url ? config_scheme(own->url) : 0;
	snprintf(what, sizeof what, "%s.url", where);
	if (sl) {
		snprintf(type, sizeof type, "%.*s", (int)(sl < 15 ? sl : 15),
			 own->url);
		for (char *q = type; *q; q++)
			*q = (char)tolower((unsigned char)*q);
		if (own->type && strcasecmp(own->type, type) != 0 &&
		    (rc = config_warn(p, um,
				      "%s.type: \"%.16s\" ignored: the url "
				      "says %s",
				      where, own->type, type)))
			goto out;
	} else if (own->url) {
		if (own->type && strcasecmp(own->type, "file") != 0) {
			rc = config_fail(p, um,
					 "%s: needs a scheme (%s://...) with "
					 "type %.16s",
					 what, own->type, own->type);
			goto out;
		}
		if (!strchr("/~.", own->url[0])) {
			rc = config_fail(p, um,
					 "%s: \"%.64s\" has no scheme; use "
					 "s3://bucket/path or file:///path",
					 what, own->url);
			goto out;
		}
		snprintf(type, sizeof type, "file");
	} else {
		snprintf(type, sizeof type, "%.15s",
			 own->type ? own->type : "file");
		for (char *q = type; *q; q++)
			*q = (char)tolower((unsigned char)*q);
	}

	if (!strcmp(type, "file")) {
		config_replica_clear(out);
		out->sync_interval_ms = own->sync_interval_ms != CONFIG_UNSET
						? own->sync_interval_ms
					: g->sync_interval_ms != CONFIG_UNSET
						? g->sync_interval_ms
						: 1000;
		if (own->url && own->path) {
			rc = config_fail(p, &own->path_mark,
					 "%s: cannot specify both url and path "
					 "for a file replica",
					 where);
			goto out;
		}
		if (sl)
			rc = config_file_url(p, um, what, own->url, &path);
		else if (own->url || own->path)
			rc = config_abs(p, own->url ? um : &own->path_mark,
					what, own->url ? own->url : own->path,
					&path);
		else
			rc = config_fail(p, m,
					 "%s: a file replica needs a path (or "
					 "url: file:///path)",
					 where);
		if (rc)
			goto out;
		if (!(out->url = util_strdup_printf("file://%s", path)))
			rc = -ENOMEM;
		goto out;
	}
	if (strcmp(type, "s3") != 0) {
		static const char *const others[] = {
			"gs", "abs", "sftp", "webdav", "webdavs", "nats", "oss",
			NULL,
		};
		rc = config_fail(p, sl ? um : m,
				 config_in(others, type)
					 ? "%s: replica type \"%s\" is not "
					   "supported by walrust (s3 and file "
					   "only)"
					 : "%s: unknown replica type \"%s\"",
				 where, type);
		goto out;
	}

	/* s3 */
	if (own->url && own->path) {
		rc = config_fail(p, &own->path_mark,
				 "%s: cannot specify both url and path for an "
				 "s3 replica",
				 where);
		goto out;
	}
	if (own->url && own->bucket) {
		rc = config_fail(p, um,
				 "%s: cannot specify both url and bucket for "
				 "an s3 replica",
				 where);
		goto out;
	}
	if (own->url && (rc = config_s3_url(p, um, where, own->url, &u)))
		goto out;
	if (own->url) /* the url's bucket beats an inherited one */
		bucket = u.bucket;
	if (!bucket || !*bucket) {
		rc = config_fail(p, um,
				 "%s: an s3 replica needs a bucket (url: "
				 "s3://bucket/path, or bucket:)",
				 where);
		goto out;
	}
	if (strchr(bucket, '/')) {
		rc = config_fail(p, m, "%s.bucket: \"%.64s\" contains '/'",
				 where, bucket);
		goto out;
	}
	char *prefix = own->path ? config_clean_prefix(own->path)
				 : u.prefix ? strdup(u.prefix)
					    : strdup("");
	if (!prefix) {
		rc = -ENOMEM;
		goto out;
	}
	out->url = util_strdup_printf("s3://%s%s%s", bucket, *prefix ? "/" : "",
				      prefix);
	free(prefix);
	if (!out->url) {
		rc = -ENOMEM;
		goto out;
	}
	if (!region && u.region && (rc = config_set(&out->region, u.region)))
		goto out;
	if (!endpoint && u.endpoint &&
	    (rc = config_set(&out->endpoint, u.endpoint)))
		goto out;
	if (!out->force_path_style)
		out->force_path_style = u.force_path_style;
	if (fps < 0 && out->endpoint && config_path_style_host(out->endpoint))
		out->force_path_style = true;
	if (u.skip_verify && own->skip_verify != 1 && g->skip_verify != 1)
		out->skip_verify = true;
out:
	free(path);
	config_s3_clear(&u);
	return rc;
}

/* default-replica: s3://bucket[/prefix], file:///dir or an absolute path;
 * endpoint and credentials come from the top level (or the environment). */
static int config_default_replica(struct config_parser *p)
{
	struct config *c = p->c;
	const yaml_mark_t *m = &p->default_replica_mark;
	struct config_rs rs;
	int rc;
	config_rs_init(&rs);
	if (c->default_replica) {
		if (strchr(c->default_replica, '?'))
			return config_fail(p, m,
					   "default-replica: query parameters "
					   "are not supported here; use the "
					   "top-level endpoint/region");
		rs.present = true;
		rs.url = c->default_replica;
		rs.url_mark = *m;
	}
	rc = config_resolve(p, &rs, m, "default-replica", &c->defaults);
	if (rc == 0 && c->default_replica)
		rc = config_set(&c->default_replica, c->defaults.url);
	return rc;
}

/* After the whole document: snapshot promotion, replicas, paths. */
static int config_finish(struct config_parser *p)
{
	struct config *c = p->c;
	int64_t iv = CONFIG_UNSET, rv = CONFIG_UNSET;
	size_t ivdb = 0, rvdb = 0;
	char a[32], b[32];
	int rc;

	if ((rc = config_default_replica(p)))
		return rc;
	if (c->socket) {
		char *abs;
		if ((rc = config_abs(p, &p->socket_mark, "socket", c->socket,
				     &abs)))
			return rc;
		free(c->socket);
		c->socket = abs;
		if (strlen(abs) >= CONFIG_SUN_PATH)
			return config_fail(p, &p->socket_mark,
					   "socket: path too long for a Unix "
					   "socket (%zu bytes, at most %d)",
					   strlen(abs), CONFIG_SUN_PATH - 1);
	}
	for (size_t i = 0; i < c->ndbs; i++) {
		struct config_rawdb *raw = &p->raw[i];
		if (raw->snap_interval_ms != CONFIG_UNSET) {
			if (iv != CONFIG_UNSET && iv != raw->snap_interval_ms) {
				config_fmt_ms(iv, a, sizeof a);
				config_fmt_ms(raw->snap_interval_ms, b,
					      sizeof b);
				return config_fail(
					p, &raw->snap_interval_mark,
					"dbs[%zu].snapshot.interval: "
					"conflicting database snapshot "
					"intervals: dbs[%zu] has %s, dbs[%zu] "
					"has %s (snapshots are global)",
					i, ivdb, a, i, b);
			}
			iv = raw->snap_interval_ms;
			ivdb = i;
		}
		if (raw->snap_retention_ms != CONFIG_UNSET) {
			if (rv != CONFIG_UNSET && rv != raw->snap_retention_ms) {
				config_fmt_ms(rv, a, sizeof a);
				config_fmt_ms(raw->snap_retention_ms, b,
					      sizeof b);
				return config_fail(
					p, &raw->snap_retention_mark,
					"dbs[%zu].snapshot.retention: "
					"conflicting database snapshot "
					"retentions: dbs[%zu] has %s, dbs[%zu] "
					"has %s (snapshots are global)",
					i, rvdb, a, i, b);
			}
			rv = raw->snap_retention_ms;
			rvdb = i;
		}
	}
	if (!p->snap_interval_set && iv != CONFIG_UNSET)
		c->snapshot_interval_ms = iv;
	if (!p->snap_retention_set && rv != CONFIG_UNSET)
		c->snapshot_retention_ms = rv;

	for (size_t i = 0; i < c->ndbs; i++) {
		struct config_db *db = &c->dbs[i];
		struct config_rawdb *raw = &p->raw[i];
		const yaml_mark_t *m = &raw->mark;
		char where[32], what[48];
		char *abs = NULL;
		snprintf(where, sizeof where, "dbs[%zu]", i);

		if (db->path && db->dir)
			return config_fail(p, m,
					   "%s: cannot specify both 'path' and "
					   "'dir'",
					   where);
		if (!db->path && !db->dir)
			return config_fail(p, m,
					   "%s: either path or dir is required",
					   where);
		if (db->dir && !db->pattern)
			return config_fail(p, m,
					   "%s: 'pattern' is required with "
					   "'dir' (e.g. pattern: \"*.db\")",
					   where);
		if (db->watch && !db->dir)
			return config_fail(p, m,
					   "%s: 'watch' can only be enabled "
					   "with a directory",
					   where);
		if (raw->has_meta_dir && !db->dir)
			return config_fail(p, m,
					   "%s: 'meta-dir' can only be used "
					   "with a directory",
					   where);
		if (raw->has_meta_dir && raw->has_meta_path)
			return config_fail(p, m,
					   "%s: cannot specify both "
					   "'meta-path' and 'meta-dir'",
					   where);
		snprintf(what, sizeof what, "%s.%s", where,
			 db->path ? "path" : "dir");
		if ((rc = config_abs(p, m, what, db->path ? db->path : db->dir,
				     &abs)))
			return rc;
		free(db->path ? db->path : db->dir);
		*(db->path ? &db->path : &db->dir) = abs;
		for (size_t j = 0; j < i; j++) {
			const char *o = c->dbs[j].path ? c->dbs[j].path
						       : c->dbs[j].dir;
			if (!strcmp(o, abs) &&
			    !c->dbs[j].path == !db->path)
				return config_fail(p, m,
						   "%s: %s is already listed "
						   "in dbs[%zu]",
						   where, abs, j);
		}
		if (!raw->rs.present && !c->default_replica)
			return config_fail(p, m,
					   "%s: a replica is required "
					   "(replica: {url: s3://bucket/path}), "
					   "or set default-replica",
					   where);
		snprintf(what, sizeof what, "%s.replica", where);
		if ((rc = config_resolve(p, &raw->rs,
					 raw->rs.present ? &raw->rs.mark : m,
					 raw->rs.present ? raw->rs.where : what,
					 &db->replica)))
			return rc;
	}
	return 0;
}

/* ---------------------------------------------------------------- API */

static struct config *config_new(void)
{
	struct config *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	c->workers = 1;
	c->snapshot_interval_ms = 24 * 3600 * 1000LL;
	c->snapshot_retention_ms = 24 * 3600 * 1000LL;
	c->l0_retention_ms = 5 * 60 * 1000;
	c->l0_retention_check_interval_ms = 15 * 1000;
	c->level_interval_ms[0] = 30 * 1000;
	c->level_interval_ms[1] = 5 * 60 * 1000;
	c->level_interval_ms[2] = 3600 * 1000;
	c->nlevels = 3;
	c->retention_enabled = true;
	c->shutdown_sync_timeout_ms = 30 * 1000;
	c->shutdown_sync_interval_ms = 500;
	c->log_level = -1;
	return c;
}

void config_free(struct config *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->ndbs; i++)
		config_db_clear(&c->dbs[i]);
	free(c->dbs);
	free(c->exec);
	free(c->socket);
	free(c->default_replica);
	config_replica_clear(&c->defaults);
	for (size_t i = 0; i < c->nwarnings; i++)
		free(c->warnings[i]);
	free(c->warnings);
	free(c);
}

int config_parse(struct config **out, const char *text, size_t len,
		 const char *filename, bool expand_env, char **err)
{
	struct config_parser p = {0};
	yaml_parser_t parser;
	bool parser_ok = false, doc_ok = false;
	char *expanded = NULL;
	int rc = -ENOMEM;

	*out = NULL;
	p.file = filename ? filename : "<config>";
	p.err = err;
	p.budget = CONFIG_BUDGET;
	config_rs_init(&p.global);
	if (!(p.c = config_new()))
		goto out;
	if (expand_env) {
		if ((rc = config_expand(text, len, &expanded, &len)))
			goto out;
		text = expanded;
	}
	rc = -ENOMEM;
	if (!yaml_parser_initialize(&parser))
		goto out;
	parser_ok = true;
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	if (!yaml_parser_load(&parser, &p.doc)) {
		if (parser.error == YAML_MEMORY_ERROR) {
			rc = -ENOMEM;
		} else if (parser.error == YAML_READER_ERROR) {
			rc = config_fail(&p, NULL,
					 "YAML: %s at byte %zu",
					 parser.problem ? parser.problem : "?",
					 parser.problem_offset);
		} else if (parser.context) {
			rc = config_fail(&p, &parser.problem_mark,
					 "YAML syntax error: %s (%s at line "
					 "%zu)",
					 parser.problem ? parser.problem : "?",
					 parser.context,
					 parser.context_mark.line + 1);
		} else {
			rc = config_fail(&p, &parser.problem_mark,
					 "YAML syntax error: %s",
					 parser.problem ? parser.problem : "?");
		}
		goto out;
	}
	doc_ok = true;
	yaml_node_t *root = yaml_document_get_root_node(&p.doc);
	if (root && !config_null(root)) {
		if (root->type != YAML_MAPPING_NODE) {
			rc = config_fail(&p, &root->start_mark,
					 "top level: expected a mapping (dbs: "
					 "...), got %s",
					 config_kind(root));
			goto out;
		}
		if ((rc = config_each(&p, root, "", config_top_pair, NULL, 0)))
			goto out;
	}
	if ((rc = config_finish(&p)))
		goto out;
	*out = p.c;
	p.c = NULL;
out:
	if (rc == -ENOMEM && err && !*err)
		*err = strdup("out of memory reading the configuration");
	for (size_t i = 0; i < p.nraw; i++)
		config_rs_clear(&p.raw[i].rs);
	free(p.raw);
	config_rs_clear(&p.global);
	config_free(p.c);
	if (doc_ok)
		yaml_document_delete(&p.doc);
	if (parser_ok)
		yaml_parser_delete(&parser);
	free(expanded);
	return rc;
}

int config_load(struct config **out, const char *path, bool expand_env,
		char **err)
{
	struct stat st;
	char *buf = NULL;
	int fd, rc;

	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return util_err(err, -errno, "%s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0) {
		rc = util_err(err, -errno, "%s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = util_err(err, -EINVAL, "%s: not a regular file", path);
		goto out;
	}
	if (st.st_size > CONFIG_MAX_FILE) {
		rc = util_err(err, -EFBIG, "%s: too large (%lld bytes; at most "
				       "%d)",
			      path, (long long)st.st_size, CONFIG_MAX_FILE);
		goto out;
	}
	rc = -ENOMEM;
	if (!(buf = malloc((size_t)st.st_size + 1)))
		goto out;
	ssize_t n = util_pread_all(fd, buf, (size_t)st.st_size, 0);
	if (n < 0) {
		rc = util_err(err, (int)n, "%s: %s", path, strerror((int)-n));
		goto out;
	}
	rc = config_parse(out, buf, (size_t)n, path, expand_env, err);
out:
	free(buf);
	close(fd);
	return rc;
}
