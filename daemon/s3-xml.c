/*
 * s3-xml.c: the few S3 XML documents walrust reads and writes, with expat.
 *
 * Read: ListObjectsV2 results (<ListBucketResult>), errors (<Error>),
 * InitiateMultipartUpload results (<UploadId>) and DeleteObjects results
 * (<DeleteResult>). Written: the CompleteMultipartUpload and DeleteObjects
 * request bodies.
 *
 * Parsing keeps a stack of element ids (local names; any namespace is
 * stripped) and the text of the innermost element; on each end tag the
 * document's handler looks at (depth, path, text). Only elements at depth
 * <= 3 matter, so deeper text is not kept. DTD entity declarations stop the
 * parser (no entity expansion tricks), and text is capped.
 *
 * With encoding-type=url, S3 percent-encodes Key and Prefix values (a space
 * may come as '+'); <EncodingType>url</EncodingType> may come after the
 * <Contents>, so decoding happens once the document is complete.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <expat.h>

#include "walrust.h"

#define S3_XML_NS_SEP '\x01'
#define S3_XML_MAX_DEPTH 64
#define S3_XML_MAX_TEXT (1u << 20)

enum s3_xml_id {
	X_OTHER = 0,
	X_LIST_RESULT,
	X_CONTENTS,
	X_KEY,
	X_COMMON_PREFIXES,
	X_PREFIX,
	X_IS_TRUNCATED,
	X_NEXT_TOKEN,
	X_ENCODING_TYPE,
	X_ERROR,
	X_CODE,
	X_MESSAGE,
	X_INITIATE_RESULT,
	X_UPLOAD_ID,
	X_DELETE_RESULT,
};

static const struct {
	const char *name;
	enum s3_xml_id id;
} s3_xml_names[] = {
	{"ListBucketResult", X_LIST_RESULT},
	{"Contents", X_CONTENTS},
	{"Key", X_KEY},
	{"CommonPrefixes", X_COMMON_PREFIXES},
	{"Prefix", X_PREFIX},
	{"IsTruncated", X_IS_TRUNCATED},
	{"NextContinuationToken", X_NEXT_TOKEN},
	{"EncodingType", X_ENCODING_TYPE},
	{"Error", X_ERROR},
	{"Code", X_CODE},
	{"Message", X_MESSAGE},
	{"InitiateMultipartUploadResult", X_INITIATE_RESULT},
	{"UploadId", X_UPLOAD_ID},
	{"DeleteResult", X_DELETE_RESULT},
};

struct s3_xml;
/* Called at each end tag at depth <= 3; ids[0] is the root. Returns 0 or
 * a negative errno to stop. */
typedef int (*s3_xml_end_fn)(struct s3_xml *x, int depth, const char *text,
			     size_t len);

struct s3_xml {
	XML_Parser p;
	int depth;
	enum s3_xml_id ids[S3_XML_MAX_DEPTH];
	char *text;
	size_t len, cap;
	bool text_oom;
	int rc; /* first error of a handler */
	s3_xml_end_fn end;
	void *ctx;
	/* the <Error> fields, collected for every document kind */
	char *err_code, *err_message;
};

static enum s3_xml_id s3_xml_lookup(const char *name)
{
	const char *local = strrchr(name, S3_XML_NS_SEP);
	local = local ? local + 1 : name;
	for (size_t i = 0; i < sizeof s3_xml_names / sizeof s3_xml_names[0];
	     i++)
		if (strcmp(local, s3_xml_names[i].name) == 0)
			return s3_xml_names[i].id;
	return X_OTHER;
}

static void s3_xml_stop(struct s3_xml *x, int rc)
{
	if (!x->rc)
		x->rc = rc;
	XML_StopParser(x->p, XML_FALSE);
}

static void XMLCALL s3_xml_on_start(void *data, const XML_Char *name,
				    const XML_Char **attrs)
{
	struct s3_xml *x = data;
	if (x->depth >= S3_XML_MAX_DEPTH) {
		s3_xml_stop(x, -EINVAL);
		return;
	}
	x->ids[x->depth++] = s3_xml_lookup(name);
	x->len = 0;
}

