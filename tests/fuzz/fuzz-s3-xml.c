/* fuzz-s3-xml.c: libFuzzer harness over every S3 XML parser (ListObjectsV2,
 * Error, InitiateMultipartUpload, DeleteObjects result). Each input goes
 * through all of them; a parse must never crash, leak or read out of
 * bounds, and a successful list parse must hold sane strings.
 *
 *   clang -g -fsanitize=fuzzer,address,undefined -I. -Idaemon \
 *     tests/fuzz/fuzz-s3-xml.c daemon/s3-xml.c daemon/util.c -lexpat
 *   ./a.out tests/fuzz/corpus/s3-xml
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "walrust.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *body = (const char *)data;
	struct s3_list_page pg;
	char *err = NULL, *a = NULL, *b = NULL, *c = NULL;

	if (s3_xml_parse_list(body, size, &pg, &err) == 0) {
		for (size_t i = 0; i < pg.nkeys; i++)
			(void)strlen(pg.keys[i]);
		for (size_t i = 0; i < pg.nprefixes; i++)
			(void)strlen(pg.prefixes[i]);
		if (pg.truncated && !pg.next_token)
			abort();
		s3_xml_list_clear(&pg);
	}
	free(err);
	err = NULL;

	int rc = s3_xml_parse_error(body, size, &a, &b);
	if (rc == 1 && (!a || !b))
		abort();
	if (rc != 1 && (a || b))
		abort();
	free(a);
	free(b);

	if (s3_xml_parse_upload_id(body, size, &a, &err) == 0 && (!a || !*a))
		abort();
	free(a);
	free(err);

	a = b = NULL;
	rc = s3_xml_parse_delete_result(body, size, &a, &b, &c);
	if (rc == 0 && (a || b || c))
		abort();
	free(a);
	free(b);
	free(c);
	return 0;
}
