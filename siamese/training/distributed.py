"""The process group of a `torchrun` launch, and the few collective steps training needs.

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE in every process it starts; without them a run
is the single process it always was, and every helper here is a no-op for it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from siamese.core.errors import SiameseError


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    backend: str | None = None  # "nccl" or "gloo" once a process group is up

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes checkpoints, logs and reports."""
        return self.rank == 0

    def device(self, requested: str) -> str:
        """Each rank on its own GPU (cuda:LOCAL_RANK), however the device was asked for."""
        if not self.enabled or not requested.startswith(("auto", "cuda")):
            return requested
        if requested == "auto" and not torch.cuda.is_available():
            return "cpu"
        if requested not in ("auto", "cuda"):
            raise SiameseError(f"--device {requested}: under torchrun each rank takes cuda:LOCAL_RANK; pass cuda")
        return f"cuda:{self.local_rank}"

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def broadcast_buffers(self, module: torch.nn.Module) -> None:
        """Rank 0's buffers (BatchNorm running statistics) to every rank. DDP sends them at the
        start of each forward pass, so after the last one each rank still holds its own."""
        if self.enabled:
            for buffer in module.buffers():
                dist.broadcast(buffer, 0)

    def sum(self, values: list[float]) -> list[float]:
        """Each value summed over the ranks (in float64, so counts stay exact)."""
        if not self.enabled:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=self._collective_device())
        dist.all_reduce(tensor)
        return tensor.tolist()

    def gather(self, text: str) -> list[str]:
        """`text` from every rank, in rank order."""
        if not self.enabled:
            return [text]
        out: list = [None] * self.world_size
        dist.all_gather_object(out, text)
        return out

    def shard(self, items: list) -> list:
        """This rank's share of a list every rank built alike: rank r takes items r, r + W, ...
        The tail that does not divide evenly is dropped, so every rank runs as many steps
        (a rank with one step more would wait forever for the others' gradients)."""
        whole = len(items) - len(items) % self.world_size
        return items[self.rank : whole : self.world_size]

    def _collective_device(self) -> str:
        return f"cuda:{self.local_rank}" if self.backend == "nccl" else "cpu"

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


SINGLE_PROCESS = Distributed()


def from_environment() -> Distributed:
    """The process group torchrun describes in the environment, joined; or a single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return Distributed(rank, local_rank, world_size, backend)


def weights_digest(module: torch.nn.Module) -> str:
    """sha256 of every parameter and buffer: equal on all ranks exactly when their models are."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
