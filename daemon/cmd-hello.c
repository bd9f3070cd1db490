/* cmd-hello.c: `hello`, the version handshake. Runs in the supervisor. */
#include "config.h"

#include <unistd.h>

#include "daemon.h"

void cmd_hello_run(struct client *c, json_t *req)
{
	json_t *r = wrp_reply_ok(json_object_get(req, "id"),
				 json_pack("{s:s,s:i,s:i}", "version",
					   WALRUST_VERSION, "protocol",
					   WRP_VERSION, "pid", (int)getpid()));
	client_send(c, r);
	json_decref(r);
}

