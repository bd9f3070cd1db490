/*
 * fuzz-wal.c: libFuzzer harness for the WAL reader (daemon/wal.c).
 *
 * The input is written to a memfd and scanned with wal_index_scan(); the
 * result is checked against invariants that hold for any input.
 *
 * Random bytes almost never carry valid checksums, so a second mode lets
 * the fuzzer reach the frame logic: an input whose first byte is 0x00 is
 * the rest of the input with its header and every whole frame re-signed
 * (in the order its magic selects). Then only salts, page numbers, commit
 * fields and the header fields decide, and the harness knows exactly how
 * many frames must be accepted.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. -Idaemon \
 *     tests/fuzz/fuzz-wal.c daemon/wal.c daemon/util.c -o fuzz-wal
 *   ./fuzz-wal tests/fuzz/corpus/wal
 */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "walrust.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                               \
	do {                                                                   \
		if (!(x))                                                      \
			abort();                                               \
	} while (0)

static uint32_t fuzz_word(bool be, const uint8_t *p)
{
	return be ? util_be32(p)
		  : (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 |
			    (uint32_t)p[1] << 8 | p[0];
}

static void fuzz_cksum(bool be, const uint8_t *p, size_t len, uint32_t s[2])
{
	for (size_t i = 0; i + 8 <= len; i += 8) {
		s[0] += fuzz_word(be, p + i) + s[1];
		s[1] += fuzz_word(be, p + i + 4) + s[0];
	}
}

static bool fuzz_page_size_ok(uint32_t ps)
{
	return ps >= 512 && ps <= 65536 && (ps & (ps - 1)) == 0;
}

/* Re-sign header and whole frames in place; returns the number of frames
 * the scanner must accept, or -1 when the header must be rejected. */
static long fuzz_resign(uint8_t *p, size_t n)
{
	uint32_t s[2] = {0, 0}, ps;
	uint32_t magic;
	size_t fsz;
	long frames = 0, seen = 0;
	bool be;

	if (n < WAL_HEADER_SIZE)
		return 0;
	magic = util_be32(p);
	ps = util_be32(p + 8);
	be = magic & 1;
	fuzz_cksum(be, p, 24, s);
	util_be32_put(p + 24, s[0]);
	util_be32_put(p + 28, s[1]);
	if ((magic != 0x377f0682u && magic != 0x377f0683u) ||
	    util_be32(p + 4) != 3007000u || !fuzz_page_size_ok(ps))
		return -1;
	fsz = WAL_FRAME_HEADER_SIZE + (size_t)ps;
	for (size_t off = WAL_HEADER_SIZE; off + fsz <= n; off += fsz) {
		uint8_t *f = p + off;
		fuzz_cksum(be, f, 8, s);
		fuzz_cksum(be, f + WAL_FRAME_HEADER_SIZE, ps, s);
		util_be32_put(f + 16, s[0]);
		util_be32_put(f + 20, s[1]);
		if (seen < 0)
			continue;
		if (memcmp(f + 8, p + 16, 8) != 0 || util_be32(f) == 0) {
			seen = -1; /* the log ends here */
			continue;
		}
		seen++;
		if (util_be32(f + 4))
			frames = seen;
	}
	return frames;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int fd = -1;
	struct wal_index *w = NULL;
	char *err = NULL;
	uint8_t *copy = NULL;
	const uint8_t *p = data;
	long want = -2; /* unknown */
	size_t fsz;
	int rc;

	if (fd < 0) {
		fd = memfd_create("fuzz-wal", MFD_CLOEXEC);
		CHECK(fd >= 0);
	}
	if (size > 0 && data[0] == 0x00) {
		size--;
		copy = malloc(size ? size : 1);
		CHECK(copy);
		memcpy(copy, data + 1, size);
		want = fuzz_resign(copy, size);
		p = copy;
	}
	CHECK(ftruncate(fd, 0) == 0);
	if (size)
		CHECK(util_pwrite_all(fd, p, size, 0) == 0);

	rc = wal_index_scan(&w, fd, &err);
	if (rc < 0) {
		CHECK(rc == -EINVAL && w == NULL && err != NULL);
		CHECK(size >= WAL_HEADER_SIZE);
		CHECK(want == -2 || want == -1);
		free(err);
		goto out;
	}
	CHECK(w != NULL && err == NULL);
	CHECK(want != -1);
	CHECK(wal_index_lookup(w, 0) == -1);
	if (size < WAL_HEADER_SIZE) {
		CHECK(wal_index_frames(w) == 0 && wal_index_commit(w) == 0);
		CHECK(wal_index_end(w) == WAL_HEADER_SIZE);
		CHECK(wal_index_lookup(w, 1) == -1);
		goto out;
	}
	CHECK(fuzz_page_size_ok(wal_index_header(w)->page_size));
	fsz = WAL_FRAME_HEADER_SIZE + wal_index_header(w)->page_size;
	CHECK(wal_index_end(w) ==
	      WAL_HEADER_SIZE + (int64_t)wal_index_frames(w) * (int64_t)fsz);
	CHECK(wal_index_end(w) <= (int64_t)size);
	CHECK((wal_index_frames(w) == 0) == (wal_index_commit(w) == 0));
	if (want >= 0)
		CHECK(wal_index_frames(w) == (uint32_t)want);
	if (wal_index_frames(w))
		CHECK(util_be32(p + wal_index_end(w) - (int64_t)fsz + 4) ==
		      wal_index_commit(w));
	/* Every committed frame's page maps to its newest committed frame. */
	for (int64_t off = WAL_HEADER_SIZE; off < wal_index_end(w);
	     off += (int64_t)fsz) {
		uint32_t pgno = util_be32(p + off);
		int64_t at = wal_index_lookup(w, pgno);
		CHECK(at >= off && at < wal_index_end(w));
		CHECK((at - WAL_HEADER_SIZE) % (int64_t)fsz == 0);
		CHECK(util_be32(p + at) == pgno);
	}
out:
	wal_index_free(w);
	free(copy);
	return 0;
}
