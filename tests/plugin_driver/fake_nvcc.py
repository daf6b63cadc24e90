"""An ``nvcc`` stand-in for scripts/build_plugin.sh where CUDA is not installed: it answers ``--version`` with
$FAKE_NVCC_RELEASE and builds the same library with g++, the .cu launchers replaced by stub_cuda.cpp (kernels
cannot be compiled here; tests/test_plugin_kernels_nvrtc.py compiles them with NVRTC).

It checks what the script asks nvcc for (sources, include and library folders, -lnvinfer); nvcc's own flags
(-gencode, -O3) are dropped.
"""

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv):
    if argv == ["--version"]:
        print("Cuda compilation tools, release {0}, V{0}.0".format(os.environ.get("FAKE_NVCC_RELEASE", "12.9")))
        return 0
    args = ["g++", "-fPIC", "-I", str(HERE)]
    for folder in os.environ["FAKE_NVCC_CUDA_INCLUDES"].split(os.pathsep):
        args += ["-isystem", folder]
    it = iter(argv)
    for arg in it:
        if arg == "-gencode":
            next(it)
        elif arg == "-Xcompiler":
            args += next(it).split(",")
        elif arg.endswith(".cu"):
            args.append(str(HERE / "stub_cuda.cpp"))
        elif arg != "-O3":
            args.append(arg)
    return subprocess.call(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
