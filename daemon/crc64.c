/* crc64.c: CRC-64/GO-ISO, the checksum of every LTX file and page.
 *
 * This is Go's hash/crc64 with the crc64.ISO table: the ISO 3309 polynomial
 * x^64 + x^4 + x^3 + x + 1, processed reflected (0xD800000000000000), with
 * the register initialised to all ones and inverted on output. Like Go's
 * crc64.Update, the running value handed in and out is the *finished* CRC,
 * so calls chain: crc64_iso(crc64_iso(0, a), b) == crc64_iso(0, a || b).
 *
 * Slicing-by-8: eight 256-entry tables, built once (pthread_once), let the
 * inner loop fold eight input bytes per step. Table k maps a byte to the
 * CRC of that byte followed by k zero bytes.
 */
#include "config.h"

#include <pthread.h>

#include "walrust.h"

#define CRC64_ISO_POLY 0xD800000000000000ULL

static uint64_t crc64_table[8][256];
static pthread_once_t crc64_once = PTHREAD_ONCE_INIT;

static void crc64_init(void)
{
	for (unsigned i = 0; i < 256; i++) {
		uint64_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ CRC64_ISO_POLY : c >> 1;
		crc64_table[0][i] = c;
	}
	for (unsigned i = 0; i < 256; i++) {
		uint64_t c = crc64_table[0][i];
		for (int t = 1; t < 8; t++) {
			c = crc64_table[0][c & 0xff] ^ (c >> 8);
			crc64_table[t][i] = c;
		}
	}
}

uint64_t crc64_iso(uint64_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	pthread_once(&crc64_once, crc64_init);
	crc = ~crc;
	while (len >= 8) {
		crc ^= (uint64_t)p[0] | (uint64_t)p[1] << 8 |
		       (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24 |
		       (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 |
		       (uint64_t)p[6] << 48 | (uint64_t)p[7] << 56;
		crc = crc64_table[7][crc & 0xff] ^
		      crc64_table[6][(crc >> 8) & 0xff] ^
		      crc64_table[5][(crc >> 16) & 0xff] ^
		      crc64_table[4][(crc >> 24) & 0xff] ^
		      crc64_table[3][(crc >> 32) & 0xff] ^
		      crc64_table[2][(crc >> 40) & 0xff] ^
		      crc64_table[1][(crc >> 48) & 0xff] ^
		      crc64_table[0][crc >> 56];
		p += 8;
		len -= 8;
	}
	while (len--)
		crc = crc64_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}
