"""Where local models run (``auto``, ``cpu``, ``cuda``, ``cuda:N``) and the dtype that goes with it.

Every command and class that runs a local model (``envkit eval``, ``envkit train``, ``HFPolicy``,
``GRPOTrainer``) takes the same ``device`` string and resolves it here: ``auto`` (the default)
is the first CUDA GPU when torch sees one, else the CPU; a CUDA device that is not there is an
error that says what was asked, what torch sees and how to fix it. The dtype ``auto`` is
bfloat16 on a GPU that supports it (float16 on older GPUs) and float32 on the CPU.

Example:
    >>> from envkit.devices import resolve_device, resolve_dtype
    >>> resolve_device("cpu")
    'cpu'
    >>> resolve_dtype("auto", "cpu")
    torch.float32
    >>> resolve_device("gpu")
    Traceback (most recent call last):
    ...
    ValueError: unknown device 'gpu': use 'auto', 'cpu', 'cuda' or 'cuda:N' (N = 0, 1, ...)
"""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "DEVICE_HELP",
    "DTYPES",
    "check_device_spec",
    "describe",
    "resolve_device",
    "resolve_dtype",
]

DEVICE_HELP = "auto (CUDA when available, else CPU), cpu, cuda or cuda:N"
DTYPES = ("auto", "float32", "bfloat16", "float16")
_SPEC = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def check_device_spec(device: str) -> str:
    """Checks the form of a device string (not whether the device exists); returns it.

    Raises:
        ValueError: not ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    """
    spec = str(device).strip().lower()
    if not _SPEC.match(spec):
        raise ValueError(
            f"unknown device {device!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N' (N = 0, 1, ...)"
        )
    return spec


def resolve_device(device: str | None = "auto") -> str:
    """The device to run on: ``"cpu"`` or ``"cuda:N"``.

    Args:
        device: ``"auto"`` (or ``None``), ``"cpu"``, ``"cuda"`` (the first GPU) or ``"cuda:N"``.

    Raises:
        ValueError: the string is not one of those forms.
        RuntimeError: a CUDA device was asked for that torch does not see.
    """
    import torch

    spec = check_device_spec(device or "auto")
    if spec == "cpu":
        return "cpu"
    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if spec == "auto":
        return "cuda:0" if available else "cpu"
    index = int(spec.split(":")[1]) if ":" in spec else 0
    if index >= available:
        raise RuntimeError(_missing_cuda_message(spec, available))
    return f"cuda:{index}"


def _missing_cuda_message(spec: str, available: int) -> str:
    import torch

    if available:
        names = ", ".join(f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(available))
        return (
            f"device={spec!r} was asked for, but torch sees {available} CUDA device(s): {names}. "
            "Pick one of those, or use device='auto'"
        )
    build = torch.version.cuda
    why = (
        f"torch {torch.__version__} is a CPU-only build"
        if build is None
        else f"torch {torch.__version__} (CUDA {build}) finds no GPU or driver"
    )
    fix = (
        "install a CUDA build of torch (https://pytorch.org/get-started/locally/)"
        if build is None
        else "check nvidia-smi and CUDA_VISIBLE_DEVICES"
    )
    return (
        f"device={spec!r} was asked for, but there is no CUDA device: {why}. "
        f"Use device='cpu' or 'auto' (--device cpu), or {fix}"
    )


def resolve_dtype(dtype: Any, device: str) -> Any:
    """The torch dtype of a model on ``device``.

    Args:
        dtype: ``"auto"``/``None`` (bfloat16 on CUDA, float16 on GPUs without bf16, float32 on
            CPU), a dtype name (``"bfloat16"``) or a ``torch.dtype``.
        device: A resolved device (``"cpu"``, ``"cuda:0"``).

    Raises:
        ValueError: an unknown dtype name.
    """
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        if not str(device).startswith("cuda"):
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    return getattr(torch, dtype)


def describe(model: Any) -> dict[str, str]:
    """``{"device": ..., "dtype": ...}`` of a torch model (as run summaries show them).

    Example:
        >>> import torch
        >>> describe(torch.nn.Linear(2, 2))
        {'device': 'cpu', 'dtype': 'float32'}
    """
    param = next(model.parameters())
    device = param.device
    text = str(device)
    if device.type == "cuda":
        import torch

        index = device.index if device.index is not None else torch.cuda.current_device()
        text = f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return {"device": text, "dtype": str(param.dtype).removeprefix("torch.")}
