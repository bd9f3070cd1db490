/* watchlist.c: the databases named by the configuration file.
 *
 * A `path` entry is watched as soon as its file exists (an application may
 * create it after walrustd starts); with restore-if-db-not-exists, a
 * missing file is first restored from its replica (nothing to restore is
 * fine: the application starts empty). A `dir` entry is scanned every
 * second for files matching its pattern (recursively when asked), and each
 * new one is watched. Only then is the application (exec.c) started.
 *
 * Replica locations follow Litestream: a replica URL names one database's
 * own directory (s3://bucket/backups/app), so its last path component is
 * the database's name in the replica and the rest is the replica root; for
 * `dir` entries the database's path relative to the directory is appended
 * to the URL first.
 *
 * Reload (SIGHUP, watchlist_reload): a database the new configuration no
 * longer names is unwatched (after its final sync); one whose settings
 * changed is unwatched and watched again with the new ones; new ones are
 * watched; the others go on undisturbed. An entry stays allocated once
 * made (a watch request in flight points at it); a dropped one has db
 * NULL. */
#include "config.h"

#include <dirent.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config-file.h"
#include "daemon.h"

struct wanted {
	struct wanted *next;
	char *path;
	const struct config_db *db; /* NULL: dropped by a reload */
	char *rel;   /* for dir entries: path relative to the directory */
	bool requested;
};

static struct {
	uv_loop_t *loop;
	const struct config *c;
	const char *dflt;
	void (*ready)(void);
	uv_timer_t scan;
	bool scanning;
	size_t restores;
	struct wanted *wanted;
} wl;

/* Split a replica URL into its root and the last path component. */
static void watchlist_split(const char *url, char **root, char **name)
{
	const char *scheme = strstr(url, "://");
	const char *body = scheme ? scheme + 3 : url;
	if (strncmp(url, "file://", 7) == 0)
		body = url + 7;
	else if (scheme)
		body = strchr(body, '/') ? strchr(body, '/') : body + strlen(body);
	const char *slash = strrchr(body, '/');
	if (!slash || slash[1] == '\0' || slash == body) {
		*root = strdup(url);
		*name = NULL;
		return;
	}
	*root = strndup(url, (size_t)(slash - url));
	*name = strdup(slash + 1);
}

static json_t *watchlist_args(const struct wanted *w)
{
	const struct config_replica *r = &w->db->replica;
	const char *url = r->url ? r->url : wl.dflt;
	char *full = w->rel ? util_strdup_printf("%s/%s", url, w->rel)
			    : strdup(url);
	char *root, *name;
	watchlist_split(full, &root, &name);
	if (!name)
		name = replica_name_from_path(w->path);
	json_t *aws = json_object();
	if (r->access_key_id)
		json_object_set_new(aws, "access_key_id",
				    json_string(r->access_key_id));
	if (r->secret_access_key)
		json_object_set_new(aws, "secret_access_key",
				    json_string(r->secret_access_key));
	if (r->region)
		json_object_set_new(aws, "region", json_string(r->region));
	json_t *args = json_pack("{s:s,s:s,s:s,s:o}", "database", w->path,
				 "bucket", root, "name", name, "aws", aws);
	if (r->endpoint)
		json_object_set_new(args, "endpoint", json_string(r->endpoint));
	free(full);
	free(root);
	free(name);
	return args;
}

static void watchlist_watched(void *arg, json_t *msg)
{
	struct wanted *w = arg;
	if (!json_object_get(msg, "ok"))
		return; /* an event */
	if (json_object_get(msg, "ok") != json_true()) {
		const char *m = json_string_value(json_object_get(
			json_object_get(msg, "error"), "message"));
		log_warn("cannot watch %s: %s", w->path, m ? m : "error");
		w->requested = false; /* the next scan retries */
	}
}

/* The whole watch request's arguments for w under configuration c. */
static json_t *watchlist_watch_args(const struct wanted *w,
				    const struct config *c)
{
	const struct config *saved = wl.c;
	wl.c = c;
	json_t *args = watchlist_args(w);
	json_object_set_new(args, "sync_interval_ms",
			    json_integer(w->db->replica.sync_interval_ms));
	/* Compaction and retention settings (internal arguments: only the
	 * configuration file sets them). */
	json_t *lv = json_array();
	for (size_t i = 0; i < wl.c->nlevels; i++)
		json_array_append_new(lv, json_integer(wl.c->level_interval_ms[i]));
	json_object_set_new(args, "level_intervals_ms", lv);
	json_object_set_new(args, "snapshot_interval_ms",
			    json_integer(wl.c->snapshot_interval_ms));
	json_object_set_new(args, "snapshot_retention_ms",
			    json_integer(wl.c->retention_enabled
						 ? wl.c->snapshot_retention_ms
						 : 0));
	json_object_set_new(args, "l0_retention_ms",
			    json_integer(wl.c->retention_enabled
						 ? wl.c->l0_retention_ms
						 : 0));
	json_object_set_new(args, "retention_check_ms",
			    json_integer(wl.c->l0_retention_check_interval_ms));
	wl.c = saved;
	return args;
}

