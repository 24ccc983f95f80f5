#!/usr/bin/env python3
"""Figures from mlres-eval JSON outputs and a training run's metrics.jsonl (matplotlib, PNG).

    python3 scripts/plot.py lesion LESION.json [LESION.json ...] -o lesion.png
        single: test error per removed block (intact error as a line, h=0 removals hatched);
        shuffle: error per seed; drop-k: error against k (every seed, and the mean).
    python3 scripts/plot.py norms NORMS.json -o norms.png
        ||Y_j|| and ||G(Y_j)|| = ||h_j F(Y_j)|| per block, stage boundaries marked (paper Figs 3, 4).
    python3 scripts/plot.py gamma NORMS.json [NORMS.json ...] -o gamma.png
        gamma = mean ||G|| against depth (2 * blocks + 2), one point per checkpoint (paper Fig 4).
    python3 scripts/plot.py f-vs-t NORMS.json [NORMS.json ...] -o f_vs_t.png
        ||F(Y_j)|| against the block's time t_j = sum_{i<j} h_i (start of its step), one line
        per checkpoint, e.g. nets of different depth from one interpolation chain (paper Fig 7).
    python3 scripts/plot.py curves metrics.jsonl [--title T] -o curves.png
        train/test loss and error per epoch; vertical lines at the interpolation epochs (where
        "blocks" changes), labelled with the new blocks.
    python3 scripts/plot.py jumps SUMMARY.json -o jumps.png
        the jump of test error at each interpolation per policy, as is and after BN
        recalibration (mean, std error bars over seeds), from scripts/jumps_summary.py --json;
        the issue 17 target (1 point) as a line.
    python3 scripts/plot.py error-speed SCORE.json [SCORE.json ...] -o error_speed.png
        test error against inference images/s, one labelled point per mlres-eval score --json
        file (e.g. the coarsened networks of scripts/coarsen.sh).

A single-block lesion file made with `mlres-eval lesion --recalibrate-bn N` is drawn with a second
bar per block: the error after BN recalibration.

Inputs are validated: a file that is not the expected JSON gives `plot.py: FILE: reason` and
exit status 2. Needs matplotlib (scripts/requirements.txt); no display is used (Agg backend).
"""
import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


class InputError(Exception):
    pass


def load_json(path, required):
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror}")
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not JSON ({e.msg} at line {e.lineno})")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not JSON (not UTF-8 text)")
    if not isinstance(doc, dict):
        raise InputError(f"{path}: expected a JSON object")
    missing = [k for k in required if k not in doc]
    if missing:
        raise InputError(f"{path}: missing key(s) {', '.join(missing)} (is it the right mlres-eval output?)")
    return doc


def save(fig, out):
    d = os.path.dirname(os.path.abspath(out))
    os.makedirs(d, exist_ok=True)
    tmp = out + ".tmp.png"
    fig.savefig(tmp, dpi=130, bbox_inches="tight")
    os.replace(tmp, out)
    plt.close(fig)
    print(f"wrote {out}")


def stage_bounds(ax, rows, key="index"):
    """Dashed lines between stages."""
    for a, b in zip(rows, rows[1:]):
        if a["stage"] != b["stage"]:
            ax.axvline((a[key] + b[key]) / 2, color="0.6", ls="--", lw=0.8)


def short(doc):
    return f'{os.path.basename(doc["checkpoint"])} ({doc["blocks"]})'


