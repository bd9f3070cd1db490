/* lease.c: the leases that keep a replica's files alive while a restore
 * reads them (replication.md, failure mode 12).
 *
 * THE PROBLEM
 *
 * A restore lists the replica, plans a chain of files (a snapshot, then
 * the files after it) and downloads them, which may take minutes. Meanwhile
 * the worker replicating that database runs retention (db.c, retention.c):
 * it deletes L0 files once an L1 file covering them is older than
 * l0-retention, and upper levels once a snapshot old enough replaces them.
 * Without protection the restore's download of a planned file then fails
 * (404), and a restore that reported that as a broken chain would blame the
 * replica for what is only a race.
 *
 * THE LEASE
 *
 * A lease names files a reader needs: (level, min TXID, max TXID), or a
 * TXID range at every level (level -1), on one database of one replica
 * (name + storage_describe(), the same two things that identify a watched
 * database), with an expiry. retention_plan never deletes a file a live
 * lease covers (retention.c, "LEASES"). A lease may cover more than the
 * reader needs; that only delays a deletion.
 *
 * WHO HOLDS WHAT
 *
 *  restore job   after planning, sends its plan's files as leases on its
 *                channel to the supervisor (job_lease: one range per
 *                level; while it reads the timestamps of a point-in-time
 *                restore, one range over every level), and waits until
 *                the supervisor says the workers have it;
 *  supervisor    keeps each job's current lease set, sends it to every
 *                worker (a worker ignores leases on databases it does not
 *                replicate: they never match), answers the job once every
 *                live worker acknowledged, renews the set every
 *                LEASE_RENEW_MS while the job process lives, gives it to a
 *                restarted worker, and releases it (an empty set) when the
 *                job process has exited, whatever way it ended;
 *  worker        keeps the table below (one entry per job, replaced by each
 *                message, expiring LEASE_TTL_MS after the last one) and
 *                hands the live leases of a database to retention_plan.
 *
 * So a lease outlives a job only by LEASE_TTL_MS when a release is lost
 * (the worker restarted with a stale table, say), and a job that hangs
 * holds its files for as long as it hangs, which is what it asked for.
 *
 * THE RACE BETWEEN LISTING AND LEASING
 *
 * Between the restore's listing and the moment its lease reaches the
 * worker, retention may still delete a planned file (or have a deletion in
 * flight). The restore closes that on its side: a planned file that is
 * missing when downloaded (404) is a reason to list and plan again (with
 * the lease in place, the new plan is protected), never a gap or checksum
 * error; only when files keep disappearing (RESTORE_REPLANS times) does it
 * fail, with a storage error that says so. (Planned L0 files are those no
 * listed L1 file covers, so retention, which deletes L0 files only once an
 * L1 file covers them, cannot have been deleting them at listing time;
 * the re-plan is for the rest: snapshot retention, another replicator.)
 *
 * Compaction needs no lease: the worker never runs retention while it
 * compacts a database, and a compaction never plans a file whose deletion
 * has started (db.c forgets files when their deletion starts).
 *
 * This file is the worker's table, pure (no loop), with the wire form of a
 * lease set. The messages themselves are described in job.c, supervisor.c
 * and worker.c.
 *
 * If the table cannot allocate, the worker gets no leases and may delete
 * what a restore needs: the restore then plans again, as above. Deleting
 * nothing would be the other safe choice, but a worker that fails to
 * allocate has worse problems than retention.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lease.h"

static void lease_entry_clear(struct lease_entry *e)
{
	free(e->name);
	free(e->replica);
	free(e->l);
}

static void lease_table_remove(struct lease_table *t, size_t i)
{
	lease_entry_clear(&t->e[i]);
	t->e[i] = t->e[--t->n];
}

int lease_table_set(struct lease_table *t, int64_t owner, const char *name,
		    const char *replica, const struct retention_lease *l,
		    size_t n, int64_t until_ms)
{
	size_t i = 0;
	while (i < t->n && t->e[i].owner != owner)
		i++;
	if (n == 0) {
		if (i < t->n)
			lease_table_remove(t, i);
		return 0;
	}
	struct lease_entry e = {.owner = owner, .n = n, .until_ms = until_ms};
	e.name = strdup(name);
	e.replica = strdup(replica);
	e.l = malloc(n * sizeof *e.l);
	if (!e.name || !e.replica || !e.l)
		goto nomem;
	memcpy(e.l, l, n * sizeof *e.l);
	for (size_t k = 0; k < n; k++)
		e.l[k].until_ms = until_ms;
	if (i == t->n && t->n == t->cap) {
		size_t nc = t->cap ? t->cap * 2 : 8;
		struct lease_entry *ne = realloc(t->e, nc * sizeof *ne);
		if (!ne)
			goto nomem;
		t->e = ne;
		t->cap = nc;
	}
	if (i < t->n)
		lease_entry_clear(&t->e[i]);
	else
		t->n++;
	t->e[i] = e;
	return 0;
nomem:
	lease_entry_clear(&e);
	return -ENOMEM;
}

void lease_table_expire(struct lease_table *t, int64_t now_ms)
{
	for (size_t i = t->n; i-- > 0;)
		if (t->e[i].until_ms <= now_ms)
			lease_table_remove(t, i);
}

struct retention_lease *lease_table_find(struct lease_table *t,
					 const char *name, const char *replica,
					 int64_t now_ms, size_t *n)
{
	struct retention_lease *out = NULL;
	size_t m = 0;

	*n = 0;
	lease_table_expire(t, now_ms);
	for (size_t i = 0; i < t->n; i++)
		if (strcmp(t->e[i].name, name) == 0 &&
		    strcmp(t->e[i].replica, replica) == 0)
			m += t->e[i].n;
	if (m == 0 || !(out = malloc(m * sizeof *out)))
		return NULL;
	for (size_t i = 0; i < t->n; i++)
		if (strcmp(t->e[i].name, name) == 0 &&
		    strcmp(t->e[i].replica, replica) == 0) {
			memcpy(out + *n, t->e[i].l, t->e[i].n * sizeof *out);
			*n += t->e[i].n;
		}
	return out;
}

void lease_table_clear(struct lease_table *t)
{
	for (size_t i = 0; i < t->n; i++)
		lease_entry_clear(&t->e[i]);
	free(t->e);
	memset(t, 0, sizeof *t);
}

static json_int_t lease_txid_json(uint64_t x)
{
	return x > (uint64_t)INT64_MAX ? (json_int_t)INT64_MAX : (json_int_t)x;
}

json_t *lease_json(const struct retention_lease *l, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; a && i < n; i++)
		if (json_array_append_new(
			    a, json_pack("[i,I,I]", l[i].level < 0 ? -1 : l[i].level,
					 lease_txid_json(l[i].min_txid),
					 lease_txid_json(l[i].max_txid))) < 0) {
			json_decref(a);
			return NULL;
		}
	return a;
}

int lease_parse(const json_t *a, struct retention_lease **out, size_t *n)
{
	size_t m = json_array_size(a);
	*out = NULL;
	*n = 0;
	if (!json_is_array(a))
		return -EINVAL;
	if (m == 0)
		return 0;
	struct retention_lease *l = calloc(m, sizeof *l);
	if (!l)
		return -ENOMEM;
	for (size_t i = 0; i < m; i++) {
		json_t *e = json_array_get(a, i);
		json_t *lv = json_array_get(e, 0), *mn = json_array_get(e, 1),
		       *mx = json_array_get(e, 2);
		if (json_array_size(e) != 3 || !json_is_integer(lv) ||
		    !json_is_integer(mn) || !json_is_integer(mx) ||
		    json_integer_value(lv) < -1 ||
		    json_integer_value(lv) > 255 ||
		    json_integer_value(mn) < 0 ||
		    json_integer_value(mx) < json_integer_value(mn)) {
			free(l);
			return -EINVAL;
		}
		l[i].level = (int)json_integer_value(lv);
		l[i].min_txid = (uint64_t)json_integer_value(mn);
		l[i].max_txid = json_integer_value(mx) == INT64_MAX
					? UINT64_MAX
					: (uint64_t)json_integer_value(mx);
	}
	*out = l;
	*n = m;
	return 0;
}
