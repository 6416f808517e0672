"""Scenario files (TOML) -> a validated, frozen Scenario. Pure: no I/O but the read.

An error names the file, the key and what is allowed.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .debian_archive import PACKAGE_RE, SUITE_RE
from .arch import Arch, parse_arch
from .artifacts.kernel import PATCHES_DIR, KernelSpec, resolve_fragment
from .artifacts.kexec_tools import PATCHES_DIR as KEXEC_TOOLS_PATCHES_DIR, KexecToolsSpec
from .errors import ScenarioError, UserError
from .flow_kinds import DEFAULT_TIMEOUTS, FLOW_KINDS, FLOW_NAMES
from .verdict import EXPECTABLE, Verdict
from .machines import DISK_BUSES, GUEST_SWAP_DEVICE, MachineSpec, machines, ram_ranges, ram_top, ram_unreachable, validate
from .quirks import DEFAULT_QUIRKS, QUIRKS

EXPECTABLE_NAMES = tuple(str(v) for v in EXPECTABLE)
SAVE_METHODS = ("copy", "makedumpfile")
# /sys/power/disk for the swsusp flow: power off (QEMU quits at "Power down"), reboot
# (the machine ends, lab.vm), or test_resume (the image is read back at once, no power cycle)
SWSUSP_MODES = ("shutdown", "reboot", "test_resume")
RECIPES = ("debian", "buildroot")
# what a Buildroot image may do without: makedumpfile only serves flow.save = "makedumpfile"
BUILDROOT_OPTIONAL = ("makedumpfile",)
# Names become directory names (run directories, matrix cells): no '/', no '..', no
# spaces or commas, nothing a shell or a path could read as more than one name.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,80}")
NAME_RULE = "1 to 81 of A-Z a-z 0-9 . _ + - (starting with a letter or digit)"
KERNEL_SOURCES = "'debian:PACKAGE[@SUITE]', 'tree:PATH' or 'tarball:PATH'"

# physical addresses: an i386 PAE machine reaches 64 GiB (36 bits)
PAE_ADDRESS_LIMIT = 1 << 36

_SCHEMA: dict[str, set[str]] = {
    "scenario": {"name", "description", "links", "source"},
    "kernel": {"source", "arch", "fragments", "patches", "a_fragments"},
    # kernels B and C when they are not A's build: another version, a minimal config
    "kernel_bc": {"source", "fragments", "patches"},
    "guest": {"recipe", "extra_packages", "buildroot_without"},
    # kexec-tools built from Debian's source package with patches (default: the binary package)
    "kexec_tools": {"source", "patches"},
    "machine": {"name", "memory_mib", "c_memory_mib", "cpu", "smp", "disk_bus", "machine", "accel", "acpi", "pae"},
    "flow": {"name", "a_mem", "a_append", "b_window", "save", "dump_level", "cycles", "proof_kib", "timeouts",
             "split_image_segments", "sentinel_pages", "corrupt_image_pages", "a_reserves_window",
             "tamper_image_at", "after_resume_command", "disk_mib", "swsusp_mode", "swap_mib",
             "highmem_sentinels", "a_offline_cpus"},
    "quirks": set(QUIRKS),
    "expect": {"verdict", "signature", "step", "links", "also"},
}
_FACE_KEYS = {"verdict", "signature", "step"}


@dataclass(frozen=True)
class FlowParams:
    name: str = "hibernate"
    a_mem: str = "120M"  # A boots with mem= this, so its image fits half of C's RAM
    a_append: str = ""  # more of A's command line
    a_reserves_window: bool = False  # A boots with memmap=<window>$<start>: none of A's memory in B's window
    b_window: tuple[int, int] = (0x100000, 0x1FFFFFF)
    save: str = "copy"  # how B saves A's image: cp /proc/vmcore, or makedumpfile -E -d LEVEL
    dump_level: int = 16
    cycles: int = 3
    proof_kib: int = 4096
    split_image_segments: int = 0  # test option: rewrite the saved image into N PT_LOADs
    sentinel_pages: int = 1024  # self-identifying pages per region (tmpfs file, anonymous memory)
    corrupt_image_pages: int = 0  # test option: damage N sentinel pages of the saved image on the disk
    tamper_image_at: int = 0  # test option: flip one byte of the image at this physical address after the host checked it
    after_resume_command: str = ""  # test option: a command A runs right after the jump back, before the checks
    # CPUs the user takes offline in A before the jump (echo 0 > .../cpuN/online); after the
    # resume exactly the others must be online again
    a_offline_cpus: tuple[int, ...] = ()
    disk_mib: int = 512  # the hibernation disk (ext2); smaller than the image: B cannot save it
    swsusp_mode: str = "shutdown"  # the swsusp flow's /sys/power/disk (SWSUSP_MODES)
    swap_mib: int = 256  # the swsusp flow's swap disk (sparse)
    # at least this many of A's sentinel pages must lie in A's HighMem zone at the jump (0: not
    # asked): a scenario about high memory that never put anything there would prove nothing of it
    highmem_sentinels: int = 0
    timeouts: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class GuestSpec:
    recipe: str = "debian"
    extra_packages: tuple[str, ...] = ()
    buildroot_without: tuple[str, ...] = ()  # packages of the Buildroot defconfig left out


@dataclass(frozen=True)
class Face:
    """One way a known bug shows: its verdict, in its own step, with its own signature."""
    verdict: Verdict
    step: str
    signature: str


@dataclass(frozen=True)
class Expectation:
    verdict: Verdict = Verdict.PASS
    signature: str = ""  # a regex the failed step's own logs must match for an XFAIL
    step: str = ""  # the step the expected failure happens in (required with a failure)
    links: tuple[str, ...] = ()
    # Other faces of the same bug (`[[expect.also]]`): a race that ends in a triple fault in
    # some runs and in a hang in others. Each is matched on its own step and signature.
    also: tuple[Face, ...] = ()

    def face_for(self, observed: Verdict) -> Face:
        """The face a run that ended in `observed` is judged against: the one of that verdict,
        else the main one (so a different failure is reported against what was expected)."""
        main = Face(self.verdict, self.step, self.signature)
        return next((f for f in (main, *self.also) if f.verdict is observed), main)


@dataclass(frozen=True)
class Scenario:
    path: Path
    name: str
    description: str
    source: str  # where the problem or the flow comes from (mail, commit, facts item)
    links: tuple[str, ...]
    kernel: KernelSpec
    a_fragments: tuple[str, ...]  # extra fragments for a separate kernel A (() = A is B); default: the arch's
    guest: GuestSpec
    machine: MachineSpec
    c_memory_mib: int
    flow: FlowParams
    quirks: dict[str, bool]
    expect: Expectation
    # Kernels B and C built apart from A (another source, fragments or patches); None: A's build
    kernel_bc: KernelSpec | None = None
    # kexec-tools from source with the lab's patches ([kexec_tools]); None: Debian's binary package
    kexec_tools: KexecToolsSpec | None = None
    kernel_tree: Path | None = None  # `kjlab run --kernel-tree`: the kernel comes from this tree
    patch_files: tuple[Path, ...] = ()  # `kjlab run --patch`: applied after the scenario's own patches

    @property
    def a_ram_end(self) -> int:
        """One past A's highest physical address: mem= (on x86 an address limit, not an
        amount), or the end of the machine's RAM, which lies above 4 GiB once QEMU splits it."""
        top = ram_top(self.machine)
        a_mem = self.flow.a_mem
        if not a_mem:
            return top
        return min(top, int(a_mem.rstrip("MG")) << (30 if a_mem.endswith("G") else 20))

    @property
    def a_ram_ranges(self) -> list[tuple[int, int]]:
        """The machine's RAM below A's mem= limit: A's physical memory, the PCI hole left out."""
        end = self.a_ram_end
        return [(s, min(e, end)) for s, e in ram_ranges(self.machine) if s < end]


