#!/usr/bin/env bash
# Build the one-folder bundle: dist/sd35-studio/sd35-studio (plus its libraries). Needs `pip install -e .[packaging]`.
#   packaging/build.sh            # build into dist/ (work files in build/pyinstaller/)
#   PYINSTALLER=/path/pyinstaller packaging/build.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYINSTALLER=${PYINSTALLER:-pyinstaller}
cd "$ROOT"
if ! command -v "$PYINSTALLER" >/dev/null; then
    echo "build.sh: PyInstaller not found; install it with: pip install -e '.[packaging]'" >&2
    exit 2
fi
start=$(date +%s)
"$PYINSTALLER" --noconfirm --clean --log-level WARN \
    --distpath "$ROOT/dist" --workpath "$ROOT/build/pyinstaller" \
    "$ROOT/packaging/sd35-studio.spec"
end=$(date +%s)
size=$(du -sh "$ROOT/dist/sd35-studio" | cut -f1)
echo "built $ROOT/dist/sd35-studio ($size) in $((end - start)) s"