static void watchlist_watch(struct wanted *w)
{
	struct stat st;
	if (!w->db || w->requested || supervisor_watching(w->path) ||
	    stat(w->path, &st) < 0 || !S_ISREG(st.st_mode))
		return;
	w->requested = true;
	json_t *args = watchlist_watch_args(w, wl.c);
	json_t *req = json_pack("{s:i,s:s,s:s,s:o}", "v", WRP_VERSION, "id",
				"config", "cmd", "watch", "args", args);
	struct client *c = client_internal(watchlist_watched, w);
	supervisor_to_worker(c, req, NULL);
	client_unref(c);
	json_decref(req);
}

static struct wanted *watchlist_want(const char *path, const struct config_db *db,
				     const char *rel)
{
	for (struct wanted *w = wl.wanted; w; w = w->next)
		if (strcmp(w->path, path) == 0) {
			if (!w->db) { /* dropped by a reload, wanted again */
				w->db = db;
				free(w->rel);
				w->rel = rel ? strdup(rel) : NULL;
				w->requested = false;
			}
			return w;
		}
	struct wanted *w = calloc(1, sizeof *w);
	w->path = strdup(path);
	w->db = db;
	w->rel = rel ? strdup(rel) : NULL;
	w->next = wl.wanted;
	wl.wanted = w;
	return w;
}

static bool watchlist_skip(const char *name)
{
	size_t n = strlen(name);
	return name[0] == '.' ||
	       (n > 4 && (strcmp(name + n - 4, "-wal") == 0 ||
			  strcmp(name + n - 4, "-shm") == 0)) ||
	       (n > 8 && strcmp(name + n - 8, "-journal") == 0);
}

static void watchlist_scan_dir(const struct config_db *db, const char *dir,
			       const char *rel, int depth)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (watchlist_skip(e->d_name))
			continue;
		char *path = util_strdup_printf("%s/%s", dir, e->d_name);
		char *r = rel ? util_strdup_printf("%s/%s", rel, e->d_name)
			      : strdup(e->d_name);
		struct stat st;
		if (stat(path, &st) == 0) {
			if (S_ISDIR(st.st_mode) && db->recursive && depth < 16)
				watchlist_scan_dir(db, path, r, depth + 1);
			else if (S_ISREG(st.st_mode) &&
				 fnmatch(db->pattern, e->d_name, 0) == 0)
				watchlist_watch(watchlist_want(path, db, r));
		}
		free(path);
		free(r);
	}
	closedir(d);
}

static void watchlist_tick(uv_timer_t *t)
{
	(void)t;
	for (size_t i = 0; i < wl.c->ndbs; i++)
		if (wl.c->dbs[i].dir)
			watchlist_scan_dir(&wl.c->dbs[i], wl.c->dbs[i].dir, NULL, 0);
	for (struct wanted *w = wl.wanted; w; w = w->next)
		watchlist_watch(w);
}

static void watchlist_go(void)
{
	for (size_t i = 0; i < wl.c->ndbs; i++)
		if (wl.c->dbs[i].path)
			watchlist_want(wl.c->dbs[i].path, &wl.c->dbs[i], NULL);
	watchlist_tick(NULL);
	uv_timer_start(&wl.scan, watchlist_tick, 1000, 1000);
	if (wl.ready)
		wl.ready();
}

static void watchlist_restored(void *arg, json_t *msg)
{
	struct wanted *w = arg;
	json_t *ok = json_object_get(msg, "ok");
	if (!ok)
		return;
	json_t *e = json_object_get(msg, "error");
	const char *code = json_string_value(json_object_get(e, "code"));
	if (ok == json_true())
		log_info("restored %s from its replica", w->path);
	else if (code && strcmp(code, WRP_E_NO_SNAPSHOT) == 0)
		log_info("%s: no replica yet; starting empty", w->path);
	else
		log_error("cannot restore %s: %s", w->path,
			  json_string_value(json_object_get(e, "message")));
	if (--wl.restores == 0)
		watchlist_go();
}

