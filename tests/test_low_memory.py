"""Kernel A's per-kernel parameters: before 5.13 it must be told to keep out of the low
640K, where B and C run and which B's vmcore does not save (lab.flows.common)."""

from __future__ import annotations

from lab.flows.common import a_low_memory_params


def test_reservelow_only_before_5_13() -> None:
    assert a_low_memory_params("5.10.262") == "reservelow=640K"
    assert a_low_memory_params("5.12.19") == "reservelow=640K"
    assert a_low_memory_params("4.19.0-1-686") == "reservelow=640K"
    for release in ("5.13.0", "5.15.1", "6.1.192", "6.12.117", "7.2.13", "10.1.0", ""):
        assert a_low_memory_params(release) == "", release
