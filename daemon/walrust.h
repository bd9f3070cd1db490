/*
 * walrust.h: the one internal header of walrustd, grouped by file.
 *
 * Conventions (see ../shared notes, "habits"):
 *  - the file name is the function prefix (ltx_*, wal_*, sigv4_*, ...);
 *  - functions return 0 (or a count) on success and a negative errno on
 *    failure; a human-readable reason comes back through a `char **err`
 *    out-parameter (malloc'd, the caller frees; may be NULL when the caller
 *    does not want it);
 *  - _new/_free own memory; every _free accepts NULL;
 *  - a call that fails never fires its callback.
 */
#ifndef WALRUST_H
#define WALRUST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define WALRUST_VERSION PACKAGE_VERSION

/* ---------------------------------------------------------------- util.c */
/* Small helpers shared by every file. */
char *util_strdup_printf(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));
/* Set *err (if err != NULL and *err == NULL) to a formatted message; returns
 * `rc` so callers can write `return util_err(err, -EINVAL, "...")`. */
int util_err(char **err, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void util_be32_put(uint8_t *p, uint32_t v);
void util_be64_put(uint8_t *p, uint64_t v);
uint32_t util_be32(const uint8_t *p);
uint64_t util_be64(const uint8_t *p);
int64_t util_now_ms(void);
/* Format ms since epoch as RFC 3339 with nanoseconds in UTC, as Go's
 * time.RFC3339Nano does (trailing zeros of the fraction trimmed, no
 * fraction at all when zero): 2024-01-15T10:30:00.123Z. out >= 40 bytes. */
void util_rfc3339_ms(int64_t ms, char *out, size_t outlen);
/* Parse ISO 8601 / RFC 3339 ("2024-01-15T10:30:00Z", with optional
 * fraction and +hh:mm offset, or a bare date) into ms since epoch. */
int util_parse_time(const char *s, int64_t *ms);
/* write/read the whole buffer, retrying on EINTR and short counts. */
int util_write_all(int fd, const void *buf, size_t len);
/* An ltx_write_fn over a file descriptor: ctx points to the int fd. */
int util_write_cb(void *ctx, const void *buf, size_t len);
int util_pwrite_all(int fd, const void *buf, size_t len, off_t off);
ssize_t util_pread_all(int fd, void *buf, size_t len, off_t off);
int util_fsync_dir(const char *path_of_file_inside);
int util_mkdir_p(const char *path, mode_t mode);
/* An anonymous read-write temp file in $TMPDIR (or /tmp): fd or -errno. */
int util_tmpfile(void);

/* --------------------------------------------------------------- crc64.c */
/* CRC-64/GO-ISO (Go's crc64.ISO table): reflected poly 0xD800000000000000,
 * init and final xor all ones. Chainable like Go's crc64.Update:
 * crc64_iso(crc64_iso(0, a), b) == crc64_iso(0, a||b).
 * crc64_iso(0, "123456789", 9) == 0xB90956C775A41001. */
uint64_t crc64_iso(uint64_t crc, const void *buf, size_t len);

/* ----------------------------------------------------------------- ltx.c */
#define LTX_MAGIC "LTX1"
#define LTX_HEADER_SIZE 100
#define LTX_TRAILER_SIZE 16
#define LTX_PAGE_HEADER_SIZE 6
#define LTX_FLAG_NO_CHECKSUM 0x00000002u
#define LTX_PAGE_FLAG_BLOCK 0x0001u
#define LTX_CHECKSUM_FLAG 0x8000000000000000ULL
#define LTX_MIN_PAGE_SIZE 512
#define LTX_MAX_PAGE_SIZE 65536

struct ltx_header {
	uint32_t flags;
	uint32_t page_size;
	uint32_t commit; /* database size in pages after applying */
	uint64_t min_txid;
	uint64_t max_txid;
	int64_t timestamp; /* ms since the Unix epoch */
	uint64_t pre_apply_checksum;
	int64_t wal_offset;
	int64_t wal_size;
	uint32_t wal_salt1;
	uint32_t wal_salt2;
	uint64_t node_id;
};

/* Page number of SQLite's lock page for this page size (never written). */
uint32_t ltx_lock_pgno(uint32_t page_size);
/* flag | crc64(pgno big-endian, page). */
uint64_t ltx_page_checksum(uint32_t pgno, const void *page, uint32_t page_size);
bool ltx_header_is_snapshot(const struct ltx_header *h);
/* Validate every header rule of the format; -EINVAL and *err on failure. */
int ltx_header_validate(const struct ltx_header *h, char **err);
void ltx_header_encode(const struct ltx_header *h, uint8_t out[LTX_HEADER_SIZE]);
int ltx_header_decode(struct ltx_header *h, const uint8_t in[LTX_HEADER_SIZE],
		      char **err);

/* Streaming encoder: output goes through `write` (return 0 or -errno). Pages
 * must be added in strictly ascending order, <= commit, never the lock page;
 * a snapshot (min_txid == 1) must add every page 1..commit but the lock page.
 * The page index is buffered and spilled to an anonymous temp file past a
 * small bound, so memory does not grow with the database. */
typedef int (*ltx_write_fn)(void *ctx, const void *buf, size_t len);
struct ltx_enc;
int ltx_enc_new(struct ltx_enc **out, const struct ltx_header *h,
		ltx_write_fn write, void *ctx, char **err);
int ltx_enc_page(struct ltx_enc *e, uint32_t pgno, const void *page, char **err);
/* Writes end marker, index and trailer. post_apply is the database checksum
 * after applying (with LTX_CHECKSUM_FLAG), or 0 with NoChecksum. */
int ltx_enc_finish(struct ltx_enc *e, uint64_t post_apply,
		   uint64_t *file_checksum, char **err);
uint64_t ltx_enc_bytes(const struct ltx_enc *e); /* bytes written so far */
void ltx_enc_free(struct ltx_enc *e);

/* Streaming decoder over `read` (returns bytes read, 0 at EOF, or -errno).
 * Accepts block-form and legacy LZ4-frame pages, mixed. Verifies header,
 * page order and range, decoded length, index, trailer and the file
 * checksum. Errors: -EINVAL malformed or truncated, -EBADMSG checksum
 * mismatch, other -errno from `read`. */
typedef ssize_t (*ltx_read_fn)(void *ctx, void *buf, size_t len);
struct ltx_dec;
int ltx_dec_new(struct ltx_dec **out, ltx_read_fn read, void *ctx, char **err);
const struct ltx_header *ltx_dec_header(const struct ltx_dec *d);
/* 1 and a page (page_size bytes into `page`), 0 at the end of the pages. */
int ltx_dec_page(struct ltx_dec *d, uint32_t *pgno, void *page, char **err);
/* After ltx_dec_page returned 0: read index and trailer, verify all. */
int ltx_dec_finish(struct ltx_dec *d, uint64_t *post_apply,
		   uint64_t *file_checksum, char **err);
void ltx_dec_free(struct ltx_dec *d);

/* ----------------------------------------------------------------- wal.c */
#define WAL_HEADER_SIZE 32
#define WAL_FRAME_HEADER_SIZE 24
struct wal_header {
	uint32_t magic; /* 0x377f0682 or 0x377f0683 */
	uint32_t version;
	uint32_t page_size;
	uint32_t ckpt_seq;
	uint32_t salt1, salt2;
	uint32_t cksum1, cksum2;
};
/* Parse and verify a 32-byte WAL header (magic, version, page size,
 * checksum). -EINVAL with *err on any mismatch. */
int wal_header_decode(struct wal_header *h, const uint8_t buf[WAL_HEADER_SIZE],
		      char **err);

/* An index of the committed frames of a WAL: for each page, the file offset
 * of its newest committed frame. Built by scanning from a starting point;
 * memory is proportional to the distinct pages in the WAL, not the db. */
struct wal_index;
/* Scan the WAL file `fd` from the beginning: verify the header, then every
 * frame's salts and cumulative checksum; stop at the first invalid frame;
 * keep only frames up to the last commit frame. A file shorter than 32
 * bytes gives an empty index whose header is all zero (page_size 0); a
 * bad header is -EINVAL; read errors are -errno. */
int wal_index_scan(struct wal_index **out, int fd, char **err);
/* The same, ignoring every frame that ends beyond byte `limit`: the WAL as
 * it was when its valid end was `limit`. */
int wal_index_scan_limit(struct wal_index **out, int fd, int64_t limit,
			 char **err);
/* Continue the scan of w from its end: the frames appended since, when the
 * WAL is still the same generation (the same header). 0 when extended (maybe
 * by nothing), 1 when the header changed (scan afresh), -errno on a read
 * error. Committed frames are never rewritten within one generation, so
 * what was indexed stays valid. */
int wal_index_extend(struct wal_index *w, int fd, char **err);
/* The pages whose newest committed frame starts at or after min_off,
 * ascending (malloc'd array). */
int wal_index_pages(const struct wal_index *w, int64_t min_off,
		    uint32_t **pgnos, size_t *n);
const struct wal_header *wal_index_header(const struct wal_index *w);
uint32_t wal_index_commit(const struct wal_index *w);   /* db size in pages
							  after the last
							  commit; 0 if none */
uint32_t wal_index_frames(const struct wal_index *w);   /* committed frames */
int64_t wal_index_end(const struct wal_index *w);       /* byte offset after
							  the last commit */
/* Offset of the newest committed frame (its 24-byte header) holding pgno,
 * or -1 when the page is not in the WAL. */
int64_t wal_index_lookup(const struct wal_index *w, uint32_t pgno);
void wal_index_free(struct wal_index *w);

/* --------------------------------------------------------------- sigv4.c */
struct sigv4_creds {
	const char *access_key_id;
	const char *secret_access_key;
	const char *session_token; /* NULL when none */
};
struct sigv4_header {
	const char *name;  /* any case; signed lowercased */
	const char *value; /* trimmed when signed */
};
struct sigv4_request {
	const char *method;       /* "GET" */
	const char *path;         /* already URI-encoded absolute path, "/b/k" */
	const char *query;        /* canonical query (sorted, encoded), or "" */
	const struct sigv4_header *headers; /* must include host, x-amz-date,
					      x-amz-content-sha256 */
	size_t nheaders;
	const char *payload_hash; /* hex sha256 of the body (or
				     "UNSIGNED-PAYLOAD") */
	const char *amz_date;     /* "20130524T000000Z" */
	const char *region;       /* "us-east-1" */
	const char *service;      /* "s3" */
};
/* Build the Authorization header value ("AWS4-HMAC-SHA256 Credential=...,
 * SignedHeaders=..., Signature=..."). Caches the derived signing key per
 * (secret, date, region, service). */
int sigv4_sign(const struct sigv4_request *r, const struct sigv4_creds *c,
	       char **authorization, char **err);
void sigv4_sha256_hex(const void *buf, size_t len, char out[65]);
/* AWS URI encoding: unreserved A-Za-z0-9-._~ kept, others %XX uppercase;
 * '/' kept when keep_slash. Returns malloc'd string. */
char *sigv4_uri_encode(const char *s, bool keep_slash);
/* Build a canonical query string from unsorted name/value pairs (values
 * may be NULL or "" for valueless parameters such as "uploads"). */
char *sigv4_canonical_query(const char *const *names, const char *const *values,
			    size_t n);

/* -------------------------------------------------------------- s3-xml.c */
struct s3_list_page {
	char **keys;  /* decoded (EncodingType=url undone) */
	size_t nkeys;
	char **prefixes; /* CommonPrefixes (decoded), when a delimiter was sent */
	size_t nprefixes;
	bool truncated;
	char *next_token; /* NextContinuationToken or NULL */
};
int s3_xml_parse_list(const char *body, size_t len, struct s3_list_page *out,
		      char **err);
void s3_xml_list_clear(struct s3_list_page *p);
/* 1 when body is an S3 <Error> document (code/message malloc'd), 0 when it
 * is not, <0 on malformed XML. */
int s3_xml_parse_error(const char *body, size_t len, char **code,
		       char **message);
int s3_xml_parse_upload_id(const char *body, size_t len, char **upload_id,
			   char **err);
/* The <CompleteMultipartUpload> body for parts 1..n with these ETags. */
char *s3_xml_complete_body(const char *const *etags, size_t n);
/* The DeleteObjects (<Delete><Quiet>true</Quiet>...) body for these
 * (absolute) keys. */
char *s3_xml_delete_body(const char *const *keys, size_t n);
/* A <DeleteResult>: the number of per-key <Error> entries (>= 0; the first
 * one's key/code/message malloc'd, else NULL), -EIO when the whole body is
 * an <Error> (code/message set), -EINVAL when malformed. */
int s3_xml_parse_delete_result(const char *body, size_t len, char **key,
			       char **code, char **message);

#endif
