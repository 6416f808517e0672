"""The lab's own i386 guest programs (guests/progs), built for real with the host's gcc.

The static i386 binaries run on the x86_64 host too (IA32 emulation), so kj-sentinel is
checked here byte for byte against lab.memory.sentinels. kj-jump-back is only ever run with
bad arguments on the host: with a good one it would call kexec_load (it refuses anyway
unless /proc/cmdline names a kjlab role). The e2e tests boot kernel A in QEMU and call
kj-physcall.elf in physical mode, and jump B -> A with kj-jump-back.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from lab.arch import Arch
from lab.artifacts.progs import PHYSCALL_BASE, PROGS, build_progs, check_elf
from lab.errors import BuildError
from lab.memory.sentinels import (
    BODY_WORDS,
    MAGIC,
    PAGE_SIZE,
    REGION_ANON,
    REGION_TMPFS,
    parse_header,
    sentinel_page,
)

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")


@pytest.fixture(scope="module")
def progs() -> dict[str, Path]:
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    return build_progs()


def _ia32_runs(progs: dict[str, Path]) -> bool:
    try:
        return subprocess.run([progs["bin/kj-sentinel"]], capture_output=True, timeout=10).returncode == 2
    except OSError:
        return False


@pytest.fixture(scope="module")
def runnable(progs: dict[str, Path]) -> dict[str, Path]:
    if not _ia32_runs(progs):
        pytest.skip("this host cannot run i386 binaries (no IA32 emulation)")
    return progs


# -- the format's reference -----------------------------------------------------------------


def test_sentinel_page_layout_by_hand() -> None:
    import struct

    token, index, region, seed = 0xFEDCBA9876543210, 12345, REGION_ANON, 0xFFFFFFFF
    page = sentinel_page(token, index, region, seed)
    assert len(page) == PAGE_SIZE and page[:8] == MAGIC == b"KJLABSNT"
    assert struct.unpack_from("<QIII", page, 8) == (token, index, region, seed)
    words = struct.unpack_from(f"<{BODY_WORDS}I", page, 28)
    assert BODY_WORDS == 1017
    for j in (0, 1, 500, 1016):
        want = (index * 0x9E3779B1 + (j + 7) * 0x85EBCA77 + seed + region * 0x27D4EB2F) % 2**32
        assert words[j] == want
    assert parse_header(page) == (token, index, region, seed)
    assert parse_header(b"\0" * PAGE_SIZE) is None
    assert sentinel_page(1, 0, REGION_TMPFS, 0) != sentinel_page(1, 0, REGION_ANON, 0)
    with pytest.raises(ValueError):
        sentinel_page(1 << 64, 0, 0, 0)
    with pytest.raises(ValueError):
        sentinel_page(0, 0, 0, -1)


# -- build ------------------------------------------------------------------------------------


@needs_gcc
def test_build_gives_static_i386_elfs(progs: dict[str, Path]) -> None:
    assert set(progs) == {"bin/kj-jump-back", "bin/kj-sentinel", "bin/kj-proof", "bin/kj-image", "boot/kj-physcall.elf"}
    for name, path in progs.items():
        with open(path, "rb") as f:
            elf = ELFFile(f)
            assert elf.elfclass == 32 and elf["e_machine"] == "EM_386" and elf["e_type"] == "ET_EXEC", name
            types = [s["p_type"] for s in elf.iter_segments()]
            assert "PT_INTERP" not in types and "PT_DYNAMIC" not in types, name
            assert elf.get_section_by_name(".dynamic") is None
    with open(progs["boot/kj-physcall.elf"], "rb") as f:
        elf = ELFFile(f)
        loads = [s for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]
        assert [(s["p_paddr"], s["p_vaddr"]) for s in loads] == [(PHYSCALL_BASE, PHYSCALL_BASE)] == [(0x1000000,) * 2]
        assert elf["e_entry"] == 0x1000000
        assert loads[0]["p_memsz"] <= PAGE_SIZE  # one page: a single kexec segment
        data = loads[0].data()
        assert b"KJLAB-PHYSCALL hello from physical mode\r\n" in data


@needs_gcc
def test_build_is_cached(progs: dict[str, Path]) -> None:
    again = build_progs()
    assert again == progs
    assert all(p.is_file() for p in again.values())


@needs_gcc
def test_check_elf_refuses_wrong_files(progs: dict[str, Path], tmp_path: Path) -> None:
    physcall = next(p for p in PROGS if p.image_path == "boot/kj-physcall.elf")
    sentinel = next(p for p in PROGS if p.image_path == "bin/kj-sentinel")
    with pytest.raises(BuildError, match="expected one at physical 0x1000000"):
        check_elf(progs["bin/kj-sentinel"], physcall)  # linked at 0x8048000, several PT_LOADs
    host_prog = Path(shutil.which("true") or "/bin/true")
    with pytest.raises(BuildError, match="ELFCLASS64 EM_X86_64, expected ELFCLASS32 EM_386"):
        check_elf(host_prog, sentinel)
    text = tmp_path / "text"
    text.write_text("#!/bin/sh\n")
    with pytest.raises(BuildError, match="not a readable ELF"):
        check_elf(text, sentinel)


@pytest.fixture(scope="module")
def progs64() -> dict[str, Path]:
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    return build_progs(arch=Arch.X86_64)


@needs_gcc
def test_x86_64_build_gives_static_x86_64_elfs_without_physcall(progs64: dict[str, Path]) -> None:
    assert set(progs64) == {"bin/kj-jump-back", "bin/kj-sentinel", "bin/kj-proof", "bin/kj-image"}
    for name, path in progs64.items():
        with open(path, "rb") as f:
            elf = ELFFile(f)
            assert elf.elfclass == 64 and elf["e_machine"] == "EM_X86_64" and elf["e_type"] == "ET_EXEC", name
            assert elf.get_section_by_name(".dynamic") is None
    sentinel = next(p for p in PROGS if p.image_path == "bin/kj-sentinel")
    with pytest.raises(BuildError, match="ELFCLASS32 EM_386, expected ELFCLASS64 EM_X86_64"):
        check_elf(build_progs()["bin/kj-sentinel"], sentinel, Arch.X86_64)


@needs_gcc
def test_x86_64_programs_run_on_the_host(progs64: dict[str, Path], tmp_path: Path) -> None:
    """The x86_64 build's system calls (syscall, not int $0x80) on the x86_64 host itself."""
    proof = tmp_path / "proof"
    subprocess.run([progs64["bin/kj-proof"], "fill", proof, "64", "7"], check=True, capture_output=True, timeout=30)
    assert proof.read_bytes() == _xorshift32_stream(7, 64)
    out = subprocess.run([progs64["bin/kj-proof"], "crc32", proof], check=True, capture_output=True, text=True,
                         timeout=30).stdout
    assert out.split()[:2] == ["crc32", f"{zlib.crc32(proof.read_bytes()):#010x}"]
    anon = subprocess.Popen([progs64["bin/kj-sentinel"], "anon", "2", "0x1234", "5"], stdout=subprocess.PIPE, text=True)
    try:
        assert anon.stdout is not None
        lines = [anon.stdout.readline(), anon.stdout.readline()]
    finally:
        anon.kill()
        anon.wait(10)
    assert lines[0].startswith("KJ-SENTINEL anon addr 0x") and lines[1].startswith("KJ-SENTINEL anon 2 ready pid")
    refused = subprocess.run([progs64["bin/kj-jump-back"], "0x1000"], capture_output=True, text=True, timeout=30)
    assert refused.returncode == 2 and "refusing to run" in refused.stderr


