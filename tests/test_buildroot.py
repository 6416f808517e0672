"""The Buildroot recipe's pieces that need no build: the configuration the lab builds, the
offline layer's choices, the deb-src lists, the image packing, the scenario keys."""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from lab import debian_archive as debian
from lab.artifacts.initramfs import list_image
from lab.buildroot import tree as br_tree
from lab.buildroot.build import config_text
from lab.buildroot import vendored
from lab.buildroot.debian_sources import DEBIAN_SOURCE, _same_as_upstream, provide, version_distance
from lab.buildroot.image import check_programs_load, pack_target
from lab.errors import BuildError, ScenarioError, UserError
from lab.proc import run
from lab.scenario import scenario_from_dict


def test_config_leaves_out_rootfs_overlay_and_the_packages_asked() -> None:
    text = config_text(("makedumpfile",))
    assert "BR2_PACKAGE_MAKEDUMPFILE=y" not in text and "# BR2_PACKAGE_MAKEDUMPFILE is not set" in text
    assert "BR2_TARGET_ROOTFS_CPIO=y" not in text and "# BR2_TARGET_ROOTFS_CPIO is not set" in text
    assert 'BR2_ROOTFS_OVERLAY=""' in text and "BR2_PACKAGE_BUSYBOX=y" in text and "BR2_PACKAGE_KEXEC=y" in text
    assert "BR2_PACKAGE_MAKEDUMPFILE=y" in config_text(())
    with pytest.raises(UserError):
        config_text(("../x",))


def test_the_recipe_defconfig_stands_alone() -> None:
    """The defconfig a user builds by hand keeps its rootfs image and overlay: the lab's
    changes are made on a copy."""
    text = br_tree.DEFCONFIG.read_text()
    assert "BR2_TARGET_ROOTFS_CPIO=y" in text and "BR2_ROOTFS_OVERLAY=" in text
    assert "BR2_PACKAGE_MAKEDUMPFILE=y" in text and "BR2_DL_DIR" not in text and "OVERRIDE" not in text


def test_nearest_debian_version_first() -> None:
    def order(have: list[str], want: str) -> list[str]:
        return sorted(have, key=lambda v: version_distance(v, want))

    assert order(["0.18.0", "0.14.3"], "0.13") == ["0.14.3", "0.18.0"]
    assert order(["2.6.2", "2.5.4", "2.4.7"], "2.4.6") == ["2.4.7", "2.5.4", "2.6.2"]
    assert order(["1.37.0", "1.38.0", "1.35.0"], "1.38.0")[0] == "1.38.0"
    assert version_distance("1.3.dfsg+really1.3.2", "1.3.2") == (1, 0, 0, 0)  # a repack, not the same file


def test_every_debian_source_name_is_valid() -> None:
    for name in DEBIAN_SOURCE.values():
        assert debian.check_spec(name) == name


def test_deb_src_lines(tmp_path: Path) -> None:
    sources = tmp_path / "debian.sources"
    sources.write_text("Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\nComponents: main\n")
    assert debian.sources_lines("sid", sources, kind="deb-src") == ["deb-src http://mirror.example/debian sid main"]
    opts = debian.apt_options("sid", debian.SOURCE)
    assert not any(o.startswith("APT::Architecture") for o in opts)
    assert str(debian.apt_dir("sid", debian.SOURCE)).endswith("apt/sid-source")


def test_source_package_tarballs() -> None:
    files = (debian.SourceFile("busybox_1.38.0-3.dsc", 1, "a" * 64),
             debian.SourceFile("busybox_1.38.0.orig.tar.bz2", 2, "b" * 64),
             debian.SourceFile("busybox_1.38.0.orig.tar.bz2.asc", 3, "c" * 64),
             debian.SourceFile("busybox_1.38.0-3.debian.tar.xz", 4, "d" * 64))
    src = debian.SourcePackage("busybox", "1:1.38.0-3", "sid", files)
    assert src.upstream_version == "1.38.0"
    assert [f.name for f in src.orig_tarballs] == ["busybox_1.38.0.orig.tar.bz2"]
    native = debian.SourcePackage("x", "1.2", "sid", (debian.SourceFile("x_1.2.tar.xz", 1, "e" * 64),))
    assert native.upstream_version == "1.2" and [f.name for f in native.orig_tarballs] == ["x_1.2.tar.xz"]


