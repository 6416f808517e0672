"""The cluster's store (file://, as on a shared mount): an entry published by one cache
is fetched, checked against its manifest, into another; a damaged one is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.artifact_store import ArtifactStore, StoreError
from lab.cache import cached_dir


def built_entry(cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KJLAB_CACHE", str(cache))

    def build(tmp: Path) -> None:
        (tmp / "bzImage").write_bytes(b"kernel" * 1000)
        (tmp / "sub").mkdir()
        (tmp / "sub" / "config").write_text("CONFIG_KEXEC_JUMP=y\n")

    entry, _ = cached_dir("kernel", "k1", build)
    return entry


def test_published_then_fetched_into_another_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ArtifactStore(f"file://{tmp_path / 'store'}")
    entry = built_entry(tmp_path / "cache-a", monkeypatch)
    assert not store.has("kernel", "k1")
    store.publish("kernel", "k1", entry)
    assert store.has("kernel", "k1")
    monkeypatch.setenv("KJLAB_CACHE", str(tmp_path / "cache-b"))
    fetched = store.fetch("kernel", "k1")
    assert fetched == tmp_path / "cache-b" / "kernel" / "k1"
    assert (fetched / "sub" / "config").read_text() == "CONFIG_KEXEC_JUMP=y\n"
    with pytest.raises(StoreError, match="not in the store"):
        store.fetch("kernel", "nope")


def test_a_damaged_entry_is_not_fetched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ArtifactStore(f"file://{tmp_path / 'store'}")
    store.publish("kernel", "k1", built_entry(tmp_path / "cache-a", monkeypatch))
    (tmp_path / "store" / "artifacts" / "kernel" / "k1" / "bzImage").write_bytes(b"kernel" * 999 + b"xxxxxx")
    monkeypatch.setenv("KJLAB_CACHE", str(tmp_path / "cache-b"))
    with pytest.raises(StoreError, match="does not match its manifest"):
        store.fetch("kernel", "k1")
    assert not (tmp_path / "cache-b" / "kernel" / "k1").exists()


def test_cells_done_records_and_the_index(tmp_path: Path) -> None:
    store = ArtifactStore(f"file://{tmp_path / 'store'}")
    assert store.cell_done("night", "cell") is None
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text("{}")
    log = tmp_path / "cell.log"
    log.write_text("a log\n")
    store.put_cell("night", "cell", run, log, {"cell": "c", "inline": ["results.json"]})
    assert store.cell_done("night", "cell") == {"cell": "c", "inline": ["results.json"]}
    assert store.read_cell_file("night", "cell", "run/results.json") == b"{}"
    assert store.index_get("kernel-x") is None
    store.index_set("kernel-x", "abc")
    assert store.index_get("kernel-x") == "abc"
