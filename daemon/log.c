/* log.c: leveled logging to stderr, one line per message, with the role and
 * pid of the process ("walrustd[123] worker: ..."). Secrets are never passed
 * here: callers log names and keys, never credentials. */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"

static int log_min = LOG_INFO;
static const char *log_role = "supervisor";

void log_init(const char *role, int level)
{
	log_role = role;
	log_min = level;
}

int log_parse_level(const char *s)
{
	static const char *const names[] = {"debug", "info", "warn", "error"};
	for (int i = 0; i < 4; i++)
		if (strcmp(s, names[i]) == 0)
			return i;
	return -1;
}

void log_msg(int level, const char *fmt, ...)
{
	static const char *const tags[] = {"debug", "info", "warn", "error"};
	if (level < log_min)
		return;
	char ts[32];
	struct timespec now;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
	char line[2048];
	int n = snprintf(line, sizeof line, "%s.%03ldZ walrustd[%d] %s %s: ", ts,
			 now.tv_nsec / 1000000, (int)getpid(), log_role,
			 tags[level]);
	va_list ap;
	va_start(ap, fmt);
	if (n >= 0 && (size_t)n < sizeof line)
		vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s\n", line);
}
