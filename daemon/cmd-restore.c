/* cmd-restore.c: `restore`: a one-shot job process (restore.c), so that a
 * crash or an out-of-memory in a restore cannot stop replication. */
#include "config.h"

#include "daemon.h"

const struct cmd cmd_restore = {
	.name = "restore", .exec = restore_run};
