/*
 * http.c: libcurl's multi interface driven by a libuv loop (the only event
 * glue between curl and uv). See http.h for the API.
 *
 * The shape is curl's docs/examples/multi-uv.c (current version):
 *
 *  - CURLMOPT_SOCKETFUNCTION: curl says which sockets to watch for what.
 *    One uv_poll_t per socket, remembered with curl_multi_assign; on
 *    CURL_POLL_REMOVE it is stopped and closed (freed in its close
 *    callback).
 *  - CURLMOPT_TIMERFUNCTION: curl asks for one timeout. -1 stops our single
 *    uv_timer_t; 0 means "as soon as possible" and starts it at 1 ms: we
 *    never call curl_multi_socket_action from inside a curl callback.
 *  - poll and timer events call curl_multi_socket_action (a poll error
 *    becomes CURL_CSELECT_ERR), then curl_multi_info_read collects the
 *    finished transfers and fires their callbacks.
 *  - sockets are opened and closed by us (CURLOPT_OPENSOCKETFUNCTION and
 *    CLOSESOCKETFUNCTION) so that a poll handle is always stopped before
 *    its fd is closed: libuv must never watch a closed (or reused) fd.
 *    curl also reports CURL_POLL_REMOVE before it closes a socket
 *    (Curl_multi_closed), including inside curl_multi_cleanup.
 *
 * Admission: at most max_transfers easy handles are in the multi handle;
 * the rest wait in two FIFO queues (priority first). A transfer leaves the
 * multi handle before its callback fires; the next one is admitted right
 * after.
 *
 * Closing: http_close cancels everything (callbacks fire with
 * -ECANCELED), cleans up the multi handle (which closes the pooled
 * connections and therefore their poll handles), closes the timer, and
 * frees `struct http` in the last close callback.
 *
 * Sharing: http_new hands out the open instance of the same loop and the
 * same options when there is one (reference counted), so that every
 * replica of a worker (a litestream.yml names one URL per database) goes
 * through one multi handle: one pool of connections per S3 endpoint
 * instead of one per database, and one set of curl's transfer buffers
 * (about 26 KiB per database before). Each sharer may run max_transfers
 * transfers, up to HTTP_SHARED_MAX_TRANSFERS together. http_release
 * cancels only the releasing owner's transfers (http_request.owner); the
 * last release closes.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>

#include "http.h"
#include "walrust.h"

#define HTTP_DEFAULT_MAX_TRANSFERS 8
#define HTTP_DEFAULT_CONNECT_TIMEOUT_MS 5000L
#define HTTP_DEFAULT_LOW_SPEED_LIMIT 1024L
#define HTTP_DEFAULT_LOW_SPEED_TIME 10L
#define HTTP_DEFAULT_SINK_MAX (16u << 20)
#define HTTP_BUFFER_SIZE (256L * 1024)
/* Upload buffers: up to max_transfers multipart parts go at once. */
#define HTTP_UPLOAD_BUFFER_SIZE (64L * 1024)
/* Transfers at once (and connections per host) of a shared instance. */
#define HTTP_SHARED_MAX_TRANSFERS 64

struct http;

struct http_sock {
	uv_poll_t poll;
	struct http *h;
	curl_socket_t fd;
	struct http_sock *next;
};

struct http_xfer {
	struct http *h;
	CURL *easy;
	struct curl_slist *headers;
	struct http_xfer *prev, *next; /* queue or running list */

	enum http_body_kind body;
	uint8_t *body_buf;
	int body_fd;
	uint64_t body_off, body_len, body_pos;

	enum http_sink_kind sink;
	size_t sink_max;
	int sink_fd;
	uint64_t sink_off;

	char *mem; /* memory sink, or the body of an error response */
	size_t mem_len, mem_cap;
	uint64_t body_bytes;
	char *etag;
	int64_t content_length;
	int local_error; /* set by our read/write callbacks */
	char errbuf[CURL_ERROR_SIZE];

	bool priority;
	const void *owner;
	http_cb cb;
	void *arg;
};

struct xfer_list {
	struct http_xfer *head, *tail;
	size_t n;
};

