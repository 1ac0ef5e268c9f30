"""Print the requirements of modelpilot's extras, one a line, for an image's dependency layer.

    python3 images/requirements.py PYPROJECT [--base] [EXTRA ...]

`--base` adds `[project] dependencies` (the operator's). Extras that name `modelpilot[...]` are
expanded here, so that the dependency layer can be installed from pyproject.toml alone, before the
source is copied (a source change then rebuilds only the small application layer).
"""

from __future__ import annotations

import re
import sys
import tomllib

SELF = re.compile(r"^modelpilot\[([^\]]+)\]$")


def requirements(project: dict, extras: list[str], base: bool) -> list[str]:
    table = project.get("optional-dependencies", {})
    out: list[str] = list(project.get("dependencies", [])) if base else []
    pending, seen = list(extras), set()
    while pending:
        extra = pending.pop(0)
        if extra in seen:
            continue
        if extra not in table:
            raise SystemExit(f"images/requirements.py: unknown extra {extra!r}; known: {', '.join(sorted(table))}")
        seen.add(extra)
        for req in table[extra]:
            m = SELF.match(req.replace(" ", ""))
            if m:
                pending.extend(e.strip() for e in m.group(1).split(","))
            elif req not in out:
                out.append(req)
    return out


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit(__doc__)
    with open(argv[0], "rb") as f:
        project = tomllib.load(f)["project"]
    args = argv[1:]
    base = "--base" in args
    extras = [e for a in args if a != "--base" for e in a.split(",") if e]
    print("\n".join(requirements(project, extras, base)))


if __name__ == "__main__":
    main(sys.argv[1:])
