/* cmd-status.c: `status`, the daemon's processes and state. Supervisor. */
#include "config.h"

#include <unistd.h>

#include "daemon.h"

static void cmd_status_run(struct client *c, json_t *req)
{
	json_t *res = json_pack(
		"{s:s,s:i,s:I,s:s,s:s,s:o,s:I,s:[]}", "version", WALRUST_VERSION,
		"pid", (int)getpid(), "uptime_ms",
		(json_int_t)supervisor_uptime_ms(), "socket",
		supervisor_socket_path(), "default_bucket",
		supervisor_default_bucket(), "workers", supervisor_workers_json(),
		"jobs", (json_int_t)supervisor_job_count(), "databases");
	json_t *r = wrp_reply_ok(json_object_get(req, "id"), res);
	client_send(c, r);
	json_decref(r);
}

const struct cmd cmd_status = {
	.name = "status", .where = CMD_SUPERVISOR, .run = cmd_status_run};