struct http {
	uv_loop_t *loop;
	CURLM *multi;
	uv_timer_t timer;
	struct http_opts opts;
	char *ca_bundle; /* owned copy of opts.ca_bundle */
	struct xfer_list queue[2]; /* [0] priority, [1] the rest */
	struct xfer_list running;
	struct http_sock *socks;
	int nhandles; /* open uv handles: timer + polls */
	int refs;     /* sharers (http_new, http_release) */
	const void *releasing; /* owner being cancelled: no new requests */
	struct http *next_shared;
	bool closing;
	void (*done)(void *arg);
	void *done_arg;
};

/* ------------------------------------------------------------ list helpers */
static void xfer_list_push(struct xfer_list *l, struct http_xfer *x)
{
	x->next = NULL;
	x->prev = l->tail;
	if (l->tail)
		l->tail->next = x;
	else
		l->head = x;
	l->tail = x;
	l->n++;
}

static void xfer_list_remove(struct xfer_list *l, struct http_xfer *x)
{
	if (x->prev)
		x->prev->next = x->next;
	else
		l->head = x->next;
	if (x->next)
		x->next->prev = x->prev;
	else
		l->tail = x->prev;
	x->prev = x->next = NULL;
	l->n--;
}

static struct http_xfer *xfer_list_pop(struct xfer_list *l)
{
	struct http_xfer *x = l->head;
	if (x)
		xfer_list_remove(l, x);
	return x;
}

/* ------------------------------------------------------------ transfers */
static void http_xfer_free(struct http_xfer *x)
{
	if (!x)
		return;
	if (x->easy)
		curl_easy_cleanup(x->easy);
	curl_slist_free_all(x->headers);
	free(x->body_buf);
	free(x->mem);
	free(x->etag);
	free(x);
}

static int http_map_curl_error(CURLcode rc)
{
	switch (rc) {
	case CURLE_OK:
		return 0;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return -EHOSTUNREACH;
	case CURLE_COULDNT_CONNECT:
		return -ECONNREFUSED;
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
		return -ECONNRESET;
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ENGINE_NOTFOUND:
	case CURLE_SSL_ENGINE_SETFAILED:
	case CURLE_USE_SSL_FAILED:
	case CURLE_WEIRD_SERVER_REPLY:
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		return -EPROTO;
	default:
		return -EIO;
	}
}

/* Fire the callback and free the transfer. `error` overrides curl's
 * result (cancel, admission failure). */
static void http_xfer_finish(struct http_xfer *x, CURLcode res, int error,
			     const char *why)
{
	struct http_response r = {0};
	long status = 0;
	curl_off_t pretransfer = 0;

	if (x->easy) {
		curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
		curl_easy_getinfo(x->easy, CURLINFO_PRETRANSFER_TIME_T,
				  &pretransfer);
	}
	r.status = status;
	r.connected = status > 0 || pretransfer > 0;
	if (error) {
		r.error = error;
		r.curl_error = why;
	} else if (x->local_error) {
		r.error = x->local_error;
		r.curl_error = x->errbuf[0] ? x->errbuf : curl_easy_strerror(res);
	} else {
		r.error = http_map_curl_error(res);
		r.curl_error = r.error ? (x->errbuf[0] ? x->errbuf
						       : curl_easy_strerror(res))
				       : "";
	}
	r.etag = x->etag;
	r.content_length = x->content_length;
	r.body_bytes = x->body_bytes;
	r.body = x->mem ? x->mem : "";
	r.body_len = x->mem_len;
	x->cb(x->arg, &r);
	http_xfer_free(x);
}

static size_t http_on_header(char *buf, size_t size, size_t n, void *data)
{
	struct http_xfer *x = data;
	size_t len = size * n;
	const char *colon = memchr(buf, ':', len);

	if (len >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
		/* a new response (after 100 Continue, say): forget the old */
		free(x->etag);
		x->etag = NULL;
		x->content_length = -1;
		return len;
	}
	if (!colon)
		return len;
	size_t nlen = (size_t)(colon - buf);
	const char *v = colon + 1, *end = buf + len;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == '\r' || end[-1] == '\n' ||
			   end[-1] == ' ' || end[-1] == '\t'))
		end--;
	if (nlen == 4 && strncasecmp(buf, "etag", 4) == 0) {
		free(x->etag);
		x->etag = strndup(v, (size_t)(end - v));
	} else if (nlen == 14 && strncasecmp(buf, "content-length", 14) == 0) {
		char tmp[32];
		size_t vl = (size_t)(end - v);
		if (vl > 0 && vl < sizeof tmp) {
			memcpy(tmp, v, vl);
			tmp[vl] = '\0';
			char *e;
			long long cl = strtoll(tmp, &e, 10);
			if (*e == '\0' && cl >= 0)
				x->content_length = cl;
		}
	}
	return len;
}

