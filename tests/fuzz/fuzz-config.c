/* fuzz-config.c: libFuzzer harness over config_parse (without environment
 * expansion, so runs are reproducible). A parse must never crash, leak,
 * loop or read out of bounds; a failed parse must say why, and a
 * successful one must uphold the invariants config-file.h promises.
 *
 *   clang -g -fsanitize=fuzzer,address,undefined -I. -Idaemon \
 *     tests/fuzz/fuzz-config.c daemon/config.c daemon/util.c -lyaml
 *   ./a.out tests/fuzz/corpus/config
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "config-file.h"
#include "walrust.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_url(const char *url)
{
	if (!url)
		return;
	if (strncmp(url, "s3://", 5) != 0 && strncmp(url, "file:///", 8) != 0)
		abort();
	if (strncmp(url, "s3://", 5) == 0 && (url[5] == '\0' || url[5] == '/'))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config *c = NULL;
	char *err = NULL;
	int rc = config_parse(&c, (const char *)data, size, "fuzz.yml", false,
			      &err);
	if (rc < 0) {
		if (c || (rc == -EINVAL && !err))
			abort();
		free(err);
		return 0;
	}
	if (!c || err || c->workers < 1 || c->nlevels > CONFIG_MAX_LEVELS ||
	    c->snapshot_interval_ms <= 0 || c->snapshot_retention_ms <= 0 ||
	    c->l0_retention_ms < 0)
		abort();
	for (size_t i = 0; i < c->nlevels; i++)
		if (c->level_interval_ms[i] <= 0)
			abort();
	check_url(c->default_replica);
	for (size_t i = 0; i < c->ndbs; i++) {
		const struct config_db *d = &c->dbs[i];
		if (!d->path == !d->dir)
			abort();
		if ((d->path ? d->path : d->dir)[0] != '/')
			abort();
		if (d->dir && !d->pattern)
			abort();
		if (!d->replica.url && !c->default_replica)
			abort();
		if (d->replica.sync_interval_ms <= 0)
			abort();
		check_url(d->replica.url);
	}
	for (size_t i = 0; i < c->nwarnings; i++)
		(void)strlen(c->warnings[i]);
	config_free(c);
	return 0;
}
