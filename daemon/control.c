/* control.c: the control socket. A Unix stream socket, 0600, in a directory
 * we create 0700; every accepted peer's uid is checked with SO_PEERCRED and
 * only our own uid and root get through. Each connection is a channel;
 * each line goes to cmd_dispatch. A client that vanishes mid-request is
 * marked gone and its replies are dropped; the request itself finishes. */
#include "config.h"

#include <errno.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon.h"

static uv_pipe_t *control_server;

static void control_client_closed(struct channel *ch)
{
	struct client *c = ch->data;
	c->gone = true;
	c->ch = NULL;
	client_unref(c);
}

void client_unref(struct client *c)
{
	if (--c->refs == 0)
		free(c);
}

struct client *client_internal(void (*fn)(void *arg, json_t *msg), void *arg)
{
	struct client *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	c->refs = 1;
	c->internal = fn;
	c->internal_arg = arg;
	return c;
}

void client_send_line(struct client *c, const char *line, size_t len)
{
	if (c->internal) {
		json_t *m = json_loadb(line, len, 0, NULL);
		if (m)
			c->internal(c->internal_arg, m);
		json_decref(m);
	} else if (!c->gone && c->ch) {
		channel_send_line(c->ch, line, len);
	}
}

void client_send(struct client *c, const json_t *msg)
{
	if (c->internal)
		c->internal(c->internal_arg, (json_t *)msg);
	else if (!c->gone && c->ch)
		channel_send(c->ch, msg);
}

static void control_on_line(struct channel *ch, const char *line, size_t len,
			    bool too_long)
{
	cmd_dispatch(ch->data, line, len, too_long);
}

static void control_on_connection(uv_stream_t *server, int status)
{
	if (status < 0)
		return;
	uv_pipe_t *p = malloc(sizeof *p);
	if (!p)
		return;
	uv_pipe_init(server->loop, p, 0);
	if (uv_accept(server, (uv_stream_t *)p) < 0) {
		uv_close((uv_handle_t *)p, (uv_close_cb)free);
		return;
	}
	uv_os_fd_t fd;
	struct ucred cred;
	socklen_t clen = sizeof cred;
	if (uv_fileno((uv_handle_t *)p, &fd) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0 ||
	    (cred.uid != geteuid() && cred.uid != 0)) {
		log_warn("refused a control connection from uid %d (pid %d): only uid %d and root may connect",
			 (int)cred.uid, (int)cred.pid, (int)geteuid());
		uv_close((uv_handle_t *)p, (uv_close_cb)free);
		return;
	}
	struct client *c = calloc(1, sizeof *c);
	if (!c) {
		uv_close((uv_handle_t *)p, (uv_close_cb)free);
		return;
	}
	c->uid = cred.uid;
	c->refs = 1;
	c->ch = channel_new((uv_stream_t *)p, control_on_line,
			    control_client_closed, c);
	if (!c->ch) {
		free(c);
		uv_close((uv_handle_t *)p, (uv_close_cb)free);
		return;
	}
	channel_start(c->ch);
}

/* 1 when something answers on path, 0 when not. */
static int control_alive(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
	int alive = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
	close(fd);
	return alive;
}

int control_listen(uv_loop_t *loop, const char *path, char **err)
{
	char *copy = strdup(path);
	char *dir = dirname(copy);
	struct stat st;
	int rc = 0;
	if (stat(dir, &st) < 0) {
		rc = util_mkdir_p(dir, 0700);
		if (rc == 0)
			chmod(dir, 0700);
		if (rc < 0) {
			util_err(err, rc, "cannot create %s: %s", dir,
				 strerror(-rc));
			goto out;
		}
	}
	if (lstat(path, &st) == 0) {
		if (control_alive(path)) {
			rc = util_err(err, -EADDRINUSE,
				      "another walrustd is already listening on %s",
				      path);
			goto out;
		}
		unlink(path);
	}
	control_server = malloc(sizeof *control_server);
	uv_pipe_init(loop, control_server, 0);
	mode_t old = umask(0177);
	rc = uv_pipe_bind(control_server, path);
	umask(old);
	if (rc == 0)
		chmod(path, 0600);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)control_server, 64,
			       control_on_connection);
	if (rc < 0) {
		util_err(err, rc, "cannot listen on %s: %s", path,
			 uv_strerror(rc));
		uv_close((uv_handle_t *)control_server, (uv_close_cb)free);
		control_server = NULL;
	}
out:
	free(copy);
	return rc;
}

void control_stop(void)
{
	if (control_server) {
		uv_close((uv_handle_t *)control_server, (uv_close_cb)free);
		control_server = NULL;
		unlink(supervisor_socket_path());
	}
}
