/* cmd-snapshot.c: `snapshot`. A database that is not watched gets a
 * one-shot job process (snapshot.c). A watched one is snapshotted by the
 * worker that replicates it (db_snapshot), so that its TXIDs come from one
 * writer only: a second writer interleaving TXIDs on one replica path is a
 * known way to lose data. */
#include "config.h"

#include <stdlib.h>

#include "daemon.h"

static void cmd_snapshot_done(void *arg, int status, uint64_t txid,
			      uint64_t bytes, uint32_t pages,
			      uint32_t page_size, const char *err)
{
	struct worker_req *r = arg;
	const char *path = wrp_arg_string(r->args, "database");
	struct db *d = worker_db_find(path);
	if (status < 0 || !d) {
		worker_fail(r, WRP_E_STORAGE, "snapshot of %s failed: %s", path,
			    err ? err : "stopped watching");
		return;
	}
	json_t *st = db_status(d);
	struct storage *s = db_storage(d);
	char *rel = replica_key(storage_kind(s), db_name(d),
				REPLICA_SNAPSHOT_LEVEL, 1, txid);
	char *key = storage_object_name(s, rel);
	free(rel);
	char ts[48];
	util_rfc3339_ms(util_now_ms(), ts, sizeof ts);
	worker_reply(r, json_pack("{s:s,s:s,s:O,s:I,s:s,s:I,s:I,s:I,s:s,s:b,s:[]}",
				  "name", db_name(d), "database", path,
				  "bucket", json_object_get(st, "bucket"),
				  "txid", (json_int_t)txid, "key", key,
				  "pages", (json_int_t)pages, "page_size",
				  (json_int_t)page_size, "bytes", (json_int_t)bytes,
				  "timestamp", ts, "wal_mode", 1, "warnings"));
	free(key);
	json_decref(st);
}

static void cmd_snapshot_start(struct worker_req *r)
{
	const char *path = wrp_arg_string(r->args, "database");
	struct db *d = worker_db_find(path);
	if (!d) {
		worker_fail(r, WRP_E_NOT_FOUND, "%s is not watched", path);
		return;
	}
	db_snapshot(d, cmd_snapshot_done, r);
}

const struct cmd cmd_snapshot = {
	.name = "snapshot", .exec = snapshot_run,
	.start = cmd_snapshot_start};
