// YoloDecodeNMS v1 for TensorRT 8.x: IPluginV2DynamicExt + IPluginCreator around the shared config and tensors.
// TensorRT 10/11 deprecate both interfaces and get the IPluginV3 plugin (yolo_decode_nms_plugin_v3.h) instead, so
// this header declares nothing there.
#ifndef JETSON_DETECT_YOLO_DECODE_NMS_PLUGIN_H
#define JETSON_DETECT_YOLO_DECODE_NMS_PLUGIN_H

#include "yolo_decode_nms_config.h"

#include <NvInfer.h>

#if NV_TENSORRT_MAJOR < 10

#include <string>
#include <vector>

namespace jetson_detect
{

class YoloDecodeNmsPlugin : public nvinfer1::IPluginV2DynamicExt
{
public:
    explicit YoloDecodeNmsPlugin(YoloDecodeNmsConfig const& config);

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

#endif // NV_TENSORRT_MAJOR < 10

#endif
