"""Data-parallel training over processes with `torch.distributed` (gloo: CPUs, or GPUs without NCCL).

Each process draws its own share of the batch; after every backward pass the gradients are averaged
over processes with one all-reduce, so the replicas stay identical (the parameters are broadcast from
rank 0 once at the start). This is what DistributedDataParallel does, done by hand as in NVlabs'
StyleGAN2-ADA: a GAN step runs the discriminator several times per backward and takes gradients
through D for G's loss without updating D, which DDP's per-forward hooks do not fit.

Two ways in, both ending in `Trainer`:
    masquerade train DATA --nproc 2 ...                                # spawns the processes itself
    torchrun --nproc_per_node 2 -m engine.cli train DATA ...           # torchrun sets RANK/WORLD_SIZE
"""

from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_from_env() -> bool:
    """Join the process group torchrun describes (WORLD_SIZE > 1 in the environment); True if joined."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return dist.is_initialized()
    dist.init_process_group("gloo")
    return True


def finish() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_module(module: torch.nn.Module) -> None:
    """Every parameter and buffer from rank 0 (identical replicas to start from)."""
    if rank_and_world()[1] == 1:
        return
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src=0)


def average_gradients(params) -> None:
    """Mean of every parameter's gradient over processes, in one flat all-reduce."""
    if rank_and_world()[1] == 1:
        return
    params = [p for p in params if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.flatten() for p in params])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for p in params:
        n = p.numel()
        p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
        offset += n


def sum_over_processes(t: torch.Tensor) -> torch.Tensor:
    if rank_and_world()[1] > 1:
        t = t.clone()
        dist.all_reduce(t)
    return t


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, cfg) -> None:
    from engine.training.gan import Trainer

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        Trainer(cfg).run(progress=rank == 0)
    finally:
        dist.destroy_process_group()


def spawn(cfg, nproc: int) -> None:
    """Run `Trainer(cfg).run()` in `nproc` processes on this machine; returns when all have finished."""
    import torch.multiprocessing as mp

    mp.spawn(_worker, args=(nproc, free_port(), cfg), nprocs=nproc, join=True)
