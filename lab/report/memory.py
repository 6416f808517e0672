"""The report's Memory section from RunResult.memory (lab.memory.checks, lab.memory.roundtrip)."""

from __future__ import annotations

from typing import Any

from .format import format_size
from .view import MemoryView, ProofView

MEMORY_COLOURS = {"corrupted": "#cf222e", "changed": "#d4a72c", "sentinel": "#3b6fb6", "proven": "#1a7f37",
                  "b_window": "#8250df", "unchanged": "#7ab88a", "absent": "#eaeef2"}


def proof_view(rt: dict[str, Any]) -> ProofView | None:
    if not rt:
        return None
    n = rt.get("pages_in_domain", 0)
    legs = []
    for leg in rt.get("legs", []):
        holds = bool(leg.get("holds"))
        summary = (f"all {leg.get('pages_compared')} pages identical" if holds else
                   f"{leg.get('pages_differing')} of {leg.get('pages_compared')} pages differ")
        legs.append((str(leg.get("name")), summary, holds, [str(x) for x in leg.get("examples", [])]))
    if rt.get("proven"):
        headline = f"{n} pages of A ({format_size(n * 4096)}) proven identical at departure, in B, on the disk and at return"
    else:
        missing = "; ".join(rt.get("missing", []))
        headline = "the round trip is NOT proven" + (f": {missing}" if missing else "")
    left = [(f"{x['range'][0]:#x}-{x['range'][1]:#x} ({x.get('pages')} pages)", str(x.get("why"))) for x in rt.get("left_out", [])]
    return ProofView(bool(rt.get("proven")), headline, legs, left)


def memory_view(memory: dict[str, Any]) -> MemoryView | None:
    """The report's memory section from RunResult.memory (see lab.memory.checks)."""
    mp = memory.get("map")
    if not mp:
        return None
    lines: list[tuple[str, str]] = []
    plan = memory.get("sentinel_plan", {})
    if plan:
        lines.append(("sentinel pages", f"{plan.get('pages_per_region')} per region (tmpfs file, anonymous memory), "
                                          f"run token {plan.get('token')}"))
    image = memory.get("image_check", {})
    if "image_vs_b_snapshot" in image:
        d = image["image_vs_b_snapshot"]
        lines.append(("image vs A's memory in B", f"{d.get('pages_compared')} pages compared, {d.get('pages_differing')} differ"
                      + _range_list(d.get("differing", {}))))
    if image.get("left_out", {}).get("count"):
        lines.append(("left out of the image", f"{image['left_out'].get('bytes', 0) >> 12} pages (zero-filled)"
                      + _range_list(image["left_out"])))
    if "sentinels_in_image" in image:
        lines.append(("sentinels in the image", _sentinel_line(image["sentinels_in_image"], moved_ok=True)))
    resume = memory.get("resume", {})
    if "sentinels_after_resume" in resume:
        lines.append(("sentinels after resume", _sentinel_line(resume["sentinels_after_resume"], moved_ok=False)))
    if "changed" in resume:
        c = resume["changed"]
        lines.append(("guest RAM changed between the two snapshots of A", f"{c.get('pages_differing')} of {c.get('pages_compared')} pages"
                      + _range_list(c.get("differing", {}))))
    counts = mp.get("page_counts", {})
    return MemoryView(
        cells=list(mp["cells"]),
        legend=[(name, MEMORY_COLOURS[name], counts.get(name, 0)) for name in MEMORY_COLOURS],
        total=format_size(int(mp["total_bytes"])),
        per_cell=format_size(int(mp["bytes_per_cell"])),
        lines=lines,
        proof=proof_view(memory.get("round_trip", {})),
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
    return "; ".join(parts)
