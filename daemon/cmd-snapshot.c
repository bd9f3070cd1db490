/* cmd-snapshot.c: `snapshot`: a one-shot job process (snapshot.c). */
#include "config.h"

#include "daemon.h"

const struct cmd cmd_snapshot = {
	.name = "snapshot", .where = CMD_JOB, .exec = snapshot_run};
