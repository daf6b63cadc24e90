// What the YoloDecodeNMS plugin says about tensors (output shapes and types, formats, workspace) and its enqueue,
// written once for the V2 (TensorRT 8.x) and V3 (TensorRT 10/11) plugin classes, which only forward here.
//
// One source for TensorRT 8.x (Dims hold int32) and 10/11 (Dims hold int64): dimensions are only ever read through
// toInt() and built through IExprBuilder::constant() with an int, which converts to either.
#ifndef JETSON_DETECT_YOLO_DECODE_NMS_TENSORS_H
#define JETSON_DETECT_YOLO_DECODE_NMS_TENSORS_H

#include "yolo_decode_nms_config.h"

#include <NvInfer.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace jetson_detect
{

// Output `index`: num_detections (B, 1), boxes (B, K, 4), scores (B, K), classes (B, K); K = max_det.
nvinfer1::DimsExprs outputShape(YoloDecodeNmsConfig const& config, int32_t index, nvinfer1::DimsExprs const* inputs,
    int32_t nbInputs, nvinfer1::IExprBuilder& exprBuilder);

// int32 for num_detections and classes, float32 for boxes and scores.
nvinfer1::DataType outputType(int32_t index);

// Whether tensor `pos` of the plugin's inputs and outputs may have `desc`: inputs are one linear float32 or float16
// head per level, all of `firstInput`'s type; outputs are linear and of outputType().
bool isSupportedFormat(YoloDecodeNmsConfig const& config, int32_t pos, nvinfer1::PluginTensorDesc const& desc,
    nvinfer1::PluginTensorDesc const& firstInput, int32_t nbInputs, int32_t nbOutputs);

// Empty when input `index` is (B, num_anchors*(5+nc), H, W) (channels still unknown, -1, pass), else the reason.
std::string checkInput(YoloDecodeNmsConfig const& config, int32_t index, nvinfer1::Dims const& dims);

// Scratch bytes for one enqueue of `batch` images; `positions` = sum of anchorPositions() over the inputs.
int anchorPositions(YoloDecodeNmsConfig const& config, nvinfer1::Dims const& dims);
size_t workspaceSize(YoloDecodeNmsConfig const& config, nvinfer1::Dims const& firstInput, int positions);

int32_t enqueueDecodeNms(YdnParams const& launch, nvinfer1::PluginTensorDesc const* inputDesc,
    void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream);

} // namespace jetson_detect

#endif
