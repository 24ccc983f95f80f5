#!/usr/bin/env python3
"""Summarise a scripts/reproduce.sh output folder as a Markdown table (Table 3 protocol).

Reads OUT/seedS/{multilevel,lastcycle,firstcycle}.score.json (mlres-eval score --json),
OUT/seedS/MODEL/metrics.jsonl (per-epoch wall_seconds from mlres-train) and
OUT/seedS/MODEL.time.json (whole-process seconds). Prints mean ± std over seeds.
With --variants (issue 17: multilevel-POLICY[-bn] runs of reproduce.sh --policies/--recalibrate-bn)
it adds a row per variant and a table of the jump at each interpolation: the test error after the
last epoch before it, right after it (no training step) and after BN recalibration, from the
"interpolate" lines of each run's metrics.jsonl.
"""
import argparse
import json
import os
import statistics
import sys

MODELS = [("multilevel", "Multi-level 2-2-2→4-4-4→8-8-8"),
          ("firstcycle", "First-cycle 2-2-2 (ResNet-14)"),
          ("lastcycle", "Last-cycle 8-8-8 (ResNet-50)")]


def fail(msg):
    print(f"reproduce_table.py: {msg}", file=sys.stderr)
    sys.exit(2)


def load(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        fail(f"{path}: {e}")


def train_seconds(path):
    total = 0.0
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                rec = json.loads(line)
                if rec.get("type") == "epoch":
                    total += float(rec["wall_seconds"])
    except (OSError, ValueError, KeyError) as e:
        fail(f"{path}: {e}")
    return total


POLICY_NAMES = {"paper": "paper's rule", "preserve": "h preserve", "identity": "first block identity",
                "preserve-identity": "h preserve + identity"}


def variant_name(key, recal):
    """multilevel, multilevel-POLICY, multilevel-POLICY-bn → a row label."""
    if key == "multilevel":
        return MODELS[0][1]
    rest = key[len("multilevel-"):]
    bn = rest.endswith("-bn")
    policy = rest[:-3] if bn else rest
    label = f"Multi-level, {POLICY_NAMES.get(policy, policy)}"
    return label + (f" + BN recalibration ({recal} batches)" if bn else "")


def jumps(path):
    """The interpolate records of a metrics.jsonl, in order."""
    out = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                rec = json.loads(line)
                if rec.get("type") == "interpolate":
                    out.append(rec)
    except (OSError, ValueError) as e:
        fail(f"{path}: {e}")
    return out


def fmt(xs, scale=1.0, digits=2, signed=False):
    xs = [x * scale for x in xs]
    sign = "+" if signed else ""
    if len(xs) == 1:
        return f"{xs[0]:{sign}.{digits}f}"
    return f"{statistics.mean(xs):{sign}.{digits}f} ± {statistics.stdev(xs):.{digits}f}"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--seeds", type=int, required=True)
    for k in ("epochs", "at", "dataset", "scale", "threads", "train-subset", "test-subset"):
        p.add_argument("--" + k, required=True)
    p.add_argument("--variants", default="multilevel")
    p.add_argument("--recalibrate-bn", default="0")
    a = p.parse_args()
    variants = [v for v in a.variants.split(",") if v]
    models = [(v, variant_name(v, a.recalibrate_bn)) for v in variants] + \
        [m for m in MODELS if m[0] != "multilevel"]
    rows = {}
    for key, _ in models:
        err, train, proc, params = [], [], [], None
        for s in range(a.seeds):
            base = os.path.join(a.out, f"seed{s}", key)
            if not os.path.exists(base + ".score.json"):
                continue   # not run (reproduce.sh --only)
            score = load(base + ".score.json")
            res = score["results"][0]
            err.append(float(res["error"]))
            params = res.get("parameters", params)
            train.append(train_seconds(os.path.join(base, "metrics.jsonl")))
            proc.append(float(load(base + ".time.json")["process_seconds"]))
        rows[key] = (err, train, proc, params)
    epochs = int(a.epochs)
    at = [int(x) for x in a.at.split(",")]
    edges = [0] + at + [epochs]
    cycles = [b - e for e, b in zip(edges, edges[1:])]
    blocks = [6 * 2 ** k for k in range(len(cycles))]
    theory = sum(b * c for b, c in zip(blocks, cycles)) / (blocks[-1] * epochs)
    print(f"# Reproduction: {a.dataset}, scale {a.scale}\n")
    print(f"{epochs} epochs, cycles at {a.at}, training subset {a.train_subset}, test subset "
          f"{a.test_subset}, {a.threads} threads, {a.seeds} seed(s) (mean ± std over seeds).\n")
    print("| model | test error (%) | training time (s, Σ epoch wall) | process time (s) |")
    print("|---|---|---|---|")
    for key, name in models:
        err, train, proc, _ = rows[key]
        if not err:
            print(f"| {name} | not run | | |")
            continue
        print(f"| {name} | {fmt(err, 100)} | {fmt(train, digits=1)} | {fmt(proc, digits=1)} |")
        if len(err) < a.seeds:
            print(f"| (that row: {len(err)} of {a.seeds} seeds) | | | |")
    models = [m for m in models if rows[m[0]][0]]
    multilevel = [m for m in models if m[0].startswith("multilevel")]   # the paper's rule and the policies
    if rows["multilevel"][0] and rows["lastcycle"][0]:
        ml, lc = rows["multilevel"], rows["lastcycle"]
        saved_train = [1 - m / l for m, l in zip(ml[1], lc[1])]
        saved_proc = [1 - m / l for m, l in zip(ml[2], lc[2])]
        print()
        print(f"Time saved by multi-level against the last-cycle model: {fmt(saved_train, 100, 1)}% "
              f"(training), {fmt(saved_proc, 100, 1)}% (whole process). Table 2 theory for this "
              f"schedule (cost ∝ blocks × epochs): {100 * (1 - theory):.2f}%; the paper's 42% is the "
              f"equal-cycle figure, it measured 41%.")
        gap = statistics.mean(ml[0]) - statistics.mean(lc[0])
        spread = statistics.stdev(lc[0]) if len(lc[0]) > 1 else float("nan")
        print(f"Multi-level minus last-cycle test error: {100 * gap:+.2f} points "
              f"(last-cycle seed-to-seed std: {100 * spread:.2f} points).")
        if len(variants) > 1:
            for key, name in models:
                if key.startswith("multilevel-"):
                    g = statistics.mean(rows[key][0]) - statistics.mean(lc[0])
                    print(f"{name} minus last-cycle: {100 * g:+.2f} points.")
            # Paired by seed (same seed = same initialisation and data order): the difference
            # of each variant to the paper's rule and to the last-cycle model, seed by seed.
            print("\nPaired by seed (mean ± std of the per-seed differences, test error points; "
                  "time saved against the last-cycle model of the same seed):\n")
            print("| model | minus multi-level (paper's rule) | minus last-cycle | time saved vs last-cycle (training) | (whole process) |")
            print("|---|---|---|---|---|")
            for key, name in multilevel:
                v = rows[key]
                if len(v[0]) != len(ml[0]) or len(v[0]) != len(lc[0]):
                    print(f"| {name} | (other seeds than the baselines) | | | |")
                    continue
                d_ml = [x - y for x, y in zip(v[0], ml[0])]
                d_lc = [x - y for x, y in zip(v[0], lc[0])]
                st = [1 - x / y for x, y in zip(v[1], lc[1])]
                sp = [1 - x / y for x, y in zip(v[2], lc[2])]
                print(f"| {name} | {'—' if key == 'multilevel' else fmt(d_ml, 100, signed=True)} | "
                      f"{fmt(d_lc, 100, signed=True)} | {fmt(st, 100, 1)}% | {fmt(sp, 100, 1)}% |")
    # The jump at each interpolation (test error before / right after / after recalibration).
    print()
    print("Jump at each interpolation (test error %, mean ± std over seeds; \"before\" is the last "
          "epoch of the cycle, \"after\" the interpolated network before any training step):\n")
    print("| model | interpolation | before | after | after BN recalibration |")
    print("|---|---|---|---|---|")
    for key, name in multilevel:
        paths = [os.path.join(a.out, f"seed{s}", key, "metrics.jsonl") for s in range(a.seeds)]
        per_seed = [jumps(p) for p in paths if os.path.exists(p)]
        if not per_seed:
            continue
        for i in range(min(len(j) for j in per_seed)):
            recs = [j[i] for j in per_seed]
            if "test_error_after" not in recs[0]:
                continue   # a run from before the jump was recorded
            b = [r["test_error_before"] for r in recs]
            after = [r["test_error_after"] for r in recs]
            rc = [r["test_error_recalibrated"] for r in recs if "test_error_recalibrated" in r]
            where = f"{recs[0]['blocks_before']} → {recs[0]['blocks_after']} (epoch {recs[0]['epoch']})"
            print(f"| {name} | {where} | {fmt(b, 100)} | {fmt(after, 100)} | "
                  f"{fmt(rc, 100) if len(rc) == len(recs) else '—'} |")


if __name__ == "__main__":
    main()
