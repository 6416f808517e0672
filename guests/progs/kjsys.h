/*
 * kjsys.h - the whole "libc" of the kjlab guest programs (i386 or x86_64 Linux, no libc).
 *
 * Built by lab/artifacts/progs.py with the host gcc, once per guest arch:
 *   gcc -m32 -march=i686 -static -nostdlib -ffreestanding -fno-pic -no-pie ...   (i386)
 *   gcc -m64 -march=x86-64 -static -nostdlib -ffreestanding -fno-pic -no-pie ... (x86_64)
 * Each program is one translation unit that includes this header once and defines
 * `int main(int argc, char **argv)`; _start below calls it and exits with its result.
 * System calls go through `int $0x80` on i386 (arch/x86/entry/syscalls/syscall_32.tbl)
 * and `syscall` on x86_64 (syscall_64.tbl).
 */
#ifndef KJSYS_H
#define KJSYS_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef int s32;
typedef __SIZE_TYPE__ size_t; /* 32 bits on i386, 64 on x86_64 */

#define NULL ((void *)0)

#if defined(__x86_64__)
/* x86_64 system call numbers */
#define SYS_read 0
#define SYS_write 1
#define SYS_open 2
#define SYS_close 3
#define SYS_lseek 8
#define SYS_mmap 9
#define SYS_pause 34
#define SYS_getpid 39
#define SYS_exit 60
#define SYS_mlock 149
#define SYS_exit_group 231
#define SYS_kexec_load 246
#elif defined(__i386__)
/* i386 system call numbers */
#define SYS_exit 1
#define SYS_read 3
#define SYS_write 4
#define SYS_open 5
#define SYS_close 6
#define SYS_lseek 19
#define SYS_getpid 20
#define SYS_pause 29
#define SYS_mlock 150
#define SYS_mmap2 192
#define SYS_exit_group 252
#define SYS_kexec_load 283
#else
#error "kjsys.h: i386 or x86_64 only"
#endif

#define O_RDONLY 0
#define O_WRONLY 1
#define O_RDWR 2
#define O_CREAT 0100
#define O_TRUNC 01000
/* Files over 2 GiB: without it an i386 process's open() of one fails with EOVERFLOW (the
 * image of an A that uses more than 2 GiB; an x86_64 kernel sets it itself for 64-bit
 * processes, so it changes nothing there). */
#define O_LARGEFILE 0100000
#define PROT_READ 1
#define PROT_WRITE 2
#define MAP_PRIVATE 0x02
#define MAP_ANONYMOUS 0x20

/* -- raw system calls: return value, or -errno (-4095..-1) ---------------------------- */

#if defined(__x86_64__)
/* arguments in rdi, rsi, rdx, r10, r8, r9; the kernel clobbers rcx and r11 */
static inline long sys0(long n)
{
	long r;
	__asm__ volatile("syscall" : "=a"(r) : "0"(n) : "rcx", "r11", "memory");
	return r;
}

static inline long sys1(long n, long a)
{
	long r;
	__asm__ volatile("syscall" : "=a"(r) : "0"(n), "D"(a) : "rcx", "r11", "memory");
	return r;
}

static inline long sys2(long n, long a, long b)
{
	long r;
	__asm__ volatile("syscall" : "=a"(r) : "0"(n), "D"(a), "S"(b) : "rcx", "r11", "memory");
	return r;
}

