// Host-side launchers of the YoloDecodeNMS kernels: plain C types only, no TensorRT, so the TensorRT plugin, a
// ctypes harness and tests can all call the same enqueue path.
#ifndef JETSON_DETECT_YOLO_DECODE_NMS_LAUNCH_H
#define JETSON_DETECT_YOLO_DECODE_NMS_LAUNCH_H

#include <cuda_runtime_api.h>
#include <stddef.h>

#define YDN_MAX_LEVELS 4
#define YDN_MAX_ANCHORS_PER_LEVEL 4

#ifdef __cplusplus
extern "C" {
#endif

// Everything the kernels need besides the tensors; mirrors jetson_detect.model.decode_nms.DecodeNMSParams.
typedef struct YdnParams
{
    int num_levels;
    int num_anchors;
    int num_classes;
    float anchors[YDN_MAX_LEVELS][YDN_MAX_ANCHORS_PER_LEVEL][2];
    float strides[YDN_MAX_LEVELS];
    float conf_thres;
    float iou_thres;
    int max_det;
    int class_agnostic;
    int pre_nms_top_k;
} YdnParams;

// Bytes of scratch memory ydnEnqueue needs for `batch` images of `num_positions` anchor positions.
size_t ydnWorkspaceSize(int batch, int num_positions, int pre_nms_top_k);

// Decode + NMS on `stream`. heads[l] is (batch, na*(5+nc), heights[l], widths[l]), float32 or float16.
// Outputs: out_num (batch,), out_boxes (batch, max_det, 4), out_scores (batch, max_det), out_classes
// (batch, max_det); rows past out_num are zero. Returns a cudaError_t value (0 on success); allocates nothing.
int ydnEnqueue(const YdnParams* params, int batch, const int* heights, const int* widths, const void* const* heads,
    int heads_are_half, int* out_num, float* out_boxes, float* out_scores, int* out_classes, void* workspace,
    cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
