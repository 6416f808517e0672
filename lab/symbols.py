"""Addresses -> `function+0xoffset`, from the System.map of the kernel that was built.

Evidence reads better and signatures can name functions: a triple fault's
`EIP=c10392f4` becomes `EIP=c10392f4 <restore_processor_state+0x24>`.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from pathlib import Path

from .arch import Arch

_TEXT_TYPES = set("tTwW")
_ANY_TYPES = set("tTwWdDbBrR")
_HEX_ADDR = re.compile(r"\b(?:EIP|IP|RIP|PC|pc)[=:]\s*(?:[0-9a-f]{4}:)?(?:0x)?([0-9a-fA-F]{8,16})\b")


@dataclass(frozen=True)
class SymbolMap:
    addresses: tuple[int, ...]
    names: tuple[str, ...]
    text_end: int  # one past the last text symbol: later addresses are not code
    arch: Arch = Arch.I386  # the kernel's: how its symbols' addresses map to physical ones

    @classmethod
    def load(cls, path: Path, types: set[str] = _ANY_TYPES, arch: Arch = Arch.I386) -> SymbolMap:
        entries = []
        text_end = 0
        floor = arch.info.kernel_map or 0
        for line in path.read_text(errors="replace").splitlines():
            parts = line.split()
            if len(parts) < 3 or parts[1] not in types:
                continue
            try:
                addr = int(parts[0], 16)
            except ValueError:
                continue
            if addr < floor:  # x86_64's per-CPU offsets (0x0...): no code or data lives there
                continue
            entries.append((addr, parts[2]))
            if parts[1] in _TEXT_TYPES:
                text_end = max(text_end, addr)
        entries.sort()
        return cls(tuple(a for a, _ in entries), tuple(n for _, n in entries), text_end, arch)

    def lookup(self, address: int) -> str | None:
        """`name+0xoff` of the symbol at or below `address`, or None outside the kernel."""
        k = bisect.bisect_right(self.addresses, address) - 1
        if k < 0 or address - self.addresses[k] > 0x100000:
            return None
        off = address - self.addresses[k]
        return f"{self.names[k]}+{off:#x}" if off else self.names[k]

    def address_of(self, name: str) -> int | None:
        """The address of the symbol `name` (the first, if the map lists it twice)."""
        try:
            return self.addresses[self.names.index(name)]
        except ValueError:
            return None

    def physical_of(self, name: str) -> int | None:
        """Where the kernel's symbol `name` lies in physical memory (the inverse of
        lookup_physical: the x86_64 kernel's own mapping, or the direct map), or None."""
        at = self.address_of(name)
        if at is None:
            return None
        info = self.arch.info
        return at - (info.kernel_map if info.kernel_map is not None and at >= info.kernel_map else info.direct_map)

    def lookup_physical(self, phys: int) -> str | None:
        """What a physical address holds, by symbol: through the i386 kernel's direct map, or
        the x86_64 kernel's own mapping (__START_KERNEL_map; no KASLR, so phys_base 0)."""
        info = self.arch.info
        return self.lookup(phys + (info.kernel_map if info.kernel_map is not None else info.direct_map))


def symbolize_line(line: str, symbols: SymbolMap) -> str:
    """Append `<function+0xoff>` after each instruction pointer in a line of evidence."""
    def repl(m: re.Match[str]) -> str:
        name = symbols.lookup(int(m.group(1), 16))
        return f"{m.group(0)} <{name}>" if name else m.group(0)

    return _HEX_ADDR.sub(repl, line)


def symbolize(lines: list[str], symbols: SymbolMap | None) -> list[str]:
    return [symbolize_line(line, symbols) for line in lines] if symbols else lines
