/*
 * daemon.h: the daemon's own files (processes, socket, commands, jobs),
 * grouped by file. Pure cores are declared in walrust.h; the storage seam
 * in storage.h.
 */
#ifndef WALRUST_DAEMON_H
#define WALRUST_DAEMON_H

#include <jansson.h>
#include <uv.h>

#include "storage.h"
#include "walrust.h"
#include "wrp.h"

/* ----------------------------------------------------------------- log.c */
enum { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };
void log_init(const char *role, int level);
int log_parse_level(const char *s);
void log_msg(int level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

/* ------------------------------------------------ storage.c (sync glue) */
/* For one-shot job processes: run the loop until the operation finishes.
 * Each returns the storage status and sets *err. */
int storage_put_wait(struct storage *s, const char *key, int fd, uint64_t len,
		     int64_t ts_ms, char **err);
int storage_get_wait(struct storage *s, const char *key, int fd, char **err);
/* Download several keys at once (the backend's concurrency limit applies);
 * fds[i] receives keys[i] (limit 0), or only its first `limit` bytes.
 * progress(arg, done, bytes) after each file. */
int storage_get_many_wait(struct storage *s, const char *const *keys,
			  const int *fds, size_t n, uint64_t limit,
			  void (*progress)(void *arg, size_t done),
			  void *arg, char **err);
struct storage_listing {
	char **keys;
	size_t nkeys;
	char **prefixes;
	size_t nprefixes;
};
int storage_list_wait(struct storage *s, const char *prefix,
		      const char *delimiter, struct storage_listing *out,
		      char **err);
void storage_listing_clear(struct storage_listing *l);
/* The protocol error code for a storage status. */
const char *storage_error_code(int status);

/* ------------------------------------------------------------- replica.c */
/* Key layout of Litestream 0.5.16+ (see ltx-format.md "Bucket layout"):
 *   S3:   <name>/<level %04x>/<min %016x>-<max %016x>.ltx
 *   file: <name>/ltx/<level decimal>/<min>-<max>.ltx */
#define REPLICA_SNAPSHOT_LEVEL 9
struct replica_file {
	int level;
	uint64_t min_txid, max_txid;
	int64_t timestamp; /* ms; 0 when not known */
	char *key;
};
/* A database name: non-empty, no '/', not "." or "..", no control chars,
 * at most 255 bytes. */
bool replica_name_valid(const char *name);
/* Database name from a path: the file name without its extension. */
char *replica_name_from_path(const char *path);
char *replica_key(enum storage_kind kind, const char *name, int level,
		  uint64_t min_txid, uint64_t max_txid);
char *replica_prefix(enum storage_kind kind, const char *name);
/* Parse a key relative to the replica root; 0 and *f filled (key copied),
 * or -EINVAL when it is not an LTX file of `name`. */
int replica_parse_key(enum storage_kind kind, const char *name,
		      const char *key, struct replica_file *f);
void replica_file_clear(struct replica_file *f);
/* The restore plan (replication.md, "Restore plan"): among `files`, the
 * newest snapshot (min_txid 1) with max <= target, then repeatedly the file
 * with min <= cur+1 and max > cur (max <= target) reaching furthest (highest
 * max, then lowest min, then higher level). Files with timestamp > not_after
 * are ignored when not_after > 0. out[] gets indices into files. Returns
 * the number of files, 0 when there is no usable snapshot. *reached is the
 * TXID the plan reaches. */
size_t replica_plan(const struct replica_file *files, size_t n,
		    uint64_t target, int64_t not_after, size_t *out,
		    uint64_t *reached);

/* ----------------------------------------------------------------- db.c */
/* Continuous replication of one database (see the essay in db.c). */
struct db;
enum db_state { DB_STARTING, DB_REPLICATING, DB_STOPPING, DB_ERROR };
/* status 0: txid is in the replica; -ETIMEDOUT, -ECANCELED otherwise. */
typedef void (*db_wait_cb)(void *arg, int status, uint64_t txid,
			   const char *why);
/* A snapshot's TXID, its size in bytes and in pages of page_size bytes. */
typedef void (*db_snapshot_cb)(void *arg, int status, uint64_t txid,
			       uint64_t bytes, uint32_t pages,
			       uint32_t page_size, const char *err);
typedef void (*db_stopped_cb)(struct db *d, void *arg);
/* Takes ownership of `s` on success. */
/* name: the database's name in the replica (NULL: from the file name). */
int db_new(struct db **out, uv_loop_t *loop, const char *path,
	   const char *name, struct storage *s, json_t *args,
	   int64_t interval_ms, char **err);
/* Final capture and upload, then close; cb when freed. */
void db_stop(struct db *d, db_stopped_cb cb, void *arg);
/* Durability barrier: cb once all committed before the call is shipped. */
void db_sync(struct db *d, int64_t timeout_ms, db_wait_cb cb, void *arg);
/* A level-9 snapshot file at the current TXID. */
void db_snapshot(struct db *d, db_snapshot_cb cb, void *arg);
const char *db_path(const struct db *d);
const char *db_name(const struct db *d);
uint64_t db_txid(const struct db *d);
struct storage *db_storage(const struct db *d);
json_t *db_args(const struct db *d); /* the watch request's arguments */
json_t *db_status(const struct db *d);

/* ------------------------------------------------------------ snapshot.c */
/* A page source for a consistent image: the database file overlaid with the
 * newest committed WAL frame of each page (frames whose salts no longer
 * match the scan fall back to the database file; see snapshot.c). */
struct snapshot_src {
	int db_fd;
	struct wal_index *wal; /* NULL: database file only */
	int wal_fd;
	uint32_t page_size;
	uint8_t *frame; /* buffer: WAL frame header + page */
	/* Optional read-ahead of the database file for a scan in page order:
	 * ra holds pages ra_first.. (ra_n of them, room for ra_cap); NULL: a
	 * pread per page. */
	uint8_t *ra;
	uint32_t ra_first, ra_n, ra_cap;
};
int snapshot_read_page(struct snapshot_src *src, uint32_t pgno, uint8_t *page,
		       char **err);
struct job_ctx; /* job.c */
int snapshot_run(struct job_ctx *j, json_t *args, json_t **result);

/* ------------------------------------------------------------- restore.c */
int restore_run(struct job_ctx *j, json_t *args, json_t **result);

/* ----------------------------------------------------------------- job.c */
/* A one-shot job process (`walrustd --job`): reads one request line on fd 0,
 * writes events and its reply there, exits. */
struct job_ctx {
	uv_loop_t *loop;
	json_t *id;
	const char *code;   /* error code set by the job on failure */
	char *message;      /* error message (malloc'd) */
	unsigned lease_seq; /* the last lease sent (job_lease) */
};
int job_main(void);
void job_event(struct job_ctx *j, const char *event, json_t *data);
/* Set the error code + message and return rc (for `return job_fail(...)`). */
int job_fail(struct job_ctx *j, int rc, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* storage_open_args for a job, setting j->code/message on failure. */
int job_open_storage(struct job_ctx *j, json_t *args, struct storage **out);
/* Lease files of (name, replica) against retention (see lease.c): l[0..n)
 * replaces the job's previous set (n == 0 releases it; the supervisor also
 * releases it when the job exits). 0 once every worker has it; -ETIMEDOUT
 * when they did not answer in time (the caller goes on), -ENOMEM. */
struct retention_lease;
int job_lease(struct job_ctx *j, const char *name, const char *replica,
	      const struct retention_lease *l, size_t n);

/* ------------------------------------------------------------- channel.c */
/* A line-oriented JSON stream over a uv stream (a client connection or a
 * child's pipe): reads lines with wrp_reader, queues writes. */
struct channel;
typedef void (*channel_line_cb)(struct channel *c, const char *line,
				size_t len, bool too_long);
typedef void (*channel_close_cb)(struct channel *c);
struct channel {
	uv_stream_t *stream; /* owned; freed in the close callback */
	struct wrp_reader reader;
	channel_line_cb on_line;
	channel_close_cb on_close;
	void *data;
	bool closing;
	size_t pending_writes;
};
/* Takes ownership of `stream` (allocated with malloc, initialised). */
struct channel *channel_new(uv_stream_t *stream, channel_line_cb on_line,
			    channel_close_cb on_close, void *data);
int channel_start(struct channel *c);
int channel_send_line(struct channel *c, const char *line, size_t len);
int channel_send(struct channel *c, const json_t *msg);
/* Close (idempotent); on_close fires once the handle is closed, then the
 * channel is freed. */
void channel_close(struct channel *c);

/* ------------------------------------------------------------- control.c */
/* The control socket: listening, peer-uid check, per-client connections. */
struct client {
	struct channel *ch;
	uv_pid_t uid;
	unsigned refs;   /* outstanding requests + the connection itself */
	bool gone;
	/* An internal client (the supervisor's own requests): every message
	 * goes to this function instead of a socket. */
	void (*internal)(void *arg, json_t *msg);
	void *internal_arg;
};
/* A client for the supervisor's own requests; free with client_unref. */
struct client *client_internal(void (*fn)(void *arg, json_t *msg), void *arg);
int control_listen(uv_loop_t *loop, const char *path, char **err);
void control_stop(void);
void client_send(struct client *c, const json_t *msg);
void client_send_line(struct client *c, const char *line, size_t len);
void client_unref(struct client *c);

/* ---------------------------------------------------------- supervisor.c */
struct config;
struct supervisor_opts {
	const char *socket_path;
	const char *default_bucket;
	const char *worker_exe; /* walrust-worker (walrustd.c) */
	const struct config *config; /* NULL: no configuration file */
	const char *config_path;     /* reloaded on SIGHUP */
	bool expand_env;
	const char *exec;            /* the application to run, or NULL */
	int workers;                 /* worker processes (>= 1) */
};
int supervisor_main(const struct supervisor_opts *o);
/* Used by commands: */
const char *supervisor_default_bucket(void);
const char *supervisor_socket_path(void);
int64_t supervisor_uptime_ms(void);
json_t *supervisor_workers_json(void);
size_t supervisor_job_count(void);
/* The largest peak resident set (KiB) of any child that has exited: jobs,
 * and workers restarted after a crash (getrusage RUSAGE_CHILDREN). */
long supervisor_jobs_peak_rss_kb(void);
void supervisor_shutdown(void);
/* Run a request in a job process; its events and reply go to the client. */
void supervisor_start_job(struct client *c, json_t *request);
/* Forward a request to the worker; the reply goes to the client (after
 * `hook`, when given, has looked at or rewritten it). */
typedef void (*supervisor_hook)(json_t *request, json_t *reply);
void supervisor_to_worker(struct client *c, json_t *request,
			  supervisor_hook hook);
/* Send to every worker and merge their "databases" into one reply. */
void supervisor_to_all_workers(struct client *c, json_t *request,
			       supervisor_hook hook);
/* Whether the worker replicates this database (by absolute path). */
bool supervisor_watching(const char *path);
/* Stop the daemon with this exit status. */
void supervisor_exit(int status);
/* Fill the supervisor's part of a status result. */
json_t *supervisor_status(json_t *databases);

/* ----------------------------------------------------------- watchlist.c */
/* The databases of the configuration file: `path` entries are watched at
 * start (and after restore-if-db-not-exists), `dir` entries are scanned
 * for new databases matching their pattern. Then exec.c starts the
 * application, if any. */
void watchlist_start(uv_loop_t *loop, const struct config *c,
		     const char *default_bucket, void (*ready)(void));
void watchlist_stop(void);
/* Switch to configuration c (SIGHUP): watch what it adds, unwatch what it
 * drops, watch again what it changes. c must outlive the watch list. */
void watchlist_reload(const struct config *c);

/* ---------------------------------------------------------------- exec.c */
/* The application run by `--exec`/`exec:`: signals are forwarded to it; when
 * it exits, every watched database is synced, then walrustd exits with the
 * application's status. */
int exec_start(uv_loop_t *loop, const char *cmd, int64_t sync_timeout_ms);
/* A signal for the application: true when forwarded. */
bool exec_forward_signal(int signum);

/* -------------------------------------------------------------- worker.c */
/* The worker process (`walrustd --worker`): one uv loop and the async
 * storage for every database it watches; serves forwarded requests. */
int worker_main(void);
struct worker_req {
	json_t *id;
	json_t *args;
	struct storage *storage; /* opened for this request, freed by reply */
};
void worker_reply(struct worker_req *r, json_t *result);
/* The databases this worker watches. */
struct db *worker_db_find(const char *path);
struct db *worker_db_find_name(const char *name, const char *replica);
/* The storage of a watched database whose request named the same bucket,
 * endpoint and credentials as args, with one more owner; NULL if none. */
struct storage *worker_storage_shared(json_t *args);
void worker_db_add(struct db *d);
/* Remove and stop d; the worker exits only once it has stopped. */
void worker_db_stop(struct db *d);
json_t *worker_dbs_status(void);
/* The live leases on the files of (name, replica), for retention_plan:
 * malloc'd, *n of them; NULL when none (lease.c). */
struct retention_lease *worker_leases(const char *name, const char *replica,
				      int64_t now_ms, size_t *n);
void worker_fail(struct worker_req *r, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* storage_new from a request's bucket/endpoint/aws args (job or worker). */
int storage_open_args(uv_loop_t *loop, json_t *args, struct storage **out,
		     const char **code, char **err);

/* ----------------------------------------------------------------- cmd.c */
/* The supervisor routes each command (cmd.c's table) to where it runs: */
enum cmd_where { CMD_SUPERVISOR, CMD_WORKER, CMD_JOB };
/* Handle one request line from a client (supervisor side). */
void cmd_dispatch(struct client *c, const char *line, size_t len,
		  bool too_long);
/* The commands the supervisor answers itself (cmd-<name>.c). */
void cmd_hello_run(struct client *c, json_t *request);
void cmd_status_run(struct client *c, json_t *request);
void cmd_shutdown_run(struct client *c, json_t *request);

/* ----------------------------------------------------------- cmd-table.c */
/* The implementations in worker and job processes (walrust-worker), one per
 * command, defined in cmd-<name>.c (status: worker.c). */
struct cmd {
	const char *name;
	/* A job command: executed in a job process; returns 0 with *result,
	 * or <0 with j->code/j->message set. */
	int (*exec)(struct job_ctx *j, json_t *args, json_t **result);
	/* A worker command (or a job command for a watched database):
	 * started in the worker; finishes with worker_reply or worker_fail. */
	void (*start)(struct worker_req *r);
	/* The worker opens the request's storage before start. */
	bool storage;
};
extern const struct cmd worker_status, cmd_snapshot, cmd_restore, cmd_list,
	cmd_watch, cmd_unwatch, cmd_sync;
const struct cmd *cmd_find(const char *name);

#endif
