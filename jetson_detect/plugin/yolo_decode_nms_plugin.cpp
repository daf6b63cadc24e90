// YoloDecodeNMS v1 TensorRT plugin: shapes, formats, serialization and the creator. The GPU work is ydnEnqueue.
#include "yolo_decode_nms_plugin.h"

#include <cstring>
#include <iostream>
#include <new>
#include <sstream>

namespace jetson_detect
{
namespace
{

char const* const kPluginName = "YoloDecodeNMS";
char const* const kPluginVersion = "1";
int32_t const kSerialVersion = 1;
int32_t const kNbOutputs = 4;
int const kMaxPreNmsTopK = 16384;

// Dims::d is int32_t in TensorRT 8.x and int64_t in 10.x; every read goes through here.
template <typename T>
int toInt(T value)
{
    return static_cast<int>(value);
}

void logError(std::string const& message)
{
    std::cerr << "YoloDecodeNMS: " << message << std::endl;
}

template <typename T>
void writeValue(char*& at, T const& value)
{
    std::memcpy(at, &value, sizeof(T));
    at += sizeof(T);
}

void writeFloats(char*& at, std::vector<float> const& values)
{
    writeValue(at, static_cast<int32_t>(values.size()));
    if (!values.empty())
        std::memcpy(at, values.data(), values.size() * sizeof(float));
    at += values.size() * sizeof(float);
}

class Reader
{
public:
    Reader(void const* data, size_t length)
        : mAt(static_cast<char const*>(data))
        , mEnd(static_cast<char const*>(data) + length)
    {
    }

    template <typename T>
    bool read(T& value)
    {
        if (static_cast<size_t>(mEnd - mAt) < sizeof(T))
            return false;
        std::memcpy(&value, mAt, sizeof(T));
        mAt += sizeof(T);
        return true;
    }

    bool readFloats(std::vector<float>& values)
    {
        int32_t n = 0;
        if (!read(n) || n < 0 || static_cast<size_t>(mEnd - mAt) < n * sizeof(float))
            return false;
        values.resize(static_cast<size_t>(n));
        if (n)
            std::memcpy(values.data(), mAt, n * sizeof(float));
        mAt += n * sizeof(float);
        return true;
    }

