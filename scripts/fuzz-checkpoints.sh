#!/usr/bin/env bash
# Hostile-checkpoint benchmark (issue 13): >= 10,000 mutants of a format 1.1 checkpoint made by
# scripts/make_hostile_checkpoints.py, each checked with `mlres-surgery verify` (release build)
# under a 30 s timeout. An accepted mutant is compared with the source by `mlres-surgery diff`
# (tensors, h) and `inspect --json` (every string and number); counts per class go to stdout:
# refused (exit 2), accepted unchanged, ACCEPTED BUT WRONG, CRASH (signal), HANG (timeout).
#   bash scripts/fuzz-checkpoints.sh [PER_CLASS=800] [SEED=1] [CLASSES=all]   # 13 classes x PER_CLASS mutants
# Unexpected outcomes are listed in full and their files copied to $KEEP (default out/fuzz-unexpected).
set -euo pipefail
cd "$(dirname "$0")/.."
PER=${1:-800}; SEED=${2:-1}; CLASSES=${3:-}
KEEP=${KEEP:-$PWD/out/fuzz-unexpected}
BIN=${BIN:-$PWD/.build/release}
[ -x "$BIN/mlres-surgery" ] || swift build -c release >/dev/null
W=$(mktemp -d /tmp/mlres-fuzz.XXXX); trap 'rm -rf "$W"' EXIT
"$BIN/mlres-train" init --blocks 1-1-1 --widths 4,8,16 -o "$W/src.h5" >/dev/null
t0=$(date +%s)
python3 scripts/make_hostile_checkpoints.py "$W/src.h5" "$W/m" --per-class "$PER" --seed "$SEED" --members 3000 \
    ${CLASSES:+--classes "$CLASSES"}
echo "generated $(wc -l < "$W/m/manifest.jsonl") mutants in $(( $(date +%s) - t0 )) s" >&2
python3 - "$BIN" "$W" "$KEEP" <<'PY'
import collections, concurrent.futures as cf, json, os, shutil, subprocess, sys, time
BIN, W, KEEP = sys.argv[1], sys.argv[2], sys.argv[3]
def run(*args, timeout=30):
    try:
        p = subprocess.run([f"{BIN}/mlres-surgery", *args], capture_output=True, text=True, timeout=timeout)
        return p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired:
        return "hang", "", ""
def canon(js):
    o = json.loads(js); o.pop("file", None); o.pop("sha256", None); return o
src_json = canon(run("inspect", f"{W}/src.h5", "--json")[1])
def one(e):
    path = f"{W}/m/{e['file']}"
    t = time.time(); rc, out, err = run("verify", path); dt = time.time() - t
    if rc == "hang": return e, "HANG", dt, ""
    if rc < 0 or rc >= 128: return e, "CRASH", dt, err[-200:]
    if rc == 2 and err.startswith("error: "): return e, "refused", dt, err
    if rc != 0: return e, f"exit {rc}", dt, err[-200:]
    # The comparison is no verdict when it did not finish: a timed-out diff/inspect (e.g. the
    # process was SIGSTOPped by a quiet window) once counted as ACCEPTED BUT WRONG (run 1).
    # Retry it once with a long timeout; still unfinished is a HANG of the comparison.
    for timeout in (30, 600):
        d, i = run("diff", f"{W}/src.h5", path, timeout=timeout), run("inspect", path, "--json", timeout=timeout)
        if "hang" not in (d[0], i[0]): break
    else:
        return e, "HANG", dt, "comparison (diff/inspect) timed out twice"
    if d[0] not in (0, 1) or i[0] != 0:
        return e, f"exit {d[0]}/{i[0]} (diff/inspect)", dt, (d[2] + i[2])[-200:]
    got = canon(i[1])
    if d[0] == 0 and got == src_json: return e, "accepted unchanged", dt, ""
    keys = sorted(k for k in set(got) | set(src_json) if got.get(k) != src_json.get(k))
    return e, "ACCEPTED BUT WRONG", dt, f"diff exit {d[0]}; inspect fields differing: {keys}; " + d[1][-120:]
entries = [json.loads(l) for l in open(f"{W}/m/manifest.jsonl")]
counts = collections.defaultdict(collections.Counter); worst = collections.defaultdict(float); bad = []
with cf.ThreadPoolExecutor(2) as ex:
    for e, outcome, dt, msg in ex.map(one, entries):
        counts[e["class"]][outcome] += 1; worst[e["class"]] = max(worst[e["class"]], dt)
        if outcome in ("HANG", "CRASH", "ACCEPTED BUT WRONG") or outcome.startswith("exit") or \
           (outcome == "accepted unchanged" and e["expect"] == "refuse") or (outcome == "refused" and e["expect"] == "same"):
            bad.append((e, outcome, msg))
cols = ["refused", "accepted unchanged", "ACCEPTED BUT WRONG", "CRASH", "HANG"]
print("| class | mutants | " + " | ".join(cols) + " | slowest verify (s) |")
print("|---" * (len(cols) + 3) + "|")
total = collections.Counter()
for cls in counts:
    c = counts[cls]; total.update(c)
    print(f"| {cls} | {sum(c.values())} | " + " | ".join(str(c[k]) for k in cols) + f" | {worst[cls]:.2f} |")
print(f"| all | {sum(total.values())} | " + " | ".join(str(total[k]) for k in cols) + " | |")
for e, outcome, msg in bad:
    print("UNEXPECTED", e, outcome, msg.strip()[:200])
    os.makedirs(KEEP, exist_ok=True); shutil.copy(f"{W}/m/{e['file']}", KEEP)
if bad: shutil.copy(f"{W}/src.h5", KEEP); print(f"unexpected mutants and their source copied to {KEEP}")
sys.exit(1 if bad else 0)
PY
