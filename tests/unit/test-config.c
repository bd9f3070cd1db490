/* Unit tests for config.c: Litestream configuration files (verbatim examples
 * from litestream.io in fixtures/config), Go durations, environment
 * expansion, normalisation of replica locations, every error with its
 * position, and warnings for what is ignored. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config-file.h"
#include "suites.h"
#include "walrust.h"

#define CFG FIXTURES "/config/"

static struct config *load_ok(const char *name)
{
	struct config *c = NULL;
	char *err = NULL;
	int rc = config_load(&c, name, true, &err);
	ck_assert_msg(rc == 0, "%s: %d %s", name, rc, err ? err : "");
	ck_assert_ptr_null(err);
	return c;
}

static struct config *parse_ok(const char *text)
{
	struct config *c = NULL;
	char *err = NULL;
	int rc = config_parse(&c, text, strlen(text), "t.yml", false, &err);
	ck_assert_msg(rc == 0, "%d %s", rc, err ? err : "");
	ck_assert_ptr_nonnull(c);
	return c;
}

/* Parse must fail with exactly this message. */
static void parse_err(const char *text, const char *want)
{
	struct config *c = (struct config *)1;
	char *err = NULL;
	int rc = config_parse(&c, text, strlen(text), "t.yml", false, &err);
	ck_assert_msg(rc < 0, "parsed: %s", text);
	ck_assert_ptr_null(c);
	ck_assert_ptr_nonnull(err);
	ck_assert_str_eq(err, want);
	free(err);
}

/* Some warning must contain `want`. */
static void has_warning(const struct config *c, const char *want)
{
	for (size_t i = 0; i < c->nwarnings; i++)
		if (strstr(c->warnings[i], want))
			return;
	for (size_t i = 0; i < c->nwarnings; i++)
		fprintf(stderr, "warning: %s\n", c->warnings[i]);
	ck_abort_msg("no warning with \"%s\"", want);
}

/* ------------------------------------------------------------ durations */

START_TEST(test_duration)
{
	static const struct {
		const char *s;
		int64_t ms;
	} ok[] = {
		{"1s", 1000},
		{"500ms", 500},
		{"5m", 300000},
		{"1h30m", 5400000},
		{"24h", 86400000},
		{"2h45m30.5s", 9930500},
		{"1.5h", 5400000},
		{".5s", 500},
		{"1.s", 1000},
		{"0", 0},
		{"-0", 0},
		{"+5s", 5000},
		{"-1m", -60000},
		{"1500us", 1},
		{"1us", 1},       /* never rounded to 0 */
		{"-1ns", -1},
		{"2000000ns", 2},
		{"1\xc2\xb5s", 1},
		{"1\xce\xbcs", 1},
		{"1h1m1s1ms", 3661001},
		{"168h", 604800000},
		{"2562047h", 2562047LL * 3600000},
		{"9223372036854775807ns", 9223372036854},
		{"-9223372036854775808ns", -9223372036854},
		{"0.000000001s", 1},
		{"1.0000000000000000000001s", 1000}, /* fraction overflow */
	};
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		int64_t ms = 12345;
		ck_assert_msg(config_parse_duration(ok[i].s, &ms) == 0, "%s",
			      ok[i].s);
		ck_assert_msg(ms == ok[i].ms, "%s: %lld", ok[i].s,
			      (long long)ms);
	}
	static const char *const bad[] = {
		"", "1", "10", "s", "1x", "1 s", "1s ", " 1s", ".", ".s", "-",
		"1h-5m", "1S", "1hh", "1d", "1w", "++1s", "1e3s", "5m3",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		int64_t ms;
		ck_assert_msg(config_parse_duration(bad[i], &ms) == -EINVAL,
			      "accepted \"%s\"", bad[i]);
	}
	static const char *const big[] = {
		"9223372036854775808ns", "2562048h", "9999999999999999999h",
		"106751d", "1000000000000000000000s",
	};
	for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
		int64_t ms;
		ck_assert_msg(config_parse_duration(big[i], &ms) < 0,
			      "accepted \"%s\"", big[i]);
	}
	int64_t ms;
	ck_assert_int_eq(config_parse_duration("9223372036854775808ns", &ms),
			 -ERANGE);
	ck_assert_int_eq(config_parse_duration(NULL, &ms), -EINVAL);
}
END_TEST

/* ------------------------------------------------------------ defaults */

START_TEST(test_defaults)
{
	static const char *const empty[] = {"", "# nothing\n", "~\n",
					    "---\n", "dbs:\n", "dbs: []\n"};
	for (size_t i = 0; i < sizeof empty / sizeof empty[0]; i++) {
		struct config *c = parse_ok(empty[i]);
		ck_assert_uint_eq(c->ndbs, 0);
		ck_assert_int_eq(c->workers, 1);
		ck_assert_int_eq(c->snapshot_interval_ms, 24 * 3600000LL);
		ck_assert_int_eq(c->snapshot_retention_ms, 24 * 3600000LL);
		ck_assert_int_eq(c->l0_retention_ms, 300000);
		ck_assert_int_eq(c->l0_retention_check_interval_ms, 15000);
		ck_assert_uint_eq(c->nlevels, 3);
		ck_assert_int_eq(c->level_interval_ms[0], 30000);
		ck_assert_int_eq(c->level_interval_ms[1], 300000);
		ck_assert_int_eq(c->level_interval_ms[2], 3600000);
		ck_assert(c->retention_enabled);
		ck_assert_int_eq(c->shutdown_sync_timeout_ms, 30000);
		ck_assert_int_eq(c->shutdown_sync_interval_ms, 500);
		ck_assert_int_eq(c->log_level, -1);
		ck_assert_ptr_null(c->exec);
		ck_assert_ptr_null(c->socket);
		ck_assert_ptr_null(c->default_replica);
		ck_assert_ptr_null(c->defaults.url);
		ck_assert_int_eq(c->defaults.sync_interval_ms, 1000);
		ck_assert_uint_eq(c->nwarnings, 0);
		config_free(c);
	}
	config_free(NULL);
}
END_TEST

START_TEST(test_db_defaults)
{
	struct config *c = parse_ok("dbs:\n"
				    "  - path: /var/lib/db\n"
				    "    replica:\n"
				    "      url: s3://bucket/db\n");
	ck_assert_uint_eq(c->ndbs, 1);
	const struct config_db *d = &c->dbs[0];
	ck_assert_str_eq(d->path, "/var/lib/db");
	ck_assert_ptr_null(d->dir);
	ck_assert_int_eq(d->line, 2);
	ck_assert(!d->recursive && !d->watch && !d->restore_if_missing);
	ck_assert_int_eq(d->monitor_interval_ms, 1000);
	ck_assert_int_eq(d->checkpoint_interval_ms, 60000);
	ck_assert_int_eq(d->busy_timeout_ms, 1000);
	ck_assert_int_eq(d->min_checkpoint_page_count, 1000);
	ck_assert_int_eq(d->truncate_page_n, 121359);
	ck_assert_int_eq(d->max_sync_wal_bytes, 64 << 20);
	ck_assert_str_eq(d->replica.url, "s3://bucket/db");
	ck_assert_ptr_null(d->replica.endpoint);
	ck_assert_ptr_null(d->replica.region);
	ck_assert_ptr_null(d->replica.access_key_id);
	ck_assert_ptr_null(d->replica.secret_access_key);
	ck_assert(!d->replica.force_path_style && !d->replica.skip_verify);
	ck_assert_int_eq(d->replica.sync_interval_ms, 1000);
	config_free(c);
}
END_TEST