static int http_mem_append(struct http_xfer *x, const char *p, size_t n,
			   size_t cap, bool truncate)
{
	if (x->mem_len + n > cap) {
		if (!truncate)
			return -EFBIG;
		n = cap > x->mem_len ? cap - x->mem_len : 0;
		if (n == 0)
			return 0;
	}
	if (x->mem_len + n + 1 > x->mem_cap) {
		size_t c = x->mem_cap ? x->mem_cap : 4096;
		while (c < x->mem_len + n + 1)
			c *= 2;
		char *m = realloc(x->mem, c);
		if (!m)
			return -ENOMEM;
		x->mem = m;
		x->mem_cap = c;
	}
	memcpy(x->mem + x->mem_len, p, n);
	x->mem_len += n;
	x->mem[x->mem_len] = '\0';
	return 0;
}

static size_t http_on_write(char *p, size_t size, size_t n, void *data)
{
	struct http_xfer *x = data;
	size_t len = size * n;
	long status = 0;
	int rc;

	curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
	if (status < 200 || status > 299)
		rc = http_mem_append(x, p, len, HTTP_ERROR_BODY_MAX, true);
	else if (x->sink == HTTP_SINK_MEM)
		rc = http_mem_append(x, p, len, x->sink_max, false);
	else
		rc = util_pwrite_all(x->sink_fd, p, len,
				     (off_t)(x->sink_off + x->body_bytes));
	if (rc) {
		x->local_error = rc;
		snprintf(x->errbuf, sizeof x->errbuf, "%s",
			 rc == -EFBIG ? "response body too large"
				      : "cannot store the response body");
		return 0; /* CURLE_WRITE_ERROR */
	}
	x->body_bytes += len;
	return len;
}

static size_t http_on_read(char *buf, size_t size, size_t n, void *data)
{
	struct http_xfer *x = data;
	uint64_t left = x->body_len - x->body_pos;
	size_t want = size * n;
	if (want > left)
		want = (size_t)left;
	if (want == 0)
		return 0;
	if (x->body == HTTP_BODY_MEM) {
		memcpy(buf, x->body_buf + x->body_pos, want);
	} else {
		ssize_t got = util_pread_all(x->body_fd, buf, want,
					     (off_t)(x->body_off + x->body_pos));
		if (got < 0 || (size_t)got != want) {
			x->local_error = got < 0 ? (int)got : -EIO;
			snprintf(x->errbuf, sizeof x->errbuf, "%s",
				 got < 0 ? "cannot read the upload source"
					 : "upload source shrank while sending");
			return CURL_READFUNC_ABORT;
		}
	}
	x->body_pos += want;
	return want;
}

static int http_on_seek(void *data, curl_off_t off, int origin)
{
	struct http_xfer *x = data;
	if (origin != SEEK_SET || off < 0 || (uint64_t)off > x->body_len)
		return CURL_SEEKFUNC_CANTSEEK;
	x->body_pos = (uint64_t)off;
	return CURL_SEEKFUNC_OK;
}

/* ------------------------------------------------------------ sockets */
static void http_maybe_done(struct http *h)
{
	if (!h->closing || h->nhandles > 0)
		return;
	void (*done)(void *) = h->done;
	void *arg = h->done_arg;
	free(h->ca_bundle);
	free(h);
	if (done)
		done(arg);
}

static void http_on_sock_closed(uv_handle_t *handle)
{
	struct http_sock *sk = handle->data;
	struct http *h = sk->h;
	free(sk);
	h->nhandles--;
	http_maybe_done(h);
}

static void http_sock_close(struct http_sock *sk)
{
	struct http *h = sk->h;
	for (struct http_sock **pp = &h->socks; *pp; pp = &(*pp)->next) {
		if (*pp == sk) {
			*pp = sk->next;
			break;
		}
	}
	uv_poll_stop(&sk->poll);
	uv_close((uv_handle_t *)&sk->poll, http_on_sock_closed);
}

