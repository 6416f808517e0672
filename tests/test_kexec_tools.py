"""kexec-tools from Debian's source package with the lab's patches (lab.artifacts.kexec_tools):
real builds through the lab's cache (the source package comes from the Debian archive), the
scenario table that asks for it, and the initramfs that carries the built program."""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

import pytest

from lab.arch import Arch
from lab.artifacts.git_am import PatchDoesNotApply
from lab.artifacts.initramfs import build_base, list_image
from lab.artifacts.kexec_tools import PATCHES_DIR, KexecToolsSpec, build_kexec_tools, check_static
from lab.errors import BuildError, ScenarioError
from lab.scenario import scenario_from_dict

LAB_PATCHES = tuple(sorted(p.name for p in PATCHES_DIR.glob("*.patch")))


def test_the_lab_carries_its_kexec_tools_fixes() -> None:
    assert LAB_PATCHES == ("0001-kexec-x86-start-a-preserve-context-kernel-s-ram-at-ram.patch",
                           "0002-kexec-swap-the-low-ram-of-a-preserve-context-image.patch")


@pytest.mark.parametrize("arch", [Arch.I386, Arch.X86_64])
def test_build_with_the_lab_patches_is_static_cached_and_named(arch: Arch) -> None:
    spec = KexecToolsSpec(patches=LAB_PATCHES)
    first = build_kexec_tools(spec, arch)
    check_static(first.kexec, arch)  # raises unless static and of the guest's arch
    again = build_kexec_tools(spec, arch)
    assert again.kexec == first.kexec and again.provenance["cached"] is True
    prov = first.provenance
    assert prov["source"].startswith("debian:kexec-tools=1:2.0.25-")
    assert [m["file"] for m in prov["patches"]] == list(LAB_PATCHES)
    assert all(len(m["diff_sha256"]) == 64 for m in prov["patches"])
    # the patched code is in the program: 0002's helper is a static function, its effect is not
    # visible as a symbol once stripped, but the unpatched build is another cache entry
    plain = build_kexec_tools(KexecToolsSpec(), arch)
    assert plain.key != first.key and plain.provenance["patches"] == []


def test_the_built_kexec_runs_and_reports_its_version() -> None:
    build = build_kexec_tools(KexecToolsSpec(patches=LAB_PATCHES), Arch.X86_64)
    out = subprocess.run([str(build.kexec), "--version"], capture_output=True, text=True, timeout=30)
    assert "kexec-tools 2.0.25" in out.stdout + out.stderr


def test_a_patch_that_does_not_apply_names_itself(tmp_path: Path) -> None:
    bad = tmp_path / "0001-bad.patch"
    bad.write_text(
        "From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\n"
        "From: Someone <someone@example.invalid>\n"
        "Date: Tue, 8 Dec 2026 00:00:00 +0000\n"
        "Subject: [PATCH] kexec: a change to lines that are not there\n\n"
        "---\n"
        " kexec/kexec.c | 2 +-\n\n"
        "diff --git a/kexec/kexec.c b/kexec/kexec.c\n"
        "--- a/kexec/kexec.c\n"
        "+++ b/kexec/kexec.c\n"
        "@@ -1,3 +1,3 @@\n"
        " no such line one\n"
        "-no such line two\n"
        "+a replacement\n"
        " no such line three\n")
    with pytest.raises(PatchDoesNotApply) as info:
        build_kexec_tools(KexecToolsSpec(patches=(str(bad),)), Arch.I386)
    assert "a change to lines that are not there" in str(info.value)
    assert isinstance(info.value, BuildError)


def test_initramfs_carries_the_built_kexec_not_the_package(tmp_path: Path) -> None:
    build = build_kexec_tools(KexecToolsSpec(patches=LAB_PATCHES), Arch.I386)
    image = build_base(Arch.I386, kexec=build.kexec)
    assert "kexec-tools" not in image.packages  # the package's program is not in the image
    assert "sbin/kexec" in list_image(image.path)
    packaged = build_base(Arch.I386)
    assert "kexec-tools" in packaged.packages and packaged.key != image.key
    with gzip.open(image.path, "rb") as f:
        assert build.kexec.read_bytes() in f.read()  # byte for byte, as built


def _scenario(extra: dict) -> dict:
    return {"scenario": {"name": "t"}, **extra}


def test_scenario_kexec_tools_table(tmp_path: Path) -> None:
    sc = scenario_from_dict(_scenario({"kexec_tools": {"patches": list(LAB_PATCHES)}}), tmp_path / "t.toml")
    assert sc.kexec_tools == KexecToolsSpec("kexec-tools", "bookworm", LAB_PATCHES)
    assert scenario_from_dict(_scenario({}), tmp_path / "t.toml").kexec_tools is None
    own = tmp_path / "mine.patch"
    own.write_text("x")
    sc = scenario_from_dict(_scenario({"kexec_tools": {"source": "debian:kexec-tools@trixie",
                                                       "patches": ["./mine.patch"]}}), tmp_path / "t.toml")
    assert sc.kexec_tools is not None and sc.kexec_tools.suite == "trixie"
    assert sc.kexec_tools.patches == (str(own.resolve()),)


