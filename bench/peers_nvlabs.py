"""The NVlabs side of bench/peers.py: runs in a scratch venv that has NVlabs' dependencies, imports their
code from the checkout given on the command line (nothing of theirs is in this repository), and answers
one JSON request per stdin line with one JSON line on stdout.

    <venv>/bin/python bench/peers_nvlabs.py --repo /path/to/stylegan3

Requests: {"cmd": "build", "module": "training.networks_stylegan3", "kwargs": {...}, "seed": 0, "out": "x.pkl"}
writes a pickle the way NVlabs' training loop does (G, G_ema, D=None, ...), with random weights and
non-zero biases and noise strengths; {"cmd": "load", "pkl": "x.pkl"} loads one with NVlabs' own loader;
{"cmd": "time", "z": "z.npy", "repeats": 3, "image": "img.npy"} renders z (truncation 1, constant
noise, float32) and answers the seconds of each call, saving the first image in [0, 1]; with "profile": true
it also answers the milliseconds of the last call spent in convolutions ("conv_ms", torch.profiler's self time of
every op whose name has "conv" in it) and the call's own milliseconds ("call_ms").
"""

import argparse
import copy
import importlib
import json
import pickle
import subprocess
import sys
import time

import numpy as np
import torch


def conv_share(call, *args, **kwargs) -> dict:
    """One profiled call: its milliseconds, and those spent inside convolution ops (their self time)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        call(*args, **kwargs)
        call_ms = (time.perf_counter() - start) * 1000
    conv_us = sum(e.self_cpu_time_total for e in prof.key_averages() if "conv" in e.key)
    return {"conv_ms": conv_us / 1000, "call_ms": call_ms}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", required=True)
    args = ap.parse_args()
    sys.path.insert(0, args.repo)
    git = subprocess.run(["git", "-C", args.repo, "rev-parse", "HEAD"], capture_output=True, text=True)
    commit = git.stdout.strip()
    G = None
    print(json.dumps({"ready": True, "commit": commit or "unknown", "torch": torch.__version__,
                      "threads": torch.get_num_threads()}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        if req["cmd"] == "build":
            torch.manual_seed(req["seed"])
            net = importlib.import_module(req["module"]).Generator(**req["kwargs"]).eval().requires_grad_(False)
            gen = torch.Generator().manual_seed(req["seed"] + 1)
            with torch.no_grad():
                for name, t in net.named_parameters():
                    if name.endswith("bias") and "affine" not in name:
                        t.add_(0.1 * torch.randn(t.shape, generator=gen))
                    elif name.endswith("noise_strength"):
                        t.copy_(0.1 * torch.randn(t.shape, generator=gen))
            data = dict(training_set_kwargs=None, G=net, D=None, G_ema=copy.deepcopy(net), augment_pipe=None)
            with open(req["out"], "wb") as f:
                pickle.dump(data, f)
            print(json.dumps({"ok": True, "params": sum(p.numel() for p in net.parameters())}), flush=True)
        elif req["cmd"] == "load":
            with open(req["pkl"], "rb") as f:  # as NVlabs' legacy.py does (less its check of D): runs their source
                G = pickle.load(f)["G_ema"].eval().requires_grad_(False)
            print(json.dumps({"ok": True}), flush=True)
        elif req["cmd"] == "time":
            z = torch.from_numpy(np.load(req["z"]))
            c = torch.zeros(z.shape[0], G.c_dim)
            seconds, answer = [], {}
            with torch.no_grad():
                for i in range(req["repeats"]):
                    start = time.perf_counter()
                    img = G(z, c, truncation_psi=1, noise_mode="const", force_fp32=True)
                    seconds.append(time.perf_counter() - start)
                    if i == 0 and req.get("image"):
                        np.save(req["image"], ((img + 1) / 2).clamp(0, 1).numpy())
                if req.get("profile"):
                    answer = conv_share(G, z, c, truncation_psi=1, noise_mode="const", force_fp32=True)
            print(json.dumps({"seconds": seconds, **answer}), flush=True)


if __name__ == "__main__":
    main()
