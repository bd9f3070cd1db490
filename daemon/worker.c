/* worker.c: a worker process (`walrust-worker --worker`). One uv loop; requests
 * forwarded by the supervisor arrive on fd 0 as protocol lines (with the
 * supervisor's own ids) and are answered there, asynchronously, so one slow
 * listing does not hold up another. Continuous replication of the
 * databases assigned to this worker runs on the same loop. The worker
 * exits when its channel to the supervisor closes or on SIGTERM, once each
 * database has finished the uploads it started (a final capture, queued
 * files, a compaction, deletions; WORKER_EXIT_GRACE_MS at most): a request
 * cut mid-body is one a server may keep as a short object, which SeaweedFS
 * was seen to do (a 0-byte L1 file that made every restore fail).
 *
 * Internal lines (the supervisor's own, never from a client: they carry
 * "internal" instead of "cmd"):
 *   {"id":I,"internal":"lease","args":{"owner":O,"name":N,"replica":R,
 *    "files":[[level,min,max],...],"ttl_ms":T}}
 * replaces the leases of job O on database N of replica R (an empty
 * "files" drops them; they expire T ms after the last such line) and is
 * answered {"id":I,"ok":true,"result":{}} once in force (see lease.c). */
#include "config.h"

#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "lease.h"

static uv_loop_t *worker_loop;
static struct channel *worker_ch;
/* Readers' leases on replica files (lease.c), for db.c's retention. */
static struct lease_table worker_lease_table;

struct retention_lease *worker_leases(const char *name, const char *replica,
				      int64_t now_ms, size_t *n)
{
	return lease_table_find(&worker_lease_table, name, replica, now_ms, n);
}

/* {"internal":"lease",...} from the supervisor (see the top). */
static void worker_internal(json_t *msg, const char *what)
{
	json_t *id = json_object_get(msg, "id");
	json_t *args = json_object_get(msg, "args");
	const char *name = wrp_arg_string(args, "name");
	const char *replica = wrp_arg_string(args, "replica");
	json_t *owner = json_object_get(args, "owner");
	struct retention_lease *l = NULL;
	size_t n = 0;
	json_t *reply;
	int rc = -EINVAL;

	if (strcmp(what, "lease") == 0 && name && replica &&
	    json_is_integer(owner))
		rc = lease_parse(json_object_get(args, "files"), &l, &n);
	if (rc == 0)
		rc = lease_table_set(&worker_lease_table,
				     json_integer_value(owner), name, replica,
				     l, n,
				     util_now_ms() + wrp_arg_int(args, "ttl_ms",
								 LEASE_TTL_MS));
	free(l);
	if (rc == 0) {
		log_debug("lease of job %lld on \"%s\" in %s: %zu range%s",
			  (long long)json_integer_value(owner), name, replica,
			  n, n == 1 ? "" : "s");
		reply = wrp_reply_ok(id, json_object());
	} else {
		log_error("bad internal line from the supervisor (%s): %s",
			  what, strerror(-rc));
		reply = wrp_reply_error(id, WRP_E_INTERNAL, "%s: %s", what,
					strerror(-rc));
	}
	if (worker_ch)
		channel_send(worker_ch, reply);
	json_decref(reply);
}

/* The watched databases. A few thousand at most: a list will do. */
struct worker_db {
	struct worker_db *next;
	struct db *db;
};
static struct worker_db *worker_dbs;

struct db *worker_db_find(const char *path)
{
	for (struct worker_db *w = worker_dbs; w; w = w->next)
		if (strcmp(db_path(w->db), path) == 0)
			return w->db;
	return NULL;
}

struct db *worker_db_find_name(const char *name, const char *replica)
{
	for (struct worker_db *w = worker_dbs; w; w = w->next) {
		if (strcmp(db_name(w->db), name) != 0)
			continue;
		json_t *st = db_status(w->db);
		bool same = strcmp(json_string_value(json_object_get(st, "bucket")),
				   replica) == 0;
		json_decref(st);
		if (same)
			return w->db;
	}
	return NULL;
}

