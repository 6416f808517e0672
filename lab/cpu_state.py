"""Where each CPU of a guest that stopped answering is: the evidence of a HANG.

A hung guest says nothing on its console; QEMU still knows every virtual CPU's registers
(HMP `info registers -a` once the guest is stopped). Two kinds of code can hold a CPU
after a kexec jump, and both are named here:
- the kernel's own text, by the System.map (lab.symbols, applied to every evidence line);
- kexec-tools' purgatory, which runs from a physical segment before the next kernel and
  loops for ever when the SHA-256 digest of the loaded segments no longer matches (memory
  changed between `kexec -l` and the jump). Its symbols come from `kexec -d`'s relocation
  listing on the console ("sym: purgatory info: 12 other: 00 shndx: 1 value: f3 size: 32",
  then "sym: purgatory value: 1ff40f3 addr: ...", and "Loaded purgatory at addr 0x1ff4000").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_CPU_RE = re.compile(r"^CPU#(\d+)\s*$", re.MULTILINE)
_IP_RE = re.compile(r"\b(EIP|RIP)=([0-9a-f]{8,16})\b.*?\bHLT=(\d)")
_SP_RE = re.compile(r"\b(ESP|RSP)=([0-9a-f]{8,16})\b")
_CS_RE = re.compile(r"^CS\s*=([0-9a-f]{4})\b", re.MULTILINE)
_CR_RE = re.compile(r"\bCR0=([0-9a-f]+)\b.*?\bCR3=([0-9a-f]+)\b")
# kexec -d: a symbol's size (first line), then its absolute value once placed (second)
_SYM_SIZE_RE = re.compile(r"^sym:\s+(\S+) info: [0-9a-f]+ other: [0-9a-f]+ shndx: [0-9a-f]+ value: [0-9a-f]+ "
                          r"size: ([0-9a-f]+)\s*$", re.MULTILINE)
_SYM_VALUE_RE = re.compile(r"^sym:\s+(\S+) value: ([0-9a-f]+) addr: [0-9a-f]+\s*$", re.MULTILINE)
_PURGATORY_AT_RE = re.compile(r"^Loaded purgatory at addr (0x[0-9a-f]+)", re.MULTILINE)


@dataclass(frozen=True)
class CpuRegs:
    index: int
    ip_name: str  # EIP or RIP
    ip: int
    sp_name: str
    sp: int
    cs: int
    cr0: int
    cr3: int
    halted: bool

    @property
    def paging(self) -> bool:
        return bool(self.cr0 & 0x80000000)


def parse_info_registers(text: str) -> list[CpuRegs]:
    """The CPUs of HMP `info registers -a` (QEMU 7.2's x86 format); blocks it cannot read are
    left out rather than guessed."""
    cpus = []
    heads = list(_CPU_RE.finditer(text))
    for k, head in enumerate(heads):
        block = text[head.end():heads[k + 1].start() if k + 1 < len(heads) else len(text)]
        ip, sp, cs, cr = _IP_RE.search(block), _SP_RE.search(block), _CS_RE.search(block), _CR_RE.search(block)
        if not (ip and sp and cs and cr):
            continue
        cpus.append(CpuRegs(int(head.group(1)), ip.group(1), int(ip.group(2), 16), sp.group(1), int(sp.group(2), 16),
                            int(cs.group(1), 16), int(cr.group(1), 16), int(cr.group(2), 16), ip.group(3) == "1"))
    return cpus


@dataclass(frozen=True)
class PurgatorySymbols:
    """kexec-tools' purgatory as loaded: its base and its sized symbols at their addresses."""
    base: int
    symbols: tuple[tuple[int, int, str], ...]  # (address, size, name), sorted

    def lookup(self, address: int) -> str | None:
        for start, size, name in self.symbols:
            if start <= address < start + size:
                off = address - start
                return f"{name}+{off:#x}" if off else name
        return None


def purgatory_symbols(console: str) -> PurgatorySymbols | None:
    """The purgatory of the latest `kexec -d` load on this console, or None without one."""
    loads = list(_PURGATORY_AT_RE.finditer(console))
    if not loads:
        return None
    # the listing of the latest load: the symbol lines before its "Loaded purgatory" line
    start = loads[-2].end() if len(loads) > 1 else 0
    listing = console[start:loads[-1].start()]
    sizes = {m.group(1): int(m.group(2), 16) for m in _SYM_SIZE_RE.finditer(listing)}
    placed = {(int(m.group(2), 16), sizes[m.group(1)], m.group(1))
              for m in _SYM_VALUE_RE.finditer(listing) if sizes.get(m.group(1))}
    return PurgatorySymbols(int(loads[-1].group(1), 16), tuple(sorted(placed)))


def cpu_lines(cpus: list[CpuRegs], purgatory: PurgatorySymbols | None) -> list[str]:
    """One evidence line a CPU. Kernel addresses get their function from lab.symbols later
    (the runner symbolizes all evidence); a physical address in purgatory is named here."""
    lines = []
    for c in cpus:
        width = 16 if c.ip_name == "RIP" else 8
        where = ""
        name = purgatory.lookup(c.ip) if purgatory and not c.paging else None
        if name:
            where = f" (kexec purgatory: {name})"
        elif not c.paging:
            where = " (paging off)"
        lines.append(f"CPU#{c.index} {c.ip_name}={c.ip:0{width}x}{where} CS={c.cs:04x} {c.sp_name}={c.sp:0{width}x} "
                     f"CR3={c.cr3:08x}{' halted' if c.halted else ''}")
    return lines
