"""Patches from mail: real mbox files (tests/data/patch-mail, made by
tests/make_patch_mails.py from the lab's own fixes) read into a series and applied with a
real `git am` onto a small tree; the ways a series can be wrong; the scenario and command
line forms; what the record and the report say of each patch."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from lab.artifacts.git_am import PatchDoesNotApply, apply_series
from lab.artifacts.kernel import PATCHES_DIR, _staged_tree, hash_patch, patch_series
from lab.artifacts.patch_mail import LORE, read_series
from lab.errors import ScenarioError, UserError
from lab.report.reproduce import reproduce_view
from lab.results import RunResult
from lab.scenario import scenario_from_dict, with_patches

DATA = Path(__file__).parent / "data" / "patch-mail"
THREAD = DATA / "gdt-mwait-thread.mbox"
BACKPORT = DATA / "gdt-fix-6.1.mbox"
GDT = "0001-x86-kexec-32-reload-gdt-before-restore-processor-state.patch"
MWAIT = "0002-x86-kexec-kick-offline-cpus-out-of-mwait-before-a-kexec-jump.patch"
FILE = Path("arch/x86/kernel/machine_kexec_32.c")
GDT_TITLE = "x86/kexec/32: Reload the GDT before restore_processor_state()"


ORIG = DATA / "tree"  # the files the fixes touch, from Debian's linux-source-7.2
FILES = sorted(p.relative_to(ORIG) for p in ORIG.rglob("*") if p.is_file())


def small_tree(root: Path) -> Path:
    """A tree holding the files the fixes touch (7.2's), hard-linked to the fixture as a
    build's copy is hard-linked to the cached source."""
    for rel in FILES:
        (root / rel.parent).mkdir(parents=True, exist_ok=True)
        os.link(ORIG / rel, root / rel) if _same_fs(root) else shutil.copy(ORIG / rel, root / rel)
    return root


def _same_fs(root: Path) -> bool:
    return os.stat(root).st_dev == os.stat(DATA).st_dev


def mails_of(mbox: Path) -> list[bytes]:
    """The mails of an mbox, each with its "From " separator line."""
    return [b"From " + m for m in mbox.read_bytes().split(b"From ")[1:] if m.startswith(b"mboxrd@z")]


def test_a_thread_gives_its_patches_in_series_order_without_cover_letter_and_reply():
    mails = read_series(THREAD, "thread.mbox")
    assert [m.name for m in mails] == ["thread.mbox [1/2]", "thread.mbox [2/2]"]
    assert [m.subject for m in mails] == [
        f"[PATCH 1/2] {GDT_TITLE}",
        "[PATCH 2/2] x86/kexec: Kick offline CPUs out of mwait before a kexec jump"]
    assert mails[0].title == GDT_TITLE
    assert {m.author for m in mails} == {"kjlab maintainer <maintainer@kjlab.invalid>"}
    assert [m.message_id for m in mails] == ["<20261201095119.1@kjlab.invalid>", "<20261201095119.2@kjlab.invalid>"]
    # patch 1 carries a Link: trailer; patch 2 has none, its lore address comes from its Message-Id
    assert mails[0].link == "https://bugs.example.org/kexec-jump/1"
    assert mails[1].link == LORE + "20261201095119.2@kjlab.invalid"
    assert mails[0].paths == (str(FILE),) and str(FILE) in mails[1].paths
    # the diff, not the mail around it, is what a kernel's cache key holds
    assert [m.diff_sha256 for m in mails] == [hash_patch(PATCHES_DIR / GDT), hash_patch(PATCHES_DIR / MWAIT)]


def test_git_am_applies_the_thread_as_patch_applies_the_files(tmp_path):
    tree = small_tree(tmp_path / "tree")
    apply_series(tree, read_series(THREAD), tmp_path / "am", "7.2 test tree", None)
    expected = small_tree(tmp_path / "by-patch")
    for name in (GDT, MWAIT):
        subprocess.run(["patch", "-s", "-p1", "-d", str(expected), "-i", str(PATCHES_DIR / name)], check=True,
                       timeout=60)
    assert (tree / FILE).read_bytes() == (expected / FILE).read_bytes() != (ORIG / FILE).read_bytes()
    assert all((tree / rel).read_bytes() == (expected / rel).read_bytes() for rel in FILES)
    # git am made commits with the mails' authors and titles, in series order
    log = subprocess.run(["git", f"--git-dir={tmp_path / 'am' / '.git'}", "log", "--format=%an|%s"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert log[:2] == ["kjlab maintainer|x86/kexec: Kick offline CPUs out of mwait before a kexec jump",
                       f"kjlab maintainer|{GDT_TITLE}"]
    assert not (tree / ".git").exists()  # the tree stays a plain tree (the kernel's release string)


def test_the_fixture_behind_the_hard_link_is_not_written(tmp_path):
    before = (ORIG / FILE).read_bytes()
    tree = small_tree(tmp_path / "tree")
    apply_series(tree, read_series(THREAD), tmp_path / "am", "7.2 test tree", None)
    assert (ORIG / FILE).read_bytes() == before
    assert (tree / FILE).stat().st_nlink == 1


def test_a_failing_hunk_names_the_mail_and_stops_the_series(tmp_path):
    tree = small_tree(tmp_path / "tree")
    text = (tree / FILE).read_text()
    # a context line only patch 2 needs: patch 1 applies, patch 2 does not
    patch2 = (PATCHES_DIR / MWAIT).read_text().split(f"diff --git a/{FILE} ", 1)[1].split("\ndiff --git ", 1)[0]
    context = next(line[1:] for line in patch2.split("\n@@", 1)[1].splitlines()[1:]
                   if line.startswith(" ") and line.strip() and line[1:] not in (PATCHES_DIR / GDT).read_text())
    assert context in text
    (tree / FILE).unlink()
    (tree / FILE).write_text(text.replace(context, context + " /* changed */", 1))
    with pytest.raises(PatchDoesNotApply) as e:
        apply_series(tree, read_series(THREAD, "thread.mbox"), tmp_path / "am", "7.2 test tree", None)
    message = str(e.value)
    assert "thread.mbox [2/2]" in message and "Kick offline CPUs out of mwait" in message
    assert "does not apply to 7.2 test tree" in message and "patch failed" in message
    assert "native_store_gdt(&gdt_desc);" in (tree / FILE).read_text()  # patch 1 went in before


def test_a_patch_for_another_kernel_fails_with_its_subject(tmp_path):
    """The 6.1 backport on 7.2's file: the context differs, git am refuses it whole."""
    tree = small_tree(tmp_path / "tree")
    with pytest.raises(PatchDoesNotApply, match=re.escape(f'"[PATCH] {GDT_TITLE}" does not apply')):
        apply_series(tree, read_series(BACKPORT), tmp_path / "am", "7.2", None)
    assert (tree / FILE).read_bytes() == (ORIG / FILE).read_bytes()


def test_a_build_stage_holds_the_patched_copy_and_leaves_out_git(tmp_path):
    source = small_tree(tmp_path / "source")
    (source / ".git").mkdir()
    (source / "Makefile").write_text("VERSION = 7\nPATCHLEVEL = 2\n")
    src = _staged_tree(source, read_series(THREAD), tmp_path / "work", tmp_path / "build.log")
    assert src == tmp_path / "work" / "src" and not (src / ".git").exists()
    assert (src / "Makefile").samefile(source / "Makefile")  # untouched files stay hard links
    assert "native_store_gdt(&gdt_desc);" in (src / FILE).read_text()
    assert "native_store_gdt(&gdt_desc);" not in (source / FILE).read_text()
    assert "$ git" in (tmp_path / "build.log").read_text()


def test_a_format_patch_series_and_a_bare_diff(tmp_path):
    series = tmp_path / "series.patch"  # what git format-patch --stdout writes
    series.write_bytes((PATCHES_DIR / GDT).read_bytes() + (PATCHES_DIR / MWAIT).read_bytes())
    mails = read_series(series)
    assert [m.number for m in mails] == [1, 2] and all(m.message_id == "" and m.link == "" for m in mails)
    bare = tmp_path / "fix.diff"
    bare.write_bytes(b"diff --git" + (PATCHES_DIR / GDT).read_bytes().split(b"\ndiff --git", 1)[1])
    (mail,) = read_series(bare)
    assert mail.subject == "[PATCH] fix.diff" and mail.diff_sha256 == hash_patch(PATCHES_DIR / GDT)
    tree = small_tree(tmp_path / "tree")
    apply_series(tree, [mail], tmp_path / "am", "7.2", None)
    assert "native_store_gdt(&gdt_desc);" in (tree / FILE).read_text()


def test_a_series_that_is_not_whole_is_refused(tmp_path):
    cover, patch2, reply, patch1 = mails_of(THREAD)
    cases = {
        "incomplete.mbox": (cover + patch2 + reply, r"incomplete: \[PATCH 1/2\] missing"),
        "cover-only.mbox": (cover + reply, "no patch in it"),
        "double.mbox": (patch1 + patch2 + patch1, r"patch 1/2 is in it more than once"),
        "empty.mbox": (b"", "no patch in it"),
        "no-diff.mbox": (patch1.split(b"\ndiff --git", 1)[0] + b"\n", r"numbered as a patch but holds no diff"),
    }
    for name, (data, error) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(UserError, match=error):
            read_series(path)
    with pytest.raises(UserError, match="no such file"):
        read_series(tmp_path / "nothing.mbox")


def test_of_two_revisions_the_newest_is_applied(tmp_path):
    _, patch2, _, patch1 = mails_of(THREAD)
    v2 = patch1.replace(b"[PATCH 1/2]", b"[PATCH v2 1/1]").replace(b"20261201095119.1@", b"20261201095119.v2@")
    path = tmp_path / "two-revisions.mbox"
    path.write_bytes(patch1 + patch2 + v2)
    (mail,) = read_series(path)
    assert mail.subject.startswith("[PATCH v2 1/1]") and mail.message_id == "<20261201095119.v2@kjlab.invalid>"


def test_a_kernels_key_holds_the_diffs_not_the_files_names():
    """The lab's backport by name and the same patch from a mail thread: one kernel."""
    by_name = patch_series([GDT], "6.1")
    by_mail = patch_series([str(BACKPORT)], "6.1")
    assert [m.diff_sha256 for m in by_name] == [m.diff_sha256 for m in by_mail]
    assert by_name[0].label == f"6.1/{GDT}" and by_mail[0].label == str(BACKPORT)
    assert by_mail[0].provenance() == {
        "file": str(BACKPORT), "subject": f"[PATCH] {GDT_TITLE}",
        "author": "kjlab maintainer <maintainer@kjlab.invalid>", "date": "Tue, 01 Dec 2026 09:51:24 +0000",
        "message_id": "<20261201095119.61.1@kjlab.invalid>", "link": LORE + "20261201095119.61.1@kjlab.invalid",
        "diff_sha256": hash_patch(PATCHES_DIR / "6.1" / GDT)}


def scenario(tmp_path: Path, patches: list[str]):
    path = tmp_path / "scenarios" / "mine.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    return scenario_from_dict({"kernel": {"patches": patches}}, path)


def test_scenario_patches_are_lab_names_or_paths(tmp_path):
    (tmp_path / "mails").mkdir()
    shutil.copy(THREAD, tmp_path / "mails" / "thread.mbox")
    sc = scenario(tmp_path, [GDT, "../mails/thread.mbox", str(BACKPORT)])
    assert sc.kernel.patches == (GDT, str(tmp_path / "mails" / "thread.mbox"), str(BACKPORT))
    for bad, error in (("./nothing.mbox", r"kernel.patches\[0\]: './nothing.mbox': no such patch or mbox file"),
                       ("9999-unknown.patch", r"kernel.patches\[0\]: unknown patch '9999-unknown.patch'"),
                       ("../../etc/passwd", "no such patch"),
                       ("6.1/../../x", "neither a patch name"),
                       ("-rf", "neither a patch name")):
        with pytest.raises(ScenarioError, match=error):
            scenario(tmp_path, [bad])


def test_patch_option_adds_files_after_the_scenarios_own(tmp_path, monkeypatch):
    monkeypatch.chdir(DATA)
    sc = with_patches(scenario(tmp_path, [GDT]), [Path("gdt-mwait-thread.mbox")])
    assert sc.kernel.patches == (GDT, str(THREAD)) and sc.patch_files == (THREAD,)
    with pytest.raises(UserError, match="--patch nope.mbox: no such patch or mbox file"):
        with_patches(sc, [Path("nope.mbox")])


def test_the_report_names_each_patch_and_repeats_the_patch_option():
    mail = read_series(BACKPORT)[0]
    result = RunResult(run_id="r", scenario="s", scenario_path="/x/scenarios/i386-hibernate-unpatched.toml",
                       flow="hibernate", started=0.0, provenance={
                           "kjlab_commit": "abc", "kjlab_root": "/x", "patch_files": [str(BACKPORT)],
                           "kernel": {"source": "debian:linux-source-6.1", "patches": [mail.name],
                                      "patch_mails": [mail.provenance()]}})
    view = reproduce_view(result)
    assert view.command.endswith(f"--patch {BACKPORT}")
    assert f"--patch {BACKPORT}" in view.one_liner
    facts = dict(view.facts)
    assert facts["kernel patch"] == (f"[PATCH] {GDT_TITLE} (kjlab maintainer <maintainer@kjlab.invalid>) "
                                     f"Message-Id: <20261201095119.61.1@kjlab.invalid> "
                                     f"Link: {LORE}20261201095119.61.1@kjlab.invalid")


def test_kjlab_run_refuses_a_bad_patch_file_before_it_builds(tmp_path, capsys):
    from lab.cli import main

    scenario_file = Path(__file__).parent.parent / "scenarios" / "i386-hibernate-unpatched.toml"
    cover_only = tmp_path / "cover-only.mbox"
    cover_only.write_bytes(mails_of(THREAD)[0])
    assert main(["run", "--patch", str(tmp_path / "missing.mbox"), str(scenario_file)]) == 2
    assert "no such patch or mbox file" in capsys.readouterr().out
    assert main(["run", "--patch", str(cover_only), str(scenario_file)]) == 2
    assert "no patch in it" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:  # argparse: one bisect mode at a time
        main(["run", "--patch", str(THREAD), "--bisect", "--bisect-fix", str(scenario_file)])
    assert e.value.code == 2 and "not allowed with argument --bisect" in capsys.readouterr().err
    assert main(["run", "--patch", str(THREAD), str(scenario_file.parent)]) == 2  # a suite
    assert "take one scenario file" in capsys.readouterr().out


def test_one_file_of_a_format_patch_series_is_taken_alone() -> None:
    """The lab's own fixes are one file a patch, numbered [PATCH 1/2] and [PATCH 2/2] as
    git format-patch wrote them: each file alone is a patch, not an incomplete series."""
    from lab.artifacts.kernel import PATCHES_DIR

    for name, number, prefix in (("0001-x86-kexec-32-reload-gdt-before-restore-processor-state.patch", "1/2",
                                  "x86/kexec: "),
                                 ("0004-x86-kexec-32-restore-cr4-before-paging-on-the-way-back.patch", "2/2",
                                  "x86/kexec: ")):
        (mail,) = read_series(PATCHES_DIR / name)
        assert f"[PATCH {number}]" in (PATCHES_DIR / name).read_text() and prefix in mail.subject
