// What the stub libnvinfer (stub_nvinfer.cpp) and the stub CUDA library (stub_cuda.cpp) give the driver besides
// the real TensorRT API: counters, a constant-folding IExprBuilder, and the last launch the plugin asked for.
#pragma once

#include <NvInfer.h>

#include <cstddef>
#include <cstdint>
#include <utility>

namespace stub
{

// IDimensionExpr::getConstantValue()'s type: int32_t on TensorRT 8.x, int64_t on 10/11.
using DimValue = decltype(std::declval<nvinfer1::IDimensionExpr const&>().getConstantValue());

// Creators registered through getPluginRegistry(), over the whole process.
int registeredCount();

// A real nvinfer1::IExprBuilder whose apiv::VExprBuilder folds constants; the expressions it makes live as long as
// the builder does.
nvinfer1::IExprBuilder& exprBuilder();
// A constant expression made by exprBuilder().
nvinfer1::IDimensionExpr const* constant(DimValue value);

} // namespace stub

extern "C" {

// The arguments of the last ydnEnqueue / ydnWorkspaceSize call.
struct StubLaunch
{
    int calls;
    int batch;
    int num_levels;
    int heights[4];
    int widths[4];
    int heads_are_half;
    int max_det;
    int ws_batch;
    int ws_positions;
    int ws_top_k;
};
StubLaunch const* stubLastLaunch();
// The cudaError_t value the next ydnEnqueue returns.
void stubSetEnqueueStatus(int status);
}
