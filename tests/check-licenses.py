#!/usr/bin/env python3
"""Fails when any crate in the dependency graph can only be used under a GPL
family licence (GPL, AGPL, LGPL): Stratus is Apache-2.0 OR MIT.

Reads `cargo metadata`; an SPDX expression passes when at least one
alternative of its OR is free of GPL terms. A crate without a licence
expression fails too, so that nothing slips through unreviewed.
"""
import json
import re
import subprocess
import sys


def acceptable(expr: str) -> bool:
    expr = expr.replace("/", " OR ")  # old-style "MIT/Apache-2.0"
    # Flatten parentheses: an alternative is acceptable when none of its
    # AND-ed terms is a GPL-family licence.
    alternatives = re.split(r"\s+OR\s+", expr.replace("(", " ").replace(")", " "))
    return any(not re.search(r"\bA?L?GPL", alt, re.IGNORECASE) for alt in alternatives)


def main() -> int:
    meta = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--locked"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    members = set(meta["workspace_members"])
    bad = []
    for pkg in meta["packages"]:
        if pkg["id"] in members:
            continue
        lic = pkg.get("license")
        if not lic:
            bad.append(f"{pkg['name']} {pkg['version']}: no SPDX licence expression")
        elif not acceptable(lic):
            bad.append(f"{pkg['name']} {pkg['version']}: {lic}")
    checked = len(meta["packages"]) - len(members)
    if bad:
        print("licence check failed: these crates are GPL-family only or unlicensed:")
        for line in bad:
            print("  " + line)
        return 1
    print(f"licence check: {checked} dependencies, none GPL/AGPL/LGPL-only")
    return 0


if __name__ == "__main__":
    assert acceptable("MIT OR Apache-2.0")
    assert acceptable("(MIT OR Apache-2.0) AND Unicode-3.0")
    assert acceptable("MIT/Apache-2.0")
    assert acceptable("GPL-3.0 OR MIT")
    assert not acceptable("AGPL-3.0-only")
    assert not acceptable("GPL-2.0-or-later")
    assert not acceptable("LGPL-2.1 AND MIT")
    sys.exit(main())
