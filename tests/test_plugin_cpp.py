"""The C++ plugin against a stand-in NvInfer.h written from the TensorRT 8.2 / 10.x API (no TensorRT here).

What this proves: the plugin overrides exactly the IPluginV2DynamicExt / IPluginCreator signatures as we read them
from the TensorRT headers, compiles with int32 (8.x) and int64 (10.x) Dims, registers through
REGISTER_TENSORRT_PLUGIN, validates its fields, and round-trips its serialization. What it cannot prove: that the
real headers agree with the stand-in; scripts/build_plugin.sh on a Jetson is the real check.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jetson_detect.plugin import PLUGIN_DIR

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "build_plugin.sh"

STAND_IN_NVINFER_H = r"""#pragma once
#include <cstddef>
#include <cstdint>
#include <cuda_runtime_api.h>
namespace nvinfer1 {
using AsciiChar = char;
using DimT = STUB_DIM_T;
enum class DataType : int32_t { kFLOAT = 0, kHALF = 1, kINT8 = 2, kINT32 = 3, kBOOL = 4 };
enum class TensorFormat : int32_t { kLINEAR = 0, kCHW2 = 1, kHWC8 = 2 };
using PluginFormat = TensorFormat;
class Dims {
  public:
    static constexpr int32_t MAX_DIMS = 8;
    int32_t nbDims;
    DimT d[MAX_DIMS];
};
class IDimensionExpr {
  public:
    virtual bool isConstant() const noexcept = 0;

  protected:
    virtual ~IDimensionExpr() noexcept = default;
};
class IExprBuilder {
  public:
    virtual IDimensionExpr const *constant(DimT value) noexcept = 0;

  protected:
    virtual ~IExprBuilder() noexcept = default;
};
class DimsExprs {
  public:
    int32_t nbDims;
    IDimensionExpr const *d[Dims::MAX_DIMS];
};
struct PluginTensorDesc {
    Dims dims;
    DataType type;
    TensorFormat format;
    float scale;
};
struct DynamicPluginTensorDesc {
    PluginTensorDesc desc;
    Dims min;
    Dims max;
};
enum class PluginFieldType : int32_t {
    kFLOAT16 = 0,
    kFLOAT32 = 1,
    kFLOAT64 = 2,
    kINT8 = 3,
    kINT16 = 4,
    kINT32 = 5,
    kCHAR = 6,
    kDIMS = 7,
    kUNKNOWN = 8
};
class PluginField {
  public:
    AsciiChar const *name;
    void const *data;
    PluginFieldType type;
    int32_t length;
    PluginField(AsciiChar const *const name_ = nullptr, void const *const data_ = nullptr,
                PluginFieldType const type_ = PluginFieldType::kUNKNOWN, int32_t const length_ = 0) noexcept
        : name(name_), data(data_), type(type_), length(length_) {}
};
struct PluginFieldCollection {
    int32_t nbFields;
    PluginField const *fields;
};
class IPluginV2 {
  public:
    virtual int32_t getTensorRTVersion() const noexcept { return 0; }
    virtual AsciiChar const *getPluginType() const noexcept = 0;
    virtual AsciiChar const *getPluginVersion() const noexcept = 0;
    virtual int32_t getNbOutputs() const noexcept = 0;
    virtual Dims getOutputDimensions(int32_t index, Dims const *inputs, int32_t nbInputDims) noexcept = 0;
    virtual bool supportsFormat(DataType type, PluginFormat format) const noexcept = 0;
    virtual void configureWithFormat(Dims const *, int32_t, Dims const *, int32_t, DataType, PluginFormat,
                                     int32_t) noexcept {}
    virtual int32_t initialize() noexcept = 0;
    virtual void terminate() noexcept = 0;
    virtual size_t getWorkspaceSize(int32_t maxBatchSize) const noexcept = 0;
    virtual int32_t enqueue(int32_t batchSize, void const *const *inputs, void *const *outputs,
                            void *workspace, cudaStream_t stream) noexcept = 0;
    virtual size_t getSerializationSize() const noexcept = 0;
    virtual void serialize(void *buffer) const noexcept = 0;
    virtual void destroy() noexcept = 0;
    virtual IPluginV2 *clone() const noexcept = 0;
    virtual void setPluginNamespace(AsciiChar const *pluginNamespace) noexcept = 0;
    virtual AsciiChar const *getPluginNamespace() const noexcept = 0;