static void XMLCALL s3_xml_on_end(void *data, const XML_Char *name)
{
	struct s3_xml *x = data;
	int depth = x->depth--;
	if (depth > 3)
		return;
	if (x->text_oom) {
		s3_xml_stop(x, -ENOMEM);
		return;
	}
	const char *text = x->text ? x->text : "";
	if (x->ids[0] == X_ERROR && depth == 2) {
		char **slot = x->ids[1] == X_CODE	 ? &x->err_code
			      : x->ids[1] == X_MESSAGE ? &x->err_message
						       : NULL;
		if (slot && !*slot && !(*slot = strndup(text, x->len))) {
			s3_xml_stop(x, -ENOMEM);
			return;
		}
	}
	int rc = x->end ? x->end(x, depth, text, x->len) : 0;
	if (rc)
		s3_xml_stop(x, rc);
	x->len = 0;
}

static void XMLCALL s3_xml_on_text(void *data, const XML_Char *s, int n)
{
	struct s3_xml *x = data;
	if (x->depth > 3 || n <= 0 || x->text_oom)
		return;
	if (x->len + (size_t)n + 1 > S3_XML_MAX_TEXT) {
		s3_xml_stop(x, -E2BIG);
		return;
	}
	if (x->len + (size_t)n + 1 > x->cap) {
		size_t cap = x->cap ? x->cap : 128;
		while (cap < x->len + (size_t)n + 1)
			cap *= 2;
		char *t = realloc(x->text, cap);
		if (!t) {
			x->text_oom = true;
			return;
		}
		x->text = t;
		x->cap = cap;
	}
	memcpy(x->text + x->len, s, (size_t)n);
	x->len += (size_t)n;
	x->text[x->len] = '\0';
}

static void XMLCALL s3_xml_on_entity_decl(void *data, const XML_Char *name,
					  int is_param, const XML_Char *value,
					  int value_len, const XML_Char *base,
					  const XML_Char *system_id,
					  const XML_Char *public_id,
					  const XML_Char *notation)
{
	s3_xml_stop(data, -EINVAL);
}

/* Parse the whole body. Returns 0, a handler's error, or -EINVAL with *err
 * naming expat's complaint. `what` names the document for messages. */
static int s3_xml_run(struct s3_xml *x, const char *body, size_t len,
		      const char *what, char **err)
{
	int rc = 0;
	if (len > INT_MAX)
		return util_err(err, -E2BIG, "%s: document too large", what);
	x->p = XML_ParserCreateNS(NULL, S3_XML_NS_SEP);
	if (!x->p)
		return -ENOMEM;
	XML_SetUserData(x->p, x);
	XML_SetElementHandler(x->p, s3_xml_on_start, s3_xml_on_end);
	XML_SetCharacterDataHandler(x->p, s3_xml_on_text);
	XML_SetEntityDeclHandler(x->p, s3_xml_on_entity_decl);
	enum XML_Status st = XML_Parse(x->p, body ? body : "", (int)len, 1);
	if (x->rc) {
		rc = x->rc;
		util_err(err, rc, "%s: %s", what,
			 rc == -ENOMEM	? "out of memory"
			 : rc == -E2BIG ? "element text too long"
					: "unexpected document structure");
	} else if (st != XML_STATUS_OK) {
		rc = util_err(err, -EINVAL, "%s: malformed XML at line %lu: %s",
			      what,
			      (unsigned long)XML_GetCurrentLineNumber(x->p),
			      XML_ErrorString(XML_GetErrorCode(x->p)));
	}
	XML_ParserFree(x->p);
	x->p = NULL;
	return rc;
}

static void s3_xml_done(struct s3_xml *x)
{
	free(x->text);
	free(x->err_code);
	free(x->err_message);
}

