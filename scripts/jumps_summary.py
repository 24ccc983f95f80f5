#!/usr/bin/env python3
"""The jump at each interpolation over several seeds (issue 17): mean ± std of the jumps.json files
that scripts/jumps.sh writes, one per seed.

    python3 scripts/jumps_summary.py DIR [DIR ...] [--json OUT]

Each DIR holds a jumps.json (scripts/jumps.sh --out DIR). Entries are matched by the network's
blocks before the interpolation (e.g. 2-2-2, 4-4-4), and every DIR must have the same ones, with
the same policies and recalibration batches. Prints a Markdown table per interpolation: test error
before, after and after BN recalibration, and the jumps (after - before, in points), as
mean ± sample std over the DIRs, and the largest recalibrated jump of any DIR. Exit status: 0; 2 when a file is missing or the DIRs disagree.
"""
import argparse
import json
import os
import statistics
import sys


def fail(msg):
    print(f"jumps_summary.py: {msg}", file=sys.stderr)
    sys.exit(2)


def ms(xs):
    """mean ± std in percent (points), sample std; a single value has no std."""
    xs = [100 * x for x in xs]
    if len(xs) == 1:
        return f"{xs[0]:.2f}"
    return f"{statistics.mean(xs):.2f} ± {statistics.stdev(xs):.2f}"


def signed(xs):
    xs = [100 * x for x in xs]
    if len(xs) == 1:
        return f"{xs[0]:+.2f}"
    return f"{statistics.mean(xs):+.2f} ± {statistics.stdev(xs):.2f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="+")
    ap.add_argument("--json", help="also write the summary as JSON here")
    a = ap.parse_args()
    runs = []
    for d in a.dirs:
        path = os.path.join(d, "jumps.json")
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
        except (OSError, ValueError) as e:
            fail(f"{path}: {e}")
        runs.append({e["blocks"]: e for e in doc})
    keys = list(runs[0])
    for d, r in zip(a.dirs, runs):
        if list(r) != keys:
            fail(f"{d}/jumps.json has interpolations from {list(r)}, {a.dirs[0]}/jumps.json from {keys}")
    summary = []
    for blocks in keys:
        entries = [r[blocks] for r in runs]
        policies = [p["policy"] for p in entries[0]["policies"]]
        for d, e in zip(a.dirs, entries):
            if [p["policy"] for p in e["policies"]] != policies or e["batches"] != entries[0]["batches"]:
                fail(f"{d}/jumps.json ({blocks}) has other policies or recalibration batches than {a.dirs[0]}")
        before = [e["error_before"] for e in entries]
        before_bn = [e["error_before_recalibrated"] for e in entries]
        print(f"{blocks} → interpolated, {len(entries)} seed(s): test error before {ms(before)}% "
              f"(recalibrated from {entries[0]['batches']} batches: {ms(before_bn)}%)\n")
        print("| policy | after (%) | jump (points) | after + BN recalibration (%) | jump (points) | largest jump, recalibrated |")
        print("|---|---|---|---|---|---|")
        rows = []
        for i, p in enumerate(policies):
            after = [e["policies"][i]["error_after"] for e in entries]
            after_bn = [e["policies"][i]["error_after_recalibrated"] for e in entries]
            jump = [x - b for x, b in zip(after, before)]
            jump_bn = [x - b for x, b in zip(after_bn, before)]
            print(f"| {p} | {ms(after)} | {signed(jump)} | {ms(after_bn)} | {signed(jump_bn)} | {100 * max(jump_bn):+.2f} |")
            rows.append({"policy": p, "jump": jump, "jump_recalibrated": jump_bn,
                         "max_jump_recalibrated": max(jump_bn)})
        print()
        summary.append({"blocks": blocks, "seeds": len(entries), "error_before": before, "policies": rows})
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