# ---------------------------------------------------------------- lesion
def plot_lesion(paths, out):
    docs = [load_json(p, ["mode", "rows", "intact_error", "blocks", "checkpoint"]) for p in paths]
    fig, axes = plt.subplots(1, len(docs), figsize=(max(5, 4.5 * len(docs)), 3.8), squeeze=False)
    for ax, doc in zip(axes[0], docs):
        rows = doc["rows"]
        intact = 100 * doc["intact_error"]
        mode = doc["mode"]
        if mode == "single":
            xs = list(range(len(rows)))
            errs = [100 * r["error"] if r["error"] is not None else float("nan") for r in rows]
            recal = "intact_error_recalibrated" in doc
            width = 0.42 if recal else 0.8
            bars = ax.bar([x - width / 2 if recal else x for x in xs], errs, width=width, color="tab:blue",
                          label="as is" if recal else None)
            if recal:
                rec = [100 * r["error_recalibrated"] if r.get("error_recalibrated") is not None else float("nan")
                       for r in rows]
                ax.bar([x + width / 2 for x in xs], rec, width=width, color="tab:cyan", label="BN recalibrated")
                ax.axhline(100 * doc["intact_error_recalibrated"], color="tab:cyan", ls=":", lw=1,
                           label=f'intact, recalibrated {100 * doc["intact_error_recalibrated"]:.2f}%')
            for b, r in zip(bars, rows):
                if "h=0" in r["actions"]:
                    b.set_facecolor("tab:orange")
                    b.set_edgecolor("black")
                    b.set_hatch("//")
            ax.set_xticks(xs)
            ax.set_xticklabels([r["removed"][0] if r["removed"] else r["label"] for r in rows],
                               rotation=90 if len(rows) > 12 else 0, fontsize=7 if len(rows) > 12 else 9)
            ax.set_xlabel("removed block (stage.block); orange/hatched: shape-changing, h = 0")
            ax.set_title("remove one block")
        elif mode == "shuffle":
            xs = [r["seed"] for r in rows]
            ax.bar(xs, [100 * r["error"] if r["error"] is not None else float("nan") for r in rows], color="tab:green")
            ax.set_xticks(xs)
            ax.set_xlabel("shuffle seed (movable blocks of every stage permuted)")
            ax.set_title("shuffle stages")
        elif mode == "drop-k":
            ks = sorted({r["k"] for r in rows})
            for k in ks:
                e = [100 * r["error"] for r in rows if r["k"] == k and r["error"] is not None]
                if not e:
                    ax.text(k, intact, "refused\n(would empty\na stage)", ha="center", va="bottom", fontsize=7)
                ax.scatter([k] * len(e), e, color="tab:red", alpha=0.5, s=18)
                if e:
                    ax.plot([k - 0.25, k + 0.25], [sum(e) / len(e)] * 2, color="black", lw=2)
            ax.set_xticks(ks)
            ax.set_xlabel("k random movable blocks removed (dots: seeds, bar: mean)")
            ax.set_title("drop k blocks")
        else:
            raise InputError(f"unknown lesion mode {mode!r}")
        ax.axhline(intact, color="black", ls=":", lw=1, label=f"intact {intact:.2f}%")
        ax.set_ylabel("test error (%)")
        ax.legend(loc="upper left" if "intact_error_recalibrated" in doc else "lower left", fontsize=7)
        ax.set_title(f"{ax.get_title()}: {short(doc)}", fontsize=9)
    fig.tight_layout()
    save(fig, out)


# ---------------------------------------------------------------- norms
NORMS_KEYS = ["rows", "gamma", "blocks", "checkpoint"]


def plot_norms(path, out):
    doc = load_json(path, NORMS_KEYS)
    rows = doc["rows"]
    xs = [r["index"] for r in rows]
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(max(5, 0.3 * len(rows) + 3), 5.5), sharex=True)
    a1.plot(xs, [r["y_norm"] for r in rows], "o-", color="tab:blue", ms=4)
    a1.set_ylabel(r"$\|Y_j\|$ (block input)")
    a2.plot(xs, [r["g_norm"] for r in rows], "o-", color="tab:red", ms=4, label=r"$\|G(Y_j)\| = \|h_j F(Y_j)\|$")
    a2.axhline(doc["gamma"], color="black", ls=":", lw=1, label=f"γ = {doc['gamma']:.3g}")
    zero = [r for r in rows if r["h"] == 0]
    if zero:
        a2.scatter([r["index"] for r in zero], [0] * len(zero), marker="x", color="black", zorder=3, label="h = 0")
    for ax in (a1, a2):
        stage_bounds(ax, rows)
        ax.grid(alpha=0.3)
    a2.set_ylabel(r"$\|G(Y_j)\|$")
    a2.set_xlabel("block j (dashed: stage boundaries)")
    a2.set_xticks(xs)
    a2.set_xticklabels([r["block"] for r in rows], rotation=90 if len(rows) > 12 else 0, fontsize=7)
    a2.legend(fontsize=8)
    a1.set_title(f"residual norms, {short(doc)}, {doc.get('images', '?')} test images")
    fig.tight_layout()
    save(fig, out)