def _core64(path: Path, loads: list[tuple[int, int, int]]) -> None:
    """An ELF64 core of PT_LOADs (vaddr, paddr, size) and a PT_NOTE, data left out."""
    phdrs = [struct.pack("<IIQQQQQQ", 1, 7, 0x1000, v, p, n, n, 4096) for v, p, n in loads]
    phdrs.append(struct.pack("<IIQQQQQQ", 4, 0, 0x800, 0, 0, 16, 16, 4))
    header = (b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
              + struct.pack("<HHIQQQIHHHHHH", 4, 62, 1, 0, 64, 0, 0, 64, 56, len(phdrs), 0, 0, 0))
    path.write_bytes(header + b"".join(phdrs) + bytes(64))


@needs_gcc
def test_kj_image_turns_kernel_text_loads_into_pt_null(progs64: dict[str, Path], tmp_path: Path) -> None:
    core = tmp_path / "dump.elf"
    _core64(core, [(0xFFFFFFFF82000000, 0x2000000, 0x1800000), (0xFFFF888000100000, 0x100000, 0x7700000)])
    before = core.read_bytes()
    out = subprocess.run([progs64["bin/kj-image"], "drop-kernel-text", core], check=True, capture_output=True,
                         text=True, timeout=30).stdout
    assert "PT_LOAD[0] vaddr 0xffffffff82000000 paddr 0x02000000 size 0x01800000 (kernel text) -> PT_NULL" in out
    assert out.strip().endswith("2 PT_LOADs, 1 turned into PT_NULL")
    with open(core, "rb") as f:
        types = [s["p_type"] for s in ELFFile(f).iter_segments()]
    assert types == ["PT_NULL", "PT_LOAD", "PT_NOTE"]
    after = core.read_bytes()
    assert len(after) == len(before) and after[64 + 4:] == before[64 + 4:]  # only the one p_type changed
    again = subprocess.run([progs64["bin/kj-image"], "drop-kernel-text", core], check=True, capture_output=True,
                           text=True, timeout=30).stdout
    assert again.strip().endswith("1 PT_LOADs, 0 turned into PT_NULL") and core.read_bytes() == after
    bad = subprocess.run([progs64["bin/kj-image"], "drop-kernel-text", tmp_path / "nope"], capture_output=True,
                         text=True, timeout=30)
    assert bad.returncode == 1 and "ENOENT" in bad.stderr


