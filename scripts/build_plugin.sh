#!/usr/bin/env bash
# Build jetson_detect/plugin/libyolo_decode_nms.so (the YoloDecodeNMS TensorRT plugin) for this machine's GPU.
#
#   scripts/build_plugin.sh            # finds nvcc, TensorRT and the GPU architecture itself
#
# Overrides: NVCC=/path/to/nvcc, TENSORRT_ROOT=/opt/TensorRT (include/ and lib/ inside), CUDA_ARCH=53,
# OUTPUT=/path/to/libyolo_decode_nms.so. Jetson defaults: /usr/local/cuda/bin/nvcc, headers in
# /usr/include/aarch64-linux-gnu, libraries in /usr/lib/aarch64-linux-gnu.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
plugin_dir="$here/jetson_detect/plugin"
output="${OUTPUT:-$plugin_dir/libyolo_decode_nms.so}"

fail() {
    echo "build_plugin: $*" >&2
    exit 1
}

nvcc="${NVCC:-}"
if [[ -z "$nvcc" ]]; then
    nvcc="$(command -v nvcc || true)"
    [[ -z "$nvcc" && -x /usr/local/cuda/bin/nvcc ]] && nvcc=/usr/local/cuda/bin/nvcc
fi
[[ -n "$nvcc" && -x "$nvcc" ]] || fail "nvcc not found: install the CUDA toolkit (JetPack: sudo apt install nvidia-jetpack, or cuda-toolkit-10-2 on the Nano), or set NVCC=/path/to/nvcc"

include_dirs=()
lib_dirs=()
[[ -n "${TENSORRT_ROOT:-}" ]] && include_dirs+=("$TENSORRT_ROOT/include") && lib_dirs+=("$TENSORRT_ROOT/lib")
include_dirs+=(/usr/include/aarch64-linux-gnu /usr/include/x86_64-linux-gnu /usr/include /usr/local/TensorRT/include /opt/tensorrt/include)
lib_dirs+=(/usr/lib/aarch64-linux-gnu /usr/lib/x86_64-linux-gnu /usr/local/TensorRT/lib /opt/tensorrt/lib)

trt_include=""
for d in "${include_dirs[@]}"; do
    if [[ -f "$d/NvInfer.h" ]]; then trt_include="$d"; break; fi
done
[[ -n "$trt_include" ]] || fail "TensorRT headers (NvInfer.h) not found in ${include_dirs[*]}: on Jetson install libnvinfer-dev (JetPack), on x86 unpack the TensorRT tar and set TENSORRT_ROOT"

trt_lib=""
for d in "${lib_dirs[@]}"; do
    if compgen -G "$d/libnvinfer.so*" > /dev/null; then trt_lib="$d"; break; fi
done
[[ -n "$trt_lib" ]] || fail "libnvinfer.so not found in ${lib_dirs[*]}: install TensorRT (libnvinfer8 / libnvinfer10) or set TENSORRT_ROOT"

arch="${CUDA_ARCH:-}"
if [[ -z "$arch" && -r /proc/device-tree/compatible ]]; then
    compatible="$(tr '\0' ' ' < /proc/device-tree/compatible)"
    case "$compatible" in
        *tegra210*) arch=53 ;;   # Nano, TX1
        *tegra186*) arch=62 ;;   # TX2
        *tegra194*) arch=72 ;;   # Xavier
        *tegra234*) arch=87 ;;   # Orin
    esac
fi
if [[ -z "$arch" ]] && command -v nvidia-smi > /dev/null; then
    arch="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2> /dev/null | head -n1 | tr -d '. ')"
fi
[[ "$arch" =~ ^[0-9]+$ ]] || fail "cannot tell this GPU's architecture: set CUDA_ARCH (53 Nano, 62 TX2, 72 Xavier, 87 Orin, 86 RTX 30xx ...)"

nvcc_version="$("$nvcc" --version | sed -n 's/.*release \([0-9]*\)\..*/\1/p')"
std=c++17
[[ -n "$nvcc_version" && "$nvcc_version" -lt 11 ]] && std=c++14

mkdir -p "$(dirname "$output")"
# Both plugin classes are compiled: NV_TENSORRT_MAJOR in the headers keeps the V2 one (8.x) or the V3 one (10/11).
cmd=("$nvcc" -O3 -std="$std" -shared -Xcompiler -fPIC
     -gencode "arch=compute_$arch,code=sm_$arch"
     -I "$plugin_dir" -I "$trt_include"
     "$plugin_dir/yolo_decode_nms_launch.cu" "$plugin_dir/yolo_decode_nms_config.cpp"
     "$plugin_dir/yolo_decode_nms_tensors.cpp" "$plugin_dir/yolo_decode_nms_plugin.cpp"
     "$plugin_dir/yolo_decode_nms_plugin_v3.cpp"
     -L "$trt_lib" -lnvinfer -o "$output")
echo "${cmd[*]}"
"${cmd[@]}"
echo "built $output for sm_$arch (TensorRT headers $trt_include, nvcc $nvcc_version)"
