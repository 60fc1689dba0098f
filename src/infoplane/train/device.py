"""Where and in which precision the native trainer runs: device, process group, autocast and loss scaling.

- :func:`resolve_device`: ``"cpu"`` (default), ``"cuda"`` / ``"cuda:N"``, ``"auto"`` (CUDA when available) ->
  a ``torch.device``; under ``torchrun`` a CUDA run uses ``cuda:LOCAL_RANK``. Asking for CUDA without it is a
  one-line ValueError before any work.
- :func:`init_distributed`: the process group from ``torchrun``'s environment: NCCL for CUDA, gloo for CPU.
- :class:`Precision`: ``"fp32"`` (no autocast: the exact code path of a plain float32 run), ``"bf16"``
  (``torch.autocast`` bfloat16) or ``"fp16"`` (autocast float16 with a ``GradScaler``, CUDA only). Only the
  model's forward runs under autocast; the MBE estimator computes in float32 with autocast disabled
  (:mod:`infoplane.estimators.matrix`), and cross-entropy is autocast to float32 by PyTorch.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["DEVICES", "PRECISIONS", "check_device_spec", "resolve_device", "init_distributed", "Precision"]

DEVICES = ("cpu", "cuda", "auto")
PRECISIONS = ("fp32", "bf16", "fp16")


def check_device_spec(spec: Any, field: str = "TrainConfig.device") -> None:
    """Raise ValueError unless ``spec`` is 'cpu', 'cuda', 'cuda:N' or 'auto' (spelling only)."""
    ok = isinstance(spec, str) and (spec in DEVICES or (spec.startswith("cuda:") and spec[5:].isdigit()))
    if not ok:
        raise ValueError(f"{field} must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {spec!r}")


def resolve_device(spec: str, local_rank: int | None = None) -> torch.device:
    """The device of this process for ``spec``; ``local_rank`` (default: ``LOCAL_RANK`` when torchrun set
    it) picks the GPU of a 'cuda' run. A ValueError when CUDA is asked for and absent."""
    check_device_spec(spec)
    if spec == "cpu" or (spec == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError(f"TrainConfig.device (--device) is {spec!r} but CUDA is not available here "
                         f"(torch {torch.__version__}, torch.cuda.is_available() is False); use --device cpu "
                         "or auto")
    if spec.startswith("cuda:"):
        index = int(spec[5:])
    else:
        env = os.environ.get("LOCAL_RANK")
        index = local_rank if local_rank is not None else int(env) if env is not None else 0
    if index >= torch.cuda.device_count():
        raise ValueError(f"TrainConfig.device (--device): GPU {index} requested but this machine has "
                         f"{torch.cuda.device_count()}")
    return torch.device("cuda", index)


def init_distributed(device: torch.device) -> tuple[bool, int, int]:
    """(distributed, rank, world_size); initialises the process group from torchrun's environment when
    WORLD_SIZE > 1 and none exists: NCCL on CUDA (after selecting this rank's GPU), gloo on CPU."""
    if dist.is_available() and not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if device.type == "cuda":
            torch.cuda.set_device(device)
            dist.init_process_group("nccl")
        else:
            dist.init_process_group("gloo")
    if dist.is_available() and dist.is_initialized():
        return True, dist.get_rank(), dist.get_world_size()
    return False, 0, 1


class Precision:
    """Autocast and loss scaling for one run: ``fp32`` is the plain path (no context, no scaler).

    Use: ``with p.autocast(): out = model(x, y)``; ``p.backward(loss)``; ``p.unscale(opt)`` before clipping;
    ``p.step(opt)``; after an overflow (non-finite gradient) ``p.skip()`` lowers the fp16 loss scale."""

    def __init__(self, precision: str, device: torch.device) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"TrainConfig.precision must be one of {PRECISIONS}, got {precision!r}")
        if precision == "fp16" and device.type != "cuda":
            raise ValueError(f"TrainConfig.precision (--precision) 'fp16' needs a CUDA device (autocast "
                             f"float16 with loss scaling), got device {str(device)!r}; use 'bf16' or 'fp32' "
                             "on CPU")
        self.name, self.device = precision, device
        self.dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        self.scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        if self.dtype is None:
            yield
            return
        with torch.autocast(device_type=self.device.type, dtype=self.dtype):
            yield

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()

    def skip(self) -> None:
        """A skipped step (non-finite gradient): the fp16 scaler halves its scale (its inf check was
        recorded by :meth:`unscale`)."""
        if self.scaler is not None and self.scaler._per_optimizer_states:
            # an AssertionError: no inf check was recorded (the loss itself was non-finite)
            with contextlib.suppress(AssertionError):
                self.scaler.update()

    def state_dict(self) -> dict[str, Any] | None:
        return dict(self.scaler.state_dict()) if self.scaler is not None else None

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
