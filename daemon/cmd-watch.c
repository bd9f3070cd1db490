/* cmd-watch.c: `watch`: start continuous replication of a database in the
 * worker (db.c). Idempotent: an already watched database reports its
 * state. The supervisor remembers the request to replay it if the worker
 * restarts. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"

static void cmd_watch_start(struct worker_req *r)
{
	const char *path = wrp_arg_string(r->args, "database");
	if (path[0] != '/') {
		worker_fail(r, WRP_E_INVALID, "database path must be absolute: %s",
			    path);
		return;
	}
	struct db *d = worker_db_find(path);
	const char *want = storage_describe(r->storage);
	if (d) {
		json_t *st = db_status(d);
		const char *have = json_string_value(json_object_get(st, "bucket"));
		bool other = strcmp(have, want) != 0;
		json_decref(st);
		if (other) {
			worker_fail(r, WRP_E_INVALID,
				    "%s is already watched with another replica; unwatch it first",
				    path);
			return;
		}
	} else {
		const char *given = wrp_arg_string(r->args, "name");
		char *name = given ? strdup(given) : replica_name_from_path(path);
		struct db *clash = name ? worker_db_find_name(name, want) : NULL;
		free(name);
		if (clash) {
			worker_fail(r, WRP_E_INVALID,
				    "%s has the same name as the watched %s in %s: two databases cannot share one replica path",
				    path, db_path(clash), want);
			return;
		}
	}
	if (!d) {
		/* One storage (one connection pool) for all the databases
		 * replicated to the same place. */
		struct storage *shared = worker_storage_shared(r->args);
		if (shared) {
			storage_free(r->storage);
			r->storage = shared;
		}
		char *err = NULL;
		int rc = db_new(&d, r->storage->loop, path,
				wrp_arg_string(r->args, "name"), r->storage, r->args,
				wrp_arg_int(r->args, "sync_interval_ms", 1000),
				&err);
		if (rc < 0) {
			worker_fail(r, rc == -ENOENT  ? WRP_E_NOT_FOUND
				       : rc == -EINVAL ? WRP_E_INVALID
						       : WRP_E_IO,
				    "cannot watch %s: %s", path,
				    err ? err : "error");
			free(err);
			return;
		}
		r->storage = NULL; /* now the db's */
		worker_db_add(d);
	}
	json_t *st = db_status(d);
	worker_reply(r, json_pack("{s:O,s:O,s:O,s:O,s:O}", "name",
				  json_object_get(st, "name"), "database",
				  json_object_get(st, "database"), "bucket",
				  json_object_get(st, "bucket"), "txid",
				  json_object_get(st, "txid"), "state",
				  json_object_get(st, "state")));
	json_decref(st);
}

const struct cmd cmd_watch = {
	.name = "watch", .start = cmd_watch_start,
	.storage = true};