static void http_check_done(struct http *h);

static void http_on_poll(uv_poll_t *p, int status, int events)
{
	struct http_sock *sk = p->data;
	struct http *h = sk->h;
	curl_socket_t fd = sk->fd;
	int flags = 0, running = 0;

	if (h->closing)
		return;
	if (status < 0) {
		flags = CURL_CSELECT_ERR;
	} else {
		if (events & UV_READABLE)
			flags |= CURL_CSELECT_IN;
		if (events & UV_WRITABLE)
			flags |= CURL_CSELECT_OUT;
	}
	curl_multi_socket_action(h->multi, fd, flags, &running);
	http_check_done(h);
}

static int http_on_socket(CURL *easy, curl_socket_t fd, int what, void *userp,
			  void *socketp)
{
	struct http *h = userp;
	struct http_sock *sk = socketp;

	if (what == CURL_POLL_REMOVE) {
		if (sk) {
			if (!h->closing)
				curl_multi_assign(h->multi, fd, NULL);
			http_sock_close(sk);
		}
		return 0;
	}
	if (!sk) {
		sk = calloc(1, sizeof *sk);
		if (!sk)
			return -1;
		if (uv_poll_init_socket(h->loop, &sk->poll, fd) < 0) {
			free(sk);
			return -1;
		}
		sk->h = h;
		sk->fd = fd;
		sk->poll.data = sk;
		sk->next = h->socks;
		h->socks = sk;
		h->nhandles++;
		curl_multi_assign(h->multi, fd, sk);
	}
	int events = 0;
	if (what & CURL_POLL_IN)
		events |= UV_READABLE;
	if (what & CURL_POLL_OUT)
		events |= UV_WRITABLE;
	uv_poll_start(&sk->poll, events, http_on_poll);
	return 0;
}

static curl_socket_t http_on_open_socket(void *clientp, curlsocktype purpose,
					 struct curl_sockaddr *a)
{
	int fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
	return fd < 0 ? CURL_SOCKET_BAD : fd;
}

static int http_on_close_socket(void *clientp, curl_socket_t fd)
{
	struct http *h = clientp;
	/* curl normally said CURL_POLL_REMOVE already; make sure no poll
	 * handle outlives its fd either way */
	for (struct http_sock *sk = h->socks; sk; sk = sk->next) {
		if (sk->fd == fd) {
			http_sock_close(sk);
			break;
		}
	}
	return close(fd);
}

/* ------------------------------------------------------------ timer */
static void http_on_timer(uv_timer_t *t)
{
	struct http *h = t->data;
	int running = 0;
	if (h->closing)
		return;
	curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	http_check_done(h);
}

static int http_on_timeout(CURLM *multi, long timeout_ms, void *userp)
{
	struct http *h = userp;
	if (timeout_ms < 0 || h->closing) {
		uv_timer_stop(&h->timer);
		return 0;
	}
	/* never call curl_multi_socket_action from here */
	uv_timer_start(&h->timer, http_on_timer,
		       timeout_ms == 0 ? 1 : (uint64_t)timeout_ms, 0);
	return 0;
}

static void http_on_timer_closed(uv_handle_t *handle)
{
	struct http *h = handle->data;
	h->nhandles--;
	http_maybe_done(h);
}

/* ------------------------------------------------------------ admission */
/* Transfers at once: max_transfers per sharer, at most
 * HTTP_SHARED_MAX_TRANSFERS (but never fewer than one sharer's). */
static size_t http_limit(const struct http *h)
{
	size_t one = (size_t)h->opts.max_transfers;
	size_t n = one * (size_t)(h->refs > 0 ? h->refs : 1);
	if (n <= HTTP_SHARED_MAX_TRANSFERS)
		return n;
	return one > HTTP_SHARED_MAX_TRANSFERS ? one
					       : HTTP_SHARED_MAX_TRANSFERS;
}

static void http_admit(struct http *h)
{
	while (!h->closing && h->running.n < http_limit(h)) {
		struct http_xfer *x = xfer_list_pop(&h->queue[0]);
		if (!x)
			x = xfer_list_pop(&h->queue[1]);
		if (!x)
			break;
		CURLMcode mc = curl_multi_add_handle(h->multi, x->easy);
		if (mc != CURLM_OK) {
			http_xfer_finish(x, CURLE_OK, -ENOMEM,
					 curl_multi_strerror(mc));
			continue;
		}
		xfer_list_push(&h->running, x);
	}
}

