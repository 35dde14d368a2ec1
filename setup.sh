#!/usr/bin/env bash
# Set up Masquerade on a fresh Debian/Ubuntu machine: system libraries (when run as root or with
# sudo), a virtual environment in .venv, PyTorch's CPU build first, then the project with its extras.
set -euo pipefail
cd "$(dirname "$0")"

APT_PACKAGES=(libegl1 libgl1 libgl1-mesa-dri libegl-mesa0 xvfb xauth x11-utils fonts-noto-color-emoji libportaudio2
              chromium g++)  # chromium: the kiosk status page's browser test (Playwright drives it); x11-utils:
                             # xwininfo, which tells the window tests which X screen a window opened on; g++:
                             # torch.compile's C++ kernels on the CPU ([model] compile = "auto", StyleGAN shows)
if command -v apt-get >/dev/null; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "setup: installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch before the project: with torch already present, pip does not fetch a CUDA build for it.
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[dev]"
echo "setup: done. Try: .venv/bin/masquerade run shows/default.toml"
