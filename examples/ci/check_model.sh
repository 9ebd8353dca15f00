#!/usr/bin/env bash
# A CI model-quality gate: train briefly, then let `filterwatch check` pass or fail the job.
#
#   bash examples/ci/check_model.sh            # from the repository root, after `make venv`
#
# Exit code: 0 when every gate rule passes, 1 when one fails, 2 on a usage or input error.
# On GitHub Actions the Markdown report becomes the job summary ($GITHUB_STEP_SUMMARY).
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/ci}
mkdir -p "$OUT"

# 1. train briefly (writes $OUT/digits_cnn.pt and a deliberately damaged copy)
"$PY" examples/scan_checkpoint.py --out "$OUT" > "$OUT/train.log" || exit 2

# 2. the gate: rules from examples/ci/gate.toml (a project would use its pyproject.toml)
"$PY" -m filterwatch check "$OUT/digits_cnn.pt" --config examples/ci/gate.toml \
    --format markdown --output "$OUT/filterwatch.md"
status=$?
"$PY" -m filterwatch check "$OUT/digits_cnn.pt" --config examples/ci/gate.toml \
    --format junit --output "$OUT/filterwatch.xml" --quiet

if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then
    cat "$OUT/filterwatch.md" >> "$GITHUB_STEP_SUMMARY"
fi
cat "$OUT/filterwatch.md"
exit "$status"
