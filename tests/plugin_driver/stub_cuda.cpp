// Stand-ins for the CUDA symbols the plugin's host code imports (the launchers in yolo_decode_nms_launch.cu and
// cudaGetErrorString), so the plugin links and runs without CUDA; they record what the plugin asked for.
#include "stub_nvinfer.h"

#include "yolo_decode_nms_launch.h"

namespace
{
StubLaunch gLaunch{};
int gStatus = 0;
} // namespace

extern "C" StubLaunch const* stubLastLaunch()
{
    return &gLaunch;
}

extern "C" void stubSetEnqueueStatus(int status)
{
    gStatus = status;
}

extern "C" size_t ydnWorkspaceSize(int batch, int num_positions, int pre_nms_top_k)
{
    gLaunch.ws_batch = batch;
    gLaunch.ws_positions = num_positions;
    gLaunch.ws_top_k = pre_nms_top_k;
    return static_cast<size_t>(batch) * 1000000000u + static_cast<size_t>(num_positions) * 10000u
        + static_cast<size_t>(pre_nms_top_k);
}

extern "C" int ydnEnqueue(const YdnParams* params, int batch, const int* heights, const int* widths,
    const void* const* heads, int heads_are_half, int* out_num, float* out_boxes, float* out_scores, int* out_classes,
    void* workspace, cudaStream_t stream)
{
    (void) heads;
    (void) out_num;
    (void) out_boxes;
    (void) out_scores;
    (void) out_classes;
    (void) workspace;
    (void) stream;
    ++gLaunch.calls;
    gLaunch.batch = batch;
    gLaunch.num_levels = params->num_levels;
    for (int l = 0; l < params->num_levels && l < 4; ++l)
    {
        gLaunch.heights[l] = heights[l];
        gLaunch.widths[l] = widths[l];
    }
    gLaunch.heads_are_half = heads_are_half;
    gLaunch.max_det = params->max_det;
    return gStatus;
}

extern "C" const char* cudaGetErrorString(cudaError_t error)
{
    return error == cudaSuccess ? "no error" : "stub CUDA error";
}
