/*
 * supervisor.c: the walrustd supervisor process.
 *
 * Process model. The supervisor owns the control socket and the processes:
 *
 *   walrustd (supervisor) --- control socket <--- walrustctl, Python, ...
 *     |-- walrust-worker --worker  one uv loop + storage; watched databases,
 *     |                            listings; restarted with backoff if it
 *     |                            dies
 *     `-- walrust-worker --job     one per snapshot/restore; exits when done
 *
 * Workers and jobs are a second binary, walrust-worker (walrustd.c finds
 * it), spawned with a socket pair on their fd 0 that carries protocol
 * lines both ways (channel.c). A job receives the client's request (with
 * the daemon's default bucket filled in), streams events and one reply,
 * which we forward verbatim to the client: the job writes the wire format
 * itself. Requests for the worker get a supervisor-chosen id so that two
 * clients using the same id cannot collide; the reply's id is mapped back.
 *
 * Leases (lease.c). A restore job that planned its files sends them to us
 * as an internal line (job.c); we keep the job's current set, send it to
 * every worker as an internal line (worker.c; each keeps the leases, and
 * only the worker replicating that database's replica ever matches them),
 * tell the job once every live worker acknowledged, renew the set every
 * LEASE_RENEW_MS while the job process lives, give it to a restarted
 * worker, and release it when the job process is gone. Internal lines are
 * never forwarded to clients.
 *
 * Invariants:
 *  - a client always gets exactly one reply per request it sent, unless it
 *    disconnected first: a job that dies without replying yields an
 *    "internal" error naming the signal or status, and a worker that dies
 *    fails its in-flight requests;
 *  - signal handlers only set flags (uv_signal delivers them on the loop);
 *  - on SIGTERM/SIGINT/shutdown: stop accepting, let running jobs finish
 *    (bounded), stop the worker, remove the socket, exit 0.
 */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "config-file.h"
#include "daemon.h"
#include "lease.h"

struct worker {
	int index;
	uv_process_t *proc;
	struct channel *ch;
	int pid;
	unsigned restarts;
	uv_timer_t restart_timer;
};

struct pending {
	struct pending *next;
	struct worker *w;     /* the worker it was sent to */
	json_int_t wid;       /* id sent to the worker */
	json_t *client_id;    /* the client's own id */
	struct client *client; /* NULL for the supervisor's own requests */
	json_t *request;
	supervisor_hook hook;
};

/* The watched databases and the requests that started them, replayed to a
 * restarted worker. */
struct watched {
	struct watched *next;
	char *path;
	json_t *request;
};

struct job {
	struct job *next; /* sv.job_list */
	uv_process_t proc;
	struct channel *ch;
	struct client *client;
	json_t *id;
	bool replied, exited, closed;
	int64_t status;
	int signal;
	int64_t owner; /* names the job's leases to the workers */
	json_t *lease; /* its lease set (the workers' args), or NULL */
};

static struct {
	uv_loop_t *loop;
	struct supervisor_opts o;
	int64_t started_ms;
	bool stopping;
	/* the workers; a database belongs to workers[hash(path) % n] */
	struct worker *workers;
	int nworkers;
	struct pending *pending;
	json_int_t next_wid;
	struct watched *watched;
	/* jobs */
	size_t jobs;
	struct job *job_list;
	int64_t next_owner;
	uv_timer_t lease_timer; /* renews the jobs' leases */
	uv_timer_t stop_timer;
	size_t syncing; /* final syncs in flight at shutdown */
	int exit_status;
	uv_signal_t sig_term, sig_int, sig_hup;
	struct config *reloaded; /* the configuration of the last SIGHUP */
} sv;

const char *supervisor_default_bucket(void)
{
	return sv.o.default_bucket;
}

const char *supervisor_socket_path(void)
{
	return sv.o.socket_path;
}

int64_t supervisor_uptime_ms(void)
{
	return util_now_ms() - sv.started_ms;
}

