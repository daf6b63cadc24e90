// YoloDecodeNMS v1: TensorRT IPluginV2DynamicExt + IPluginCreator around ydnEnqueue.
//
// One source for TensorRT 8.2 (Dims hold int32) and 10.x/11.x (Dims hold int64): dimensions are only ever read
// through toInt() and built through IExprBuilder::constant() with an int, which converts to either.
// Contract (name, fields, outputs): jetson_detect/model/decode_nms.py.
#ifndef JETSON_DETECT_YOLO_DECODE_NMS_PLUGIN_H
#define JETSON_DETECT_YOLO_DECODE_NMS_PLUGIN_H

#include "yolo_decode_nms_launch.h"

#include <NvInfer.h>

#include <string>
#include <vector>

namespace jetson_detect
{

// The serialized state of the plugin; the fields of DecodeNMSParams.
struct YoloDecodeNmsConfig
{
    int nc = 0;
    int num_anchors = 0;
    int num_levels = 0;
    std::vector<float> anchors; // num_levels * num_anchors * 2, (w, h) in input pixels
    std::vector<float> strides; // num_levels
    int input_h = 0;
    int input_w = 0;
    float conf_thres = 0.25f;
    float iou_thres = 0.45f;
    int max_det = 300;
    int class_agnostic = 0;
    int pre_nms_top_k = 4096;

    // Empty when valid, else a one-line reason naming the field.
    std::string validate() const;
    YdnParams toLaunchParams() const;
};

class YoloDecodeNmsPlugin : public nvinfer1::IPluginV2DynamicExt
{
public:
    explicit YoloDecodeNmsPlugin(YoloDecodeNmsConfig const& config);
    YoloDecodeNmsPlugin(void const* data, size_t length);

    // Whether the deserialized bytes were well formed (checked by the creator before handing the plugin out).
    bool valid() const noexcept { return mValid; }

    // IPluginV2DynamicExt
    nvinfer1::IPluginV2DynamicExt* clone() const noexcept override;
    nvinfer1::DimsExprs getOutputDimensions(int32_t outputIndex, nvinfer1::DimsExprs const* inputs,
        int32_t nbInputs, nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(
        int32_t pos, nvinfer1::PluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept override;
    void configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    size_t getWorkspaceSize(nvinfer1::PluginTensorDesc const* inputs, int32_t nbInputs,
        nvinfer1::PluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;

    // IPluginV2Ext
    nvinfer1::DataType getOutputDataType(
        int32_t index, nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;

    // IPluginV2
    char const* getPluginType() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    int32_t getNbOutputs() const noexcept override;
    int32_t initialize() noexcept override;
    void terminate() noexcept override;
    size_t getSerializationSize() const noexcept override;
    void serialize(void* buffer) const noexcept override;
    void destroy() noexcept override;
    void setPluginNamespace(char const* pluginNamespace) noexcept override;
    char const* getPluginNamespace() const noexcept override;

private:
    YoloDecodeNmsConfig mConfig;
    YdnParams mLaunch;
    std::string mNamespace;
    bool mValid = true;
};

class YoloDecodeNmsPluginCreator : public nvinfer1::IPluginCreator
{
public:
    YoloDecodeNmsPluginCreator();

    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
    nvinfer1::IPluginV2* createPlugin(char const* name, nvinfer1::PluginFieldCollection const* fc) noexcept override;
    nvinfer1::IPluginV2* deserializePlugin(char const* name, void const* serialData, size_t serialLength) noexcept
        override;
    void setPluginNamespace(char const* pluginNamespace) noexcept override;
    char const* getPluginNamespace() const noexcept override;

private:
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mFieldCollection;
    std::string mNamespace;
};

} // namespace jetson_detect

#endif
