"""Distributed training on torch.distributed: torchrun sets the environment, we read it.

DDP for models whose LLM fits one device, FSDP (``train.distributed=fsdp``) to shard a big
LLM. NCCL on GPUs, gloo on CPUs (that is what the tests run). Rank 0 saves and logs.

FSDP is torch's per-parameter FSDP (``fully_shard``, "FSDP2"): one unit per decoder layer plus
the root, frozen and trainable parameters side by side. Unlike the older
``FullyShardedDataParallel`` it runs on CPU with gloo, so the tests exercise the same code a
GPU run uses. Sharding is in place and happens once; a later stage only flips
``requires_grad``, which FSDP2 honours.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
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
    """Wrap for gradient sync: DDP (frozen parameters are skipped) or FSDP (in place).

    After FSDP the model's parameters are new (sharded) objects: collect the ones to optimise
    from the returned model, not from before the call.
    """
    if not info.enabled:
        return model
    if info.mode == "fsdp":
        return _fully_shard(model, info)
    ids = [info.device.index] if info.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False)


def _fully_shard(model: nn.Module, info: DistInfo) -> nn.Module:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    from mullm.llm import decoder_layers

    if is_sharded(model):
        return model  # sharded by an earlier stage
    mesh = init_device_mesh(info.device.type, (info.world_size,))
    for layer in decoder_layers(model.llm):
        fully_shard(layer, mesh=mesh)
    # The root unit holds the rest: embeddings, head, final norm, encoders, adapters.
    fully_shard(model, mesh=mesh)
    return model


def is_sharded(model: nn.Module) -> bool:
    """True when ``model`` was sharded in place by FSDP."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


@contextlib.contextmanager
def no_sync(model: nn.Module, active: bool) -> Iterator[None]:
    """Skip gradient sync on accumulation micro-steps that are not the last."""
    if active and hasattr(model, "set_requires_gradient_sync"):  # FSDP
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)
    elif active and hasattr(model, "no_sync"):  # DDP
        with model.no_sync():
            yield
    else:
        yield


def gather_state(model: nn.Module, keep: Callable[[str], bool], info: DistInfo
                 ) -> dict[str, torch.Tensor] | None:
    """Whole CPU copies of the ``state_dict()`` entries ``keep`` selects, on rank 0 (None
    elsewhere). Under FSDP every rank must call it: each sharded entry is gathered in turn,
    so only the selected tensors (trainable ones, in practice) are ever whole at once."""
    out: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        if not keep(key):
            continue
        if hasattr(value, "full_tensor"):
            value = value.full_tensor()
        if info.is_main:
            out[key] = value.detach().cpu()
    return out if info.is_main else None


@contextlib.contextmanager
def root_params(model: nn.Module, info: DistInfo) -> Iterator[None]:
    """Gather the FSDP root unit (embeddings, head, adapters) for calls other than
    ``forward``, such as ``generate``; decoder layers still gather themselves as they run."""
    if info.mode == "fsdp" and is_sharded(model):
        model.unshard()
        try:
            yield
        finally:
            model.reshard()
    else:
        yield


def scalar(value: torch.Tensor) -> float:
    """A (possibly distributed) scalar tensor as a Python float."""
    if hasattr(value, "full_tensor"):
        value = value.full_tensor()
    return float(value)


def all_reduce_sum(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum a tensor over ranks (identity in one process). The sum is on ``info.device``
    (NCCL reduces only GPU tensors, so a CPU counter is copied there first)."""
    if info.enabled:
        value = value.to(info.device, copy=True)
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