# -- kj-proof on the host ----------------------------------------------------------------------


def _xorshift32_stream(seed: int, kib: int) -> bytes:
    """kj-proof's stream, written out the slow obvious way."""
    x, words = seed, []
    for _ in range(kib * 256):
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        words.append(x)
    return struct.pack(f"<{len(words)}I", *words)


def _proof(runnable: dict[str, Path], *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([runnable["bin/kj-proof"], *map(str, args)], capture_output=True, text=True, timeout=30)


def test_kj_proof_fill_writes_the_seeded_stream(runnable: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / "proof"
    out = _proof(runnable, "fill", path, 300, "0xdeadbeef")  # crosses a 256 KiB chunk
    assert out.returncode == 0 and out.stdout == f"proof {path} 300 KiB from seed 0xdeadbeef\n"
    assert path.read_bytes() == _xorshift32_stream(0xDEADBEEF, 300)


def test_kj_proof_check_is_exact(runnable: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / "proof"
    _proof(runnable, "fill", path, 300, 7)
    assert _proof(runnable, "check", path, 300, 7).stdout == "CHECK proof-file ok 300 KiB from seed 0x00000007\n"
    data = bytearray(path.read_bytes())
    data[0x41001] ^= 0x10  # one bit, in the second chunk
    data[0x41005] ^= 0x01
    path.write_bytes(data)
    assert _proof(runnable, "check", path, 300, 7).stdout == (
        "CHECK proof-file bad 300 KiB from seed 0x00000007, 2 words differ, the first at offset 0x00041000\n")
    path.write_bytes(data[:1000])
    assert "the length differs at offset 0x000003e8" in _proof(runnable, "check", path, 300, 7).stdout
    assert "bad" in _proof(runnable, "check", path, 300, 8).stdout  # another run's seed
    path.unlink()
    assert _proof(runnable, "check", path, 300, 7).stdout.startswith("CHECK proof-file bad cannot open")


def test_kj_proof_crc32_is_zlibs(runnable: dict[str, Path], tmp_path: Path) -> None:
    from lab.image_tools import crc32_file

    path = tmp_path / "image"
    for size in (0, 1, 7, 8, 9, 300_001, (1 << 20) + 13):
        path.write_bytes(os.urandom(size))
        out = _proof(runnable, "crc32", path)
        assert out.returncode == 0
        assert out.stdout == f"crc32 {zlib.crc32(path.read_bytes()):#010x} bytes {size:#x}\n", size
        assert crc32_file(path) == zlib.crc32(path.read_bytes())


def test_kj_proof_crc32_reads_an_image_over_2_gib(runnable: dict[str, Path], tmp_path: Path) -> None:
    """C checks the image before it loads it: an A that uses more than 2 GiB (a HIGHMEM or
    PAE machine) saves an image over 2 GiB, which an i386 open() without O_LARGEFILE
    refuses (EOVERFLOW: found on the host before any such run). A sparse file: no disk."""
    path = tmp_path / "image-over-2-gib"
    size = (2 << 30) + 4096 + 3
    with path.open("wb") as f:
        f.truncate(size)
        f.seek(size - 3)
        f.write(b"end")
    crc, zeros = 0, bytes(1 << 22)
    for _ in range((size - 3) // len(zeros)):
        crc = zlib.crc32(zeros, crc)
    crc = zlib.crc32(bytes((size - 3) % len(zeros)) + b"end", crc)
    out = subprocess.run([runnable["bin/kj-proof"], "crc32", str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"crc32 {crc:#010x} bytes {size:#x}\n"


def test_kj_proof_refuses_bad_arguments(runnable: dict[str, Path], tmp_path: Path) -> None:
    for args in ((), ("fill", tmp_path / "p", 0, 7), ("fill", tmp_path / "p", 4, 0), ("mix", tmp_path / "p", 4, 7),
                 ("crc32", tmp_path / "missing")):
        out = _proof(runnable, *args)
        assert out.returncode == (1 if args and args[0] == "crc32" else 2), args
        assert out.stderr.startswith("kj-proof: "), args


# -- kj-sentinel on the host -----------------------------------------------------------------


@pytest.mark.parametrize("token,seed,npages", [
    ("0x1234", "7", 64),
    ("18446744073709551615", "0xffffffff", 17),  # u64 max, u32 max, not a multiple of the batch
    ("0", "0", 1),
])
def test_sentinel_file_matches_reference(runnable: dict[str, Path], tmp_path: Path, token: str, seed: str,
                                         npages: int) -> None:
    out = tmp_path / "s"
    proc = subprocess.run([runnable["bin/kj-sentinel"], "file", out, str(npages), token, seed],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert f"KJ-SENTINEL file {out} {npages} pages" in proc.stdout
    data = out.read_bytes()
    assert len(data) == npages * PAGE_SIZE
    t, s = int(token, 0), int(seed, 0)
    for i in range(npages):
        assert data[i * PAGE_SIZE:(i + 1) * PAGE_SIZE] == sentinel_page(t, i, REGION_TMPFS, s), f"page {i}"


def test_sentinel_anon_holds_reference_pages(runnable: dict[str, Path]) -> None:
    npages, token, seed = 32, 0xABCDEF0123456789, 99
    proc = subprocess.Popen([runnable["bin/kj-sentinel"], "anon", str(npages), hex(token), str(seed)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first, ready = proc.stdout.readline(), proc.stdout.readline()
        m = re.fullmatch(r"KJ-SENTINEL anon addr (0x[0-9a-f]{8}) len (0x[0-9a-f]{8}) (mlocked|unlocked)\n", first)
        assert m, first
        assert ready == f"KJ-SENTINEL anon {npages} ready pid {proc.pid}\n"
        addr, length = int(m.group(1), 16), int(m.group(2), 16)
        assert length == npages * PAGE_SIZE
        with open(f"/proc/{proc.pid}/mem", "rb") as mem:
            mem.seek(addr)
            data = mem.read(length)
        for i in range(npages):
            assert data[i * PAGE_SIZE:(i + 1) * PAGE_SIZE] == sentinel_page(token, i, REGION_ANON, seed), f"page {i}"
        assert proc.poll() is None  # still holding the pages
    finally:
        proc.kill()
        proc.wait(timeout=10)


@pytest.mark.parametrize("args,message", [
    ([], "missing mode"),
    (["swap", "1", "1", "1"], "unknown mode: 'swap'"),
    (["file", "/nonexistent-dir/x", "1", "1"], "file mode takes PATH NPAGES RUN_TOKEN SEED"),
    (["anon", "0", "1", "1"], "NPAGES must be a number"),
    (["anon", "1", "0x", "1"], "RUN_TOKEN is not a 64-bit number"),
    (["anon", "1", "18446744073709551616", "1"], "RUN_TOKEN is not a 64-bit number"),
    (["anon", "1", "1", "0x100000000"], "SEED is not a 32-bit number"),
])
def test_sentinel_usage_errors(runnable: dict[str, Path], args: list[str], message: str) -> None:
    proc = subprocess.run([runnable["bin/kj-sentinel"], *args], capture_output=True, text=True, timeout=10)
    assert proc.returncode == 2
    assert message in proc.stderr and "usage: kj-sentinel" in proc.stderr
    assert proc.stdout == ""


def test_sentinel_file_error_names_errno(runnable: dict[str, Path]) -> None:
    proc = subprocess.run([runnable["bin/kj-sentinel"], "file", "/nonexistent-dir/x", "1", "1", "1"],
                          capture_output=True, text=True, timeout=10)
    assert proc.returncode == 1
    assert "kj-sentinel: open failed: ENOENT (errno 2)" in proc.stderr


# -- kj-jump-back on the host: bad arguments only ------------------------------------------------


@pytest.mark.parametrize("args,message", [
    ([], "missing ENTRY"),
    (["0x12zz"], "ENTRY is not a 32-bit number: '0x12zz'"),
    (["0x100000000"], "ENTRY is not a 32-bit number"),
    ([""], "ENTRY is not a 32-bit number"),
    (["0x020000d7", "0x1001"], "DEST must be page aligned"),
    (["0x020000d7", "nope"], "DEST is not a 32-bit number"),
    (["1", "2", "3"], "too many arguments"),
])
def test_jump_back_refuses_bad_arguments(runnable: dict[str, Path], args: list[str], message: str) -> None:
    proc = subprocess.run([runnable["bin/kj-jump-back"], *args], capture_output=True, text=True, timeout=10)
    assert proc.returncode == 2
    assert message in proc.stderr and "usage: kj-jump-back ENTRY [DEST]" in proc.stderr
    assert "kexec_load" not in proc.stdout  # nothing was attempted


# -- in QEMU ------------------------------------------------------------------------------------


class Guest:
    """qemu-system-i386 on a pexpect pty, serial on stdio; prompt kj-<role># (echo off)."""

    def __init__(self, kernel: Path, initrd: Path, append: str, log: Path) -> None:
        import pexpect

        self.pexpect = pexpect
        argv = ["qemu-system-i386", "-accel", "tcg", "-m", "256M", "-nographic", "-nodefaults",
                "-serial", "stdio", "-no-reboot", "-kernel", str(kernel), "-initrd", str(initrd),
                "-append", append]
        self.logf = open(log, "w", encoding="utf-8")
        self.child = pexpect.spawn(argv[0], argv[1:], encoding="utf-8", codec_errors="replace", timeout=120)
        self.child.logfile_read = self.logf

    def wait(self, pattern: str, timeout: float = 120) -> str:
        self.child.expect(pattern, timeout=timeout)
        return self.child.before.replace("\r", "")

    def cmd(self, line: str, prompt: str = "A", timeout: float = 120) -> str:
        self.child.sendline(line)
        return self.wait(f"kj-{prompt}# ", timeout)

    def close(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)
        self.logf.close()


@pytest.fixture(scope="module")
def kernel_i386() -> Path:
    if shutil.which("qemu-system-i386") is None:
        pytest.skip("qemu-system-i386 not installed")
    from lab import SCENARIOS_DIR
    from lab.artifacts.kernel import build_kernel
    from lab.scenario import load_scenario

    return build_kernel(load_scenario(SCENARIOS_DIR / "i386-hibernate.toml").kernel).image


def _reference_sha(region: int, npages: int, token: int, seed: int) -> str:
    return hashlib.sha256(b"".join(sentinel_page(token, i, region, seed) for i in range(npages))).hexdigest()


SENTINEL_SETUP = [
    "kj-sentinel file /tmp/s 64 0x1234 7",
    "kj-sentinel anon 64 0x1234 7 > /tmp/anon.out &",
    "sleep 1; cat /tmp/anon.out",
]
# sha256 of the file and of the anonymous pages, read through /proc/PID/mem at the printed address
SENTINEL_SHAS = ("sha256sum /tmp/s; set -- $(grep addr /tmp/anon.out); pid=$(pidof kj-sentinel); "
                 "dd if=/proc/$pid/mem bs=4096 skip=$(($4 / 4096)) count=64 2>/dev/null | sha256sum")


@pytest.mark.e2e
def test_physcall_in_qemu(kernel_i386: Path, tmp_path: Path) -> None:
    from lab.artifacts.initramfs import build_base, list_image

    base = build_base()
    assert {"bin/kj-jump-back", "bin/kj-sentinel", "boot/kj-physcall.elf"} <= set(list_image(base.path))
    g = Guest(kernel_i386, base.path, "console=ttyS0 kjlab.role=A", tmp_path / "console.log")
    try:
        g.wait("KJLAB-READY role=A")
        g.wait("kj-A# ")
        for line in SENTINEL_SETUP:
            g.cmd(line)
        shas = [x.split()[0] for x in g.cmd(SENTINEL_SHAS).splitlines() if x.strip()]
        want = [_reference_sha(REGION_TMPFS, 64, 0x1234, 7), _reference_sha(REGION_ANON, 64, 0x1234, 7)]
        assert shas[-2:] == want
        # kexec-tools refuses --load-preserve-context without --mem-max; the window is the one page
        out = g.cmd("kexec -d -x --load-preserve-context --mem-min=0x1000000 --mem-max=0x1000fff "
                    "--args-none /boot/kj-physcall.elf; echo rc=$?")
        assert "rc=0" in out and "segment[0].mem   = 0x1000000" in out
        for n in (1, 2):  # the second call works only because the program leaves its re-entry point
            out = g.cmd("kexec -x -e; echo rc=$?")
            assert "KJLAB-PHYSCALL hello from physical mode\n" in out
            m = re.search(r"KJLAB-PHYSCALL call (0x[0-9a-f]{8}) cr0 (0x[0-9a-f]{8}) esp 0x[0-9a-f]{8} "
                          r"ret 0x[0-9a-f]{8} eip (0x[0-9a-f]{8})", out)
            assert m, out
            assert int(m.group(1), 16) == n
            assert int(m.group(2), 16) & 0x80000001 == 0x1  # protected mode, paging off
            assert int(m.group(3), 16) == 0x1000000
            assert "Restarting tasks ... done." in out
            assert g.cmd("echo alive").strip().endswith("alive")
        shas = [x.split()[0] for x in g.cmd(SENTINEL_SHAS).splitlines() if x.strip()]
        assert shas[-2:] == want  # the pages swapped in and out around the call are A's again
        # kj-jump-back's success path in a guest (loaded, never executed here), then unload
        out = g.cmd("kj-jump-back 0x1000000; echo rc=$?; kexec -x -u; echo unload=$?")
        assert "kj-jump-back: loaded" in out and "rc=0" in out and "unload=0" in out
    finally:
        g.close()


@pytest.mark.e2e
def test_jump_back_from_b_in_qemu(kernel_i386: Path, tmp_path: Path) -> None:
    """kexec-tools quirk 7: kj-jump-back instead of --load-jump-back-helper, B -> A directly."""
    from lab.artifacts.initramfs import build_base, build_with_payload

    base = build_base()
    image = build_with_payload(base, {"boot/bzImage": kernel_i386, "boot/rootfsB.gz": base.path}).path
    g = Guest(kernel_i386, image, "console=ttyS0 kjlab.role=A mem=120M", tmp_path / "console.log")
    try:
        g.wait("KJLAB-READY role=A")
        g.wait("kj-A# ")
        for line in SENTINEL_SETUP:
            g.cmd(line)
        out = g.cmd("kexec -x --load-preserve-context --mem-min=0x100000 --mem-max=0x1ffffff "
                    "--pass-memmap-cmdline --initrd=/boot/rootfsB.gz "
                    "--append='console=ttyS0 kjlab.role=B' /boot/bzImage; echo rc=$?")
        assert "rc=0" in out
        g.child.sendline("kexec -x -e")
        g.wait("KJLAB-READY role=B")
        g.wait("kj-B# ")
        entry = re.search(r"kexec_jump_back_entry=(0x[0-9a-f]+)", g.cmd("cat /proc/cmdline", "B"))
        assert entry, "no kexec_jump_back_entry= on B's command line"
        out = g.cmd(f"kj-jump-back {entry.group(1)}; echo rc=$?", "B")
        assert f"loaded; `kexec -e` now jumps back to 0x{int(entry.group(1), 16):08x}" in out and "rc=0" in out
        out = g.cmd("kexec -x -e", "A")
        assert "Restarting tasks ... done." in out
        shas = [x.split()[0] for x in g.cmd(SENTINEL_SHAS).splitlines() if x.strip()]
        assert shas[-2:] == [_reference_sha(REGION_TMPFS, 64, 0x1234, 7), _reference_sha(REGION_ANON, 64, 0x1234, 7)]
    finally:
        g.close()
