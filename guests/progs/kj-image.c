/*
 * kj-image drop-kernel-text FILE - make a saved x86_64 image loadable by `kexec -l`.
 *
 * On x86_64, kexec-tools describes kernel A's memory to kernel B (elfcorehdr, read back as
 * /proc/vmcore) with one PT_LOAD for the kernel's text mapping (virtual 0xffffffff8...,
 * __START_KERNEL_map) besides the PT_LOADs of the RAM ranges, which hold the same
 * physical pages again. A copy of /proc/vmcore therefore has two segments for those
 * pages, and C's `kexec -l` of it fails: "Overlapping memory segments" (facts, x86_64).
 * This program turns each PT_LOAD whose virtual address is at or above
 * __START_KERNEL_map into PT_NULL, in place, in FILE's program header table; the data
 * stays where it is and the RAM PT_LOADs still carry every page.
 *
 * ELF32 images (i386: the kernel lives in the direct map) have no such segment; the
 * program says so and changes nothing. Output, one line per segment changed and a summary:
 *   kj-image: PT_LOAD[0] vaddr 0x... paddr 0x... size 0x... (kernel text) -> PT_NULL
 *   kj-image: FILE: N PT_LOADs, M turned into PT_NULL
 * Exit 0 done, 1 a system call failed or FILE is not an ELF core, 2 usage.
 */
#include "kjsys.h"

#define PT_NULL 0u
#define PT_LOAD 1u
#define START_KERNEL_MAP 0xffffffff80000000ULL
#define MAX_PHDRS 512u

static u8 ehdr[64];
static u8 phdrs[MAX_PHDRS * 56];

static int usage(const char *why)
{
	kj_to(2);
	kj_puts("kj-image: ");
	kj_puts(why);
	kj_puts("\nusage: kj-image drop-kernel-text FILE\n");
	return 2;
}

static int fail(const char *what, const char *path, long r)
{
	kj_to(2);
	kj_puts("kj-image: ");
	kj_puts(what);
	kj_puts(" ");
	kj_puts(path);
	if (r) {
		kj_puts(": ");
		kj_puterr(r);
	}
	kj_puts("\n");
	return 1;
}

static u16 get16(const u8 *p) { return (u16)(p[0] | p[1] << 8); }
static u32 get32(const u8 *p) { return (u32)p[0] | (u32)p[1] << 8 | (u32)p[2] << 16 | (u32)p[3] << 24; }
static u64 get64(const u8 *p) { return (u64)get32(p) | (u64)get32(p + 4) << 32; }

/* exactly n bytes at offset off, read (write = 0) or written (write = 1); off is the ELF
 * header's or the program header table's, at the start of the file, so i386's 32-bit
 * lseek reaches it in an image of any size */
static long xfer(long fd, u64 off, u8 *buf, u32 n, int write)
{
	u32 done = 0;
	long r = sys3(SYS_lseek, fd, (long)off, 0);
	if (is_err(r))
		return r;
	while (done < n) {
		r = sys3(write ? SYS_write : SYS_read, fd, (long)(buf + done), (long)(n - done));
		if (is_err(r))
			return r;
		if (r == 0)
			return -5; /* EIO: the file is shorter than its headers say */
		done += (u32)r;
	}
	return 0;
}

static int drop_kernel_text(const char *path)
{
	long fd = sys2(SYS_open, (long)path, O_RDWR | O_LARGEFILE), r;
	u64 phoff;
	u32 phentsize, phnum, i, loads = 0, dropped = 0;
	if (is_err(fd))
		return fail("cannot open", path, fd);
	if ((r = xfer(fd, 0, ehdr, sizeof ehdr, 0)))
		return fail("cannot read the ELF header of", path, r);
	if (ehdr[0] != 0x7f || ehdr[1] != 'E' || ehdr[2] != 'L' || ehdr[3] != 'F' || ehdr[5] != 1)
		return fail("not a little-endian ELF file:", path, 0);
	if (ehdr[4] != 2) {
		kj_puts("kj-image: ");
		kj_puts(path);
		kj_puts(": ELF32, no kernel-text mapping: nothing to change\n");
		sys1(SYS_close, fd);
		return 0;
	}
	phoff = get64(ehdr + 32);
	phentsize = get16(ehdr + 54);
	phnum = get16(ehdr + 56);
	if (phentsize != 56 || phnum > MAX_PHDRS)
		return fail("unexpected program header table in", path, 0);
	if ((r = xfer(fd, phoff, phdrs, phnum * 56, 0)))
		return fail("cannot read the program headers of", path, r);
	for (i = 0; i < phnum; i++) {
		u8 *ph = phdrs + i * 56;
		u64 vaddr = get64(ph + 16);
		if (get32(ph) != PT_LOAD)
			continue;
		loads++;
		if (vaddr < START_KERNEL_MAP)
			continue;
		ph[0] = ph[1] = ph[2] = ph[3] = 0; /* p_type = PT_NULL */
		dropped++;
		kj_puts("kj-image: PT_LOAD[");
		kj_putu(i);
		kj_puts("] vaddr ");
		kj_putx64(vaddr, 16);
		kj_puts(" paddr ");
		kj_putx64(get64(ph + 24), 8);
		kj_puts(" size ");
		kj_putx64(get64(ph + 40), 8);
		kj_puts(" (kernel text) -> PT_NULL\n");
	}
	if (dropped && (r = xfer(fd, phoff, phdrs, phnum * 56, 1)))
		return fail("cannot write the program headers of", path, r);
	r = sys1(SYS_close, fd);
	if (is_err(r))
		return fail("cannot close", path, r);
	kj_puts("kj-image: ");
	kj_puts(path);
	kj_puts(": ");
	kj_putu(loads);
	kj_puts(" PT_LOADs, ");
	kj_putu(dropped);
	kj_puts(" turned into PT_NULL\n");
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 3 || !kj_streq(argv[1], "drop-kernel-text"))
		return usage(argc < 2 ? "missing command" : "expected: drop-kernel-text FILE");
	return drop_kernel_text(argv[2]);
}
