"""Mutation score per module, from the results of ``mutmut run`` (run this in the same folder afterwards).

A mutant is caught when a test fails (killed) or times out with it. Mutants listed in
``tests/equivalent_mutants.txt`` (one name per line, then ``#`` and why it cannot be caught) change nothing
observable and are left out of the score. A mutant that no test reaches is a gap like a survivor: it counts
against the score (and has its own column).

Usage::

    mutmut run && python scripts/mutation_scores.py
"""

from __future__ import annotations

import argparse
import subprocess
from collections import Counter, defaultdict
from pathlib import Path

CAUGHT = {"killed", "timeout"}


def read_statuses() -> dict[str, str]:
    """``{mutant name: status}`` as ``mutmut results --all true`` prints them."""
    output = subprocess.run(["mutmut", "results", "--all", "true"], capture_output=True, text=True, check=True).stdout
    statuses = {}
    for line in output.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name:
            statuses[name] = status
    return statuses


def read_equivalent(path: Path) -> set[str]:
    """The mutant names of ``path`` (text before ``#`` on each line)."""
    if not path.is_file():
        return set()
    return {line.split("#")[0].strip() for line in path.read_text().splitlines() if line.split("#")[0].strip()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--equivalent", type=Path, default=Path("tests/equivalent_mutants.txt"))
    parser.add_argument("--survivors", action="store_true", help="also list the surviving mutants")
    args = parser.parse_args()
    equivalent = read_equivalent(args.equivalent)
    by_module: dict[str, Counter] = defaultdict(Counter)
    survivors = []
    for name, status in read_statuses().items():
        if status == "not checked":  # not run this time: `mutmut run NAME...` runs the mutants named
            continue
        module = name.split(".x")[0]
        if name in equivalent:
            status = "equivalent"
        by_module[module][status] += 1
        if status not in CAUGHT | {"equivalent"}:
            survivors.append(f"{name}: {status}")
    print(f"{'module':<28}{'mutants':>8}{'caught':>8}{'survived':>9}{'no test':>8}{'equiv.':>7}{'score':>8}")
    for module, counts in sorted(by_module.items()):
        caught = sum(counts[status] for status in CAUGHT)
        judged = sum(counts.values()) - counts["equivalent"]
        columns = f"{sum(counts.values()):>8}{caught:>8}{counts['survived']:>9}{counts['no tests']:>8}"
        print(f"{module:<28}{columns}{counts['equivalent']:>7}{caught / max(judged, 1):>8.1%}")
    if args.survivors:
        print("\n" + "\n".join(sorted(survivors)))


if __name__ == "__main__":
    main()
