/* test-s3-xml.c: the S3 XML parsers and body builders on real-looking
 * documents, and on truncated, malformed and hostile ones. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "suites.h"
#include "walrust.h"

#define NS "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\""

static const char list_url[] =
	"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
	"<ListBucketResult " NS ">"
	"<Name>walrust-test</Name><Prefix>app%2F</Prefix>"
	"<KeyCount>3</KeyCount><MaxKeys>1000</MaxKeys>"
	"<Delimiter>%2F</Delimiter><IsTruncated>true</IsTruncated>"
	"<Contents><Key>app/0000/0000000000000001-0000000000000001.ltx</Key>"
	"<LastModified>2024-01-15T10:30:00.000Z</LastModified>"
	"<ETag>&quot;6805f2cfc46c0f04559748bb039d69ae&quot;</ETag>"
	"<Size>4096</Size><StorageClass>STANDARD</StorageClass></Contents>"
	"<Contents><Key>app/a+b%2Bc%20d%C3%A9.txt</Key>"
	"<LastModified>2024-01-15T10:30:01.000Z</LastModified>"
	"<ETag>&quot;9b2cf535f27731c974343645a3985328-3&quot;</ETag>"
	"<Size>25165824</Size><StorageClass>STANDARD</StorageClass></Contents>"
	"<CommonPrefixes><Prefix>app/0001/</Prefix></CommonPrefixes>"
	"<CommonPrefixes><Prefix>app/0009/</Prefix></CommonPrefixes>"
	"<EncodingType>url</EncodingType>"
	"<ContinuationToken>abc</ContinuationToken>"
	"<NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM="
	"</NextContinuationToken>"
	"</ListBucketResult>";

START_TEST(test_list_url_encoded)
{
	struct s3_list_page pg;
	char *err = NULL;
	int rc = s3_xml_parse_list(list_url, strlen(list_url), &pg, &err);
	ck_assert_msg(rc == 0, "%s", err ? err : "");
	ck_assert_uint_eq(pg.nkeys, 2);
	ck_assert_str_eq(pg.keys[0],
			 "app/0000/0000000000000001-0000000000000001.ltx");
	ck_assert_str_eq(pg.keys[1], "app/a b+c d\xc3\xa9.txt");
	ck_assert_uint_eq(pg.nprefixes, 2);
	ck_assert_str_eq(pg.prefixes[0], "app/0001/");
	ck_assert_str_eq(pg.prefixes[1], "app/0009/");
	ck_assert(pg.truncated);
	ck_assert_str_eq(pg.next_token,
			 "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=");
	s3_xml_list_clear(&pg);
	s3_xml_list_clear(&pg); /* idempotent */
	ck_assert_ptr_null(err);
}
END_TEST

START_TEST(test_list_plain)
{
	/* No EncodingType: '+' and '%' are literal; entities are decoded;
	 * text may arrive in several pieces around a CDATA section. */
	static const char doc[] =
		"<ListBucketResult " NS ">\n  <Name>b</Name>\n"
		"  <IsTruncated>false</IsTruncated>\n"
		"  <Contents>\n    <Key>a&amp;b+c%20&lt;d&gt;&quot;</Key>\n"
		"    <Size>1</Size>\n  </Contents>\n"
		"  <Contents><Key>x<![CDATA[/y]]>/z</Key></Contents>\n"
		"</ListBucketResult>\n";
	struct s3_list_page pg;
	ck_assert_int_eq(s3_xml_parse_list(doc, strlen(doc), &pg, NULL), 0);
	ck_assert_uint_eq(pg.nkeys, 2);
	ck_assert_str_eq(pg.keys[0], "a&b+c%20<d>\"");
	ck_assert_str_eq(pg.keys[1], "x/y/z");
	ck_assert_uint_eq(pg.nprefixes, 0);
	ck_assert(!pg.truncated);
	ck_assert_ptr_null(pg.next_token);
	s3_xml_list_clear(&pg);
}
END_TEST

