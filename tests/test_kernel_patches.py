"""The lab's kernel fixes are the patches to send: git format-patch files against sid's 7.2
(guests/kernel/patches/), with backports where older kernels' context differs
(guests/kernel/patches/<series>/; 5.10's 0002 file is a series of two, the 5.10 backport of
the upstream commit 0002 builds on, then 0002). checkpatch.pl --strict and patch --dry-run are
run against the Debian source trees the lab has unpacked in its cache; a test whose tree is
not there is skipped (it is unpacked by the first build of that kernel)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from lab.artifacts.kernel import PATCHES_DIR, hash_patch, patch_series, resolve_patch
from lab.artifacts.patch_mail import read_series
from lab.cache import cache_root

PATCHES = sorted(p.name for p in PATCHES_DIR.glob("*.patch"))
SERIES = ("5.10", "6.1", "6.12", "7.2")
BACKPORTS = sorted(str(p.relative_to(PATCHES_DIR)) for p in PATCHES_DIR.glob("*/*.patch"))


def unpacked_tree(series: str) -> Path | None:
    trees = sorted((cache_root() / "source").glob(f"linux-source-{series}_*/linux"))
    return trees[-1] if trees else None


def test_the_fixes_are_format_patch_files():
    assert PATCHES, "no patches in guests/kernel/patches"
    for name in PATCHES:
        text = (PATCHES_DIR / name).read_text()
        assert re.match(r"From [0-9a-f]{40} Mon Sep 17 00:00:00 2001\nFrom: .+\nDate: .+\nSubject: \[PATCH", text), name
        message = text.split("\n---\n", 1)[0]
        assert re.search(r"^Fixes: [0-9a-f]{12} \(\".+\"\)$", message, re.MULTILINE), name
        assert re.search(r"^Signed-off-by: .+ <.+>$", message, re.MULTILINE), name
        notes = text.split("\n---\n", 1)[1].split("\ndiff --git ", 1)[0]
        assert "kjlab matrix scenarios/matrices/" in notes, f"{name}: the reviewer's command belongs below the ---"
        matrix = re.search(r"kjlab matrix (\S+)", notes).group(1)
        assert (PATCHES_DIR.parents[2] / matrix).is_file(), matrix


def test_a_commit_message_edit_keeps_the_kernel_cache_key(tmp_path):
    original = (PATCHES_DIR / PATCHES[0]).read_text()
    edited = tmp_path / "edited.patch"
    edited.write_text(original.replace("Signed-off-by: ", "Signed-off-by: Someone Else ", 1)
                      .replace("\n---\n", "\n---\nmore notes\n", 1).replace("\n-- \n2.", "\n-- \n9.", 1))
    assert hash_patch(edited) == hash_patch(PATCHES_DIR / PATCHES[0])
    changed = tmp_path / "changed.patch"
    changed.write_text(original.replace("\n+", "\n+ ", 1))
    assert hash_patch(changed) != hash_patch(PATCHES_DIR / PATCHES[0])


@pytest.mark.skipif(shutil.which("perl") is None, reason="perl is not installed")
@pytest.mark.parametrize("name", PATCHES)
def test_checkpatch_strict_is_clean(name):
    tree = unpacked_tree("7.2")
    if tree is None:
        pytest.skip("sid's linux-source-7.2 is not unpacked in the cache")
    # Outside a git clone checkpatch cannot look commit ids up and calls each one unknown.
    proc = subprocess.run(["perl", "scripts/checkpatch.pl", "--strict", "--ignore", "UNKNOWN_COMMIT_ID",
                           str(PATCHES_DIR / name)], cwd=tree, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "total: 0 errors, 0 warnings, 0 checks" in proc.stdout, proc.stdout


def test_every_series_has_both_fixes():
    for series in SERIES:
        for name in PATCHES:
            assert resolve_patch(name, series).is_file()
    # 5.10 lacks smp_kick_mwait_play_dead(): its 0002 carries the upstream commit that adds it
    mails = patch_series(PATCHES, "5.10")
    assert [m.title for m in mails] == [
        "x86/kexec/32: Reload the GDT before restore_processor_state()",
        "x86/smp: Cure kexec() vs. mwait_play_dead() breakage",
        "x86/kexec: Kick offline CPUs out of mwait before a kexec jump",
    ]
    for mail in mails:
        message = mail.raw.split(b"\n---\n", 1)[0].decode()
        assert re.search(r"^Fixes: [0-9a-f]{12} \(\".+\"\)$", message, re.MULTILINE), mail.name
        assert re.search(r"^Signed-off-by: .+ <.+>$", message, re.MULTILINE), mail.name
    assert b"d7893093a741" in mails[1].raw and b"Backport for 5.10" in mails[2].raw


@pytest.mark.skipif(shutil.which("perl") is None, reason="perl is not installed")
@pytest.mark.parametrize("name", BACKPORTS)
def test_checkpatch_strict_is_clean_on_the_backports(name, tmp_path):
    """Each mail of each backport file, with the newest checkpatch the lab has (7.2's)."""
    tree = unpacked_tree("7.2")
    if tree is None:
        pytest.skip("sid's linux-source-7.2 is not unpacked in the cache")
    for mail in read_series(PATCHES_DIR / name):
        one = tmp_path / f"{mail.number}.patch"
        one.write_bytes(mail.raw)
        proc = subprocess.run(["perl", "scripts/checkpatch.pl", "--strict", "--ignore", "UNKNOWN_COMMIT_ID", str(one)],
                              cwd=tree, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0 and "total: 0 errors, 0 warnings, 0 checks" in proc.stdout, \
            f"{mail.name}:\n{proc.stdout}"


@pytest.mark.parametrize("series", SERIES)
def test_the_series_applies_to_each_unpacked_kernel(series, tmp_path):
    tree = unpacked_tree(series)
    if tree is None:
        pytest.skip(f"linux-source-{series} is not unpacked in the cache")
    for name in PATCHES:  # in order, each on top of the ones before, as the lab applies them
        patch = resolve_patch(name, series)
        touched = set(re.findall(r"^\+\+\+ b/(\S+)", patch.read_text(), re.MULTILINE))
        assert touched and all(t.startswith("arch/x86/") for t in touched), patch
        for rel in map(Path, touched):
            if not (tmp_path / rel).exists():
                (tmp_path / rel.parent).mkdir(parents=True, exist_ok=True)
                shutil.copy(tree / rel, tmp_path / rel)
        proc = subprocess.run(["patch", "-p1", "--fuzz=0", "-d", str(tmp_path), "-i", str(patch)],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, f"{patch} on {series}:\n{proc.stdout}{proc.stderr}"