/* The message for a document whose root is <Error>. */
static int s3_xml_error_doc(struct s3_xml *x, const char *what, char **err)
{
	return util_err(err, -EIO, "%s: S3 error %s: %s", what,
			x->err_code ? x->err_code : "(no code)",
			x->err_message ? x->err_message : "(no message)");
}

static int s3_xml_push(char ***v, size_t *n, const char *s, size_t len)
{
	char **nv = realloc(*v, (*n + 1) * sizeof **v);
	if (!nv)
		return -ENOMEM;
	*v = nv;
	if (!(nv[*n] = strndup(s, len)))
		return -ENOMEM;
	(*n)++;
	return 0;
}

static int s3_xml_hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Undo encoding-type=url in place ('+' is a space). */
static int s3_xml_url_decode(char *s)
{
	char *w = s;
	for (const char *r = s; *r; r++) {
		if (*r == '+') {
			*w++ = ' ';
		} else if (*r == '%') {
			int hi = s3_xml_hex(r[1]), lo = hi < 0 ? -1 : s3_xml_hex(r[2]);
			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
				return -EINVAL;
			*w++ = (char)(hi << 4 | lo);
			r += 2;
		} else {
			*w++ = *r;
		}
	}
	*w = '\0';
	return 0;
}

/* ---------------------------------------------------------- ListObjectsV2 */
struct s3_xml_list {
	struct s3_list_page *page;
	bool url;
	bool seen_truncated;
};

static int s3_xml_list_end(struct s3_xml *x, int depth, const char *text,
			   size_t len)
{
	struct s3_xml_list *l = x->ctx;
	struct s3_list_page *pg = l->page;
	if (x->ids[0] != X_LIST_RESULT)
		return 0;
	if (depth == 2) {
		switch (x->ids[1]) {
		case X_IS_TRUNCATED:
			l->seen_truncated = true;
			if (strcasecmp(text, "true") == 0)
				pg->truncated = true;
			else if (strcasecmp(text, "false") == 0)
				pg->truncated = false;
			else
				return -EINVAL;
			break;
		case X_NEXT_TOKEN:
			free(pg->next_token);
			if (!(pg->next_token = strndup(text, len)))
				return -ENOMEM;
			break;
		case X_ENCODING_TYPE:
			l->url = strcasecmp(text, "url") == 0;
			break;
		default:
			break;
		}
	} else if (depth == 3) {
		if (x->ids[1] == X_CONTENTS && x->ids[2] == X_KEY)
			return s3_xml_push(&pg->keys, &pg->nkeys, text, len);
		if (x->ids[1] == X_COMMON_PREFIXES && x->ids[2] == X_PREFIX)
			return s3_xml_push(&pg->prefixes, &pg->nprefixes, text,
					   len);
	}
	return 0;
}

void s3_xml_list_clear(struct s3_list_page *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->nkeys; i++)
		free(p->keys[i]);
	for (size_t i = 0; i < p->nprefixes; i++)
		free(p->prefixes[i]);
	free(p->keys);
	free(p->prefixes);
	free(p->next_token);
	memset(p, 0, sizeof *p);
}

int s3_xml_parse_list(const char *body, size_t len, struct s3_list_page *out,
		      char **err)
{
	static const char what[] = "ListObjectsV2 response";
	struct s3_xml_list l = {.page = out};
	struct s3_xml x = {.end = s3_xml_list_end, .ctx = &l};
	int rc;

	memset(out, 0, sizeof *out);
	if ((rc = s3_xml_run(&x, body, len, what, err)))
		goto out;
	if (x.ids[0] == X_ERROR) {
		rc = s3_xml_error_doc(&x, what, err);
		goto out;
	}
	if (x.ids[0] != X_LIST_RESULT) {
		rc = util_err(err, -EINVAL, "%s: not a <ListBucketResult>",
			      what);
		goto out;
	}
	if (out->truncated && (!out->next_token || !*out->next_token)) {
		rc = util_err(err, -EINVAL,
			      "%s: truncated without NextContinuationToken",
			      what);
		goto out;
	}
	if (l.url) {
		for (size_t i = 0; i < out->nkeys && !rc; i++)
			rc = s3_xml_url_decode(out->keys[i]);
		for (size_t i = 0; i < out->nprefixes && !rc; i++)
			rc = s3_xml_url_decode(out->prefixes[i]);
		if (rc)
			util_err(err, rc, "%s: bad percent-encoding in a key",
				 what);
	}
out:
	if (rc)
		s3_xml_list_clear(out);
	s3_xml_done(&x);
	return rc;
}

