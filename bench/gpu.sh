#!/usr/bin/env bash
# Every GPU figure docs/performance.md waits for, in one run of about 8 minutes on one H100/H200 (issue 19):
#   1. bench/generators.py --device cuda: StyleGAN2 config F at 256/512/1024 px, random weights built by the
#      project's own code: eager fp32, bf16, fp16 at batch 1 and 8; then compile fp16 and compile fp16 + CUDA
#      graphs at batch 1 (a cold compile takes tens of seconds a net: what the step's timeout leaves out is
#      reported as timed out, the lines before it kept)
#   2. generator + x4 super-resolution: StyleGAN2 config F at 256 px -> x4 -> 1920x1080 and at 512 px -> x4 ->
#      3840x2160 (fp16 generator, the SR under its own fp16 autocast), ms a frame
#   3. bench/render.py at 1920x1080 on cuda: the overlapped render against --no-overlap, in one run
#   4. bench/filters.py on cuda at 64, 256, 512 and 1080p input
#   5. bench/frame_upload.py on cuda at 1920x1080: the live loop's stages headless on EGL with the host upload and
#      with CUDA-OpenGL interop (engine/frame_texture.py), the ratio in one run, and interop's composited pixels
#      checked equal to the host's (the step fails when they differ; needs `pip install -e '.[cuda]'` and the EGL
#      context on the NVIDIA GPU, else its line says why interop did not run)
# Each step has its own timeout; a step that fails or times out is a row saying so, and the rest go on.
# The result is one markdown table on stdout, and in $OUT/gpu-bench.md when $OUT is set.
#
#   bench/gpu.sh              on the GPU machine
#   bench/gpu.sh --cpu-smoke  tiny sizes on the CPU, a minute or two: checks the script itself
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
SMOKE=0
case "${1:-}" in
  --cpu-smoke|--dry-run) SMOKE=1 ;;
  "") ;;
  *) echo "usage: bench/gpu.sh [--cpu-smoke]" >&2; exit 2 ;;
esac
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

if [ "$SMOKE" = 1 ]; then
  DEVICE=cpu
  GEN=(--device cpu --sizes 32 --widths small --batches 1 --repeats 1 --only StyleGAN2)
  COMPILE=(--device cpu --sizes 32 --widths small --batches 1 --repeats 1 --only "emoji64" --variants bf16)
  SR_SIZES="32:128x72 64:256x144"
  WIDTH=small
  RENDER=(--size 256x144 --seconds 0.5 --fps 12 --workers)
  FILTERS=(--device cpu --sizes 64 --repeats 1 --only grade)
  UPLOAD=(--device cpu --size 256x144 --frames 6)
  T_GEN=120 T_COMPILE=240 T_SR=120 T_RENDER=120 T_FILTERS=120 T_UPLOAD=120
else
  DEVICE=cuda
  GEN=(--device cuda --sizes 256,512,1024 --widths f --batches 1,8 --repeats 10 --only StyleGAN2)
  COMPILE=(--device cuda --sizes 256,512,1024 --widths f --batches 1 --repeats 10 --only StyleGAN2
           --variants "compile fp16")  # compile fp16, and compile fp16 + CUDA graphs
  SR_SIZES="256:1920x1080 512:3840x2160"
  WIDTH=f
  RENDER=(--device cuda --size 1920x1080 --seconds 4 --fps 30 --workers)
  FILTERS=(--device cuda --sizes 64,256,512,1080 --repeats 3)
  UPLOAD=(--device cuda --size 1920x1080 --frames 240)
  T_GEN=45 T_COMPILE=200 T_SR=40 T_RENDER=70 T_FILTERS=80 T_UPLOAD=40  # 485 s at most, with start-up about 8 min
fi

ROWS="$WORK/rows"
: > "$ROWS"

