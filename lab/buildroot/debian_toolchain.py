"""The offline layer's toolchain: Debian's i686 cross toolchain as Buildroot's external one.

The recipe's defconfig uses a Bootlin toolchain, which Buildroot downloads. Offline, the
lab uses Debian's `gcc-i686-linux-gnu` and `libc6-dev-i386-cross` instead (installed by
bootstrap.sh: gcc 12, glibc 2.36, headers 6.1). Buildroot cannot take them where they are
(/usr, a sysroot of /usr/i686-linux-gnu without usr/include), so the lab makes a copy of hard
links in the cache - GCC finds its programs and libraries relative to its own binary - with
usr/include added to the tool directory, and a second BR2_EXTERNAL tree
(buildroot-offline/external) lifts Buildroot's refusal of distribution toolchains (see its
external.mk for why that is safe here).
"""

from __future__ import annotations

import logging
from pathlib import Path

from .. import BUILDROOT_OFFLINE_DIR
from ..cache import cached_dir, hash_inputs
from ..errors import BuildError, CommandFailed
from ..proc import run

log = logging.getLogger(__name__)

TRIPLET = "i686-linux-gnu"
PACKAGES = ("gcc-12-i686-linux-gnu", "binutils-i686-linux-gnu", "libc6-dev-i386-cross", "linux-libc-dev-i386-cross",
            "libgcc-12-dev-i386-cross")
EXTERNAL = BUILDROOT_OFFLINE_DIR / "external"
COPY_TIMEOUT = 600.0
CONFIG = """BR2_TOOLCHAIN_EXTERNAL=y
BR2_TOOLCHAIN_EXTERNAL_CUSTOM=y
BR2_TOOLCHAIN_EXTERNAL_PREINSTALLED=y
BR2_TOOLCHAIN_EXTERNAL_PATH="{path}"
BR2_TOOLCHAIN_EXTERNAL_CUSTOM_PREFIX="{triplet}"
BR2_TOOLCHAIN_EXTERNAL_GCC_12=y
BR2_TOOLCHAIN_EXTERNAL_HEADERS_6_1=y
BR2_TOOLCHAIN_EXTERNAL_CUSTOM_GLIBC=y
BR2_TOOLCHAIN_EXTERNAL_HAS_SSP=y
BR2_TOOLCHAIN_EXTERNAL_OPENMP=y
# BR2_TOOLCHAIN_EXTERNAL_INET_RPC is not set
"""


def installed_versions() -> dict[str, str]:
    try:
        out = run(["dpkg-query", "-W", "-f", "${Package} ${Version} ${Status}\\n", *PACKAGES], timeout=60)
    except (OSError, CommandFailed) as exc:
        raise BuildError(f"the Buildroot offline layer needs Debian's i686 cross toolchain ({', '.join(PACKAGES)}; "
                         f"bootstrap.sh installs gcc-i686-linux-gnu and libc6-dev-i386-cross): {exc}") from exc
    versions = {}
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 3 and line.endswith("installed") and "ok installed" in line:
            versions[fields[0]] = fields[1]
    missing = [p for p in PACKAGES if p not in versions]
    if missing:
        raise BuildError(f"Debian's i686 cross toolchain is not installed ({', '.join(missing)}): "
                         "apt-get install gcc-i686-linux-gnu libc6-dev-i386-cross (bootstrap.sh does)")
    return versions


def prepare(log_path: Path | None = None) -> tuple[Path, dict[str, str]]:
    """(BR2_TOOLCHAIN_EXTERNAL_PATH, {Debian package: version}) of the toolchain copy."""
    versions = installed_versions()

    def build(out: Path) -> None:
        usr = out / "usr"
        (usr / "bin").mkdir(parents=True)
        (usr / "lib" / "gcc-cross").mkdir(parents=True)
        tools = sorted(str(p) for p in Path("/usr/bin").glob(f"{TRIPLET}-*"))
        _copy(tools, usr / "bin", log_path)
        _copy([f"/usr/lib/gcc-cross/{TRIPLET}"], usr / "lib" / "gcc-cross", log_path)
        _copy([f"/usr/{TRIPLET}"], usr, log_path)
        (usr / TRIPLET / "usr").mkdir()
        _copy([str(usr / TRIPLET / "include")], usr / TRIPLET / "usr", log_path)  # the sysroot's usr/include

    final, cached = cached_dir("buildroot/toolchain", hash_inputs({"kind": "buildroot-toolchain", "debian": versions}),
                               build)
    log.info("Debian's i686 cross toolchain for Buildroot (%s): %s", "cached" if cached else "made", final / "usr")
    return final / "usr", versions


def _copy(sources: list[str], dest: Path, log_path: Path | None) -> None:
    """Hard links where the cache shares the file system with /usr, copies otherwise."""
    try:
        run(["cp", "-al", *sources, str(dest)], log_path=log_path, timeout=COPY_TIMEOUT)
    except CommandFailed:
        run(["cp", "-a", *sources, str(dest)], log_path=log_path, timeout=COPY_TIMEOUT)


def config_lines(path: Path) -> str:
    return CONFIG.format(path=path, triplet=TRIPLET)
