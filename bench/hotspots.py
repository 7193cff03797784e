"""Summarise a py-spy profile: the functions where the gateway spends its time.

`python bench/hotspots.py PROFILE.txt [TOP]` reads py-spy's raw (collapsed-stack) output,
`py-spy record -f raw`, and prints two tables: self time (samples whose innermost frame is
the function) and inclusive time (samples with the function anywhere on the stack, counted
once per sample), each as a share of all samples. bench/profile.sh produces the input.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

# py-spy frames look like "function (path/to/file.py:123)"; the line number is dropped so a
# function's samples add up across its lines.
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")
_PREFIXES = ("/work/main/src/", "/ref/src/", "site-packages/", "lib/python3.11/")


def _name(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match["file"]
    for prefix in _PREFIXES:
        if prefix in path:
            path = path.split(prefix, 1)[1]
            break
    return f"{match['func']} ({path})"


def summarise(text: str) -> tuple[int, Counter[str], Counter[str]]:
    total = 0
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_name(f) for f in stack.split(";") if f.strip()]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    return total, own, inclusive


def _table(title: str, counts: Counter[str], total: int, top: int) -> list[str]:
    lines = [f"| {title} | share | samples |", "|---|---:|---:|"]
    for name, count in counts.most_common(top):
        lines.append(f"| `{name}` | {count / total:.1%} | {count} |")
    return lines


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit("usage: python bench/hotspots.py PROFILE.txt [TOP]")
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 25
    total, own, inclusive = summarise(Path(sys.argv[1]).read_text())
    if not total:
        raise SystemExit("no samples in the profile")
    print(f"{total} samples\n")
    print("\n".join(_table("self time", own, total, top)))
    print()
    print("\n".join(_table("inclusive time", inclusive, total, top)))


if __name__ == "__main__":
    main()
