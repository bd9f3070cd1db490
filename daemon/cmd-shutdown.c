/* cmd-shutdown.c: `shutdown`: reply, then stop the daemon the way SIGTERM
 * does (running jobs finish first). Supervisor. */
#include "config.h"

#include "daemon.h"

void cmd_shutdown_run(struct client *c, json_t *req)
{
	json_t *r = wrp_reply_ok(json_object_get(req, "id"), json_object());
	client_send(c, r);
	json_decref(r);
	supervisor_shutdown();
}

