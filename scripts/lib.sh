# Shared by the scripts in scripts/; sourced (`. scripts/lib.sh`), not run.

# mlres_bin NAME TOOL...: set BIN to a folder holding the built TOOLs (mlres-train, mlres-eval,
# mlres-surgery). With MLRES_BIN set, that folder, and nothing is built; otherwise each TOOL is
# built with `swift build -c release` and BIN is the release folder. NAME prefixes the messages.
# Exits 64 when a TOOL is not an executable in the folder.
mlres_bin() {
    local name=$1 t
    shift
    if [ -n "${MLRES_BIN:-}" ]; then
        BIN=$MLRES_BIN
    else
        echo "$name: building (release)" >&2
        for t in "$@"; do swift build -c release --product "$t" >/dev/null; done
        BIN=$(swift build -c release --show-bin-path)
    fi
    for t in "$@"; do
        [ -x "$BIN/$t" ] || { echo "$name: $BIN/$t is not an executable (MLRES_BIN must name a folder of built mlres tools)" >&2; exit 64; }
    done
}

# script_help FILE: print FILE's leading comment block (the lines after #! up to the first line
# that is not a comment), without the "# ", as the script's --help.
script_help() {
    awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$1"
}

# eval_flags: from the caller's dataset, data_dir, threads, test_subset, batches, batch_size and
# train_subset, set data (the dataset flags), scoreflags (mlres-eval score) and recalflags
# (mlres-train recalibrate).
eval_flags() {
    data=(--dataset "$dataset")
    [ -n "$data_dir" ] && data+=(--data-dir "$data_dir")
    scoreflags=("${data[@]}" --threads "$threads")
    [ -n "$test_subset" ] && scoreflags+=(--test-subset "$test_subset")
    recalflags=("${data[@]}" --threads "$threads" --batches "$batches")
    [ -n "$batch_size" ] && recalflags+=(--batch-size "$batch_size")
    [ -n "$train_subset" ] && recalflags+=(--train-subset "$train_subset")
    return 0
}
