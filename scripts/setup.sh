#!/usr/bin/env bash
# Installs everything robo-reward needs on a fresh Debian machine, idempotently:
#   1. Debian packages: FFmpeg shared libraries (video decode) and Mesa EGL/OSMesa
#      (MuJoCo offscreen rendering on the CPU);
#   2. a Python 3.12 virtual environment, cached OUTSIDE the clone and keyed by a hash of
#      pyproject.toml, so CI and new clones reuse it; `.venv` in the repo is a symlink to it;
#   3. this repo, installed editable into that venv.
# Env knobs: ROBO_REWARD_VENV_ROOT (default ~/.cache/robo-reward/venvs), PYTHON312.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

apt_pkgs=(ffmpeg libegl1 libegl-mesa0 libgl1-mesa-dri libosmesa6)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[setup] installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
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
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q -e ".[dev]"
  touch "$venv/.complete"
  # prune older venvs (each is ~5.5 GB)
  for old in "$root"/*; do
    [ "$old" != "$venv" ] && [ -d "$old" ] && { echo "[setup] pruning old venv $old"; rm -rf "$old"; }
  done
else
  # the cached venv may point at another clone: re-link this checkout (fast, no deps)
  "$venv/bin/python" -m pip install -q --no-deps -e . >/dev/null
fi
ln -sfn "$venv" .venv
echo "[setup] ready: $repo/.venv -> $venv"