static bool worker_same_arg(json_t *a, json_t *b, const char *key)
{
	json_t *x = json_object_get(a, key), *y = json_object_get(b, key);
	return (!x && !y) || (x && y && json_equal(x, y));
}

struct storage *worker_storage_shared(json_t *args)
{
	for (struct worker_db *w = worker_dbs; w; w = w->next) {
		json_t *a = db_args(w->db);
		if (worker_same_arg(a, args, "bucket") &&
		    worker_same_arg(a, args, "endpoint") &&
		    worker_same_arg(a, args, "aws"))
			return storage_ref(db_storage(w->db));
	}
	return NULL;
}

/* `status`, the worker's part: the watched databases (cmd-status.c). */
static void worker_status_start(struct worker_req *r)
{
	worker_reply(r, json_pack("{s:o}", "databases", worker_dbs_status()));
}

const struct cmd worker_status = {.name = "status",
				  .start = worker_status_start};

void worker_db_add(struct db *d)
{
	struct worker_db *w = calloc(1, sizeof *w);
	w->db = d;
	w->next = worker_dbs;
	worker_dbs = w;
}

static void worker_db_remove(struct db *d)
{
	for (struct worker_db **pp = &worker_dbs; *pp; pp = &(*pp)->next)
		if ((*pp)->db == d) {
			struct worker_db *w = *pp;
			*pp = w->next;
			free(w);
			return;
		}
}

/* Databases stopped (unwatch, exit) whose uploads are still finishing. */
static unsigned worker_draining;
static bool worker_exiting;
static uv_timer_t worker_exit_timer;
static uv_signal_t worker_sigterm;

#define WORKER_EXIT_GRACE_MS 20000

static void worker_db_stopped(struct db *d, void *arg)
{
	(void)d;
	(void)arg;
	if (--worker_draining == 0 && worker_exiting)
		uv_stop(worker_loop);
}

void worker_db_stop(struct db *d)
{
	worker_db_remove(d);
	worker_draining++;
	db_stop(d, worker_db_stopped, NULL);
}

static void worker_exit_timeout(uv_timer_t *t)
{
	(void)t;
	log_warn("worker: %u database%s still uploading after %d s; exiting",
		 worker_draining, worker_draining == 1 ? "" : "s",
		 WORKER_EXIT_GRACE_MS / 1000);
	uv_stop(worker_loop);
}

/* The supervisor is gone or asks us to stop: finish what was started. */
static void worker_exit(void)
{
	if (worker_exiting)
		return;
	worker_exiting = true;
	while (worker_dbs)
		worker_db_stop(worker_dbs->db);
	if (worker_draining == 0) {
		uv_stop(worker_loop);
		return;
	}
	log_debug("worker: finishing the uploads of %u database%s",
		  worker_draining, worker_draining == 1 ? "" : "s");
	uv_timer_init(worker_loop, &worker_exit_timer);
	uv_timer_start(&worker_exit_timer, worker_exit_timeout,
		       WORKER_EXIT_GRACE_MS, 0);
}

static void worker_on_sigterm(uv_signal_t *h, int sig)
{
	(void)h;
	(void)sig;
	worker_exit();
}


json_t *worker_dbs_status(void)
{
	json_t *a = json_array();
	for (struct worker_db *w = worker_dbs; w; w = w->next)
		json_array_append_new(a, db_status(w->db));
	return a;
}

static void worker_req_closed(uv_handle_t *h)
{
	struct worker_req *r = h->data;
	storage_free(r->storage);
	json_decref(r->id);
	json_decref(r->args);
	free(h);
	free(r);
}

/* Free the request on the next loop turn: we may be inside a callback of
 * its storage. */
