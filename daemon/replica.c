/* replica.c: where things live in a replica, and how to get back from there.
 *
 * Key layout (Litestream 0.5.16+, so each tool restores the other's
 * buckets):
 *   S3:    <name>/<level as %04x>/<min %016x>-<max %016x>.ltx
 *   file:  <name>/ltx/<level in decimal>/<min %016x>-<max %016x>.ltx
 * Level 0 holds one file per sync, levels 1-3 compactions, level 9 full
 * snapshots (min TXID 1).
 *
 * The restore plan is pure: from the listed files it picks the newest
 * snapshot at or before the target, then walks forward, each step taking
 * the file that starts no later than the next TXID and reaches furthest.
 * A plan that cannot reach its target is a gap, and the caller must fail
 * rather than restore short of it. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"

bool replica_name_valid(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n > 255 || strcmp(name, ".") == 0 ||
	    strcmp(name, "..") == 0)
		return false;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		if (*p == '/' || *p == '\\' || *p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

char *replica_name_from_path(const char *path)
{
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	char *name = strdup(base);
	if (!name)
		return NULL;
	char *dot = strrchr(name, '.');
	if (dot && dot != name)
		*dot = '\0';
	return name;
}

char *replica_prefix(enum storage_kind kind, const char *name)
{
	if (kind == STORAGE_FILE)
		return util_strdup_printf("%s/ltx/", name);
	return util_strdup_printf("%s/", name);
}

char *replica_key(enum storage_kind kind, const char *name, int level,
		  uint64_t min_txid, uint64_t max_txid)
{
	if (kind == STORAGE_FILE)
		return util_strdup_printf("%s/ltx/%d/%016" PRIx64 "-%016" PRIx64
					  ".ltx",
					  name, level, min_txid, max_txid);
	return util_strdup_printf("%s/%04x/%016" PRIx64 "-%016" PRIx64 ".ltx",
				  name, level, min_txid, max_txid);
}

static int replica_hex(const char *s, size_t n, uint64_t *out)
{
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		int d;
		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else
			return -EINVAL;
		v = v << 4 | (uint64_t)d;
	}
	*out = v;
	return 0;
}

int replica_parse_key(enum storage_kind kind, const char *name,
		      const char *key, struct replica_file *f)
{
	char *prefix = replica_prefix(kind, name);
	if (!prefix)
		return -ENOMEM;
	size_t pl = strlen(prefix);
	int rc = -EINVAL;
	if (strncmp(key, prefix, pl) != 0)
		goto out;
	const char *p = key + pl, *slash = strchr(p, '/');
	if (!slash || slash == p)
		goto out;
	int level = 0;
	for (const char *q = p; q < slash; q++) {
		if (kind == STORAGE_FILE && (*q < '0' || *q > '9'))
			goto out;
		uint64_t d = 0;
		if (kind == STORAGE_S3 && replica_hex(q, 1, &d) < 0)
			goto out;
		level = kind == STORAGE_FILE ? level * 10 + (*q - '0')
					     : level * 16 + (int)d;
		if (level > 255)
			goto out;
	}
	if (kind == STORAGE_S3 && slash - p != 4)
		goto out;
	const char *fn = slash + 1;
	if (strlen(fn) != 16 + 1 + 16 + 4 || fn[16] != '-' ||
	    strcmp(fn + 33, ".ltx") != 0)
		goto out;
	uint64_t mn, mx;
	if (replica_hex(fn, 16, &mn) < 0 || replica_hex(fn + 17, 16, &mx) < 0 ||
	    mn == 0 || mx < mn)
		goto out;
	memset(f, 0, sizeof *f);
	f->level = level;
	f->min_txid = mn;
	f->max_txid = mx;
	f->key = strdup(key);
	rc = f->key ? 0 : -ENOMEM;
out:
	free(prefix);
	return rc;
}

void replica_file_clear(struct replica_file *f)
{
	free(f->key);
	f->key = NULL;
}

static bool replica_usable(const struct replica_file *f, uint64_t target,
			   int64_t not_after)
{
	if (f->max_txid > target)
		return false;
	return not_after <= 0 || f->timestamp <= not_after;
}

size_t replica_plan(const struct replica_file *files, size_t n,
		    uint64_t target, int64_t not_after, size_t *out,
		    uint64_t *reached)
{
	size_t count = 0, best = SIZE_MAX;
	*reached = 0;
	for (size_t i = 0; i < n; i++) {
		const struct replica_file *f = &files[i];
		if (f->min_txid != 1 || !replica_usable(f, target, not_after))
			continue;
		if (best == SIZE_MAX || f->max_txid > files[best].max_txid ||
		    (f->max_txid == files[best].max_txid &&
		     f->level > files[best].level))
			best = i;
	}
	if (best == SIZE_MAX)
		return 0;
	out[count++] = best;
	uint64_t cur = files[best].max_txid;
	for (;;) {
		size_t next = SIZE_MAX;
		for (size_t i = 0; i < n; i++) {
			const struct replica_file *f = &files[i];
			if (f->min_txid > cur + 1 || f->max_txid <= cur ||
			    !replica_usable(f, target, not_after))
				continue;
			if (next == SIZE_MAX) {
				next = i;
				continue;
			}
			const struct replica_file *b = &files[next];
			if (f->max_txid > b->max_txid ||
			    (f->max_txid == b->max_txid &&
			     (f->min_txid < b->min_txid ||
			      (f->min_txid == b->min_txid &&
			       f->level > b->level))))
				next = i;
		}
		if (next == SIZE_MAX)
			break;
		out[count++] = next;
		cur = files[next].max_txid;
	}
	*reached = cur;
	return count;
}
