/*
 * storage.h: the storage seam. A replica root is a URL:
 *
 *   s3://bucket[/prefix]   S3 or any S3-compatible store (storage-s3.c)
 *   bucket[/prefix]        same, without the scheme
 *   file:///dir            a local directory (storage-file.c)
 *
 * Keys passed here are relative to the root ("app/0000/...ltx"); the backend
 * joins them with the prefix or directory. Storage knows nothing of WAL or
 * LTX: replica.c decides key names.
 *
 * All operations are asynchronous on the caller's uv loop. A call that
 * returns an error never fires its callback. Callback status: 0, or
 *   -ENOENT       the object does not exist
 *   -EACCES       credentials rejected (401/403); err names AWS_* variables
 *   -EHOSTUNREACH endpoint unreachable after the retry budget
 *   -ETIMEDOUT    stalled after the retry budget
 *   -EEXIST       storage_put_new: the key already exists
 *   -EIO          any other failure (err says what the server said)
 */
#ifndef WALRUST_STORAGE_H
#define WALRUST_STORAGE_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

enum storage_kind { STORAGE_FILE = 1, STORAGE_S3 = 2 };

struct storage_opts {
	/* Each NULL field falls back to the environment: AWS_ENDPOINT_URL_S3
	 * (else AWS itself), AWS_REGION (else us-east-1), AWS_ACCESS_KEY_ID,
	 * AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN. */
	const char *endpoint;
	const char *region;
	const char *access_key_id;
	const char *secret_access_key;
	const char *session_token;
	int max_attempts;            /* 0: default (5) */
	int concurrency;             /* 0: default (8 transfers at once) */
	uint64_t multipart_threshold; /* 0: default (16 MiB) */
	uint64_t part_size;          /* 0: default (8 MiB), fixed for all parts */
};

struct storage;
typedef void (*storage_cb)(void *arg, int status, const char *err);
/* keys/prefixes are relative to `prefix` given to storage_list and owned by
 * storage (valid during the callback only). */
typedef void (*storage_list_cb)(void *arg, int status, const char *err,
				char **keys, size_t nkeys, char **prefixes,
				size_t nprefixes);

/* storage.c: parse `url`, pick the backend. */
int storage_new(struct storage **out, uv_loop_t *loop, const char *url,
		const struct storage_opts *opts, char **err);
enum storage_kind storage_kind(const struct storage *s);
/* A printable description of the root for messages ("s3://b/p"). */
const char *storage_describe(const struct storage *s);
/* The object's name as the store knows it: the S3 key including the
 * prefix, or the path under a file:// root. Malloc'd. */
char *storage_object_name(const struct storage *s, const char *key);

/* Upload bytes [0, len) of `fd` (read with pread; the fd stays the caller's)
 * to `key`, with `litestream-timestamp` metadata (S3) or mtime (file) set
 * from ts_ms. Multipart above the threshold. */
int storage_put(struct storage *s, const char *key, int fd, uint64_t len,
		int64_t ts_ms, storage_cb cb, void *arg);
/* The same, but only if `key` does not exist yet: a conditional create
 * (S3: If-None-Match: *, honoured by AWS, R2, Tigris, MinIO and SeaweedFS;
 * file: rename without replacing). -EEXIST when it does, whoever wrote it
 * (an earlier attempt of this same request included: callers that retry
 * compare the bytes). Replication writes L0 files this way so that a late
 * request of a killed worker and a new one can never overwrite each other
 * with different bytes under one TXID. */
int storage_put_new(struct storage *s, const char *key, int fd, uint64_t len,
		    int64_t ts_ms, storage_cb cb, void *arg);
/* Download `key` into `fd` from offset 0 (pwrite; the fd is truncated and
 * rewritten on a retry). */
int storage_get(struct storage *s, const char *key, int fd, storage_cb cb,
		void *arg);
/* List every key under `prefix` (all pages). With delimiter "/", keys
 * directly under prefix come in keys[] and deeper ones are rolled up into
 * prefixes[] ("app/"), as S3 does. */
int storage_list(struct storage *s, const char *prefix, const char *delimiter,
		 storage_list_cb cb, void *arg);
int storage_delete(struct storage *s, const char *const *keys, size_t n,
		   storage_cb cb, void *arg);
/* One more owner of s (databases replicated to the same place share one
 * storage, so one connection pool); returns s. */
struct storage *storage_ref(struct storage *s);
/* Drop one owner; the last frees s, when no operation is in flight.
 * Accepts NULL. */
void storage_free(struct storage *s);

/* ------------------------------------------------ the backend vtable */
struct storage_ops {
	const char *name;
	/* excl: storage_put_new */
	int (*put)(struct storage *, const char *, int, uint64_t, int64_t,
		   bool excl, storage_cb, void *);
	/* limit 0: the whole object; else its first `limit` bytes (S3: a
	 * ranged GET), all of a shorter object */
	int (*get)(struct storage *, const char *, int, uint64_t, storage_cb,
		   void *);
	int (*list)(struct storage *, const char *, const char *,
		    storage_list_cb, void *);
	int (*del)(struct storage *, const char *const *, size_t, storage_cb,
		   void *);
	void (*free)(struct storage *);
};
struct storage {
	const struct storage_ops *ops;
	enum storage_kind kind;
	uv_loop_t *loop;
	char *describe;
	unsigned refs; /* owners: storage_ref adds one, storage_free drops one */
};
/* Backends: allocate their own struct whose first member is struct storage.
 * s3: bucket and prefix ("" or "a/b", no trailing slash). */
int storage_s3_new(struct storage **out, uv_loop_t *loop, const char *bucket,
		   const char *prefix, const struct storage_opts *opts,
		   char **err);
int storage_file_new(struct storage **out, uv_loop_t *loop, const char *dir,
		     char **err);

#endif
