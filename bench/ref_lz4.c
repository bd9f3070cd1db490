/* ref_lz4.c: the physical reference for bench/core.py.
 *
 *   ref_lz4 version
 *   ref_lz4 run DB [PAGE_SIZE] [OUT]
 *
 * `run` reads DB in PAGE_SIZE-byte pages (one read(2) per page, as a
 * page-by-page snapshot does) and LZ4_compress_default's each page into one
 * reused buffer: that pass is timed ("compress"). It then compresses the
 * pages again, untimed, into one prefaulted buffer, and decompresses them
 * page by page (LZ4_decompress_safe) into one reused page buffer, checking
 * every page decodes to its original size: that pass is timed ("decompress").
 * With OUT, a last timed pass decompresses again and writes the pages to OUT
 * with pwrite(2), then fsync(2)s it ("decompress_write", for context only).
 *
 * Prints one line of JSON: bytes, pages, compressed bytes, seconds of each
 * pass. Build: cc -O2 -o ref_lz4 ref_lz4.c -llz4
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <lz4.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
	fprintf(stderr, "ref_lz4: %s: %s\n", what, strerror(errno));
	exit(1);
}

static ssize_t read_full(int fd, void *buf, size_t len)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = read(fd, (char *)buf + got, len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "version") == 0) {
		printf("%s\n", LZ4_versionString());
		return 0;
	}
	if (argc < 3 || strcmp(argv[1], "run") != 0) {
		fprintf(stderr, "usage: ref_lz4 version | run DB [PAGE_SIZE] [OUT]\n");
		return 2;
	}
	const char *path = argv[2];
	int ps = argc > 3 ? atoi(argv[3]) : 4096;
	const char *out = argc > 4 ? argv[4] : NULL;
	if (ps < 512 || ps > 65536)
		return 2;
	int bound = LZ4_compressBound(ps);
	char *page = malloc((size_t)ps), *cbuf = malloc((size_t)bound);
	if (!page || !cbuf)
		die("malloc");

	/* Pass 1 (timed): read + compress page by page into one buffer. */
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		die(path);
	uint64_t bytes = 0, cbytes = 0, pages = 0;
	double t0 = now();
	for (;;) {
		ssize_t n = read_full(fd, page, (size_t)ps);
		if (n < 0)
			die("read");
		if (n == 0)
			break;
		int c = LZ4_compress_default(page, cbuf, (int)n, bound);
		if (c <= 0) {
			fprintf(stderr, "ref_lz4: compression failed\n");
			return 1;
		}
		bytes += (uint64_t)n;
		cbytes += (uint64_t)c;
		pages++;
	}
	double t_compress = now() - t0;

	/* Pass 2 (untimed): the compressed pages, length-prefixed, in memory. */
	size_t store_len = (size_t)cbytes + 8 * (size_t)pages;
	char *store = mmap(NULL, store_len ? store_len : 1, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (store == MAP_FAILED)
		die("mmap");
	if (lseek(fd, 0, SEEK_SET) < 0)
		die("lseek");
	size_t off = 0;
	for (uint64_t i = 0; i < pages; i++) {
		ssize_t n = read_full(fd, page, (size_t)ps);
		if (n <= 0)
			die("re-read");
		int c = LZ4_compress_default(page, cbuf, (int)n, bound);
		if (off + 8 + (size_t)c > store_len) {
			fprintf(stderr, "ref_lz4: file changed under us\n");
			return 1;
		}
		uint32_t hdr[2] = {(uint32_t)c, (uint32_t)n};
		memcpy(store + off, hdr, 8);
		memcpy(store + off + 8, cbuf, (size_t)c);
		off += 8 + (size_t)c;
	}
	close(fd);
	size_t used = off;

	/* Pass 3 (timed): decompress page by page into one buffer. */
	t0 = now();
	off = 0;
	uint64_t dbytes = 0;
	while (off < used) {
		uint32_t hdr[2];
		memcpy(hdr, store + off, 8);
		int d = LZ4_decompress_safe(store + off + 8, page, (int)hdr[0], ps);
		if (d != (int)hdr[1]) {
			fprintf(stderr, "ref_lz4: decompression failed\n");
			return 1;
		}
		dbytes += (uint64_t)d;
		off += 8 + hdr[0];
	}
	double t_decompress = now() - t0;

	/* Pass 4 (timed, context only): decompress + pwrite + fsync. */
	double t_dw = -1;
	if (out) {
		int ofd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (ofd < 0)
			die(out);
		t0 = now();
		off = 0;
		uint64_t pos = 0;
		while (off < used) {
			uint32_t hdr[2];
			memcpy(hdr, store + off, 8);
			int d = LZ4_decompress_safe(store + off + 8, page, (int)hdr[0], ps);
			if (d != (int)hdr[1]) {
				fprintf(stderr, "ref_lz4: decompression failed\n");
				return 1;
			}
			if (pwrite(ofd, page, (size_t)d, (off_t)pos) != d)
				die("pwrite");
			pos += (uint64_t)d;
			off += 8 + hdr[0];
		}
		if (fsync(ofd) < 0)
			die("fsync");
		t_dw = now() - t0;
		close(ofd);
		unlink(out);
	}
	munmap(store, store_len ? store_len : 1);
	printf("{\"bytes\":%llu,\"pages\":%llu,\"page_size\":%d,"
	       "\"compressed_bytes\":%llu,\"decompressed_bytes\":%llu,"
	       "\"compress_s\":%.6f,\"decompress_s\":%.6f,"
	       "\"decompress_write_fsync_s\":%.6f,\"lz4\":\"%s\"}\n",
	       (unsigned long long)bytes, (unsigned long long)pages, ps,
	       (unsigned long long)cbytes, (unsigned long long)dbytes,
	       t_compress, t_decompress, t_dw, LZ4_versionString());
	return 0;
}
