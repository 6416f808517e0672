"""kexec-tools built from Debian's source package, with the lab's own patches.

A scenario's `[kexec_tools]` table asks for it (lab.scenario.KexecToolsSpec): the source
package of the suite (the same version as the binary package the lab uses otherwise,
Debian's own patch series applied by `dpkg-source -x`), then the patches, each applied with
`git am` (lab.artifacts.git_am, as for kernels), then a static build for the guest's arch
(on i386 with Debian's i686 cross toolchain, gcc-i686-linux-gnu and libc6-dev-i386-cross,
which bootstrap.sh installs for the Buildroot recipe too; gcc-multilib would conflict with it). The static
`kexec` replaces the packaged one in the guests' initramfs; Debian's binary links libc only,
without zlib or lzma (its Depends), and so does this build.

Cached under the source package's version and file hashes, the patches' diffs (not their
messages: patch_mail.diff_sha256), the configure arguments and the compiler version, so a
kexec-tools fix is tested like a kernel fix: its name and hash are in the run's provenance.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import GUESTS_DIR
from .. import debian_archive as debian
from ..arch import Arch
from ..cache import cache_root, cached_dir, hash_inputs
from ..errors import BuildError, CommandFailed
from ..proc import run
from .git_am import apply_series
from .kernel import patch_series

log = logging.getLogger(__name__)

RECIPE = 1  # bump when the build changes in a way the key does not see
PATCHES_DIR = GUESTS_DIR / "kexec-tools" / "patches"
BUILD_TIMEOUT = 900.0
QUICK_TIMEOUT = 60.0
# what Debian's debian/rules passes, less the paths the initramfs does not use; no zlib,
# lzma or Xen: the packaged i386/amd64 binaries depend on libc6 only
CONFIGURE_ARGS = ("--prefix=/usr", "--sbindir=/sbin", "--without-zlib", "--without-lzma", "--without-xen")
# per guest arch: configure's host triplet and the compiler/linker for it
TOOLCHAIN: dict[Arch, dict[str, str]] = {
    Arch.I386: {"host": "i686-linux-gnu", "CC": "i686-linux-gnu-gcc", "LD": "i686-linux-gnu-ld",
                "AR": "i686-linux-gnu-ar", "STRIP": "i686-linux-gnu-strip"},
    Arch.X86_64: {"host": "x86_64-linux-gnu", "CC": "gcc", "LD": "ld", "AR": "ar", "STRIP": "strip"},
}
PROGRAM = "build/sbin/kexec"  # where kexec-tools' make puts it


@dataclass(frozen=True)
class KexecToolsSpec:
    """A scenario's [kexec_tools]: Debian's source package of a suite, plus patches."""
    package: str = "kexec-tools"
    suite: str = "bookworm"
    patches: tuple[str, ...] = ()  # names in guests/kexec-tools/patches, or absolute paths


@dataclass(frozen=True)
class KexecToolsBuild:
    kexec: Path  # the static program, for sbin/kexec in the initramfs
    key: str
    provenance: dict[str, Any]


def source_package(spec: KexecToolsSpec, arch: Arch, log_path: Path | None = None) -> debian.SourcePackage:
    """The version of the spec's source package that built the suite's binary package (the
    one a Debian image has), so that a build without patches is the packaged kexec."""
    versions = debian.source_versions(spec.package, spec.suite, log_path)
    binary = debian.show([spec.package], arch.info.debian, spec.suite, log_path).get(spec.package)
    same = [s for s in versions if binary is not None and s.version == binary.version]
    if not same:
        have = ", ".join(s.version for s in versions) or "none"
        raise BuildError(f"{spec.suite}: no source package {spec.package} of the binary's version "
                         f"{binary.version if binary else '(no binary package)'} in the deb-src lists (have: {have})")
    return same[0]


def _compiler_version(arch: Arch) -> str:
    try:
        return run([TOOLCHAIN[arch]["CC"], "--version"], timeout=QUICK_TIMEOUT).splitlines()[0]
    except (OSError, CommandFailed, IndexError) as exc:
        raise BuildError(f"kexec-tools from source for {arch} needs {TOOLCHAIN[arch]['CC']} (i386: Debian's "
                         f"gcc-i686-linux-gnu and libc6-dev-i386-cross; ./bootstrap.sh installs them): {exc}") from exc


def build_kexec_tools(spec: KexecToolsSpec, arch: Arch, log_path: Path | None = None) -> KexecToolsBuild:
    """Build (or take from the cache) a static kexec for `arch` from `spec`."""
    src = source_package(spec, arch, log_path)
    mails = patch_series(spec.patches, library=PATCHES_DIR, what="kexec-tools")
    toolchain = TOOLCHAIN[arch]
    key = hash_inputs({
        "kind": "kexec-tools",
        "recipe": RECIPE,
        "source": [src.name, src.version, sorted((f.name, f.sha256) for f in src.files)],
        "patches": [m.diff_sha256 for m in mails],
        "configure": [*CONFIGURE_ARGS, *sorted(toolchain.items())],
        "compiler": _compiler_version(arch),
    })
    provenance: dict[str, Any] = {
        "source": f"debian:{src.name}={src.version}@{src.suite}",
        "version": src.version,
        "patches": [m.provenance() for m in mails],
        "configure": list(CONFIGURE_ARGS),
        "key": key,
    }

    def build(out: Path) -> None:
        scratch_root = cache_root() / "tmp"
        scratch_root.mkdir(exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="kexec-tools-", dir=scratch_root) as scratch:
            tree = _unpack(src, Path(scratch), log_path)
            if mails:
                apply_series(tree, mails, Path(scratch) / "am", f"kexec-tools {src.version}", log_path)
            _configure_and_make(tree, arch, log_path)
            (out / "sbin").mkdir()
            shutil.copy2(tree / PROGRAM, out / "sbin/kexec")
            # debug info off: 1.4 MB -> about 0.5 MB in every guest image (a copy with it stays)
            shutil.copy2(tree / PROGRAM, out / "kexec.debug")
            run([toolchain["STRIP"], "--strip-debug", str(out / "sbin/kexec")], log_path=log_path,
                timeout=QUICK_TIMEOUT)
        check_static(out / "sbin/kexec", arch)
        (out / "provenance.json").write_text(json.dumps(provenance, indent=1, sort_keys=True) + "\n")

    final, cached = cached_dir("kexec-tools", key, build)
    check_static(final / "sbin/kexec", arch)
    log.info("kexec-tools %s %s%s (%s): %s", src.version, arch,
             "".join(f" + {m.name}" for m in mails), "cached" if cached else "built", final)
    return KexecToolsBuild(kexec=final / "sbin/kexec", key=key, provenance={**provenance, "cached": cached})


def _unpack(src: debian.SourcePackage, scratch: Path, log_path: Path | None) -> Path:
    """`dpkg-source -x` of the package: upstream's tree with Debian's patch series applied."""
    dsc = debian.fetch_source_package(src, log_path)
    tree = scratch / "src"
    try:
        run(["dpkg-source", "--no-copy", "-x", str(dsc), str(tree)], log_path=log_path, timeout=BUILD_TIMEOUT)
    except CommandFailed as exc:
        raise BuildError(f"dpkg-source -x {dsc.name} failed:\n{exc.log_tail}") from exc
    return tree


def _configure_and_make(tree: Path, arch: Arch, log_path: Path | None) -> None:
    tc = TOOLCHAIN[arch]
    argv = ["./configure", f"--host={tc['host']}", *CONFIGURE_ARGS,
            f"CC={tc['CC']}", f"LD={tc['LD']}", f"AR={tc['AR']}", "LDFLAGS=-static"]
    try:
        run(argv, cwd=tree, log_path=log_path, timeout=BUILD_TIMEOUT)
        run(["make", "-j2", f"AR={tc['AR']}", PROGRAM], cwd=tree, log_path=log_path, timeout=BUILD_TIMEOUT)
    except OSError as exc:
        raise BuildError(f"cannot build kexec-tools: {exc}") from exc
    except CommandFailed as exc:
        raise BuildError(f"building kexec-tools for {arch} failed:\n{exc.log_tail}") from exc


def check_static(path: Path, arch: Arch) -> None:
    """A static ELF executable of the guest's arch."""
    from .initramfs import elf_deps  # the image module imports nothing of this one

    deps = elf_deps(path)
    if deps.machine != arch.info.elf_machine:
        raise BuildError(f"{path}: {deps.machine}, expected {arch.info.elf_machine}")
    if deps.interp or deps.needed:
        raise BuildError(f"{path}: not static (interpreter {deps.interp}, needs {', '.join(deps.needed)})")