def test_byte_identical_only_when_every_hash_matches(tmp_path: Path) -> None:
    (tmp_path / "package/foo").mkdir(parents=True)
    tarball = tmp_path / "foo_1.0.orig.tar.gz"
    tarball.write_bytes(b"upstream bytes")
    sha256 = hashlib.sha256(b"upstream bytes").hexdigest()
    sha512 = hashlib.sha512(b"upstream bytes").hexdigest()
    hash_file = tmp_path / "package/foo/foo.hash"
    tree = br_tree.Tree(tmp_path, tmp_path / "br.tar.xz", "0" * 64)
    pkg = br_tree.Package("foo", "1.0", "foo", ("foo-1.0.tar.gz",), ("package/foo/foo.hash",), (), "target")
    hash_file.write_text(f"# from upstream\nsha256  {sha256}  foo-1.0.tar.gz\nsha512  {sha512}  foo-1.0.tar.gz\n")
    assert br_tree.expected_hashes(tree, pkg, "foo-1.0.tar.gz") == {"sha256": sha256, "sha512": sha512}
    assert _same_as_upstream(tree, pkg, "foo-1.0.tar.gz", tarball)
    hash_file.write_text(f"sha256  {sha256}  foo-1.0.tar.gz\nsha512  {'0' * 128}  foo-1.0.tar.gz\n")
    assert not _same_as_upstream(tree, pkg, "foo-1.0.tar.gz", tarball)
    hash_file.write_text("sha256  " + "0" * 64 + "  foo-1.0.tar.gz\n")
    assert not _same_as_upstream(tree, pkg, "foo-1.0.tar.gz", tarball)
    assert pkg.override_var == "FOO_OVERRIDE_SRCDIR"
    assert br_tree.Package("host-tar", "1.35", "tar", (), (), (), "host").override_var == "HOST_TAR_OVERRIDE_SRCDIR"


def test_pack_target_puts_rootfs_and_progs_over_buildroot(tmp_path: Path) -> None:
    target, rootfs = tmp_path / "target", tmp_path / "rootfs"
    (target / "bin").mkdir(parents=True)
    (target / "bin/busybox").write_bytes(b"busybox")  # not ELF: the programs' check has nothing to load
    (target / "bin/sh").symlink_to("busybox")
    (target / "dev").mkdir()
    (target / "init").write_text("buildroot's\n")
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "init").write_text("#!/bin/sh\n")
    (rootfs / "init").chmod(0o755)
    (rootfs / "bin/kj-helper").write_text("#!/bin/sh\n")
    prog = tmp_path / "kj-proof"
    prog.write_bytes(b"prog")
    image = tmp_path / "out/initramfs.gz"
    image.parent.mkdir()
    pack_target(target, rootfs, {"bin/kj-proof": prog}, image)
    names = list_image(image)
    assert {"init", "bin/busybox", "bin/sh", "bin/kj-helper", "bin/kj-proof", "dev/console"} <= set(names)
    assert names.index("dev") < names.index("dev/console")
    assert (target / "init").read_text() == "buildroot's\n"  # Buildroot's tree is left as it was


def test_pack_target_refuses_an_unfinished_tree(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="not a finished Buildroot target tree"):
        pack_target(tmp_path, tmp_path, {}, tmp_path / "x.gz")


def _scenario(guest: dict[str, object], flow: dict[str, object] | None = None) -> object:
    return scenario_from_dict({"guest": guest, "flow": flow or {}}, Path("s.toml"))