size_t supervisor_job_count(void)
{
	return sv.jobs;
}

/* A live child's peak resident set (VmHWM), KiB; 0 if unknown. */
static long supervisor_peak_rss_kb(int pid)
{
	char path[64], line[128];
	long kb = 0;
	if (pid <= 0)
		return 0;
	snprintf(path, sizeof path, "/proc/%d/status", pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return 0;
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

long supervisor_jobs_peak_rss_kb(void)
{
	struct rusage ru;
	return getrusage(RUSAGE_CHILDREN, &ru) == 0 ? ru.ru_maxrss : 0;
}

json_t *supervisor_workers_json(void)
{
	json_t *a = json_array();
	for (int i = 0; i < sv.nworkers; i++)
		json_array_append_new(
			a, json_pack("{s:i,s:i,s:I}", "pid", sv.workers[i].pid,
				     "restarts", (int)sv.workers[i].restarts,
				     "peak_rss_kb",
				     (json_int_t)supervisor_peak_rss_kb(
					     sv.workers[i].pid)));
	return a;
}

static bool supervisor_workers_alive(void)
{
	for (int i = 0; i < sv.nworkers; i++)
		if (sv.workers[i].proc)
			return true;
	return false;
}

/* The worker that owns a database: a stable hash of its path (FNV-1a). */
static struct worker *supervisor_worker_for(const char *path)
{
	uint32_t h = 2166136261u;
	for (const char *p = path ? path : ""; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	return &sv.workers[path ? h % (uint32_t)sv.nworkers : 0];
}

static void supervisor_maybe_exit(void);
static void supervisor_send_worker(struct worker *w, struct client *c,
				   json_t *request, supervisor_hook hook);

/* -------------------------------------------------------------- leases */

/* The answer to a job's lease, once every worker has it. */
struct supervisor_lease_ack {
	int64_t owner;
	json_int_t seq;
	int remaining;
};

static struct job *supervisor_job_by_owner(int64_t owner)
{
	for (struct job *jb = sv.job_list; jb; jb = jb->next)
		if (jb->owner == owner)
			return jb;
	return NULL;
}

static void supervisor_lease_acked(void *arg, json_t *msg)
{
	struct supervisor_lease_ack *a = arg;
	if (!json_object_get(msg, "ok") || --a->remaining > 0)
		return;
	struct job *jb = supervisor_job_by_owner(a->owner);
	if (jb && jb->ch) {
		json_t *m = json_pack("{s:s,s:I}", "internal", "leased", "seq",
				      a->seq);
		channel_send(jb->ch, m);
		json_decref(m);
	}
	free(a);
}

/* Send a lease set to worker w (NULL: every worker); with `ack`, count
 * the answers there. */
static void supervisor_lease_send(struct worker *w, json_t *args,
				  struct supervisor_lease_ack *ack)
{
	json_t *req = json_pack("{s:i,s:s,s:s,s:O}", "v", WRP_VERSION, "id",
				"lease", "internal", "lease", "args", args);
	for (int i = 0; req && i < sv.nworkers; i++) {
		struct worker *x = &sv.workers[i];
		if ((w && x != w) || !x->ch)
			continue;
		struct client *ic =
			ack ? client_internal(supervisor_lease_acked, ack) : NULL;
		if (ack && !ic)
			continue;
		if (ack)
			ack->remaining++;
		supervisor_send_worker(x, ic, req, NULL);
		if (ic)
			client_unref(ic);
	}
	json_decref(req);
}

/* {"internal":"lease",...} from a job (job.c). */
static void supervisor_job_lease(struct job *jb, json_t *m)
{
	json_t *files = json_object_get(m, "files");
	json_t *args = json_pack("{s:I,s:O,s:O,s:O,s:I}", "owner",
				 (json_int_t)jb->owner, "name",
				 json_object_get(m, "name"), "replica",
				 json_object_get(m, "replica"), "files", files,
				 "ttl_ms", (json_int_t)LEASE_TTL_MS);
	struct supervisor_lease_ack *a = calloc(1, sizeof *a);
	if (!args || !a || !json_is_array(files)) {
		log_warn("job %d: a malformed lease; ignored", jb->proc.pid);
		json_decref(args);
		free(a);
		return; /* the job goes on without an answer */
	}
	json_decref(jb->lease);
	jb->lease = json_array_size(files) ? json_incref(args) : NULL;
	a->owner = jb->owner;
	a->seq = json_integer_value(json_object_get(m, "seq"));
	a->remaining = 1; /* held while sending */
	supervisor_lease_send(NULL, args, a);
	json_t *done = json_pack("{s:b}", "ok", 1);
	supervisor_lease_acked(a, done);
	json_decref(done);
	json_decref(args);
}

/* Every LEASE_RENEW_MS: the leases of the jobs still running. */
static void supervisor_lease_renew(uv_timer_t *t)
{
	(void)t;
	for (struct job *jb = sv.job_list; jb; jb = jb->next)
		if (jb->lease)
			supervisor_lease_send(NULL, jb->lease, NULL);
}

/* ---------------------------------------------------------------- jobs */

static void supervisor_job_free(struct job *jb)
{
	if (!jb->exited || !jb->closed)
		return;
	if (jb->lease) { /* release it: the job is gone */
		json_object_set_new(jb->lease, "files", json_array());
		supervisor_lease_send(NULL, jb->lease, NULL);
		json_decref(jb->lease);
	}
	for (struct job **pp = &sv.job_list; *pp; pp = &(*pp)->next)
		if (*pp == jb) {
			*pp = jb->next;
			break;
		}
	if (!jb->replied) {
		json_t *r = jb->signal
			? wrp_reply_error(jb->id, WRP_E_INTERNAL,
					  "the job process was killed by signal %d (%s)",
					  jb->signal, strsignal(jb->signal))
			: wrp_reply_error(jb->id, WRP_E_INTERNAL,
					  "the job process exited with status %lld without replying",
					  (long long)jb->status);
		client_send(jb->client, r);
		json_decref(r);
	}
	client_unref(jb->client);
	json_decref(jb->id);
	free(jb);
	sv.jobs--;
	supervisor_maybe_exit();
}

static void supervisor_job_proc_closed(uv_handle_t *h)
{
	struct job *jb = h->data;
	jb->exited = true;
	supervisor_job_free(jb);
}

static void supervisor_job_exit(uv_process_t *p, int64_t status, int sig)
{
	struct job *jb = p->data;
	jb->status = status;
	jb->signal = sig;
	if (sig)
		log_warn("job %d killed by signal %d", p->pid, sig);
	uv_close((uv_handle_t *)p, supervisor_job_proc_closed);
}

static void supervisor_job_line(struct channel *ch, const char *line,
				size_t len, bool too_long)
{
	struct job *jb = ch->data;
	if (too_long)
		return;
	/* A reply carries "ok"; events do not. Forward both verbatim. */
	json_t *m = json_loadb(line, len, 0, NULL);
	const char *internal = json_string_value(json_object_get(m, "internal"));
	if (internal) { /* ours, not the client's (job.c) */
		if (strcmp(internal, "lease") == 0)
			supervisor_job_lease(jb, m);
		json_decref(m);
		return;
	}
	if (m && json_object_get(m, "ok"))
		jb->replied = true;
	json_decref(m);
	client_send_line(jb->client, line, len);
}

static void supervisor_job_ch_closed(struct channel *ch)
{
	struct job *jb = ch->data;
	jb->ch = NULL;
	jb->closed = true;
	supervisor_job_free(jb);
}

static void supervisor_fill_defaults(json_t *request)
{
	json_t *args = json_object_get(request, "args");
	if (!args) {
		args = json_object();
		json_object_set_new(request, "args", args);
	}
	if (!json_object_get(args, "bucket") && sv.o.default_bucket)
		json_object_set_new(args, "bucket",
				    json_string(sv.o.default_bucket));
}

static int supervisor_spawn(uv_process_t *proc, uv_pipe_t *pipe,
			    const char *role, uv_exit_cb on_exit)
{
	char *args[] = {(char *)sv.o.worker_exe, (char *)role, NULL};
	/* The supervisor links no SQLite, curl or OpenSSL: it stays a few
	 * megabytes; what does the work is walrust-worker. */
	uv_stdio_container_t stdio[3];
	stdio[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE | UV_WRITABLE_PIPE;
	stdio[0].data.stream = (uv_stream_t *)pipe;
	stdio[1].flags = UV_INHERIT_FD;
	stdio[1].data.fd = 2;
	stdio[2].flags = UV_INHERIT_FD;
	stdio[2].data.fd = 2;
	uv_process_options_t opt = {
		.exit_cb = on_exit,
		.file = sv.o.worker_exe,
		.args = args,
		.stdio_count = 3,
		.stdio = stdio,
	};
	return uv_spawn(sv.loop, proc, &opt);
}

void supervisor_start_job(struct client *c, json_t *request)
{
	json_t *id = json_object_get(request, "id");
	if (sv.stopping) {
		json_t *r = wrp_reply_error(id, WRP_E_SHUTTING_DOWN,
					    "walrustd is shutting down");
		client_send(c, r);
		json_decref(r);
		return;
	}
	supervisor_fill_defaults(request);
	struct job *jb = calloc(1, sizeof *jb);
	uv_pipe_t *pipe = malloc(sizeof *pipe);
	uv_pipe_init(sv.loop, pipe, 0);
	jb->proc.data = jb;
	jb->id = json_incref(id);
	jb->client = c;
	int rc = supervisor_spawn(&jb->proc, pipe, "--job", supervisor_job_exit);
	if (rc < 0) {
		json_t *r = wrp_reply_error(id, WRP_E_INTERNAL,
					    "cannot start a job process: %s",
					    uv_strerror(rc));
		client_send(c, r);
		json_decref(r);
		json_decref(jb->id);
		uv_close((uv_handle_t *)pipe, (uv_close_cb)free);
		uv_close((uv_handle_t *)&jb->proc, (uv_close_cb)free);
		return;
	}
	c->refs++;
	sv.jobs++;
	jb->owner = ++sv.next_owner;
	jb->next = sv.job_list;
	sv.job_list = jb;
	jb->ch = channel_new((uv_stream_t *)pipe, supervisor_job_line,
			     supervisor_job_ch_closed, jb);
	channel_start(jb->ch);
	channel_send(jb->ch, request);
	log_debug("job %d: %s", jb->proc.pid,
		  json_string_value(json_object_get(request, "cmd")));
}

/* -------------------------------------------------------------- worker */

static void supervisor_worker_start(struct worker *w);
static void supervisor_rewatch(struct worker *w);

static void supervisor_worker_line(struct channel *ch, const char *line,
				   size_t len, bool too_long)
{
	(void)ch;
	if (too_long)
		return;
	json_t *m = json_loadb(line, len, 0, NULL);
	json_t *id = json_object_get(m, "id");
	if (!json_is_integer(id)) {
		json_decref(m);
		return;
	}
	json_int_t wid = json_integer_value(id);
	for (struct pending **pp = &sv.pending; *pp; pp = &(*pp)->next) {
		struct pending *p = *pp;
		if (p->wid != wid)
			continue;
		json_object_set(m, "id", p->client_id);
		bool final = json_object_get(m, "ok") != NULL;
		if (final && p->hook)
			p->hook(p->request, m);
		if (p->client)
			client_send(p->client, m);
		if (final) {
			*pp = p->next;
			if (p->client)
				client_unref(p->client);
			json_decref(p->client_id);
			json_decref(p->request);
			free(p);
		}
		break;
	}
	json_decref(m);
}

static void supervisor_worker_fail_pending(struct worker *w, const char *why)
{
	for (struct pending **pp = &sv.pending; *pp;) {
		struct pending *p = *pp;
		if (p->w != w) {
			pp = &p->next;
			continue;
		}
		*pp = p->next;
		json_t *r = wrp_reply_error(p->client_id, WRP_E_INTERNAL, "%s", why);
		if (p->client) {
			client_send(p->client, r);
			client_unref(p->client);
		}
		json_decref(r);
		json_decref(p->client_id);
		json_decref(p->request);
		free(p);
	}
}

static void supervisor_worker_ch_closed(struct channel *ch)
{
	struct worker *w = ch->data;
	w->ch = NULL;
}

static void supervisor_worker_restart(uv_timer_t *t)
{
	if (!sv.stopping)
		supervisor_worker_start(t->data);
}

static void supervisor_worker_exit(uv_process_t *p, int64_t status, int sig)
{
	struct worker *w = p->data;
	uv_close((uv_handle_t *)p, (uv_close_cb)free);
	w->proc = NULL;
	w->pid = 0;
	if (w->ch)
		channel_close(w->ch);
	supervisor_worker_fail_pending(w, "the worker process exited; retry the request");
	if (sv.stopping) {
		supervisor_maybe_exit();
		return;
	}
	w->restarts++;
	uint64_t delay = 100u << (w->restarts < 6 ? w->restarts : 6);
	if (delay > 5000)
		delay = 5000;
	log_warn("worker %d exited (status %lld, signal %d); restarting in %llu ms",
		 w->index, (long long)status, sig, (unsigned long long)delay);
	uv_timer_start(&w->restart_timer, supervisor_worker_restart, delay, 0);
}

static void supervisor_worker_start(struct worker *w)
{
	uv_process_t *proc = calloc(1, sizeof *proc);
	uv_pipe_t *pipe = malloc(sizeof *pipe);
	uv_pipe_init(sv.loop, pipe, 0);
	proc->data = w;
	int rc = supervisor_spawn(proc, pipe, "--worker", supervisor_worker_exit);
	if (rc < 0) {
		log_error("cannot start a worker: %s", uv_strerror(rc));
		uv_close((uv_handle_t *)pipe, (uv_close_cb)free);
		uv_close((uv_handle_t *)proc, (uv_close_cb)free);
		w->restarts++;
		uv_timer_start(&w->restart_timer, supervisor_worker_restart,
			       1000, 0);
		return;
	}
	w->proc = proc;
	w->pid = proc->pid;
	w->ch = channel_new((uv_stream_t *)pipe, supervisor_worker_line,
			    supervisor_worker_ch_closed, w);
	channel_start(w->ch);
	log_info("worker %d started (pid %d)", w->index, proc->pid);
	supervisor_rewatch(w);
	for (struct job *jb = sv.job_list; jb; jb = jb->next)
		if (jb->lease)
			supervisor_lease_send(w, jb->lease, NULL);
}

static void supervisor_watch_hook(json_t *request, json_t *reply)
{
	if (json_object_get(reply, "ok") != json_true())
		return;
	const char *path = wrp_arg_string(json_object_get(request, "args"),
					  "database");
	const char *cmd = json_string_value(json_object_get(request, "cmd"));
	struct watched **pp = &sv.watched;
	while (*pp && strcmp((*pp)->path, path) != 0)
		pp = &(*pp)->next;
	if (strcmp(cmd, "unwatch") == 0 && *pp) {
		struct watched *w = *pp;
		*pp = w->next;
		free(w->path);
		json_decref(w->request);
		free(w);
	} else if (strcmp(cmd, "watch") == 0 && !*pp) {
		struct watched *w = calloc(1, sizeof *w);
		w->path = strdup(path);
		w->request = json_deep_copy(request);
		w->next = sv.watched;
		sv.watched = w;
	}
}

bool supervisor_watching(const char *path)
{
	for (struct watched *w = path ? sv.watched : NULL; w; w = w->next)
		if (strcmp(w->path, path) == 0)
			return true;
	return false;
}

static void supervisor_send_worker(struct worker *w, struct client *c,
				   json_t *request, supervisor_hook hook)
{
	struct pending *p = calloc(1, sizeof *p);
	p->w = w;
	p->wid = ++sv.next_wid;
	p->client_id = json_incref(json_object_get(request, "id"));
	p->client = c;
	p->request = json_incref(request);
	p->hook = hook;
	if (c)
		c->refs++;
	p->next = sv.pending;
	sv.pending = p;
	json_t *copy = json_copy(request);
	json_object_set_new(copy, "id", json_integer(p->wid));
	channel_send(w->ch, copy);
	json_decref(copy);
}

static void supervisor_reply_error(struct client *c, json_t *id,
				   const char *code, const char *msg)
{
	json_t *r = wrp_reply_error(id, code, "%s", msg);
	client_send(c, r);
	json_decref(r);
}

void supervisor_to_worker(struct client *c, json_t *request,
			  supervisor_hook hook)
{
	json_t *id = json_object_get(request, "id");
	const char *path = wrp_arg_string(json_object_get(request, "args"),
					  "database");
	struct worker *w = supervisor_worker_for(path);
	if (sv.stopping || !w->ch) {
		supervisor_reply_error(c, id,
				       sv.stopping ? WRP_E_SHUTTING_DOWN
						   : WRP_E_INTERNAL,
				       sv.stopping ? "walrustd is shutting down"
						   : "the worker is restarting; retry");
		return;
	}
	supervisor_fill_defaults(request);
	const char *cmd = json_string_value(json_object_get(request, "cmd"));
	if (!hook && cmd &&
	    (strcmp(cmd, "watch") == 0 || strcmp(cmd, "unwatch") == 0))
		hook = supervisor_watch_hook;
	supervisor_send_worker(w, c, request, hook);
}

/* status: every worker's databases, merged into one reply. */
struct supervisor_fanout {
	struct client *client;
	json_t *id;
	json_t *databases;
	int remaining;
	supervisor_hook hook;
	json_t *request;
};

static void supervisor_fanout_reply(void *arg, json_t *msg)
{
	struct supervisor_fanout *f = arg;
	json_t *ok = json_object_get(msg, "ok");
	if (!ok)
		return;
	json_t *dbs = json_object_get(json_object_get(msg, "result"),
				      "databases");
	if (ok == json_true() && json_is_array(dbs))
		json_array_extend(f->databases, dbs);
	if (--f->remaining > 0)
		return;
	json_t *reply = wrp_reply_ok(f->id, json_pack("{s:O}", "databases",
						      f->databases));
	if (f->hook)
		f->hook(f->request, reply);
	client_send(f->client, reply);
	json_decref(reply);
	client_unref(f->client);
	json_decref(f->id);
	json_decref(f->databases);
	json_decref(f->request);
	free(f);
}

void supervisor_to_all_workers(struct client *c, json_t *request,
			       supervisor_hook hook)
{
	struct supervisor_fanout *f = calloc(1, sizeof *f);
	f->client = c;
	c->refs++;
	f->id = json_incref(json_object_get(request, "id"));
	f->databases = json_array();
	f->hook = hook;
	f->request = json_incref(request);
	f->remaining = 1; /* held while sending */
	for (int i = 0; i < sv.nworkers; i++) {
		if (!sv.workers[i].ch)
			continue;
		struct client *ic = client_internal(supervisor_fanout_reply, f);
		f->remaining++;
		supervisor_send_worker(&sv.workers[i], ic, request, NULL);
		client_unref(ic);
	}
	json_t *done = json_pack("{s:b}", "ok", 1);
	supervisor_fanout_reply(f, done);
	json_decref(done);
}

/* A new worker gets its watched databases again; it resumes each from the
 * replica's position (db.c), so a worker restart loses nothing. */
static void supervisor_rewatch(struct worker *w)
{
	for (struct watched *wd = sv.watched; wd; wd = wd->next)
		if (supervisor_worker_for(wd->path) == w)
			supervisor_send_worker(w, NULL, wd->request, NULL);
}

/* ------------------------------------------------------------ shutdown */

static void supervisor_close_walk(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

static void supervisor_maybe_exit(void)
{
	if (!sv.stopping || sv.jobs > 0 || supervisor_workers_alive())
		return;
	uv_stop(sv.loop);
}

static void supervisor_stop_timeout(uv_timer_t *t)
{
	(void)t;
	log_warn("jobs still running after the grace period; stopping them");
	for (int i = 0; i < sv.nworkers; i++)
		if (sv.workers[i].proc)
			uv_process_kill(sv.workers[i].proc, SIGKILL);
	/* Jobs are in the process group? No: kill them one by one. */
	uv_stop(sv.loop);
}

static void supervisor_shutdown_now(void);

static void supervisor_final_synced(void *arg, json_t *msg)
{
	const char *path = arg;
	json_t *ok = json_object_get(msg, "ok");
	if (!ok)
		return;
	if (ok != json_true())
		log_warn("final sync of %s failed: %s", path,
			 json_string_value(json_object_get(
				 json_object_get(msg, "error"), "message")));
	if (--sv.syncing == 0)
		supervisor_shutdown_now();
}

/* SIGTERM, shutdown, the application's exit: a final sync of every watched
 * database (bounded by its timeout), then stop. */
void supervisor_shutdown(void)
{
	if (sv.stopping)
		return;
	if (sv.syncing) {
		/* Asked again during the final sync: stop now. */
		log_warn("stopping before the final sync completed");
		supervisor_shutdown_now();
		return;
	}
	watchlist_stop();
	if (sv.watched && supervisor_workers_alive()) {
		int64_t timeout = 10000; /* without a configuration file */
		if (sv.o.config)
			timeout = sv.o.config->shutdown_sync_timeout_ms;
		log_info("final sync before shutting down");
		for (struct watched *w = sv.watched; w; w = w->next) {
			json_t *req = json_pack(
				"{s:i,s:s,s:s,s:{s:s,s:b,s:I}}", "v", WRP_VERSION,
				"id", "final-sync", "cmd", "sync", "args",
				"database", w->path, "wait", 1, "timeout_ms",
				(json_int_t)timeout);
			struct client *c = client_internal(supervisor_final_synced,
							   w->path);
			struct worker *wk = supervisor_worker_for(w->path);
			if (wk->ch) {
				sv.syncing++;
				supervisor_send_worker(wk, c, req, NULL);
			}
			client_unref(c);
			json_decref(req);
		}
		if (sv.syncing)
			return;
	}
	supervisor_shutdown_now();
}

void supervisor_exit(int status)
{
	sv.exit_status = status;
	supervisor_shutdown();
}

static void supervisor_shutdown_now(void)
{
	if (sv.stopping)
		return;
	sv.stopping = true;
	log_info("shutting down");
	control_stop();
	for (int i = 0; i < sv.nworkers; i++) {
		struct worker *w = &sv.workers[i];
		uv_timer_stop(&w->restart_timer);
		if (w->ch)
			channel_close(w->ch); /* the worker exits on EOF */
		if (w->proc)
			uv_process_kill(w->proc, SIGTERM);
	}
	uv_timer_start(&sv.stop_timer, supervisor_stop_timeout, 60000, 0);
	supervisor_maybe_exit();
}

/* SIGHUP: read the configuration file again and apply its databases
 * (watchlist_reload). The rest (socket, workers, exec, log level, default
 * replica) needs a restart; a file that does not parse changes nothing. */
static void supervisor_reload(void)
{
	if (!sv.o.config_path || !sv.o.config) {
		log_info("SIGHUP: no configuration file to reload");
		return;
	}
	struct config *c = NULL;
	char *err = NULL;
	if (config_load(&c, sv.o.config_path, sv.o.expand_env, &err) < 0) {
		log_error("SIGHUP: %s; keeping the running configuration",
			  err ? err : "bad configuration");
		free(err);
		return;
	}
	for (size_t i = 0; i < c->nwarnings; i++)
		log_warn("%s", c->warnings[i]);
	log_info("SIGHUP: reloading %s (%zu database entries)",
		 sv.o.config_path, c->ndbs);
	watchlist_reload(c);
	/* Nothing points into the previous one now. The first belongs to
	 * main; reloaded ones are ours. */
	if (sv.reloaded)
		config_free(sv.reloaded);
	sv.reloaded = c;
	sv.o.config = c;
}

static void supervisor_on_signal(uv_signal_t *s, int signum)
{
	(void)s;
	if (exec_forward_signal(signum))
		return; /* the application's exit stops us */
	if (signum == SIGHUP) {
		supervisor_reload();
		return;
	}
	supervisor_shutdown();
}

/* The configured databases are restored and watched: start the app. */
static void supervisor_ready(void)
{
	if (sv.o.exec && exec_start(sv.loop, sv.o.exec,
				    sv.o.config ? sv.o.config->shutdown_sync_timeout_ms
						: 30000) < 0)
		supervisor_exit(1);
}

int supervisor_main(const struct supervisor_opts *o)
{
	char *err = NULL;
	sv.o = *o;
	sv.loop = uv_default_loop();
	sv.started_ms = util_now_ms();
	signal(SIGPIPE, SIG_IGN);
	sv.nworkers = o->workers > 0 ? o->workers : 1;
	sv.workers = calloc((size_t)sv.nworkers, sizeof *sv.workers);
	for (int i = 0; i < sv.nworkers; i++) {
		sv.workers[i].index = i;
		uv_timer_init(sv.loop, &sv.workers[i].restart_timer);
		sv.workers[i].restart_timer.data = &sv.workers[i];
	}
	uv_timer_init(sv.loop, &sv.stop_timer);
	uv_timer_init(sv.loop, &sv.lease_timer);
	uv_timer_start(&sv.lease_timer, supervisor_lease_renew, LEASE_RENEW_MS,
		       LEASE_RENEW_MS);
	uv_signal_init(sv.loop, &sv.sig_term);
	uv_signal_init(sv.loop, &sv.sig_int);
	uv_signal_init(sv.loop, &sv.sig_hup);
	uv_signal_start(&sv.sig_term, supervisor_on_signal, SIGTERM);
	uv_signal_start(&sv.sig_int, supervisor_on_signal, SIGINT);
	uv_signal_start(&sv.sig_hup, supervisor_on_signal, SIGHUP);
	if (control_listen(sv.loop, o->socket_path, &err) < 0) {
		log_error("%s", err);
		free(err);
		return 1;
	}
	for (int i = 0; i < sv.nworkers; i++)
		supervisor_worker_start(&sv.workers[i]);
	log_info("walrustd %s listening on %s (default replica %s)",
		 WALRUST_VERSION, o->socket_path, o->default_bucket);
	watchlist_start(sv.loop, o->config, o->default_bucket,
			supervisor_ready);
	uv_run(sv.loop, UV_RUN_DEFAULT);
	control_stop();
	uv_walk(sv.loop, supervisor_close_walk, NULL);
	uv_run(sv.loop, UV_RUN_DEFAULT);
	config_free(sv.reloaded);
	log_info("stopped");
	return sv.exit_status;
}