  protected:
    virtual ~IPluginV2() noexcept = default;
};
class IPluginV2Ext : public IPluginV2 {
  public:
    virtual DataType getOutputDataType(int32_t index, DataType const *inputTypes,
                                       int32_t nbInputs) const noexcept = 0;
    virtual bool isOutputBroadcastAcrossBatch(int32_t, bool const *, int32_t) const noexcept = 0;
    virtual bool canBroadcastInputAcrossBatch(int32_t) const noexcept = 0;
    virtual void configurePlugin(Dims const *, int32_t, Dims const *, int32_t, DataType const *,
                                 DataType const *, bool const *, bool const *, PluginFormat,
                                 int32_t) noexcept = 0;
    virtual void detachFromContext() noexcept {}
    IPluginV2Ext *clone() const noexcept override = 0;

  private:
    void configureWithFormat(Dims const *, int32_t, Dims const *, int32_t, DataType, PluginFormat,
                             int32_t) noexcept override final {}
};
class IPluginV2DynamicExt : public IPluginV2Ext {
  public:
    IPluginV2DynamicExt *clone() const noexcept override = 0;
    virtual DimsExprs getOutputDimensions(int32_t outputIndex, DimsExprs const *inputs, int32_t nbInputs,
                                          IExprBuilder &exprBuilder) noexcept = 0;
    virtual bool supportsFormatCombination(int32_t pos, PluginTensorDesc const *inOut, int32_t nbInputs,
                                           int32_t nbOutputs) noexcept = 0;
    virtual void configurePlugin(DynamicPluginTensorDesc const *in, int32_t nbInputs,
                                 DynamicPluginTensorDesc const *out, int32_t nbOutputs) noexcept = 0;
    virtual size_t getWorkspaceSize(PluginTensorDesc const *inputs, int32_t nbInputs,
                                    PluginTensorDesc const *outputs, int32_t nbOutputs) const noexcept = 0;
    virtual int32_t enqueue(PluginTensorDesc const *inputDesc, PluginTensorDesc const *outputDesc,
                            void const *const *inputs, void *const *outputs, void *workspace,
                            cudaStream_t stream) noexcept = 0;

  private:
    void configurePlugin(Dims const *, int32_t, Dims const *, int32_t, DataType const *, DataType const *,
                         bool const *, bool const *, PluginFormat, int32_t) noexcept override final {}
    bool supportsFormat(DataType, PluginFormat) const noexcept override final { return false; }
    Dims getOutputDimensions(int32_t, Dims const *, int32_t) noexcept override final { return Dims{-1, {}}; }
    bool isOutputBroadcastAcrossBatch(int32_t, bool const *, int32_t) const noexcept override final {
        return false;
    }
    bool canBroadcastInputAcrossBatch(int32_t) const noexcept override final { return true; }
    size_t getWorkspaceSize(int32_t) const noexcept override final { return 0; }
    int32_t enqueue(int32_t, void const *const *, void *const *, void *,
                    cudaStream_t) noexcept override final {
        return 1;
    }

  protected:
    ~IPluginV2DynamicExt() noexcept override = default;
};
class IPluginCreator {
  public:
    virtual AsciiChar const *getPluginName() const noexcept = 0;
    virtual AsciiChar const *getPluginVersion() const noexcept = 0;
    virtual PluginFieldCollection const *getFieldNames() noexcept = 0;
    virtual IPluginV2 *createPlugin(AsciiChar const *name, PluginFieldCollection const *fc) noexcept = 0;
    virtual IPluginV2 *deserializePlugin(AsciiChar const *name, void const *serialData,
                                         size_t serialLength) noexcept = 0;
    virtual void setPluginNamespace(AsciiChar const *pluginNamespace) noexcept = 0;
    virtual AsciiChar const *getPluginNamespace() const noexcept = 0;
    virtual ~IPluginCreator() = default;
};
class IPluginRegistry {
  public:
    virtual bool registerCreator(IPluginCreator &creator, AsciiChar const *pluginNamespace) noexcept = 0;
};
} // namespace nvinfer1
extern "C" nvinfer1::IPluginRegistry *getPluginRegistry() noexcept;
namespace nvinfer1 {
template <typename T> class PluginRegistrar {
  public:
    PluginRegistrar() { getPluginRegistry()->registerCreator(instance, ""); }

  private:
    T instance{};
};
} // namespace nvinfer1
#define REGISTER_TENSORRT_PLUGIN(name)                                                                       \
    static nvinfer1::PluginRegistrar<name> pluginRegistrar##name {}
