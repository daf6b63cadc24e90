// YoloDecodeNMS v1 for TensorRT 8.x (IPluginV2DynamicExt): forwards to the shared config and tensors; the GPU work
// is ydnEnqueue. Compiles to nothing on TensorRT 10/11, where yolo_decode_nms_plugin_v3.cpp registers instead.
#include "yolo_decode_nms_plugin.h"

#if NV_TENSORRT_MAJOR < 10

#include "yolo_decode_nms_tensors.h"

#include <cstring>
#include <exception>

namespace jetson_detect
{

YoloDecodeNmsPlugin::YoloDecodeNmsPlugin(YoloDecodeNmsConfig const& config)
    : mConfig(config)
    , mLaunch(config.toLaunchParams())
{
}

nvinfer1::IPluginV2DynamicExt* YoloDecodeNmsPlugin::clone() const noexcept
{
    try
    {
        YoloDecodeNmsPlugin* copy = new YoloDecodeNmsPlugin(mConfig);
        copy->setPluginNamespace(mNamespace.c_str());
        return copy;
    }
    catch (std::exception const& e)
    {
        logError(e.what());
        return nullptr;
    }
}

nvinfer1::DimsExprs YoloDecodeNmsPlugin::getOutputDimensions(int32_t outputIndex,
    nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::IExprBuilder& exprBuilder) noexcept
{
    return outputShape(mConfig, outputIndex, inputs, nbInputs, exprBuilder);
}

bool YoloDecodeNmsPlugin::supportsFormatCombination(
    int32_t pos, nvinfer1::PluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    return pos >= 0 && pos < nbInputs + nbOutputs
        && isSupportedFormat(mConfig, pos, inOut[pos], inOut[0], nbInputs, nbOutputs);
}

void YoloDecodeNmsPlugin::configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    (void) out;
    (void) nbOutputs;
    for (int32_t i = 0; i < nbInputs; ++i)
    {
        std::string const why = checkInput(mConfig, i, in[i].desc.dims);
        if (!why.empty())
            logError(why);
    }
}

size_t YoloDecodeNmsPlugin::getWorkspaceSize(nvinfer1::PluginTensorDesc const* inputs, int32_t nbInputs,
    nvinfer1::PluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept
{
    (void) outputs;
    (void) nbOutputs;
    if (nbInputs < 1)
        return 0;
    int positions = 0;
    for (int32_t i = 0; i < nbInputs; ++i)
        positions += anchorPositions(mConfig, inputs[i].dims);
    return workspaceSize(mConfig, inputs[0].dims, positions);
}

int32_t YoloDecodeNmsPlugin::enqueue(nvinfer1::PluginTensorDesc const* inputDesc,
    nvinfer1::PluginTensorDesc const* outputDesc, void const* const* inputs, void* const* outputs, void* workspace,
    cudaStream_t stream) noexcept
{
    (void) outputDesc;
    return enqueueDecodeNms(mLaunch, inputDesc, inputs, outputs, workspace, stream);
}

nvinfer1::DataType YoloDecodeNmsPlugin::getOutputDataType(
    int32_t index, nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    (void) inputTypes;
    (void) nbInputs;
    return outputType(index);
}

char const* YoloDecodeNmsPlugin::getPluginType() const noexcept
{
    return kPluginName;
}

char const* YoloDecodeNmsPlugin::getPluginVersion() const noexcept
{
    return kPluginVersion;
}

int32_t YoloDecodeNmsPlugin::getNbOutputs() const noexcept
{
    return kNbOutputs;
}

int32_t YoloDecodeNmsPlugin::initialize() noexcept
{
    return 0;
}

void YoloDecodeNmsPlugin::terminate() noexcept {}

size_t YoloDecodeNmsPlugin::getSerializationSize() const noexcept
{
    return mConfig.serialize().size();
}

void YoloDecodeNmsPlugin::serialize(void* buffer) const noexcept
{
    std::vector<char> const bytes = mConfig.serialize();
    std::memcpy(buffer, bytes.data(), bytes.size());
}

void YoloDecodeNmsPlugin::destroy() noexcept
{
    delete this;
}

void YoloDecodeNmsPlugin::setPluginNamespace(char const* pluginNamespace) noexcept
{
    mNamespace = pluginNamespace ? pluginNamespace : "";
}

char const* YoloDecodeNmsPlugin::getPluginNamespace() const noexcept
{
    return mNamespace.c_str();
}

YoloDecodeNmsPluginCreator::YoloDecodeNmsPluginCreator()
    : mFields(creationFields())
    , mNamespace(kPluginNamespace)
{
    mFieldCollection.nbFields = static_cast<int32_t>(mFields.size());
    mFieldCollection.fields = mFields.data();
}

char const* YoloDecodeNmsPluginCreator::getPluginName() const noexcept
{
    return kPluginName;
}

char const* YoloDecodeNmsPluginCreator::getPluginVersion() const noexcept
{
    return kPluginVersion;
}

nvinfer1::PluginFieldCollection const* YoloDecodeNmsPluginCreator::getFieldNames() noexcept
{
    return &mFieldCollection;
}

nvinfer1::IPluginV2* YoloDecodeNmsPluginCreator::createPlugin(
    char const* name, nvinfer1::PluginFieldCollection const* fc) noexcept
{
    (void) name;
    try
    {
        YoloDecodeNmsConfig config;
        std::string const why = configFromFields(fc, config);
        if (!why.empty())
        {
            logError(why);
            return nullptr;
        }
        YoloDecodeNmsPlugin* plugin = new YoloDecodeNmsPlugin(config);
        plugin->setPluginNamespace(mNamespace.c_str());
        return plugin;
    }
    catch (std::exception const& e)
    {
        logError(e.what());
        return nullptr;
    }
}

nvinfer1::IPluginV2* YoloDecodeNmsPluginCreator::deserializePlugin(
    char const* name, void const* serialData, size_t serialLength) noexcept
{
    (void) name;
    try
    {
        YoloDecodeNmsConfig config;
        std::string const why = config.deserialize(serialData, serialLength);
        if (!why.empty())
        {
            logError(why);
            return nullptr;
        }
        YoloDecodeNmsPlugin* plugin = new YoloDecodeNmsPlugin(config);
        plugin->setPluginNamespace(mNamespace.c_str());
        return plugin;
    }
    catch (std::exception const& e)
    {
        logError(e.what());
        return nullptr;
    }
}

void YoloDecodeNmsPluginCreator::setPluginNamespace(char const* pluginNamespace) noexcept
{
    mNamespace = pluginNamespace ? pluginNamespace : "";
}

char const* YoloDecodeNmsPluginCreator::getPluginNamespace() const noexcept
{
    return mNamespace.c_str();
}

REGISTER_TENSORRT_PLUGIN(YoloDecodeNmsPluginCreator);

} // namespace jetson_detect

#endif // NV_TENSORRT_MAJOR < 10