/* ------------------------------------------------------------------ Error */
int s3_xml_parse_error(const char *body, size_t len, char **code,
		       char **message)
{
	struct s3_xml x = {0};
	int rc;

	*code = NULL;
	*message = NULL;
	if ((rc = s3_xml_run(&x, body, len, "error", NULL)))
		goto out;
	if (x.ids[0] != X_ERROR)
		goto out;
	*code = x.err_code ? x.err_code : strdup("");
	*message = x.err_message ? x.err_message : strdup("");
	x.err_code = x.err_message = NULL;
	if (!*code || !*message) {
		free(*code);
		free(*message);
		*code = *message = NULL;
		rc = -ENOMEM;
		goto out;
	}
	rc = 1;
out:
	s3_xml_done(&x);
	return rc;
}

/* ------------------------------------------------- InitiateMultipartUpload */
static int s3_xml_upload_id_end(struct s3_xml *x, int depth, const char *text,
				size_t len)
{
	char **id = x->ctx;
	if (depth == 2 && x->ids[0] == X_INITIATE_RESULT &&
	    x->ids[1] == X_UPLOAD_ID) {
		free(*id);
		if (!(*id = strndup(text, len)))
			return -ENOMEM;
	}
	return 0;
}

int s3_xml_parse_upload_id(const char *body, size_t len, char **upload_id,
			   char **err)
{
	static const char what[] = "InitiateMultipartUpload response";
	struct s3_xml x = {.end = s3_xml_upload_id_end, .ctx = upload_id};
	int rc;

	*upload_id = NULL;
	if ((rc = s3_xml_run(&x, body, len, what, err)))
		goto out;
	if (x.ids[0] == X_ERROR) {
		rc = s3_xml_error_doc(&x, what, err);
		goto out;
	}
	if (x.ids[0] != X_INITIATE_RESULT || !*upload_id || !**upload_id)
		rc = util_err(err, -EINVAL, "%s: no UploadId", what);
out:
	if (rc) {
		free(*upload_id);
		*upload_id = NULL;
	}
	s3_xml_done(&x);
	return rc;
}

/* ------------------------------------------------------------ DeleteObjects */
struct s3_xml_delete {
	int nerrors;
	char *key, *code, *message; /* of the current <Error> */
	char **out_key, **out_code, **out_message;
};

static int s3_xml_delete_end(struct s3_xml *x, int depth, const char *text,
			     size_t len)
{
	struct s3_xml_delete *d = x->ctx;
	if (x->ids[0] != X_DELETE_RESULT || depth < 2 || x->ids[1] != X_ERROR)
		return 0;
	if (depth == 3) {
		char **slot = x->ids[2] == X_KEY       ? &d->key
			      : x->ids[2] == X_CODE    ? &d->code
			      : x->ids[2] == X_MESSAGE ? &d->message
						       : NULL;
		if (slot) {
			free(*slot);
			if (!(*slot = strndup(text, len)))
				return -ENOMEM;
		}
		return 0;
	}
	/* end of one <Error>: keep the first */
	if (d->nerrors++ == 0) {
		*d->out_key = d->key;
		*d->out_code = d->code;
		*d->out_message = d->message;
	} else {
		free(d->key);
		free(d->code);
		free(d->message);
	}
	d->key = d->code = d->message = NULL;
	return 0;
}

