/*
 * config-file.h: the configuration file (config.c), a Litestream-compatible
 * litestream.yml read with libyaml. Pure: no libuv, no curl.
 *
 * Named config-file.h rather than config.h on purpose: a daemon/config.h
 * would shadow autoconf's config.h for every daemon source file: a quoted
 * #include searches the including file's own directory first.
 *
 * See the essay at the top of config.c for the accepted format and how it
 * maps onto Litestream's.
 */
#ifndef WALRUST_CONFIG_FILE_H
#define WALRUST_CONFIG_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Compaction levels L1..L8 (L0 is the raw sync level, L9 the snapshots). */
#define CONFIG_MAX_LEVELS 8

struct config_replica {
	/* Normalised: "s3://bucket[/prefix]" or "file:///abs/dir". For a
	 * database with no replica of its own (allowed only when
	 * default-replica is set) url is NULL and the caller uses
	 * default_replica. For a `dir:` entry this is the base: the caller
	 * appends each found database's path relative to dir, as Litestream
	 * does. */
	char *url;
	char *endpoint; /* "http(s)://host[:port][/path]"; NULL: AWS itself */
	char *region;   /* NULL: environment, else us-east-1 */
	char *access_key_id, *secret_access_key; /* NULL: environment */
	bool force_path_style, skip_verify;
	int64_t sync_interval_ms; /* > 0; default 1000 */
};

struct config_db {
	char *path;    /* absolute, cleaned; NULL for a dir entry */
	char *dir;     /* absolute, cleaned; NULL for a path entry */
	char *pattern; /* glob for dir entries (required with dir) */
	bool recursive, watch;
	struct config_replica replica;
	bool restore_if_missing; /* restore-if-db-not-exists */
	/* Litestream's per-database settings, defaults filled in. */
	int64_t monitor_interval_ms;    /* 1000; 0 disables monitoring */
	int64_t checkpoint_interval_ms; /* 60000; 0 disables */
	int64_t busy_timeout_ms;        /* 1000 */
	int64_t min_checkpoint_page_count; /* 1000 */
	int64_t truncate_page_n;        /* 121359; 0 disables */
	int64_t max_sync_wal_bytes;     /* 64 MiB; 0: no limit */
	int line; /* 1-based line of the entry in the file */
};

struct config {
	struct config_db *dbs;
	size_t ndbs;
	char *exec;            /* command to supervise, or NULL */
	char *socket;          /* walrust control socket path, or NULL */
	char *default_replica; /* normalised URL, or NULL */
	/* The top-level replica settings resolved alone (endpoint, region,
	 * credentials, sync interval); url == default_replica. For replicas
	 * that come from the command line or from default-replica. */
	struct config_replica defaults;
	int workers; /* >= 1, default 1 */
	int64_t snapshot_interval_ms, snapshot_retention_ms; /* 24h, 24h */
	int64_t l0_retention_ms;                /* 5m */
	int64_t l0_retention_check_interval_ms; /* 15s */
	int64_t level_interval_ms[CONFIG_MAX_LEVELS]; /* L1.. : 30s, 5m, 1h */
	size_t nlevels;
	bool retention_enabled; /* retention: {enabled: ...}, default true */
	int64_t shutdown_sync_timeout_ms;  /* 30s */
	int64_t shutdown_sync_interval_ms; /* 500ms */
	int log_level; /* -1 unset, else LOG_DEBUG..LOG_ERROR (0..3) */
	/* "file:line:col: message" for every ignored or unknown setting (at
	 * most 64, then one "further warnings suppressed"). */
	char **warnings;
	size_t nwarnings;
};

/* Parse a configuration held in memory. `filename` is only used in
 * messages (NULL: "<config>"); relative paths are resolved against the
 * current directory, as Litestream does. With expand_env, $VAR and ${VAR}
 * are replaced in the whole text before parsing (os.Expand semantics,
 * undefined variables become empty, $PID is the process id). Returns 0 and
 * *out, or a negative errno and *err ("file:line:col: where: what"). */
int config_parse(struct config **out, const char *text, size_t len,
		 const char *filename, bool expand_env, char **err);
/* Read `path` and parse it (messages name `path`). */
int config_load(struct config **out, const char *path, bool expand_env,
		char **err);
void config_free(struct config *c);
/* A Go duration ("1s", "500ms", "1h30m", "2h45m30.5s", "-1m", "0") into
 * milliseconds, truncated toward zero except that a non-zero duration
 * never becomes 0. -EINVAL if malformed, -ERANGE if out of Go's range. */
int config_parse_duration(const char *s, int64_t *ms);

#endif