/* ------------------------------------------------------------ fixtures */

START_TEST(test_fixture_s3_url)
{
	struct config *c = load_ok(CFG "s3-url.yml");
	ck_assert_uint_eq(c->ndbs, 1);
	const struct config_replica *r = &c->dbs[0].replica;
	ck_assert_str_eq(c->dbs[0].path, "/var/lib/db");
	/* a dotted bucket that is no AWS host name is the bucket itself */
	ck_assert_str_eq(r->url, "s3://mybkt.litestream.io/db");
	ck_assert_str_eq(r->region, "us-east-1");
	ck_assert_str_eq(r->access_key_id, "AKIAxxxxxxxxxxxxxxxx");
	ck_assert_str_eq(r->secret_access_key,
			 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx/xxxxxxxxx");
	ck_assert_ptr_null(r->endpoint);
	ck_assert(!r->force_path_style);
	ck_assert_uint_eq(c->nwarnings, 0);
	config_free(c);
}
END_TEST

START_TEST(test_fixture_minio)
{
	struct config *c = load_ok(CFG "minio.yml");
	ck_assert_uint_eq(c->ndbs, 2);
	for (int i = 0; i < 2; i++) {
		const struct config_replica *r = &c->dbs[i].replica;
		ck_assert_str_eq(r->url, "s3://mybkt/mydb.db");
		ck_assert_str_eq(r->endpoint, "https://minio.example.com:9000");
		ck_assert_str_eq(r->region, "us-east-1");
		ck_assert_str_eq(r->access_key_id, "myaccesskey");
		ck_assert_str_eq(r->secret_access_key, "mysecretkey");
		ck_assert(r->force_path_style); /* an endpoint is set */
	}
	ck_assert_uint_eq(c->nwarnings, 0);
	config_free(c);
}
END_TEST

START_TEST(test_fixture_tigris)
{
	struct config *c = load_ok(CFG "tigris.yml");
	const struct config_replica *r = &c->dbs[0].replica;
	ck_assert_str_eq(r->url, "s3://mybucket/db");
	ck_assert_str_eq(r->endpoint, "https://fly.storage.tigris.dev");
	ck_assert_str_eq(r->region, "auto");
	config_free(c);
}
END_TEST

START_TEST(test_fixture_directory)
{
	struct config *c = load_ok(CFG "directory.yml");
	const struct config_db *d = &c->dbs[0];
	ck_assert_ptr_null(d->path);
	ck_assert_str_eq(d->dir, "/var/lib/app/tenants");
	ck_assert_str_eq(d->pattern, "*.db");
	ck_assert(d->recursive && d->watch);
	ck_assert_str_eq(d->replica.url, "s3://mybucket/tenants");
	config_free(c);
}
END_TEST

START_TEST(test_fixture_legacy)
{
	struct config *c = load_ok(CFG "legacy-0.3.yml");
	ck_assert_uint_eq(c->ndbs, 1);
	const struct config_replica *r = &c->dbs[0].replica;
	ck_assert_str_eq(r->url, "s3://myawsbucket/db");
	ck_assert_int_eq(r->sync_interval_ms, 10000);
	/* global credentials inherited */
	ck_assert_str_eq(r->access_key_id, "AKIAxxxxxxxxxxxxxxxx");
	has_warning(c, "legacy-0.3.yml:9:5: dbs[0].replicas: Litestream 0.3's "
		       "list form; walrust replicates to the first entry "
		       "only (1 more ignored");
	has_warning(c, "legacy-0.3.yml:8:5: dbs[0].max-checkpoint-page-count:");
	has_warning(c, "legacy-0.3.yml:12:9: dbs[0].replicas[0].retention: a "
		       "Litestream 0.3 setting");
	has_warning(c, "dbs[0].replicas[0].snapshot-interval");
	ck_assert_uint_eq(c->nwarnings, 4);
	config_free(c);
}
END_TEST

START_TEST(test_fixture_env)
{
	setenv("AWS_ACCESS_KEY_ID", "AKIDENV", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "secret$with/dollar", 1);
	setenv("WALRUST_TEST_DATA", "/data", 1);
	setenv("WALRUST_TEST_ENDPOINT", "fly.storage.tigris.dev", 1);
	setenv("WALRUST_TEST_BUCKET", "fleet-bucket", 1);
	unsetenv("WALRUST_TEST_UNSET");
	struct config *c = load_ok(CFG "env.yml");
	ck_assert_uint_eq(c->ndbs, 2);
	ck_assert_str_eq(c->dbs[0].replica.access_key_id, "AKIDENV");
	/* values are not expanded twice */
	ck_assert_str_eq(c->dbs[0].replica.secret_access_key,
			 "secret$with/dollar");
	ck_assert_str_eq(c->dbs[1].path, "/data/app.db");
	ck_assert_str_eq(c->dbs[1].replica.url,
			 "s3://fleet-bucket/litestream/app");
	ck_assert_str_eq(c->dbs[1].replica.endpoint,
			 "https://fly.storage.tigris.dev");
	ck_assert(c->dbs[1].replica.force_path_style);
	config_free(c);

	/* An unset endpoint variable leaves no endpoint at all. */
	unsetenv("WALRUST_TEST_ENDPOINT");
	c = load_ok(CFG "env.yml");
	ck_assert_ptr_null(c->dbs[1].replica.endpoint);
	ck_assert(!c->dbs[1].replica.force_path_style);
	config_free(c);

	/* Without expansion the text stays: "$WALRUST_TEST_DATA/app.db" is
	 * a relative path, "${WALRUST_TEST_BUCKET}" a (bad) bucket name. */
	char *err = NULL;
	ck_assert_int_eq(config_load(&c, CFG "env.yml", false, &err), 0);
	ck_assert_str_eq(c->dbs[0].replica.access_key_id,
			 "${AWS_ACCESS_KEY_ID}");
	ck_assert_ptr_nonnull(strstr(c->dbs[1].path, "/$WALRUST_TEST_DATA/"));
	ck_assert_str_eq(c->dbs[1].replica.url,
			 "s3://${WALRUST_TEST_BUCKET}/litestream/"
			 "${WALRUST_TEST_UNSET}app");
	config_free(c);
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
}
END_TEST

START_TEST(test_fixture_global_defaults)
{
	struct config *c = load_ok(CFG "global-defaults.yml");
	ck_assert_str_eq(c->dbs[0].replica.url, "s3://bucket1");
	ck_assert_str_eq(c->dbs[0].replica.region, "us-west-2");
	ck_assert_int_eq(c->dbs[0].replica.sync_interval_ms, 30000);
	ck_assert_str_eq(c->dbs[1].replica.url, "s3://bucket2");
	ck_assert_str_eq(c->dbs[1].replica.region, "us-east-1");
	ck_assert_int_eq(c->dbs[1].replica.sync_interval_ms, 30000);
	ck_assert_str_eq(c->defaults.region, "us-west-2");
	ck_assert_int_eq(c->defaults.sync_interval_ms, 30000);
	config_free(c);
}
END_TEST

START_TEST(test_fixture_overrides)
{
	struct config *c = load_ok(CFG "overrides.yml");
	ck_assert_uint_eq(c->nlevels, 4);
	ck_assert_int_eq(c->level_interval_ms[0], 300000);
	ck_assert_int_eq(c->level_interval_ms[1], 3600000);
	ck_assert_int_eq(c->level_interval_ms[2], 86400000);
	ck_assert_int_eq(c->level_interval_ms[3], 168 * 3600000LL);
	ck_assert_int_eq(c->snapshot_interval_ms, 3600000);
	ck_assert_int_eq(c->snapshot_retention_ms, 9930500);
	ck_assert_int_eq(c->l0_retention_ms, 600000);
	ck_assert_int_eq(c->l0_retention_check_interval_ms, 30000);
	ck_assert_int_eq(c->shutdown_sync_timeout_ms, 60000);
	ck_assert_int_eq(c->shutdown_sync_interval_ms, 250);
	ck_assert(!c->retention_enabled);
	ck_assert_int_eq(c->log_level, 0);
	ck_assert_uint_eq(c->nwarnings, 0);
	config_free(c);
}
END_TEST

START_TEST(test_fixture_db_options)
{
	struct config *c = load_ok(CFG "db-options.yml");
	const struct config_db *d = &c->dbs[0];
	ck_assert_int_eq(d->monitor_interval_ms, 500);
	ck_assert_int_eq(d->checkpoint_interval_ms, 30000);
	ck_assert_int_eq(d->busy_timeout_ms, 5000);
	ck_assert_int_eq(d->min_checkpoint_page_count, 500);
	ck_assert_int_eq(d->truncate_page_n, 50000);
	ck_assert(!d->restore_if_missing);
	d = &c->dbs[1];
	ck_assert_str_eq(d->path, "/data/app.db"); /* sqlite3:// stripped */
	ck_assert(d->restore_if_missing);
	ck_assert_int_eq(d->max_sync_wal_bytes, 1048576);
	ck_assert_str_eq(d->replica.url, "file:///backup/app");
	has_warning(c, "db-options.yml:5:5: dbs[0].meta-path:");
	ck_assert_uint_eq(c->nwarnings, 1);
	config_free(c);
}
END_TEST

START_TEST(test_fixture_complete)
{
	/* The reference's complete example replicates one database to NATS:
	 * walrust refuses rather than silently not replicating it. */
	struct config *c = NULL;
	char *err = NULL;
	setenv("NATS_PASSWORD", "pw", 1);
	ck_assert_int_eq(config_load(&c, CFG "complete.yml", true, &err),
			 -EINVAL);
	ck_assert_ptr_null(c);
	ck_assert_str_eq(err, FIXTURES "/config/complete.yml:60:12: "
				       "dbs[1].replica: replica type \"nats\" "
				       "is not supported by walrust (s3 and "
				       "file only)");
	free(err);
	unsetenv("NATS_PASSWORD");
}
END_TEST

START_TEST(test_fixture_walrust)
{
	struct config *c = load_ok(CFG "walrust.yml");
	ck_assert_str_eq(c->socket, "/run/walrust/walrustd.sock");
	ck_assert_int_eq(c->workers, 4);
	ck_assert_str_eq(c->default_replica, "s3://backups/fleet");
	ck_assert_str_eq(c->defaults.url, "s3://backups/fleet");
	ck_assert_str_eq(c->defaults.endpoint, "http://127.0.0.1:9000");
	ck_assert_str_eq(c->defaults.access_key_id, "minioadmin");
	ck_assert(c->defaults.force_path_style);
	ck_assert_uint_eq(c->ndbs, 3);
	/* no replica: url NULL (default-replica applies), settings inherited */
	ck_assert_ptr_null(c->dbs[0].replica.url);
	ck_assert_str_eq(c->dbs[0].replica.endpoint, "http://127.0.0.1:9000");
	ck_assert_str_eq(c->dbs[0].replica.secret_access_key, "minioadmin");
	/* merge keys */
	ck_assert_str_eq(c->dbs[1].replica.url, "s3://shared/b");
	ck_assert_int_eq(c->dbs[1].replica.sync_interval_ms, 5000);
	ck_assert_str_eq(c->dbs[2].replica.url, "s3://shared/c");
	ck_assert_int_eq(c->dbs[2].replica.sync_interval_ms, 10000);
	ck_assert_uint_eq(c->nwarnings, 0); /* x-replica is silent */
	config_free(c);
}
END_TEST

START_TEST(test_fixture_unknown)
{
	struct config *c = load_ok(CFG "unknown.yml");
	ck_assert_uint_eq(c->ndbs, 1);
	ck_assert_ptr_null(c->socket);
	/* db-level snapshot.interval promoted to the top level */
	ck_assert_int_eq(c->snapshot_interval_ms, 7200000);
	ck_assert_str_eq(c->dbs[0].replica.url, "s3://bucket/db");
	ck_assert_str_eq(c->dbs[0].replica.endpoint, "http://localhost:9000");
	ck_assert(c->dbs[0].replica.force_path_style);
	has_warning(c, "unknown.yml:2:1: heartbeat-url: not supported");
	has_warning(c, "unknown.yml:3:1: colour: unknown setting; ignored");
	has_warning(c, "unknown.yml:4:1: socket: Litestream's HTTP control");
	has_warning(c, "unknown.yml:9:5: dbs[0].flavour: unknown setting");
	has_warning(c, "unknown.yml:12:7: dbs[0].snapshot.cadence: unknown");
	has_warning(c, "unknown.yml:15:7: dbs[0].replica.sign-payload: not "
		       "supported by walrust; ignored");
	has_warning(c, "dbs[0].replica.storage-class: not supported");
	has_warning(c, "unknown.yml:17:7: dbs[0].replica.shape: unknown");
	has_warning(c, "dbs[0].replica.account-name: a setting of a replica "
		       "type walrust does not support");
	has_warning(c, "unknown.yml:14:12: dbs[0].replica.url: query parameter "
		       "\"storageClass\" not supported");
	ck_assert_uint_eq(c->nwarnings, 10);
	config_free(c);
}
END_TEST

/* ---------------------------------------------------------- expansion */

static struct config *parse_env(const char *text)
{
	struct config *c = NULL;
	char *err = NULL;
	int rc = config_parse(&c, text, strlen(text), "t.yml", true, &err);
	ck_assert_msg(rc == 0, "%d %s", rc, err ? err : "");
	return c;
}

START_TEST(test_expand)
{
	setenv("WR_A", "alpha", 1);
	setenv("WR_B", "b:c", 1);
	unsetenv("WR_NONE");
	struct config *c = parse_env("exec: \"$WR_A ${WR_A}x $WR_Ax "
				     "[${WR_NONE}] [$WR_NONE] $ $$ ${} "
				     "a$-b ${WR_B} $1 ${1} $@x $%\"\n");
	/* os.Expand: $WR_Ax is the (unset) variable WR_Ax; "$ " stays;
	 * $$ and $1, $-, $@ are special one-character names (empty); "${}"
	 * is eaten; "$%" stays. */
	ck_assert_str_eq(c->exec,
			 "alpha alphax  [] [] $   ab b:c   x $%");
	config_free(c);

	char pid[32], want[80];
	snprintf(pid, sizeof pid, "%ld", (long)getpid());
	c = parse_env("exec: run-$PID-${PID}\n");
	snprintf(want, sizeof want, "run-%s-%s", pid, pid);
	ck_assert_str_eq(c->exec, want);
	config_free(c);

	/* a trailing '$' and an unterminated "${" */
	c = parse_env("exec: a$");
	ck_assert_str_eq(c->exec, "a$");
	config_free(c);
	c = parse_env("exec: a${WR_A");
	ck_assert_str_eq(c->exec, "aWR_A");
	config_free(c);

	/* expansion happens before YAML: a value can bring structure */
	setenv("WR_DBS", "[{path: /x.db, replica: {url: s3://b/x}}]", 1);
	c = parse_env("dbs: ${WR_DBS}\n");
	ck_assert_uint_eq(c->ndbs, 1);
	ck_assert_str_eq(c->dbs[0].replica.url, "s3://b/x");
	config_free(c);

	/* and comments are expanded too, harmlessly */
	c = parse_env("# $WR_A ${WR_NONE\nexec: x\n");
	ck_assert_str_eq(c->exec, "x");
	config_free(c);
	unsetenv("WR_A");
	unsetenv("WR_B");
	unsetenv("WR_DBS");
}
END_TEST

/* -------------------------------------------------------- normalisation */

START_TEST(test_paths)
{
	char cwd[PATH_MAX], want[PATH_MAX + 64];
	ck_assert_ptr_nonnull(getcwd(cwd, sizeof cwd));
	setenv("HOME", "/home/tester", 1);
	struct config *c = parse_ok(
		"dbs:\n"
		"  - path: rel/../data//a.db\n"
		"    replica: {path: backup/./a}\n"
		"  - path: ~/b.db\n"
		"    replica: {url: ~/replica/b}\n"
		"  - path: sqlite:///srv/c.db/\n"
		"    replica: {url: \"file:///srv/rep%20c/./x/../c\"}\n"
		"  - path: /srv/d.db\n"
		"    replica: {url: /abs/d, sync-interval: 250ms}\n"
		"  - dir: ./tenants/\n"
		"    pattern: '*.sqlite'\n"
		"    replica: {type: file, path: /rep/tenants}\n"
		"  - path: /srv/e.db\n"
		"    replica: {url: \"file://localhost/srv/e\"}\n"
		"  - path: /../../f.db\n"
		"    replica: {url: ./f}\n"
		"socket: run/w.sock\n");
	snprintf(want, sizeof want, "%s/data/a.db", cwd);
	ck_assert_str_eq(c->dbs[0].path, want);
	snprintf(want, sizeof want, "file://%s/backup/a", cwd);
	ck_assert_str_eq(c->dbs[0].replica.url, want);
	ck_assert_ptr_null(c->dbs[0].replica.region);
	ck_assert_str_eq(c->dbs[1].path, "/home/tester/b.db");
	ck_assert_str_eq(c->dbs[1].replica.url, "file:///home/tester/replica/b");
	ck_assert_str_eq(c->dbs[2].path, "/srv/c.db");
	ck_assert_str_eq(c->dbs[2].replica.url, "file:///srv/rep c/c");
	ck_assert_str_eq(c->dbs[3].replica.url, "file:///abs/d");
	ck_assert_int_eq(c->dbs[3].replica.sync_interval_ms, 250);
	snprintf(want, sizeof want, "%s/tenants", cwd);
	ck_assert_str_eq(c->dbs[4].dir, want);
	ck_assert_str_eq(c->dbs[4].pattern, "*.sqlite");
	ck_assert_str_eq(c->dbs[4].replica.url, "file:///rep/tenants");
	ck_assert_str_eq(c->dbs[5].replica.url, "file:///srv/e");
	ck_assert_str_eq(c->dbs[6].path, "/f.db");
	snprintf(want, sizeof want, "file://%s/f", cwd);
	ck_assert_str_eq(c->dbs[6].replica.url, want);
	snprintf(want, sizeof want, "%s/run/w.sock", cwd);
	ck_assert_str_eq(c->socket, want);
	config_free(c);
}
END_TEST

START_TEST(test_s3_urls)
{
	static const struct {
		const char *url;
		const char *want, *endpoint, *region;
		bool fps;
	} t[] = {
		{"s3://bkt", "s3://bkt", NULL, NULL, false},
		{"s3://bkt/", "s3://bkt", NULL, NULL, false},
		{"s3://bkt//a/./b/../c/", "s3://bkt/a/c", NULL, NULL, false},
		{"s3://bkt/a%20b", "s3://bkt/a b", NULL, NULL, false},
		{"S3://bkt/x", "s3://bkt/x", NULL, NULL, false},
		{"s3://bkt.s3.amazonaws.com/db", "s3://bkt/db", NULL, NULL,
		 false},
		{"s3://my.bkt.s3.eu-west-1.amazonaws.com/db", "s3://my.bkt/db",
		 NULL, "eu-west-1", false},
		{"s3://s3.amazonaws.com/db", "s3://s3.amazonaws.com/db", NULL,
		 NULL, false},
		{"s3://mybkt.nyc3.digitaloceanspaces.com/db", "s3://mybkt/db",
		 "https://nyc3.digitaloceanspaces.com", "nyc3", false},
		{"s3://bkt.s3.us-west-002.backblazeb2.com/db", "s3://bkt/db",
		 "https://s3.us-west-002.backblazeb2.com", "us-west-002", true},
		{"s3://bkt.s3.filebase.com/db", "s3://bkt/db",
		 "https://s3.filebase.com", NULL, true},
		{"s3://bkt.s3.fr-par.scw.cloud/db", "s3://bkt/db",
		 "https://s3.fr-par.scw.cloud", "fr-par", false},
		{"s3://mybkt.localhost:9000/mydb.db", "s3://mybkt/mydb.db",
		 "http://localhost:9000", "us-east-1", true},
		{"s3://bkt/db?endpoint=minio.internal:9000&region=r1",
		 "s3://bkt/db", "https://minio.internal:9000", "r1", true},
		{"s3://bkt/db?endpoint=127.0.0.1:9000&forcePathStyle=false",
		 "s3://bkt/db", "http://127.0.0.1:9000", NULL, true},
		{"s3://bkt/db?endpoint=https://r2.example.com/&"
		 "force-path-style=false",
		 "s3://bkt/db", "https://r2.example.com", NULL, false},
		{"s3://bkt/db?forcePathStyle=true&skipVerify=true",
		 "s3://bkt/db", NULL, NULL, true},
		{"s3://user@bkt/db", "s3://bkt/db", NULL, NULL, false},
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		char yml[512];
		snprintf(yml, sizeof yml,
			 "dbs:\n  - path: /a.db\n    replica:\n"
			 "      url: \"%s\"\n",
			 t[i].url);
		struct config *c = parse_ok(yml);
		const struct config_replica *r = &c->dbs[0].replica;
		ck_assert_msg(!strcmp(r->url, t[i].want), "%s -> %s", t[i].url,
			      r->url);
		ck_assert_msg(!t[i].endpoint == !r->endpoint &&
				      (!r->endpoint ||
				       !strcmp(r->endpoint, t[i].endpoint)),
			      "%s: endpoint %s", t[i].url,
			      r->endpoint ? r->endpoint : "(null)");
		ck_assert_msg(!t[i].region == !r->region &&
				      (!r->region ||
				       !strcmp(r->region, t[i].region)),
			      "%s: region %s", t[i].url,
			      r->region ? r->region : "(null)");
		ck_assert_msg(r->force_path_style == t[i].fps,
			      "%s: force_path_style %d", t[i].url,
			      r->force_path_style);
		config_free(c);
	}
	/* skipVerify from the query */
	struct config *c = parse_ok("dbs:\n  - path: /a.db\n    replica:\n"
				    "      url: s3://b/d?skipVerify=true\n");
	ck_assert(c->dbs[0].replica.skip_verify);
	config_free(c);
}
END_TEST

START_TEST(test_s3_settings)
{
	/* Explicit settings beat those of the URL's host; config endpoints
	 * get https:// when they have no scheme. */
	struct config *c = parse_ok(
		"region: global-region\n"
		"force-path-style: false\n"
		"skip-verify: yes\n"
		"access-key-id: GLOBALID\n"
		"secret-access-key: GLOBALSECRET\n"
		"dbs:\n"
		"  - path: /a.db\n"
		"    replica:\n"
		"      url: s3://bkt.s3.eu-west-1.amazonaws.com/a\n"
		"  - path: /b.db\n"
		"    replica:\n"
		"      type: S3\n"
		"      bucket: b\n"
		"      path: /x/y/\n"
		"      endpoint: storage.example.com/\n"
		"      region: local\n"
		"      force-path-style: true\n"
		"      access-key-id: OWNID\n"
		"  - path: /c.db\n"
		"    replica:\n"
		"      type: s3\n"
		"      bucket: c\n"
		"      endpoint: http://minio:9000\n");
	const struct config_replica *r = &c->dbs[0].replica;
	ck_assert_str_eq(r->url, "s3://bkt/a");
	ck_assert_str_eq(r->region, "global-region");
	ck_assert(!r->force_path_style);
	ck_assert(r->skip_verify);
	ck_assert_str_eq(r->access_key_id, "GLOBALID");
	r = &c->dbs[1].replica;
	ck_assert_str_eq(r->url, "s3://b/x/y");
	ck_assert_str_eq(r->endpoint, "https://storage.example.com");
	ck_assert_str_eq(r->region, "local");
	ck_assert(r->force_path_style);
	ck_assert_str_eq(r->access_key_id, "OWNID");
	ck_assert_str_eq(r->secret_access_key, "GLOBALSECRET");
	/* explicit force-path-style: false wins over the MinIO heuristic */
	r = &c->dbs[2].replica;
	ck_assert_str_eq(r->endpoint, "http://minio:9000");
	ck_assert(!r->force_path_style);
	config_free(c);

	/* without the explicit false, a host:port endpoint is path style */
	c = parse_ok("dbs:\n  - path: /a.db\n    replica:\n"
		     "      url: s3://b/d?endpoint=http://minio:9000\n"
		     "      force-path-style: ~\n");
	ck_assert(c->dbs[0].replica.force_path_style);
	config_free(c);

	/* a global bucket does not conflict with a replica url, nor with
	 * a file replica */
	c = parse_ok("bucket: global\ndbs:\n"
		     "  - {path: /a.db, replica: {url: s3://own/a}}\n"
		     "  - {path: /b.db, replica: {type: s3}}\n"
		     "  - {path: /c.db, replica: {path: /rep/c}}\n");
	ck_assert_str_eq(c->dbs[0].replica.url, "s3://own/a");
	ck_assert_str_eq(c->dbs[1].replica.url, "s3://global");
	ck_assert_str_eq(c->dbs[2].replica.url, "file:///rep/c");
	ck_assert_ptr_null(c->dbs[2].replica.region);
	config_free(c);
}
END_TEST

START_TEST(test_values)
{
	/* YAML 1.1 booleans, null as unset, '_' in integers, quoted
	 * durations, flow style, merge keys, db snapshot promotion. */
	struct config *c = parse_ok(
		"logging: {level: WARNING, type: json, stderr: true}\n"
		"workers: \"8\"\n"
		"snapshot: {retention: 48h}\n"
		"exec: ~\n"
		"x-defaults: &d\n"
		"  monitor-interval: 0\n"
		"  checkpoint-interval: '0s'\n"
		"  busy-timeout: 100ms\n"
		"dbs:\n"
		"  - <<: *d\n"
		"    path: /a.db\n"
		"    recursive: off\n"
		"    restore-if-db-not-exists: Y\n"
		"    snapshot: {interval: 30m, retention: 1h}\n"
		"    replica: {url: s3://b/a, sync-interval: \"2s\"}\n"
		"  - <<: [*d, {busy-timeout: 9s, truncate-page-n: 0}]\n"
		"    path: /b.db\n"
		"    busy-timeout: 3s\n"
		"    snapshot: {interval: 30m}\n"
		"    min-checkpoint-page-count: 1_000_000\n"
		"    replica: {url: s3://b/b}\n");
	ck_assert_int_eq(c->log_level, 2);
	has_warning(c, "t.yml:1:33: logging.type: walrust logs plain text "
		       "lines; \"json\" ignored");
	has_warning(c, "t.yml:1:39: logging.stderr: walrust always logs to "
		       "stderr");
	ck_assert_int_eq(c->workers, 8);
	ck_assert_ptr_null(c->exec);
	ck_assert_int_eq(c->snapshot_interval_ms, 1800000);
	ck_assert_int_eq(c->snapshot_retention_ms, 48 * 3600000LL);
	ck_assert_int_eq(c->dbs[0].monitor_interval_ms, 0);
	ck_assert_int_eq(c->dbs[0].checkpoint_interval_ms, 0);
	ck_assert_int_eq(c->dbs[0].busy_timeout_ms, 100);
	ck_assert(c->dbs[0].restore_if_missing);
	ck_assert(!c->dbs[0].recursive);
	ck_assert_int_eq(c->dbs[0].replica.sync_interval_ms, 2000);
	ck_assert_int_eq(c->dbs[1].busy_timeout_ms, 3000);
	ck_assert_int_eq(c->dbs[1].monitor_interval_ms, 0);
	ck_assert_int_eq(c->dbs[1].truncate_page_n, 0);
	ck_assert_int_eq(c->dbs[1].min_checkpoint_page_count, 1000000);
	ck_assert_uint_eq(c->nwarnings, 2);
	config_free(c);

	/* an explicit top-level snapshot setting beats the databases'
	 * (which must still agree with each other, as in Litestream) */
	c = parse_ok("snapshot: {interval: 4h}\n"
		     "dbs:\n"
		     "  - {path: /a.db, snapshot: {interval: 1h}, replica: "
		     "{url: s3://b/a}}\n"
		     "  - {path: /b.db, snapshot: {interval: 60m}, replica: "
		     "{url: s3://b/b}}\n");
	ck_assert_int_eq(c->snapshot_interval_ms, 4 * 3600000LL);
	config_free(c);

	/* empty levels list: only L0 */
	c = parse_ok("levels: []\n");
	ck_assert_uint_eq(c->nlevels, 0);
	config_free(c);
	c = parse_ok("levels: ~\nl0-retention: 0s\n");
	ck_assert_uint_eq(c->nlevels, 3);
	ck_assert_int_eq(c->l0_retention_ms, 0);
	config_free(c);

	/* log levels */
	static const struct {
		const char *s;
		int level;
	} lv[] = {{"trace", 0}, {"DEBUG", 0}, {"info", 1}, {"Warn", 2},
		  {"error", 3}};
	for (size_t i = 0; i < sizeof lv / sizeof lv[0]; i++) {
		char yml[64];
		snprintf(yml, sizeof yml, "logging:\n  level: %s\n", lv[i].s);
		c = parse_ok(yml);
		ck_assert_int_eq(c->log_level, lv[i].level);
		config_free(c);
	}
	c = parse_ok("logging:\n  level: loud\n");
	ck_assert_int_eq(c->log_level, -1);
	has_warning(c, "t.yml:2:10: logging.level: unknown level \"loud\"");
	config_free(c);
}
END_TEST

/* ---------------------------------------------------------------- errors */

START_TEST(test_errors_structure)
{
	parse_err("dbs:\n  - path: /a\n    replica: {url: s3://b/p\n",
		  "t.yml:4:1: YAML syntax error: did not find expected ',' or "
		  "'}' (while parsing a flow mapping at line 3)");
	parse_err("dbs:\n- path: /a\n  bad indent: [\n",
		  "t.yml:4:1: YAML syntax error: did not find expected node "
		  "content (while parsing a flow node at line 4)");
	parse_err("dbs: *nothing\n",
		  "t.yml:1:6: YAML syntax error: found undefined alias");
	parse_err("- a\n- b\n",
		  "t.yml:1:1: top level: expected a mapping (dbs: ...), got a "
		  "list");
	parse_err("just a string\n",
		  "t.yml:1:1: top level: expected a mapping (dbs: ...), got a "
		  "value");
	parse_err("dbs:\n  path: /a.db\n",
		  "t.yml:2:3: dbs: expected a list of databases, got a mapping");
	parse_err("dbs:\n  - /a.db\n",
		  "t.yml:2:5: dbs[0]: expected a mapping (path: ..., replica: "
		  "...), got a value");
	parse_err("dbs:\n  - path: /a.db\n    replica: s3://b/a\n",
		  "t.yml:3:14: dbs[0].replica: expected a mapping (url: "
		  "s3://bucket/path, ...), got a value");
	parse_err("dbs:\n  - path: /a.db\n    replicas: {url: s3://b/a}\n",
		  "t.yml:3:15: dbs[0].replicas: expected a list, got a mapping");
	parse_err("dbs:\n  - path: /a.db\n    replicas: [s3://b/a]\n",
		  "t.yml:3:16: dbs[0].replicas[0]: expected a mapping (url: "
		  "s3://bucket/path, ...), got a value");
	parse_err("dbs:\n  - path: [/a.db]\n",
		  "t.yml:2:11: dbs[0].path: expected a single value, got a list");
	parse_err("exec: {cmd: x}\n",
		  "t.yml:1:7: exec: expected a single value, got a mapping");
	parse_err("logging: debug\n",
		  "t.yml:1:10: logging: expected a mapping, got a value");
	parse_err("dbs:\n  - path: \"/a\\0b\"\n",
		  "t.yml:2:11: dbs[0].path: contains a NUL character");
	parse_err("dbs:\n  - path: /a.db\n    path: /b.db\n",
		  "t.yml:3:5: dbs[0].path: given twice (first at line 2)");
	parse_err("exec: a\nexec: b\n",
		  "t.yml:2:1: exec: given twice (first at line 1)");
	parse_err("? [a, b]\n: c\n",
		  "t.yml:1:3: top level: keys must be plain strings, not a "
		  "list");
	parse_err("<<: &a {<<: *a}\n",
		  "t.yml:1:5: top level: merge keys nested too deeply");
	parse_err("<<: [x]\n",
		  "t.yml:1:5: top level: \"<<\" needs a mapping or a list of "
		  "mappings");
	parse_err("levels: {interval: 1s}\n",
		  "t.yml:1:9: levels: expected a list ([{interval: 5m}, ...]), "
		  "got a mapping");
	parse_err("levels:\n  - 30s\n",
		  "t.yml:2:5: levels[0]: expected a mapping, got a value");
}
END_TEST

START_TEST(test_errors_values)
{
	parse_err("dbs:\n  - path: /a.db\n    replica:\n      url: s3://b/p\n"
		  "      sync-interval: 10\n",
		  "t.yml:5:22: dbs[0].replica.sync-interval: invalid duration "
		  "\"10\" (a number needs a unit: 10s, 500ms, 5m, 1h)");
	parse_err("dbs:\n  - path: /a.db\n    replica:\n      url: s3://b/p\n"
		  "      sync-interval: 1 minute\n",
		  "t.yml:5:22: dbs[0].replica.sync-interval: invalid duration "
		  "\"1 minute\" (use 500ms, 10s, 5m, 1h30m...)");
	parse_err("dbs:\n  - path: /a.db\n    replica:\n      url: s3://b/p\n"
		  "      sync-interval: 0s\n",
		  "t.yml:5:22: dbs[0].replica.sync-interval: must be greater "
		  "than 0");
	parse_err("sync-interval: -1s\n",
		  "t.yml:1:16: sync-interval: must be greater than 0");
	parse_err("snapshot:\n  interval: 0\n",
		  "t.yml:2:13: snapshot.interval: must be greater than 0");
	parse_err("snapshot:\n  retention: 7d\n",
		  "t.yml:2:14: snapshot.retention: invalid duration \"7d\" (use "
		  "500ms, 10s, 5m, 1h30m...)");
	parse_err("l0-retention: -5m\n",
		  "t.yml:1:15: l0-retention: must be zero or more");
	parse_err("shutdown-sync-timeout: 99999999999h\n",
		  "t.yml:1:24: shutdown-sync-timeout: duration "
		  "\"99999999999h\" is out of range");
	parse_err("dbs:\n  - path: /a.db\n    monitor-interval: -1s\n",
		  "t.yml:3:23: dbs[0].monitor-interval: must be zero or more");
	parse_err("dbs:\n  - path: /a.db\n    recursive: maybe\n",
		  "t.yml:3:16: dbs[0].recursive: expected true or false, got "
		  "\"maybe\"");
	parse_err("skip-verify: 1\n",
		  "t.yml:1:14: skip-verify: expected true or false, got \"1\"");
	parse_err("workers: 0\n",
		  "t.yml:1:10: workers: must be between 1 and 1024");
	parse_err("workers: many\n",
		  "t.yml:1:10: workers: expected an integer, got \"many\"");
	parse_err("workers: 99999999999999999999\n",
		  "t.yml:1:10: workers: must be between 1 and 1024");
	parse_err("dbs:\n  - path: /a.db\n    min-checkpoint-page-count: -1\n",
		  "t.yml:3:32: dbs[0].min-checkpoint-page-count: must be "
		  "between 0 and 2147483647");
	parse_err("dbs:\n  - path: /a.db\n    truncate-page-n: 1.5\n",
		  "t.yml:3:22: dbs[0].truncate-page-n: expected an integer, got "
		  "\"1.5\"");
	parse_err("levels:\n  - interval: 30s\n  - {}\n",
		  "t.yml:3:5: levels[1].interval: required (greater than 0)");
	parse_err("levels:\n  - interval: 0s\n",
		  "t.yml:2:15: levels[0].interval: must be greater than 0");
	parse_err("levels: [{interval: 1s}, {interval: 2s}, {interval: 3s}, "
		  "{interval: 4s}, {interval: 5s}, {interval: 6s}, {interval: "
		  "7s}, {interval: 8s}, {interval: 9s}]\n",
		  "t.yml:1:9: levels: at most 8 levels (L1-L8; L9 holds "
		  "snapshots), got 9");
	char yml[256];
	snprintf(yml, sizeof yml, "socket: /%0120d\n", 0);
	parse_err(yml, "t.yml:1:9: socket: path too long for a Unix socket "
		       "(121 bytes, at most 107)");
}
END_TEST

START_TEST(test_errors_dbs)
{
	parse_err("dbs:\n  - replica:\n      url: s3://b/p\n",
		  "t.yml:2:5: dbs[0]: either path or dir is required");
	parse_err("dbs:\n  - path: /a.db\n    dir: /srv\n",
		  "t.yml:2:5: dbs[0]: cannot specify both 'path' and 'dir'");
	parse_err("dbs:\n  - dir: /srv\n    replica: {url: s3://b/p}\n",
		  "t.yml:2:5: dbs[0]: 'pattern' is required with 'dir' (e.g. "
		  "pattern: \"*.db\")");
	parse_err("dbs:\n  - path: /a.db\n    watch: true\n",
		  "t.yml:2:5: dbs[0]: 'watch' can only be enabled with a "
		  "directory");
	parse_err("dbs:\n  - path: /a.db\n    meta-dir: /m\n",
		  "t.yml:2:5: dbs[0]: 'meta-dir' can only be used with a "
		  "directory");
	parse_err("dbs:\n  - dir: /a\n    pattern: '*'\n    meta-dir: /m\n"
		  "    meta-path: /n\n",
		  "t.yml:2:5: dbs[0]: cannot specify both 'meta-path' and "
		  "'meta-dir'");
	parse_err("dbs:\n  - path: /a.db\n",
		  "t.yml:2:5: dbs[0]: a replica is required (replica: {url: "
		  "s3://bucket/path}), or set default-replica");
	parse_err("dbs:\n  - path: /a.db\n    replicas: []\n",
		  "t.yml:2:5: dbs[0]: a replica is required (replica: {url: "
		  "s3://bucket/path}), or set default-replica");
	parse_err("dbs:\n  - path: /a.db\n    replica: {url: s3://b/a}\n"
		  "    replicas: [{url: s3://b/b}]\n",
		  "t.yml:4:5: dbs[0]: cannot specify both 'replica' and "
		  "'replicas'");
	parse_err("dbs:\n  - path: /a.db\n    replicas: [{url: s3://b/b}]\n"
		  "    replica: {url: s3://b/a}\n",
		  "t.yml:4:5: dbs[0]: cannot specify both 'replica' and "
		  "'replicas'");
	parse_err("dbs:\n  - {path: /a.db, replica: {url: s3://b/a}}\n"
		  "  - {path: /x/../a.db, replica: {url: s3://b/b}}\n",
		  "t.yml:3:5: dbs[1]: /a.db is already listed in dbs[0]");
	parse_err("dbs:\n"
		  "  - path: /a.db\n"
		  "    snapshot: {interval: 1h}\n"
		  "    replica: {url: s3://b/a}\n"
		  "  - path: /b.db\n"
		  "    snapshot: {retention: 12h, interval: 90m}\n"
		  "    replica: {url: s3://b/b}\n",
		  "t.yml:6:42: dbs[1].snapshot.interval: conflicting database "
		  "snapshot intervals: dbs[0] has 1h, dbs[1] has 1h30m "
		  "(snapshots are global)");
	parse_err("dbs:\n"
		  "  - {path: /a.db, snapshot: {retention: 1500ms}, replica: "
		  "{url: s3://b/a}}\n"
		  "  - {path: /b.db, snapshot: {retention: 24h}, replica: "
		  "{url: s3://b/b}}\n",
		  "t.yml:3:41: dbs[1].snapshot.retention: conflicting database "
		  "snapshot retentions: dbs[0] has 1500ms, dbs[1] has 24h "
		  "(snapshots are global)");
}
END_TEST

START_TEST(test_errors_replicas)
{
#define DB "dbs:\n  - path: /a.db\n    replica:\n"
	parse_err(DB "      type: gs\n      bucket: b\n",
		  "t.yml:4:7: dbs[0].replica: replica type \"gs\" is not "
		  "supported by walrust (s3 and file only)");
	parse_err(DB "      url: abs://account@container/db\n",
		  "t.yml:4:12: dbs[0].replica: replica type \"abs\" is not "
		  "supported by walrust (s3 and file only)");
	parse_err(DB "      type: ftp\n      path: /x\n",
		  "t.yml:4:7: dbs[0].replica: unknown replica type \"ftp\"");
	parse_err(DB "      type: s3\n      path: db\n",
		  "t.yml:4:7: dbs[0].replica: an s3 replica needs a bucket "
		  "(url: s3://bucket/path, or bucket:)");
	parse_err(DB "      url: s3:///db\n",
		  "t.yml:4:12: dbs[0].replica: an s3 replica needs a bucket "
		  "(url: s3://bucket/path, or bucket:)");
	parse_err(DB "      url: s3://b/db\n      path: other\n",
		  "t.yml:5:13: dbs[0].replica: cannot specify both url and "
		  "path for an s3 replica");
	parse_err(DB "      url: s3://b/db\n      bucket: other\n",
		  "t.yml:4:12: dbs[0].replica: cannot specify both url and "
		  "bucket for an s3 replica");
	parse_err(DB "      url: file:///r\n      path: /r\n",
		  "t.yml:5:13: dbs[0].replica: cannot specify both url and "
		  "path for a file replica");
	parse_err(DB "      type: file\n",
		  "t.yml:4:7: dbs[0].replica: a file replica needs a path (or "
		  "url: file:///path)");
	parse_err(DB "      url: file://backup/db\n",
		  "t.yml:4:12: dbs[0].replica.url: a file URL must be "
		  "absolute: file:///path (got \"file://backup/db\")");
	parse_err(DB "      url: mybucket/db\n",
		  "t.yml:4:12: dbs[0].replica.url: \"mybucket/db\" has no "
		  "scheme; use s3://bucket/path or file:///path");
	parse_err(DB "      type: s3\n      url: /abs/db\n",
		  "t.yml:5:12: dbs[0].replica.url: needs a scheme (s3://...) "
		  "with type s3");
	parse_err(DB "      url: s3://b/a%zz\n",
		  "t.yml:4:12: dbs[0].replica.url: bad %-escape in the path");
	parse_err(DB "      url: s3://b/a?region=%\n",
		  "t.yml:4:12: dbs[0].replica.url: bad %-escape in the query");
	parse_err(DB "      url: s3://arn:aws:s3:us-east-2:123456789012:"
		     "accesspoint/ap/db\n",
		  "t.yml:4:12: dbs[0].replica.url: S3 access point ARNs are not "
		  "supported by walrust");
	parse_err(DB "      url: s3://b/a\n      age:\n        recipients: "
		     "[age1xyz]\n",
		  "t.yml:6:21: dbs[0].replica.age: age encryption is not "
		  "supported (nor by Litestream 0.5)");
	parse_err(DB "      type: s3\n      bucket: a/b\n",
		  "t.yml:4:7: dbs[0].replica.bucket: \"a/b\" contains '/'");
	parse_err("default-replica: s3://b/x?endpoint=y\n",
		  "t.yml:1:18: default-replica: query parameters are not "
		  "supported here; use the top-level endpoint/region");
	parse_err("default-replica: relative/dir\n",
		  "t.yml:1:18: default-replica.url: \"relative/dir\" has no "
		  "scheme; use s3://bucket/path or file:///path");
#undef DB
	/* an empty age block is accepted, as Litestream does */
	struct config *c = parse_ok("dbs:\n  - path: /a.db\n    replica:\n"
				    "      url: s3://b/a\n      age: {}\n");
	ck_assert_uint_eq(c->nwarnings, 0);
	config_free(c);
	/* a type that disagrees with the url's scheme: the url wins */
	c = parse_ok("dbs:\n  - path: /a.db\n    replica:\n"
		     "      type: file\n      url: s3://b/a\n");
	ck_assert_str_eq(c->dbs[0].replica.url, "s3://b/a");
	has_warning(c, "t.yml:5:12: dbs[0].replica.type: \"file\" ignored: "
		       "the url says s3");
	config_free(c);
	/* default-replica as a path */
	c = parse_ok("default-replica: /var/lib/walrust/replica/\n");
	ck_assert_str_eq(c->default_replica, "file:///var/lib/walrust/replica");
	config_free(c);
}
END_TEST

START_TEST(test_load_errors)
{
	struct config *c = (struct config *)1;
	char *err = NULL;
	ck_assert_int_eq(config_load(&c, CFG "no-such.yml", true, &err),
			 -ENOENT);
	ck_assert_ptr_null(c);
	ck_assert_str_eq(err, CFG "no-such.yml: No such file or directory");
	free(err);
	err = NULL;
	ck_assert_int_eq(config_load(&c, CFG, true, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "not a regular file"));
	free(err);
	/* err may be NULL */
	ck_assert_int_eq(config_load(&c, CFG "no-such.yml", true, NULL),
			 -ENOENT);
	ck_assert_int_eq(config_parse(&c, "dbs: 1\n", 7, NULL, false, NULL),
			 -EINVAL);
	/* filename NULL */
	err = NULL;
	ck_assert_int_eq(config_parse(&c, "dbs: 1\n", 7, NULL, false, &err),
			 -EINVAL);
	ck_assert_str_eq(err, "<config>:1:6: dbs: expected a list of "
			      "databases, got a value");
	free(err);
	/* the length bounds the text: no NUL terminator needed */
	err = NULL;
	ck_assert_int_eq(config_parse(&c, "exec: abcdef", 8, "t", false, &err),
			 0);
	ck_assert_str_eq(c->exec, "ab");
	config_free(c);
}
END_TEST

START_TEST(test_secrets_not_echoed)
{
	/* Messages quote durations and names, never credential values. */
	struct config *c = NULL;
	char *err = NULL;
	const char *t = "secret-access-key: [hunter2]\n";
	ck_assert_int_lt(config_parse(&c, t, strlen(t), "t", false, &err), 0);
	ck_assert_ptr_null(strstr(err, "hunter2"));
	free(err);
	err = NULL;
	t = "dbs:\n  - path: /a.db\n    replica:\n      url: s3://b/a\n"
	    "      sse-customer-key: hunter2\n      password: hunter2\n";
	ck_assert_int_eq(config_parse(&c, t, strlen(t), "t", false, &err), 0);
	for (size_t i = 0; i < c->nwarnings; i++)
		ck_assert_ptr_null(strstr(c->warnings[i], "hunter2"));
	ck_assert_uint_eq(c->nwarnings, 2);
	config_free(c);
}
END_TEST

START_TEST(test_budget)
{
	/* billion laughs through merge keys stops on the node budget */
	const char *t = "a: &a {x: 1}\n"
			"b: &b {<<: [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]}\n"
			"c: &c {<<: [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]}\n"
			"d: &d {<<: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]}\n"
			"e: &e {<<: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]}\n"
			"f: &f {<<: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]}\n"
			"g: &g {<<: [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]}\n"
			"<<: *g\n";
	struct config *c = NULL;
	char *err = NULL;
	ck_assert_int_eq(config_parse(&c, t, strlen(t), "t", false, &err),
			 -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "too many nodes"));
	free(err);

	/* warnings are capped */
	char yml[4096];
	size_t n = 0;
	for (int i = 0; i < 100; i++)
		n += (size_t)snprintf(yml + n, sizeof yml - n, "k%d: 1\n", i);
	c = parse_ok(yml);
	ck_assert_uint_eq(c->nwarnings, 65);
	ck_assert_str_eq(c->warnings[63], "t.yml:64:1: k63: unknown setting; "
					  "ignored");
	ck_assert_str_eq(c->warnings[64], "t.yml:65:1: further warnings "
					  "suppressed");
	config_free(c);
}
END_TEST

