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