START_TEST(test_list_empty_and_prefixed_ns)
{
	static const char empty[] =
		"<?xml version=\"1.0\"?><ListBucketResult " NS
		"><Name>b</Name><Prefix>nothing/</Prefix><KeyCount>0</KeyCount>"
		"<IsTruncated>false</IsTruncated></ListBucketResult>";
	struct s3_list_page pg;
	ck_assert_int_eq(s3_xml_parse_list(empty, strlen(empty), &pg, NULL), 0);
	ck_assert_uint_eq(pg.nkeys, 0);
	ck_assert_ptr_null(pg.keys);
	s3_xml_list_clear(&pg);
	/* a namespace prefix on every element */
	static const char pfx[] =
		"<s3:ListBucketResult xmlns:s3=\"http://s3.amazonaws.com/doc/"
		"2006-03-01/\"><s3:Contents><s3:Key>k</s3:Key></s3:Contents>"
		"</s3:ListBucketResult>";
	ck_assert_int_eq(s3_xml_parse_list(pfx, strlen(pfx), &pg, NULL), 0);
	ck_assert_uint_eq(pg.nkeys, 1);
	ck_assert_str_eq(pg.keys[0], "k");
	s3_xml_list_clear(&pg);
}
END_TEST

START_TEST(test_list_errors)
{
	struct s3_list_page pg;
	char *err = NULL;
	/* truncated in the middle of a key */
	size_t cut = strstr(list_url, "a+b") - list_url;
	ck_assert_int_eq(s3_xml_parse_list(list_url, cut, &pg, &err), -EINVAL);
	ck_assert_ptr_nonnull(err);
	ck_assert_ptr_null(pg.keys);
	free(err);
	err = NULL;
	/* an <Error> where a listing was expected */
	static const char nsb[] =
		"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>"
		"NoSuchBucket</Code><Message>The specified bucket does not "
		"exist</Message><BucketName>nope</BucketName><RequestId>"
		"4442587FB7D0A2F9</RequestId></Error>";
	ck_assert_int_eq(s3_xml_parse_list(nsb, strlen(nsb), &pg, &err), -EIO);
	ck_assert(strstr(err, "NoSuchBucket"));
	free(err);
	err = NULL;
	/* IsTruncated without a token would loop forever */
	static const char notok[] = "<ListBucketResult><IsTruncated>true"
				    "</IsTruncated></ListBucketResult>";
	ck_assert_int_eq(s3_xml_parse_list(notok, strlen(notok), &pg, &err),
			 -EINVAL);
	free(err);
	err = NULL;
	/* bad percent-encoding, and an encoded NUL */
	static const char badpct[] =
		"<ListBucketResult><EncodingType>url</EncodingType><Contents>"
		"<Key>a%zz</Key></Contents></ListBucketResult>";
	ck_assert_int_eq(s3_xml_parse_list(badpct, strlen(badpct), &pg, &err),
			 -EINVAL);
	free(err);
	err = NULL;
	static const char nul[] =
		"<ListBucketResult><EncodingType>url</EncodingType><Contents>"
		"<Key>a%00b</Key></Contents></ListBucketResult>";
	ck_assert_int_eq(s3_xml_parse_list(nul, strlen(nul), &pg, &err),
			 -EINVAL);
	free(err);
	err = NULL;
	static const char trail[] = "<ListBucketResult><EncodingType>url"
				    "</EncodingType><Contents><Key>a%4</Key>"
				    "</Contents></ListBucketResult>";
	ck_assert_int_eq(s3_xml_parse_list(trail, strlen(trail), &pg, &err),
			 -EINVAL);
	free(err);
	err = NULL;
	/* wrong root, empty body, garbage, HTML error page */
	static const char other[] = "<Foo><Contents><Key>k</Key></Contents></Foo>";
	ck_assert_int_lt(s3_xml_parse_list(other, strlen(other), &pg, &err), 0);
	free(err);
	err = NULL;
	ck_assert_int_lt(s3_xml_parse_list("", 0, &pg, &err), 0);
	free(err);
	err = NULL;
	ck_assert_int_lt(s3_xml_parse_list(NULL, 0, &pg, NULL), 0);
	static const char html[] = "<html><body><h1>502 Bad Gateway</h1></body>"
				   "</html>";
	ck_assert_int_lt(s3_xml_parse_list(html, strlen(html), &pg, NULL), 0);
	static const char junk[] = "\x00\xff<ListBucketResult>";
	ck_assert_int_lt(s3_xml_parse_list(junk, sizeof junk - 1, &pg, NULL),
			 0);
	/* bad IsTruncated value */
	static const char bt[] = "<ListBucketResult><IsTruncated>maybe"
				 "</IsTruncated></ListBucketResult>";
	ck_assert_int_lt(s3_xml_parse_list(bt, strlen(bt), &pg, NULL), 0);
}
END_TEST