def read_toml(path: Path, kind: str) -> dict[str, Any]:
    """A TOML file's content; a missing or malformed file is a ScenarioError naming it."""
    if not path.is_file():
        raise ScenarioError(str(path), "", f"no such {kind} file")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(str(path), "", f"not valid TOML: {e}") from None


def load_scenario(path: Path) -> Scenario:
    return scenario_from_dict(read_toml(path, "scenario"), path)


def scenario_from_dict(data: dict[str, Any], path: Path, where: str | None = None) -> Scenario:
    """A scenario file's content (a dict as TOML gives it) -> Scenario; errors name `where`
    (default: the path), e.g. a matrix file and the cell the content was made for."""
    where = where or str(path)
    _check_keys(where, data)
    sc = data.get("scenario", {})
    machine = _machine(where, data.get("machine", {}))
    kernel = _kernel(where, data.get("kernel", {}), machine, path)
    return Scenario(
        path=path,
        name=check_name(where, "scenario.name", sc.get("name", path.stem)),
        description=_str(where, "scenario.description", sc.get("description", "")),
        source=_str(where, "scenario.source", sc.get("source", "")),
        links=_str_list(where, "scenario.links", sc.get("links", [])),
        kernel=kernel,
        a_fragments=_fragments(where, "kernel.a_fragments",
                               data.get("kernel", {}).get("a_fragments", list(kernel.arch.info.a_fragments))),
        guest=(guest := _guest(where, data.get("guest", {}))),
        machine=machine,
        c_memory_mib=_c_memory(where, data.get("machine", {}), machine),
        flow=_save_tool(where, guest, _flow_on_arch(where, _swap_bus(where, _flow(where, data.get("flow", {})), machine),
                                                    kernel.arch)),
        quirks=_quirks(where, data.get("quirks", {})),
        expect=_expect(where, data.get("expect", {})),
        kernel_bc=(_kernel(where, {"arch": kernel.arch.value, **data["kernel_bc"]}, machine, path, "kernel_bc")
                   if "kernel_bc" in data else None),
        kexec_tools=_kexec_tools(where, data["kexec_tools"], guest, path) if "kexec_tools" in data else None,
    )