static void http_check_done(struct http *h)
{
	CURLMsg *m;
	int left;

	while (!h->closing && (m = curl_multi_info_read(h->multi, &left))) {
		if (m->msg != CURLMSG_DONE)
			continue;
		CURL *easy = m->easy_handle;
		CURLcode res = m->data.result;
		char *priv = NULL;
		curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
		struct http_xfer *x = (struct http_xfer *)priv;
		curl_multi_remove_handle(h->multi, easy);
		xfer_list_remove(&h->running, x);
		http_xfer_finish(x, res, 0, NULL);
		http_admit(h);
	}
}

/* ------------------------------------------------------------ sharing */
static void http_opts_defaults(struct http_opts *o)
{
	if (o->max_transfers <= 0)
		o->max_transfers = HTTP_DEFAULT_MAX_TRANSFERS;
	if (o->connect_timeout_ms <= 0)
		o->connect_timeout_ms = HTTP_DEFAULT_CONNECT_TIMEOUT_MS;
	if (o->low_speed_limit <= 0)
		o->low_speed_limit = HTTP_DEFAULT_LOW_SPEED_LIMIT;
	if (o->low_speed_time <= 0)
		o->low_speed_time = HTTP_DEFAULT_LOW_SPEED_TIME;
}

static struct http *http_shared; /* open instances, for http_new */

static bool http_opts_equal(const struct http_opts *a,
			    const struct http_opts *b)
{
	return a->max_transfers == b->max_transfers &&
	       a->connect_timeout_ms == b->connect_timeout_ms &&
	       a->low_speed_limit == b->low_speed_limit &&
	       a->low_speed_time == b->low_speed_time &&
	       a->verbose == b->verbose &&
	       ((!a->ca_bundle && !b->ca_bundle) ||
		(a->ca_bundle && b->ca_bundle &&
		 strcmp(a->ca_bundle, b->ca_bundle) == 0));
}

/* The open instance of `loop` whose options (defaults filled in) equal
 * `opts`, or NULL. */
static struct http *http_shared_find(uv_loop_t *loop,
				     const struct http_opts *opts)
{
	struct http_opts want = opts ? *opts : (struct http_opts){0};
	http_opts_defaults(&want);
	for (struct http *h = http_shared; h; h = h->next_shared)
		if (h->loop == loop && !h->closing &&
		    http_opts_equal(&h->opts, &want))
			return h;
	return NULL;
}

static void http_shared_unlink(struct http *h)
{
	for (struct http **p = &http_shared; *p; p = &(*p)->next_shared)
		if (*p == h) {
			*p = h->next_shared;
			return;
		}
}

/* After a change of sharers: curl's cap on connections per host follows. */
static void http_set_limit(struct http *h)
{
	curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
			  (long)http_limit(h));
}

/* ------------------------------------------------------------ public */
int http_new(struct http **out, uv_loop_t *loop, const struct http_opts *opts,
	     char **err)
{
	static bool global_done;
	struct http *h = NULL;
	int rc = 0;

	*out = NULL;
	if (!global_done) {
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
			return util_err(err, -EIO, "curl_global_init failed");
		global_done = true;
		/* a peer closing a connection must not kill the process */
		struct sigaction sa;
		if (sigaction(SIGPIPE, NULL, &sa) == 0 &&
		    sa.sa_handler == SIG_DFL)
			signal(SIGPIPE, SIG_IGN);
	}
	if ((h = http_shared_find(loop, opts))) {
		h->refs++;
		http_set_limit(h);
		*out = h;
		return 0;
	}
	h = calloc(1, sizeof *h);
	if (!h)
		return -ENOMEM;
	h->loop = loop;
	h->refs = 1;
	if (opts)
		h->opts = *opts;
	if (h->opts.ca_bundle && !(h->ca_bundle = strdup(h->opts.ca_bundle))) {
		free(h);
		return -ENOMEM;
	}
	h->opts.ca_bundle = h->ca_bundle;
	http_opts_defaults(&h->opts);
	h->multi = curl_multi_init();
	if (!h->multi) {
		rc = util_err(err, -ENOMEM, "curl_multi_init failed");
		goto out;
	}
	if ((rc = uv_timer_init(loop, &h->timer)) < 0) {
		util_err(err, rc, "uv_timer_init: %s", uv_strerror(rc));
		goto out;
	}
	h->timer.data = h;
	h->nhandles = 1;
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, http_on_socket);
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, http_on_timeout);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
	http_set_limit(h);
	h->next_shared = http_shared;
	http_shared = h;
	*out = h;
	h = NULL;
