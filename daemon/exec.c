/* exec.c: run the application under walrustd (`--exec CMD` or `exec:` in the
 * configuration), as `litestream replicate -exec` does. The command runs
 * through /bin/sh with walrustd's stdin, stdout and stderr. SIGTERM,
 * SIGINT and SIGHUP sent to walrustd are forwarded to it. When it exits,
 * every watched database gets a final sync (bounded), then walrustd stops
 * with the application's exit status (128 + signal when it was killed). */
#include "config.h"

#include <signal.h>
#include <stdlib.h>

#include "daemon.h"

static struct {
	uv_process_t proc;
	bool running;
	int status;
	int64_t timeout_ms;
} ex;

static void exec_closed(uv_handle_t *h)
{
	(void)h;
	supervisor_exit(ex.status);
}

static void exec_exited(uv_process_t *p, int64_t status, int sig)
{
	ex.running = false;
	ex.status = sig ? 128 + sig : (int)status;
	log_info("the application exited with status %d; final sync", ex.status);
	uv_close((uv_handle_t *)p, exec_closed);
}

int exec_start(uv_loop_t *loop, const char *cmd, int64_t sync_timeout_ms)
{
	char *args[] = {"/bin/sh", "-c", (char *)cmd, NULL};
	uv_stdio_container_t stdio[3];
	for (int i = 0; i < 3; i++) {
		stdio[i].flags = UV_INHERIT_FD;
		stdio[i].data.fd = i;
	}
	uv_process_options_t o = {
		.exit_cb = exec_exited,
		.file = "/bin/sh",
		.args = args,
		.stdio_count = 3,
		.stdio = stdio,
	};
	ex.timeout_ms = sync_timeout_ms;
	int rc = uv_spawn(loop, &ex.proc, &o);
	if (rc < 0) {
		log_error("cannot start the application \"%s\": %s", cmd,
			  uv_strerror(rc));
		return rc;
	}
	ex.running = true;
	log_info("started the application (pid %d): %s", ex.proc.pid, cmd);
	return 0;
}

bool exec_forward_signal(int signum)
{
	if (!ex.running)
		return false;
	uv_process_kill(&ex.proc, signum);
	return true;
}