def _c_memory(where: str, m: dict[str, Any], machine: MachineSpec) -> int:
    """Kernel C's RAM: the machine's unless machine.c_memory_mib says otherwise; the same
    bounds and the same rule for RAM above 4 GiB as the machine's own."""
    if "c_memory_mib" not in m:
        return machine.memory_mib
    value = _int(where, "machine.c_memory_mib", m["c_memory_mib"], 128, machine.arch.info.max_memory_mib)
    unreachable = ram_unreachable(machine, value)
    if unreachable:
        raise ScenarioError(where, "machine.c_memory_mib", unreachable)
    return value


def _save_tool(where: str, guest: GuestSpec, flow: FlowParams) -> FlowParams:
    if flow.save == "makedumpfile" and "makedumpfile" in guest.buildroot_without:
        raise ScenarioError(where, "flow.save", "'makedumpfile' needs makedumpfile in the image; "
                            "guest.buildroot_without leaves it out")
    return flow


def _check_keys(where: str, data: dict[str, Any]) -> None:
    for section, value in data.items():
        if section not in _SCHEMA:
            raise ScenarioError(where, section, f"unknown section; allowed: {', '.join(_SCHEMA)}")
        if not isinstance(value, dict):
            raise ScenarioError(where, section, "must be a table ([section])")
        for key in value:
            if key not in _SCHEMA[section]:
                raise ScenarioError(where, f"{section}.{key}", f"unknown key; allowed: {', '.join(sorted(_SCHEMA[section]))}")


