"""The Buildroot recipe's pieces that need no build: the configuration the lab builds, the
offline layer's choices, the deb-src lists, the image packing, the scenario keys."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lab import debian_archive as debian
from lab.artifacts.initramfs import list_image
from lab.buildroot import tree as br_tree
from lab.buildroot.build import config_text
from lab.buildroot.debian_sources import DEBIAN_SOURCE, _same_as_upstream, version_distance
from lab.buildroot.image import pack_target
from lab.errors import ScenarioError, UserError
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
    import hashlib

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
    (target / "bin/busybox").write_bytes(b"\x7fELF")
    (target / "bin/sh").symlink_to("busybox")
    (target / "dev").mkdir()
    (target / "init").write_text("buildroot's\n")
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "init").write_text("#!/bin/sh\n")
    (rootfs / "init").chmod(0o755)
    (rootfs / "bin/kj-helper").write_text("#!/bin/sh\n")
    prog = tmp_path / "kj-proof"
    prog.write_bytes(b"\x7fELF prog")
    image = tmp_path / "out/initramfs.gz"
    image.parent.mkdir()
    pack_target(target, rootfs, {"bin/kj-proof": prog}, image)
    names = list_image(image)
    assert {"init", "bin/busybox", "bin/sh", "bin/kj-helper", "bin/kj-proof", "dev/console"} <= set(names)
    assert names.index("dev") < names.index("dev/console")
    assert (target / "init").read_text() == "buildroot's\n"  # Buildroot's tree is left as it was


def test_pack_target_refuses_an_unfinished_tree(tmp_path: Path) -> None:
    from lab.errors import BuildError

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