def test_scenario_guest_keys() -> None:
    sc = _scenario({"recipe": "buildroot", "buildroot_without": ["makedumpfile"]})
    assert sc.guest.recipe == "buildroot" and sc.guest.buildroot_without == ("makedumpfile",)  # type: ignore[attr-defined]
    with pytest.raises(ScenarioError, match="only makedumpfile"):
        _scenario({"recipe": "buildroot", "buildroot_without": ["busybox"]})
    with pytest.raises(ScenarioError, match="only with recipe"):
        _scenario({"buildroot_without": ["makedumpfile"]})
    with pytest.raises(ScenarioError, match="Debian packages"):
        _scenario({"recipe": "buildroot", "extra_packages": ["strace"]})
    with pytest.raises(ScenarioError, match="flow.save"):
        _scenario({"recipe": "buildroot", "buildroot_without": ["makedumpfile"]}, {"save": "makedumpfile"})


def test_release_tarball_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KJLAB_BUILDROOT", str(tmp_path / "missing.tar.xz"))
    with pytest.raises(UserError, match="KJLAB_BUILDROOT"):
        br_tree.release_tarball()
    (tmp_path / "buildroot-2026.05.1.tar.xz").write_bytes(b"")
    monkeypatch.setenv("KJLAB_BUILDROOT", str(tmp_path / "buildroot-2026.05.1.tar.xz"))
    assert br_tree.release_tarball() == tmp_path / "buildroot-2026.05.1.tar.xz"
    monkeypatch.setenv("KJLAB_BUILDROOT_SOURCES", "ftp")
    from lab.buildroot.build import sources_mode

    with pytest.raises(UserError, match="KJLAB_BUILDROOT_SOURCES"):
        sources_mode()
    assert os.environ["KJLAB_BUILDROOT_SOURCES"] == "ftp"


def test_offline_toolchain_replaces_the_recipes() -> None:
    from lab.buildroot import debian_toolchain
    from lab.buildroot.build import with_toolchain

    config = with_toolchain(config_text(()), debian_toolchain.config_lines(Path("/cache/tc/usr")))
    assert "BOOTLIN" not in config and 'BR2_TOOLCHAIN_EXTERNAL_PATH="/cache/tc/usr"' in config
    assert "BR2_TOOLCHAIN_EXTERNAL_CUSTOM_GLIBC=y" in config and "BR2_PACKAGE_KEXEC=y" in config
    assert config.count("BR2_TOOLCHAIN_EXTERNAL=y") == 1
    assert (debian_toolchain.EXTERNAL / "external.mk").read_text().count("check_unusable_toolchain =") == 1


# -- vendored sources (buildroot-offline/dl) ---------------------------------------------

MAKEDUMPFILE = br_tree.Package("makedumpfile", "1.7.8", "makedumpfile", ("makedumpfile-1.7.8.tar.gz",),
                               ("package/makedumpfile/makedumpfile.hash",), (), "target")
VENDORED_MAKEDUMPFILE = vendored.VENDORED_DIR / "makedumpfile" / "makedumpfile-1.7.8.tar.gz"
MAKEDUMPFILE_SHA256 = "b54e88bef256c589eb4adce17bc856da898a762626fe54f76a77a7f22ad9a844"  # Buildroot 2026.05.1


def _release_with_hash(tmp_path: Path, hash_text: str) -> br_tree.Tree:
    """A Buildroot tree with only the makedumpfile .hash file (as Buildroot 2026.05.1 has it)."""
    (tmp_path / "br/package/makedumpfile").mkdir(parents=True)
    (tmp_path / "br/package/makedumpfile/makedumpfile.hash").write_text(hash_text)
    return br_tree.Tree(tmp_path / "br", tmp_path / "br.tar.xz", "0" * 64)


HASH_2026_05_1 = (f"# Locally computed:\nsha256  {MAKEDUMPFILE_SHA256}  makedumpfile-1.7.8.tar.gz\n"
                  "sha256  ab15fd526bd8dd18a9e77ebc139656bf4d33e97fc7238cd11bf60e2b9b8666c6  COPYING\n")


