/*
 * http.h: HTTP/1.1 transfers with libcurl's multi interface on a libuv loop.
 *
 * One `struct http` per loop (one CURLM, one timer, one uv_poll_t per
 * socket). Requests go through an admission queue: at most
 * opts.max_transfers run at once; the others wait in FIFO order, those
 * marked `priority` ahead of the rest. Each request is one attempt:
 * retries, signing and S3 semantics live in the caller (storage-s3.c).
 *
 * Bodies: none, a memory buffer (copied at submit), or a byte range of a
 * file descriptor (read with pread, rewound with a seek callback when curl
 * resends). Sinks: memory (with a size cap) or a file descriptor (pwrite
 * from an offset). Whatever the sink, the body of a non-2xx response goes
 * to memory (up to HTTP_ERROR_BODY_MAX) so that an S3 <Error> document
 * never lands in the caller's file.
 *
 * Stalls: connect timeout, then LOW_SPEED_LIMIT/LOW_SPEED_TIME (fewer than
 * low_speed_limit bytes/s for low_speed_time s aborts the transfer).
 */
#ifndef WALRUST_HTTP_H
#define WALRUST_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#define HTTP_ERROR_BODY_MAX (64 * 1024)

struct http_opts {
	int max_transfers;      /* 0: 8 */
	long connect_timeout_ms; /* 0: 5000 */
	long low_speed_limit;   /* bytes/s; 0: 1024 */
	long low_speed_time;    /* s; 0: 10 */
	bool verbose;           /* CURLOPT_VERBOSE, for debugging */
	/* CA certificates file (CURLOPT_CAINFO; AWS_CA_BUNDLE); NULL: curl's
	 * default. Copied by http_new. */
	const char *ca_bundle;
};

enum http_body_kind { HTTP_BODY_NONE = 0, HTTP_BODY_MEM, HTTP_BODY_FD };
enum http_sink_kind { HTTP_SINK_MEM = 0, HTTP_SINK_FD };

struct http_response {
	/* 0, or a negative errno for a transfer that got no complete
	 * response: -ECONNREFUSED, -EHOSTUNREACH (resolve/connect failed),
	 * -ETIMEDOUT (connect timeout or stall), -ECONNRESET (connection
	 * lost, empty reply, short body), -EPROTO (TLS/protocol), -EFBIG
	 * (memory sink cap), -EIO (pread/pwrite/short body file),
	 * -ECANCELED (http_close). */
	int error;
	bool connected;          /* a connection was established */
	long status;             /* HTTP status, 0 when none */
	const char *curl_error;  /* curl's message when error != 0, else "" */
	const char *etag;        /* ETag response header or NULL */
	int64_t content_length;  /* Content-Length header, -1 when absent */
	uint64_t body_bytes;     /* body bytes received (any sink) */
	const char *body;        /* memory sink or error body, NUL-terminated */
	size_t body_len;
};

typedef void (*http_cb)(void *arg, const struct http_response *resp);

struct http_request {
	const char *method; /* GET, HEAD, PUT, POST, DELETE */
	const char *url;
	const char *const *headers; /* "Name: value" lines, copied */
	size_t nheaders;

	enum http_body_kind body;
	const void *body_buf; /* HTTP_BODY_MEM: copied at submit */
	int body_fd;          /* HTTP_BODY_FD: stays the caller's */
	uint64_t body_off;
	uint64_t body_len;    /* MEM and FD */

	enum http_sink_kind sink;
	size_t sink_max; /* HTTP_SINK_MEM cap; 0: 16 MiB */
	int sink_fd;     /* HTTP_SINK_FD: written with pwrite */
	uint64_t sink_off;

	bool priority; /* admitted before non-priority requests */
	const void *owner; /* whose: http_release cancels only the owner's */
	long low_speed_time; /* s; 0: opts.low_speed_time. Longer for
				requests the server may sit on (S3's
				CompleteMultipartUpload can take minutes) */
	http_cb cb;
	void *arg;
};

struct http;

/* An instance for `loop`: the open one with the same options if there is
 * one (shared, counted: one multi handle and connection pool), else a new
 * one. Give it back with http_release. */
int http_new(struct http **out, uv_loop_t *loop, const struct http_opts *opts,
	     char **err);
/* Queue a request. Returns 0 (cb fires exactly once, never from inside
 * this call) or a negative errno (cb never fires). */
int http_submit(struct http *h, const struct http_request *r, char **err);
/* Transfers running and waiting. */
size_t http_pending(const struct http *h);
/* Cancel everything: every queued or running request's callback fires
 * with error -ECANCELED (from inside this call); then handles are closed
 * and `done(arg)` fires from a close callback once all of them are (the
 * loop must run for that). `done` may be NULL. Accepts NULL h (done is
 * then not called). No other http_* call on h afterwards. */
void http_close(struct http *h, void (*done)(void *arg), void *arg);
/* Give back one reference from http_new: the owner's queued and running
 * requests are cancelled (callbacks fire with -ECANCELED, from inside this
 * call); the last reference closes h (http_close). Accepts NULL. */
void http_release(struct http *h, const void *owner);

#endif
