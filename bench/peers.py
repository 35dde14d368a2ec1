"""Masquerade's StyleGAN2/3 against NVlabs' own code on the same pickle, the same z, interleaved in one
run: milliseconds per frame of each, the ratio, and the largest pixel difference (0..1 scale).

    bash bench/peers_setup.sh /tmp/peers SG2ADA_GIT SG3_GIT    # once: a scratch venv + NVlabs' checkouts
    .venv/bin/python bench/peers.py [--only paper256] [--batches 1,8] [--rounds 3] [--repeats 2] [--profile]

NVlabs' code runs in a subprocess of their venv (bench/peers_nvlabs.py, which imports it from the
checkouts: `--sg2ada`/`MASQ_SG2ADA`, `--sg3`/`MASQ_SG3`, python `--peer-python`/`MASQ_PEERS_PYTHON`);
nothing of theirs is in this repository. That process writes each model's pickle with their classes and
loads it with their loader; ours loads the same file with `nvlabs_pickle` (the path users take). Each
round times NVlabs then Masquerade, the next round the other way round; the figures are medians over
all calls after one warm-up call each (frames are batch-1 calls, or batch-8 calls divided by 8). Both
sides run float32 with constant noise and truncation 1, torch with the same thread count; the machine's
load (`uptime`) is printed, since only ratios within one run compare. Masquerade is timed twice: eager
(lockstep runs and renders) and compiled (a live show once its background compile is done, `[model]
compile = "auto"`; `--no-compile` leaves it out); "compile s" is its first call, compile included (seconds
from inductor's cache in the user's cache folder once a model has been compiled).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.generators.nvlabs_pickle import load_nvlabs_pickle  # noqa: E402
from engine.generators.speed import Speed, accelerate  # noqa: E402

SG2 = "training.networks"  # stylegan2-ada-pytorch
SG3 = "training.networks_stylegan3"  # stylegan3
# name -> (repository, module, constructor kwargs as NVlabs' train.py builds them, default batches)
MODELS = {
    # --cfg=paper256: fmaps 0.5, 8 mapping layers, fp16 in the top 4 resolutions (run here in float32)
    "sg2-paper256": ("sg2", SG2, dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=256, img_channels=3,
                                      mapping_kwargs=dict(num_layers=8),
                                      synthesis_kwargs=dict(channel_base=16384, channel_max=512, num_fp16_res=4,
                                                            conv_clamp=256)), "1,8"),
    # --cfg=stylegan2 (config F) at 512 px: seconds a frame on a CPU, so batch 1 only by default
    "sg2-f512": ("sg2", SG2, dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=512, img_channels=3,
                                  mapping_kwargs=dict(num_layers=8),
                                  synthesis_kwargs=dict(channel_base=32768, channel_max=512, num_fp16_res=4,
                                                        conv_clamp=256)), "1"),
    # --cfg=stylegan3-t / -r at 256 px with CPU-size widths (--cbase=2048 --cmax=64; R doubles both, as
    # train.py does); full widths take tens of seconds a frame on a CPU
    "sg3-t256-small": ("sg3", SG3, dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=256, img_channels=3,
                                        channel_base=2048, channel_max=64, magnitude_ema_beta=0.999,
                                        mapping_kwargs=dict(num_layers=2)), "1"),
    "sg3-r256-small": ("sg3", SG3, dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=256, img_channels=3,
                                        channel_base=4096, channel_max=128, magnitude_ema_beta=0.999,
                                        conv_kernel=1, use_radial_filters=True,
                                        mapping_kwargs=dict(num_layers=2)), "1"),
}


class Peer:
    """NVlabs' code in a subprocess of their venv, one JSON line each way."""

    def __init__(self, python: str, repo: str):
        self.proc = subprocess.Popen([python, str(ROOT / "bench" / "peers_nvlabs.py"), "--repo", repo],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.hello = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the NVlabs process ended (exit {self.proc.wait()})")
        return json.loads(line)

    def ask(self, **req) -> dict:
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def ours_time(g, z: torch.Tensor, repeats: int) -> tuple[list[float], torch.Tensor]:
    seconds, first = [], None
    with torch.no_grad():
        for _ in range(repeats):
            start = time.perf_counter()
            img = g(z)
            seconds.append(time.perf_counter() - start)
            first = img if first is None else first
    return seconds, first


def conv_share(call, *args) -> tuple[float, float]:
    """One profiled call: (milliseconds inside convolution ops (their self time), the call's milliseconds)."""
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        call(*args)
        call_ms = (time.perf_counter() - start) * 1000
    return sum(e.self_cpu_time_total for e in prof.key_averages() if "conv" in e.key) / 1000, call_ms


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sg2ada", default=os.environ.get("MASQ_SG2ADA"), help="checkout of NVlabs/stylegan2-ada-pytorch")
    ap.add_argument("--sg3", default=os.environ.get("MASQ_SG3"), help="checkout of NVlabs/stylegan3")
    ap.add_argument("--peer-python", default=os.environ.get("MASQ_PEERS_PYTHON", "/tmp/peers/venv/bin/python"))
    ap.add_argument("--work", default="/tmp/masquerade-peers", help="where the pickles and images go")
    ap.add_argument("--only", default="", help="models whose name contains this text")
    ap.add_argument("--batches", default=None, help="e.g. 1,8 (default: each model's own)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2, help="timed calls per side per round")
    ap.add_argument("--no-compile", action="store_true", help="time Masquerade eager only")
    ap.add_argument("--profile", action="store_true",
                    help="after the timings, one profiled call each: the share of its time spent in convolutions")
    args = ap.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    repos = {"sg2": args.sg2ada, "sg3": args.sg3}
    peers: dict[str, Peer] = {}
    print(f"# peers: torch {torch.__version__}, {torch.get_num_threads()} threads, {time.strftime('%Y-%m-%d %H:%M')}, "
          f"load {os.getloadavg()[0]:.2f}")
    print(f"{'model':16} {'batch':>5} {'NVlabs ms':>10} {'eager ms':>9} {'ratio':>6} {'compiled':>9} {'ratio':>6} "
          f"{'max diff':>9} {'compile s':>9}")
    for name, (repo_key, module, kwargs, default_batches) in MODELS.items():
        if args.only not in name:
            continue
        if not repos[repo_key]:
            print(f"{name:16} skipped: pass --{'sg2ada' if repo_key == 'sg2' else 'sg3'} (a checkout of NVlabs' code)")
            continue
        if repo_key not in peers:
            peers[repo_key] = Peer(args.peer_python, repos[repo_key])
            print(f"# {repo_key}: NVlabs commit {peers[repo_key].hello['commit']}, their torch "
                  f"{peers[repo_key].hello['torch']}, {peers[repo_key].hello['threads']} threads", flush=True)
        peer = peers[repo_key]
        pkl = work / f"{name}.pkl"
        peer.ask(cmd="build", module=module, kwargs=kwargs, seed=0, out=str(pkl))
        peer.ask(cmd="load", pkl=str(pkl))
        g, _ = load_nvlabs_pickle(pkl)
        g = g.eval().requires_grad_(False)
        gc = None
        if not args.no_compile:  # a second copy, compiled as a live show's is once warm
            gc = accelerate(load_nvlabs_pickle(pkl)[0].eval().requires_grad_(False), torch.device("cpu"),
                            Speed(compile=True))
        for batch in [int(b) for b in (args.batches or default_batches).split(",")]:
            z = np.random.RandomState(batch).randn(batch, kwargs["z_dim"]).astype(np.float32)
            np.save(work / "z.npy", z)
            zt = torch.from_numpy(z)
            theirs_img, ours_img = work / f"{name}_b{batch}_nvlabs.npy", None
            peer.ask(cmd="time", z=str(work / "z.npy"), repeats=1, image=str(theirs_img))  # warm-up + image
            _, ours_img = ours_time(g, zt, 1)
            compile_s, fast_img = ours_time(gc, zt, 1) if gc is not None else ([float("nan")], ours_img)
            times = {"nv": [], "us": [], "fast": []}
            sides = ("nv", "us", "fast") if gc is not None else ("nv", "us")
            for r in range(args.rounds):
                for side in (sides if r % 2 == 0 else sides[::-1]):
                    if side == "nv":
                        times[side] += peer.ask(cmd="time", z=str(work / "z.npy"), repeats=args.repeats)["seconds"]
                    else:
                        times[side] += ours_time(g if side == "us" else gc, zt, args.repeats)[0]
            nv_ms = statistics.median(times["nv"]) * 1000 / batch
            us_ms = statistics.median(times["us"]) * 1000 / batch
            fast_ms = statistics.median(times["fast"]) * 1000 / batch if gc is not None else float("nan")
            theirs = np.load(theirs_img)
            diff = max(float(np.abs(theirs - img.numpy()).max()) for img in (ours_img, fast_img))
            print(f"{name:16} {batch:5d} {nv_ms:10.1f} {us_ms:9.1f} {nv_ms / us_ms:6.2f} {fast_ms:9.1f} "
                  f"{nv_ms / fast_ms:6.2f} {diff:9.2e} {compile_s[0]:9.1f}", flush=True)
            if args.profile:  # what bounds the ratio: convolutions are the same oneDNN calls on both sides
                nv = peer.ask(cmd="time", z=str(work / "z.npy"), repeats=1, profile=True)
                shares = [("NVlabs", nv["conv_ms"], nv["call_ms"])]
                for label, model in (("eager", g), ("compiled", gc)):
                    if model is not None:
                        shares.append((label, *conv_share(model, zt)))
                print("#   convolutions: " + ", ".join(f"{label} {conv:.0f} of {call:.0f} ms ({conv / call:.0%})"
                                                       for label, conv, call in shares), flush=True)
    for peer in peers.values():
        peer.close()
    print(f"# load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
