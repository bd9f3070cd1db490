/* cmd-table.c: the commands as worker and job processes (walrust-worker)
 * implement them, found by name; which process a request goes to is the
 * supervisor's decision (cmd.c). */
#include "config.h"

#include <string.h>

#include "daemon.h"

static const struct cmd *const cmd_table[] = {
	&worker_status, &cmd_snapshot, &cmd_restore, &cmd_list,
	&cmd_watch,     &cmd_unwatch,  &cmd_sync,
};

const struct cmd *cmd_find(const char *name)
{
	for (size_t i = 0; i < sizeof cmd_table / sizeof cmd_table[0]; i++)
		if (strcmp(cmd_table[i]->name, name) == 0)
			return cmd_table[i];
	return NULL;
}
