/* storage-file.c: a local directory as a replica (file:///dir), the built-in
 * default. Objects are files below the directory; a put writes "<key>.tmp",
 * fsyncs it, sets its mtime to the LTX timestamp (as Litestream does) and
 * renames it into place, so a reader never sees half a file (a conditional
 * create, storage_put_new, renames without replacing). The work is
 * done synchronously (local disk) and the callback is delivered from the
 * loop on the next iteration, so callers see the same contract as S3. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon.h"

struct storage_file {
	struct storage base;
	char *dir;
};

struct storage_file_op {
	uv_timer_t timer;
	int status;
	char *err;
	storage_cb cb;
	storage_list_cb list_cb;
	void *arg;
	char **keys, **prefixes;
	size_t nkeys, nprefixes, capkeys, capprefixes;
};

static void storage_file_op_closed(uv_handle_t *h)
{
	struct storage_file_op *op = h->data;
	for (size_t i = 0; i < op->nkeys; i++)
		free(op->keys[i]);
	for (size_t i = 0; i < op->nprefixes; i++)
		free(op->prefixes[i]);
	free(op->keys);
	free(op->prefixes);
	free(op->err);
	free(op);
}

static void storage_file_op_fire(uv_timer_t *t)
{
	struct storage_file_op *op = t->data;
	if (op->list_cb)
		op->list_cb(op->arg, op->status, op->err, op->keys, op->nkeys,
			    op->prefixes, op->nprefixes);
	else
		op->cb(op->arg, op->status, op->err);
	uv_close((uv_handle_t *)t, storage_file_op_closed);
}

static struct storage_file_op *storage_file_op_new(struct storage *s)
{
	struct storage_file_op *op = calloc(1, sizeof *op);
	if (!op)
		return NULL;
	uv_timer_init(s->loop, &op->timer);
	op->timer.data = op;
	return op;
}

static int storage_file_op_finish(struct storage_file_op *op, int status)
{
	op->status = status;
	return uv_timer_start(&op->timer, storage_file_op_fire, 0, 0);
}

static char *storage_file_path(struct storage_file *f, const char *key)
{
	return util_strdup_printf("%s/%s", f->dir, key);
}

static bool storage_file_key_ok(const char *key)
{
	/* No absolute keys, no ".." components. */
	if (key[0] == '/')
		return false;
	for (const char *p = key; *p;) {
		const char *e = strchr(p, '/');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if (n == 2 && p[0] == '.' && p[1] == '.')
			return false;
		if (!e)
			break;
		p = e + 1;
	}
	return true;
}

static int storage_file_copy(int in, off_t in_off, int out, off_t out_off,
			     uint64_t len)
{
	char *buf = malloc(1 << 20);
	if (!buf)
		return -ENOMEM;
	int rc = 0;
	while (len > 0) {
		size_t want = len < (1 << 20) ? (size_t)len : (1 << 20);
		ssize_t n = util_pread_all(in, buf, want, in_off);
		if (n < 0) {
			rc = (int)n;
			break;
		}
		if (n == 0) {
			rc = -EIO;
			break;
		}
		rc = util_pwrite_all(out, buf, (size_t)n, out_off);
		if (rc < 0)
			break;
		in_off += n;
		out_off += n;
		len -= (uint64_t)n;
	}
	free(buf);
	return rc;
}

/* Put tmp in place as path; with excl only if path does not exist
 * (-EEXIST). rename(2) is atomic; RENAME_NOREPLACE keeps that for excl,
 * and where the filesystem lacks it, link(2) does the same (it refuses an
 * existing name) at the cost of a second step to drop tmp. */
static int storage_file_place(const char *tmp, const char *path, bool excl)
{
	if (!excl)
		return rename(tmp, path) < 0 ? -errno : 0;
	if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -errno;
	if (link(tmp, path) < 0)
		return -errno;
	unlink(tmp);
	return 0;
}