START_TEST(test_hostile)
{
	/* billion laughs: entity declarations are refused outright */
	static const char lol[] =
		"<?xml version=\"1.0\"?><!DOCTYPE l [<!ENTITY a \"aaaaaaaaaa\">"
		"<!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\">"
		"<!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\">]>"
		"<ListBucketResult><Contents><Key>&c;</Key></Contents>"
		"</ListBucketResult>";
	struct s3_list_page pg;
	char *err = NULL;
	ck_assert_int_lt(s3_xml_parse_list(lol, strlen(lol), &pg, &err), 0);
	free(err);
	/* external entity */
	static const char xxe[] =
		"<?xml version=\"1.0\"?><!DOCTYPE l [<!ENTITY x SYSTEM "
		"\"file:///etc/passwd\">]><Error><Code>&x;</Code></Error>";
	char *code = NULL, *msg = NULL;
	ck_assert_int_lt(s3_xml_parse_error(xxe, strlen(xxe), &code, &msg), 0);
	ck_assert_ptr_null(code);
	/* very deep nesting */
	size_t depth = 5000;
	char *deep = malloc(depth * 7 + 64);
	char *p = deep;
	p += sprintf(p, "<ListBucketResult>");
	for (size_t i = 0; i < depth; i++)
		p += sprintf(p, "<a>");
	for (size_t i = 0; i < depth; i++)
		p += sprintf(p, "</a>");
	p += sprintf(p, "</ListBucketResult>");
	ck_assert_int_lt(s3_xml_parse_list(deep, (size_t)(p - deep), &pg, NULL),
			 0);
	free(deep);
	/* a huge key */
	size_t big = 3u << 20;
	char *doc = malloc(big + 128);
	p = doc + sprintf(doc, "<ListBucketResult><Contents><Key>");
	memset(p, 'k', big);
	p += big;
	p += sprintf(p, "</Key></Contents></ListBucketResult>");
	err = NULL;
	ck_assert_int_lt(s3_xml_parse_list(doc, (size_t)(p - doc), &pg, &err),
			 0);
	free(err);
	free(doc);
}
END_TEST

