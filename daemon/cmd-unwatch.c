/* cmd-unwatch.c: `unwatch`: a final capture and upload, then stop. */
#include "config.h"

#include "daemon.h"

static void cmd_unwatch_start(struct worker_req *r)
{
	const char *path = wrp_arg_string(r->args, "database");
	struct db *d = worker_db_find(path);
	if (!d) {
		worker_fail(r, WRP_E_NOT_FOUND, "%s is not watched", path);
		return;
	}
	json_t *res = json_pack("{s:s,s:s,s:I}", "name", db_name(d), "database",
				db_path(d), "txid", (json_int_t)db_txid(d));
	worker_db_stop(d);
	worker_reply(r, res);
}

const struct cmd cmd_unwatch = {
	.name = "unwatch", .start = cmd_unwatch_start};
