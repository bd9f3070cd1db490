/*
 * compact.h: compaction of LTX files (compact.c): the streaming k-way merge
 * of a chain of LTX files into one, and the plan of which replica files the
 * next file of a level is made of. Pure: decoders and a write callback in,
 * no storage, no loop. See the essay at the top of compact.c.
 */
#ifndef WALRUST_COMPACT_H
#define WALRUST_COMPACT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "walrust.h"

struct replica_file; /* daemon.h */

/* Litestream's default levels (compaction_level.go, store.go). */
#define COMPACT_L1_INTERVAL_MS (30 * 1000LL)
#define COMPACT_L2_INTERVAL_MS (5 * 60 * 1000LL)
#define COMPACT_L3_INTERVAL_MS (60 * 60 * 1000LL)
#define COMPACT_SNAPSHOT_INTERVAL_MS (24 * 60 * 60 * 1000LL)

struct compact_opts {
	/* false (the default, and what Litestream writes): the output has
	 * the NoChecksum flag and zero pre-/post-apply checksums. true: the
	 * output carries the first input's pre-apply and the last input's
	 * post-apply checksum; every input must then carry checksums, and
	 * each link of the chain is checked (pre-apply of a file that starts
	 * right after its predecessor == the predecessor's post-apply). */
	bool checksums;
};

/* Merge the chain inputs[0..n) (oldest first, already opened, nothing read
 * past their headers) into one LTX file written through `write`: newest
 * input wins for a page, pages above the last input's commit are dropped,
 * the lock page is never written. The output's header: min TXID (and, with
 * checksums, pre-apply) of inputs[0]; max TXID, commit and timestamp of
 * inputs[n-1]; page size of all; WAL fields and node id zero. When
 * inputs[0] is a snapshot (min TXID 1) the output is a snapshot and holds
 * every page 1..commit.
 *
 * The chain must be contiguous (inputs[i].min <= inputs[i-1].max + 1 and
 * inputs[i].max > inputs[i-1].max) with equal page sizes. Every input is
 * read to its end and verified by ltx_dec_finish (page rules, index,
 * file checksum); a damaged input fails the merge.
 *
 * Memory: one page buffer per input plus the decoders and the encoder,
 * independent of the database size. The output is streamed before the
 * inputs are fully verified: on failure whatever was written is not a
 * valid LTX file (it lacks its trailer) and the caller must discard it.
 * On success *out_hdr (may be NULL) is the output's header. o may be NULL.
 * The decoders are not freed. Returns 0 or a negative errno with *err. */
int compact_merge(struct ltx_dec **inputs, size_t n,
		  const struct compact_opts *o, ltx_write_fn write, void *ctx,
		  struct ltx_header *out_hdr, char **err);

/* A compaction to plan (in) and its plan (out). */
struct compact_job {
	/* in */
	int level;	     /* destination: 1..8 (from level-1), or 9
			      * (REPLICA_SNAPSHOT_LEVEL: a snapshot from the
			      * newest snapshot and the chain after it) */
	int64_t interval_ms; /* the level's interval, > 0 */
	size_t max_inputs;   /* cap on the inputs of one merge; 0: none */
	/* out */
	size_t n;		     /* inputs: files[idx[0..n)], oldest first */
	uint64_t min_txid, max_txid; /* the output's TXID range */
	bool snapshot;		     /* the output is a snapshot (min 1) */
	bool gap;		     /* the source has a hole: only the run
				      * before it, or the run after a hole
				      * below it, is planned (compact.c) */
	int64_t due_ms;		     /* the wall-clock multiple of the
				      * interval at or before now */
	int64_t next_ms;	     /* the next one: ask again then */
};

/* Which of `files` (any order; timestamps are the LTX header timestamps)
 * make the next file of job->level at time now_ms: the source files not
 * yet compacted whose timestamps are <= due_ms, the last wall-clock
 * multiple of the interval (so asking twice in one interval plans once).
 * idx must have room for n entries. Returns 1 with job's out fields and
 * idx[0..job->n) filled, 0 when there is nothing to do now (job->due_ms
 * and next_ms are still set), or a negative errno with *err for invalid
 * arguments. */
int compact_plan(const struct replica_file *files, size_t n, int64_t now_ms,
		 struct compact_job *job, size_t *idx, char **err);

#endif
