/* storage.c: the storage seam's front door. Parses a replica URL, picks the
 * backend, dispatches through its vtable; and, for one-shot job processes,
 * "_wait" wrappers that run the loop until an operation completes (never
 * called from inside a loop callback). */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"

int storage_new(struct storage **out, uv_loop_t *loop, const char *url,
		const struct storage_opts *opts, char **err)
{
	static const struct storage_opts none;
	if (!opts)
		opts = &none;
	if (!url || !*url)
		return util_err(err, -EINVAL, "empty replica URL");
	if (strncmp(url, "file://", 7) == 0) {
		const char *dir = url + 7;
		if (*dir != '/')
			return util_err(err, -EINVAL,
					"file URL must be absolute: file:///dir (got %s)",
					url);
		return storage_file_new(out, loop, dir, err);
	}
	if (url[0] == '/')
		return storage_file_new(out, loop, url, err);
	const char *rest = url;
	if (strncmp(url, "s3://", 5) == 0)
		rest = url + 5;
	else if (strstr(url, "://"))
		return util_err(err, -EINVAL,
				"unsupported replica URL %s (use s3://bucket[/prefix] or file:///dir)",
				url);
	const char *slash = strchr(rest, '/');
	size_t blen = slash ? (size_t)(slash - rest) : strlen(rest);
	if (blen == 0)
		return util_err(err, -EINVAL, "no bucket name in %s", url);
	char *bucket = strndup(rest, blen);
	char *prefix = strdup(slash ? slash + 1 : "");
	int rc = -ENOMEM;
	if (!bucket || !prefix)
		goto out;
	/* Trim trailing slashes of the prefix. */
	for (size_t n = strlen(prefix); n > 0 && prefix[n - 1] == '/'; n--)
		prefix[n - 1] = '\0';
	rc = storage_s3_new(out, loop, bucket, prefix, opts, err);
out:
	free(bucket);
	free(prefix);
	return rc;
}

enum storage_kind storage_kind(const struct storage *s)
{
	return s->kind;
}

const char *storage_describe(const struct storage *s)
{
	return s->describe ? s->describe : "?";
}

char *storage_object_name(const struct storage *s, const char *key)
{
	const char *d = storage_describe(s);
	if (s->kind == STORAGE_FILE) /* the path under the directory */
		return strdup(key);
	const char *p = strchr(d + 5, '/'); /* s3://bucket/prefix */
	return p ? util_strdup_printf("%s/%s", p + 1, key) : strdup(key);
}

int storage_put(struct storage *s, const char *key, int fd, uint64_t len,
		int64_t ts_ms, storage_cb cb, void *arg)
{
	return s->ops->put(s, key, fd, len, ts_ms, false, cb, arg);
}

int storage_put_new(struct storage *s, const char *key, int fd, uint64_t len,
		    int64_t ts_ms, storage_cb cb, void *arg)
{
	return s->ops->put(s, key, fd, len, ts_ms, true, cb, arg);
}

int storage_get(struct storage *s, const char *key, int fd, storage_cb cb,
		void *arg)
{
	return s->ops->get(s, key, fd, 0, cb, arg);
}


int storage_list(struct storage *s, const char *prefix, const char *delimiter,
		 storage_list_cb cb, void *arg)
{
	return s->ops->list(s, prefix, delimiter, cb, arg);
}

int storage_delete(struct storage *s, const char *const *keys, size_t n,
		   storage_cb cb, void *arg)
{
	return s->ops->del(s, keys, n, cb, arg);
}

struct storage *storage_ref(struct storage *s)
{
	s->refs = s->refs ? s->refs + 1 : 2;
	return s;
}

void storage_free(struct storage *s)
{
	if (!s)
		return;
	if (s->refs > 1) {
		s->refs--;
		return;
	}
	s->ops->free(s);
}

const char *storage_error_code(int status)
{
	switch (status) {
	case -EACCES:
	case -EPERM:
		return WRP_E_AUTH;
	case -EHOSTUNREACH:
	case -ECONNREFUSED:
	case -ETIMEDOUT:
		return WRP_E_UNREACHABLE;
	case -EINVAL:
		return WRP_E_INVALID;
	default:
		return WRP_E_STORAGE;
	}
}

/* ---- synchronous wrappers for job processes ---- */

struct storage_waiter {
	int status;
	size_t pending;
	char *err;
	struct storage_listing *listing;
	void (*progress)(void *arg, size_t done);
	void *progress_arg;
	size_t done;
};

