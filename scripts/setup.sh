#!/usr/bin/env bash
# Installs everything robo-reward needs on a fresh Debian machine, idempotently:
#   1. Debian packages: FFmpeg shared libraries (video decode) and Mesa EGL/OSMesa
#      (MuJoCo offscreen rendering on the CPU);
#   2. a Python 3.12 virtual environment, cached OUTSIDE the clone and keyed by a hash of
#      pyproject.toml, so CI and new clones reuse it; `.venv` in the repo is a symlink to it;
#   3. this repo, installed editable into that venv;
#   4. the ManiSkill 3 backend (Mesa 25 Vulkan from bookworm-backports, mani-skill + sapien).
# Env knobs: ROBO_REWARD_VENV_ROOT (default ~/.cache/robo-reward/venvs), PYTHON312,
# ROBO_REWARD_VERBOSE=1 (show pip's and apt's output; otherwise it goes to a log, shown on failure).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
log="${TMPDIR:-/tmp}/robo-reward-setup.log"
: > "$log"
# quiet: run a command with its output in $log, and show the log's tail if it fails
quiet() {
  if [ "${ROBO_REWARD_VERBOSE:-0}" = 1 ]; then "$@"; return; fi
  if ! "$@" >>"$log" 2>&1; then
    echo "[setup] failed: $*  (last lines of $log:)" >&2
    tail -n 30 "$log" >&2
    exit 1
  fi
}

apt_pkgs=(ffmpeg libegl1 libegl-mesa0 libgl1-mesa-dri libosmesa6)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[setup] installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  quiet $SUDO apt-get update -qq
  quiet env DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# ManiSkill/SAPIEN on the CPU needs a Vulkan device: Mesa 25's lavapipe from bookworm-backports
# (Debian 12's stock Mesa 22 offers none SAPIEN accepts). ROBO_REWARD_MANISKILL=0 skips it.
maniskill="${ROBO_REWARD_MANISKILL:-1}"
if [ "$maniskill" = 1 ] && [ -f /etc/debian_version ] && grep -q '^12' /etc/debian_version; then
  mesa_ver="$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || true)"
  if [ -z "$mesa_ver" ] || dpkg --compare-versions "$mesa_ver" lt 25; then
    echo "[setup] installing Mesa 25 Vulkan drivers from bookworm-backports (for ManiSkill/SAPIEN)"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    src=/etc/apt/sources.list.d/bookworm-backports.list
    [ -f "$src" ] || echo "deb http://deb.debian.org/debian bookworm-backports main" | $SUDO tee "$src" >/dev/null
    quiet $SUDO apt-get update -qq
    quiet env DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
      -t bookworm-backports mesa-vulkan-drivers libvulkan1
  fi
fi

py="${PYTHON312:-}"
if [ -z "$py" ]; then
  if command -v pyenv >/dev/null 2>&1 && [ -x "$(pyenv root)/versions/3.12.1/bin/python3.12" ]; then
    py="$(pyenv root)/versions/3.12.1/bin/python3.12"
  elif command -v python3.12 >/dev/null 2>&1; then
    py="$(command -v python3.12)"
  else
    echo "[setup] error: Python 3.12 not found (set PYTHON312=/path/to/python3.12)" >&2
    exit 1
  fi
fi

key="$(sha256sum pyproject.toml | cut -c1-16)"
root="${ROBO_REWARD_VENV_ROOT:-$HOME/.cache/robo-reward/venvs}"
venv="$root/$key"
mkdir -p "$root"
if [ ! -f "$venv/.complete" ]; then
  echo "[setup] building venv $venv (first run downloads torch: several GB, ~5-10 min)"
  rm -rf "$venv"
  "$py" -m venv "$venv"
  quiet "$venv/bin/python" -m pip install -q --upgrade pip
  quiet "$venv/bin/python" -m pip install -q -e ".[dev]"
  touch "$venv/.complete"
  # prune older venvs (each is ~5.5 GB)
  for old in "$root"/*; do
    [ "$old" != "$venv" ] && [ -d "$old" ] && { echo "[setup] pruning old venv $old"; rm -rf "$old"; }
  done
else
  # the cached venv may point at another clone: re-link this checkout (fast, no deps)
  quiet "$venv/bin/python" -m pip install -q --no-deps -e .
fi
# the [maniskill] backend: mani-skill and sapien without their declared deps (those would pull
# mplib and opencv-python), then the deps they really need (scripts/maniskill-requirements.txt)
ms_key="maniskill-3.0.1-$(sha256sum scripts/maniskill-requirements.txt | cut -c1-8)"
if [ "$maniskill" = 1 ] && [ ! -f "$venv/.$ms_key" ]; then
  echo "[setup] installing ManiSkill 3 (no mplib, no second opencv)"
  quiet "$venv/bin/python" -m pip install -q --no-deps "mani-skill==3.0.1" "sapien==3.0.3"
  quiet "$venv/bin/python" -m pip install -q -r scripts/maniskill-requirements.txt
  touch "$venv/.$ms_key"
fi
# optional pretrained encoders for the reward model (encoder=clip|siglip): transformers, a version
# that accepts lerobot's huggingface-hub 1.x. Weights are only ever read from local directories.
tf_key="transformers-5.18.0"
if [ ! -f "$venv/.$tf_key" ]; then
  echo "[setup] installing transformers (CLIP/SigLIP encoders)"
  quiet "$venv/bin/python" -m pip install -q "transformers==5.18.0" "huggingface-hub>=1.6,<2"
  touch "$venv/.$tf_key"
fi
# LeRobot plugins (plugins/lerobot_*): LeRobot's own commands find our robot and cameras by these
# distributions' names. Editable and without deps, re-linked to this checkout every time.
quiet "$venv/bin/python" -m pip install -q --no-deps -e plugins/lerobot_robot_mujoco_so101 -e plugins/lerobot_camera_mujoco
ln -sfn "$venv" .venv
echo "[setup] ready: $repo/.venv -> $venv"
