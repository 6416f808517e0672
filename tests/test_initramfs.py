"""Initramfs pieces on real files: the newc writer against cpio(1), the ELF closure against
ELF files built with the host's gcc (and Debian's i386 packages when the cache has them)."""

from __future__ import annotations

import gzip
import os
import shutil
import stat
from pathlib import Path

import pytest

from lab import debian_archive as debian
from lab.arch import Arch
from lab.artifacts.initramfs import (
    CpioEntry,
    append_gzip_cpio,
    elf_closure,
    is_library_package,
    list_image,
    resolve_in_root,
    search_dirs,
    tree_entries,
    write_cpio,
)
from lab.errors import BuildError
from lab.proc import run

needs_cpio = pytest.mark.skipif(shutil.which("cpio") is None, reason="cpio(1) not installed")
needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")


# -- cpio ---------------------------------------------------------------------------------


def _sample_tree(root: Path) -> None:
    (root / "bin").mkdir(parents=True)
    (root / "bin/tool").write_text("#!/bin/sh\necho tool\n")
    (root / "bin/tool").chmod(0o700)  # normalized to 755 in the archive
    (root / "etc").mkdir()
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc/odd size").write_bytes(b"x" * 4097)
    (root / "empty").mkdir()
    (root / "bin/sh").symlink_to("/bin/busybox")
    (root / "init").write_text("#!/bin/busybox sh\n")
    (root / "init").chmod(0o755)


@needs_cpio
def test_cpio_roundtrip_with_cpio_tool(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    _sample_tree(src)
    archive = tmp_path / "a.cpio"
    entries = tree_entries(src)
    with open(archive, "wb") as f:
        write_cpio(entries, f)

    listed = run(["cpio", "-t", "--quiet", "-F", str(archive)]).split("\n")
    assert [n for n in listed if n] == [e.name for e in entries]

    out.mkdir()
    run(["cpio", "-i", "-d", "--quiet", "--no-absolute-filenames", "-F", str(archive)], cwd=out)
    for e in entries:
        got = out / e.name
        if stat.S_ISLNK(e.mode):
            assert os.readlink(got) == os.readlink(src / e.name)
        elif stat.S_ISREG(e.mode):
            assert got.read_bytes() == (src / e.name).read_bytes()
            assert stat.S_IMODE(got.stat().st_mode) == stat.S_IMODE(e.mode)
        else:
            assert got.is_dir()
    assert stat.S_IMODE((out / "bin/tool").stat().st_mode) == 0o755
    assert stat.S_IMODE((out / "etc/passwd").stat().st_mode) == 0o644


@needs_cpio
def test_cpio_owner_mtime_and_device_node(tmp_path: Path) -> None:
    archive = tmp_path / "a.cpio"
    entries = [CpioEntry("dev", stat.S_IFDIR | 0o755), CpioEntry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))]
    with open(archive, "wb") as f:
        write_cpio(entries, f)
    lines = run(["cpio", "-t", "-v", "--quiet", "-F", str(archive)]).splitlines()
    console = next(line for line in lines if line.endswith("dev/console"))
    assert console.startswith("crw-------")
    assert " root " in console and "5,   1" in console and "1970" in console


