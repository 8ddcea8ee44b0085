#!/usr/bin/env bash
# Install everything bridge needs into ./.venv and bridge/export/js/node_modules.
#   ./setup.sh          the tool: Python deps + the npm packages of the tfjs runner
#   ./setup.sh --test   the same plus the test dependencies
# Safe to re-run: it reuses an existing .venv and only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")"

extras=""
[ "${1:-}" = "--test" ] && extras="[test]"

python3 -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "bridge needs Python 3.11 (TF 2.19 + tensorflowjs 4.22)")'
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade "pip>=24"
# torch is pinned exactly (2.13.0, CPU): a loose torch requirement pulls a multi-GB CUDA build.
.venv/bin/python -m pip install --quiet -e ".${extras}"
.venv/bin/python -m pip check
.venv/bin/python -c "import tensorflowjs, tensorflow, torch; print('python deps ok: torch', torch.__version__, '| tf', tensorflow.__version__, '| tfjs', tensorflowjs.__version__)"

if command -v node >/dev/null 2>&1; then
  npm ci --prefix bridge/export/js --no-audit --no-fund --loglevel=error
  echo "npm packages ok: $(node --version), @tensorflow/tfjs + tfjs-backend-wasm + tfjs-backend-webgpu 4.22.0, onnxruntime-web 1.30.0"
else
  echo "warning: node not found: tfjs verification will be skipped (install Node >= 20)" >&2
fi

# Debian's chromium, for checking the tfjs model in a real browser (bridge/export/browser.py).
# playwright-core drives it and never downloads a browser of its own.
if [ -n "${BRIDGE_CHROMIUM:-}" ] || command -v chromium >/dev/null 2>&1; then
  :
elif [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update && apt-get install -y --no-install-recommends chromium
else
  echo "warning: chromium not found and this is not root with apt-get: browser checks will be skipped" \
       "(install Debian's chromium as root, or set BRIDGE_CHROMIUM to a Chromium executable)" >&2
fi
if command -v "${BRIDGE_CHROMIUM:-chromium}" >/dev/null 2>&1; then
  echo "browser ok: $("${BRIDGE_CHROMIUM:-chromium}" --version 2>/dev/null)"
fi
