"""The report's Provenance section: results.json's nested provenance as indented rows."""

from __future__ import annotations

from typing import Any

from .format import format_scalar, format_time, is_epoch
from .view import ProvenanceRow


def provenance_rows(data: Any, depth: int = 0) -> list[ProvenanceRow]:
    """Nested dicts and lists as indented key/value rows. Lists of plain values become
    one value: comma-separated if short, else one item per line."""
    rows: list[ProvenanceRow] = []
    items = data.items() if isinstance(data, dict) else ((f"[{i}]", v) for i, v in enumerate(data))
    for key, value in items:
        key = str(key)
        if isinstance(value, dict | list | tuple) and not value:
            rows.append(ProvenanceRow(key, "(empty)", depth, False))
        elif isinstance(value, dict) or (isinstance(value, list | tuple) and any(isinstance(v, dict | list) for v in value)):
            rows.append(ProvenanceRow(key, "", depth, True))
            rows.extend(provenance_rows(value, depth + 1))
        elif isinstance(value, list | tuple):
            parts = [format_scalar(v) for v in value]
            joined = ", ".join(parts)
            rows.append(ProvenanceRow(key, joined if len(joined) <= 80 else "\n".join(parts), depth, False))
        elif is_epoch(key, value):
            rows.append(ProvenanceRow(key, format_time(float(value)), depth, False))
        else:
            rows.append(ProvenanceRow(key, format_scalar(value), depth, False))
    return rows