out:
	if (h) {
		if (h->multi)
			curl_multi_cleanup(h->multi);
		free(h->ca_bundle);
		free(h);
	}
	return rc;
}

size_t http_pending(const struct http *h)
{
	return h->running.n + h->queue[0].n + h->queue[1].n;
}

static int http_xfer_setup(struct http *h, struct http_xfer *x,
			   const struct http_request *r, char **err)
{
	CURL *e = x->easy;
	bool upload = false, have_expect = false;

	for (size_t i = 0; i < r->nheaders; i++) {
		struct curl_slist *l = curl_slist_append(x->headers,
							 r->headers[i]);
		if (!l)
			return -ENOMEM;
		x->headers = l;
		if (strncasecmp(r->headers[i], "expect:", 7) == 0)
			have_expect = true;
	}
	if (!have_expect) {
		/* no 100-continue round trip: S3 answers errors fast anyway */
		struct curl_slist *l = curl_slist_append(x->headers, "Expect:");
		if (!l)
			return -ENOMEM;
		x->headers = l;
	}

	if (strcmp(r->method, "GET") == 0) {
		curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
	} else if (strcmp(r->method, "HEAD") == 0) {
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	} else if (strcmp(r->method, "PUT") == 0 ||
		   strcmp(r->method, "POST") == 0 || r->body != HTTP_BODY_NONE) {
		upload = true;
		if (strcmp(r->method, "PUT") != 0)
			curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
	} else {
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
	}
	if (upload) {
		/* S3 wants Content-Length, never chunked uploads */
		curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE,
				 (curl_off_t)x->body_len);
		curl_easy_setopt(e, CURLOPT_READFUNCTION, http_on_read);
		curl_easy_setopt(e, CURLOPT_READDATA, x);
		curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, http_on_seek);
		curl_easy_setopt(e, CURLOPT_SEEKDATA, x);
		/* Large buffers only for large bodies: a worker may have a
		 * thousand small uploads in flight. */
		long ub = x->body_len < HTTP_UPLOAD_BUFFER_SIZE
				  ? (long)x->body_len
				  : HTTP_UPLOAD_BUFFER_SIZE;
		curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE,
				 ub < 16384 ? 16384L : ub);
	}
	if (curl_easy_setopt(e, CURLOPT_URL, r->url) != CURLE_OK)
		return util_err(err, -EINVAL, "bad URL");
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(e, CURLOPT_PROTOCOLS,
			 (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	curl_easy_setopt(e, CURLOPT_PRIVATE, x);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, h->opts.connect_timeout_ms);
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, h->opts.low_speed_limit);
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME,
			 r->low_speed_time > 0 ? r->low_speed_time
					       : h->opts.low_speed_time);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, http_on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, http_on_write);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, http_on_open_socket);
	curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, h);
	curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, http_on_close_socket);
	curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, h);
	if (h->ca_bundle)
		curl_easy_setopt(e, CURLOPT_CAINFO, h->ca_bundle);
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	/* keep "a/../b" keys as signed: no dot-segment squashing */
	curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
	/* Downloads: large buffers for GETs (restores, compaction inputs);
	 * curl's default for the rest (PUT, LIST and DELETE responses). */
	if (strcmp(r->method, "GET") == 0)
		curl_easy_setopt(e, CURLOPT_BUFFERSIZE, HTTP_BUFFER_SIZE);
	if (h->opts.verbose)
		curl_easy_setopt(e, CURLOPT_VERBOSE, 1L);
	return 0;
}

