// YoloDecodeNMS v1 for TensorRT 10/11 (IPluginV3): forwards to the shared config and tensors; the GPU work is
// ydnEnqueue. Compiles to nothing on TensorRT 8.x, where yolo_decode_nms_plugin.cpp registers instead.
#include "yolo_decode_nms_plugin_v3.h"

#if NV_TENSORRT_MAJOR >= 10

#include "yolo_decode_nms_tensors.h"

#include <cstring>
#include <exception>
#include <string>

namespace jetson_detect
{

char const* const kSerializedField = "serialized_config";

YoloDecodeNmsPluginV3::YoloDecodeNmsPluginV3(YoloDecodeNmsConfig const& config)
    : mConfig(config)
    , mLaunch(config.toLaunchParams())
    , mSerialized(config.serialize())
    , mSerializedField(kSerializedField, mSerialized.data(), nvinfer1::PluginFieldType::kUNKNOWN,
          static_cast<int32_t>(mSerialized.size()))
{
    mSerializedFields.nbFields = 1;
    mSerializedFields.fields = &mSerializedField;
}

nvinfer1::IPluginCapability* YoloDecodeNmsPluginV3::getCapabilityInterface(
    nvinfer1::PluginCapabilityType type) noexcept
{
    switch (type)
    {
    case nvinfer1::PluginCapabilityType::kCORE: return static_cast<nvinfer1::IPluginV3OneCore*>(this);
    case nvinfer1::PluginCapabilityType::kBUILD: return static_cast<nvinfer1::IPluginV3OneBuild*>(this);
    case nvinfer1::PluginCapabilityType::kRUNTIME: return static_cast<nvinfer1::IPluginV3OneRuntime*>(this);
    }
    return nullptr;
}

nvinfer1::IPluginV3* YoloDecodeNmsPluginV3::clone() noexcept
{
    try
    {
        return new YoloDecodeNmsPluginV3(mConfig);
    }
    catch (std::exception const& e)
    {
        logError(e.what());
        return nullptr;
    }
}

char const* YoloDecodeNmsPluginV3::getPluginName() const noexcept
{
    return kPluginName;
}

char const* YoloDecodeNmsPluginV3::getPluginVersion() const noexcept
{
    return kPluginVersion;
}

char const* YoloDecodeNmsPluginV3::getPluginNamespace() const noexcept
{
    return kPluginNamespace;
}

int32_t YoloDecodeNmsPluginV3::configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    (void) out;
    if (nbInputs != mConfig.num_levels || nbOutputs != kNbOutputs)
    {
        logError("the plugin takes " + std::to_string(mConfig.num_levels) + " inputs (one per stride) and gives "
            + std::to_string(kNbOutputs) + " outputs, got " + std::to_string(nbInputs) + " and "
            + std::to_string(nbOutputs));
        return 1;
    }
    for (int32_t i = 0; i < nbInputs; ++i)
    {
        std::string const why = checkInput(mConfig, i, in[i].desc.dims);
        if (!why.empty())
        {
            logError(why);
            return 1;
        }
    }
    return 0;
}

int32_t YoloDecodeNmsPluginV3::getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
    nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    (void) inputTypes;
    (void) nbInputs;
    if (nbOutputs != kNbOutputs)
        return 1;
    for (int32_t i = 0; i < nbOutputs; ++i)
        outputTypes[i] = outputType(i);
    return 0;
}

int32_t YoloDecodeNmsPluginV3::getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
    nvinfer1::DimsExprs const* shapeInputs, int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
    nvinfer1::IExprBuilder& exprBuilder) noexcept
{
    (void) shapeInputs;
    if (nbInputs != mConfig.num_levels || nbShapeInputs != 0 || nbOutputs != kNbOutputs)
        return 1;
    for (int32_t i = 0; i < nbOutputs; ++i)
        outputs[i] = outputShape(mConfig, i, inputs, nbInputs, exprBuilder);
    return 0;
}

bool YoloDecodeNmsPluginV3::supportsFormatCombination(
    int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    return pos >= 0 && pos < nbInputs + nbOutputs
        && isSupportedFormat(mConfig, pos, inOut[pos].desc, inOut[0].desc, nbInputs, nbOutputs);
}