@pytest.mark.parametrize("table, words", [
    ({"patches": ["0009-nothing.patch"]}, "unknown kexec-tools patch"),
    ({"patches": ["../0001-x.patch"]}, "no such patch or mbox file"),
    ({"patches": ["sub/0001-x.patch"]}, "unknown kexec-tools patch"),
    ({"source": "tree:/src/kexec-tools"}, "only 'debian:PACKAGE[@SUITE]'"),
    ({"source": "debian:kexec-tools@Bookworm!"}, "not a Debian suite name"),
    ({"flavour": "x"}, "unknown key"),
])
def test_scenario_kexec_tools_table_rejects(tmp_path: Path, table: dict, words: str) -> None:
    with pytest.raises(ScenarioError, match=words.replace("[", r"\[").replace("]", r"\]")):
        scenario_from_dict(_scenario({"kexec_tools": table}), tmp_path / "t.toml")


def test_scenario_kexec_tools_not_with_buildroot(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="only with the 'debian' guest recipe"):
        scenario_from_dict(_scenario({"guest": {"recipe": "buildroot"}, "kexec_tools": {}}), tmp_path / "t.toml")


def test_a_matrix_patch_set_carries_kexec_tools_patches(tmp_path: Path) -> None:
    from lab.matrix import load_matrix

    path = tmp_path / "m.toml"
    path.write_text(f"""
[matrix]
name = "kt"
machines = ["pc-virtio"]
flows = ["hibernate"]
arch = ["i386"]

[[kernel]]
name = "6.1"
source = "debian:linux-source-6.1"

[[patchset]]
name = "lowmem"
patches = ["0001-x86-kexec-32-reload-gdt-before-restore-processor-state.patch"]
kexec_tools = {{ patches = {list(LAB_PATCHES)!r} }}

[[patchset]]
name = "stock"
patches = ["0001-x86-kexec-32-reload-gdt-before-restore-processor-state.patch"]
""".replace("'", '"'))
    cells = {c.patchset: c for c in load_matrix(path).cells}
    lowmem = scenario_from_dict(cells["lowmem"].scenario, path)  # as `kjlab matrix` reads a cell
    assert lowmem.kexec_tools == KexecToolsSpec(patches=LAB_PATCHES)
    assert scenario_from_dict(cells["stock"].scenario, path).kexec_tools is None
    bad = path.read_text().replace(f"kexec_tools = {{ patches = {list(LAB_PATCHES)!r} }}".replace("'", '"'),
                                   'kexec_tools = "0002"')
    path.write_text(bad)
    with pytest.raises(ScenarioError, match=r"patchset\[0\].kexec_tools"):
        load_matrix(path)


# -- the mails ----------------------------------------------------------------------------


def test_the_kexec_tools_fixes_are_a_numbered_series_with_fixes_tags_and_no_invented_signoff() -> None:
    import re

    for i, name in enumerate(LAB_PATCHES, 1):
        text = (PATCHES_DIR / name).read_text()
        assert re.match(rf"From [0-9a-f]{{40}} Mon Sep 17 00:00:00 2001\nFrom: .+\nDate: .+\nSubject: "
                        rf"\[PATCH {i}/{len(LAB_PATCHES)}\] kexec", text), name
        message = text.split("\n---\n", 1)[0]
        assert re.search(r"^Fixes: [0-9a-f]{12} \(\".+\"\)$", message, re.MULTILINE), name
        assert not re.search(r"^Signed-off-by:", message, re.MULTILINE), name  # the sender's (mail/README.md)
    cover = (PATCHES_DIR / "mail" / "0000-cover-letter.patch.txt").read_text()
    assert cover.startswith(f"Subject: [PATCH 0/{len(LAB_PATCHES)}] kexec")
    assert "kexec@lists.infradead.org" in cover and "the sender's to\nadd" in cover


@pytest.mark.parametrize("name", LAB_PATCHES)
def test_checkpatch_strict_is_clean(name: str) -> None:
    """kexec-tools follows the kernel's style; the newest checkpatch the lab has (7.2's, from
    Debian's source through the lab's cache), run inside the kernel tree as the kernel
    patches' test does. Its Fixes: ids are kexec-tools' commits, unknown to a kernel tree."""
    from tests.test_kernel_patches import unpacked_tree

    proc = subprocess.run(["perl", "scripts/checkpatch.pl", "--no-tree", "--strict", "--ignore",
                           "MISSING_SIGN_OFF,NO_AUTHOR_SIGN_OFF,UNKNOWN_COMMIT_ID", str(PATCHES_DIR / name)],
                          cwd=unpacked_tree("7.2"), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "total: 0 errors, 0 warnings, 0 checks" in proc.stdout, proc.stdout
