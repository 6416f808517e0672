"""The Buildroot release tree and what a configuration takes from it.

The release tarball (`KJLAB_BUILDROOT`, else the newest `buildroot-*.tar.xz` next to the
checkout in `../shared/buildroot/`) is unpacked once into the cache under its SHA256.
`packages` asks Buildroot itself (`make show-info`) which packages a configuration builds,
with each one's version, source file, download directory, hash files and patches.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .. import BUILDROOT_CONFIG_DIR, REPO_ROOT
from ..cache import cache_root, cached_dir, hash_file, hash_inputs
from ..errors import BuildError, CommandFailed, UserError
from ..proc import run

log = logging.getLogger(__name__)

UNPACK_TIMEOUT = 600.0
SHOW_INFO_TIMEOUT = 900.0
EXTERNAL_DIR = BUILDROOT_CONFIG_DIR
DEFCONFIG = EXTERNAL_DIR / "configs" / "kjlab_i386_defconfig"


def buildroot_root() -> Path:
    """Where the lab keeps Buildroot's output, sources and download directory."""
    path = cache_root() / "buildroot"
    path.mkdir(parents=True, exist_ok=True)
    return path


def release_tarball() -> Path:
    """The Buildroot release to build with: $KJLAB_BUILDROOT, else the newest one in
    ../shared/buildroot/ next to the checkout."""
    if env := os.environ.get("KJLAB_BUILDROOT"):
        path = Path(env)
        if not path.is_file():
            raise UserError(f"KJLAB_BUILDROOT={env}: not a file (a Buildroot release tarball, "
                            "e.g. buildroot-2026.05.1.tar.xz from buildroot.org)")
        return path
    shared = REPO_ROOT.parent / "shared" / "buildroot"
    found = sorted(shared.glob("buildroot-*.tar.*"))
    if not found:
        raise UserError(f"no Buildroot release: set KJLAB_BUILDROOT to a release tarball "
                        f"(https://buildroot.org/downloads/) or put one in {shared}")
    return found[-1]


@dataclass(frozen=True)
class Tree:
    path: Path  # the unpacked release (its top directory)
    tarball: Path
    sha256: str

    @property
    def version(self) -> str:
        return self.path.name.removeprefix("buildroot-")


def unpack(tarball: Path, log_path: Path | None = None) -> Tree:
    """The release unpacked in the cache (once per tarball content)."""
    sha = hash_file(tarball)

    def build(out: Path) -> None:
        run(["tar", "-xf", str(tarball), "-C", str(out)], log_path=log_path, timeout=UNPACK_TIMEOUT)

    final, cached = cached_dir("buildroot/tree", sha[:16], build)
    tops = [p for p in final.iterdir() if p.is_dir()]
    if len(tops) != 1 or not (tops[0] / "Makefile").is_file():
        raise BuildError(f"{tarball}: not a Buildroot release (expected one top directory with a Makefile)")
    log.info("Buildroot %s %s (%s)", tops[0].name, "cached" if cached else "unpacked", final)
    return Tree(tops[0], tarball, sha)


@dataclass(frozen=True)
class Package:
    """One package of a configuration, as Buildroot's show-info describes it."""

    name: str  # "busybox", "host-tar", "libzlib"
    version: str
    dl_dir: str  # subdirectory of BR2_DL_DIR
    sources: tuple[str, ...]  # file names Buildroot downloads
    hash_files: tuple[str, ...]  # relative to the tree
    patches: tuple[str, ...]  # relative to the tree
    kind: str  # "target", "host", "toolchain"

    @property
    def raw_name(self) -> str:
        return self.name.removeprefix("host-")

    @property
    def override_var(self) -> str:
        return self.name.upper().replace("-", "_") + "_OVERRIDE_SRCDIR"


def expected_hashes(tree: Tree, pkg: Package, filename: str) -> dict[str, str]:
    """{algorithm: hex} that Buildroot's .hash files give for `filename`."""
    found: dict[str, str] = {}
    for rel in pkg.hash_files:
        path = tree.path / rel
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            fields = line.split()
            if len(fields) == 3 and not line.startswith("#") and fields[2] == filename:
                found[fields[0]] = fields[1]
    return found


def matches_hashes(tree: Tree, pkg: Package, filename: str, path: Path) -> bool:
    """True when Buildroot's .hash files list `filename` and every line for it matches the
    file at `path`: it is Buildroot's own file, byte for byte."""
    hashes = expected_hashes(tree, pkg, filename)
    if not hashes:
        return False
    for algo, hexdigest in hashes.items():
        if algo not in hashlib.algorithms_available:
            return False
        h = hashlib.new(algo)
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        if h.hexdigest() != hexdigest:
            return False
    return True


def configure(tree: Tree, out: Path, config_text: str, externals: tuple[Path, ...],
              log_path: Path | None = None) -> None:
    """Write `config_text` as out/.config and let Buildroot complete it (olddefconfig), with
    the recipe's BR2_EXTERNAL tree and `externals` after it."""
    out.mkdir(parents=True, exist_ok=True)
    (out / ".config").write_text(config_text)
    trees = ":".join(str(p) for p in (EXTERNAL_DIR, *externals))
    run(["make", "-C", str(tree.path), f"O={out}", f"BR2_EXTERNAL={trees}", "olddefconfig"],
        log_path=log_path, timeout=SHOW_INFO_TIMEOUT)


def packages(tree: Tree, config_text: str, externals: tuple[Path, ...] = (),
             log_path: Path | None = None) -> list[Package]:
    """The packages the configuration builds that download something (cached per tree and
    configuration: show-info takes half a minute)."""
    memo = buildroot_root() / "show-info" / (hash_inputs({"tree": tree.sha256, "config": config_text,
                                                          "external": external_files(),
                                                          "externals": [str(p) for p in externals]}) + ".json")
    if not memo.is_file():
        memo.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="br-info-", dir=buildroot_root()) as scratch:
            configure(tree, Path(scratch), config_text, externals, log_path)
            try:
                info = run(["make", "-s", "-C", str(tree.path), f"O={scratch}", "show-info"],
                           timeout=SHOW_INFO_TIMEOUT)
            except CommandFailed as exc:
                raise BuildError(f"Buildroot's show-info failed for the configuration:\n{exc.log_tail}") from exc
        tmp = memo.with_name(memo.name + f".{os.getpid()}")
        tmp.write_text(info)
        os.replace(tmp, memo)
    text = memo.read_text()
    data = json.loads(text[text.index("{"):])  # after any warning make printed first
    found = []
    for name, p in sorted(data.items()):
        downloads = p.get("downloads") or []
        if not downloads or p.get("virtual"):
            continue
        found.append(Package(name=name, version=str(p.get("version", "")), dl_dir=str(p.get("dl_dir", name)),
                             sources=tuple(str(d["source"]) for d in downloads),
                             hash_files=tuple(p.get("hashes") or ()), patches=tuple(p.get("patches") or ()),
                             kind=str(p.get("type", ""))))
    return found


# what Buildroot reads of the BR2_EXTERNAL tree when the lab builds (the defconfig comes as
# the configuration's text; the overlay and post-build script are the lab's to apply)
EXTERNAL_BUILD_FILES = ("external.desc", "external.mk", "Config.in")


def external_files() -> dict[str, str]:
    return {name: hash_file(EXTERNAL_DIR / name) for name in EXTERNAL_BUILD_FILES}
