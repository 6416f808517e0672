/*
 * kj-physcall.S - a program called in physical mode (paging off) by kexec jump.
 *
 * The 2008 "kexec jump" commit (seed 003): "can be used as a general method to call
 * program in physical mode". In kernel A:
 *     kexec --load-preserve-context --args-none /boot/kj-physcall.elf
 *     kexec -e        # calls _start below, A goes on when it returns
 *
 * How Linux 6.1 calls it (arch/x86/kernel/relocate_kernel_32.S, identity_mapped, with
 * preserve_context set): paging off (CR0.PG=0), CR4=0 on PAE CPUs, interrupts off, GDT/IDT
 * invalidated but the segment registers still hold A's flat 4 GiB segments; the loaded
 * pages already swapped into place; %esp at the top of the kernel's "swap page";
 * then `call *%edx` with %edx = the image's entry (e_entry). After the call returns it takes
 * the word at 0(%esp) as the peer's re-entry point (it becomes image->start, the address
 * the next `kexec -e` calls) and rebuilds its own registers and stack from the control page:
 * a callee must preserve nothing but must come back through that return address.
 *
 * What it does: writes two lines to COM1 (port 0x3f8, polling LSR 0x3fd bit 5, THRE, before
 * each byte; a bounded wait, so no UART costs a short delay, not a hang):
 *     KJLAB-PHYSCALL hello from physical mode
 *     KJLAB-PHYSCALL call 0x00000001 cr0 0x00000011 esp 0x.... ret 0x.... eip 0x01000000
 * ("call" counts the calls: this image's pages keep their contents between two jumps),
 * then returns with `ret`, preserving %ebx %esi %edi %ebp like a C function, and with its
 * own entry in the stack slot of the return address, so that relocate_kernel reads it as the
 * re-entry point and a second `kexec -e` calls _start again (a plain C return would leave
 * esp one word higher, and relocate_kernel would read the word just above the kernel's swap
 * page, some unrelated memory of A, as the next entry). Build with -DKJ_PLAIN_RET for the
 * plain C return.
 *
 * Position independent (addresses from a call/pop), linked by kj-physcall.ld at physical
 * 0x1000000 (-Wl,--defsym=KJ_PHYS_BASE=ADDR, before -Wl,-T, for another page-aligned address).
 */

#define COM1 0x3f8
#define COM1_LSR (COM1 + 5)
#define LSR_THRE 0x20
#define THRE_SPINS 0x100000

	.code32
	.section .text.entry, "ax"
	.globl _start
	.type _start, @function
_start:
	pushl	%ebp
	pushl	%ebx
	pushl	%esi
	pushl	%edi
	leal	16(%esp), %ebp			/* %ebp -> our return address */
	call	1f
1:	popl	%ebx
	subl	$(1b - _start), %ebx		/* %ebx = where _start really is */

	incl	(calls - _start)(%ebx)

	leal	(msg_hello - _start)(%ebx), %esi
	call	puts
	leal	(msg_call - _start)(%ebx), %esi
	call	puts
	movl	(calls - _start)(%ebx), %eax
	call	puthex
	leal	(msg_cr0 - _start)(%ebx), %esi
	call	puts
	movl	%cr0, %eax
	call	puthex
	leal	(msg_esp - _start)(%ebx), %esi
	call	puts
	movl	%ebp, %eax
	call	puthex
	leal	(msg_ret - _start)(%ebx), %esi
	call	puts
	movl	(%ebp), %eax
	call	puthex
	leal	(msg_eip - _start)(%ebx), %esi
	call	puts
	movl	%ebx, %eax
	call	puthex
	leal	(msg_eol - _start)(%ebx), %esi
	call	puts

	movl	%ebx, %ecx			/* our entry, for the re-entry slot */
	popl	%edi
	popl	%esi
	popl	%ebx
	popl	%ebp
	xorl	%eax, %eax
#ifndef KJ_PLAIN_RET
	movl	(%esp), %edx			/* return address */
	movl	%ecx, (%esp)			/* its slot: our entry, read back as image->start */
	pushl	%edx
#endif
	ret
	.size _start, . - _start

/* puts: print the NUL-terminated string at %esi; clobbers %eax %ecx %edx %esi */
puts:
	lodsb
	testb	%al, %al
	jz	2f
	call	putc
	jmp	puts
2:	ret

/* putc: send %al to COM1 once the transmitter holding register is empty;
 * clobbers %eax %ecx %edx */
putc:
	movb	%al, %ah
	movl	$THRE_SPINS, %ecx
	movw	$COM1_LSR, %dx
3:	inb	%dx, %al
	testb	$LSR_THRE, %al
	jnz	4f
	pause
	loop	3b
4:	movw	$COM1, %dx
	movb	%ah, %al
	outb	%al, %dx
	ret

/* puthex: print %eax as 0x and 8 hex digits; needs %ebx = _start; clobbers %eax %ecx %edx %edi */
puthex:
	pushl	%esi
	movl	%eax, %edi
	movb	$'0', %al
	call	putc
	movb	$'x', %al
	call	putc
	movl	$8, %esi
5:	roll	$4, %edi
	movl	%edi, %eax
	andl	$15, %eax
	movb	(hexdigits - _start)(%ebx, %eax), %al
	call	putc
	decl	%esi
	jnz	5b
	popl	%esi
	ret

	.section .rodata, "a"
hexdigits:	.ascii "0123456789abcdef"
msg_hello:	.asciz "KJLAB-PHYSCALL hello from physical mode\r\n"
msg_call:	.asciz "KJLAB-PHYSCALL call "
msg_cr0:	.asciz " cr0 "
msg_esp:	.asciz " esp "
msg_ret:	.asciz " ret "
msg_eip:	.asciz " eip "
msg_eol:	.asciz "\r\n"

	.data
	.balign 4
calls:	.long 0

	.section .note.GNU-stack, "", @progbits
