"""Device helpers: bf16 autocast and channels-last on a GPU, plain fp32 on the CPU."""

import torch


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but torch sees no CUDA GPU")
    return device


def autocast(device: torch.device):
    # bf16 needs no loss scaler, so the masked step stays a plain optimizer step
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def to_device_format(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    # channels-last pays on GPU convolutions; on the CPU it brings nothing for these models
    return x.contiguous(memory_format=torch.channels_last) if device.type == "cuda" and x.dim() == 4 else x


def prepare_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Move ``model`` to ``device``; channels-last weights on a GPU to match the inputs."""
    model.to(device)
    return model.to(memory_format=torch.channels_last) if device.type == "cuda" else model
