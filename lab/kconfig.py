"""Kernel config fragments: parse what a fragment asks for, check what .config gave."""

from __future__ import annotations

import re
from pathlib import Path

from .errors import ConfigSymbolMissing

_SET = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
_UNSET = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")


def parse_config(text: str) -> dict[str, str]:
    """CONFIG_FOO -> its value ('y', 'm', '0x200000', '"str"'), or 'n' for '# ... is not set'."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if m := _SET.match(line):
            values[m.group(1)] = m.group(2)
        elif m := _UNSET.match(line):
            values[m.group(1)] = "n"
    return values


def requested_symbols(fragments: list[Path]) -> dict[str, str]:
    wanted: dict[str, str] = {}
    for frag in fragments:
        wanted.update(parse_config(frag.read_text()))
    return wanted


def missing_symbols(wanted: dict[str, str], got: dict[str, str]) -> dict[str, tuple[str, str]]:
    """Symbols whose final value differs from the request (absent counts as 'n')."""
    return {
        sym: (want, got.get(sym, "n"))
        for sym, want in wanted.items()
        if got.get(sym, "n") != want
    }


def verify_config(fragments: list[Path], config_path: Path) -> None:
    missing = missing_symbols(requested_symbols(fragments), parse_config(config_path.read_text()))
    if missing:
        raise ConfigSymbolMissing(missing, str(config_path))
