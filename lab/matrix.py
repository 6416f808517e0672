"""Matrix files: kernels x arch x machines x flows x patch sets -> cells, each cell a
scenario of its own (written out, so one cell can be re-run by hand with `kjlab run`).

    [matrix]
    name = "nightly-i386"          # the identity of a nightly series in the history
    machines = ["pc-virtio", "pc-ide"]
    flows = ["hibernate"]
    arch = ["i386"]
    parallel = 0                   # VMs at once; 0 = the number of cores
    cell_timeout = 1800            # seconds before a cell is ended (SIGTERM, then SIGKILL)
    flow_machines = { swsusp = ["pc-virtio"] }  # a flow only on some machines (default: all)

Names (the matrix's, the kernels', the patch sets') become directory names: letters,
digits and . _ + - only (lab.scenario.NAME_RE). Every cell id must be unique, and every
cell's scenario is validated when the matrix is loaded, so a bad value is refused before
anything runs, naming the matrix file, the cell and the key.

    [[kernel]]
    name = "6.1"
    source = "debian:linux-source-6.1"

    [[patchset]]
    name = "gdt-fix"
    patches = ["0001-x86-kexec-32-reload-gdt-before-restore-processor-state.patch"]

    [[patchset]]                   # kexec-tools patches too: a cell's [kexec_tools] (built from
    name = "kexec-tools-lowmem"    # Debian's source package, lab.artifacts.kexec_tools)
    patches = ["0001-x86-kexec-32-reload-gdt-before-restore-processor-state.patch"]
    kexec_tools = { patches = ["0002-kexec-swap-the-low-ram-of-a-preserve-context-image.patch"] }

    [[patchset]]
    name = "stock"
    patches = []
    expect = "TRIPLE_FAULT"        # a known failure: XFAIL when it shows
    step = "jump-back"
    signature = 'Triple fault'

    [[override]]                   # per-cell changes, by glob on the cell id
    cells = "6.1/i386/pc-ide/*/gdt-fix"
    quirks = { crash-note = false }
    flow = { proof_kib = 1024 }

    [[override]]                   # a kernel where a patch set's bug is not expected:
    cells = "7.2/*/*/*/stock"      # the cells' expectation replaced whole (verdict, and
    expect = { verdict = "PASS" }  # step and signature for a failure)

    [[override]]                   # kernel A's own fragments instead of the arch's (x86_64:
    cells = "7.2/x86_64/*/*/*"     # A at 64 MiB, above a wider window for B)
    a_fragments = ["a-at-64m"]
    flow = { a_mem = "184M", b_window = ["0x100000", "0x3ffffff"] }

    [[override]]                   # kernels B and C another build than A's for some cells
    cells = "6.1/i386/*/*/*"       # (a scenario's [kernel_bc]: source, fragments, patches)
    kernel_bc = { source = "debian:linux-source-7.2@sid" }

    [[override]]                   # kernel C's RAM for some cells (the only machine value
    cells = "*/i386/pc-highmem-1g/*/*"  # a cell may change: its machine is in its id)
    machine = { c_memory_mib = 2304 }

One kernel per (kernel, arch, patch set) serves every machine of that arch in the matrix
(a machine runs its own arch only: lab.machines): its fragments are the arch's base fragment
(or matrix.fragments) and the union of what those machines need
(lab.machines.machine_fragments), so a matrix builds each kernel once per arch. A fragment
that changes what the kernel is (lab.machines.KERNEL_VARIANT_FRAGMENTS: "pae") stays out of
that union: the machines that need it get a kernel of their own (the union of the arch's
other fragments plus it), as a PAE kernel does not boot on a CPU without PAE.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cell import cell_id, cell_slug
from .errors import ScenarioError
from .machines import KERNEL_VARIANT_FRAGMENTS, kernel_variant, machine_fragments, machines
from .quirks import QUIRKS
from .flow_kinds import FLOW_NAMES as FLOWS
from .arch import Arch, parse_arch
from .scenario import EXPECTABLE_NAMES as VERDICTS
from .scenario import NAME_RE, NAME_RULE, check_kernel_source, check_name, check_seconds, read_toml, scenario_from_dict

_TOP = {"matrix", "kernel", "patchset", "override"}
_MATRIX_KEYS = {"name", "description", "machines", "flows", "arch", "parallel", "cell_timeout", "fragments",
                "flow_machines"}
_KERNEL_KEYS = {"name", "source", "arch"}
_PATCHSET_KEYS = {"name", "patches", "kexec_tools", "expect", "step", "signature", "also"}
_OVERRIDE_KEYS = {"cells", "quirks", "flow", "expect", "machine", "a_fragments", "kernel_bc"}
_OVERRIDE_MACHINE_KEYS = {"c_memory_mib"}
_EXPECT_KEYS = {"verdict", "step", "signature", "also"}
MAX_PARALLEL = 256


@dataclass(frozen=True)
class Cell:
    id: str  # kernel/arch/machine/flow/patchset
    kernel: str
    arch: str
    machine: str
    flow: str
    patchset: str
    scenario: dict[str, Any]  # a scenario file's content

    @property
    def slug(self) -> str:
        return cell_slug(self.id)

    @property
    def parts(self) -> dict[str, str]:
        return {"kernel": self.kernel, "arch": self.arch, "machine": self.machine, "flow": self.flow,
                "patchset": self.patchset}


@dataclass(frozen=True)
class Matrix:
    path: Path
    name: str
    description: str
    parallel: int
    cell_timeout: float
    cells: list[Cell] = field(default_factory=list)


def select_cells(matrix: Matrix, patterns: list[str]) -> Matrix:
    """The matrix with only the cells whose id matches one of the glob patterns (as an
    [[override]]'s cells: "7.2/*/*/*/0001"); a pattern that matches no cell is refused."""
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(c.id, pattern) for c in matrix.cells):
            raise ScenarioError(str(matrix.path), "--cells", f"{pattern!r} matches no cell; the cells are "
                                + ", ".join(c.id for c in matrix.cells))
    chosen = [c for c in matrix.cells if any(fnmatch.fnmatchcase(c.id, p) for p in patterns)]
    return Matrix(matrix.path, matrix.name, matrix.description, matrix.parallel, matrix.cell_timeout, chosen)


