#!/usr/bin/env bash
# Smoke test of a built bundle (packaging/build.sh): the CLI, a real `generate` on a tiny random-weight model set,
# the download plan (no network), and the window opened offscreen for a few seconds.
#
#   packaging/smoke.sh [BUNDLE_DIR]       # default: dist/sd35-studio
#   TINY_MODEL=/path/to/tiny packaging/smoke.sh   # use an existing tiny model set instead of writing one
#
# Writing the tiny model set needs the development environment (python -m tests.factory, which uses torch);
# everything else runs the bundle alone. All settings, logs and images go to a temporary folder.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUNDLE=${1:-$ROOT/dist/sd35-studio}
EXE="$BUNDLE/sd35-studio"
WINDOW_SECONDS=${WINDOW_SECONDS:-8}
PYTHON=${PYTHON:-python3}

fail() { echo "smoke: FAIL: $*" >&2; exit 1; }
step() { echo "smoke: $*"; }

[ -x "$EXE" ] || fail "$EXE not found; build it first with packaging/build.sh"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# Keep the user's real settings, data, logs and Hugging Face files out of it; the network is never needed.
export HOME="$WORK/home" XDG_CONFIG_HOME="$WORK/config" XDG_DATA_HOME="$WORK/data" XDG_CACHE_HOME="$WORK/cache"
export HF_HOME="$WORK/hf" HF_HUB_OFFLINE=1 QT_QPA_PLATFORM=offscreen
mkdir -p "$HOME"

step "version and help"
"$EXE" --version
"$EXE" --help >/dev/null
"$EXE" generate --help >/dev/null

step "download plan (dry run, no network)"
# Captured, not piped into `grep -q`: grep stops reading at the first match, and a command whose reader went
# away exits 141 as SIGPIPE'd tools do, which `set -o pipefail` would count as a failure.
plan=$("$EXE" download --variant medium --dry-run --dest "$WORK/dl") || fail "download --dry-run failed"
grep -q "sd3.5_medium.safetensors" <<<"$plan" || fail "download --dry-run did not print the plan"
[ ! -e "$WORK/dl" ] || fail "download --dry-run created $WORK/dl"

TINY=${TINY_MODEL:-}
if [ -z "$TINY" ]; then
    TINY="$WORK/tiny"
    step "writing a tiny model set with the development environment ($PYTHON -m tests.factory)"
    (cd "$ROOT" && "$PYTHON" -m tests.factory "$TINY" --variant medium) || fail "cannot write the tiny model set"
fi

step "generate on the tiny model set"
start=$(date +%s)
"$EXE" generate --model "$TINY" --prompt "a red cat on a blue sofa" --seed 7 --steps 2 \
    --width 64 --height 64 --device cpu --out "$WORK/out.png"
[ -s "$WORK/out.png" ] || fail "generate wrote no image"
head -c 8 "$WORK/out.png" | od -An -tx1 | grep -q "89 50 4e 47" || fail "$WORK/out.png is not a PNG"
step "generate took $(( $(date +%s) - start )) s"

step "window offscreen for $WINDOW_SECONDS s"
set +e
timeout --signal=TERM --kill-after=10 "$WINDOW_SECONDS" "$EXE" --model "$TINY" --output-dir "$WORK/images" \
    >"$WORK/window.out" 2>&1
code=$?
set -e
# 124: still running when the time was up, which is what a healthy window does
if [ "$code" -ne 124 ]; then
    cat "$WORK/window.out" >&2
    fail "the window exited by itself with code $code within $WINDOW_SECONDS s"
fi
if grep -rqsE "CRITICAL|Traceback|uncaught exception" "$WORK/window.out" "$XDG_DATA_HOME"; then
    cat "$WORK/window.out" >&2
    grep -rsE -A5 "CRITICAL|Traceback|uncaught exception" "$XDG_DATA_HOME" >&2 || true
    fail "the window logged an error"
fi
log_file=$(find "$XDG_DATA_HOME" -name 'sd35-studio.log' | head -n 1)
[ -n "$log_file" ] && grep -q "SD3.5 Studio starting" "$log_file" || fail "the window wrote no start-up line to its log"
if grep -q "model sets: SD3.5 Medium" "$log_file"; then
    step "the window found the tiny model set (torch loaded inside the bundle)"
else
    echo "smoke: warning: the window's log does not mention the tiny model set:" >&2
    cat "$log_file" >&2
fi
step "OK ($BUNDLE)"
