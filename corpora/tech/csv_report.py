"""Summarise a CSV file of expenses by category.

Usage:
    python csv_report.py expenses.csv

The CSV needs a header row with at least the columns ``date``, ``category`` and ``amount``. The
script prints the total per category, largest first, and the grand total.
"""

from __future__ import annotations

import csv
import sys
from collections import defaultdict
from decimal import Decimal, InvalidOperation


def totals_by_category(rows):
    """Return a dict mapping category to the sum of its amounts, skipping malformed amounts."""
    totals = defaultdict(Decimal)
    for row in rows:
        try:
            amount = Decimal(row["amount"].strip())
        except (InvalidOperation, KeyError, AttributeError):
            continue
        category = (row.get("category") or "uncategorised").strip().lower()
        totals[category] += amount
    return dict(totals)


def print_report(totals, out=sys.stdout):
    """Print one line per category, largest total first, then the grand total."""
    width = max((len(name) for name in totals), default=8)
    for name, amount in sorted(totals.items(), key=lambda item: item[1], reverse=True):
        print(f"{name:<{width}}  {amount:>10.2f}", file=out)
    print(f"{'total':<{width}}  {sum(totals.values(), Decimal()):>10.2f}", file=out)


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1], newline="", encoding="utf-8") as handle:
        totals = totals_by_category(csv.DictReader(handle))
    print_report(totals)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
