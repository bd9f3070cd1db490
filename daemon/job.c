/* job.c: a one-shot job process (`walrust-worker --job`). The supervisor spawns
 * one per snapshot or restore, so a crash, a hang or an out-of-memory in a
 * job cannot stop replication or other clients. Protocol on fd 0 (a socket
 * pair with the supervisor): one request line in; event lines and exactly
 * one reply line out, in the wire format, forwarded verbatim to the client.
 * The job runs its own loop; storage "_wait" calls drive it.
 *
 * Internal lines (never forwarded to the client; see lease.c): a job that
 * reads a replica's files leases them with
 *   job -> supervisor  {"internal":"lease","seq":S,"name":N,"replica":R,
 *                       "files":[[level,min,max],...]}
 * (replacing its previous set; "files":[] releases it), and the supervisor
 * answers, once every worker has the set,
 *   supervisor -> job  {"internal":"leased","seq":S}
 * No other line ever comes in after the request. */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"
#include "lease.h"

/* How long a job waits for the workers to have its lease. Past that it
 * goes on unprotected: a file deleted under it is then planned around. */
#define JOB_LEASE_WAIT_MS 10000

static void job_write(const json_t *msg)
{
	size_t len;
	char *line = wrp_encode(msg, &len);
	if (line)
		util_write_all(0, line, len);
	free(line);
}

void job_event(struct job_ctx *j, const char *event, json_t *data)
{
	json_t *ev = wrp_event(j->id, event, data);
	job_write(ev);
	json_decref(ev);
}

int job_fail(struct job_ctx *j, int rc, const char *code, const char *fmt, ...)
{
	if (!j->code) {
		va_list ap;
		va_start(ap, fmt);
		char *m = NULL;
		if (vasprintf(&m, fmt, ap) < 0)
			m = NULL;
		va_end(ap);
		j->code = code;
		j->message = m;
	}
	return rc < 0 ? rc : -EIO;
}

int job_open_storage(struct job_ctx *j, json_t *args, struct storage **out)
{
	const char *code = WRP_E_STORAGE;
	char *err = NULL;
	int rc = storage_open_args(j->loop, args, out, &code, &err);
	if (rc < 0)
		job_fail(j, rc, code, "%s", err ? err : "cannot open storage");
	free(err);
	return rc;
}

/* Read one line from fd 0 (the request, or the answer to a lease), a byte
 * at a time so that nothing after it is consumed; with a deadline (ms
 * since the epoch; 0: none), NULL once it passed. */
static char *job_read_line(size_t *len, int64_t deadline_ms)
{
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap);
	while (buf) {
		if (deadline_ms) {
			int64_t left = deadline_ms - util_now_ms();
			struct pollfd p = {.fd = 0, .events = POLLIN};
			int pr = left > 0 ? poll(&p, 1, (int)left) : 0;
			if (pr < 0 && errno == EINTR)
				continue;
			if (pr <= 0)
				break;
		}
		if (n + 1 >= cap) {
			if (cap >= WRP_MAX_LINE * 2u)
				break;
			char *nb = realloc(buf, cap * 2);
			if (!nb)
				break;
			buf = nb;
			cap *= 2;
		}
		ssize_t r = read(0, buf + n, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		if (buf[n] == '\n') {
			buf[n] = '\0';
			*len = n;
			return buf;
		}
		n++;
	}
	free(buf);
	return NULL;
}

int job_lease(struct job_ctx *j, const char *name, const char *replica,
	      const struct retention_lease *l, size_t n)
{
	unsigned seq = ++j->lease_seq;
	json_t *files = lease_json(l, n);
	json_t *m = files ? json_pack("{s:s,s:I,s:s,s:s,s:o}", "internal",
				      "lease", "seq", (json_int_t)seq, "name",
				      name, "replica", replica, "files", files)
			  : NULL;
	if (!m)
		return -ENOMEM;
	job_write(m);
	json_decref(m);
	int64_t deadline = util_now_ms() + JOB_LEASE_WAIT_MS;
	for (;;) {
		size_t len;
		char *line = job_read_line(&len, deadline);
		if (!line) {
			log_warn("no answer to a lease on \"%s\" in %d ms; going on",
				 name, JOB_LEASE_WAIT_MS);
			return -ETIMEDOUT;
		}
		json_t *a = json_loadb(line, len, 0, NULL);
		free(line);
		const char *what = json_string_value(json_object_get(a, "internal"));
		bool ours = what && strcmp(what, "leased") == 0 &&
			    json_integer_value(json_object_get(a, "seq")) ==
				    (json_int_t)seq;
		json_decref(a);
		if (ours) /* else the answer to an earlier lease, late */
			return 0;
	}
}

static void job_close_walk(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

int job_main(void)
{
	size_t len;
	char *line = job_read_line(&len, 0);
	if (!line) {
		log_error("no request on the job channel");
		return 1;
	}
	const struct wrp_command *wc;
	json_t *reply = NULL, *result = NULL;
	json_t *req = wrp_parse_request(line, len, &wc, &reply);
	free(line);
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct job_ctx j = {.loop = &loop};
	if (req) {
		j.id = json_object_get(req, "id");
		const struct cmd *cmd = cmd_find(wc->name);
		json_t *args = json_object_get(req, "args");
		if (!args) {
			json_object_set_new(req, "args", json_object());
			args = json_object_get(req, "args");
		}
		int rc = cmd && cmd->exec ? cmd->exec(&j, args, &result)
					  : job_fail(&j, -ENOSYS, WRP_E_INTERNAL,
						     "not a job command");
		if (rc == 0 && result)
			reply = wrp_reply_ok(j.id, result);
		else
			reply = wrp_reply_error(j.id,
						j.code ? j.code : WRP_E_INTERNAL,
						"%s",
						j.message ? j.message
							  : "job failed");
	}
	job_write(reply);
	json_decref(reply);
	json_decref(req);
	free(j.message);
	uv_walk(&loop, job_close_walk, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	return 0;
}
