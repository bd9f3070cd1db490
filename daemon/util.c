/* util.c: small helpers shared by every file (errors, big-endian integers,
 * time formatting and parsing, whole-buffer I/O). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "walrust.h"

__attribute__((format(printf, 1, 0)))
static char *util_vprintf(const char *fmt, va_list ap)
{
	char *s = NULL;
	if (vasprintf(&s, fmt, ap) < 0)
		return NULL;
	return s;
}

char *util_strdup_printf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *s = util_vprintf(fmt, ap);
	va_end(ap);
	return s;
}

int util_err(char **err, int rc, const char *fmt, ...)
{
	if (err && !*err) {
		va_list ap;
		va_start(ap, fmt);
		*err = util_vprintf(fmt, ap);
		va_end(ap);
	}
	return rc;
}

void util_be32_put(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

void util_be64_put(uint8_t *p, uint64_t v)
{
	util_be32_put(p, (uint32_t)(v >> 32));
	util_be32_put(p + 4, (uint32_t)v);
}

uint32_t util_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

uint64_t util_be64(const uint8_t *p)
{
	return (uint64_t)util_be32(p) << 32 | util_be32(p + 4);
}

int64_t util_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void util_rfc3339_ms(int64_t ms, char *out, size_t outlen)
{
	time_t secs = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
	int frac = (int)(ms - (int64_t)secs * 1000);
	struct tm tm;
	gmtime_r(&secs, &tm);
	char date[32];
	strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
	if (frac == 0) {
		snprintf(out, outlen, "%sZ", date);
		return;
	}
	char f[8];
	snprintf(f, sizeof f, "%03d", frac);
	for (int i = 2; i > 0 && f[i] == '0'; i--)
		f[i] = '\0';
	snprintf(out, outlen, "%s.%sZ", date, f);
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant). */
static int64_t util_days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static int util_digits(const char **p, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if ((*p)[i] < '0' || (*p)[i] > '9')
			return -EINVAL;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	*out = v;
	return 0;
}

int util_parse_time(const char *s, int64_t *ms)
{
	const char *p = s;
	int y, mo, d, h = 0, mi = 0, sec = 0;
	int64_t frac_ms = 0, off_s = 0;
	if (util_digits(&p, 4, &y) || *p++ != '-' || util_digits(&p, 2, &mo) ||
	    *p++ != '-' || util_digits(&p, 2, &d))
		return -EINVAL;
	if (mo < 1 || mo > 12 || d < 1 || d > 31)
		return -EINVAL;
	if (*p == 'T' || *p == 't' || *p == ' ') {
		p++;
		if (util_digits(&p, 2, &h) || *p++ != ':' ||
		    util_digits(&p, 2, &mi))
			return -EINVAL;
		if (*p == ':') {
			p++;
			if (util_digits(&p, 2, &sec))
				return -EINVAL;
			if (*p == '.' || *p == ',') {
				p++;
				int scale = 100, nd = 0;
				while (*p >= '0' && *p <= '9') {
					frac_ms += (*p - '0') * scale;
					scale /= 10;
					p++;
					nd++;
				}
				if (nd == 0)
					return -EINVAL;
			}
		}
		if (h > 23 || mi > 59 || sec > 60)
			return -EINVAL;
		if (*p == 'Z' || *p == 'z') {
			p++;
		} else if (*p == '+' || *p == '-') {
			int sign = *p++ == '-' ? -1 : 1, oh, om = 0;
			if (util_digits(&p, 2, &oh))
				return -EINVAL;
			if (*p == ':')
				p++;
			if (*p && util_digits(&p, 2, &om))
				return -EINVAL;
			off_s = sign * (oh * 3600 + om * 60);
		}
		/* no zone: UTC */
	}
	if (*p != '\0')
		return -EINVAL;
	int64_t days = util_days_from_civil(y, (unsigned)mo, (unsigned)d);
	int64_t t = days * 86400 + h * 3600 + mi * 60 + sec - off_s;
	*ms = t * 1000 + frac_ms;
	return 0;
}

int util_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int util_pwrite_all(int fd, const void *buf, size_t len, off_t off)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		off += n;
		len -= (size_t)n;
	}
	return 0;
}

ssize_t util_pread_all(int fd, void *buf, size_t len, off_t off)
{
	char *p = buf;
	size_t got = 0;
	while (got < len) {
		ssize_t n = pread(fd, p + got, len - got, off + (off_t)got);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

int util_fsync_dir(const char *path_of_file_inside)
{
	char *copy = strdup(path_of_file_inside);
	if (!copy)
		return -ENOMEM;
	int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = 0;
	if (fd < 0)
		rc = -errno;
	else if (fsync(fd) < 0)
		rc = -errno;
	if (fd >= 0)
		close(fd);
	free(copy);
	return rc;
}

int util_mkdir_p(const char *path, mode_t mode)
{
	char *p = strdup(path);
	if (!p)
		return -ENOMEM;
	int rc = 0;
	for (char *s = p + 1;; s++) {
		if (*s == '/' || *s == '\0') {
			char c = *s;
			*s = '\0';
			if (mkdir(p, mode) < 0 && errno != EEXIST) {
				rc = -errno;
				break;
			}
			*s = c;
			if (c == '\0')
				break;
		}
	}
	free(p);
	return rc;
}

int util_tmpfile(void)
{
	const char *dir = getenv("TMPDIR");
	if (!dir || !*dir)
		dir = "/tmp";
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0)
		return fd;
	char *path = util_strdup_printf("%s/walrust-XXXXXX", dir);
	if (!path)
		return -ENOMEM;
	fd = mkstemp(path);
	int rc = fd >= 0 ? fd : -errno;
	if (fd >= 0)
		unlink(path);
	free(path);
	return rc;
}

int util_write_cb(void *ctx, const void *buf, size_t len)
{
	return util_write_all(*(int *)ctx, buf, len);
}
