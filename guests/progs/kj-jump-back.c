/*
 * kj-jump-back ENTRY [DEST] - load a "jump back" image in kernel B, like kexec-tools'
 * `kexec --load-jump-back-helper --entry=ENTRY`, which fails on current kernels.
 *
 * kexec-tools' helper passes one zero-length segment; since the kernel's range checks
 * became inclusive of the end address, a zero-length segment covers everything and
 * kexec_load fails with ENOMEM ("Could not allocate control_code_buffer"), see
 * kexec-jump-facts.md, kexec-tools quirk 7. This program calls kexec_load itself with
 * entry=ENTRY and one 4 KiB segment of zeroes at DEST (default 0x1000000), flags
 * KEXEC_PRESERVE_CONTEXT | KEXEC_ARCH_386 (KEXEC_ARCH_X86_64 in the x86_64 build).
 * A following `kexec -e` in B then calls ENTRY (kernel A's jump-back entry) straight away.
 *
 * Refuses to run (exit 2) unless /proc/cmdline has "kjlab.role=": it must never load
 * anything on a developer's machine. Exit 0 loaded, 1 kexec_load failed, 2 usage/refused.
 */
#include "kjsys.h"

#define KEXEC_PRESERVE_CONTEXT 0x00000002u
#if defined(__x86_64__)
#define KEXEC_ARCH (62u << 16) /* KEXEC_ARCH_X86_64 */
#define KEXEC_ARCH_NAME "ARCH_X86_64"
#else
#define KEXEC_ARCH (3u << 16) /* KEXEC_ARCH_386 */
#define KEXEC_ARCH_NAME "ARCH_386"
#endif
#define PAGE 4096u
#define DEFAULT_DEST 0x1000000u

struct kexec_segment { /* include/uapi/linux/kexec.h (pointers and size_t of the arch) */
	const void *buf;
	size_t bufsz;
	const void *mem;
	size_t memsz;
};

static u8 zero_page[PAGE] __attribute__((aligned(4096)));

static int usage(const char *why, const char *arg)
{
	kj_to(2);
	kj_puts("kj-jump-back: ");
	kj_puts(why);
	if (arg) {
		kj_puts(": '");
		kj_puts(arg);
		kj_puts("'");
	}
	kj_puts("\nusage: kj-jump-back ENTRY [DEST]\n"
		"  ENTRY  physical address of kernel A's jump-back entry (hex 0x... or decimal)\n"
		"  DEST   page-aligned physical address of the 4 KiB segment (default 0x1000000)\n");
	return 2;
}

/* 1 when /proc/cmdline names a kjlab role, i.e. we run inside a lab guest */
static int in_lab_guest(void)
{
	static char cmdline[4096];
	long fd = sys2(SYS_open, (long)"/proc/cmdline", O_RDONLY), n;
	size_t len = 0;
	if (is_err(fd))
		return 0;
	while (len < sizeof cmdline &&
	       (n = sys3(SYS_read, fd, (long)(cmdline + len), (long)(sizeof cmdline - len))) > 0)
		len += (size_t)n;
	sys1(SYS_close, fd);
	return kj_memmem(cmdline, len, "kjlab.role=");
}

int main(int argc, char **argv)
{
	u32 entry, dest = DEFAULT_DEST, flags = KEXEC_PRESERVE_CONTEXT | KEXEC_ARCH;
	struct kexec_segment seg;
	long r;

	if (argc < 2 || argc > 3)
		return usage(argc < 2 ? "missing ENTRY" : "too many arguments", NULL);
	if (kj_streq(argv[1], "-h") || kj_streq(argv[1], "--help"))
		return usage("help", NULL);
	if (kj_parse_u32(argv[1], &entry))
		return usage("ENTRY is not a 32-bit number", argv[1]);
	if (argc == 3 && kj_parse_u32(argv[2], &dest))
		return usage("DEST is not a 32-bit number", argv[2]);
	if (dest % PAGE || dest > 0xffffffffu - PAGE + 1)
		return usage("DEST must be page aligned (and the page below 4 GiB)", argv[2]);
	if (!in_lab_guest()) {
		kj_to(2);
		kj_puts("kj-jump-back: refusing to run: /proc/cmdline has no kjlab.role= "
			"(this program calls kexec_load; it is meant for kjlab guests only)\n");
		return 2;
	}

	seg.buf = zero_page;
	seg.bufsz = PAGE;
	seg.mem = (const void *)(unsigned long)dest;
	seg.memsz = PAGE;
	kj_puts("kj-jump-back: kexec_load(entry=");
	kj_putx(entry);
	kj_puts(", 1 segment: 4096 zero bytes -> mem ");
	kj_putx(dest);
	kj_puts("..");
	kj_putx(dest + PAGE - 1);
	kj_puts(", flags=");
	kj_putx(flags);
	kj_puts(" PRESERVE_CONTEXT|" KEXEC_ARCH_NAME ")\n");
	r = sys4(SYS_kexec_load, (long)entry, 1, (long)&seg, (long)flags);
	if (is_err(r)) {
		kj_to(2);
		kj_puts("kj-jump-back: kexec_load failed: ");
		kj_puterr(r);
		kj_puts("\n");
		return 1;
	}
	kj_puts("kj-jump-back: loaded; `kexec -e` now jumps back to ");
	kj_putx(entry);
	kj_puts("\n");
	return 0;
}