"""

DRIVER_CPP = r"""#include "yolo_decode_nms_plugin.h"
#include <cstdio>
#include <cstring>
#include <vector>
using namespace nvinfer1;
struct Expr : IDimensionExpr {
    long long v;
    explicit Expr(long long x) : v(x) {}
    bool isConstant() const noexcept override { return true; }
};
struct Builder : IExprBuilder {
    std::vector<Expr *> made;
    IDimensionExpr const *constant(DimT value) noexcept override {
        made.push_back(new Expr(value));
        return made.back();
    }
};
struct Registry : IPluginRegistry {
    IPluginCreator *creator = nullptr;
    bool registerCreator(IPluginCreator &c, AsciiChar const *) noexcept override {
        creator = &c;
        return true;
    }
};
static Registry gRegistry;
extern "C" IPluginRegistry *getPluginRegistry() noexcept {
    return &gRegistry;
}
static int gLastBatch, gLastHalf, gLastH[4], gLastW[4];
extern "C" size_t ydnWorkspaceSize(int batch, int positions, int k) {
    return (size_t)batch * 1000000 + positions * 10 + k % 10;
}
extern "C" int ydnEnqueue(const YdnParams *p, int batch, const int *h, const int *w, const void *const *,
                          int half, int *, float *, float *, int *, void *, cudaStream_t) {
    gLastBatch = batch;
    gLastHalf = half;
    for (int l = 0; l < p->num_levels; ++l) {
        gLastH[l] = h[l];
        gLastW[l] = w[l];
    }
    return 0;
}
extern "C" const char *cudaGetErrorString(cudaError_t) {
    return "stub";
}
int main() {
    IPluginCreator *c = gRegistry.creator;
    printf("registered %d name %s version %s fields %d\n", c != nullptr, c->getPluginName(),
           c->getPluginVersion(), c->getFieldNames()->nbFields);
    int32_t nc = 80, na = 3, ih = 640, iw = 640, md = 300, ag = 0, k = 4096;
    float anchors[18] = {10, 13, 16, 30, 33, 23, 30, 61, 62, 45, 59, 119, 116, 90, 156, 198, 373, 326};
    float strides[3] = {8, 16, 32};
    float conf = 0.25f, iou = 0.45f;
    std::vector<PluginField> f = {PluginField("nc", &nc, PluginFieldType::kINT32, 1),
                                  PluginField("num_anchors", &na, PluginFieldType::kINT32, 1),
                                  PluginField("anchors", anchors, PluginFieldType::kFLOAT32, 18),
                                  PluginField("strides", strides, PluginFieldType::kFLOAT32, 3),
                                  PluginField("input_h", &ih, PluginFieldType::kINT32, 1),
                                  PluginField("input_w", &iw, PluginFieldType::kINT32, 1),
                                  PluginField("conf_thres", &conf, PluginFieldType::kFLOAT32, 1),
                                  PluginField("iou_thres", &iou, PluginFieldType::kFLOAT32, 1),
                                  PluginField("max_det", &md, PluginFieldType::kINT32, 1),
                                  PluginField("class_agnostic", &ag, PluginFieldType::kINT32, 1),
                                  PluginField("pre_nms_top_k", &k, PluginFieldType::kINT32, 1)};
    PluginFieldCollection fc{(int32_t)f.size(), f.data()};
    IPluginV2DynamicExt *p = static_cast<IPluginV2DynamicExt *>(c->createPlugin("n", &fc));
    printf("created %d type %s outputs %d\n", p != nullptr, p->getPluginType(), p->getNbOutputs());
    std::vector<char> blob(p->getSerializationSize());
    p->serialize(blob.data());
    IPluginV2DynamicExt *q =
        static_cast<IPluginV2DynamicExt *>(c->deserializePlugin("n", blob.data(), blob.size()));
    std::vector<char> blob2(q->getSerializationSize());
    q->serialize(blob2.data());
    printf("roundtrip %d size %zu\n", blob == blob2, blob.size());
    printf("truncated %d\n", c->deserializePlugin("n", blob.data(), blob.size() - 1) != nullptr);
    int32_t bad_nc = 0;
    f[0] = PluginField("nc", &bad_nc, PluginFieldType::kINT32, 1);
    printf("bad_nc %d\n", c->createPlugin("n", &fc) != nullptr);
    f[0] = PluginField("nc", &nc, PluginFieldType::kFLOAT32, 1);
    printf("wrong_type %d\n", c->createPlugin("n", &fc) != nullptr);
    f[0] = PluginField("nc", &nc, PluginFieldType::kINT32, 1);
    f[2] = PluginField("anchors", anchors, PluginFieldType::kFLOAT32, 17);
    printf("short_anchors %d\n", c->createPlugin("n", &fc) != nullptr);
    f[2] = PluginField("anchors", anchors, PluginFieldType::kFLOAT32, 18);
    Builder b;
    Expr batch(2);
    DimsExprs in[3];
    for (auto &e : in) {
        e.nbDims = 4;
        for (int i = 0; i < 4; ++i)
            e.d[i] = &batch;
    }
    for (int o = 0; o < 4; ++o) {
        DimsExprs d = q->getOutputDimensions(o, in, 3, b);
        printf("out%d", o);
        for (int i = 0; i < d.nbDims; ++i)
            printf(" %lld", static_cast<Expr const *>(d.d[i])->v);
        printf("\n");
    }
    PluginTensorDesc io[7];
    int sizes[3] = {80, 40, 20};
    for (int i = 0; i < 3; ++i) {
        io[i].dims.nbDims = 4;
        io[i].dims.d[0] = 2;
        io[i].dims.d[1] = 255;
        io[i].dims.d[2] = sizes[i];
        io[i].dims.d[3] = sizes[i];
        io[i].format = TensorFormat::kLINEAR;
        io[i].type = DataType::kHALF;
    }
    DataType outs[4] = {DataType::kINT32, DataType::kFLOAT, DataType::kFLOAT, DataType::kINT32};
    for (int i = 0; i < 4; ++i) {
        io[3 + i].type = outs[i];
        io[3 + i].format = TensorFormat::kLINEAR;
    }
    int ok = 1;
    for (int pos = 0; pos < 7; ++pos)
        ok &= q->supportsFormatCombination(pos, io, 3, 4);
    printf("formats_half %d\n", ok);
    io[1].type = DataType::kFLOAT;
    printf("mixed_input_types %d\n", q->supportsFormatCombination(1, io, 3, 4));
    io[1].type = DataType::kHALF;
    io[0].type = DataType::kINT8;
    printf("int8_input %d\n", q->supportsFormatCombination(0, io, 3, 4));
    io[0].type = DataType::kHALF;
    io[4].type = DataType::kHALF;
    printf("half_boxes %d\n", q->supportsFormatCombination(4, io, 3, 4));
    io[4].type = DataType::kFLOAT;
    printf("dtypes %d %d %d %d\n", (int)q->getOutputDataType(0, nullptr, 3),
           (int)q->getOutputDataType(1, nullptr, 3), (int)q->getOutputDataType(2, nullptr, 3),
           (int)q->getOutputDataType(3, nullptr, 3));
    printf("workspace %zu\n", q->getWorkspaceSize(io, 3, io + 3, 4));
    void const *ins[3] = {nullptr, nullptr, nullptr};
    void *os[4] = {nullptr, nullptr, nullptr, nullptr};
    int rc = q->enqueue(io, io + 3, ins, os, nullptr, nullptr);
    printf("enqueue %d batch %d half %d hw %d %d %d %d %d %d\n", rc, gLastBatch, gLastHalf, gLastH[0],
           gLastW[0], gLastH[1], gLastW[1], gLastH[2], gLastW[2]);
    IPluginV2DynamicExt *r = q->clone();
    r->setPluginNamespace("ns");
    printf("clone %d ns %s\n", r != nullptr, r->getPluginNamespace());
    p->destroy();
    q->destroy();
    r->destroy();
    return 0;
}
"""

STAND_IN_CUDA_RUNTIME_API_H = r"""#pragma once
typedef struct CUstream_st* cudaStream_t;
typedef enum cudaError_enum_stand_in { cudaSuccess = 0 } cudaError_t;
extern "C" const char* cudaGetErrorString(cudaError_t error);
"""

FAKE_NVINFER_CPP = r"""#include <NvInfer.h>
#include <cstdio>
struct Registry : nvinfer1::IPluginRegistry {
    int n = 0;
    bool registerCreator(nvinfer1::IPluginCreator &c, nvinfer1::AsciiChar const *) noexcept override {
        ++n;
        std::printf("registered %s v%s\n", c.getPluginName(), c.getPluginVersion());
        return true;
    }
};
static Registry registry;
extern "C" nvinfer1::IPluginRegistry *getPluginRegistry() noexcept {
    return &registry;
}
extern "C" int fake_registered_count() {
    return registry.n;
}
"""

EXPECTED_DRIVER_LINES = [
    "registered 1 name YoloDecodeNMS version 1 fields 11",
    "created 1 type YoloDecodeNMS outputs 4",
    "roundtrip 1 size 136",
    "truncated 0",
    "bad_nc 0",
    "wrong_type 0",
    "short_anchors 0",
    "out0 2 1",
    "out1 2 300 4",
    "out2 2 300",
    "out3 2 300",
    "formats_half 1",
    "mixed_input_types 0",
    "int8_input 0",
    "half_boxes 0",
    "dtypes 3 0 0 3",
    "workspace 2252006",
    "enqueue 0 batch 2 half 1 hw 80 80 40 40 20 20",
    "clone 1 ns ns",
]


@pytest.fixture(scope="module")
def toolchain(tmp_path_factory):
    gxx = shutil.which("g++")
    if not gxx:
        pytest.skip("g++ not installed")
    cuda_include = tmp_path_factory.mktemp("stand_in_cuda")
    (cuda_include / "cuda_runtime_api.h").write_text(STAND_IN_CUDA_RUNTIME_API_H)
    return gxx, str(cuda_include)


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stand_in")
    (folder / "NvInfer.h").write_text(STAND_IN_NVINFER_H)
    return folder


@pytest.mark.parametrize("dim_type", ["int32_t", "int64_t"])
def test_plugin_compiles_with_both_dims_widths(toolchain, stand_in, dim_type):
    gxx, cuda_include = toolchain
    proc = subprocess.run([gxx, "-std=c++14", "-fsyntax-only", "-Wall", "-Wextra", "-Werror",
                           "-DSTUB_DIM_T=" + dim_type, "-I", str(stand_in), "-I", str(PLUGIN_DIR), "-I", cuda_include,
                           str(PLUGIN_DIR / "yolo_decode_nms_plugin.cpp")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("dim_type", ["int32_t", "int64_t"])
def test_plugin_behaviour_through_the_tensorrt_interfaces(toolchain, stand_in, tmp_path, dim_type):
    gxx, cuda_include = toolchain
    driver = tmp_path / "driver.cpp"
    driver.write_text(DRIVER_CPP)
    exe = tmp_path / "driver"
    build = subprocess.run([gxx, "-std=c++14", "-DSTUB_DIM_T=" + dim_type, "-I", str(stand_in), "-I",
                            str(PLUGIN_DIR), "-I", cuda_include, str(driver),
                            str(PLUGIN_DIR / "yolo_decode_nms_plugin.cpp"), "-o", str(exe)],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == EXPECTED_DRIVER_LINES


def test_build_script_builds_a_library_that_registers_on_load(toolchain, stand_in, tmp_path):
    gxx, cuda_include = toolchain
    nvcc = shutil.which("nvcc")
    if not nvcc:
        pytest.skip("nvcc not installed")
    trt = tmp_path / "trt"
    (trt / "include").mkdir(parents=True)
    (trt / "lib").mkdir()
    (trt / "include" / "NvInfer.h").write_text(STAND_IN_NVINFER_H)
    fake = tmp_path / "fake_nvinfer.cpp"
    fake.write_text(FAKE_NVINFER_CPP)
    subprocess.run([gxx, "-std=c++14", "-shared", "-fPIC", "-DSTUB_DIM_T=int64_t", "-I", str(trt / "include"),
                    "-I", cuda_include, str(fake), "-o", str(trt / "lib" / "libnvinfer.so")], check=True)
    output = tmp_path / "out" / "libyolo_decode_nms.so"
    env = dict(PATH="/usr/local/bin:/usr/bin:/bin", HOME=str(tmp_path), NVCC=nvcc, CUDA_ARCH="75",
               TENSORRT_ROOT=str(trt), OUTPUT=str(output), NVCC_APPEND_FLAGS="-DSTUB_DIM_T=int64_t")
    build = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env)
    assert build.returncode == 0, build.stderr
    probe = "import ctypes; ctypes.CDLL({!r}); print(ctypes.CDLL('libnvinfer.so').fake_registered_count())"
    load = subprocess.run([sys.executable, "-c", probe.format(str(output))], capture_output=True, text=True,
                          env=dict(env, LD_LIBRARY_PATH=str(trt / "lib")))
    # The registrar's printf and Python's print reach stdout in either order.
    assert set(load.stdout.splitlines()) == {"registered YoloDecodeNMS v1", "1"}, load.stderr
