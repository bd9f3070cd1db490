/* The unit-test runner: every suite of the registry, TAP on stdout so that
 * automake's tap-driver counts each test. `tests/unit/unit NAME` runs one. */
#include <stdlib.h>
#include <string.h>

#include "suites.h"

static const struct {
	const char *name;
	Suite *(*make)(void);
} registry[] = {
	{"crc64", crc64_suite}, {"ltx", ltx_suite},     {"wal", wal_suite},
	{"sigv4", sigv4_suite}, {"s3-xml", s3_xml_suite}, {"wrp", wrp_suite},
	{"util", util_suite},   {"replica", replica_suite},
	{"config", config_suite}, {"compact", compact_suite},
	{"retention", retention_suite}, {"lease", lease_suite},
};

int main(int argc, char **argv)
{
	SRunner *sr = NULL;
	for (size_t i = 0; i < sizeof registry / sizeof registry[0]; i++) {
		if (argc > 1 && strcmp(argv[1], registry[i].name) != 0)
			continue;
		if (!sr)
			sr = srunner_create(registry[i].make());
		else
			srunner_add_suite(sr, registry[i].make());
	}
	if (!sr)
		return 2;
	srunner_set_tap(sr, "-");
	srunner_run_all(sr, CK_SILENT);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
