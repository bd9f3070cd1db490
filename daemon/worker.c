/* worker.c: a worker process (`walrustd --worker`). One uv loop; requests
 * forwarded by the supervisor arrive on fd 0 as protocol lines (with the
 * supervisor's own ids) and are answered there, asynchronously, so one slow
 * listing does not hold up another. Continuous replication of the
 * databases assigned to this worker runs on the same loop. The worker
 * exits when its channel to the supervisor closes. */
#include "config.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"

static uv_loop_t *worker_loop;
static struct channel *worker_ch;

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

void worker_db_add(struct db *d)
{
	struct worker_db *w = calloc(1, sizeof *w);
	w->db = d;
	w->next = worker_dbs;
	worker_dbs = w;
}

void worker_db_remove(struct db *d)
{
	for (struct worker_db **pp = &worker_dbs; *pp; pp = &(*pp)->next)
		if ((*pp)->db == d) {
			struct worker_db *w = *pp;
			*pp = w->next;
			free(w);
			return;
		}
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
	    cmd_open_storage(worker_loop, r->args, &r->storage, &code, &err) < 0) {
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
	uv_stop(worker_loop);
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
	log_debug("worker started");
	uv_run(worker_loop, UV_RUN_DEFAULT);
	return 0;
}
