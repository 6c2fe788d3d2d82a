#!/usr/bin/env bash
# Install everything (idempotent, cached venv) and run the test suite.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 MUJOCO_GL="${MUJOCO_GL:-egl}" SVT_LOG=1
set +e
.venv/bin/python -m pytest -q -p no:cacheprovider "$@" tests
rc=$?
set -e
# pytest exits 5 when no test ran: that is a failure here, not a pass
exit $rc
