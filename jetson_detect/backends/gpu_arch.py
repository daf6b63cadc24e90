"""The GPU architectures jetson_detect meets, in one table: compute capability, the compiler's name for it, the
Jetson boards that have it, and whether TensorRT runs INT8 there.

``doctor`` (what a board can do), the builder (refusing INT8) and the CUDA memory implementations (compiling the
pre-processing kernel) all read it, so they cannot disagree. INT8 needs DP4A, i.e. compute capability 6.1 or newer,
except the Jetson TX2's 6.2 (NVIDIA forum staff: "TX2 doesn't support INT8", forums.developer.nvidia.com thread
55481; TRT_COMPAT.md §6).
"""

from typing import NamedTuple, Optional, Tuple

INT8_MIN_COMPUTE_CAPABILITY = (6, 1)


class GpuArch(NamedTuple):
    """One architecture row."""

    compute_capability: Tuple[int, int]
    jetson_boards: Tuple[str, ...]  # lower-case words of the device-tree model that name the board
    int8: bool


ARCHITECTURES = (
    GpuArch((5, 3), ("nano", "tx1"), False),  # Maxwell: the Jetson Nano and TX1
    GpuArch((6, 2), ("tx2",), False),  # Pascal without DP4A
    GpuArch((7, 2), ("xavier",), True),
    GpuArch((8, 7), ("orin",), True),
)


def arch_name(compute_capability: Tuple[int, int]) -> str:
    """The compiler's name for a compute capability: (5, 3) → "sm_53"."""
    return "sm_{}{}".format(compute_capability[0], compute_capability[1])


def int8_supported(compute_capability: Tuple[int, int]) -> bool:
    """Whether TensorRT has fast INT8 on this GPU."""
    for arch in ARCHITECTURES:
        if arch.compute_capability == tuple(compute_capability):
            return arch.int8
    return tuple(compute_capability) >= INT8_MIN_COMPUTE_CAPABILITY


def jetson_compute_capability(model: str) -> Optional[Tuple[int, int]]:
    """The compute capability of the Jetson board named by a device-tree model string, or None."""
    words = model.lower()
    for arch in ARCHITECTURES:
        if any(board in words for board in arch.jetson_boards):
            return arch.compute_capability
    return None
