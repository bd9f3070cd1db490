/* channel.c: newline-delimited JSON over a libuv stream. Used for client
 * connections on the control socket and for the pipes to worker and job
 * processes alike, so framing and write queueing live in one place. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "daemon.h"

struct channel_write {
	uv_write_t req;
	struct channel *ch;
	char *buf;
};

static void channel_free(uv_handle_t *h)
{
	struct channel *c = h->data;
	if (c->on_close)
		c->on_close(c);
	wrp_reader_clear(&c->reader);
	free(h);
	free(c);
}

static void channel_shut(uv_shutdown_t *req, int status)
{
	(void)status;
	uv_close((uv_handle_t *)req->handle, channel_free);
	free(req);
}

void channel_close(struct channel *c)
{
	if (c->closing)
		return;
	c->closing = true;
	uv_read_stop(c->stream);
	/* Let queued replies reach the peer before the handle goes. */
	uv_shutdown_t *req = c->pending_writes ? malloc(sizeof *req) : NULL;
	if (req && uv_shutdown(req, c->stream, channel_shut) == 0)
		return;
	free(req);
	uv_close((uv_handle_t *)c->stream, channel_free);
}

static void channel_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	static char slab[65536];
	(void)h;
	(void)hint;
	buf->base = slab;
	buf->len = sizeof slab;
}

static int channel_line(void *arg, const char *line, size_t len, bool too_long)
{
	struct channel *c = arg;
	if (!c->closing)
		c->on_line(c, line, len, too_long);
	return c->closing ? 1 : 0;
}

static void channel_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct channel *c = s->data;
	if (n < 0) {
		channel_close(c);
		return;
	}
	if (n > 0)
		wrp_reader_feed(&c->reader, buf->base, (size_t)n, channel_line, c);
}

struct channel *channel_new(uv_stream_t *stream, channel_line_cb on_line,
			    channel_close_cb on_close, void *data)
{
	struct channel *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	c->stream = stream;
	c->on_line = on_line;
	c->on_close = on_close;
	c->data = data;
	stream->data = c;
	wrp_reader_init(&c->reader);
	return c;
}

int channel_start(struct channel *c)
{
	return uv_read_start(c->stream, channel_alloc, channel_read);
}

static void channel_written(uv_write_t *req, int status)
{
	struct channel_write *w = req->data;
	w->ch->pending_writes--;
	free(w->buf);
	free(w);
	(void)status; /* a failed write shows up as a read error/EOF */
}

int channel_send_line(struct channel *c, const char *line, size_t len)
{
	if (c->closing)
		return -EPIPE;
	struct channel_write *w = malloc(sizeof *w);
	char *copy = malloc(len + 1);
	if (!w || !copy) {
		free(w);
		free(copy);
		return -ENOMEM;
	}
	memcpy(copy, line, len);
	size_t n = len;
	if (n == 0 || copy[n - 1] != '\n')
		copy[n++] = '\n';
	w->ch = c;
	w->buf = copy;
	w->req.data = w;
	uv_buf_t b = uv_buf_init(copy, (unsigned)n);
	int rc = uv_write(&w->req, c->stream, &b, 1, channel_written);
	if (rc < 0) {
		free(copy);
		free(w);
		return rc;
	}
	c->pending_writes++;
	return 0;
}

int channel_send(struct channel *c, const json_t *msg)
{
	size_t len;
	char *line = wrp_encode(msg, &len);
	if (!line)
		return -E2BIG;
	int rc = channel_send_line(c, line, len);
	free(line);
	return rc;
}
