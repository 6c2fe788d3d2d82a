#!/usr/bin/env bash
# Install everything (idempotent, cached venv) and run the test suite.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bash scripts/setup.sh
# the report test opens the HTML report in headless Chromium (Debian's package; users do not need it)
if ! command -v chromium >/dev/null 2>&1; then
  echo "[test] installing Debian's chromium (headless, for the report test)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
export HF_HUB_OFFLINE=1 MUJOCO_GL="${MUJOCO_GL:-egl}" SVT_LOG=1
set +e
.venv/bin/python -m pytest -q -p no:cacheprovider "$@" tests
rc=$?
set -e
# pytest exits 5 when no test ran: that is a failure here, not a pass
exit $rc