static void worker_req_finish(uv_timer_t *t)
{
	uv_close((uv_handle_t *)t, worker_req_closed);
}

static void worker_req_end(struct worker_req *r, json_t *reply)
{
	if (worker_ch)
		channel_send(worker_ch, reply);
	json_decref(reply);
	uv_timer_t *t = malloc(sizeof *t);
	uv_timer_init(worker_loop, t);
	t->data = r;
	uv_timer_start(t, worker_req_finish, 0, 0);
}

void worker_reply(struct worker_req *r, json_t *result)
{
	worker_req_end(r, wrp_reply_ok(r->id, result));
}

void worker_fail(struct worker_req *r, const char *code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *m = NULL;
	if (vasprintf(&m, fmt, ap) < 0)
		m = NULL;
	va_end(ap);
	worker_req_end(r, wrp_reply_error(r->id, code, "%s", m ? m : code));
	free(m);
}

static void worker_on_line(struct channel *ch, const char *line, size_t len,
			   bool too_long)
{
	if (too_long)
		return;
	/* Lines come from the supervisor, which validated the request. */
	json_t *req = json_loadb(line, len, 0, NULL);
	const char *internal = json_string_value(json_object_get(req, "internal"));
	if (internal) {
		worker_internal(req, internal);
		json_decref(req);
		return;
	}
	const char *name = json_string_value(json_object_get(req, "cmd"));
	if (!req || !name) {
		log_error("malformed line from the supervisor");
		json_decref(req);
		return;
	}
	const struct cmd *cmd = cmd_find(name);
	struct worker_req *r = calloc(1, sizeof *r);
	r->id = json_incref(json_object_get(req, "id"));
	r->args = json_incref(json_object_get(req, "args"));
	if (!r->args)
		r->args = json_object();
	if (!cmd || !cmd->start) {
		worker_fail(r, WRP_E_INTERNAL, "%s is not a worker command", name);
		json_decref(req);
		return;
	}
	json_decref(req);
	const char *code = WRP_E_STORAGE;
	char *err = NULL;
	if (cmd->storage &&
	    storage_open_args(worker_loop, r->args, &r->storage, &code, &err) < 0) {
		worker_fail(r, code, "%s", err ? err : "cannot open storage");
		free(err);
		return;
	}
	cmd->start(r);
}

static void worker_on_close(struct channel *ch)
{
	(void)ch;
	worker_ch = NULL;
	worker_exit();
}

/* Bursts (a thousand databases starting at once, each listing its replica
 * and uploading its first file; a compaction) leave freed memory inside
 * the heap that malloc keeps; give it back to the system now and then. */
static void worker_trim(uv_timer_t *t)
{
	(void)t;
	malloc_trim(0);
}

int worker_main(void)
{
	/* Thousands of connections that read only the schema: no
	 * preallocated page cache per connection (about 70 KB each). */
	sqlite3_config(SQLITE_CONFIG_PAGECACHE, NULL, 0, 0);
	worker_loop = uv_default_loop();
	uv_pipe_t *p = malloc(sizeof *p);
	uv_pipe_init(worker_loop, p, 0);
	if (uv_pipe_open(p, 0) < 0) {
		log_error("worker: fd 0 is not a pipe to the supervisor");
		return 1;
	}
	worker_ch = channel_new((uv_stream_t *)p, worker_on_line,
				worker_on_close, NULL);
	channel_start(worker_ch);
	uv_signal_init(worker_loop, &worker_sigterm);
	uv_signal_start(&worker_sigterm, worker_on_sigterm, SIGTERM);
	uv_unref((uv_handle_t *)&worker_sigterm);
	log_debug("worker started");
	static uv_timer_t trim;
	uv_timer_init(worker_loop, &trim);
	uv_timer_start(&trim, worker_trim, 10000, 30000);
	uv_unref((uv_handle_t *)&trim);
	uv_run(worker_loop, UV_RUN_DEFAULT);
	return 0;
}
