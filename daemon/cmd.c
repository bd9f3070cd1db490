/* cmd.c: the supervisor's dispatcher: where each command runs. The
 * protocol-level shape of its arguments is in proto/wrp.c's table, checked
 * before we get here; what a command does is in its cmd-<name>.c, run by
 * the supervisor itself (hello, status, shutdown) or by a worker or job
 * process (cmd-table.c). The supervisor binary links none of the latter,
 * nor their libraries (SQLite, curl, OpenSSL, LZ4), which keeps it small. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"

static const struct cmd_route {
	const char *name;
	enum cmd_where where;
	void (*run)(struct client *c, json_t *request); /* CMD_SUPERVISOR */
	bool watched_to_worker; /* CMD_JOB: a watched database's goes to
				   the worker (see cmd-snapshot.c) */
} cmd_routes[] = {
	{"hello", CMD_SUPERVISOR, cmd_hello_run, false},
	{"status", CMD_SUPERVISOR, cmd_status_run, false},
	{"shutdown", CMD_SUPERVISOR, cmd_shutdown_run, false},
	{"snapshot", CMD_JOB, NULL, true},
	{"restore", CMD_JOB, NULL, false},
	{"list", CMD_WORKER, NULL, false},
	{"watch", CMD_WORKER, NULL, false},
	{"unwatch", CMD_WORKER, NULL, false},
	{"sync", CMD_WORKER, NULL, false},
};

static const struct cmd_route *cmd_route(const char *name)
{
	for (size_t i = 0; i < sizeof cmd_routes / sizeof cmd_routes[0]; i++)
		if (strcmp(cmd_routes[i].name, name) == 0)
			return &cmd_routes[i];
	return NULL;
}

static bool cmd_blank(const char *line, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (line[i] != ' ' && line[i] != '\t' && line[i] != '\r')
			return false;
	return true;
}

void cmd_dispatch(struct client *c, const char *line, size_t len,
		  bool too_long)
{
	json_t *reply = NULL, *req = NULL;
	if (too_long) {
		reply = wrp_reply_error(json_null(), WRP_E_TOO_LONG,
					"request line longer than %d bytes",
					WRP_MAX_LINE);
		goto out;
	}
	if (cmd_blank(line, len))
		return;
	const struct wrp_command *wc;
	req = wrp_parse_request(line, len, &wc, &reply);
	if (!req)
		goto out;
	const struct cmd_route *cmd = cmd_route(wc->name);
	if (!cmd) {
		reply = wrp_reply_error(json_object_get(req, "id"),
					WRP_E_UNKNOWN_CMD,
					"command %s is not implemented by this daemon",
					wc->name);
		goto out;
	}
	switch (cmd->where) {
	case CMD_SUPERVISOR:
		cmd->run(c, req);
		break;
	case CMD_WORKER:
		supervisor_to_worker(c, req, NULL);
		break;
	case CMD_JOB:
		/* A watched database is the worker's (see cmd-snapshot.c). */
		if (cmd->watched_to_worker &&
		    supervisor_watching(wrp_arg_string(
			    json_object_get(req, "args"), "database")))
			supervisor_to_worker(c, req, NULL);
		else
			supervisor_start_job(c, req);
		break;
	}
out:
	if (reply)
		client_send(c, reply);
	json_decref(reply);
	json_decref(req);
}
