"""Kernel sources other than Debian's: a local tree and a tarball, found and versioned."""

import subprocess
from pathlib import Path

import pytest

from lab.build.kernel import KernelSpec, kernel_series, resolve_patch, source_tree
from lab.errors import UserError


def fake_tree(root: Path) -> Path:
    (root / "arch" / "x86").mkdir(parents=True)
    (root / "Makefile").write_text("# SPDX\nVERSION = 6\nPATCHLEVEL = 9\nSUBLEVEL = 3\n")
    return root


def test_tarball_is_unpacked_once_and_versioned_by_content(tmp_path, monkeypatch):
    monkeypatch.setenv("KJLAB_CACHE", str(tmp_path / "cache"))
    fake_tree(tmp_path / "linux-6.9.3")
    tarball = tmp_path / "linux-6.9.3.tar.xz"
    subprocess.run(["tar", "-cJf", str(tarball), "-C", str(tmp_path), "linux-6.9.3"], check=True)
    tree, version = source_tree(KernelSpec(f"tarball:{tarball}", "i386", (), ()), None)
    assert kernel_series(tree) == "6.9" and version.startswith("tarball:")
    again, version2 = source_tree(KernelSpec(f"tarball:{tarball}", "i386", (), ()), None)
    assert (again, version2) == (tree, version)


def test_local_tree_and_bad_sources(tmp_path):
    tree = fake_tree(tmp_path / "linux")
    got, version = source_tree(KernelSpec(f"tree:{tree}", "i386", (), ()), None)
    assert got == tree and version.startswith("makefile:")
    with pytest.raises(UserError, match="not a Linux source tree"):
        source_tree(KernelSpec(f"tree:{tmp_path}", "i386", (), ()), None)
    with pytest.raises(UserError, match="expected 'debian:PACKAGE"):
        source_tree(KernelSpec("ftp:somewhere", "i386", (), ()), None)
    with pytest.raises(UserError, match="no such file"):
        source_tree(KernelSpec(f"tarball:{tmp_path}/nope.tar.xz", "i386", (), ()), None)


def test_series_specific_patch_overrides_the_generic_one():
    name = "0001-x86-kexec-32-reload-gdt-before-restore-processor-state.patch"
    assert resolve_patch(name, "7.2").parent.name == "7.2"
    assert resolve_patch(name, "6.1").parent.name == "patches"
    with pytest.raises(UserError, match="available: 0001"):
        resolve_patch("9999-nothing.patch", "6.1")