def load_matrix(path: Path) -> Matrix:
    where = str(path)
    data = read_toml(path, "matrix")
    _keys(where, "", data, _TOP)
    m = data.get("matrix", {})
    _keys(where, "matrix.", m, _MATRIX_KEYS)
    matrix_name = check_name(where, "matrix.name", m.get("name", path.stem))
    kernels = _tables(where, "kernel", data.get("kernel"), _KERNEL_KEYS, required=("name", "source"))
    _unique_names(where, "kernel", kernels)
    for i, k in enumerate(kernels):
        check_kernel_source(where, f"kernel[{i}].source", k["source"])
    patchsets = _tables(where, "patchset", data.get("patchset", [{"name": "none", "patches": []}]), _PATCHSET_KEYS,
                        required=("name",))
    _unique_names(where, "patchset", patchsets)
    overrides = _tables(where, "override", data.get("override", []), _OVERRIDE_KEYS, required=("cells",), optional=True)
    names = _list(where, "matrix.machines", m.get("machines", ["pc-virtio"]))
    for i, name in enumerate(names):
        if name not in machines():
            raise ScenarioError(where, f"matrix.machines[{i}]", f"unknown machine {name!r}; available: "
                                f"{', '.join(sorted(machines()))}")
    flows = _list(where, "matrix.flows", m.get("flows", ["hibernate"]))
    for i, flow in enumerate(flows):
        if flow not in FLOWS:
            raise ScenarioError(where, f"matrix.flows[{i}]", f"{flow!r} is not a flow; options are {', '.join(FLOWS)}")
    flow_machines = _flow_machines(where, m.get("flow_machines", {}), flows, names)
    arches: list[Arch] = []
    for i, name in enumerate(_list(where, "matrix.arch", m.get("arch", ["i386"]))):
        arch = parse_arch(name)
        if arch is None:
            raise ScenarioError(where, f"matrix.arch[{i}]", f"{name!r} is not allowed; options are {', '.join(Arch.names())}")
        if not any(machines()[n].arch is arch for n in names):
            raise ScenarioError(where, f"matrix.arch[{i}]", f"no machine of matrix.machines is {arch}; "
                                f"{arch} machines: {', '.join(n for n, s in sorted(machines().items()) if s.arch is arch)}")
        arches.append(arch)
    kernel_arches = [_kernel_arches(where, i, k, arches) for i, k in enumerate(kernels)]
    for i, p in enumerate(patchsets):
        if p.get("expect", "PASS") not in VERDICTS:
            raise ScenarioError(where, f"patchset[{i}].expect", f"options are {', '.join(VERDICTS)}")
        if not isinstance(p.get("kexec_tools", {}), dict):
            raise ScenarioError(where, f"patchset[{i}].kexec_tools", "must be a table, e.g. { patches = [...] }")
    for i, o in enumerate(overrides):
        _str(where, f"override[{i}].cells", o["cells"])
        for table in ("quirks", "flow", "expect", "machine", "kernel_bc"):
            if not isinstance(o.get(table, {}), dict):
                raise ScenarioError(where, f"override[{i}].{table}", "must be a table, e.g. { crash-note = false }")
        if "machine" in o:
            _keys(where, f"override[{i}].machine.", o["machine"], _OVERRIDE_MACHINE_KEYS)
        if "expect" in o:
            _keys(where, f"override[{i}].expect.", o["expect"], _EXPECT_KEYS)
            if o["expect"].get("verdict", "PASS") not in VERDICTS:
                raise ScenarioError(where, f"override[{i}].expect.verdict", f"options are {', '.join(VERDICTS)}")
        for q in o.get("quirks", {}):
            if q not in QUIRKS:
                raise ScenarioError(where, f"override[{i}].quirks.{q}", f"unknown quirk; options are {', '.join(QUIRKS)}")
    # the union of what the machines of an arch need: one kernel build per (kernel, arch, patch
    # set), and one more per kernel variant (a PAE kernel) for the machines that need one
    base_fragments = _list(where, "matrix.fragments", m["fragments"]) if "fragments" in m else None
    fragments_of: dict[tuple[Arch, tuple[str, ...]], list[str]] = {}
    for arch in arches:
        fragments = list(base_fragments if base_fragments is not None else [arch.info.kexec_fragment])
        own = [n for n in names if machines()[n].arch is arch]
        for name in own:
            fragments += [f for f in machine_fragments(machines()[name])
                          if f not in fragments and f not in KERNEL_VARIANT_FRAGMENTS]
        for variant in dict.fromkeys(kernel_variant(machines()[n]) for n in own):
            fragments_of[(arch, variant)] = fragments + [f for f in variant if f not in fragments]
    cells = []
    for k, k_arches in zip(kernels, kernel_arches):
        for arch in k_arches:
            for mach in (n for n in names if machines()[n].arch is arch):  # a machine runs its own arch only
                fragments = fragments_of[(arch, kernel_variant(machines()[mach]))]
                for flow in flows:
                    if mach not in flow_machines.get(flow, names):
                        continue
                    for p in patchsets:
                        cid = cell_id(k["name"], arch, mach, flow, p["name"])
                        sc = _cell_scenario(cid, k, arch, mach, flow, p, fragments, overrides)
                        cells.append(Cell(cid, k["name"], arch.value, mach, flow, p["name"], sc))
    _unique_cells(where, cells)
    for cell in cells:  # every cell's scenario valid now, not when its turn comes at night
        scenario_from_dict(cell.scenario, path, where=f"{where} (cell {cell.id})")
    parallel = _parallel(where, m.get("parallel", 0)) or (os.cpu_count() or 1)
    return Matrix(path, matrix_name, _str(where, "matrix.description", m.get("description", "")), parallel,
                  check_seconds(where, "matrix.cell_timeout", m.get("cell_timeout", 1800)), cells)


