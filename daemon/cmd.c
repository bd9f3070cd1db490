/* cmd.c: the command table and the supervisor's dispatcher. Each command is
 * one entry defined in its own cmd-<name>.c; the protocol-level shape of
 * its arguments is in proto/wrp.c's table, checked before we get here. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"

static const struct cmd *const cmd_table[] = {
	&cmd_hello, &cmd_status, &cmd_shutdown,
	&cmd_snapshot, &cmd_restore, &cmd_list,
	&cmd_watch, &cmd_unwatch, &cmd_sync,
};

const struct cmd *cmd_find(const char *name)
{
	for (size_t i = 0; i < sizeof cmd_table / sizeof cmd_table[0]; i++)
		if (strcmp(cmd_table[i]->name, name) == 0)
			return cmd_table[i];
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
	const struct cmd *cmd = cmd_find(wc->name);
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
		if (cmd->start &&
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

int cmd_open_storage(uv_loop_t *loop, json_t *args, struct storage **out,
		     const char **code, char **err)
{
	const char *bucket = wrp_arg_string(args, "bucket");
	json_t *aws = json_object_get(args, "aws");
	struct storage_opts o = {0};
	o.endpoint = wrp_arg_string(args, "endpoint");
	if (json_is_object(aws)) {
		if (!o.endpoint)
			o.endpoint = wrp_arg_string(aws, "endpoint_url");
		o.region = wrp_arg_string(aws, "region");
		o.access_key_id = wrp_arg_string(aws, "access_key_id");
		o.secret_access_key = wrp_arg_string(aws, "secret_access_key");
		o.session_token = wrp_arg_string(aws, "session_token");
	}
	if (o.endpoint && !*o.endpoint)
		o.endpoint = NULL;
	if (!bucket || !*bucket) {
		*code = WRP_E_INVALID;
		return util_err(err, -EINVAL, "no bucket given and no default replica");
	}
	int rc = storage_new(out, loop, bucket, &o, err);
	if (rc < 0)
		*code = rc == -EINVAL ? WRP_E_INVALID : storage_error_code(rc);
	return rc;
}
