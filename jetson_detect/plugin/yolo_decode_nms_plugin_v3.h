// YoloDecodeNMS v1 for TensorRT 10/11: IPluginV3 (OneCore/OneBuild/OneRuntime) + IPluginCreatorV3One, the
// interfaces that replace the deprecated IPluginV2DynamicExt/IPluginCreator. Same name, version, namespace, fields
// and serialized bytes as the 8.x plugin (yolo_decode_nms_plugin.h); declares nothing on TensorRT 8.x.
#ifndef JETSON_DETECT_YOLO_DECODE_NMS_PLUGIN_V3_H
#define JETSON_DETECT_YOLO_DECODE_NMS_PLUGIN_V3_H

#include "yolo_decode_nms_config.h"

#include <NvInfer.h>

#if NV_TENSORRT_MAJOR >= 10

#include <vector>

namespace jetson_detect
{

// The one field the V3 plugin serializes: the same versioned bytes the 8.x plugin writes (kUNKNOWN, length in bytes,
// as NvInferRuntime.h advises for arbitrary data). TensorRT hands it back to createPlugin in TensorRTPhase::kRUNTIME.
extern char const* const kSerializedField; // "serialized_config"

class YoloDecodeNmsPluginV3 : public nvinfer1::IPluginV3,
                              public nvinfer1::IPluginV3OneCore,
                              public nvinfer1::IPluginV3OneBuild,
                              public nvinfer1::IPluginV3OneRuntime
{
public:
    explicit YoloDecodeNmsPluginV3(YoloDecodeNmsConfig const& config);
    // mSerializedField points into this object's own buffer: copies go through clone().
    YoloDecodeNmsPluginV3(YoloDecodeNmsPluginV3 const&) = delete;
    YoloDecodeNmsPluginV3& operator=(YoloDecodeNmsPluginV3 const&) = delete;

    // IPluginV3
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
    nvinfer1::IPluginV3* clone() noexcept override;

    // IPluginV3OneCore
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;

    // IPluginV3OneBuild
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
        nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
        int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
        nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override;
    int32_t getNbOutputs() const noexcept override;
    size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;

    // IPluginV3OneRuntime
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, nvinfer1::PluginTensorDesc const* out,
        int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

private:
    YoloDecodeNmsConfig mConfig;
    YdnParams mLaunch;
    std::vector<char> mSerialized;
    nvinfer1::PluginField mSerializedField;
    nvinfer1::PluginFieldCollection mSerializedFields;
};

class YoloDecodeNmsPluginV3Creator : public nvinfer1::IPluginCreatorV3One
{
public:
    YoloDecodeNmsPluginV3Creator();

    // kBUILD: the creation fields (getFieldNames()); kRUNTIME: the field getFieldsToSerialize() wrote.
    nvinfer1::IPluginV3* createPlugin(
        char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;

private:
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mFieldCollection;
};

} // namespace jetson_detect

#endif // NV_TENSORRT_MAJOR >= 10

#endif