def test_gzip_members_concatenate_and_are_deterministic(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _sample_tree(src)
    image, again = tmp_path / "img.gz", tmp_path / "again.gz"
    for path in (image, again):
        append_gzip_cpio(tree_entries(src), path)
    assert image.read_bytes() == again.read_bytes()  # same inputs, same bytes

    payload = tmp_path / "payload.bin"
    payload.write_bytes(os.urandom(10_000))
    append_gzip_cpio([CpioEntry("boot", stat.S_IFDIR | 0o755),
                      CpioEntry("boot/blob", stat.S_IFREG | 0o644, source=payload)], image)
    names = list_image(image)
    assert names[: len(tree_entries(src))] == [e.name for e in tree_entries(src)]
    assert names[-2:] == ["boot", "boot/blob"]
    with gzip.open(image) as f:  # two gzip members, one stream for a reader
        assert payload.read_bytes() in f.read()


# -- resolving paths inside a sysroot -----------------------------------------------------


def test_resolve_in_root_stays_inside(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "lib/x").mkdir(parents=True)
    (root / "lib/x/real.so").write_text("x")
    (root / "lib/abs.so").symlink_to("/lib/x/real.so")  # absolute: meant inside root
    (root / "lib/rel.so").symlink_to("x/../x/real.so")
    (root / "lib/host").symlink_to("/etc/hostname")  # exists on the host, not in root
    (root / "lib/loop").symlink_to("loop")
    assert resolve_in_root(root, "/lib/abs.so") == root / "lib/x/real.so"
    assert resolve_in_root(root, "lib/rel.so") == root / "lib/x/real.so"
    assert resolve_in_root(root, "lib/host") is None
    assert resolve_in_root(root, "lib/loop") is None
    assert resolve_in_root(root, "lib/x") is None  # a directory is not a file


# -- ELF closure on ELF files built here --------------------------------------------------


def _gcc(args: list[str], cwd: Path) -> None:
    # -nostdlib: the fixtures need no libc, so the closure is exactly what is built here
    run(["gcc", "-nostdlib", "-fPIC", *args], cwd=cwd)


@pytest.fixture
def elf_sysroot(tmp_path: Path) -> Path:
    """prog -> libfoo.so.1 -> libbar.so.1, interpreter /lib/ld-test.so, in a fake sysroot."""
    build, root = tmp_path / "build", tmp_path / "root"
    build.mkdir()
    (build / "bar.c").write_text("int bar(void) { return 1; }\n")
    (build / "foo.c").write_text("int bar(void); int foo(void) { return bar() + 1; }\n")
    (build / "main.c").write_text("int foo(void); int main(void) { return foo(); }\n")
    _gcc(["-shared", "-Wl,-soname,libbar.so.1", "-o", "libbar.so.1.0", "bar.c"], build)
    _gcc(["-shared", "-Wl,-soname,libfoo.so.1", "-o", "libfoo.so.1.2", "foo.c", "-L.", "-l:libbar.so.1.0"], build)
    (build / "libbar.so.1").symlink_to("libbar.so.1.0")  # for -rpath-link: link time only
    _gcc(["-Wl,-e,main", "-Wl,--dynamic-linker=/lib/ld-test.so", "-Wl,-rpath-link,.", "-o", "prog", "main.c",
          "-L.", "-l:libfoo.so.1.2"], build)
    for d in ("usr/sbin", "lib/x", "usr/lib/x", "lib/real"):
        (root / d).mkdir(parents=True)
    shutil.copy(build / "prog", root / "usr/sbin/prog")
    shutil.copy(build / "libfoo.so.1.2", root / "lib/x/libfoo.so.1.2")
    (root / "lib/x/libfoo.so.1").symlink_to("/lib/x/libfoo.so.1.2")  # absolute, inside root
    shutil.copy(build / "libbar.so.1.0", root / "usr/lib/x/libbar.so.1.0")
    (root / "usr/lib/x/libbar.so.1").symlink_to("libbar.so.1.0")
    shutil.copy(build / "libbar.so.1.0", root / "lib/real/ld-test.so")  # any ELF will do
    (root / "lib/ld-test.so").symlink_to("real/ld-test.so")
    return root


@needs_gcc
def test_elf_closure_follows_needed_and_interp(elf_sysroot: Path) -> None:
    root = elf_sysroot
    closure = elf_closure(root, ["usr/sbin/prog"], ("lib/x", "usr/lib/x"))
    assert closure == {
        "lib/ld-test.so": root / "lib/real/ld-test.so",
        "lib/x/libfoo.so.1": root / "lib/x/libfoo.so.1.2",
        "usr/lib/x/libbar.so.1": root / "usr/lib/x/libbar.so.1.0",
    }


@needs_gcc
def test_elf_closure_search_order_and_machine(elf_sysroot: Path, tmp_path: Path) -> None:
    root = elf_sysroot
    # an earlier search dir wins ...
    (root / "lib/y").mkdir()
    shutil.copy(root / "usr/lib/x/libbar.so.1.0", root / "lib/y/libbar.so.1")
    closure = elf_closure(root, ["usr/sbin/prog"], ("lib/y", "lib/x", "usr/lib/x"))
    assert closure["lib/y/libbar.so.1"] == root / "lib/y/libbar.so.1"
    assert "usr/lib/x/libbar.so.1" not in closure
    # ... unless it is for another machine (patch e_machine of the copy to EM_386 / EM_X86_64)
    data = bytearray((root / "lib/y/libbar.so.1").read_bytes())
    data[18:20] = (3 if data[18:20] != b"\x03\x00" else 62).to_bytes(2, "little")
    (root / "lib/y/libbar.so.1").write_bytes(bytes(data))
    closure = elf_closure(root, ["usr/sbin/prog"], ("lib/y", "lib/x", "usr/lib/x"))
    assert "usr/lib/x/libbar.so.1" in closure and "lib/y/libbar.so.1" not in closure


@needs_gcc
def test_elf_closure_missing_soname_names_binary_and_soname(elf_sysroot: Path) -> None:
    (elf_sysroot / "usr/lib/x/libbar.so.1.0").unlink()  # libbar.so.1 is now a dangling link
    with pytest.raises(BuildError) as err:
        elf_closure(elf_sysroot, ["usr/sbin/prog"], ("lib/x", "usr/lib/x"))
    msg = str(err.value)
    assert "usr/sbin/prog -> lib/x/libfoo.so.1" in msg and "libbar.so.1" in msg


@needs_gcc
def test_elf_closure_missing_interpreter(elf_sysroot: Path) -> None:
    (elf_sysroot / "lib/ld-test.so").unlink()
    with pytest.raises(BuildError, match="usr/sbin/prog: program interpreter /lib/ld-test.so"):
        elf_closure(elf_sysroot, ["usr/sbin/prog"], ("lib/x", "usr/lib/x"))


# -- the real i386 packages, fetched through the lab's cache as build_base fetches them -------


def test_elf_closure_on_debian_i386_kexec(tmp_path: Path) -> None:
    from lab.debian_archive import debs_dir, fetch_debs

    debs = fetch_debs(["kexec-tools", "libc6"], "i386", debs_dir("i386"))
    for deb in debs.values():
        debian.extract(deb, tmp_path)
    closure = elf_closure(tmp_path, ["sbin/kexec"], search_dirs(Arch.I386))
    assert set(closure) == {"lib/ld-linux.so.2", "lib/i386-linux-gnu/libc.so.6",
                            "lib/i386-linux-gnu/ld-linux.so.2"}
    assert not closure["lib/ld-linux.so.2"].is_symlink()  # the real file, not Debian's link
    assert debian.package_version(debs["kexec-tools"]).startswith("1:2.0.")
    assert "libc6" in debian.package_depends(debs["kexec-tools"])


# -- Debian metadata parsing --------------------------------------------------------------


def test_parse_depends_first_alternative_names_only() -> None:
    field = "perl:any, libc6 (>= 2.34), debconf (>= 0.5) | debconf-2.0, zlib1g (>= 1:1.2.0), libc6"
    assert debian.parse_depends(field) == ["perl", "libc6", "debconf", "zlib1g"]
    assert debian.parse_depends("") == []


def test_library_package_rule() -> None:
    assert all(map(is_library_package, ["libc6", "zlib1g", "libdw1", "libbz2-1.0", "libgcc-s1"]))
    assert not any(map(is_library_package, ["libc-bin", "debconf", "perl", "libc-l10n", "gcc-12-base"]))


def test_sources_lines_from_deb822(tmp_path: Path) -> None:
    sources = tmp_path / "debian.sources"
    sources.write_text(
        "Types: deb\n# a comment\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n"
        "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )
    key = "[signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]"
    assert debian.sources_lines("bookworm", sources) == [
        f"deb {key} http://mirror.example/debian bookworm main",
        f"deb {key} http://mirror.example/debian-security bookworm-security main",
    ]
    assert debian.sources_lines("trixie", sources) == [f"deb {key} http://mirror.example/debian trixie main"]
    # bullseye's newest 5.10 is only in bullseye-security: taken from the host's security mirror
    assert debian.sources_lines("bullseye", sources) == [
        f"deb {key} http://mirror.example/debian bullseye main",
        f"deb {key} http://mirror.example/debian-security bullseye-security main",
    ]


def test_bullseye_security_without_a_host_security_suite(tmp_path: Path) -> None:
    sources = tmp_path / "debian.sources"
    sources.write_text("Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\nComponents: main\n")
    assert debian.sources_lines("bullseye", sources, kind="deb-src") == [
        "deb-src http://mirror.example/debian bullseye main",
        f"deb-src {debian.FALLBACK_SECURITY_URI} bullseye-security main",
    ]
    assert debian.sources_lines("sid", sources) == ["deb http://mirror.example/debian sid main"]
