#!/usr/bin/env bash
# Scratch set-up for bench/peers.py, outside this repository: a venv with what NVlabs' code needs and
# clones of their two repositories (nothing of theirs is committed here).
#   bash bench/peers_setup.sh DIR SG2ADA_GIT SG3_GIT
# DIR: where to put them (e.g. /tmp/peers); SG2ADA_GIT, SG3_GIT: a git URL or a local git directory of
# NVlabs/stylegan2-ada-pytorch and NVlabs/stylegan3. Prints the variables bench/peers.py reads.
set -euo pipefail
if [ $# -ne 3 ]; then sed -n '2,6p' "$0"; exit 2; fi
dir=$1
mkdir -p "$dir"
[ -x "$dir/venv/bin/python" ] || python3 -m venv "$dir/venv"
"$dir/venv/bin/pip" install -q torch==2.13.0 numpy click pillow scipy requests "setuptools<81"  # stylegan3 imports pkg_resources
[ -d "$dir/stylegan2-ada-pytorch" ] || git clone -q "$2" "$dir/stylegan2-ada-pytorch"
[ -d "$dir/stylegan3" ] || git clone -q "$3" "$dir/stylegan3"
echo "export MASQ_PEERS_PYTHON=$dir/venv/bin/python MASQ_SG2ADA=$dir/stylegan2-ada-pytorch MASQ_SG3=$dir/stylegan3"