START_TEST(test_error_doc)
{
	static const char doc[] =
		"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		"<Error><Code>SignatureDoesNotMatch</Code><Message>The request "
		"signature we calculated does not match the signature you "
		"provided. Check your key and signing method.</Message>"
		"<AWSAccessKeyId>AKIAIOSFODNN7EXAMPLE</AWSAccessKeyId>"
		"<StringToSign>AWS4-HMAC-SHA256\n20130524T000000Z</StringToSign>"
		"<CanonicalRequest>GET\n/\n</CanonicalRequest>"
		"<RequestId>ABC</RequestId><HostId>x/y=</HostId></Error>";
	char *code, *msg;
	ck_assert_int_eq(s3_xml_parse_error(doc, strlen(doc), &code, &msg), 1);
	ck_assert_str_eq(code, "SignatureDoesNotMatch");
	ck_assert(strncmp(msg, "The request signature we calculated", 35) == 0);
	free(code);
	free(msg);
	/* moto/AWS with a namespace and an entity in the message */
	static const char ns[] = "<Error " NS "><Code>NoSuchKey</Code><Message>"
				 "Key &quot;a&quot; not found</Message></Error>";
	ck_assert_int_eq(s3_xml_parse_error(ns, strlen(ns), &code, &msg), 1);
	ck_assert_str_eq(code, "NoSuchKey");
	ck_assert_str_eq(msg, "Key \"a\" not found");
	free(code);
	free(msg);
	/* no Message element */
	static const char nomsg[] = "<Error><Code>SlowDown</Code></Error>";
	ck_assert_int_eq(s3_xml_parse_error(nomsg, strlen(nomsg), &code, &msg),
			 1);
	ck_assert_str_eq(code, "SlowDown");
	ck_assert_str_eq(msg, "");
	free(code);
	free(msg);
	/* a nested <Code> does not count */
	static const char nested[] = "<Error><X><Code>no</Code></X>"
				     "<Code>yes</Code></Error>";
	ck_assert_int_eq(
		s3_xml_parse_error(nested, strlen(nested), &code, &msg), 1);
	ck_assert_str_eq(code, "yes");
	free(code);
	free(msg);
	/* not an error: 0; malformed or empty: < 0 */
	static const char ok[] = "<CompleteMultipartUploadResult><ETag>&quot;x"
				 "&quot;</ETag></CompleteMultipartUploadResult>";
	ck_assert_int_eq(s3_xml_parse_error(ok, strlen(ok), &code, &msg), 0);
	ck_assert_ptr_null(code);
	ck_assert_ptr_null(msg);
	ck_assert_int_lt(s3_xml_parse_error("", 0, &code, &msg), 0);
	ck_assert_int_lt(s3_xml_parse_error("<Error><Code>x", 14, &code, &msg),
			 0);
	ck_assert_ptr_null(code);
}
END_TEST

START_TEST(test_complete_200_with_error)
{
	/* CompleteMultipartUpload may answer 200 and then an <Error> */
	static const char doc[] =
		"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\n            \n"
		"<Error><Code>InternalError</Code><Message>We encountered an "
		"internal error. Please try again.</Message><RequestId>656c76696e"
		"6727732072657175657374</RequestId><HostId>Uuag1LuByRx9e6j5Onimru"
		"9pO4ZVKnJ2Qz7/C1NPcfTWAtRPfTaOFg==</HostId></Error>";
	char *code, *msg;
	ck_assert_int_eq(s3_xml_parse_error(doc, strlen(doc), &code, &msg), 1);
	ck_assert_str_eq(code, "InternalError");
	free(code);
	free(msg);
}
END_TEST

START_TEST(test_upload_id)
{
	static const char doc[] =
		"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		"<InitiateMultipartUploadResult " NS "><Bucket>example-bucket"
		"</Bucket><Key>app/0009/0000000000000001-00000000000000ff.ltx"
		"</Key><UploadId>VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRz"
		"IHVwbG9hZA</UploadId></InitiateMultipartUploadResult>";
	char *id = NULL, *err = NULL;
	ck_assert_int_eq(s3_xml_parse_upload_id(doc, strlen(doc), &id, &err),
			 0);
	ck_assert_str_eq(id, "VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRz"
			     "IHVwbG9hZA");
	free(id);
	static const char none[] = "<InitiateMultipartUploadResult><Bucket>b"
				   "</Bucket></InitiateMultipartUploadResult>";
	ck_assert_int_eq(s3_xml_parse_upload_id(none, strlen(none), &id, &err),
			 -EINVAL);
	ck_assert_ptr_null(id);
	free(err);
	err = NULL;
	static const char e[] = "<Error><Code>AccessDenied</Code><Message>"
				"Access Denied</Message></Error>";
	ck_assert_int_eq(s3_xml_parse_upload_id(e, strlen(e), &id, &err), -EIO);
	ck_assert(strstr(err, "AccessDenied"));
	free(err);
	err = NULL;
	ck_assert_int_lt(s3_xml_parse_upload_id(doc, 60, &id, &err), 0);
	ck_assert_ptr_null(id);
	free(err);
}
END_TEST