static int storage_file_put(struct storage *s, const char *key, int fd,
			    uint64_t len, int64_t ts_ms, bool excl,
			    storage_cb cb, void *arg)
{
	struct storage_file *f = (struct storage_file *)s;
	if (!storage_file_key_ok(key))
		return -EINVAL;
	struct storage_file_op *op = storage_file_op_new(s);
	if (!op)
		return -ENOMEM;
	op->cb = cb;
	op->arg = arg;
	char *path = storage_file_path(f, key);
	/* Unique per writer: two processes may put the same key at once. */
	static unsigned seq;
	char *tmp = util_strdup_printf("%s.%d.%u.tmp", path, (int)getpid(), seq++);
	char *dir = strdup(path);
	int out = -1, rc;
	*strrchr(dir, '/') = '\0';
	rc = util_mkdir_p(dir, 0755);
	if (rc < 0) {
		util_err(&op->err, rc, "cannot create %s: %s", dir, strerror(-rc));
		goto out;
	}
	out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (out < 0) {
		rc = -errno;
		util_err(&op->err, rc, "cannot create %s: %s", tmp, strerror(errno));
		goto out;
	}
	rc = storage_file_copy(fd, 0, out, 0, len);
	if (rc == 0 && fsync(out) < 0)
		rc = -errno;
	if (rc == 0) {
		struct timespec ts[2] = {
			{.tv_sec = ts_ms / 1000, .tv_nsec = (ts_ms % 1000) * 1000000},
			{.tv_sec = ts_ms / 1000, .tv_nsec = (ts_ms % 1000) * 1000000},
		};
		futimens(out, ts);
	}
	if (rc == 0)
		rc = storage_file_place(tmp, path, excl);
	if (rc == 0)
		rc = util_fsync_dir(path);
	if (rc < 0) {
		if (rc == -EEXIST)
			util_err(&op->err, rc, "%s: the file already exists",
				 path);
		else
			util_err(&op->err, rc, "cannot write %s: %s", path,
				 strerror(-rc));
		unlink(tmp);
	}
out:
	if (out >= 0)
		close(out);
	free(path);
	free(tmp);
	free(dir);
	return storage_file_op_finish(op, rc == -EEXIST ? rc
					  : rc < 0      ? -EIO
							: 0);
}

static int storage_file_get(struct storage *s, const char *key, int fd,
			    uint64_t limit, storage_cb cb, void *arg)
{
	struct storage_file *f = (struct storage_file *)s;
	if (!storage_file_key_ok(key))
		return -EINVAL;
	struct storage_file_op *op = storage_file_op_new(s);
	if (!op)
		return -ENOMEM;
	op->cb = cb;
	op->arg = arg;
	char *path = storage_file_path(f, key);
	int in = open(path, O_RDONLY | O_CLOEXEC), rc = 0;
	struct stat st;
	if (in < 0 || fstat(in, &st) < 0) {
		rc = errno == ENOENT ? -ENOENT : -EIO;
		util_err(&op->err, rc, "cannot read %s: %s", path, strerror(errno));
		goto out;
	}
	if (ftruncate(fd, 0) < 0) {
		rc = -EIO;
		util_err(&op->err, rc, "cannot truncate download file: %s",
			 strerror(errno));
		goto out;
	}
	uint64_t len = (uint64_t)st.st_size;
	if (limit && limit < len)
		len = limit;
	rc = storage_file_copy(in, 0, fd, 0, len);
	if (rc < 0) {
		util_err(&op->err, rc, "cannot copy %s: %s", path, strerror(-rc));
		rc = -EIO;
	}
out:
	if (in >= 0)
		close(in);
	free(path);
	return storage_file_op_finish(op, rc);
}

static int storage_file_push(char ***v, size_t *n, size_t *cap, char *s)
{
	if (!s)
		return -ENOMEM;
	if (*n == *cap) {
		size_t nc = *cap ? *cap * 2 : 16;
		char **nv = realloc(*v, nc * sizeof *nv);
		if (!nv) {
			free(s);
			return -ENOMEM;
		}
		*v = nv;
		*cap = nc;
	}
	(*v)[(*n)++] = s;
	return 0;
}

static bool storage_file_is_tmp(const char *name)
{
	size_t n = strlen(name);
	return n > 4 && strcmp(name + n - 4, ".tmp") == 0;
}

