"""A run's memory findings as RunResult.memory holds them: one frozen value per finding
(lab.memory.checks, lab.memory.roundtrip, the swsusp flow's image size), with named
fields, and the JSON form results.json has always had. A finding not made, and a field a
finding does not have, are left out of the JSON, so a record reads back as it was saved.

What another module already writes as JSON (a page diff, a sentinel check, an image's
segments, a range list: lab.memory.diff, .sentinels, .image, .ranges) is kept as that
JSON (`Json`) inside the finding that holds it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, TypeVar

from .ranges import Range

Json = dict[str, Any]
T = TypeVar("T")


@dataclass(frozen=True)
class SentinelPlanRecord:
    """The sentinel pages the flow plants in A (lab.memory.checks.SentinelPlan)."""

    token: str  # the run token, "0x" and 16 hex digits
    seed: int
    pages_per_region: int

    @classmethod
    def from_json(cls, d: Json) -> SentinelPlanRecord:
        return cls(d["token"], d["seed"], d["pages_per_region"])


@dataclass(frozen=True)
class HighmemZone:
    """A's HighMem zone as its boot log names it (lab.evidence.highmem_zone)."""

    range: str  # format_range
    bytes: int

    @classmethod
    def from_json(cls, d: Json) -> HighmemZone:
        return cls(d["range"], d["bytes"])


@dataclass(frozen=True)
class ImageCheck:
    """The saved image against A's memory in B and A's sentinel pages (checks.check_image)."""

    image: Json  # PhysImage.to_json: the image's segments
    image_vs_b_snapshot: Json  # RangeDiff.to_json
    left_out: Json  # ranges_to_json: what the image leaves out (zero-filled)
    # the sentinel pages A had in its HighMem zone at the jump; None: zone unknown or no plan
    sentinels_in_highmem: Json | None = None
    sentinels_in_image: Json | None = None  # SentinelCheck.to_json; None: no sentinel pages planned

    @classmethod
    def from_json(cls, d: Json) -> ImageCheck:
        return cls(d["image"], d["image_vs_b_snapshot"], d["left_out"], d.get("sentinels_in_highmem"),
                   d.get("sentinels_in_image"))


@dataclass(frozen=True)
class ResumeCheck:
    """A after the return (or resume) against A before it (checks.check_resume)."""

    changed: Json  # RangeDiff.to_json
    sentinels_after_resume: Json | None = None  # SentinelCheck.to_json; None: no sentinel pages planned
    sentinel_summary: str | None = None

    @classmethod
    def from_json(cls, d: Json) -> ResumeCheck:
        return cls(d["changed"], d.get("sentinels_after_resume"), d.get("sentinel_summary"))


@dataclass(frozen=True)
class SwsuspImage:
    """The kernel's own hibernation image on the swap disk (lab.flows.swsusp)."""

    bytes_on_swap: int  # the swap disk's allocated blocks after the hibernation
    swap_used_after_resume: int | None = None  # what A still has swapped out (/proc/swaps)
    image_bytes: int | None = None  # bytes_on_swap less the above and mkswap's header page

    @classmethod
    def from_json(cls, d: Json) -> SwsuspImage:
        return cls(d["bytes_on_swap"], d.get("swap_used_after_resume"), d.get("image_bytes"))


@dataclass(frozen=True)
class MemoryMap:
    """The report's picture of A's physical memory: one class per cell (checks.memory_view)."""

    total_bytes: int
    cells: tuple[str, ...]
    page_counts: dict[str, int]  # class -> pages
    bytes_per_cell: int

    @classmethod
    def from_json(cls, d: Json) -> MemoryMap:
        return cls(d["total_bytes"], tuple(d["cells"]), dict(d["page_counts"]), d["bytes_per_cell"])


@dataclass(frozen=True)
class ProofLeg:
    """One comparison of the round-trip chain as recorded (roundtrip.Leg)."""

    name: str
    a: str
    b: str
    pages_compared: int
    pages_differing: int
    holds: bool
    differing: tuple[Range, ...]  # the first 200 ranges
    examples: tuple[str, ...]  # PageDiff.line() of the first differing pages

    @classmethod
    def from_json(cls, d: Json) -> ProofLeg:
        return cls(d["name"], d["a"], d["b"], d["pages_compared"], d["pages_differing"], d["holds"],
                   _ranges(d["differing"]), tuple(d["examples"]))


@dataclass(frozen=True)
class LeftOutRange:
    """Pages the round-trip proof does not cover, and why."""

    range: Range
    pages: int
    why: str

    @classmethod
    def from_json(cls, d: Json) -> LeftOutRange:
        s, e = d["range"]
        return cls((s, e), d["pages"], d["why"])