START_TEST(test_complete_body)
{
	const char *etags[] = {"\"a54357aff0632cce46d942af68356b38\"",
			       "\"0c78aef83f66abc1fa1e8477f296d394\"",
			       "\"acbd18db4cc2f85cedef654fccc4a4d8\"", "<&'>"};
	char *b = s3_xml_complete_body(etags, 4);
	ck_assert_ptr_nonnull(b);
	ck_assert(strstr(b, "<CompleteMultipartUpload xmlns=\"http://s3."
			    "amazonaws.com/doc/2006-03-01/\"><Part><PartNumber>1"
			    "</PartNumber><ETag>&quot;a54357aff0632cce46d942af"
			    "68356b38&quot;</ETag></Part><Part><PartNumber>2"
			    "</PartNumber>"));
	ck_assert(strstr(b, "<PartNumber>4</PartNumber><ETag>&lt;&amp;&apos;"
			    "&gt;</ETag></Part></CompleteMultipartUpload>"));
	/* our output is itself well-formed XML (not an <Error>) */
	char *code, *msg;
	ck_assert_int_eq(s3_xml_parse_error(b, strlen(b), &code, &msg), 0);
	free(b);
	b = s3_xml_complete_body(NULL, 0);
	ck_assert(strstr(b, "<CompleteMultipartUpload"));
	free(b);
}
END_TEST

START_TEST(test_delete)
{
	const char *keys[] = {"p/app/0000/a.ltx", "p/x&y<z>\"q\""};
	char *b = s3_xml_delete_body(keys, 2);
	ck_assert(strstr(b, "<Quiet>true</Quiet><Object><Key>p/app/0000/a.ltx"
			    "</Key></Object><Object><Key>p/x&amp;y&lt;z&gt;"
			    "&quot;q&quot;</Key></Object></Delete>"));
	free(b);

	static const char ok[] = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
				 "<DeleteResult " NS "></DeleteResult>";
	char *k, *c, *m;
	ck_assert_int_eq(s3_xml_parse_delete_result(ok, strlen(ok), &k, &c, &m),
			 0);
	ck_assert_ptr_null(k);
	static const char two[] =
		"<DeleteResult " NS "><Deleted><Key>a</Key></Deleted>"
		"<Error><Key>p/x&amp;y</Key><Code>AccessDenied</Code><Message>"
		"Access Denied</Message></Error><Error><Key>b</Key><Code>"
		"InternalError</Code><Message>oops</Message></Error>"
		"</DeleteResult>";
	ck_assert_int_eq(
		s3_xml_parse_delete_result(two, strlen(two), &k, &c, &m), 2);
	ck_assert_str_eq(k, "p/x&y");
	ck_assert_str_eq(c, "AccessDenied");
	ck_assert_str_eq(m, "Access Denied");
	free(k);
	free(c);
	free(m);
	static const char e[] = "<Error><Code>MalformedXML</Code><Message>bad"
				"</Message></Error>";
	ck_assert_int_eq(s3_xml_parse_delete_result(e, strlen(e), &k, &c, &m),
			 -EIO);
	ck_assert_str_eq(c, "MalformedXML");
	free(k);
	free(c);
	free(m);
	ck_assert_int_eq(s3_xml_parse_delete_result(two, 40, &k, &c, &m),
			 -EINVAL);
	ck_assert_ptr_null(k);
	ck_assert_ptr_null(c);
}
END_TEST

Suite *s3_xml_suite(void)
{
	Suite *s = suite_create("s3-xml");
	TCase *tc = tcase_create("s3-xml");
	tcase_add_test(tc, test_list_url_encoded);
	tcase_add_test(tc, test_list_plain);
	tcase_add_test(tc, test_list_empty_and_prefixed_ns);
	tcase_add_test(tc, test_list_errors);
	tcase_add_test(tc, test_hostile);
	tcase_add_test(tc, test_error_doc);
	tcase_add_test(tc, test_complete_200_with_error);
	tcase_add_test(tc, test_upload_id);
	tcase_add_test(tc, test_complete_body);
	tcase_add_test(tc, test_delete);
	suite_add_tcase(s, tc);
	return s;
}
