"""Buildroot's build of the guest initramfs: configuration, sources, `make`, the image.

The configuration is the recipe's defconfig (buildroot-config/configs/kjlab_i386_defconfig)
with the changes the lab makes: packages a scenario leaves out (`without`), and no rootfs
image and no overlay of Buildroot's own - the lab packs Buildroot's target tree with
guests/rootfs and the guest programs itself, with the same cpio writer as the Debian recipe
(owner 0:0, /dev/console as a device node). So neither host-fakeroot nor host-cpio is built,
and a change to guests/rootfs or guests/progs repacks the image without building anything. Sources come from the offline layer
(`KJLAB_BUILDROOT_SOURCES=debian`, the default: lab.buildroot.debian_sources) or from
Buildroot's own downloads (`upstream`).

`make` runs under `nice -n 19` (a guest initramfs is background work next to QEMU guests
that measure time) with BR2_JLEVEL = the CPUs, in an output directory under
~/.cache/kjlab/buildroot/output/<key>: a build that failed or was interrupted resumes where
it stopped; a finished one is kept (keyed by the Buildroot tree, the configuration, the
sources and the toolchain) for the next image built from the same packages.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import GUESTS_DIR
from ..cache import cache_root, cached_dir, hash_file, hash_inputs, hash_tree
from ..errors import BuildError, CommandFailed, UserError
from ..progress import Tracker
from ..proc import run
from . import debian_sources, debian_toolchain, tree as br_tree
from .image import pack_target

log = logging.getLogger(__name__)

RECIPE = 1  # bump when the build changes in a way the key does not see
BUILD_TIMEOUT = 6 * 3600.0
SOURCES_MODES = ("debian", "upstream")
ROOTFS_DIR = GUESTS_DIR / "rootfs"
STEP_RE = re.compile(r">>> (\S+) (\S+) (.+?)(?:\x1b\[27m)?$")
# the packages whose versions the provenance always names (when built)
NAMED = ("busybox", "kexec", "makedumpfile")


def sources_mode() -> str:
    mode = os.environ.get("KJLAB_BUILDROOT_SOURCES", "debian")
    if mode not in SOURCES_MODES:
        raise UserError(f"KJLAB_BUILDROOT_SOURCES={mode!r}: expected one of {', '.join(SOURCES_MODES)} "
                        "(debian: from Debian source packages, offline; upstream: Buildroot downloads them)")
    return mode


def config_text(without: tuple[str, ...]) -> str:
    """The defconfig, minus the packages left out, minus Buildroot's own rootfs image."""
    text = br_tree.DEFCONFIG.read_text()
    lines = [line for line in text.splitlines()
             if line.strip() and (not line.startswith("#") or line.endswith(" is not set"))  # comments: no input
             and not line.startswith(("BR2_TARGET_ROOTFS_CPIO", "BR2_ROOTFS_OVERLAY", "BR2_ROOTFS_POST_BUILD_SCRIPT"))
             and not any(line.startswith(f"{_symbol(p)}=") for p in without)]
    lines += ["# BR2_TARGET_ROOTFS_CPIO is not set", 'BR2_ROOTFS_OVERLAY=""', 'BR2_ROOTFS_POST_BUILD_SCRIPT=""']
    lines += [f"# {_symbol(p)} is not set" for p in without]
    return "\n".join(lines) + "\n"


