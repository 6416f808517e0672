/*
 * kj-proof - A's proof file, and the image checksum C verifies, at TCG speed.
 *
 *   kj-proof fill PATH KIB SEED    write KIB KiB of the seeded stream to PATH
 *   kj-proof check PATH KIB SEED   compare PATH with the stream; one line
 *                                  "CHECK proof-file ok|bad DETAIL" (kj-proof-check's format)
 *   kj-proof crc32 PATH            "crc32 0xXXXXXXXX bytes N": zlib's CRC-32 of the file
 *
 * The stream is xorshift32 (Marsaglia) from SEED (u32, not 0), one little-endian word at a
 * time. It replaces /dev/urandom + sha256sum, and crc32 replaces busybox md5sum: under TCG
 * both shell tools cost seconds per cycle (measured by benchmarks/cycle.py), this a fraction.
 * The check is exact: it names the first differing offset and counts the differing words.
 * CRC-32 is for accidental change, not for an adversary: the lab's host then proves every
 * page of the image at the return (lab/memory/roundtrip.py), so nothing rests on it alone.
 * Exit 0 done (check: 0 also when bad - the line says it), 1 a system call failed, 2 usage.
 */
#include "kjsys.h"

#define CHUNK (256u * 1024u)

static u8 buf[CHUNK];
static u32 crc_table[8][256];

static int usage(const char *why, const char *arg)
{
	kj_to(2);
	kj_puts("kj-proof: ");
	kj_puts(why);
	if (arg) {
		kj_puts(": '");
		kj_puts(arg);
		kj_puts("'");
	}
	kj_puts("\nusage: kj-proof fill|check PATH KIB SEED\n"
		"       kj-proof crc32 PATH\n"
		"  KIB >= 1, SEED u32 != 0, decimal or 0x-hex\n");
	return 2;
}

static int fail(const char *what, const char *path, long r)
{
	kj_to(2);
	kj_puts("kj-proof: ");
	kj_puts(what);
	kj_puts(" ");
	kj_puts(path);
	kj_puts(": ");
	kj_puterr(r);
	kj_puts("\n");
	return 1;
}

/* the next CHUNK-or-less of the stream into buf; words is a multiple of 256 (1 KiB) */
static u32 stream(u32 x, u32 words)
{
	u32 *w = (u32 *)buf, i;
	for (i = 0; i < words; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		w[i] = x;
	}
	return x;
}

static long read_full(long fd, u8 *p, u32 n)
{
	u32 got = 0;
	while (got < n) {
		long r = sys3(SYS_read, fd, (long)(p + got), (long)(n - got));
		if (is_err(r))
			return r;
		if (r == 0)
			break;
		got += (u32)r;
	}
	return (long)got;
}

