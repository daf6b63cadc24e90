// YoloDecodeNMS tensors: output shapes and types, formats, workspace, and the enqueue that hands over to ydnEnqueue.
#include "yolo_decode_nms_tensors.h"

#include <string>

namespace jetson_detect
{
namespace
{

// Dims::d is int32_t in TensorRT 8.x and int64_t in 10/11; every read goes through here.
template <typename T>
int toInt(T value)
{
    return static_cast<int>(value);
}

} // namespace

nvinfer1::DimsExprs outputShape(YoloDecodeNmsConfig const& config, int32_t index, nvinfer1::DimsExprs const* inputs,
    int32_t nbInputs, nvinfer1::IExprBuilder& exprBuilder)
{
    nvinfer1::DimsExprs out;
    out.nbDims = 0;
    if (nbInputs < 1 || index < 0 || index >= kNbOutputs)
        return out;
    out.d[0] = inputs[0].d[0];
    switch (index)
    {
    case 0: // num_detections (B, 1)
        out.nbDims = 2;
        out.d[1] = exprBuilder.constant(1);
        break;
    case 1: // boxes (B, K, 4)
        out.nbDims = 3;
        out.d[1] = exprBuilder.constant(config.max_det);
        out.d[2] = exprBuilder.constant(4);
        break;
    default: // scores, classes (B, K)
        out.nbDims = 2;
        out.d[1] = exprBuilder.constant(config.max_det);
        break;
    }
    return out;
}

nvinfer1::DataType outputType(int32_t index)
{
    return index == 0 || index == 3 ? nvinfer1::DataType::kINT32 : nvinfer1::DataType::kFLOAT;
}

bool isSupportedFormat(YoloDecodeNmsConfig const& config, int32_t pos, nvinfer1::PluginTensorDesc const& desc,
    nvinfer1::PluginTensorDesc const& firstInput, int32_t nbInputs, int32_t nbOutputs)
{
    if (nbInputs != config.num_levels || nbOutputs != kNbOutputs || pos < 0 || pos >= nbInputs + nbOutputs)
        return false;
    if (desc.format != nvinfer1::TensorFormat::kLINEAR)
        return false;
    if (pos < nbInputs)
    {
        bool const floating = desc.type == nvinfer1::DataType::kFLOAT || desc.type == nvinfer1::DataType::kHALF;
        // All heads share one type: the kernels are launched for one precision.
        return floating && (pos == 0 || desc.type == firstInput.type);
    }
    return desc.type == outputType(pos - nbInputs);
}

std::string checkInput(YoloDecodeNmsConfig const& config, int32_t index, nvinfer1::Dims const& dims)
{
    int const channels = config.num_anchors * (5 + config.nc);
    int const c = dims.nbDims == 4 ? toInt(dims.d[1]) : 0;
    if (dims.nbDims == 4 && (c < 0 || c == channels))
        return "";
    return "input " + std::to_string(index) + " must be (B, " + std::to_string(channels)
        + ", H, W) = num_anchors*(5+nc) channels; check the nc/num_anchors fields";
}

int anchorPositions(YoloDecodeNmsConfig const& config, nvinfer1::Dims const& dims)
{
    return dims.nbDims == 4 ? config.num_anchors * toInt(dims.d[2]) * toInt(dims.d[3]) : 0;
}

size_t workspaceSize(YoloDecodeNmsConfig const& config, nvinfer1::Dims const& firstInput, int positions)
{
    return ydnWorkspaceSize(toInt(firstInput.d[0]), positions, config.pre_nms_top_k);
}

int32_t enqueueDecodeNms(YdnParams const& launch, nvinfer1::PluginTensorDesc const* inputDesc,
    void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream)
{
    int heights[YDN_MAX_LEVELS] = {0};
    int widths[YDN_MAX_LEVELS] = {0};
    for (int l = 0; l < launch.num_levels; ++l)
    {
        heights[l] = toInt(inputDesc[l].dims.d[2]);
        widths[l] = toInt(inputDesc[l].dims.d[3]);
    }
    int const batch = toInt(inputDesc[0].dims.d[0]);
    int const half = inputDesc[0].type == nvinfer1::DataType::kHALF ? 1 : 0;
    int const status = ydnEnqueue(&launch, batch, heights, widths, inputs, half, static_cast<int*>(outputs[0]),
        static_cast<float*>(outputs[1]), static_cast<float*>(outputs[2]), static_cast<int*>(outputs[3]), workspace,
        stream);
    if (status != 0)
    {
        logError(std::string("kernel launch failed: ") + cudaGetErrorString(static_cast<cudaError_t>(status)));
        return 1;
    }
    return 0;
}

} // namespace jetson_detect