def _symbol(package: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", package):
        raise UserError(f"Buildroot package {package!r}: expected a package name such as makedumpfile")
    return "BR2_PACKAGE_" + package.upper().replace("-", "_")


@dataclass(frozen=True)
class BuildrootImage:
    path: Path  # initramfs.gz
    packages: dict[str, str]  # Buildroot package -> version in the image
    key: str
    provenance: dict[str, Any]
    cached: bool


def build_initramfs(progs: dict[str, Path], without: tuple[str, ...] = (),
                    log_path: Path | None = None) -> BuildrootImage:
    """The guest initramfs from Buildroot, cached under a hash of every input: the release
    tarball, the configuration, the BR2_EXTERNAL tree, guests/rootfs, the sources, the
    guest programs (`progs`: {path in the image: file})."""
    mode = sources_mode()
    tree = br_tree.unpack(br_tree.release_tarball(), log_path)
    config = config_text(without)
    externals: tuple[Path, ...] = ()
    toolchain: dict[str, str] = {"defconfig": "as the recipe has it (downloaded by Buildroot)"}
    if mode == "debian":
        tc_path, toolchain = debian_toolchain.prepare(log_path)
        config = with_toolchain(config, debian_toolchain.config_lines(tc_path))
        externals = (debian_toolchain.EXTERNAL,)
    packages = br_tree.packages(tree, config, externals, log_path)
    provided = debian_sources.provide(tree, packages, log_path) if mode == "debian" else None
    output_key = hash_inputs({  # what Buildroot builds from
        "kind": "buildroot-output",
        "buildroot": tree.sha256,
        "config": config,
        "external": br_tree.external_files(),
        "externals": {p.name: hash_tree(p) for p in externals},
        "sources": provided.key_inputs() if provided else "upstream",
        "toolchain": toolchain,
    })
    key = hash_inputs({
        "kind": "initramfs-buildroot",
        "recipe": RECIPE,
        "output": output_key,
        "rootfs": hash_tree(ROOTFS_DIR),
        "progs": {name: hash_file(path) for name, path in sorted(progs.items())},
    })
    versions = {p.name: (provided.record[p.name]["version"] if provided and p.name in provided.record else p.version)
                for p in packages if not p.name.startswith("host-")}

    def build(out: Path) -> None:
        output = br_tree.buildroot_root() / "output" / output_key
        done = output / "kjlab-built.json"
        if not done.is_file():
            started = time.monotonic()
            _make(tree, output, config, externals, provided, log_path, output / "kjlab-build.log")
            done.write_text(json.dumps({"seconds": round(time.monotonic() - started, 1)}) + "\n")
        shutil.copyfile(output / "kjlab-build.log", out / "buildroot-build.log")
        pack_target(output / "target", ROOTFS_DIR, progs, out / "initramfs.gz")
        meta = {"key": key, "output": output_key, "packages": versions,
                "seconds": json.loads(done.read_text())["seconds"]}
        (out / "packages.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")

    final, cached = cached_dir("initramfs", key, build)
    meta = json.loads((final / "packages.json").read_text())
    provenance: dict[str, Any] = {
        "recipe": "buildroot",
        "buildroot": f"{tree.version} ({tree.tarball.name}, sha256 {tree.sha256[:16]})",
        "defconfig": br_tree.DEFCONFIG.name,
        "without": list(without),
        "sources": mode,
        "versions": {n: v for n, v in sorted(meta["packages"].items()) if n in NAMED} | {
            n: v for n, v in sorted(meta["packages"].items()) if n not in NAMED},
        "build_seconds": meta["seconds"],
        "cached": cached,
    }
    provenance["toolchain"] = toolchain
    if provided:
        provenance["source_packages"] = provided.record
    log.info("initramfs %s (Buildroot, %s): %s", key, "cached" if cached else "built", final / "initramfs.gz")
    return BuildrootImage(final / "initramfs.gz", dict(meta["packages"]), key, provenance, cached)


def with_toolchain(config: str, toolchain: str) -> str:
    """`config` with its toolchain lines replaced by `toolchain`'s."""
    kept = [line for line in config.splitlines()
            if not line.startswith(("BR2_TOOLCHAIN_", "# BR2_TOOLCHAIN_"))]
    return "\n".join(kept) + "\n" + toolchain


def _make(tree: br_tree.Tree, output: Path, config: str, externals: tuple[Path, ...],
          provided: debian_sources.Provided | None, log_path: Path | None, build_log: Path) -> None:
    root = br_tree.buildroot_root()
    extra = ""
    if provided is not None:
        dl_dir, override = root / "dl", output / "kjlab-override.mk"
        debian_sources.write_inputs(provided, dl_dir, override)
        extra = f'BR2_DL_DIR="{dl_dir}"\nBR2_PACKAGE_OVERRIDE_FILE="{override}"\n'
    else:
        extra = f'BR2_DL_DIR="{root / "dl-upstream"}"\n'
    br_tree.configure(tree, output, config + extra, externals, build_log)
    estimates = root / "steps.json"
    est_key = hash_inputs({"config": config})
    tracker = Tracker(f"Buildroot build {tree.version}", _estimate(estimates, est_key), "steps")
    current: list[str] = []

    def on_line(line: str) -> None:
        if m := STEP_RE.search(line):
            current[:] = [f"{m.group(1)} {m.group(2)}: {m.group(3)}"]
            tracker.advance()

    env = dict(os.environ)
    if os.geteuid() == 0:
        env["FORCE_UNSAFE_CONFIGURE"] = "1"  # GNU tar's configure refuses root otherwise
    env.pop("BR2_EXTERNAL", None)
    log.info("building the Buildroot initramfs in %s (log: %s)", output, build_log)
    try:
        run(["nice", "-n", "19", "make", "-C", str(tree.path), f"O={output}", f"BR2_JLEVEL={os.cpu_count() or 1}",
             "target-finalize"], log_path=build_log, env=env, on_line=on_line, timeout=BUILD_TIMEOUT)
    except CommandFailed as exc:
        kept = cache_root() / "failed-builds" / f"buildroot-{output.name}.log"
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(build_log, kept)
        where = current[0] if current else "before the first package"
        raise BuildError(f"Buildroot build failed at {where}\n  build log: {kept}\n  output kept for the next "
                         f"try: {output}\n" + "\n".join("    " + line for line in _errors(kept))) from exc
    tracker.finish()
    _save_estimate(estimates, est_key, tracker.done)
    if log_path is not None and log_path != build_log:
        with open(log_path, "a") as f:
            f.write(f"Buildroot build: {tracker.done} steps, log {build_log}\n")


def _errors(log_file: Path, limit: int = 15) -> list[str]:
    lines = log_file.read_text(errors="replace").splitlines()
    found = [line for line in lines if re.search(r"\berror\b|\*\*\*", line, re.IGNORECASE)]
    return (found or lines)[-limit:]


def _estimate(path: Path, key: str) -> int | None:
    try:
        value = json.loads(path.read_text()).get(key)
        return int(value) if value else None
    except (OSError, ValueError, AttributeError):
        return None


def _save_estimate(path: Path, key: str, steps: int) -> None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    data[key] = steps
    tmp = path.with_name(f"{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(data, sort_keys=True))
    os.replace(tmp, path)
