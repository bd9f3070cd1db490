/* walrustd.c: main of the supervisor (see supervisor.c for the process
 * model). Workers and jobs are another binary, walrust-worker (found beside
 * this one, else in the package's libexec directory, or named by
 * $WALRUST_WORKER): the supervisor links none of the libraries they need. */
#include "config.h"

#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config-file.h"
#include "daemon.h"

static void walrustd_usage(FILE *f)
{
	fprintf(f,
		"usage: walrustd [options]\n"
		"  -s, --socket PATH      control socket (default: $WALRUST_SOCKET,\n"
		"                         else $XDG_RUNTIME_DIR/walrust/walrustd.sock,\n"
		"                         else /tmp/walrust-UID/walrustd.sock)\n"
		"  -r, --replica URL      default replica when a request names none\n"
		"                         (s3://bucket[/prefix] or file:///dir; default\n"
		"                         $WALRUST_REPLICA, else file://$XDG_DATA_HOME/walrust/replica)\n"
		"  -c, --config FILE      a configuration file (litestream.yml-compatible)\n"
		"      --no-expand-env    do not expand $VAR in the configuration file\n"
		"  -x, --exec CMD         run CMD (via /bin/sh) as the application: forward\n"
		"                         signals, final sync and exit with its status\n"
		"  -w, --workers N        worker processes replicating databases (default 1)\n"
		"  -l, --log-level LEVEL  debug, info, warn or error (default info)\n"
		"  -V, --version          print the version and exit\n"
		"  -h, --help             this help\n"
		"See walrustd(8).\n");
}

static char *walrustd_default_replica(void)
{
	const char *env = getenv("WALRUST_REPLICA");
	if (env && *env)
		return strdup(env);
	const char *xdg = getenv("XDG_DATA_HOME");
	if (xdg && xdg[0] == '/')
		return util_strdup_printf("file://%s/walrust/replica", xdg);
	const char *home = getenv("HOME");
	if (home && home[0] == '/')
		return util_strdup_printf("file://%s/.local/share/walrust/replica",
					  home);
	return strdup("file:///var/lib/walrust/replica");
}

/* The worker and job binary: $WALRUST_WORKER, else walrust-worker beside
 * this executable (a build tree, the Python package), else the installed
 * one. */
static int walrustd_worker_exe(char *out, size_t len)
{
	const char *env = getenv("WALRUST_WORKER");
	if (env && *env) {
		snprintf(out, len, "%s", env);
		return access(out, X_OK);
	}
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	if (n > 0) {
		self[n] = '\0';
		char *slash = strrchr(self, '/');
		if (slash && (size_t)(slash - self) + sizeof "/walrust-worker" <=
				     len) {
			memcpy(out, self, (size_t)(slash - self));
			strcpy(out + (slash - self), "/walrust-worker");
			if (access(out, X_OK) == 0)
				return 0;
		}
	}
	snprintf(out, len, "%s/walrust-worker", PKGLIBEXECDIR);
	return access(out, X_OK);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"socket", required_argument, NULL, 's'},
		{"replica", required_argument, NULL, 'r'},
		{"log-level", required_argument, NULL, 'l'},
		{"config", required_argument, NULL, 'c'},
		{"exec", required_argument, NULL, 'x'},
		{"no-expand-env", no_argument, NULL, 'E'},
		{"workers", required_argument, NULL, 'w'},
		{"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *socket_opt = NULL, *replica_opt = NULL, *config_opt = NULL,
		   *exec_opt = NULL;
	int level = LOG_INFO, c;
	bool level_set = false, expand_env = true;
	int workers = 0;
	const char *lv = getenv("WALRUST_LOG_LEVEL");
	if (lv && log_parse_level(lv) >= 0)
		level = log_parse_level(lv);
	while ((c = getopt_long(argc, argv, "s:r:l:c:x:w:Vh", longopts, NULL)) !=
	       -1) {
		switch (c) {
		case 's':
			socket_opt = optarg;
			break;
		case 'r':
			replica_opt = optarg;
			break;
		case 'c':
			config_opt = optarg;
			break;
		case 'x':
			exec_opt = optarg;
			break;
		case 'E':
			expand_env = false;
			break;
		case 'w':
			workers = atoi(optarg);
			if (workers < 1 || workers > 256) {
				fprintf(stderr, "walrustd: --workers takes 1..256\n");
				return 2;
			}
			break;
		case 'l':
			level_set = true;
			level = log_parse_level(optarg);
			if (level < 0) {
				fprintf(stderr, "walrustd: bad log level %s\n",
					optarg);
				return 2;
			}
			break;
		case 'V':
			printf("walrustd %s\n", WALRUST_VERSION);
			return 0;
		case 'h':
			walrustd_usage(stdout);
			return 0;
		default:
			walrustd_usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "walrustd: unexpected argument %s\n", argv[optind]);
		walrustd_usage(stderr);
		return 2;
	}
	struct config *cfg = NULL;
	if (config_opt) {
		char *err = NULL;
		if (config_load(&cfg, config_opt, expand_env, &err) < 0) {
			fprintf(stderr, "walrustd: %s\n", err ? err : "bad configuration");
			free(err);
			return 2;
		}
		for (size_t i = 0; i < cfg->nwarnings; i++)
			fprintf(stderr, "walrustd: warning: %s\n", cfg->warnings[i]);
		if (!level_set && cfg->log_level >= 0)
			level = cfg->log_level;
		if (!socket_opt && cfg->socket)
			socket_opt = cfg->socket;
		if (!replica_opt && cfg->default_replica)
			replica_opt = cfg->default_replica;
		if (!exec_opt && cfg->exec)
			exec_opt = cfg->exec;
		if (!workers && cfg->workers > 0)
			workers = cfg->workers;
	}
	/* Children inherit the level through the environment. */
	static const char *const names[] = {"debug", "info", "warn", "error"};
	setenv("WALRUST_LOG_LEVEL", names[level], 1);
	log_init("supervisor", level);
	char sockbuf[PATH_MAX], exe[PATH_MAX];
	if (socket_opt) {
		if (strlen(socket_opt) >= 108) {
			fprintf(stderr, "walrustd: socket path too long: %s\n",
				socket_opt);
			return 2;
		}
		snprintf(sockbuf, sizeof sockbuf, "%s", socket_opt);
	} else if (wrp_socket_path(sockbuf, sizeof sockbuf) < 0) {
		fprintf(stderr, "walrustd: socket path too long\n");
		return 2;
	}
	if (walrustd_worker_exe(exe, sizeof exe) < 0) {
		fprintf(stderr,
			"walrustd: cannot find walrust-worker (looked beside "
			"walrustd and in %s; set WALRUST_WORKER)\n",
			PKGLIBEXECDIR);
		return 1;
	}
	char *replica = replica_opt ? strdup(replica_opt)
				    : walrustd_default_replica();
	struct supervisor_opts o = {
		.socket_path = sockbuf,
		.default_bucket = replica,
		.worker_exe = exe,
		.config = cfg,
		.config_path = config_opt,
		.expand_env = expand_env,
		.exec = exec_opt,
		.workers = workers,
	};
	int rc = supervisor_main(&o);
	config_free(cfg);
	free(replica);
	return rc;
}