    bool atEnd() const { return mAt == mEnd; }

private:
    char const* mAt;
    char const* mEnd;
};

} // namespace

std::string YoloDecodeNmsConfig::validate() const
{
    std::ostringstream why;
    if (nc < 1)
        why << "field nc must be >= 1, got " << nc;
    else if (num_anchors < 1 || num_anchors > YDN_MAX_ANCHORS_PER_LEVEL)
        why << "field num_anchors must be 1.." << YDN_MAX_ANCHORS_PER_LEVEL << ", got " << num_anchors;
    else if (num_levels < 1 || num_levels > YDN_MAX_LEVELS)
        why << "field strides must hold 1.." << YDN_MAX_LEVELS << " values, got " << num_levels;
    else if (anchors.size() != static_cast<size_t>(num_levels * num_anchors * 2))
        why << "field anchors must hold levels*num_anchors*2 = " << num_levels * num_anchors * 2 << " values, got "
            << anchors.size();
    else if (input_h < 1 || input_w < 1)
        why << "fields input_h/input_w must be >= 1, got " << input_h << "x" << input_w;
    else if (!(conf_thres >= 0.0f && conf_thres < 1.0f))
        why << "field conf_thres must be in [0, 1), got " << conf_thres;
    else if (!(iou_thres >= 0.0f && iou_thres <= 1.0f))
        why << "field iou_thres must be in [0, 1], got " << iou_thres;
    else if (max_det < 1)
        why << "field max_det must be >= 1, got " << max_det;
    else if (pre_nms_top_k < 1 || pre_nms_top_k > kMaxPreNmsTopK)
        why << "field pre_nms_top_k must be 1.." << kMaxPreNmsTopK << ", got " << pre_nms_top_k;
    for (float s : strides)
        if (why.tellp() == 0 && !(s > 0.0f))
            why << "field strides must be > 0, got " << s;
    return why.str();
}

YdnParams YoloDecodeNmsConfig::toLaunchParams() const
{
    YdnParams p;
    std::memset(&p, 0, sizeof(p));
    p.num_levels = num_levels;
    p.num_anchors = num_anchors;
    p.num_classes = nc;
    for (int l = 0; l < num_levels; ++l)
    {
        p.strides[l] = strides[l];
        for (int a = 0; a < num_anchors; ++a)
        {
            p.anchors[l][a][0] = anchors[(l * num_anchors + a) * 2];
            p.anchors[l][a][1] = anchors[(l * num_anchors + a) * 2 + 1];
        }
    }
    p.conf_thres = conf_thres;
    p.iou_thres = iou_thres;
    p.max_det = max_det;
    p.class_agnostic = class_agnostic ? 1 : 0;
    p.pre_nms_top_k = pre_nms_top_k;
    return p;
}

YoloDecodeNmsPlugin::YoloDecodeNmsPlugin(YoloDecodeNmsConfig const& config)
    : mConfig(config)
    , mLaunch(config.toLaunchParams())
{
}

YoloDecodeNmsPlugin::YoloDecodeNmsPlugin(void const* data, size_t length)
{
    Reader r(data, length);
    int32_t version = 0;
    YoloDecodeNmsConfig c;
    mValid = r.read(version) && version == kSerialVersion && r.read(c.nc) && r.read(c.num_anchors)
        && r.read(c.num_levels) && r.readFloats(c.anchors) && r.readFloats(c.strides) && r.read(c.input_h)
        && r.read(c.input_w) && r.read(c.conf_thres) && r.read(c.iou_thres) && r.read(c.max_det)
        && r.read(c.class_agnostic) && r.read(c.pre_nms_top_k) && r.atEnd()
        && c.strides.size() == static_cast<size_t>(c.num_levels) && c.validate().empty();
    if (!mValid)
        logError("the engine holds unreadable plugin data (version or size mismatch): rebuild the engine");
    mConfig = c;
    mLaunch = mValid ? c.toLaunchParams() : YdnParams();
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
    nvinfer1::DimsExprs out;
    out.nbDims = 0;
    if (nbInputs < 1)
        return out;
    out.d[0] = inputs[0].d[0];
    switch (outputIndex)
    {
    case 0: // num_detections (B, 1)
        out.nbDims = 2;
        out.d[1] = exprBuilder.constant(1);
        break;
    case 1: // boxes (B, K, 4)
        out.nbDims = 3;
        out.d[1] = exprBuilder.constant(mConfig.max_det);
        out.d[2] = exprBuilder.constant(4);
        break;
    default: // scores, classes (B, K)
        out.nbDims = 2;
        out.d[1] = exprBuilder.constant(mConfig.max_det);
        break;
    }
    return out;
}

bool YoloDecodeNmsPlugin::supportsFormatCombination(
    int32_t pos, nvinfer1::PluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (nbInputs != mConfig.num_levels || nbOutputs != kNbOutputs || pos < 0 || pos >= nbInputs + nbOutputs)
        return false;
    nvinfer1::PluginTensorDesc const& desc = inOut[pos];
    if (desc.format != nvinfer1::TensorFormat::kLINEAR)
        return false;
    if (pos < nbInputs)
    {
        bool const floating = desc.type == nvinfer1::DataType::kFLOAT || desc.type == nvinfer1::DataType::kHALF;
        // All heads share one type: the kernels are launched once per precision.
        return floating && (pos == 0 || desc.type == inOut[0].type);
    }
    int const output = pos - nbInputs;
    bool const integer = output == 0 || output == 3;
    return desc.type == (integer ? nvinfer1::DataType::kINT32 : nvinfer1::DataType::kFLOAT);
}

void YoloDecodeNmsPlugin::configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    (void) out;
    (void) nbOutputs;
    int const channels = mConfig.num_anchors * (5 + mConfig.nc);
    for (int32_t i = 0; i < nbInputs; ++i)
    {
        int const c = toInt(in[i].desc.dims.d[1]);
        if (in[i].desc.dims.nbDims != 4 || (c >= 0 && c != channels))
            logError("input " + std::to_string(i) + " must be (B, " + std::to_string(channels)
                + ", H, W) = num_anchors*(5+nc) channels; check the nc/num_anchors fields");
    }
}