int http_submit(struct http *h, const struct http_request *r, char **err)
{
	struct http_xfer *x = NULL;
	int rc = 0;

	if (h->closing || (h->releasing && h->releasing == r->owner))
		return util_err(err, -ECANCELED, "http: closing");
	if (!r->method || !r->url || !r->cb ||
	    (r->body == HTTP_BODY_FD && r->body_fd < 0) ||
	    (r->body == HTTP_BODY_MEM && r->body_len && !r->body_buf) ||
	    (r->sink == HTTP_SINK_FD && r->sink_fd < 0))
		return util_err(err, -EINVAL, "http: bad request");
	x = calloc(1, sizeof *x);
	if (!x)
		return -ENOMEM;
	x->h = h;
	x->body = r->body;
	x->body_fd = r->body_fd;
	x->body_off = r->body_off;
	x->body_len = r->body == HTTP_BODY_NONE ? 0 : r->body_len;
	x->sink = r->sink;
	x->sink_max = r->sink_max ? r->sink_max : HTTP_DEFAULT_SINK_MAX;
	x->sink_fd = r->sink_fd;
	x->sink_off = r->sink_off;
	x->content_length = -1;
	x->priority = r->priority;
	x->owner = r->owner;
	x->cb = r->cb;
	x->arg = r->arg;
	if (r->body == HTTP_BODY_MEM && x->body_len) {
		x->body_buf = malloc(x->body_len);
		if (!x->body_buf) {
			rc = -ENOMEM;
			goto out;
		}
		memcpy(x->body_buf, r->body_buf, x->body_len);
	}
	x->easy = curl_easy_init();
	if (!x->easy) {
		rc = util_err(err, -ENOMEM, "curl_easy_init failed");
		goto out;
	}
	if ((rc = http_xfer_setup(h, x, r, err)))
		goto out;

	if (h->running.n < http_limit(h) && !h->queue[0].n &&
	    !h->queue[1].n) {
		CURLMcode mc = curl_multi_add_handle(h->multi, x->easy);
		if (mc != CURLM_OK) {
			rc = util_err(err, -ENOMEM, "curl_multi_add_handle: %s",
				      curl_multi_strerror(mc));
			goto out;
		}
		xfer_list_push(&h->running, x);
	} else {
		xfer_list_push(&h->queue[r->priority ? 0 : 1], x);
	}
	x = NULL;
out:
	http_xfer_free(x);
	return rc;
}

void http_close(struct http *h, void (*done)(void *arg), void *arg)
{
	struct http_xfer *x;

	if (!h || h->closing)
		return;
	h->closing = true;
	http_shared_unlink(h);
	h->done = done;
	h->done_arg = arg;
	for (int q = 0; q < 2; q++)
		while ((x = xfer_list_pop(&h->queue[q])))
			http_xfer_finish(x, CURLE_OK, -ECANCELED, "cancelled");
	while ((x = xfer_list_pop(&h->running))) {
		curl_multi_remove_handle(h->multi, x->easy);
		http_xfer_finish(x, CURLE_OK, -ECANCELED, "cancelled");
	}
	/* closes pooled connections: CURL_POLL_REMOVE and our close-socket
	 * callback close their poll handles */
	curl_multi_cleanup(h->multi);
	h->multi = NULL;
	while (h->socks)
		http_sock_close(h->socks);
	uv_timer_stop(&h->timer);
	uv_close((uv_handle_t *)&h->timer, http_on_timer_closed);
}

/* The first queued or running transfer of `owner`, or NULL. */
static struct http_xfer *http_owned(struct http *h, const void *owner,
				    bool *running)
{
	for (int q = 0; q < 2; q++)
		for (struct http_xfer *x = h->queue[q].head; x; x = x->next)
			if (x->owner == owner) {
				xfer_list_remove(&h->queue[q], x);
				*running = false;
				return x;
			}
	for (struct http_xfer *x = h->running.head; x; x = x->next)
		if (x->owner == owner) {
			xfer_list_remove(&h->running, x);
			*running = true;
			return x;
		}
	return NULL;
}

void http_release(struct http *h, const void *owner)
{
	if (!h || h->closing)
		return;
	if (h->refs <= 1) {
		http_close(h, NULL, NULL);
		return;
	}
	h->refs--;
	h->releasing = owner;
	struct http_xfer *x;
	bool running;
	while ((x = http_owned(h, owner, &running))) {
		if (running)
			curl_multi_remove_handle(h->multi, x->easy);
		http_xfer_finish(x, CURLE_OK, -ECANCELED, "cancelled");
	}
	h->releasing = NULL;
	http_set_limit(h);
	http_admit(h);
}

