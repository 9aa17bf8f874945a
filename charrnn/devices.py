"""Which device and which arithmetic a run uses.

"auto" prefers a CUDA GPU, then Apple's MPS, then the CPU. bf16 autocast is used where it is
fast: on CUDA GPUs with bf16 support, and on CPUs with AVX-512 BF16 or AMX instructions (there
a bf16 matmul runs about twice as fast as fp32). Elsewhere it stays fp32.
"""

import functools
import logging

import torch

log = logging.getLogger(__name__)


def pick_device(name: str = "auto") -> torch.device:
    """The torch device for a config value; a clear ValueError if it is not available."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda was asked for, but no CUDA GPU is available: use cpu or auto")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device mps was asked for, but MPS is not available: use cpu or auto")
    return torch.device(name)


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """True when this CPU has native bf16 matmul instructions (AVX-512 BF16 or AMX)."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def use_bf16(precision: str, device: torch.device) -> bool:
    """Whether a run with this precision setting should autocast its matmuls to bf16."""
    if precision == "fp32":
        return False
    if precision == "bf16":
        return True
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_fast_bf16()


def describe(device: torch.device) -> str:
    """A short human name: 'CPU (2 threads)' or 'CUDA: NVIDIA H200'."""
    if device.type == "cuda":
        return f"CUDA: {torch.cuda.get_device_name(device)}"
    if device.type == "mps":
        return "Apple MPS"
    return f"CPU ({torch.get_num_threads()} threads)"