static inline long sys3(long n, long a, long b, long c)
{
	long r;
	__asm__ volatile("syscall" : "=a"(r) : "0"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
	return r;
}

static inline long sys4(long n, long a, long b, long c, long d)
{
	long r;
	register long r10 __asm__("r10") = d;
	__asm__ volatile("syscall" : "=a"(r) : "0"(n), "D"(a), "S"(b), "d"(c), "r"(r10) : "rcx", "r11", "memory");
	return r;
}

static inline long sys6(long n, long a, long b, long c, long d, long e, long f)
{
	long r;
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = f;
	__asm__ volatile("syscall"
			 : "=a"(r)
			 : "0"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return r;
}

/* anonymous memory: x86_64 has mmap (offset in bytes), i386 mmap2 (in pages); at offset 0
 * they are the same call */
#define kj_mmap_anon(len, prot, flags) sys6(SYS_mmap, 0, (len), (prot), (flags), -1, 0)
#else
static inline long sys0(long n)
{
	long r;
	__asm__ volatile("int $0x80" : "=a"(r) : "0"(n) : "memory");
	return r;
}

static inline long sys1(long n, long a)
{
	long r;
	__asm__ volatile("int $0x80" : "=a"(r) : "0"(n), "b"(a) : "memory");
	return r;
}

static inline long sys2(long n, long a, long b)
{
	long r;
	__asm__ volatile("int $0x80" : "=a"(r) : "0"(n), "b"(a), "c"(b) : "memory");
	return r;
}

static inline long sys3(long n, long a, long b, long c)
{
	long r;
	__asm__ volatile("int $0x80" : "=a"(r) : "0"(n), "b"(a), "c"(b), "d"(c) : "memory");
	return r;
}

static inline long sys4(long n, long a, long b, long c, long d)
{
	long r;
	__asm__ volatile("int $0x80" : "=a"(r) : "0"(n), "b"(a), "c"(b), "d"(c), "S"(d) : "memory");
	return r;
}

/* six arguments: the sixth goes in %ebp, which gcc may use as frame pointer; swap it in by
 * hand around the int $0x80 (args[5] read through %eax before %eax gets the number) */
static inline long sys6(long n, long a, long b, long c, long d, long e, long f)
{
	long r;
	long args[2] = {n, f};
	__asm__ volatile(
		"pushl %%ebp\n\t"
		"movl 4(%%eax), %%ebp\n\t"
		"movl 0(%%eax), %%eax\n\t"
		"int $0x80\n\t"
		"popl %%ebp"
		: "=a"(r)
		: "a"(args), "b"(a), "c"(b), "d"(c), "S"(d), "D"(e)
		: "memory");
	return r;
}

#define kj_mmap_anon(len, prot, flags) sys6(SYS_mmap2, 0, (len), (prot), (flags), -1, 0)
#endif

static inline int is_err(long r) { return (unsigned long)r > (unsigned long)-4096; }

__attribute__((noreturn)) static void kj_exit(int code)
{
	sys1(SYS_exit_group, code);
	for (;;)
		sys1(SYS_exit, code);
}

/* gcc may emit calls to these even with -ffreestanding */
void *memset(void *d, int c, size_t n)
{
	u8 *p = d;
	while (n--)
		*p++ = (u8)c;
	return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
	u8 *p = d;
	const u8 *q = s;
	while (n--)
		*p++ = *q++;
	return d;
}

static inline size_t kj_strlen(const char *s)
{
	size_t n = 0;
	while (s[n])
		n++;
	return n;
}

static inline int kj_streq(const char *a, const char *b)
{
	while (*a && *a == *b)
		a++, b++;
	return *a == *b;
}

/* needle in haystack[0..len) */
static inline int kj_memmem(const char *hay, size_t len, const char *needle)
{
	size_t n = kj_strlen(needle), i, j;
	for (i = 0; i + n <= len; i++) {
		for (j = 0; j < n && hay[i + j] == needle[j]; j++)
			;
		if (j == n)
			return 1;
	}
	return 0;
}

/* -- output: a small line buffer, flushed on newline or when full ---------------------- */

static char kj_obuf[256];
static size_t kj_olen;
static int kj_ofd = 1;

static inline void kj_flush(void)
{
	size_t off = 0;
	while (off < kj_olen) {
		long r = sys3(SYS_write, kj_ofd, (long)(kj_obuf + off), (long)(kj_olen - off));
		if (r <= 0)
			break;
		off += (size_t)r;
	}
	kj_olen = 0;
}

static inline void kj_putc(char c)
{
	if (kj_olen == sizeof kj_obuf)
		kj_flush();
	kj_obuf[kj_olen++] = c;
	if (c == '\n')
		kj_flush();
}

static inline void kj_puts(const char *s)
{
	while (*s)
		kj_putc(*s++);
}

/* switch output to fd (1 or 2), flushing what the other one had */
static inline void kj_to(int fd)
{
	kj_flush();
	kj_ofd = fd;
}

static inline void kj_putu(u32 v)
{
	char b[12];
	int i = 0;
	do {
		b[i++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (i)
		kj_putc(b[--i]);
}

static inline void kj_puti(s32 v)
{
	if (v < 0) {
		kj_putc('-');
		kj_putu((u32)-(v + 1) + 1);
	} else {
		kj_putu((u32)v);
	}
}

/* 0x-prefixed hex, at least `digits` digits */
static void kj_putx64(u64 v, int digits)
{
	char b[16];
	int i = 0;
	kj_puts("0x");
	do {
		b[i++] = "0123456789abcdef"[v & 15];
		v >>= 4;
	} while (v || i < digits);
	while (i)
		kj_putc(b[--i]);
}

static inline void kj_putx(u32 v) { kj_putx64(v, 8); }

/* -- errno names ----------------------------------------------------------------------- */

static inline const char *kj_errname(long e)
{
	switch (e) {
	case 1: return "EPERM";
	case 2: return "ENOENT";
	case 4: return "EINTR";
	case 5: return "EIO";
	case 7: return "E2BIG";
	case 8: return "ENOEXEC";
	case 9: return "EBADF";
	case 11: return "EAGAIN";
	case 12: return "ENOMEM";
	case 13: return "EACCES";
	case 14: return "EFAULT";
	case 16: return "EBUSY";
	case 17: return "EEXIST";
	case 20: return "ENOTDIR";
	case 21: return "EISDIR";
	case 22: return "EINVAL";
	case 24: return "EMFILE";
	case 27: return "EFBIG";
	case 28: return "ENOSPC";
	case 30: return "EROFS";
	case 38: return "ENOSYS";
	case 75: return "EOVERFLOW";
	case 95: return "EOPNOTSUPP";
	case 99: return "EADDRNOTAVAIL";
	default: return "E?";
	}
}

/* "NAME (errno N)" for a raw syscall result r < 0 */
static inline void kj_puterr(long r)
{
	kj_puts(kj_errname(-r));
	kj_puts(" (errno ");
	kj_puti((s32)-r);
	kj_puts(")");
}

/* -- parsing ----------------------------------------------------------------------------- */

/* decimal or 0x-hex u64; returns 0 on success, -1 if empty, malformed or out of range */
__attribute__((unused)) static int kj_parse_u64(const char *s, u64 *out)
{
	u64 v = 0;
	int any = 0;
	if (!s)
		return -1;
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		for (s += 2; *s; s++, any = 1) {
			u32 d;
			if (*s >= '0' && *s <= '9')
				d = (u32)(*s - '0');
			else if (*s >= 'a' && *s <= 'f')
				d = (u32)(*s - 'a' + 10);
			else if (*s >= 'A' && *s <= 'F')
				d = (u32)(*s - 'A' + 10);
			else
				return -1;
			if (v >> 60)
				return -1;
			v = (v << 4) | d;
		}
	} else {
		for (; *s; s++, any = 1) {
			u64 t;
			if (*s < '0' || *s > '9')
				return -1;
			if (v > 0x1999999999999999ULL)
				return -1;
			t = v * 10 + (u32)(*s - '0');
			if (t < v * 10)
				return -1;
			v = t;
		}
	}
	if (!any)
		return -1;
	*out = v;
	return 0;
}

__attribute__((unused)) static int kj_parse_u32(const char *s, u32 *out)
{
	u64 v;
	if (kj_parse_u64(s, &v) || v >> 32)
		return -1;
	*out = (u32)v;
	return 0;
}

/* -- entry ------------------------------------------------------------------------------- */

int main(int argc, char **argv);

__attribute__((used, noreturn)) void kj_start_c(unsigned long *sp);
__attribute__((used, noreturn)) void kj_start_c(unsigned long *sp)
{
	int argc = (int)sp[0];
	char **argv = (char **)(sp + 1);
	int rc = main(argc, argv);
	kj_flush();
	kj_exit(rc);
}

#if defined(__x86_64__)
/* the kernel enters with argc at (%rsp), argv[] after it; rsp is 16-byte aligned there,
 * and the call pushes 8: gcc's ABI wants rsp+8 aligned at a function's entry */
__asm__(
	".text\n"
	".globl _start\n"
	".type _start, @function\n"
	"_start:\n"
	"	xorl %ebp, %ebp\n"
	"	movq %rsp, %rdi\n"
	"	andq $-16, %rsp\n"
	"	call kj_start_c\n"
	"	hlt\n");
#else
/* the kernel enters with argc at (%esp), argv[] after it; align the stack for gcc */
__asm__(
	".text\n"
	".globl _start\n"
	".type _start, @function\n"
	"_start:\n"
	"	xorl %ebp, %ebp\n"
	"	movl %esp, %eax\n"
	"	andl $-16, %esp\n"
	"	subl $12, %esp\n"
	"	pushl %eax\n"
	"	call kj_start_c\n"
	"	hlt\n");

#endif

#endif
