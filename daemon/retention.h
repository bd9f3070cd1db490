/*
 * retention.h: which replica files may be deleted (retention.c). Pure: a
 * listing in, indices out; the caller deletes. See the essay at the top of
 * retention.c.
 */
#ifndef WALRUST_RETENTION_H
#define WALRUST_RETENTION_H

#include <stddef.h>
#include <stdint.h>

struct replica_file; /* daemon.h */

/* Litestream's defaults (store.go). */
#define RETENTION_SNAPSHOT_MS (24 * 60 * 60 * 1000LL)
#define RETENTION_L0_MS (5 * 60 * 1000LL)
#define RETENTION_MAX_LEVEL 3

/* A lease: files someone is reading (an in-flight restore or compaction)
 * that must survive until it is released or expires. It protects every
 * file of `level` (or of every level when level < 0) whose TXID range
 * meets [min_txid, max_txid]. */
struct retention_lease {
	int level;
	uint64_t min_txid, max_txid;
	int64_t until_ms; /* expiry, ms since the epoch; 0: until released */
};

struct retention_opts {
	/* Point-in-time restore must work for every time in
	 * [now - snapshot_retention_ms, now]. <= 0: delete nothing. */
	int64_t snapshot_retention_ms;
	/* An L0 file stays until an L1 file covering it is this old.
	 * <= 0: L0 files are never deleted (Litestream: 0 disables). */
	int64_t l0_retention_ms;
	/* The highest compaction level (Litestream: 3); 0 means 3. */
	int max_level;
	const struct retention_lease *leases;
	size_t nleases;
};

/* The files of `files` (any order; timestamps are LTX header timestamps,
 * <= 0 when unknown) that may be deleted at now_ms: their indices,
 * ascending, in delete_idx (room for n), and their number. Never a file a
 * restore to any time in the retention window, or to the newest TXID,
 * needs; never a leased file. 0 on any internal failure (out of memory):
 * deleting nothing is always safe. */
size_t retention_plan(const struct replica_file *files, size_t n,
		      const struct retention_opts *o, int64_t now_ms,
		      size_t *delete_idx);

#endif