def test_vendored_makedumpfile_goes_to_the_dl_dir_before_debian(tmp_path: Path) -> None:
    """The project's copy is taken as it is (no Debian look-up: this test has no apt lists),
    into BR2_DL_DIR, and the record says where it comes from."""
    tree = _release_with_hash(tmp_path, HASH_2026_05_1)
    provided = provide(tree, [MAKEDUMPFILE])
    assert provided.dl_files == {"makedumpfile/makedumpfile-1.7.8.tar.gz": VENDORED_MAKEDUMPFILE}
    assert not provided.overrides
    record = provided.record["makedumpfile"]
    assert record["version"] == "1.7.8" and record["sha256"] == MAKEDUMPFILE_SHA256
    assert record["vendored"] == "buildroot-offline/dl/makedumpfile/makedumpfile-1.7.8.tar.gz"
    assert "tag 1.7.8" in record["origin"] and "65e0b5488ffe840035c6e165a5149dc5da769d97" in record["origin"]
    assert "vendored in kjlab" in record["used_as"] and "Buildroot's hash" in record["used_as"]
    dl = tmp_path / "dl"
    from lab.buildroot.debian_sources import write_inputs

    write_inputs(provided, dl, tmp_path / "override.mk")
    assert hashlib.sha256((dl / "makedumpfile/makedumpfile-1.7.8.tar.gz").read_bytes()).hexdigest() == MAKEDUMPFILE_SHA256


def test_a_vendored_file_that_does_not_match_is_refused(tmp_path: Path) -> None:
    tree = _release_with_hash(tmp_path, HASH_2026_05_1)
    kept = tmp_path / "dl/makedumpfile"
    kept.mkdir(parents=True)
    data = bytearray(VENDORED_MAKEDUMPFILE.read_bytes())
    data[1000] ^= 0xFF
    (kept / "makedumpfile-1.7.8.tar.gz").write_bytes(bytes(data))
    shutil.copy(VENDORED_MAKEDUMPFILE.with_name("makedumpfile-1.7.8.tar.gz.origin"), kept)
    with pytest.raises(BuildError, match=r"makedumpfile 1\.7\.8: vendored .*makedumpfile-1\.7\.8\.tar\.gz does not "
                                         r"match Buildroot's hash \(sha256 b54e88be"):
        provide(tree, [MAKEDUMPFILE], vendored_dir=tmp_path / "dl")
    # the right bytes pass, from the same place
    (kept / "makedumpfile-1.7.8.tar.gz").write_bytes(VENDORED_MAKEDUMPFILE.read_bytes())
    assert provide(tree, [MAKEDUMPFILE], vendored_dir=tmp_path / "dl").dl_files
    # a release whose .hash has no line for the file cannot check it: refused too
    (tree.path / "package/makedumpfile/makedumpfile.hash").write_text("sha256  " + "0" * 64 + "  COPYING\n")
    with pytest.raises(BuildError, match="makedumpfile 1.7.8: vendored .* is not checked by Buildroot"):
        provide(tree, [MAKEDUMPFILE], vendored_dir=tmp_path / "dl")
    # and one without its .origin, which the provenance quotes
    (tree.path / "package/makedumpfile/makedumpfile.hash").write_text(HASH_2026_05_1)
    (kept / "makedumpfile-1.7.8.tar.gz.origin").unlink()
    with pytest.raises(BuildError, match="makedumpfile 1.7.8: vendored .* has no makedumpfile-1.7.8.tar.gz.origin"):
        provide(tree, [MAKEDUMPFILE], vendored_dir=tmp_path / "dl")


def test_a_vendored_file_of_another_version_is_not_taken(tmp_path: Path) -> None:
    pkg = br_tree.Package("makedumpfile", "1.7.9", "makedumpfile", ("makedumpfile-1.7.9.tar.gz",),
                          ("package/makedumpfile/makedumpfile.hash",), (), "target")
    assert vendored.vendored_file(pkg, "makedumpfile-1.7.9.tar.gz") is None
    assert vendored.vendored_file(MAKEDUMPFILE, "makedumpfile-1.7.8.tar.gz") == VENDORED_MAKEDUMPFILE