static int fill(const char *path, u32 kib, u32 seed)
{
	long fd = sys3(SYS_open, (long)path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	u32 left = kib, x = seed;
	if (is_err(fd))
		return fail("cannot create", path, fd);
	while (left) {
		u32 k = left < CHUNK / 1024 ? left : CHUNK / 1024, off = 0;
		x = stream(x, k * 256);
		while (off < k * 1024) {
			long r = sys3(SYS_write, fd, (long)(buf + off), (long)(k * 1024 - off));
			if (is_err(r))
				return fail("cannot write", path, r);
			off += (u32)r;
		}
		left -= k;
	}
	sys1(SYS_close, fd);
	kj_puts("proof ");
	kj_puts(path);
	kj_puts(" ");
	kj_putu(kib);
	kj_puts(" KiB from seed ");
	kj_putx(seed);
	kj_puts("\n");
	return 0;
}

static int check(const char *path, u32 kib, u32 seed)
{
	static u8 file[CHUNK];
	long fd = sys2(SYS_open, (long)path, O_RDONLY);
	u32 left = kib, x = seed, done = 0, bad_words = 0, first_bad = 0, short_at = 0, i;
	int any_bad = 0;
	if (is_err(fd)) {
		kj_puts("CHECK proof-file bad cannot open ");
		kj_puts(path);
		kj_puts(": ");
		kj_puterr(fd);
		kj_puts("\n");
		return 0;
	}
	while (left) {
		u32 k = left < CHUNK / 1024 ? left : CHUNK / 1024;
		long r = read_full(fd, file, k * 1024);
		const u32 *want = (const u32 *)buf, *got = (const u32 *)file;
		if (is_err(r))
			return fail("cannot read", path, r);
		x = stream(x, k * 256);
		for (i = 0; i < (u32)r / 4; i++) {
			if (want[i] != got[i]) {
				if (!any_bad)
					first_bad = done + i * 4;
				any_bad = 1;
				bad_words++;
			}
		}
		if ((u32)r < k * 1024) {
			short_at = done + (u32)r;
			any_bad = 1;
			break;
		}
		done += k * 1024;
		left -= k;
	}
	if (!short_at && read_full(fd, file, 1) > 0) {
		short_at = kib * 1024; /* longer than written */
		any_bad = 1;
	}
	sys1(SYS_close, fd);
	kj_puts(any_bad ? "CHECK proof-file bad " : "CHECK proof-file ok ");
	kj_putu(kib);
	kj_puts(" KiB from seed ");
	kj_putx(seed);
	if (bad_words) {
		kj_puts(", ");
		kj_putu(bad_words);
		kj_puts(" words differ, the first at offset ");
		kj_putx(first_bad);
	}
	if (short_at) {
		kj_puts(", the length differs at offset ");
		kj_putx(short_at);
	}
	kj_puts("\n");
	return 0;
}

/* zlib's CRC-32 (reflected 0xEDB88320), slicing by 8: table lookups are what TCG does well */
static void crc_init(void)
{
	u32 i, j, c;
	for (i = 0; i < 256; i++) {
		c = i;
		for (j = 0; j < 8; j++)
			c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
		crc_table[0][i] = c;
	}
	for (i = 0; i < 256; i++)
		for (j = 1; j < 8; j++)
			crc_table[j][i] = (crc_table[j - 1][i] >> 8) ^ crc_table[0][crc_table[j - 1][i] & 0xff];
}

static u32 crc_update(u32 crc, const u8 *p, u32 n)
{
	crc = ~crc;
	while (n >= 8) {
		u32 a = ((const u32 *)p)[0] ^ crc, b = ((const u32 *)p)[1];
		crc = crc_table[7][a & 0xff] ^ crc_table[6][(a >> 8) & 0xff] ^
		      crc_table[5][(a >> 16) & 0xff] ^ crc_table[4][a >> 24] ^
		      crc_table[3][b & 0xff] ^ crc_table[2][(b >> 8) & 0xff] ^
		      crc_table[1][(b >> 16) & 0xff] ^ crc_table[0][b >> 24];
		p += 8;
		n -= 8;
	}
	while (n--)
		crc = crc_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

static int crc32_file(const char *path)
{
	long fd = sys2(SYS_open, (long)path, O_RDONLY | O_LARGEFILE), r;
	u32 crc = 0;
	u64 bytes = 0;
	if (is_err(fd))
		return fail("cannot open", path, fd);
	crc_init();
	while ((r = read_full(fd, buf, CHUNK)) > 0) {
		crc = crc_update(crc, buf, (u32)r);
		bytes += (u64)r;
	}
	if (is_err(r))
		return fail("cannot read", path, r);
	sys1(SYS_close, fd);
	kj_puts("crc32 ");
	kj_putx(crc);
	kj_puts(" bytes ");
	kj_putx64(bytes, 1);
	kj_puts("\n");
	return 0;
}

int main(int argc, char **argv)
{
	u32 kib, seed;
	if (argc == 3 && kj_streq(argv[1], "crc32"))
		return crc32_file(argv[2]);
	if (argc != 5)
		return usage("wrong number of arguments", NULL);
	if (kj_parse_u32(argv[3], &kib) || kib == 0)
		return usage("bad KIB", argv[3]);
	if (kj_parse_u32(argv[4], &seed) || seed == 0)
		return usage("bad SEED", argv[4]);
	if (kj_streq(argv[1], "fill"))
		return fill(argv[2], kib, seed);
	if (kj_streq(argv[1], "check"))
		return check(argv[2], kib, seed);
	return usage("unknown command", argv[1]);
}
