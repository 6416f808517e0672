"""The guest architectures, one typed value each: what every part of the lab needs to
know of an arch (QEMU binary, kernel ARCH=, Debian arch, GDB's name, the guest programs'
ELF, the kernel's virtual memory layout) is here, and nowhere else."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Arch(StrEnum):
    """A guest architecture. Its value is the name used in scenario, machine and matrix
    files, cell ids (kernel/arch/...), cache keys and results."""

    I386 = "i386"
    X86_64 = "x86_64"

    @property
    def info(self) -> ArchInfo:
        return ARCHES[self]

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(a.value for a in cls)


@dataclass(frozen=True)
class ArchInfo:
    qemu_binary: str  # qemu-system-*
    karch: str  # the kernel's `make ARCH=`
    debian: str  # the Debian architecture of the guest's packages
    triplet: str  # Debian's multiarch library directory name
    gdb: str  # GDB's `set architecture`
    gcc_flags: tuple[str, ...]  # the guest programs' target (lab.artifacts.progs)
    elf_class: int  # 32 or 64: the guest programs and the kernel's ELF cores
    elf_machine: str  # pyelftools' e_machine name
    kexec_fragment: str  # the base kernel config fragment (guests/kernel/configs)
    a_fragments: tuple[str, ...]  # what kernel A needs besides (built apart from B and C when not empty)
    max_memory_mib: int  # what a machine of this arch may have
    direct_map: int  # PAGE_OFFSET: virtual address of physical 0 in the kernel's direct map
    direct_map_size: int  # how much physical memory the direct map covers
    kernel_map: int | None  # __START_KERNEL_map (the kernel image's own mapping), None if in the direct map
    # The first instruction of a kexec jump runs in physical addressing: with paging off on
    # i386; in long mode (paging always on, identity-mapped) on x86_64, where ring 0 at a
    # low linear address tells it from a user process at the same address.
    jump_entry_condition: str
    jump_entry_if: str  # the condition in words, for the record: "hbreak *ENTRY if ..."
    jump_entry_state: str  # the CPU's state there in words
    physcall: bool  # kj-physcall.elf (a 32-bit physical-mode program) exists for this arch


ARCHES: dict[Arch, ArchInfo] = {
    Arch.I386: ArchInfo(
        qemu_binary="qemu-system-i386", karch="i386", debian="i386", triplet="i386-linux-gnu", gdb="i386",
        gcc_flags=("-m32", "-march=i686"), elf_class=32, elf_machine="EM_386", kexec_fragment="kexec-jump-i386",
        a_fragments=(),
        # 8 GiB: with PAE (a machine's pae = true; lab.machines) RAM above 4 GiB is usable,
        # and every snapshot of it is a file on the host; without PAE the machine must keep
        # its RAM below 4 GiB (QEMU's pc splits at 3 GiB from 3.5 GiB on: lab.machines.ram_ranges)
        max_memory_mib=8192,
        direct_map=0xC0000000, direct_map_size=896 << 20, kernel_map=None,
        jump_entry_condition="($cr0 & 0x80000000) == 0", jump_entry_if="paging is off",
        jump_entry_state="paging off", physcall=True,
    ),
    Arch.X86_64: ArchInfo(
        qemu_binary="qemu-system-x86_64", karch="x86_64", debian="amd64", triplet="x86_64-linux-gnu",
        gdb="i386:x86-64", gcc_flags=("-m64", "-march=x86-64"), elf_class=64, elf_machine="EM_X86_64",
        kexec_fragment="kexec-jump-x86_64", max_memory_mib=3584,
        # A's text must lie outside B's window, or B cannot read it from /proc/vmcore
        # (scenarios/bugs/x86_64-a-inside-b-window.toml): A runs at 32 MiB
        a_fragments=("a-outside-window",),
        direct_map=0xFFFF888000000000, direct_map_size=64 << 40,  # 4-level paging, no KASLR
        kernel_map=0xFFFFFFFF80000000,
        jump_entry_condition="($cs & 3) == 0", jump_entry_if="in ring 0",
        jump_entry_state="long mode, identity-mapped", physcall=False,
    ),
}


def parse_arch(value: object) -> Arch | None:
    """The Arch named `value`, or None (the caller reports the error with its file and key)."""
    try:
        return Arch(value) if isinstance(value, str) else None
    except ValueError:
        return None