def test_every_vendored_file_matches_the_release_in_shared() -> None:
    """Each file in buildroot-offline/dl against the .hash of the Buildroot release the lab
    builds with (read from the tarball, not unpacked)."""
    try:
        release = br_tree.release_tarball()
    except UserError:
        pytest.skip("no Buildroot release tarball (../shared/buildroot or KJLAB_BUILDROOT)")
    kept = {p.relative_to(vendored.VENDORED_DIR).as_posix(): p for p in vendored.VENDORED_DIR.glob("*/*")
            if p.is_file() and not p.name.endswith(".origin")}
    assert "makedumpfile/makedumpfile-1.7.8.tar.gz" in kept
    hashes: dict[str, str] = {}
    with tarfile.open(release, "r|*") as tar:
        for member in tar:
            if member.isfile() and member.name.endswith(".hash") and "/package/" in member.name:
                f = tar.extractfile(member)
                assert f is not None
                for line in f.read().decode(errors="replace").splitlines():
                    fields = line.split()
                    if len(fields) == 3 and fields[0] == "sha256" and fields[2] in {Path(k).name for k in kept}:
                        hashes[fields[2]] = fields[1]
    for rel, path in kept.items():
        assert hashes.get(path.name) == hashlib.sha256(path.read_bytes()).hexdigest(), rel
        assert path.with_name(path.name + ".origin").is_file(), rel


# -- every program of the image finds what it loads ---------------------------------------

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")


@needs_gcc
def test_programs_find_their_interpreter_and_libraries(tmp_path: Path) -> None:
    """A target tree laid out as Buildroot's (lib/, usr/lib/, usr/sbin/): a dynamic program,
    a static one, a script; then the library goes missing."""
    build, root = tmp_path / "build", tmp_path / "root"
    build.mkdir()
    (build / "z.c").write_text("int z(void) { return 1; }\n")
    (build / "main.c").write_text("int z(void); int main(void) { return z(); }\n")
    gcc = ["gcc", "-nostdlib", "-fPIC"]  # no libc: the closure is exactly what is built here
    run([*gcc, "-shared", "-Wl,-soname,libz.so.1", "-o", "libz.so.1.3", "z.c"], cwd=build)
    run([*gcc, "-Wl,-e,main", "-Wl,--dynamic-linker=/lib/ld-linux.so.2", "-o", "makedumpfile", "main.c",
         "-L.", "-l:libz.so.1.3"], cwd=build)
    run([*gcc, "-static", "-Wl,-e,z", "-o", "kj-proof", "z.c"], cwd=build)
    for d in ("lib", "usr/lib", "usr/sbin", "bin"):
        (root / d).mkdir(parents=True)
    shutil.copy(build / "makedumpfile", root / "usr/sbin/makedumpfile")
    shutil.copy(build / "kj-proof", root / "bin/kj-proof")
    shutil.copy(build / "libz.so.1.3", root / "usr/lib/libz.so.1.3")
    (root / "usr/lib/libz.so.1").symlink_to("libz.so.1.3")
    shutil.copy(build / "libz.so.1.3", root / "lib/ld-linux.so.2")  # any ELF will do
    (root / "bin/sh").symlink_to("busybox")
    (root / "bin/kj-helper").write_text("#!/bin/sh\n")
    (root / "sbin").symlink_to("bin")  # a merged directory is looked at once
    assert check_programs_load(root) == {"bin/kj-proof": (), "usr/sbin/makedumpfile": ("lib/ld-linux.so.2",
                                                                                         "usr/lib/libz.so.1")}
    (root / "usr/lib/libz.so.1.3").unlink()
    with pytest.raises(BuildError, match=r"would not run usr/sbin/makedumpfile: .*needs libz\.so\.1, not found in "
                                         r"lib, usr/lib of the image"):
        check_programs_load(root)