def _kernel_arches(where: str, i: int, k: dict[str, Any], arches: list[Arch]) -> list[Arch]:
    """kernel.arch: the arches of matrix.arch this kernel is built and run for (default: all),
    e.g. a long-term kernel kept on i386 only."""
    if "arch" not in k:
        return arches
    chosen: list[Arch] = []
    for j, name in enumerate(_list(where, f"kernel[{i}].arch", k["arch"])):
        arch = parse_arch(name)
        if arch not in arches:
            raise ScenarioError(where, f"kernel[{i}].arch[{j}]", f"{name!r} is not one of matrix.arch "
                                f"({', '.join(a.value for a in arches)})")
        chosen.append(arch)
    return [a for a in arches if a in chosen]


def _flow_machines(where: str, value: Any, flows: list[str], names: list[str]) -> dict[str, list[str]]:
    """matrix.flow_machines: flow -> the machines it runs on (each one of matrix.machines)."""
    if not isinstance(value, dict):
        raise ScenarioError(where, "matrix.flow_machines", 'must be a table, e.g. { swsusp = ["pc-virtio"] }')
    for flow, chosen in value.items():
        key = f"matrix.flow_machines.{flow}"
        if flow not in flows:
            raise ScenarioError(where, key, f"{flow!r} is not one of matrix.flows ({', '.join(flows)})")
        for i, name in enumerate(_list(where, key, chosen)):
            if name not in names:
                raise ScenarioError(where, f"{key}[{i}]", f"{name!r} is not one of matrix.machines")
    return value