@dataclass(frozen=True)
class RoundTripRecord:
    """The round-trip proof as recorded (roundtrip.RoundTripProof.record)."""

    domain: tuple[Range, ...]
    pages_in_domain: int
    proven: bool
    complete: bool
    missing: tuple[str, ...]  # moments never captured
    legs: tuple[ProofLeg, ...]
    left_out: tuple[LeftOutRange, ...]

    @classmethod
    def from_json(cls, d: Json) -> RoundTripRecord:
        return cls(_ranges(d["domain"]), d["pages_in_domain"], d["proven"], d["complete"], tuple(d["missing"]),
                   tuple(ProofLeg.from_json(x) for x in d["legs"]),
                   tuple(LeftOutRange.from_json(x) for x in d["left_out"]))


@dataclass(frozen=True)
class LowMemoryRecord:
    """The low 1 MiB of A across the round trip (lab.memory.low_memory)."""

    pages_compared: int
    changed: tuple[str, ...]  # LowPage.line() of every changed page
    owners: tuple[str, ...]  # each changed page's owner, in the same order
    used_after_resume: int  # how many of them A uses after the resume on this machine

    @classmethod
    def from_json(cls, d: Json) -> LowMemoryRecord:
        return cls(d["pages_compared"], tuple(d["changed"]), tuple(d["owners"]), d["used_after_resume"])


@dataclass(frozen=True)
class OwnWrite:
    """A page A wrote itself after it took control back, and what it is."""

    address: int
    what: str

    @classmethod
    def from_json(cls, d: Json) -> OwnWrite:
        return cls(d["address"], d["what"])


@dataclass(frozen=True)
class ResumedLegRecord:
    """Every page of A's RAM when A runs again, against A at departure (lab.memory.resumed)."""

    summary: str  # the headline: what was proven
    ok: bool
    pages: int
    equal: int
    window_back: int
    sources_kept: int
    low_memory: LowMemoryRecord
    own_writes: tuple[OwnWrite, ...]
    lost: tuple[Range, ...]
    left_out_by_image: tuple[Range, ...]
    problems: tuple[str, ...]
    missing: tuple[str, ...]

    @classmethod
    def from_json(cls, d: Json) -> ResumedLegRecord:
        return cls(d["summary"], d["ok"], d["pages"], d["equal"], d["window_back"], d["sources_kept"],
                   LowMemoryRecord.from_json(d["low_memory"]), tuple(OwnWrite.from_json(x) for x in d["own_writes"]),
                   _ranges(d["lost"]), _ranges(d["left_out_by_image"]), tuple(d["problems"]), tuple(d["missing"]))


@dataclass(frozen=True)
class MemoryRecord:
    """All of a run's memory findings; None: not made in this run. The fields' order is the
    JSON's (the order the flows make them in)."""

    sentinel_plan: SentinelPlanRecord | None = None
    highmem_zone: HighmemZone | None = None  # i386 A with HighMem only
    image_check: ImageCheck | None = None
    image_bad_ranges: tuple[Range, ...] | None = None  # the image check's damaged ranges, for the map
    swsusp_image: SwsuspImage | None = None
    round_trip: RoundTripRecord | None = None
    # A when it runs again, every page of its RAM (the low 1 MiB named by owner)
    resumed: ResumedLegRecord | None = None
    # the low 1 MiB at departure and at return, when A never ran again (lab.memory.low_memory)
    low_memory_at_return: LowMemoryRecord | None = None
    resume: ResumeCheck | None = None
    map: MemoryMap | None = None

    def to_json(self) -> Json:
        out = _to_json(self)
        assert isinstance(out, dict)
        return out

    @classmethod
    def from_json(cls, d: Json) -> MemoryRecord:
        def opt(key: str, parse: Callable[[Any], T]) -> T | None:
            return None if d.get(key) is None else parse(d[key])

        return cls(
            sentinel_plan=opt("sentinel_plan", SentinelPlanRecord.from_json),
            highmem_zone=opt("highmem_zone", HighmemZone.from_json),
            image_check=opt("image_check", ImageCheck.from_json),
            image_bad_ranges=opt("image_bad_ranges", _ranges),
            swsusp_image=opt("swsusp_image", SwsuspImage.from_json),
            round_trip=opt("round_trip", RoundTripRecord.from_json),
            resumed=opt("resumed", ResumedLegRecord.from_json),
            low_memory_at_return=opt("low_memory_at_return", LowMemoryRecord.from_json),
            resume=opt("resume", ResumeCheck.from_json),
            map=opt("map", MemoryMap.from_json),
        )


def _ranges(items: list[list[int]]) -> tuple[Range, ...]:
    return tuple((s, e) for s, e in items)


def _to_json(value: Any) -> Any:
    """A record as JSON: fields in order, None fields left out, tuples as lists."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_json(v) for f in fields(value) if (v := getattr(value, f.name)) is not None}
    if isinstance(value, (tuple, list)):
        return [_to_json(v) for v in value]
    return value
