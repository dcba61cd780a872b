"""Distributed training on torch.distributed: torchrun sets the environment, we read it.

DDP for models whose LLM fits one device, FSDP (``train.distributed=fsdp``) to shard a big
LLM. NCCL on GPUs, gloo on CPUs (that is what the tests run). Rank 0 saves and logs.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class DistInfo:
    """Where this process sits: rank, world size, device, and which wrapper it uses."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    mode: str = "none"

    @property
    def enabled(self) -> bool:
        """True when several processes train together."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on the process that saves and logs."""
        return self.rank == 0


def setup(mode: str = "auto") -> DistInfo:
    """Initialise the process group when torchrun started several processes."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world == 1 or mode == "none":
        if world > 1:
            raise RuntimeError(f"WORLD_SIZE={world} but train.distributed=none; use ddp, fsdp "
                               "or auto, or launch a single process")
        return DistInfo(device=device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistInfo(rank, world, local, device, "fsdp" if mode == "fsdp" else "ddp")


def wrap(model: nn.Module, info: DistInfo) -> nn.Module:
    """Wrap for gradient sync: DDP (frozen parameters are skipped) or FSDP."""
    if not info.enabled:
        return model
    if info.mode == "fsdp":
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
        from torch.distributed.fsdp.wrap import ModuleWrapPolicy

        from mullm.llm import decoder_layers

        layer_cls = {type(layer) for layer in decoder_layers(model.llm)}
        # use_orig_params lets frozen and trainable parameters share a flat shard.
        return FSDP(model, auto_wrap_policy=ModuleWrapPolicy(layer_cls), use_orig_params=True,
                    device_id=info.device if info.device.type == "cuda" else None)
    ids = [info.device.index] if info.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False)


def unwrap(model: nn.Module) -> nn.Module:
    """The MusicLLM inside a DDP/FSDP wrapper."""
    return getattr(model, "module", model)


@contextlib.contextmanager
def no_sync(model: nn.Module, active: bool) -> Iterator[None]:
    """Skip gradient all-reduce on accumulation micro-steps that are not the last."""
    if active and hasattr(model, "no_sync"):
        with model.no_sync():
            yield
    else:
        yield


@contextlib.contextmanager
def full_params(model: nn.Module, info: DistInfo) -> Iterator[None]:
    """Gather FSDP shards so that save_pretrained sees whole tensors (no-op for DDP)."""
    if info.mode == "fsdp":
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        with FSDP.summon_full_params(model, writeback=False, rank0_only=False):
            yield
    else:
        yield


def all_reduce_sum(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum a tensor over ranks (identity in one process)."""
    if info.enabled:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def barrier(info: DistInfo) -> None:
    """Wait for every rank."""
    if info.enabled:
        dist.barrier()


def broadcast_object(obj: object, info: DistInfo) -> object:
    """Rank 0's value of ``obj`` on every rank."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def cleanup(info: DistInfo) -> None:
    """Tear down the process group."""
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
