/* walrust-worker.c: main of the worker and job processes. walrustd (the
 * supervisor) runs this binary with --worker or --job and a socket pair on
 * fd 0 that carries protocol lines (see supervisor.c); it is not meant to
 * be run by hand. The log level comes in $WALRUST_LOG_LEVEL. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"

int main(int argc, char **argv)
{
	int level = LOG_INFO;
	const char *lv = getenv("WALRUST_LOG_LEVEL");
	if (lv && log_parse_level(lv) >= 0)
		level = log_parse_level(lv);
	if (argc == 2 && strcmp(argv[1], "--worker") == 0) {
		log_init("worker", level);
		return worker_main();
	}
	if (argc == 2 && strcmp(argv[1], "--job") == 0) {
		log_init("job", level);
		return job_main();
	}
	if (argc == 2 && (strcmp(argv[1], "--version") == 0 ||
			  strcmp(argv[1], "-V") == 0)) {
		printf("walrust-worker %s\n", WALRUST_VERSION);
		return 0;
	}
	fprintf(stderr, "usage: walrust-worker --worker | --job\n"
			"(started by walrustd; see walrustd(8))\n");
	return 2;
}
