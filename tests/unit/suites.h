/* The registry of unit-test suites: one per pure core, each in
 * tests/unit/test-<file>.c. main.c runs them all with TAP output. */
#ifndef WALRUST_SUITES_H
#define WALRUST_SUITES_H
#include <check.h>

Suite *crc64_suite(void);
Suite *ltx_suite(void);
Suite *wal_suite(void);
Suite *sigv4_suite(void);
Suite *s3_xml_suite(void);
Suite *wrp_suite(void);
Suite *util_suite(void);
Suite *replica_suite(void);
Suite *config_suite(void);
Suite *compact_suite(void);
Suite *retention_suite(void);
Suite *lease_suite(void);

#endif