Suite *config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("config");
	tcase_add_test(tc, test_duration);
	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_db_defaults);
	tcase_add_test(tc, test_fixture_s3_url);
	tcase_add_test(tc, test_fixture_minio);
	tcase_add_test(tc, test_fixture_tigris);
	tcase_add_test(tc, test_fixture_directory);
	tcase_add_test(tc, test_fixture_legacy);
	tcase_add_test(tc, test_fixture_env);
	tcase_add_test(tc, test_fixture_global_defaults);
	tcase_add_test(tc, test_fixture_overrides);
	tcase_add_test(tc, test_fixture_db_options);
	tcase_add_test(tc, test_fixture_complete);
	tcase_add_test(tc, test_fixture_walrust);
	tcase_add_test(tc, test_fixture_unknown);
	tcase_add_test(tc, test_expand);
	tcase_add_test(tc, test_paths);
	tcase_add_test(tc, test_s3_urls);
	tcase_add_test(tc, test_s3_settings);
	tcase_add_test(tc, test_values);
	tcase_add_test(tc, test_errors_structure);
	tcase_add_test(tc, test_errors_values);
	tcase_add_test(tc, test_errors_dbs);
	tcase_add_test(tc, test_errors_replicas);
	tcase_add_test(tc, test_load_errors);
	tcase_add_test(tc, test_secrets_not_echoed);
	tcase_add_test(tc, test_budget);
	suite_add_tcase(s, tc);
	return s;
}
