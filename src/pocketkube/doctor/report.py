"""The checklist as text (✓ / ✗ / –, colour only on a terminal) or JSON, and the verdict."""

from __future__ import annotations

import json

from pocketkube.doctor.checks import MISSING, OK, Check, healthy
from pocketkube.doctor.mode import Mode

MARKS = {OK: ("✓", "32"), MISSING: ("✗", "31"), "info": ("–", "33")}


def _paint(text: str, colour: str, tty: bool) -> str:
    return f"\x1b[{colour}m{text}\x1b[0m" if tty else text


def render_text(checks: list[Check], mode: Mode | None, tty: bool = False) -> str:
    lines = []
    for c in checks:
        mark, colour = MARKS[c.status]
        lines.append(f"{_paint(mark, colour, tty)} {c.title}" + (f": {c.detail}" if c.detail else ""))
        if c.status != OK and c.disables:
            lines.append(f"    without it: {c.disables}")
        if c.status != OK and c.fix:
            lines.append(f"    fix: {c.fix}")
        if c.status != OK and c.other:
            lines.append(f"         {c.other}")
    lines.append("")
    if mode is not None:
        lines.append(f"pocketkube up would run: {mode.line}")
    if healthy(checks):
        lines.append(_paint("Everything the full mode needs is here.", "32", tty))
    else:
        n = sum(c.status == MISSING for c in checks)
        lines.append(_paint(f"{n} missing: see the fixes above.", "31", tty))
    return "\n".join(lines)


def render_json(checks: list[Check], mode: Mode | None) -> str:
    doc = {"ok": healthy(checks), "checks": [c.to_json() for c in checks],
           "mode": None if mode is None else {"runtime": mode.runtime, "dataplane": mode.dataplane, "why": mode.line}}
    return json.dumps(doc, indent=2, ensure_ascii=False)
