/* cmd-status.c: `status`: the daemon's processes and, from each worker
 * (worker_status in worker.c), each watched database's position, lag and
 * last error. */
#include "config.h"

#include <unistd.h>

#include "daemon.h"

json_t *supervisor_status(json_t *databases)
{
	return json_pack("{s:s,s:i,s:I,s:s,s:s,s:o,s:I,s:I,s:o}", "version",
			 WALRUST_VERSION, "pid", (int)getpid(), "uptime_ms",
			 (json_int_t)supervisor_uptime_ms(), "socket",
			 supervisor_socket_path(), "default_bucket",
			 supervisor_default_bucket(), "workers",
			 supervisor_workers_json(), "jobs",
			 (json_int_t)supervisor_job_count(), "jobs_peak_rss_kb",
			 (json_int_t)supervisor_jobs_peak_rss_kb(), "databases",
			 databases ? databases : json_array());
}

/* Supervisor: merge the worker's databases into the full result. */
static void cmd_status_hook(json_t *request, json_t *reply)
{
	(void)request;
	json_t *res = json_object_get(reply, "result");
	if (!json_is_object(res))
		return; /* an error reply passes through */
	json_t *dbs = json_incref(json_object_get(res, "databases"));
	json_object_set_new(reply, "result", supervisor_status(dbs));
}

void cmd_status_run(struct client *c, json_t *req)
{
	supervisor_to_all_workers(c, req, cmd_status_hook);
}
