#!/usr/bin/env python3
"""Medians over benchmark rounds, as one table.

    medians.py RESULTS [--keys K1,K2,...] [--fmt '{:>12g}']

RESULTS holds one line per phase and round: `NAME key=value key=value ...`
(what the bench-*.sh scripts write). Prints a row per key (or, with
--by-name, a row per name) and a column per name, each cell the median of
that key's numeric values over the rounds; values that are not numbers are
left out. The keys are those of the first line, or --keys.
"""
import argparse
import statistics


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--keys", help="comma-separated keys, in this order")
    ap.add_argument("--fmt", default="{:>12g}", help="format of a cell")
    ap.add_argument("--by-name", action="store_true", help="a row per name, a column per key")
    a = ap.parse_args()
    rows = {}
    first = []
    first_line = -1
    with open(a.results) as f:
        for n, line in enumerate(f):
            if not line.split():
                continue
            name, *kv = line.split()
            for k, v in (x.split("=", 1) for x in kv if "=" in x):
                if not first or n == first_line:
                    first_line = n
                    if k not in first:
                        first.append(k)
                try:
                    rows.setdefault(name, {}).setdefault(k, []).append(float(v))
                except ValueError:
                    pass
    if not rows:
        return
    keys = a.keys.split(",") if a.keys else first
    width = len(a.fmt.format(0.0))

    def cell(name, k):
        vals = rows[name].get(k)
        return a.fmt.format(statistics.median(vals)) if vals else f"{'na':>{width}}"

    if a.by_name:
        print(f"{'':<14}" + "".join(f"{k:>{width}}" for k in keys))
        for n in rows:
            print(f"{n:<14}" + "".join(cell(n, k) for k in keys))
    else:
        print(f"{'metric':<18}" + "".join(f"{n:>{width}}" for n in rows))
        for k in keys:
            print(f"{k:<18}" + "".join(cell(n, k) for n in rows))


if __name__ == "__main__":
    main()