size_t YoloDecodeNmsPlugin::getWorkspaceSize(nvinfer1::PluginTensorDesc const* inputs, int32_t nbInputs,
    nvinfer1::PluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept
{
    (void) outputs;
    (void) nbOutputs;
    int positions = 0;
    for (int32_t i = 0; i < nbInputs; ++i)
        positions += mConfig.num_anchors * toInt(inputs[i].dims.d[2]) * toInt(inputs[i].dims.d[3]);
    return ydnWorkspaceSize(toInt(inputs[0].dims.d[0]), positions, mConfig.pre_nms_top_k);
}

int32_t YoloDecodeNmsPlugin::enqueue(nvinfer1::PluginTensorDesc const* inputDesc,
    nvinfer1::PluginTensorDesc const* outputDesc, void const* const* inputs, void* const* outputs, void* workspace,
    cudaStream_t stream) noexcept
{
    (void) outputDesc;
    int heights[YDN_MAX_LEVELS] = {0};
    int widths[YDN_MAX_LEVELS] = {0};
    for (int l = 0; l < mConfig.num_levels; ++l)
    {
        heights[l] = toInt(inputDesc[l].dims.d[2]);
        widths[l] = toInt(inputDesc[l].dims.d[3]);
    }
    int const batch = toInt(inputDesc[0].dims.d[0]);
    int const half = inputDesc[0].type == nvinfer1::DataType::kHALF ? 1 : 0;
    int const status = ydnEnqueue(&mLaunch, batch, heights, widths, inputs, half, static_cast<int*>(outputs[0]),
        static_cast<float*>(outputs[1]), static_cast<float*>(outputs[2]), static_cast<int*>(outputs[3]), workspace,
        stream);
    if (status != 0)
    {
        logError(std::string("kernel launch failed: ") + cudaGetErrorString(static_cast<cudaError_t>(status)));
        return 1;
    }
    return 0;
}

nvinfer1::DataType YoloDecodeNmsPlugin::getOutputDataType(
    int32_t index, nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    (void) inputTypes;
    (void) nbInputs;
    return index == 0 || index == 3 ? nvinfer1::DataType::kINT32 : nvinfer1::DataType::kFLOAT;
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
    return mValid ? 0 : 1;
}

void YoloDecodeNmsPlugin::terminate() noexcept {}

size_t YoloDecodeNmsPlugin::getSerializationSize() const noexcept
{
    return sizeof(int32_t) * 4 + sizeof(int32_t) + mConfig.anchors.size() * sizeof(float) + sizeof(int32_t)
        + mConfig.strides.size() * sizeof(float) + sizeof(int32_t) * 2 + sizeof(float) * 2 + sizeof(int32_t) * 3;
}

void YoloDecodeNmsPlugin::serialize(void* buffer) const noexcept
{
    char* at = static_cast<char*>(buffer);
    writeValue(at, kSerialVersion);
    writeValue(at, static_cast<int32_t>(mConfig.nc));
    writeValue(at, static_cast<int32_t>(mConfig.num_anchors));
    writeValue(at, static_cast<int32_t>(mConfig.num_levels));
    writeFloats(at, mConfig.anchors);
    writeFloats(at, mConfig.strides);
    writeValue(at, static_cast<int32_t>(mConfig.input_h));
    writeValue(at, static_cast<int32_t>(mConfig.input_w));
    writeValue(at, mConfig.conf_thres);
    writeValue(at, mConfig.iou_thres);
    writeValue(at, static_cast<int32_t>(mConfig.max_det));
    writeValue(at, static_cast<int32_t>(mConfig.class_agnostic));
    writeValue(at, static_cast<int32_t>(mConfig.pre_nms_top_k));
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
{
    using nvinfer1::PluginField;
    using nvinfer1::PluginFieldType;
    mFields = {
        PluginField("nc", nullptr, PluginFieldType::kINT32, 1),
        PluginField("num_anchors", nullptr, PluginFieldType::kINT32, 1),
        PluginField("anchors", nullptr, PluginFieldType::kFLOAT32, 0),
        PluginField("strides", nullptr, PluginFieldType::kFLOAT32, 0),
        PluginField("input_h", nullptr, PluginFieldType::kINT32, 1),
        PluginField("input_w", nullptr, PluginFieldType::kINT32, 1),
        PluginField("conf_thres", nullptr, PluginFieldType::kFLOAT32, 1),
        PluginField("iou_thres", nullptr, PluginFieldType::kFLOAT32, 1),
        PluginField("max_det", nullptr, PluginFieldType::kINT32, 1),
        PluginField("class_agnostic", nullptr, PluginFieldType::kINT32, 1),
        PluginField("pre_nms_top_k", nullptr, PluginFieldType::kINT32, 1),
    };
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
        YoloDecodeNmsConfig c;
        bool seen_nc = false;
        bool seen_anchors = false;
        bool seen_strides = false;
        std::string error;
        for (int32_t i = 0; fc && i < fc->nbFields && error.empty(); ++i)
        {
            nvinfer1::PluginField const& f = fc->fields[i];
            std::string const field = f.name ? f.name : "";
            bool const is_float = f.type == nvinfer1::PluginFieldType::kFLOAT32;
            bool const is_int = f.type == nvinfer1::PluginFieldType::kINT32;
            if (!f.data || f.length < 1)
            {
                error = "field " + field + " is empty";
                continue;
            }
            float const* fv = static_cast<float const*>(f.data);
            int32_t const* iv = static_cast<int32_t const*>(f.data);
            if (field == "anchors" || field == "strides")
            {
                if (!is_float)
                    error = "field " + field + " must be float32";
                else if (field == "anchors")
                    c.anchors.assign(fv, fv + f.length), seen_anchors = true;
                else
                    c.strides.assign(fv, fv + f.length), seen_strides = true;
            }
            else if (field == "conf_thres" || field == "iou_thres")
            {
                if (!is_float)
                    error = "field " + field + " must be float32";
                else
                    (field == "conf_thres" ? c.conf_thres : c.iou_thres) = fv[0];
            }
            else if (field == "nc" || field == "num_anchors" || field == "input_h" || field == "input_w"
                || field == "max_det" || field == "class_agnostic" || field == "pre_nms_top_k")
            {
                if (!is_int)
                    error = "field " + field + " must be int32";
                else if (field == "nc")
                    c.nc = iv[0], seen_nc = true;
                else if (field == "num_anchors")
                    c.num_anchors = iv[0];
                else if (field == "input_h")
                    c.input_h = iv[0];
                else if (field == "input_w")
                    c.input_w = iv[0];
                else if (field == "max_det")
                    c.max_det = iv[0];
                else if (field == "class_agnostic")
                    c.class_agnostic = iv[0] ? 1 : 0;
                else
                    c.pre_nms_top_k = iv[0];
            }
            else
                error = "unknown field " + field;
        }
        if (error.empty() && !(seen_nc && seen_anchors && seen_strides))
            error = "fields nc, anchors and strides are required";
        c.num_levels = static_cast<int>(c.strides.size());
        if (error.empty())
            error = c.validate();
        if (!error.empty())
        {
            logError(error);
            return nullptr;
        }
        YoloDecodeNmsPlugin* plugin = new YoloDecodeNmsPlugin(c);
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
        YoloDecodeNmsPlugin* plugin = new YoloDecodeNmsPlugin(serialData, serialLength);
        if (!plugin->valid())
        {
            delete plugin;
            return nullptr;
        }
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
