"""The one definition of a matrix cell's identity: ``kernel/arch/machine/flow/patchset``,
its parts, and the slug that names its files and run directories."""

from __future__ import annotations

CELL_PARTS = ("kernel", "arch", "machine", "flow", "patchset")  # the order of a cell id's parts


def cell_id(kernel: str, arch: str, machine: str, flow: str, patchset: str) -> str:
    return "/".join((kernel, arch, machine, flow, patchset))


def cell_id_of(parts: dict[str, str]) -> str:
    """The identifier of a cell from its parts (a mapping with every name of CELL_PARTS)."""
    return cell_id(*(parts[p] for p in CELL_PARTS))


def parse_cell_id(cell: str) -> dict[str, str]:
    """The parts of ``kernel/arch/machine/flow/patchset`` (the patch set may hold slashes)."""
    pieces = cell.split("/", len(CELL_PARTS) - 1)
    if len(pieces) != len(CELL_PARTS) or not all(pieces):
        raise ValueError(f"cell id {cell!r}: expected {'/'.join(CELL_PARTS)}")
    return dict(zip(CELL_PARTS, pieces))


def cell_slug(cell: str) -> str:
    """A cell id as one file or directory name."""
    return cell.replace("/", "_")
