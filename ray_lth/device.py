"""Device helpers: the precision a round computes in, and where the device is.

``precision`` "fp32" (the default) computes in float32 everywhere, as the authors' scripts;
"bf16" (opt-in) autocasts to bfloat16 and keeps weights and images channels-last on a GPU, which
is faster there (benchmarks/bf16_speedup.py) but no longer the authors' arithmetic. On the CPU
both are plain float32.
"""

import torch

PRECISIONS = ("fp32", "bf16")


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} is not allowed; choose one of {list(PRECISIONS)}")
    return precision


def uses_bf16(device: torch.device, precision: str) -> bool:
    """Whether a round on ``device`` autocasts to bf16 with channels-last: only on a GPU, only when asked."""
    return check_precision(precision) == "bf16" and device.type == "cuda"


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but torch sees no CUDA GPU")
    return device


def autocast(device: torch.device, precision: str = "fp32"):
    # bf16 needs no loss scaler, so the masked step stays a plain optimizer step
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=uses_bf16(device, precision))


def to_device_format(x: torch.Tensor, device: torch.device, precision: str = "fp32") -> torch.Tensor:
    # channels-last pays on GPU convolutions under bf16; fp32 keeps the authors' layout
    return x.contiguous(memory_format=torch.channels_last) if uses_bf16(device, precision) and x.dim() == 4 else x


def prepare_model(model: torch.nn.Module, device: torch.device, precision: str = "fp32") -> torch.nn.Module:
    """Move ``model`` to ``device``; channels-last weights under bf16 on a GPU, to match the inputs."""
    model.to(device)
    return model.to(memory_format=torch.channels_last) if uses_bf16(device, precision) else model


def use_cpus(cpus) -> int:
    """Set torch's intra-op threads to the CPUs this process holds (at least one) and return them.
    Ray sets OMP_NUM_THREADS for its workers, but torch reads it once, when first imported: a
    worker that imported torch before (a worker setup hook does) would run one thread per core of
    the machine, and trials sharing the cores would oversubscribe them (measured here: a round of
    the default sweep 54 s instead of 5 s with two 2-thread trials on 2 cores)."""
    if cpus is not None:
        torch.set_num_threads(max(1, int(cpus)))
    return torch.get_num_threads()