step() {  # step NAME SECONDS COMMAND...: run it, its output lines become the table's rows
  local name=$1 limit=$2
  shift 2
  local started=$SECONDS rc=0
  timeout --kill-after=10 "$limit" "$@" > "$WORK/out" 2> "$WORK/err" || rc=$?
  local took=$((SECONDS - started)) status="ok"
  [ "$rc" = 124 ] || [ "$rc" = 137 ] && status="timed out after ${limit} s"
  [ "$rc" != 0 ] && [ "$status" = ok ] && status="failed (exit $rc): $(tail -n 1 "$WORK/err")"
  grep -v '^\s*$' "$WORK/out" | sed -e 's/|/\\|/g' -e "s/^/| $name | /" -e 's/$/ |/' >> "$ROWS"
  echo "| $name | _${status}, ${took} s_ |" >> "$ROWS"
}

cat > "$WORK/sr.py" <<'EOF'
import sys, time
import torch
sys.path.insert(0, ".")
from bench.generators import WIDTHS
from engine import frame_path, generators
from engine.filters.superres import SuperRes
from engine.frame import to_uint8_hwc
from engine.generators.speed import Speed, accelerate

device, widths, pairs = torch.device(sys.argv[1]), sys.argv[2], sys.argv[3:]
base, top = WIDTHS[widths]
sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
sr = SuperRes().to(device).eval()  # the shipped x4 (sr-emoji-x4); fp16 autocast on CUDA
speed = Speed("fp16" if device.type == "cuda" else "fp32")
print(f"generator + shipped x4 SR + fit + quantise on {torch.cuda.get_device_name() if device.type == 'cuda' else 'CPU'}")
for pair in pairs:
    size, out = pair.split(":")
    size, (w, h) = int(size), map(int, out.split("x"))
    g = generators.create("stylegan2", z_dim=512, c_dim=0, w_dim=512, img_resolution=size, img_channels=3,
                          mapping_kwargs={"num_layers": 8},
                          synthesis_kwargs={"channel_base": base, "channel_max": top}).to(device).eval()
    accelerate(g, device, speed)
    z = torch.randn(1, 512, device=device)
    times = {}
    with torch.inference_mode():
        for i in range(8):
            marks = [time.perf_counter()]
            image = g(z).float().clamp(0, 1)  # [1, 3, s, s]
            sync(); marks.append(time.perf_counter())
            image = sr(image)  # [1, 3, 4s, 4s]
            sync(); marks.append(time.perf_counter())
            image = frame_path.fit(image, (w, h))  # [1, 3, h, w]
            to_uint8_hwc(image)
            sync(); marks.append(time.perf_counter())
            if i >= 3:  # after warm-up
                for k, a, b in zip(("generator", "x4 SR", "fit + quantise"), marks, marks[1:]):
                    times.setdefault(k, []).append((b - a) * 1000)
    ms = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    total = sum(ms.values())
    print(f"StyleGAN2 {size}px {widths} {speed.precision} -> x4 {4 * size}px -> {w}x{h}: "
          + ", ".join(f"{k} {v:.1f} ms" for k, v in ms.items()) + f"; {total:.1f} ms a frame ({1000 / total:.0f} fps)")
EOF

echo "| bench | figure |" > "$WORK/table"
echo "| --- | --- |" >> "$WORK/table"
step "machine" 10 sh -c "date -u; uptime; (nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo 'no nvidia-smi'); $PY -c 'import torch; print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda)'"
step "generators" "$T_GEN" "$PY" bench/generators.py "${GEN[@]}" --no-compile
step "generators, compiled" "$T_COMPILE" "$PY" bench/generators.py "${COMPILE[@]}"
step "generator + x4 SR" "$T_SR" "$PY" "$WORK/sr.py" "$DEVICE" "$WIDTH" $SR_SIZES
step "render" "$T_RENDER" "$PY" bench/render.py "${RENDER[@]}"
step "filters" "$T_FILTERS" "$PY" bench/filters.py "${FILTERS[@]}"
step "frame upload" "$T_UPLOAD" "$PY" bench/frame_upload.py "${UPLOAD[@]}"
cat "$ROWS" >> "$WORK/table"

cat "$WORK/table"
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT" && cp "$WORK/table" "$OUT/gpu-bench.md"
fi