int32_t YoloDecodeNmsPluginV3::getNbOutputs() const noexcept
{
    return kNbOutputs;
}

size_t YoloDecodeNmsPluginV3::getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
    nvinfer1::DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept
{
    (void) outputs;
    (void) nbOutputs;
    if (nbInputs < 1)
        return 0;
    // Sized for the largest shapes of the optimization profile: one engine serves all of them.
    int positions = 0;
    for (int32_t i = 0; i < nbInputs; ++i)
        positions += anchorPositions(mConfig, inputs[i].max);
    return workspaceSize(mConfig, inputs[0].max, positions);
}

int32_t YoloDecodeNmsPluginV3::onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::PluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    (void) out;
    if (nbInputs != mConfig.num_levels || nbOutputs != kNbOutputs)
        return 1;
    for (int32_t i = 0; i < nbInputs; ++i)
    {
        std::string const why = checkInput(mConfig, i, in[i].dims);
        if (!why.empty())
        {
            logError(why);
            return 1;
        }
    }
    return 0;
}

int32_t YoloDecodeNmsPluginV3::enqueue(nvinfer1::PluginTensorDesc const* inputDesc,
    nvinfer1::PluginTensorDesc const* outputDesc, void const* const* inputs, void* const* outputs, void* workspace,
    cudaStream_t stream) noexcept
{
    (void) outputDesc;
    return enqueueDecodeNms(mLaunch, inputDesc, inputs, outputs, workspace, stream);
}

nvinfer1::IPluginV3* YoloDecodeNmsPluginV3::attachToContext(nvinfer1::IPluginResourceContext* context) noexcept
{
    // No per-context resources: the kernels use TensorRT's workspace only.
    (void) context;
    return clone();
}

nvinfer1::PluginFieldCollection const* YoloDecodeNmsPluginV3::getFieldsToSerialize() noexcept
{
    return &mSerializedFields;
}

YoloDecodeNmsPluginV3Creator::YoloDecodeNmsPluginV3Creator()
    : mFields(creationFields())
{
    mFieldCollection.nbFields = static_cast<int32_t>(mFields.size());
    mFieldCollection.fields = mFields.data();
}

nvinfer1::IPluginV3* YoloDecodeNmsPluginV3Creator::createPlugin(
    char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept
{
    (void) name;
    try
    {
        YoloDecodeNmsConfig config;
        std::string why;
        if (phase == nvinfer1::TensorRTPhase::kRUNTIME)
        {
            bool const one = fc && fc->nbFields == 1 && fc->fields[0].name
                && std::strcmp(fc->fields[0].name, kSerializedField) == 0
                && fc->fields[0].type == nvinfer1::PluginFieldType::kUNKNOWN && fc->fields[0].length >= 0;
            why = one ? config.deserialize(fc->fields[0].data, static_cast<size_t>(fc->fields[0].length))
                      : "the engine holds no " + std::string(kSerializedField) + " field: rebuild the engine";
        }
        else
            why = configFromFields(fc, config);
        if (!why.empty())
        {
            logError(why);
            return nullptr;
        }
        return new YoloDecodeNmsPluginV3(config);
    }
    catch (std::exception const& e)
    {
        logError(e.what());
        return nullptr;
    }
}

nvinfer1::PluginFieldCollection const* YoloDecodeNmsPluginV3Creator::getFieldNames() noexcept
{
    return &mFieldCollection;
}

char const* YoloDecodeNmsPluginV3Creator::getPluginName() const noexcept
{
    return kPluginName;
}

char const* YoloDecodeNmsPluginV3Creator::getPluginVersion() const noexcept
{
    return kPluginVersion;
}

char const* YoloDecodeNmsPluginV3Creator::getPluginNamespace() const noexcept
{
    return kPluginNamespace;
}

REGISTER_TENSORRT_PLUGIN(YoloDecodeNmsPluginV3Creator);

} // namespace jetson_detect

#endif // NV_TENSORRT_MAJOR >= 10
