"""Command-line helpers shared by the launchers: ``--set key=value`` parsing and tables."""

import ast
from typing import Dict, Iterable, List, Sequence


def parse_overrides(pairs: Iterable[str]) -> Dict[str, object]:
    """``["lr=0.1", "milestones=[3]", "task=digits"]`` -> {"lr": 0.1, "milestones": [3], "task": "digits"}.

    Values are Python literals when they parse as one, else strings.
    """
    out = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects key=value, got {pair!r}")
        try:
            out[key.strip()] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            out[key.strip()] = raw
    return out


def format_table(header: Sequence[str], rows: List[Sequence[object]]) -> str:
    cells = [[str(h) for h in header]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)
