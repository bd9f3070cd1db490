/*
 * lease.h: the table of leases a worker keeps for the readers of its
 * replicas (lease.c). Pure: no loop, no storage; see the essay at the top
 * of lease.c.
 */
#ifndef WALRUST_LEASE_H
#define WALRUST_LEASE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "retention.h"

/* How long a lease lives without being renewed, and how often the
 * supervisor renews the leases of the jobs still running. */
#define LEASE_TTL_MS 30000
#define LEASE_RENEW_MS 10000

struct lease_entry {
	int64_t owner; /* the job (a supervisor-chosen number) */
	char *name;    /* the database's name in the replica */
	char *replica; /* storage_describe() of the replica */
	struct retention_lease *l;
	size_t n;
	int64_t until_ms; /* every lease of the entry expires then */
};

struct lease_table {
	struct lease_entry *e;
	size_t n, cap;
};

/* Replace the leases of `owner` (all of them) with l[0..n), expiring at
 * until_ms; n == 0 drops them. 0, or -ENOMEM (the table is unchanged). */
int lease_table_set(struct lease_table *t, int64_t owner, const char *name,
		    const char *replica, const struct retention_lease *l,
		    size_t n, int64_t until_ms);
/* Drop every entry expired at now_ms. */
void lease_table_expire(struct lease_table *t, int64_t now_ms);
/* The live leases on (name, replica) at now_ms, for retention_opts:
 * malloc'd (each with until_ms set), *n their number; NULL and *n = 0 when
 * there are none (or out of memory: see lease.c for why that is safe). */
struct retention_lease *lease_table_find(struct lease_table *t,
					 const char *name, const char *replica,
					 int64_t now_ms, size_t *n);
void lease_table_clear(struct lease_table *t);

/* The wire form of a set of leases: [[level, min, max], ...] (level -1:
 * every level; TXIDs above INT64_MAX are sent as INT64_MAX, which covers
 * every real file). */
json_t *lease_json(const struct retention_lease *l, size_t n);
/* Parse it: 0 with *out malloc'd (NULL when *n == 0), or -EINVAL. */
int lease_parse(const json_t *a, struct retention_lease **out, size_t *n);

#endif