def _unique_names(where: str, table: str, tables: list[dict[str, Any]]) -> None:
    seen: dict[str, int] = {}
    for i, t in enumerate(tables):
        name = check_name(where, f"{table}[{i}].name", t["name"])
        if name in seen:
            raise ScenarioError(where, f"{table}[{i}].name", f"{name!r} is already the name of {table}[{seen[name]}]; "
                                "names must be unique (they make the cell ids)")
        seen[name] = i


def _unique_cells(where: str, cells: list[Cell]) -> None:
    """Cell ids (and their slugs: file and directory names) must be unique."""
    by_slug: dict[str, str] = {}
    for cell in cells:
        if cell.slug in by_slug:
            other = by_slug[cell.slug]
            raise ScenarioError(where, "matrix", f"duplicate cell id {cell.id!r}" + (
                "" if other == cell.id else f" (its files would be those of {other!r})")
                + "; kernels, patch sets, machines, flows and arches must each be listed once")
        if not NAME_RE.fullmatch(cell.slug):
            raise ScenarioError(where, "matrix", f"cell id {cell.id!r} makes a name longer than allowed "
                                f"({NAME_RULE}); use shorter kernel or patch set names")
        by_slug[cell.slug] = cell.id


def _parallel(where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_PARALLEL:
        raise ScenarioError(where, "matrix.parallel", f"{value!r} is not allowed: a whole number of VMs at once, "
                            f"1 to {MAX_PARALLEL}, or 0 for the number of cores")
    return value


def _str(where: str, key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ScenarioError(where, key, f"must be a string, not {type(value).__name__}")
    return value


def _cell_scenario(cid: str, k: dict[str, Any], arch: Arch, mach: str, flow: str, p: dict[str, Any],
                   fragments: list[str], overrides: list[dict[str, Any]]) -> dict[str, Any]:
    sc: dict[str, Any] = {
        "scenario": {"name": cell_slug(cid), "description": f"matrix cell {cid}"},
        "kernel": {"source": k["source"], "arch": arch.value, "fragments": fragments, "patches": list(p.get("patches", []))},
        "machine": {"name": mach},  # [[override]] machine: kernel C's RAM only
        "flow": {"name": flow},
        "quirks": {},
        "expect": {"verdict": p.get("expect", "PASS")},
    }
    for key in ("step", "signature", "also"):
        if key in p:
            sc["expect"][key] = p[key]
    if "kexec_tools" in p:  # validated as a scenario's [kexec_tools]
        sc["kexec_tools"] = dict(p["kexec_tools"])
    for o in overrides:
        if fnmatch.fnmatchcase(cid, o["cells"]):
            sc["quirks"].update(o.get("quirks", {}))
            sc["flow"].update(o.get("flow", {}))
            sc["machine"].update(o.get("machine", {}))
            if "a_fragments" in o:  # kernel A built apart with these (e.g. at 64 MiB: a-at-64m)
                sc["kernel"]["a_fragments"] = list(o["a_fragments"])
            if "kernel_bc" in o:  # B and C another build than A (validated as a scenario's [kernel_bc])
                sc["kernel_bc"] = dict(o["kernel_bc"])
            if "expect" in o:
                sc["expect"] = {"verdict": "PASS", **o["expect"]}
    return sc


def _keys(where: str, prefix: str, table: dict[str, Any], allowed: set[str]) -> None:
    if not isinstance(table, dict):
        raise ScenarioError(where, prefix.rstrip("."), "must be a table")
    for key in table:
        if key not in allowed:
            raise ScenarioError(where, prefix + key, f"unknown key; allowed: {', '.join(sorted(allowed))}")


def _tables(where: str, name: str, value: Any, allowed: set[str], required: tuple[str, ...],
            optional: bool = False) -> list[dict[str, Any]]:
    if not isinstance(value, list) or (not value and not optional):
        raise ScenarioError(where, name, f"needs at least one [[{name}]] table")
    for i, t in enumerate(value):
        _keys(where, f"{name}[{i}].", t, allowed)
        for key in required:
            if key not in t:
                raise ScenarioError(where, f"{name}[{i}].{key}", "is required")
    return value


def _list(where: str, key: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ScenarioError(where, key, "must be a non-empty list of strings")
    return value
