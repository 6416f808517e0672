/*
 * kj-sentinel - fill memory with self-identifying "sentinel pages".
 *
 *   kj-sentinel file PATH NPAGES RUN_TOKEN SEED   write NPAGES pages (region 0) to PATH, exit
 *   kj-sentinel anon NPAGES RUN_TOKEN SEED        fill NPAGES anonymous pages (region 1),
 *                                                 mlock them if possible, print
 *                                                 "KJ-SENTINEL anon addr 0xADDR len 0xLEN mlocked"
 *                                                 (or "unlocked"), then as the last line
 *                                                 "KJ-SENTINEL anon NPAGES ready pid PID",
 *                                                 then pause() forever holding them
 *
 * RUN_TOKEN: u64, decimal or 0x-hex; SEED: u32. Page format (4096 bytes, little-endian),
 * the same as lab/sentinel_format.py (the host-side checker's reference):
 *   0   8 bytes "KJLABSNT"
 *   8   u64 run_token
 *   16  u32 page_index (0..N-1 within its region)
 *   20  u32 region (0 tmpfs file, 1 anonymous memory)
 *   24  u32 body_seed
 *   28  1017 u32 words: word j = index*0x9E3779B1 + (j+7)*0x85EBCA77 + seed
 *                               + region*0x27D4EB2F  (mod 2^32)
 * Exit 0 done, 1 a system call failed, 2 usage.
 */
#include "kjsys.h"

#define PAGE 4096u
#define NWORDS 1017u
#define REGION_TMPFS 0u
#define REGION_ANON 1u
#define BATCH 16u /* pages per write() */

static void fill_page(u8 *p, u64 token, u32 index, u32 region, u32 seed)
{
	u32 *w = (u32 *)p, j, v;
	memcpy(p, "KJLABSNT", 8); /* i386 is little-endian: plain stores are the format */
	w[2] = (u32)token;
	w[3] = (u32)(token >> 32);
	w[4] = index;
	w[5] = region;
	w[6] = seed;
	v = index * 0x9E3779B1u + 7u * 0x85EBCA77u + seed + region * 0x27D4EB2Fu;
	for (j = 0; j < NWORDS; j++, v += 0x85EBCA77u)
		w[7 + j] = v;
}

static int usage(const char *why, const char *arg)
{
	kj_to(2);
	kj_puts("kj-sentinel: ");
	kj_puts(why);
	if (arg) {
		kj_puts(": '");
		kj_puts(arg);
		kj_puts("'");
	}
	kj_puts("\nusage: kj-sentinel file PATH NPAGES RUN_TOKEN SEED\n"
		"       kj-sentinel anon NPAGES RUN_TOKEN SEED\n"
		"  RUN_TOKEN u64 and SEED u32, decimal or 0x-hex; NPAGES >= 1\n");
	return 2;
}

static int fail(const char *what, long r)
{
	kj_to(2);
	kj_puts("kj-sentinel: ");
	kj_puts(what);
	kj_puts(" failed: ");
	kj_puterr(r);
	kj_puts("\n");
	return 1;
}

static int parse_common(char **a, u32 *npages, u64 *token, u32 *seed)
{
	if (kj_parse_u32(a[0], npages) || *npages == 0 || *npages > 0xfffffu)
		return usage("NPAGES must be a number from 1 to 1048575", a[0]);
	if (kj_parse_u64(a[1], token))
		return usage("RUN_TOKEN is not a 64-bit number", a[1]);
	if (kj_parse_u32(a[2], seed))
		return usage("SEED is not a 32-bit number", a[2]);
	return 0;
}

static u8 batch[BATCH * PAGE];

static int do_file(const char *path, u32 npages, u64 token, u32 seed)
{
	long fd = sys3(SYS_open, (long)path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	u32 i = 0, k;
	if (is_err(fd))
		return fail("open", fd);
	while (i < npages) {
		u32 n = npages - i < BATCH ? npages - i : BATCH;
		size_t off = 0, len = n * PAGE;
		for (k = 0; k < n; k++)
			fill_page(batch + k * PAGE, token, i + k, REGION_TMPFS, seed);
		while (off < len) {
			long r = sys3(SYS_write, fd, (long)(batch + off), (long)(len - off));
			if (is_err(r))
				return fail("write", r);
			if (r == 0)
				return fail("write (no progress)", -5);
			off += (size_t)r;
		}
		i += n;
	}
	{
		long r = sys1(SYS_close, fd);
		if (is_err(r))
			return fail("close", r);
	}
	kj_puts("KJ-SENTINEL file ");
	kj_puts(path);
	kj_puts(" ");
	kj_putu(npages);
	kj_puts(" pages token ");
	kj_putx64(token, 1);
	kj_puts(" seed ");
	kj_putu(seed);
	kj_puts(" written\n");
	return 0;
}

static int do_anon(u32 npages, u64 token, u32 seed)
{
	long len = (long)(npages * PAGE), r, m;
	u8 *mem;
	u32 i;
	r = kj_mmap_anon(len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
	if (is_err(r))
		return fail("mmap", r);
	mem = (u8 *)r;
	for (i = 0; i < npages; i++)
		fill_page(mem + i * PAGE, token, i, REGION_ANON, seed);
	m = sys2(SYS_mlock, (long)mem, len); /* best effort: keeps the pages resident */
	if (is_err(m)) {
		kj_to(2);
		kj_puts("kj-sentinel: mlock failed (ignored): ");
		kj_puterr(m);
		kj_puts("\n");
		kj_to(1);
	}
	kj_puts("KJ-SENTINEL anon addr ");
	kj_putx64((u64)(unsigned long)mem, 8);
	kj_puts(" len ");
	kj_putx64((u64)len, 8);
	kj_puts(is_err(m) ? " unlocked\n" : " mlocked\n");
	kj_puts("KJ-SENTINEL anon ");
	kj_putu(npages);
	kj_puts(" ready pid ");
	kj_putu((u32)sys0(SYS_getpid));
	kj_puts("\n");
	for (;;)
		sys0(SYS_pause);
}

int main(int argc, char **argv)
{
	u32 npages, seed;
	u64 token;
	int rc;

	if (argc < 2)
		return usage("missing mode (file or anon)", NULL);
	if (kj_streq(argv[1], "file")) {
		if (argc != 6)
			return usage("file mode takes PATH NPAGES RUN_TOKEN SEED", NULL);
		if ((rc = parse_common(argv + 3, &npages, &token, &seed)))
			return rc;
		return do_file(argv[2], npages, token, seed);
	}
	if (kj_streq(argv[1], "anon")) {
		if (argc != 5)
			return usage("anon mode takes NPAGES RUN_TOKEN SEED", NULL);
		if ((rc = parse_common(argv + 2, &npages, &token, &seed)))
			return rc;
		return do_anon(npages, token, seed);
	}
	return usage("unknown mode", argv[1]);
}
