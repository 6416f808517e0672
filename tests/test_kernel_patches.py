"""The lab's kernel fixes are the patches to send: git format-patch files against sid's 7.2
(guests/kernel/patches/), with backports where older kernels' context differs
(guests/kernel/patches/<series>/; 5.10's 0002 file is a series of two, the 5.10 backport of
the upstream commit 0002 builds on, then 0002) or where the 7.2 form would apply but not
build (0003 on 6.1 and 5.10, whose init_pgtable() has no image->arch.pgd). checkpatch.pl
--strict and patch --dry-run are run against the Debian source trees the lab has unpacked in
its cache, fetched through it when a test first needs one (SOURCES)."""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from lab.artifacts.kernel import PATCHES_DIR, hash_patch, patch_series, resolve_patch
from lab.artifacts.patch_mail import read_series
from lab.artifacts.kernel import debian_source

PATCHES = sorted(p.name for p in PATCHES_DIR.glob("*.patch"))
SERIES = ("5.10", "6.1", "6.12", "7.2")
BACKPORTS = sorted(str(p.relative_to(PATCHES_DIR)) for p in PATCHES_DIR.glob("*/*.patch"))


# Each series' Debian source, as the lab's matrices name it: fetched and unpacked through
# the lab's cache (lab.artifacts.kernel.debian_source) the first time a test needs it, so
# checkpatch and the apply tests run on a fresh machine too (and in CI), never skip.
SOURCES = {"5.10": "linux-source-5.10@bullseye", "6.1": "linux-source-6.1", "6.12": "linux-source-6.12@trixie",
           "7.2": "linux-source-7.2@sid"}


@functools.cache
def unpacked_tree(series: str) -> Path:
    tree, _ = debian_source(SOURCES[series])
    return tree


FIXES_TAG = r"^Fixes: [0-9a-f]{12} \(\".+\"\)$"
# The lab cannot certify the DCO: no Signed-off-by of its own (the sender adds theirs, mail/README.md)


def NO_INVENTED_SIGNOFF(message: str) -> bool:
    return not re.search(r"^Signed-off-by: .*kjlab", message, re.MULTILINE)


def ignored(mail: bytes) -> str:
    """What checkpatch may say and the test lets pass: unknown commit ids (the Debian sources
    are no git clones), the missing sign-off (the sender's, mail/README.md), and - where the
    notes say why there is none - the missing Fixes: tag."""
    types = ["UNKNOWN_COMMIT_ID", "MISSING_SIGN_OFF", "NO_AUTHOR_SIGN_OFF"]
    if b"\nNo Fixes: tag" in mail:
        types.append("MISSING_FIXES_TAG")
    return ",".join(types)


# The series each fix is sent in: its subject's prefix (mail/README.md)
SENT_AS = {"0001": "[PATCH 1/2]", "0004": "[PATCH 2/2]", "0002": "[PATCH]", "0003": "[PATCH]", "0005": "[RFC PATCH]"}


def has_fixes_or_says_why_not(message: str, notes: str) -> bool:
    """A Fixes: tag, or a "No Fixes: tag" paragraph below the --- saying why (0003: the
    commit that dropped the mapping it restores could not be named without git history)."""
    return bool(re.search(FIXES_TAG, message, re.MULTILINE)) or "\nNo Fixes: tag" in "\n" + notes


def test_the_fixes_are_format_patch_files():
    assert PATCHES, "no patches in guests/kernel/patches"
    for name in PATCHES:
        text = (PATCHES_DIR / name).read_text()
        assert re.match(r"From [0-9a-f]{40} Mon Sep 17 00:00:00 2001\nFrom: .+\nDate: .+\nSubject: \[(RFC )?PATCH",
                        text), name
        message = text.split("\n---\n", 1)[0]
        notes = text.split("\n---\n", 1)[1].split("\ndiff --git ", 1)[0]
        assert has_fixes_or_says_why_not(message, notes), name
        assert NO_INVENTED_SIGNOFF(message), name
        # The reviewer's command: a matrix over the kernels, or (0003, no matrix yet) the
        # scenario that shows the failure.
        command = re.search(r"kjlab (?:matrix|run) (scenarios/\S+)", notes)
        assert command, f"{name}: the reviewer's command belongs below the ---"
        assert (PATCHES_DIR.parents[2] / command.group(1)).is_file(), command.group(1)


