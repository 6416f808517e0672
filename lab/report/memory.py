"""The report's Memory section from RunResult.memory (lab.memory.record: the findings of
lab.memory.checks and lab.memory.roundtrip)."""

from __future__ import annotations

from typing import Any

from ..memory.record import MemoryRecord, ResumedLegRecord, RoundTripRecord
from .format import format_size
from .view import MemoryView, ProofView

MEMORY_COLOURS = {"corrupted": "#cf222e", "changed": "#d4a72c", "sentinel": "#3b6fb6", "proven": "#1a7f37",
                  "b_window": "#8250df", "unchanged": "#7ab88a", "absent": "#eaeef2"}


def proof_view(rt: RoundTripRecord | None, resumed: ResumedLegRecord | None = None) -> ProofView | None:
    if rt is None:
        return None
    n = rt.pages_in_domain
    legs = []
    for leg in rt.legs:
        summary = (f"all {leg.pages_compared} pages identical" if leg.holds else
                   f"{leg.pages_differing} of {leg.pages_compared} pages differ")
        legs.append((leg.name, summary, leg.holds, list(leg.examples)))
    if rt.proven:
        headline = f"{n} pages of A ({format_size(n * 4096)}) proven identical at departure, in B, on the disk and at return"
    else:
        missing = "; ".join(rt.missing)
        headline = "the round trip is NOT proven" + (f": {missing}" if missing else "")
    left = [(f"{x.range[0]:#x}-{x.range[1]:#x} ({x.pages} pages)", x.why) for x in rt.left_out]
    proven = rt.proven
    if resumed is not None:
        details = [*resumed.low_memory.changed, *(f"page {w.address:#x}: {w.what}" for w in resumed.own_writes),
                   *resumed.problems]
        legs.append(("departure = A running again", resumed.summary, resumed.ok, details))
        proven = proven and resumed.ok
        if rt.proven:  # the headline says what was proven, and never more
            headline = f"{resumed.summary}; the image's {n} pages also identical at departure, in B, on the disk and at return"
        if resumed.ok:
            left = [(where, f"{why} (in the chain; the last leg covers it)") for where, why in left]
    elif rt.proven:
        headline += "; A running again was not compared: the low 1 MiB and B's window are not proven"
    return ProofView(proven, headline, legs, left)


def memory_view(memory: MemoryRecord) -> MemoryView | None:
    """The report's memory section from RunResult.memory (see lab.memory.record)."""
    mp = memory.map
    if mp is None:
        return None
    lines: list[tuple[str, str]] = []
    plan = memory.sentinel_plan
    if plan is not None:
        lines.append(("sentinel pages", f"{plan.pages_per_region} per region (tmpfs file, anonymous memory), "
                                          f"run token {plan.token}"))
    image = memory.image_check
    if image is not None:
        d = image.image_vs_b_snapshot
        lines.append(("image vs A's memory in B", f"{d.get('pages_compared')} pages compared, {d.get('pages_differing')} differ"
                      + _range_list(d.get("differing", {}))))
        if image.left_out.get("count"):
            lines.append(("left out of the image", f"{image.left_out.get('bytes', 0) >> 12} pages (zero-filled)"
                          + _range_list(image.left_out)))
        if image.sentinels_in_image is not None:
            lines.append(("sentinels in the image", _sentinel_line(image.sentinels_in_image, moved_ok=True)))
    low = memory.low_memory_at_return
    if low is not None:
        lines.append(("the low 1 MiB at return (A never ran again)",
                      f"{len(low.changed)} of {low.pages_compared} pages changed, {low.used_after_resume} of them "
                      "A's memory in use" + "".join(f"\n{line}" for line in low.changed[:40])))
    resume = memory.resume
    if resume is not None:
        if resume.sentinels_after_resume is not None:
            lines.append(("sentinels after resume", _sentinel_line(resume.sentinels_after_resume, moved_ok=False)))
        c = resume.changed
        lines.append(("guest RAM changed between the two snapshots of A", f"{c.get('pages_differing')} of {c.get('pages_compared')} pages"
                      + _range_list(c.get("differing", {}))))
    return MemoryView(
        cells=list(mp.cells),
        legend=[(name, MEMORY_COLOURS[name], mp.page_counts.get(name, 0)) for name in MEMORY_COLOURS],
        total=format_size(mp.total_bytes),
        per_cell=format_size(mp.bytes_per_cell),
        lines=lines,
        proof=proof_view(memory.round_trip, memory.resumed),
    )


def _range_list(ranges: dict[str, Any], limit: int = 8) -> str:
    items = ranges.get("ranges", [])
    if not items:
        return ""
    text = ", ".join(r["range"] for r in items[:limit])
    more = len(items) - limit + ranges.get("omitted", 0)
    return f": {text}" + (f" (+{more} more)" if more > 0 else "")


def _sentinel_line(check: dict[str, Any], moved_ok: bool) -> str:
    parts = [f"{sum(check.get('found_intact', {}).values())}/{sum(check.get('expected', {}).values())} intact"
             + ("" if moved_ok else " in place")]
    kinds = ("missing", "corrupted") + (() if moved_ok else ("moved",))
    for kind in kinds:
        for region, g in check.get(kind, {}).items():
            where = g.get("from_ranges") or g.get("ranges", {})
            parts.append(f"{g.get('count')} {region} {'lost' if kind == 'missing' else kind} "
                         f"(indices {g.get('indices')})" + _range_list(where, 4))
    if moved_ok:
        moved = sum(g.get("count", 0) for g in check.get("moved", {}).values())
        if moved:
            parts.append(f"{moved} at other addresses (B's window lives in kexec's swap pages: expected)")
    if check.get("damaged_headers"):
        parts.append(f"{len(check['damaged_headers'])} with a damaged header where A kept one: "
                     + ", ".join(check["damaged_headers"][:4]))
    if check.get("stale_headers"):
        parts.append(f"{len(check['stale_headers'])} stale copies with a broken header in pages that held "
                     "no sentinel before (not A's data)")
    return "; ".join(parts)
