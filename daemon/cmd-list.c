/* cmd-list.c: `list`: the database names under a bucket and prefix, sorted.
 * Runs in the worker, on its loop, with an asynchronous listing. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "daemon.h"

static int cmd_list_cmp(const void *a, const void *b)
{
	return strcmp(json_string_value(*(json_t *const *)a),
		      json_string_value(*(json_t *const *)b));
}

static void cmd_list_done(void *arg, int status, const char *err, char **keys,
			  size_t nkeys, char **prefixes, size_t nprefixes)
{
	struct worker_req *r = arg;
	if (status < 0) {
		worker_fail(r, storage_error_code(status), "cannot list the replica: %s",
			    err ? err : "storage error");
		return;
	}
	json_t **names = calloc(nprefixes + 1, sizeof *names);
	size_t n = 0;
	for (size_t i = 0; names && i < nprefixes; i++) {
		size_t len = strlen(prefixes[i]);
		char *name = strndup(prefixes[i],
				     len && prefixes[i][len - 1] == '/' ? len - 1
									: len);
		if (name && replica_name_valid(name))
			names[n++] = json_string(name);
		free(name);
	}
	qsort(names, n, sizeof *names, cmd_list_cmp);
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(arr, names[i]);
	free(names);
	worker_reply(r, json_pack("{s:s,s:o}", "bucket",
				  storage_describe(r->storage), "databases", arr));
}

static void cmd_list_start(struct worker_req *r)
{
	int rc = storage_list(r->storage, "", "/", cmd_list_done, r);
	if (rc < 0)
		worker_fail(r, storage_error_code(rc), "cannot list %s",
			    storage_describe(r->storage));
}

const struct cmd cmd_list = {
	.name = "list", .start = cmd_list_start,
	.storage = true};