def test_each_fix_is_numbered_in_the_series_it_is_sent_in():
    for name in PATCHES:
        subject = re.search(r"^Subject: (\[[^]]+\])", (PATCHES_DIR / name).read_text(), re.MULTILINE)
        assert subject and subject.group(1) == SENT_AS[name[:4]], name
        for series in ("5.10", "6.1", "6.12"):  # backports keep the upstream form's subject
            backport = resolve_patch(name, series)
            mail = [m for m in read_series(backport) if m.title == read_series(PATCHES_DIR / name)[0].title]
            assert mail, (name, series)
    cover = (PATCHES_DIR / "mail" / "0000-cover-letter-i386-jump-back.patch.txt").read_text()
    assert cover.startswith("Subject: [PATCH 0/2]") and "the sender's to\nadd" in cover


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
    # Outside a git clone checkpatch cannot look commit ids up and calls each one unknown.
    proc = subprocess.run(["perl", "scripts/checkpatch.pl", "--strict", "--ignore", ignored((PATCHES_DIR / name).read_bytes()),
                           str(PATCHES_DIR / name)], cwd=tree, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "total: 0 errors, 0 warnings, 0 checks" in proc.stdout, proc.stdout


def test_every_series_has_every_fix():
    for series in SERIES:
        for name in PATCHES:
            assert resolve_patch(name, series).is_file()
    # 5.10 lacks smp_kick_mwait_play_dead(): its 0002 carries the upstream commit that adds it
    mails = patch_series(PATCHES, "5.10")
    assert [m.title for m in mails] == [
        "x86/kexec: Reload the GDT before restore_processor_state() on 32-bit",
        "x86/smp: Cure kexec() vs. mwait_play_dead() breakage",
        "x86/kexec: Kick offline CPUs out of mwait before a kexec jump",
        "x86/kexec: Identity map the entry of a preserve_context image",
        "x86/kexec: Restore CR4 before paging on the 32-bit way back from a preserve_context kexec",
        "x86/kexec: Keep the real mode area across a preserve_context jump",
    ]
    upstream = {m.title: m.raw.decode() for m in patch_series(PATCHES)}  # the forms sent upstream
    for mail in mails:
        message = mail.raw.decode().split("\n---\n", 1)[0]
        # a backport's reason for having no Fixes: tag is in the notes of the form it backports
        assert re.search(FIXES_TAG, message, re.MULTILINE) or "\nNo Fixes: tag" in upstream.get(mail.title, ""), \
            mail.name
        assert NO_INVENTED_SIGNOFF(message), mail.name
    assert b"d7893093a741" in mails[1].raw and b"Backport for 5.10" in mails[2].raw
    assert b"Backport for 5.10" in mails[3].raw


ENTRY_FIX = "0003-x86-kexec-identity-map-the-entry-of-a-preserve-context-image.patch"


@pytest.mark.parametrize("series", SERIES)
def test_the_entry_mapping_uses_the_page_table_root_of_each_tree(series):
    """0003's 7.2 form applies to 6.1 and 5.10 as well, but their init_pgtable() builds the
    tables at level4p (no image->arch.pgd): each series' form must name the root its tree has."""
    patch = resolve_patch(ENTRY_FIX, series)
    added = "".join(line for line in patch.read_text().splitlines(keepends=True) if line.startswith("+\t"))
    assert "image->preserve_context" in added and "image->start & PAGE_MASK" in added, patch
    root = "image->arch.pgd" if series in ("6.12", "7.2") else "level4p"
    assert f"kernel_ident_mapping_init(&info, {root}," in added, patch
    tree = unpacked_tree(series)
    source = (tree / "arch/x86/kernel/machine_kexec_64.c").read_text()
    init_pgtable = source[source.index("static int init_pgtable("):]
    init_pgtable = init_pgtable[:init_pgtable.index("\n}\n")]
    assert f"kernel_ident_mapping_init(&info, {root}," in init_pgtable or \
        f"kernel_ident_mapping_init(&info,\n\t\t\t\t\t\t {root}," in init_pgtable, (series, root)


@pytest.mark.skipif(shutil.which("perl") is None, reason="perl is not installed")
@pytest.mark.parametrize("name", BACKPORTS)
def test_checkpatch_strict_is_clean_on_the_backports(name, tmp_path):
    """Each mail of each backport file, with the newest checkpatch the lab has (7.2's)."""
    tree = unpacked_tree("7.2")
    for mail in read_series(PATCHES_DIR / name):
        one = tmp_path / f"{mail.number}.patch"
        one.write_bytes(mail.raw)
        upstream = {m.title: m.raw for m in patch_series(PATCHES)}.get(mail.title, b"")  # its notes say why
        proc = subprocess.run(["perl", "scripts/checkpatch.pl", "--strict", "--ignore", ignored(mail.raw + upstream),
                               str(one)],
                              cwd=tree, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0 and "total: 0 errors, 0 warnings, 0 checks" in proc.stdout, \
            f"{mail.name}:\n{proc.stdout}"


@pytest.mark.parametrize("series", SERIES)
def test_the_series_applies_to_each_unpacked_kernel(series, tmp_path):
    tree = unpacked_tree(series)
    for name in PATCHES:  # in order, each on top of the ones before, as the lab applies them
        patch = resolve_patch(name, series)
        touched = set(re.findall(r"^\+\+\+ b/(\S+)", patch.read_text(), re.MULTILINE))
        assert touched and all(t.startswith(("arch/x86/", "kernel/kexec_core.c")) for t in touched), patch
        for rel in map(Path, touched):
            if not (tmp_path / rel).exists():
                (tmp_path / rel.parent).mkdir(parents=True, exist_ok=True)
                shutil.copy(tree / rel, tmp_path / rel)
        proc = subprocess.run(["patch", "-p1", "--fuzz=0", "-d", str(tmp_path), "-i", str(patch)],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, f"{patch} on {series}:\n{proc.stdout}{proc.stderr}"
