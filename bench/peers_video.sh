#!/usr/bin/env bash
# NVlabs' gen_video.py (stylegan3 repository, patched to the CPU) and `masquerade render` on the same pickle and the
# same frame count, one after the other in one run; bench/peers.md says how to read the figures.
#
#   bash bench/peers_video.sh PICKLE RESOLUTION FRAMES
#
# PICKLE: an NVlabs network pickle (bench/peers.py writes some to /tmp/masquerade-peers/, e.g. sg2-paper256.pkl);
# RESOLUTION: its image size (256); FRAMES: an even frame count (a walk through 2 keyframes, FRAMES/2 frames each).
# Needs bench/peers_setup.sh's scratch venv and stylegan3 checkout (MASQ_PEERS_PYTHON, MASQ_SG3; default
# /tmp/peers/...) with imageio, imageio-ffmpeg and tqdm in that venv (installed here when missing). Nothing of NVlabs' is
# copied into this repository: the patched script is a sed of their file into a temporary folder.
#
# Both sides: the same pickle, truncation 1, constant noise, a 60 fps H.264 file at the model's resolution, torch
# with the same thread count (OMP_NUM_THREADS as set, else torch's default), pickle load and file writing included
# (each is a whole command, timed from start to exit). They walk different latents (gen_video: cubic w
# interpolation of seeds 0 and 1; Masquerade: its keyframes walk, slerp in z), which costs the same per frame.
set -euo pipefail
if [ $# -ne 3 ]; then sed -n '5,11p' "$0"; exit 2; fi
pkl=$(realpath "$1") res=$2 frames=$3 name=$(basename "$1")
[ -f "$pkl" ] || { echo "peers_video.sh: $1: no such pickle" >&2; exit 2; }
[ $((frames % 2)) = 0 ] || { echo "peers_video.sh: FRAMES must be even, got $frames" >&2; exit 2; }
cd "$(dirname "$0")/.."
PEER_PY=${MASQ_PEERS_PYTHON:-/tmp/peers/venv/bin/python}
SG3=${MASQ_SG3:-/tmp/peers/stylegan3}
PY=${PYTHON:-.venv/bin/python}
[ -x "$PEER_PY" ] && [ -f "$SG3/gen_video.py" ] || { echo "peers_video.sh: run bench/peers_setup.sh first (no $PEER_PY or $SG3/gen_video.py)" >&2; exit 2; }
"$PEER_PY" -c "import imageio, imageio_ffmpeg, tqdm" 2>/dev/null || "$PEER_PY" -m pip install -q imageio imageio-ffmpeg tqdm
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# gen_video.py asks for torch.device('cuda') in two places, and calls G.synthesis without force_fp32: a StyleGAN2-ADA
# pickle carries its own network code, which (unlike stylegan3's) runs its top layers in fp16 even on the CPU (168 s a
# frame at 256 px); bench/peers.py passes force_fp32=True too
sed -e "s/torch.device('cuda')/torch.device('cpu')/g" \
    -e "s/G.synthesis(ws=w.unsqueeze(0), noise_mode='const')/G.synthesis(ws=w.unsqueeze(0), noise_mode='const', force_fp32=True)/" \
    "$SG3/gen_video.py" > "$work/gen_video_cpu.py"
[ "$(grep -c "torch.device('cpu')" "$work/gen_video_cpu.py")" = 2 ] && grep -q "force_fp32=True" "$work/gen_video_cpu.py" \
  || { echo "peers_video.sh: gen_video.py has changed: patch by hand" >&2; exit 1; }

# NVlabs' loader wants a discriminator in the pickle; bench/peers.py's pickles have D = None: add one of theirs
PYTHONPATH="$SG3" "$PEER_PY" - "$pkl" "$work/net.pkl" <<'EOF'
import pickle, sys
import torch
with open(sys.argv[1], "rb") as f:
    data = pickle.load(f)  # NVlabs' persistent classes carry their own source
if not isinstance(data.get("D"), torch.nn.Module):
    from training.networks_stylegan2 import Discriminator
    G = data["G_ema"]
    data["D"] = Discriminator(c_dim=G.c_dim, img_resolution=G.img_resolution, img_channels=G.img_channels).eval()
with open(sys.argv[2], "wb") as f:
    pickle.dump(data, f)
EOF
pkl=$work/net.pkl

half=$((frames / 2))
seconds=$("$PY" -c "print($frames / 60)")
cat > "$work/show.toml" <<EOF
name = "peers: $name"
[model]
path = "$pkl"
[walk]
kind = "keyframes"
seed = 0
keyframes = 2
seconds_per_keyframe = $("$PY" -c "print($half / 60)")
truncation = 1.0
[output]
size = [$res, $res]
fps = 60
EOF

now() { date +%s.%N; }
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $name at ${res}px, $frames frames; $(nproc) cores, OMP_NUM_THREADS=${OMP_NUM_THREADS:-unset}; load $(cut -d' ' -f1-3 /proc/loadavg)"
t0=$(now)
PYTHONPATH="$SG3" "$PEER_PY" "$work/gen_video_cpu.py" --network "$pkl" --seeds 0-1 --num-keyframes 2 \
  --w-frames "$half" --trunc 1 --output "$work/nvlabs.mp4" > "$work/nvlabs.log" 2>&1 || { tail -5 "$work/nvlabs.log" >&2; exit 1; }
t1=$(now)
"$PY" -m engine.cli render "$work/show.toml" -o "$work/masquerade.mp4" --seconds "$seconds" --fps 60 \
  --size "${res}x${res}" > "$work/masquerade.log" 2>&1 || { tail -5 "$work/masquerade.log" >&2; exit 1; }
t2=$(now)
count() { "$PY" -c "import sys; from engine.sinks.video import read_frames; print(len(read_frames(sys.argv[1])))" "$1"; }
"$PY" - "$t0" "$t1" "$t2" "$(count "$work/nvlabs.mp4")" "$(count "$work/masquerade.mp4")" "$work/nvlabs.log" \
  "$work/masquerade.log" <<'EOF'
import re, sys
t0, t1, t2 = map(float, sys.argv[1:4])
n_nv, n_mq = map(int, sys.argv[4:6])

def loop_seconds(log):  # the frame loop's time as both progress bars (tqdm) report it at their last update
    bars = re.findall(r"(\d+)/(\d+) \[(?:(\d+):)?(\d+):(\d+)<", open(log, errors="replace").read())
    h, m, s = (int(x or 0) for x in bars[-1][2:])
    return 3600 * h + 60 * m + s

rows = (("NVlabs gen_video.py (CPU)", t1 - t0, loop_seconds(sys.argv[6]), n_nv),
        ("masquerade render", t2 - t1, loop_seconds(sys.argv[7]), n_mq))
for name, whole, loop, n in rows:
    print(f"  {name:<27} whole command {whole:7.1f} s   frame loop {loop:5d} s ({1000 * loop / n:7.1f} ms/frame, "
          f"tqdm, 1 s resolution)   start-up and the rest {whole - loop:6.1f} s   {n} frames decoded")
(_, nv, nv_loop, _), (_, mq, mq_loop, _) = rows
print(f"  ratio NVlabs / Masquerade: whole command x{nv / mq:.2f}, frame loop x{nv_loop / max(mq_loop, 1):.2f}")
EOF