/* Walk dir/rel recursively, adding keys (relative to the root). */
static int storage_file_walk(struct storage_file *f, struct storage_file_op *op,
			     const char *rel, const char *match, bool delimit,
			     int depth)
{
	char *path = rel[0] ? storage_file_path(f, rel) : strdup(f->dir);
	DIR *d = opendir(path);
	int rc = 0;
	if (!d) {
		rc = (errno == ENOENT || errno == ENOTDIR) ? 0 : -errno;
		goto out;
	}
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.' || storage_file_is_tmp(e->d_name))
			continue;
		char *key = rel[0] ? util_strdup_printf("%s/%s", rel, e->d_name)
				   : strdup(e->d_name);
		if (!key) {
			rc = -ENOMEM;
			break;
		}
		/* Only entries that can match the prefix. */
		size_t kl = strlen(key), ml = strlen(match);
		bool is_dir = e->d_type == DT_DIR;
		if (e->d_type == DT_UNKNOWN) {
			struct stat st;
			char *full = storage_file_path(f, key);
			is_dir = stat(full, &st) == 0 && S_ISDIR(st.st_mode);
			free(full);
		}
		bool under = strncmp(key, match, kl < ml ? kl : ml) == 0;
		if (!under) {
			free(key);
			continue;
		}
		if (is_dir) {
			if (kl >= ml && delimit) {
				rc = storage_file_push(&op->prefixes, &op->nprefixes,
						       &op->capprefixes,
						       util_strdup_printf("%s/", key));
			} else if (depth < 16) {
				rc = storage_file_walk(f, op, key, match, delimit,
						       depth + 1);
			}
			free(key);
		} else if (kl >= ml) {
			rc = storage_file_push(&op->keys, &op->nkeys,
					       &op->capkeys, key);
		} else {
			free(key);
		}
		if (rc < 0)
			break;
	}
	closedir(d);
out:
	free(path);
	return rc;
}

static int storage_file_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int storage_file_list(struct storage *s, const char *prefix,
			     const char *delimiter, storage_list_cb cb, void *arg)
{
	struct storage_file *f = (struct storage_file *)s;
	if (!storage_file_key_ok(prefix))
		return -EINVAL;
	struct storage_file_op *op = storage_file_op_new(s);
	if (!op)
		return -ENOMEM;
	op->list_cb = cb;
	op->arg = arg;
	/* Start the walk at the deepest directory the prefix names. */
	char *start = strdup(prefix);
	char *slash = strrchr(start, '/');
	if (slash)
		*slash = '\0';
	else
		start[0] = '\0';
	bool delimit = delimiter && strcmp(delimiter, "/") == 0;
	int rc = storage_file_walk(f, op, start, prefix, delimit, 0);
	free(start);
	if (rc < 0)
		util_err(&op->err, rc, "cannot list %s/%s: %s", f->dir, prefix,
			 strerror(-rc));
	else {
		if (op->nkeys)
			qsort(op->keys, op->nkeys, sizeof *op->keys,
			      storage_file_cmp);
		if (op->nprefixes)
			qsort(op->prefixes, op->nprefixes, sizeof *op->prefixes,
			      storage_file_cmp);
	}
	return storage_file_op_finish(op, rc < 0 ? -EIO : 0);
}

static int storage_file_del(struct storage *s, const char *const *keys,
			    size_t n, storage_cb cb, void *arg)
{
	struct storage_file *f = (struct storage_file *)s;
	for (size_t i = 0; i < n; i++)
		if (!storage_file_key_ok(keys[i]))
			return -EINVAL;
	struct storage_file_op *op = storage_file_op_new(s);
	if (!op)
		return -ENOMEM;
	op->cb = cb;
	op->arg = arg;
	int rc = 0;
	for (size_t i = 0; i < n; i++) {
		char *path = storage_file_path(f, keys[i]);
		if (unlink(path) < 0 && errno != ENOENT && rc == 0) {
			rc = -EIO;
			util_err(&op->err, rc, "cannot delete %s: %s", path,
				 strerror(errno));
		}
		free(path);
	}
	return storage_file_op_finish(op, rc);
}

static void storage_file_free(struct storage *s)
{
	struct storage_file *f = (struct storage_file *)s;
	free(f->dir);
	free(s->describe);
	free(f);
}

static const struct storage_ops storage_file_ops = {
	.name = "file",
	.put = storage_file_put,
	.get = storage_file_get,
	.list = storage_file_list,
	.del = storage_file_del,
	.free = storage_file_free,
};

int storage_file_new(struct storage **out, uv_loop_t *loop, const char *dir,
		     char **err)
{
	struct storage_file *f = calloc(1, sizeof *f);
	if (!f)
		return -ENOMEM;
	f->dir = strdup(dir);
	for (size_t n = strlen(f->dir); n > 1 && f->dir[n - 1] == '/'; n--)
		f->dir[n - 1] = '\0';
	f->base.ops = &storage_file_ops;
	f->base.kind = STORAGE_FILE;
	f->base.loop = loop;
	f->base.describe = util_strdup_printf("file://%s", f->dir);
	*out = &f->base;
	return 0;
}
