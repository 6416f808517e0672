"""The artifact cache: entries carry a manifest; a damaged, truncated or manifest-less
entry is rebuilt (and said so in the log), never trusted. Real files, a real builder."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from lab import cache
from lab.cache import MANIFEST, cached_dir, verify_manifest


class Builder:
    """Builds a small artifact: an image, a config and a symlink, and counts its builds."""

    def __init__(self) -> None:
        self.builds = 0

    def __call__(self, out: Path) -> None:
        self.builds += 1
        (out / "bzImage").write_bytes(bytes(range(256)) * 64)
        (out / "sub").mkdir()
        (out / "sub" / "config").write_text("CONFIG_KEXEC_JUMP=y\n")
        (out / "link").symlink_to("bzImage")


@pytest.fixture
def builder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Builder:
    monkeypatch.setenv("KJLAB_CACHE", str(tmp_path / "cache"))
    return Builder()


def test_entry_has_a_manifest_and_is_reused(builder: Builder) -> None:
    out, cached = cached_dir("kernel", "k1", builder)
    assert not cached and builder.builds == 1
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["key"] == "k1"
    assert manifest["files"]["bzImage"]["size"] == 256 * 64
    assert len(manifest["files"]["sub/config"]["sha256"]) == 64
    assert manifest["files"]["link"] == {"link": "bzImage"}
    assert cached_dir("kernel", "k1", builder) == (out, True) and builder.builds == 1
    assert not list(out.parent.glob("k1.*tmp*")) and not list(out.parent.glob("k1.damaged*"))


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete", "relink", "manifest"])
def test_damaged_entry_is_rebuilt(builder: Builder, damage: str, caplog: pytest.LogCaptureFixture) -> None:
    out, _ = cached_dir("kernel", "k1", builder)
    image = out / "bzImage"
    if damage == "truncate":  # a crash before the data reached the disk
        with open(image, "r+b") as f:
            f.truncate(1000)
    elif damage == "flip":  # same size, other content
        data = bytearray(image.read_bytes())
        data[5000] ^= 0xFF
        image.write_bytes(bytes(data))
    elif damage == "delete":
        (out / "sub" / "config").unlink()
    elif damage == "relink":
        (out / "link").unlink()
        (out / "link").symlink_to("sub/config")
    elif damage == "manifest":
        (out / MANIFEST).write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="lab.cache"):
        again, cached = cached_dir("kernel", "k1", builder)
    assert (again, cached) == (out, False) and builder.builds == 2
    assert "not trusted, rebuilding" in caplog.text and "k1" in caplog.text
    assert image.read_bytes() == bytes(range(256)) * 64
    verify_manifest(out, hashes=True)
    assert not list(out.parent.glob("k1.damaged*"))  # set aside, then removed


def test_a_file_added_to_an_entry_is_ignored(builder: Builder) -> None:
    """Nothing reads it: not a reason to rebuild (a source tree must not be unpacked again
    on every run because a tool left a file in it)."""
    out, _ = cached_dir("source", "s1", builder)
    (out / "stray.o").write_text("")
    assert cached_dir("source", "s1", builder) == (out, True) and builder.builds == 1


def test_entry_of_an_older_kjlab_is_rebuilt(builder: Builder) -> None:
    """Built before manifests existed: a .complete marker only. Stale, not trusted."""
    old = cache.cache_root() / "kernel" / "k1"
    old.mkdir(parents=True)
    (old / "bzImage").write_bytes(b"half")
    (old / ".complete").write_text("k1\n")
    out, cached = cached_dir("kernel", "k1", builder)
    assert out == old and not cached and builder.builds == 1
    assert (out / "bzImage").stat().st_size == 256 * 64


def test_large_entries_check_sizes_only(builder: Builder, monkeypatch: pytest.MonkeyPatch) -> None:
    out, _ = cached_dir("source", "big", builder)
    data = bytearray((out / "bzImage").read_bytes())
    data[0] ^= 0xFF
    (out / "bzImage").write_bytes(bytes(data))
    monkeypatch.setattr(cache, "HASH_VERIFY_LIMIT", 100)  # this entry counts as large now
    assert cached_dir("source", "big", builder) == (out, True)  # same sizes: reused
    monkeypatch.setattr(cache, "HASH_VERIFY_LIMIT", 1 << 30)
    assert cached_dir("source", "big", builder) == (out, False)  # contents checked: rebuilt


def test_failed_build_leaves_nothing(builder: Builder) -> None:
    def broken(out: Path) -> None:
        (out / "bzImage").write_bytes(b"partial")
        raise RuntimeError("compiler crashed")

    with pytest.raises(RuntimeError):
        cached_dir("kernel", "k2", broken)
    kind_dir = cache.cache_root() / "kernel"
    assert sorted(p.name for p in kind_dir.iterdir()) == ["k2.lock"]


KILLED_BUILDER = """
import os, sys, time
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from lab.cache import cached_dir

def build(out: Path) -> None:
    work = out.parent / (out.name + ".work")  # as a kernel build stages its tree and objects
    (work / "obj").mkdir(parents=True)
    (work / "obj" / "vmlinux.o").write_bytes(b"x" * 4096)
    (out / "bzImage").write_bytes(b"half")
    print("building", flush=True)
    time.sleep(300)

cached_dir("kernel", "k3", build)
"""


def test_what_a_killed_build_left_is_swept_by_the_next(builder: Builder, tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    # a real builder process, SIGKILLed mid-build (no finally runs), as on an OOM kill or a reboot
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", KILLED_BUILDER, str(Path(__file__).resolve().parent.parent)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "building\n"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    kind_dir = cache.cache_root() / "kernel"
    left = sorted(p.name for p in kind_dir.iterdir())
    assert left == ["k3.lock", f"k3.tmp{proc.pid}", f"k3.tmp{proc.pid}.work"]
    with caplog.at_level(logging.WARNING, logger="lab.cache"):
        out, cached = cached_dir("kernel", "k3", builder)
    assert not cached and (out / "bzImage").read_bytes() == bytes(range(256)) * 64
    assert sorted(p.name for p in kind_dir.iterdir()) == ["k3", "k3.lock"]
    assert f"k3.tmp{proc.pid}.work, left by a build that did not finish" in caplog.text


def test_another_key_s_leftovers_go_unless_it_is_being_built(builder: Builder) -> None:
    import fcntl

    kind_dir = cache.cache_root() / "kernel"
    for name in ("dead.tmp111", "dead.tmp111.work", "busy.tmp222.work", "old.damaged-333-1"):
        (kind_dir / name).mkdir(parents=True)
    with open(kind_dir / "busy.lock", "w") as busy:
        fcntl.flock(busy, fcntl.LOCK_EX)  # a live builder of "busy" (the lock is per open file)
        cached_dir("kernel", "k4", builder)
    assert sorted(p.name for p in kind_dir.iterdir() if not p.name.endswith(".lock")) == ["busy.tmp222.work", "k4"]