def _str(where: str, key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ScenarioError(where, key, f"must be a string, not {type(value).__name__}")
    return value


def check_name(where: str, key: str, value: Any) -> str:
    """A name that may become a file or directory name (see NAME_RE)."""
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise ScenarioError(where, key, f"{value!r} is not a valid name: {NAME_RULE}")
    return value


def check_package(where: str, key: str, value: Any) -> str:
    """A Debian package name (Policy 5.6.1): never an apt option, never two names."""
    if not isinstance(value, str) or not PACKAGE_RE.fullmatch(value):
        raise ScenarioError(where, key, f"{value!r} is not a Debian package name: "
                            "lower-case letters, digits and + . - (at least 2, starting with a letter or digit)")
    return value


def check_kernel_source(where: str, key: str, value: Any) -> str:
    source = _str(where, key, value)
    kind, sep, rest = source.partition(":")
    if not sep or kind not in ("debian", "tree", "tarball") or not rest:
        raise ScenarioError(where, key, f"{source!r}: expected {KERNEL_SOURCES}")
    if "\n" in rest or "\0" in rest:
        raise ScenarioError(where, key, f"{source!r}: no newline or NUL allowed")
    if kind == "debian":
        package, at, suite = rest.partition("@")
        check_package(where, key, package)
        if at and not SUITE_RE.fullmatch(suite):
            raise ScenarioError(where, key, f"suite {suite!r} is not a Debian suite name: 2 to 31 of a-z 0-9 - "
                                "starting with a letter (e.g. bookworm, trixie, sid)")
    return source


def check_seconds(where: str, key: str, value: Any) -> float:
    """A duration: a finite number of seconds above zero (not a bool, not inf or nan)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ScenarioError(where, key, f"{value!r} is not allowed: a finite number of seconds above 0")
    return float(value)


def _timeouts(where: str, value: Any) -> dict[str, float]:
    if not isinstance(value, dict):
        raise ScenarioError(where, "flow.timeouts", "must be a table of timeout name = seconds, e.g. { boot = 120 }; "
                            f"names: {', '.join(DEFAULT_TIMEOUTS)}")
    for name in value:
        if name not in DEFAULT_TIMEOUTS:
            raise ScenarioError(where, f"flow.timeouts.{name}", f"unknown timeout; allowed: {', '.join(DEFAULT_TIMEOUTS)}")
    return {name: check_seconds(where, f"flow.timeouts.{name}", v) for name, v in value.items()}


def _str_list(where: str, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ScenarioError(where, key, "must be a list of strings")
    return tuple(value)


def _fragments(where: str, key: str, value: Any) -> tuple[str, ...]:
    """Config fragment names, each one a file of guests/kernel/configs (checked now, not
    minutes later when the build starts)."""
    names = _str_list(where, key, value)
    for name in names:
        try:
            resolve_fragment(name)
        except UserError as e:
            raise ScenarioError(where, key, str(e)) from None
    return names


def _choice(where: str, key: str, value: Any, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ScenarioError(where, key, f"{value!r} is not allowed; options are {', '.join(allowed)}")
    return value


def _int(where: str, key: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, str):
        try:
            value = int(value, 0)
        except ValueError:
            raise ScenarioError(where, key, f"{value!r} is not a number") from None
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ScenarioError(where, key, f"must be a whole number from {lo} to {hi}")
    return value


def _kernel(where: str, k: dict[str, Any], machine: MachineSpec, path: Path, table: str = "kernel") -> KernelSpec:
    """The kernel; its arch is the machine's (kernel.arch, when given, must say the same)."""
    arch = parse_arch(k.get("arch", machine.arch.value))
    if arch is None:
        raise ScenarioError(where, f"{table}.arch", f"{k.get('arch')!r} is not allowed; options are "
                            f"{', '.join(Arch.names())}")
    if arch is not machine.arch:
        raise ScenarioError(where, f"{table}.arch", f"{arch} does not run on machine {machine.name!r}, which is "
                            f"{machine.arch}: choose a machine of the kernel's arch (kjlab list)")
    patches = _str_list(where, f"{table}.patches", k.get("patches", []))
    return KernelSpec(
        source=check_kernel_source(where, f"{table}.source", k.get("source", "debian:linux-source-6.1")),
        arch=arch,
        fragments=_fragments(where, f"{table}.fragments", k.get("fragments", [arch.info.kexec_fragment])),
        patches=tuple(check_patch(where, f"{table}.patches[{i}]", name, path.parent) for i, name in enumerate(patches)),
    )


PATCH_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*(?:/[A-Za-z0-9][A-Za-z0-9._+-]*)*")
PATCH_PATH_PREFIXES = ("/", "./", "../", "~/")


def check_patch(where: str, key: str, value: str, base: Path) -> str:
    """A kernel patch entry: a name in guests/kernel/patches (the lab's own fixes; the
    kernel's series picks a backport at build time), or - starting with / ./ ../ or ~/ -
    the path of a patch, a format-patch series or an mbox, relative to `base` (the
    scenario's directory, the current one for --patch). A path becomes absolute here."""
    if value.startswith(PATCH_PATH_PREFIXES):
        file = Path(value).expanduser()
        file = (file if file.is_absolute() else base / file).resolve()
        if "\n" in value or "\0" in value:
            raise ScenarioError(where, key, f"{value!r}: no newline or NUL allowed")
        if not file.is_file():
            raise ScenarioError(where, key, f"{value!r}: no such patch or mbox file ({file})")
        return str(file)
    if not PATCH_NAME_RE.fullmatch(value) or ".." in value.split("/"):
        raise ScenarioError(where, key, f"{value!r} is neither a patch name in guests/kernel/patches nor a path "
                            f"(a path starts with {', '.join(PATCH_PATH_PREFIXES)})")
    if not any((d / value).is_file() for d in (PATCHES_DIR, *PATCHES_DIR.iterdir()) if d.is_dir()):
        choices = sorted(p.name for p in PATCHES_DIR.glob("*.patch"))
        raise ScenarioError(where, key, f"unknown patch {value!r}; the lab's: {', '.join(choices)} (or a path to "
                            f"a patch or mbox file, starting with {', '.join(PATCH_PATH_PREFIXES)})")
    return value


def _kexec_tools(where: str, k: dict[str, Any], guest: GuestSpec, path: Path) -> KexecToolsSpec:
    """[kexec_tools]: source = 'debian:kexec-tools[@SUITE]' (the default), patches = names in
    guests/kexec-tools/patches or paths (as for kernel patches)."""
    if guest.recipe != "debian":
        raise ScenarioError(where, "kexec_tools", "only with the 'debian' guest recipe (Buildroot builds its own "
                            "kexec-tools from buildroot-config/)")
    source = check_kernel_source(where, "kexec_tools.source", k.get("source", "debian:kexec-tools@bookworm"))
    kind, _, rest = source.partition(":")
    if kind != "debian":
        raise ScenarioError(where, "kexec_tools.source", f"{source!r}: only 'debian:PACKAGE[@SUITE]' (a Debian "
                            "source package) for kexec-tools")
    package, _, suite = rest.partition("@")
    patches = []
    for i, name in enumerate(_str_list(where, "kexec_tools.patches", k.get("patches", []))):
        key = f"kexec_tools.patches[{i}]"
        if name.startswith(PATCH_PATH_PREFIXES):
            patches.append(check_patch(where, key, name, path.parent))
        elif not PATCH_NAME_RE.fullmatch(name) or "/" in name or not (KEXEC_TOOLS_PATCHES_DIR / name).is_file():
            choices = sorted(p.name for p in KEXEC_TOOLS_PATCHES_DIR.glob("*.patch"))
            raise ScenarioError(where, key, f"unknown kexec-tools patch {name!r}; the lab's: {', '.join(choices)} "
                                f"(or a path to a patch or mbox file, starting with {', '.join(PATCH_PATH_PREFIXES)})")
        else:
            patches.append(name)
    return KexecToolsSpec(package=package, suite=suite or "bookworm", patches=tuple(patches))


def _guest(where: str, g: dict[str, Any]) -> GuestSpec:
    recipe = _choice(where, "guest.recipe", g.get("recipe", "debian"), RECIPES)
    packages = _str_list(where, "guest.extra_packages", g.get("extra_packages", []))
    for i, name in enumerate(packages):
        check_package(where, f"guest.extra_packages[{i}]", name)
    without = _str_list(where, "guest.buildroot_without", g.get("buildroot_without", []))
    for i, name in enumerate(without):
        if name not in BUILDROOT_OPTIONAL:
            raise ScenarioError(where, f"guest.buildroot_without[{i}]",
                                f"{name!r}: only {', '.join(BUILDROOT_OPTIONAL)} can be left out")
    if recipe == "buildroot" and packages:
        raise ScenarioError(where, "guest.extra_packages", "Debian packages; the 'buildroot' recipe takes its "
                            "packages from buildroot-config/ (add them to its defconfig)")
    if recipe != "buildroot" and without:
        raise ScenarioError(where, "guest.buildroot_without", "only with recipe = 'buildroot'")
    return GuestSpec(recipe, packages, without)


def _machine(where: str, m: dict[str, Any]) -> MachineSpec:
    name = _choice(where, "machine.name", m.get("name", "pc-virtio"), tuple(sorted(machines())))
    spec = machines()[name]
    overrides: dict[str, Any] = {}
    if "memory_mib" in m:
        overrides["memory_mib"] = _int(where, "machine.memory_mib", m["memory_mib"], 128, spec.arch.info.max_memory_mib)
    if "smp" in m:
        overrides["smp"] = _int(where, "machine.smp", m["smp"], 1, 8)
    if "disk_bus" in m:
        overrides["disk_bus"] = _choice(where, "machine.disk_bus", m["disk_bus"], DISK_BUSES)
    if "accel" in m:
        overrides["accel"] = _choice(where, "machine.accel", m["accel"], ("auto", "tcg", "kvm"))
    for key in ("cpu", "machine"):
        if key in m:
            overrides[key] = _str(where, f"machine.{key}", m[key])
    for key in ("acpi", "pae"):
        if key in m:
            if not isinstance(m[key], bool):
                raise ScenarioError(where, f"machine.{key}", "must be true or false")
            overrides[key] = m[key]
    return validate(spec.with_overrides(**overrides), where, "machine.")


def _flow(where: str, f: dict[str, Any]) -> FlowParams:
    window = f.get("b_window", ["0x100000", "0x1ffffff"])
    if not isinstance(window, list) or len(window) != 2:
        raise ScenarioError(where, "flow.b_window", "must be [mem_min, mem_max], e.g. [\"0x100000\", \"0x1ffffff\"]")
    lo = _int(where, "flow.b_window[0]", window[0], 0, 0xFFFFFFFF)
    hi = _int(where, "flow.b_window[1]", window[1], lo + 1, 0xFFFFFFFF)
    timeouts = _timeouts(where, f.get("timeouts", {}))
    a_append = _str(where, "flow.a_append", f.get("a_append", ""))
    if any(c in a_append for c in "\r\n\0"):
        raise ScenarioError(where, "flow.a_append", "one line of kernel parameters: no newline (or NUL) allowed")
    a_mem = _str(where, "flow.a_mem", f.get("a_mem", "120M"))
    if a_mem and not a_mem.rstrip("MG").isdigit():
        raise ScenarioError(where, "flow.a_mem", f"{a_mem!r} is not a size like '120M' (or '' for all of RAM)")
    flow = FlowParams(
        name=_choice(where, "flow.name", f.get("name", "hibernate"), FLOW_NAMES),
        a_mem=a_mem,
        a_append=a_append,
        a_reserves_window=_bool(where, "flow.a_reserves_window", f.get("a_reserves_window", False)),
        b_window=(lo, hi),
        save=_choice(where, "flow.save", f.get("save", "copy"), SAVE_METHODS),
        dump_level=_int(where, "flow.dump_level", f.get("dump_level", 16), 0, 31),
        cycles=_int(where, "flow.cycles", f.get("cycles", 3), 1, 100),
        proof_kib=_int(where, "flow.proof_kib", f.get("proof_kib", 4096), 4, 65536),
        split_image_segments=_int(where, "flow.split_image_segments", f.get("split_image_segments", 0), 0, 64),
        sentinel_pages=_int(where, "flow.sentinel_pages", f.get("sentinel_pages", 1024), 0, 16384),
        corrupt_image_pages=_int(where, "flow.corrupt_image_pages", f.get("corrupt_image_pages", 0), 0, 16384),
        tamper_image_at=_int(where, "flow.tamper_image_at", f.get("tamper_image_at", 0), 0, PAE_ADDRESS_LIMIT - 1),
        after_resume_command=_str(where, "flow.after_resume_command", f.get("after_resume_command", "")),
        a_offline_cpus=_cpu_numbers(where, "flow.a_offline_cpus", f.get("a_offline_cpus", [])),
        disk_mib=_int(where, "flow.disk_mib", f.get("disk_mib", 512), 8, 65536),
        swsusp_mode=_choice(where, "flow.swsusp_mode", f.get("swsusp_mode", "shutdown"), SWSUSP_MODES),
        swap_mib=_int(where, "flow.swap_mib", f.get("swap_mib", 256), 16, 65536),
        highmem_sentinels=_int(where, "flow.highmem_sentinels", f.get("highmem_sentinels", 0), 0, 2 * 16384),
        timeouts=timeouts,
    )
    if flow.highmem_sentinels and flow.name != "hibernate":
        raise ScenarioError(where, "flow.highmem_sentinels", f"the {flow.name!r} flow does not check it; "
                            "only 'hibernate' counts A's sentinel pages in HighMem (at check-image)")
    if flow.highmem_sentinels > 2 * flow.sentinel_pages:
        raise ScenarioError(where, "flow.highmem_sentinels", f"{flow.highmem_sentinels} is more than A has: "
                            f"2 x flow.sentinel_pages = {2 * flow.sentinel_pages} (a tmpfs file and anonymous memory)")
    return flow


def _cpu_numbers(where: str, key: str, value: Any) -> tuple[int, ...]:
    """Secondary CPU numbers (1-7: CPU 0 cannot go offline), each once."""
    if not isinstance(value, list):
        raise ScenarioError(where, key, "must be a list of CPU numbers, e.g. [1]")
    cpus = tuple(_int(where, f"{key}[{i}]", v, 1, 7) for i, v in enumerate(value))
    if len(set(cpus)) != len(cpus):
        raise ScenarioError(where, key, f"{list(cpus)}: each CPU once")
    return cpus


def _swap_bus(where: str, flow: FlowParams, machine: MachineSpec) -> FlowParams:
    """The swsusp flow needs a swap disk, which only some buses have so far; the CPUs A takes
    offline must be the machine's."""
    for i, cpu in enumerate(flow.a_offline_cpus):
        if cpu >= machine.smp:
            raise ScenarioError(where, f"flow.a_offline_cpus[{i}]", f"CPU {cpu}: the machine has {machine.smp} "
                                f"(CPUs 0-{machine.smp - 1}; CPU 0 stays online)")
    if flow.name == "swsusp" and not machine.guest_swap:
        raise ScenarioError(where, "machine.disk_bus", f"the swsusp flow's swap disk is not on {machine.disk_bus!r}; "
                            f"buses with one: {', '.join(GUEST_SWAP_DEVICE)}")
    return flow


def _flow_on_arch(where: str, flow: FlowParams, arch: Arch) -> FlowParams:
    """A flow that runs one of the lab's i386-only programs cannot run on another arch."""
    if FLOW_KINDS[flow.name].needs_physcall and not arch.info.physcall:
        raise ScenarioError(where, "flow.name", f"the {flow.name!r} flow calls kj-physcall.elf, a 32-bit "
                            f"physical-mode program the lab has for i386 only, not for {arch}")
    return flow


def _bool(where: str, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ScenarioError(where, key, "must be true or false")
    return value


def _quirks(where: str, q: dict[str, Any]) -> dict[str, bool]:
    quirks = dict(DEFAULT_QUIRKS)
    for name, value in q.items():
        if not isinstance(value, bool):
            raise ScenarioError(where, f"quirks.{name}", "must be true or false")
        quirks[name] = value
    return quirks


def _regex(where: str, key: str, value: Any) -> str:
    text = _str(where, key, value)
    try:
        re.compile(text)
    except re.error as e:
        raise ScenarioError(where, key, f"not a valid regular expression: {e}") from None
    return text


def _expect(where: str, e: dict[str, Any]) -> Expectation:
    main = _face(where, "expect", e)
    also = e.get("also", [])
    if not isinstance(also, list):
        raise ScenarioError(where, "expect.also", "must be an array of tables ([[expect.also]])")
    faces = []
    for i, table in enumerate(also):
        key = f"expect.also[{i}]"
        if not isinstance(table, dict) or set(table) - _FACE_KEYS:
            raise ScenarioError(where, key, f"a table of {', '.join(sorted(_FACE_KEYS))}")
        face = _face(where, key, table)
        if face.verdict is Verdict.PASS:
            raise ScenarioError(where, f"{key}.verdict", "another face of a bug is a failure, not PASS")
        faces.append(face)
    if faces and main.verdict is Verdict.PASS:
        raise ScenarioError(where, "expect.also", "other faces belong to an expected failure, not to PASS")
    if len({f.verdict for f in (main, *faces)}) != len(faces) + 1:
        raise ScenarioError(where, "expect.also", "each face of a bug has its own verdict")
    return Expectation(verdict=main.verdict, signature=main.signature, step=main.step,
                       links=_str_list(where, "expect.links", e.get("links", [])), also=tuple(faces))


def _face(where: str, prefix: str, e: dict[str, Any]) -> Face:
    verdict = Verdict(_choice(where, f"{prefix}.verdict", e.get("verdict", "PASS"), EXPECTABLE_NAMES))
    face = Face(verdict=verdict, step=_str(where, f"{prefix}.step", e.get("step", "")),
                signature=_regex(where, f"{prefix}.signature", e.get("signature", "")))
    if verdict is not Verdict.PASS:  # an expected failure must name its own step and cause
        for key in ("step", "signature"):
            if not getattr(face, key).strip():
                raise ScenarioError(where, f"{prefix}.{key}", f"required when {prefix}.verdict is {verdict}: an "
                                    "expected failure matches only in its own step, on its own signature")
    elif face.signature or face.step:
        raise ScenarioError(where, prefix, "a signature or step belongs to an expected failure, not to PASS")
    return face


def with_kernel_tree(sc: Scenario, tree: Path) -> Scenario:
    """The scenario with its kernel built from a local tree (git bisect run)."""
    from dataclasses import replace

    tree = tree.resolve()
    return replace(sc, kernel=replace(sc.kernel, source=f"tree:{tree}"), kernel_tree=tree)


def with_patches(sc: Scenario, files: list[Path]) -> Scenario:
    """The scenario with more patches (`kjlab run --patch FILE`, in the order given) after
    its own; each a patch, a format-patch series or an mbox."""
    from dataclasses import replace

    paths = tuple(f.expanduser().resolve() for f in files)
    for given, file in zip(files, paths):
        if "\n" in str(file) or not file.is_file():
            raise UserError(f"--patch {given}: no such patch or mbox file")
    return replace(sc, kernel=replace(sc.kernel, patches=sc.kernel.patches + tuple(map(str, paths))),
                   patch_files=sc.patch_files + paths)