def depth_of(doc):
    return 2 * len(doc["rows"]) + 2


def plot_gamma(paths, out):
    docs = sorted((load_json(p, NORMS_KEYS) for p in paths), key=depth_of)
    fig, ax = plt.subplots(figsize=(5, 3.6))
    xs, ys = [depth_of(d) for d in docs], [d["gamma"] for d in docs]
    ax.plot(xs, ys, "o-", color="tab:purple")
    for x, y, d in zip(xs, ys, docs):
        ax.annotate(d["blocks"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("depth (2 · blocks + 2)")
    ax.set_ylabel(r"γ = mean$_j$ $\|G(Y_j)\|$")
    ax.set_title("γ against depth")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save(fig, out)


def plot_f_vs_t(paths, out):
    docs = sorted((load_json(p, NORMS_KEYS) for p in paths), key=depth_of)
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for d in docs:
        rows = d["rows"]
        ax.plot([r["t"] for r in rows], [r["f_norm"] for r in rows], "o-", ms=3,
                label=f'{d["blocks"]} ({os.path.basename(d["checkpoint"])})')
    ax.set_xlabel(r"time $t_j = \sum_{i<j} h_i$")
    ax.set_ylabel(r"$\|F(Y_j)\|$")
    ax.set_title("residual function along the flow")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save(fig, out)


# ---------------------------------------------------------------- curves
CURVE_KEYS = ["epoch", "train_loss", "train_error", "test_loss", "test_error", "blocks"]


def read_metrics(path):
    """Epoch rows of a metrics.jsonl. Lines with a "type" other than "epoch" (the trainer's
    "step", "interpolate", "message" lines) are skipped; interpolation lines are returned too."""
    rows, interps = [], []
    try:
        f = open(path, encoding="utf-8")
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror}")
    with f:
        try:
            lines = f.readlines()
        except UnicodeDecodeError:
            raise InputError(f"{path}: not a metrics.jsonl (not UTF-8 text)")
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{path}: line {n}: not JSON ({e.msg})")
            if not isinstance(r, dict):
                raise InputError(f"{path}: line {n}: expected a JSON object")
            kind = r.get("type", "epoch")
            if kind == "interpolate" and "epoch" in r:
                interps.append(r)
            if kind != "epoch":
                continue
            missing = [k for k in CURVE_KEYS if k not in r]
            if missing:
                raise InputError(f"{path}: line {n}: missing key(s) {', '.join(missing)}")
            rows.append(r)
    if not rows:
        raise InputError(f"{path}: no epoch lines")
    return rows, interps


def blocks_text(r):
    """The depth of an epoch row: its "depth" ("2-2-2") when present, else "blocks"."""
    b = r.get("depth", r["blocks"])
    if isinstance(b, list):
        return "-".join(str(x) for x in b)
    return str(b)


def plot_curves(path, out, title=None):
    rows, interps = read_metrics(path)
    ep = [r["epoch"] for r in rows]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))

    def series(key, scale=1.0):
        return [float("nan") if r[key] is None else scale * r[key] for r in rows]

    a1.plot(ep, series("train_loss"), label="train", color="tab:blue")
    a1.plot(ep, series("test_loss"), label="test", color="tab:red")
    a1.set_ylabel("loss")
    a2.plot(ep, series("train_error", 100), label="train", color="tab:blue")
    a2.plot(ep, series("test_error", 100), label="test", color="tab:red")
    a2.set_ylabel("error (%)")
    # Interpolation after epoch E is drawn at E + 0.5: from the trainer's "interpolate" lines
    # when there are any, else wherever the blocks change between two epochs.
    if interps:
        changes = [(r["epoch"] + 0.5, str(r.get("blocks_after", ""))) for r in interps]
    else:
        changes = [(rows[i]["epoch"] - 0.5, blocks_text(rows[i]))
                   for i in range(1, len(rows)) if blocks_text(rows[i]) != blocks_text(rows[i - 1])]
    for ax in (a1, a2):
        for e, b in changes:
            ax.axvline(e, color="0.4", ls="--", lw=0.9)
            ax.text(e, 0.98, f" {b}", transform=ax.get_xaxis_transform(), va="top", fontsize=7, color="0.3")
        ax.set_xlabel("epoch (dashed: interpolation, new depth)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="center right")
    fig.suptitle(title or f"{os.path.basename(path)}: starts at {blocks_text(rows[0])}, {len(changes)} interpolation(s)")
    fig.tight_layout()
    save(fig, out)


# ---------------------------------------------------------------- jumps (issue 17)
def plot_jumps(path, out):
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: cannot read a JSON summary: {e}")
    if not isinstance(doc, list) or not doc or not all(isinstance(e, dict) and "policies" in e for e in doc):
        raise InputError(f"{path}: expected the list that scripts/jumps_summary.py --json writes")
    fig, axes = plt.subplots(1, len(doc), figsize=(4.8 * len(doc), 3.8), squeeze=False)

    def mean_std(xs):
        xs = [100 * x for x in xs]
        m = sum(xs) / len(xs)
        sd = (sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) ** 0.5 if len(xs) > 1 else 0.0
        return m, sd

    for ax, e in zip(axes[0], doc):
        pols = [r["policy"] for r in e["policies"]]
        xs = list(range(len(pols)))
        plain = [mean_std(r["jump"]) for r in e["policies"]]
        recal = [mean_std(r["jump_recalibrated"]) for r in e["policies"]]
        ax.bar([x - 0.2 for x in xs], [m for m, _ in plain], 0.4, yerr=[s for _, s in plain], capsize=3,
               color="tab:blue", label="as is")
        ax.bar([x + 0.2 for x in xs], [m for m, _ in recal], 0.4, yerr=[s for _, s in recal], capsize=3,
               color="tab:cyan", label="BN recalibrated")
        ax.axhline(1.0, color="tab:red", ls="--", lw=1, label="target: 1 point")
        ax.axhline(0.0, color="black", lw=0.6)
        ax.set_xticks(xs)
        ax.set_xticklabels(pols, fontsize=8)
        ax.set_ylabel("test error jump (points)")
        ax.set_title(f'{e["blocks"]} → interpolated ({e["seeds"]} seeds, mean ± std)', fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    save(fig, out)


# ---------------------------------------------------------------- error vs speed (issue 17)
def plot_error_speed(paths, out):
    fig, ax = plt.subplots(figsize=(6, 4))
    for p in paths:
        doc = load_json(p, ["results"])
        for r in doc["results"]:
            if r.get("images_per_s") is None or r.get("error") is None:
                raise InputError(f"{p}: a result without error or images_per_s (is it mlres-eval score --json?)")
            name = os.path.basename(r.get("checkpoint", p))
            ax.scatter(r["images_per_s"], 100 * r["error"], color="tab:blue")
            ax.annotate(f'{name[:-3] if name.endswith(".h5") else name} ({r.get("blocks", "?")})',
                        (r["images_per_s"], 100 * r["error"]), fontsize=7, xytext=(4, 3), textcoords="offset points")
    ax.margins(x=0.3, y=0.1)
    ax.set_xlabel("inference images/s (mlres-eval score)")
    ax.set_ylabel("test error (%)")
    ax.set_title("test error against inference speed", fontsize=9)
    fig.tight_layout()
    save(fig, out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name, many in [("lesion", True), ("norms", False), ("gamma", True), ("f-vs-t", True), ("curves", False),
                       ("jumps", False), ("error-speed", True)]:
        s = sub.add_parser(name)
        s.add_argument("inputs", nargs="+" if many else 1)
        s.add_argument("-o", "--output", required=True, help="PNG to write")
        if name == "curves":
            s.add_argument("--title")
    a = p.parse_args(argv)
    try:
        if a.cmd == "lesion":
            plot_lesion(a.inputs, a.output)
        elif a.cmd == "norms":
            plot_norms(a.inputs[0], a.output)
        elif a.cmd == "gamma":
            plot_gamma(a.inputs, a.output)
        elif a.cmd == "f-vs-t":
            plot_f_vs_t(a.inputs, a.output)
        elif a.cmd == "jumps":
            plot_jumps(a.inputs[0], a.output)
        elif a.cmd == "error-speed":
            plot_error_speed(a.inputs, a.output)
        else:
            plot_curves(a.inputs[0], a.output, a.title)
    except InputError as e:
        print(f"plot.py: {e}", file=sys.stderr)
        return 2
    except (KeyError, TypeError) as e:
        print(f"plot.py: {a.inputs}: unexpected content ({e!r})", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