static void storage_waiter_done(void *arg, int status, const char *err)
{
	struct storage_waiter *w = arg;
	if (status < 0 && w->status == 0) {
		w->status = status;
		w->err = strdup(err ? err : "storage error");
	}
	w->pending--;
	w->done++;
	if (status == 0 && w->progress)
		w->progress(w->progress_arg, w->done);
}

static int storage_waiter_run(struct storage *s, struct storage_waiter *w,
			      char **err)
{
	while (w->pending > 0)
		uv_run(s->loop, UV_RUN_ONCE);
	if (w->status < 0 && err && !*err)
		*err = w->err;
	else
		free(w->err);
	return w->status;
}

int storage_put_wait(struct storage *s, const char *key, int fd, uint64_t len,
		     int64_t ts_ms, char **err)
{
	struct storage_waiter w = {.pending = 1};
	int rc = storage_put(s, key, fd, len, ts_ms, storage_waiter_done, &w);
	if (rc < 0)
		return rc;
	return storage_waiter_run(s, &w, err);
}

int storage_get_wait(struct storage *s, const char *key, int fd, char **err)
{
	struct storage_waiter w = {.pending = 1};
	int rc = storage_get(s, key, fd, storage_waiter_done, &w);
	if (rc < 0)
		return rc;
	return storage_waiter_run(s, &w, err);
}

int storage_get_many_wait(struct storage *s, const char *const *keys,
			  const int *fds, size_t n, uint64_t limit,
			  void (*progress)(void *arg, size_t done), void *arg,
			  char **err)
{
	struct storage_waiter w = {.progress = progress, .progress_arg = arg};
	int rc = 0;
	for (size_t i = 0; i < n; i++) {
		rc = s->ops->get(s, keys[i], fds[i], limit,
				 storage_waiter_done, &w);
		if (rc < 0) {
			util_err(err, rc, "cannot start download of %s",
				 keys[i]);
			break;
		}
		w.pending++;
	}
	int st = storage_waiter_run(s, &w, err);
	return rc < 0 ? rc : st;
}

static char **storage_strv_dup(char **v, size_t n)
{
	char **out = calloc(n + 1, sizeof *out);
	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i++)
		out[i] = strdup(v[i]);
	return out;
}

static void storage_waiter_listed(void *arg, int status, const char *err,
				  char **keys, size_t nkeys, char **prefixes,
				  size_t nprefixes)
{
	struct storage_waiter *w = arg;
	if (status == 0) {
		w->listing->keys = storage_strv_dup(keys, nkeys);
		w->listing->nkeys = nkeys;
		w->listing->prefixes = storage_strv_dup(prefixes, nprefixes);
		w->listing->nprefixes = nprefixes;
	}
	storage_waiter_done(arg, status, err);
}

int storage_list_wait(struct storage *s, const char *prefix,
		      const char *delimiter, struct storage_listing *out,
		      char **err)
{
	memset(out, 0, sizeof *out);
	struct storage_waiter w = {.pending = 1, .listing = out};
	int rc = storage_list(s, prefix, delimiter, storage_waiter_listed, &w);
	if (rc < 0)
		return rc;
	return storage_waiter_run(s, &w, err);
}

void storage_listing_clear(struct storage_listing *l)
{
	for (size_t i = 0; l->keys && i < l->nkeys; i++)
		free(l->keys[i]);
	for (size_t i = 0; l->prefixes && i < l->nprefixes; i++)
		free(l->prefixes[i]);
	free(l->keys);
	free(l->prefixes);
	memset(l, 0, sizeof *l);
}

/* ---- a request's storage (worker and job processes) ---- */

int storage_open_args(uv_loop_t *loop, json_t *args, struct storage **out,
		     const char **code, char **err)
{
	const char *bucket = wrp_arg_string(args, "bucket");
	json_t *aws = json_object_get(args, "aws");
	struct storage_opts o = {0};
	o.endpoint = wrp_arg_string(args, "endpoint");
	if (json_is_object(aws)) {
		if (!o.endpoint)
			o.endpoint = wrp_arg_string(aws, "endpoint_url");
		o.region = wrp_arg_string(aws, "region");
		o.access_key_id = wrp_arg_string(aws, "access_key_id");
		o.secret_access_key = wrp_arg_string(aws, "secret_access_key");
		o.session_token = wrp_arg_string(aws, "session_token");
	}
	if (o.endpoint && !*o.endpoint)
		o.endpoint = NULL;
	if (!bucket || !*bucket) {
		*code = WRP_E_INVALID;
		return util_err(err, -EINVAL, "no bucket given and no default replica");
	}
	int rc = storage_new(out, loop, bucket, &o, err);
	if (rc < 0)
		*code = rc == -EINVAL ? WRP_E_INVALID : storage_error_code(rc);
	return rc;
}
