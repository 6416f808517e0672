"""Kernel sources other than Debian's: a local tree and a tarball, found and versioned."""

import subprocess
from pathlib import Path

import pytest

from lab.artifacts.kernel import KernelSpec, _tree_version, kernel_series, resolve_patch, source_tree
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
    assert got == tree and version.startswith("files:")
    with pytest.raises(UserError, match="not a Linux source tree"):
        source_tree(KernelSpec(f"tree:{tmp_path}", "i386", (), ()), None)
    with pytest.raises(UserError, match="expected 'debian:PACKAGE"):
        source_tree(KernelSpec("ftp:somewhere", "i386", (), ()), None)
    with pytest.raises(UserError, match="no such file"):
        source_tree(KernelSpec(f"tarball:{tmp_path}/nope.tar.xz", "i386", (), ()), None)


def test_series_specific_patch_overrides_the_generic_one():
    name = "0001-x86-kexec-32-reload-gdt-before-restore-processor-state.patch"
    assert resolve_patch(name, "7.2").parent.name == "patches"  # the upstream form
    assert resolve_patch(name, "6.12").parent.name == "6.12"  # the backport
    assert resolve_patch(name, "6.1").parent.name == "6.1"  # a link to 6.12's: one copy
    assert resolve_patch(name, "6.1").resolve() == resolve_patch(name, "6.12").resolve()
    with pytest.raises(UserError, match="available: 0001"):
        resolve_patch("9999-nothing.patch", "6.1")


def git(tree: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(tree), "-c", "user.name=t", "-c", "user.email=t@t", *args], check=True,
                   capture_output=True)


def test_git_tree_key_follows_edits_and_untracked_files(tmp_path):
    """`git describe --dirty` gave one key to every edit: a second edit reused the first
    edit's kernel. The key is HEAD plus the diff plus the untracked files."""
    tree = fake_tree(tmp_path / "linux")
    (tree / "kernel.c").write_text("int x = 1;\n")
    (tree / ".gitignore").write_text("*.o\n")
    git(tree, "init", "-q")
    git(tree, "add", ".")
    git(tree, "commit", "-q", "-m", "base")
    clean = _tree_version(tree)
    assert clean.startswith("git:") and clean == _tree_version(tree)  # stable when nothing changed

    (tree / "kernel.c").write_text("int x = 2;\n")  # an edit of a tracked file
    edit1 = _tree_version(tree)
    (tree / "kernel.c").write_text("int x = 3;\n")  # another edit: another key
    edit2 = _tree_version(tree)
    assert len({clean, edit1, edit2}) == 3 and edit2 == _tree_version(tree)

    (tree / "kernel.c").write_text("int x = 1;\n")  # back to HEAD's content: HEAD's key
    assert _tree_version(tree) == clean

    (tree / "new.c").write_text("int y;\n")  # a new untracked file
    untracked = _tree_version(tree)
    assert untracked != clean
    (tree / "new.c").write_text("int y = 1;\n")  # its content counts too
    assert _tree_version(tree) not in (clean, untracked)
    (tree / "new.c").unlink()
    (tree / "built.o").write_bytes(b"\x7fELF")  # an ignored file (build output) does not
    assert _tree_version(tree) == clean

    (tree / "kernel.c").write_text("int x = 2;\n")
    git(tree, "commit", "-q", "-a", "-m", "next")  # a new commit: a new key, stable again
    committed = _tree_version(tree)
    assert committed not in (clean, edit1) and committed == _tree_version(tree)


def test_plain_tree_key_follows_file_changes(tmp_path):
    tree = fake_tree(tmp_path / "linux")
    (tree / "kernel.c").write_text("int x = 1;\n")
    first = _tree_version(tree)
    assert first.startswith("files:") and first == _tree_version(tree)
    (tree / "kernel.c").write_text("int x = 22;\n")
    assert _tree_version(tree) != first
    (tree / "extra.c").write_text("")
    assert len({first, _tree_version(tree)}) == 2


def test_a_failed_build_names_its_error_lines() -> None:
    from lab.artifacts.kernel import failure_lines

    patch_log = ("$ patch -p1 -d src -i fix.patch\npatching file a.c\n$ patch -p1 -d src -i broken.patch\n"
                 "can't find file to patch at input line 3\nPerhaps you used the wrong -p or --strip option?\n"
                 "1 out of 1 hunk ignored\n")
    assert failure_lines(patch_log) == ["can't find file to patch at input line 3", "1 out of 1 hunk ignored"]
    make_log = "$ make bzImage\n  CC kernel/a.o\nkernel/a.c:3:1: error: expected ';'\nmake[2]: *** [a.o] Error 1\n"
    assert failure_lines(make_log) == ["kernel/a.c:3:1: error: expected ';'", "make[2]: *** [a.o] Error 1"]
    assert failure_lines("$ tar xf src.tar.xz\ntar: unexpected end of file\n") == ["tar: unexpected end of file"]
