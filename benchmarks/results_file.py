"""benchmarks/results.md, one section per benchmark: a run with --write replaces its own `## Title` section (up to
the next `## ` heading) or appends it, and leaves the other sections, with their hand-written readings, alone."""

from __future__ import annotations

import re
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results.md"


def write_section(section: str, path: Path = RESULTS) -> None:
    """Put `section` (text starting with its `## Title` line) in place of the old one, atomically."""
    from dimatting.io import write_text

    title = section.splitlines()[0]
    if not title.startswith("## "):
        raise ValueError(f"a results section starts with '## Title', not {title!r}")
    text = path.read_text(encoding="utf-8") if path.is_file() else "# Benchmark results\n"
    section = section.rstrip("\n") + "\n\n"
    pattern = re.compile(rf"^{re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
    write_text(path, text.rstrip("\n") + "\n")