int s3_xml_parse_delete_result(const char *body, size_t len, char **key,
			       char **code, char **message)
{
	struct s3_xml_delete d = {
		.out_key = key, .out_code = code, .out_message = message};
	struct s3_xml x = {.end = s3_xml_delete_end, .ctx = &d};
	int rc;

	*key = *code = *message = NULL;
	if ((rc = s3_xml_run(&x, body, len, "DeleteObjects response", NULL)))
		goto out;
	if (x.ids[0] == X_ERROR) {
		*code = x.err_code;
		*message = x.err_message;
		x.err_code = x.err_message = NULL;
		rc = -EIO;
	} else if (x.ids[0] != X_DELETE_RESULT) {
		rc = -EINVAL;
	} else {
		rc = d.nerrors;
	}
out:
	if (rc < 0 && rc != -EIO) {
		free(*key);
		free(*code);
		free(*message);
		*key = *code = *message = NULL;
	}
	free(d.key);
	free(d.code);
	free(d.message);
	s3_xml_done(&x);
	return rc;
}

/* ----------------------------------------------------------------- bodies */
struct s3_xml_out {
	char *p;
	size_t len, cap;
	bool oom;
};

static void s3_xml_out_add(struct s3_xml_out *o, const char *s, size_t n)
{
	if (o->oom)
		return;
	if (o->len + n + 1 > o->cap) {
		size_t cap = o->cap ? o->cap : 512;
		while (cap < o->len + n + 1)
			cap *= 2;
		char *p = realloc(o->p, cap);
		if (!p) {
			o->oom = true;
			return;
		}
		o->p = p;
		o->cap = cap;
	}
	memcpy(o->p + o->len, s, n);
	o->len += n;
	o->p[o->len] = '\0';
}

static void s3_xml_out_str(struct s3_xml_out *o, const char *s)
{
	s3_xml_out_add(o, s, strlen(s));
}

static void s3_xml_out_escaped(struct s3_xml_out *o, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '&': s3_xml_out_str(o, "&amp;"); break;
		case '<': s3_xml_out_str(o, "&lt;"); break;
		case '>': s3_xml_out_str(o, "&gt;"); break;
		case '"': s3_xml_out_str(o, "&quot;"); break;
		case '\'': s3_xml_out_str(o, "&apos;"); break;
		case '\r': s3_xml_out_str(o, "&#13;"); break;
		default: s3_xml_out_add(o, s, 1); break;
		}
	}
}

static char *s3_xml_out_finish(struct s3_xml_out *o)
{
	if (o->oom) {
		free(o->p);
		return NULL;
	}
	return o->p;
}

char *s3_xml_complete_body(const char *const *etags, size_t n)
{
	struct s3_xml_out o = {0};
	char num[32];
	s3_xml_out_str(&o, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
			   "<CompleteMultipartUpload xmlns=\"http://s3."
			   "amazonaws.com/doc/2006-03-01/\">");
	for (size_t i = 0; i < n; i++) {
		snprintf(num, sizeof num, "%zu", i + 1);
		s3_xml_out_str(&o, "<Part><PartNumber>");
		s3_xml_out_str(&o, num);
		s3_xml_out_str(&o, "</PartNumber><ETag>");
		s3_xml_out_escaped(&o, etags[i] ? etags[i] : "");
		s3_xml_out_str(&o, "</ETag></Part>");
	}
	s3_xml_out_str(&o, "</CompleteMultipartUpload>");
	return s3_xml_out_finish(&o);
}

char *s3_xml_delete_body(const char *const *keys, size_t n)
{
	struct s3_xml_out o = {0};
	s3_xml_out_str(&o, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
			   "<Delete xmlns=\"http://s3.amazonaws.com/doc/"
			   "2006-03-01/\"><Quiet>true</Quiet>");
	for (size_t i = 0; i < n; i++) {
		s3_xml_out_str(&o, "<Object><Key>");
		s3_xml_out_escaped(&o, keys[i]);
		s3_xml_out_str(&o, "</Key></Object>");
	}
	s3_xml_out_str(&o, "</Delete>");
	return s3_xml_out_finish(&o);
}