void watchlist_start(uv_loop_t *loop, const struct config *c,
		     const char *default_bucket, void (*ready)(void))
{
	wl.loop = loop;
	wl.c = c;
	wl.dflt = default_bucket;
	wl.ready = ready;
	uv_timer_init(loop, &wl.scan);
	wl.scanning = true;
	if (c) {
		for (size_t i = 0; i < c->ndbs; i++) {
			const struct config_db *db = &c->dbs[i];
			struct stat st;
			if (!db->path || !db->restore_if_missing ||
			    stat(db->path, &st) == 0)
				continue;
			struct wanted *w = watchlist_want(db->path, db, NULL);
			json_t *args = watchlist_args(w);
			json_object_del(args, "database");
			json_object_set_new(args, "output", json_string(db->path));
			json_t *req = json_pack("{s:i,s:s,s:s,s:o}", "v",
						WRP_VERSION, "id", "restore",
						"cmd", "restore", "args", args);
			struct client *cl = client_internal(watchlist_restored, w);
			wl.restores++;
			supervisor_start_job(cl, req);
			client_unref(cl);
			json_decref(req);
		}
	}
	if (wl.restores == 0) {
		if (c)
			watchlist_go();
		else if (ready)
			ready();
	}
}

static void watchlist_unwatched(void *arg, json_t *msg)
{
	char *path = arg;
	json_t *ok = json_object_get(msg, "ok");
	if (!ok)
		return;
	if (ok == json_true())
		log_info("%s: no longer in the configuration; unwatched", path);
	else
		log_warn("cannot unwatch %s: %s", path,
			 json_string_value(json_object_get(
				 json_object_get(msg, "error"), "message")));
	free(path);
}

static void watchlist_unwatch(const char *path)
{
	json_t *req = json_pack("{s:i,s:s,s:s,s:{s:s}}", "v", WRP_VERSION,
				"id", "config", "cmd", "unwatch", "args",
				"database", path);
	struct client *c = client_internal(watchlist_unwatched, strdup(path));
	supervisor_to_worker(c, req, NULL);
	client_unref(c);
	json_decref(req);
}

/* The entry of configuration c that wants w's database, if any. */
static const struct config_db *watchlist_find(const struct config *c,
					      const struct wanted *w)
{
	for (size_t i = 0; i < c->ndbs; i++) {
		const struct config_db *db = &c->dbs[i];
		if (!w->rel && db->path && strcmp(db->path, w->path) == 0)
			return db;
		if (w->rel && db->dir && w->db && w->db->dir &&
		    strcmp(db->dir, w->db->dir) == 0) {
			const char *base = strrchr(w->rel, '/');
			base = base ? base + 1 : w->rel;
			if (fnmatch(db->pattern, base, 0) == 0 &&
			    (db->recursive || !strchr(w->rel, '/')))
				return db;
		}
	}
	return NULL;
}

void watchlist_reload(const struct config *c)
{
	if (!wl.c) {
		log_warn("reload: walrustd started without a configuration "
			 "file's databases; nothing to reload");
		return;
	}
	for (struct wanted *w = wl.wanted; w; w = w->next) {
		if (!w->db)
			continue;
		const struct config_db *db = watchlist_find(c, w);
		json_t *before = watchlist_watch_args(w, wl.c);
		json_t *after = NULL;
		if (db) {
			struct wanted t = *w;
			t.db = db;
			after = watchlist_watch_args(&t, c);
		}
		bool same = after && json_equal(before, after);
		json_decref(before);
		json_decref(after);
		bool watched = w->requested || supervisor_watching(w->path);
		w->db = db;
		if (same)
			continue;
		w->requested = false;
		if (watched) {
			if (db)
				log_info("%s: settings changed; watching it "
					 "again", w->path);
			watchlist_unwatch(w->path);
		}
	}
	wl.c = c;
	for (size_t i = 0; i < c->ndbs; i++)
		if (c->dbs[i].path)
			watchlist_want(c->dbs[i].path, &c->dbs[i], NULL);
	if (wl.scanning)
		watchlist_tick(NULL);
}

void watchlist_stop(void)
{
	if (wl.scanning) {
		uv_timer_stop(&wl.scan);
		uv_close((uv_handle_t *)&wl.scan, NULL);
		wl.scanning = false;
	}
}
