/* cmd-sync.c: `sync`: a durability barrier. The reply comes once every
 * transaction committed before the request is in the replica (or at once
 * with wait=false, after starting a capture). */
#include "config.h"

#include <errno.h>

#include "daemon.h"

static void cmd_sync_done(void *arg, int status, uint64_t txid, const char *why)
{
	struct worker_req *r = arg;
	if (status == -ETIMEDOUT) {
		worker_fail(r, WRP_E_TIMEOUT,
			    "timed out: the replica holds txid %llu, not yet everything committed before the request",
			    (unsigned long long)txid);
		return;
	}
	if (status < 0) {
		worker_fail(r, WRP_E_IO, "sync interrupted: %s",
			    why ? why : "stopped");
		return;
	}
	const char *path = wrp_arg_string(r->args, "database");
	struct db *d = worker_db_find(path);
	json_t *st = d ? db_status(d) : NULL;
	worker_reply(r, json_pack("{s:s,s:s,s:I,s:I}", "name",
				  d ? db_name(d) : "", "database", path, "txid",
				  (json_int_t)txid, "lag_ms",
				  st ? json_integer_value(json_object_get(st, "lag_ms"))
				     : 0));
	json_decref(st);
}

static void cmd_sync_start(struct worker_req *r)
{
	const char *path = wrp_arg_string(r->args, "database");
	struct db *d = worker_db_find(path);
	if (!d) {
		worker_fail(r, WRP_E_NOT_FOUND, "%s is not watched", path);
		return;
	}
	bool wait = wrp_arg_bool(r->args, "wait", true);
	if (!wait) {
		db_sync(d, 1, NULL, NULL);
		cmd_sync_done(r, 0, db_txid(d), NULL);
		return;
	}
	db_sync(d, wrp_arg_int(r->args, "timeout_ms", 0), cmd_sync_done, r);
}

const struct cmd cmd_sync = {
	.name = "sync", .start = cmd_sync_start};
