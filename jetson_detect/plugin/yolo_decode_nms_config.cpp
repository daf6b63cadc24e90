// YoloDecodeNMS fields: validation with decode_nms.check_params's ranges, field parsing and the serialized form.
#include "yolo_decode_nms_config.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <sstream>

namespace jetson_detect
{

char const* const kPluginName = "YoloDecodeNMS";
char const* const kPluginVersion = "1";
char const* const kPluginNamespace = "";

namespace
{

int32_t const kSerialVersion = 1;

bool finitePositive(float v)
{
    return std::isfinite(v) && v > 0.0f;
}

template <typename T>
void writeValue(std::vector<char>& out, T const& value)
{
    char bytes[sizeof(T)];
    std::memcpy(bytes, &value, sizeof(T));
    out.insert(out.end(), bytes, bytes + sizeof(T));
}

void writeFloats(std::vector<char>& out, std::vector<float> const& values)
{
    writeValue(out, static_cast<int32_t>(values.size()));
    for (float v : values)
        writeValue(out, v);
}

class Reader
{
public:
    Reader(void const* data, size_t length)
        : mAt(static_cast<char const*>(data))
        , mEnd(static_cast<char const*>(data) + (data ? length : 0))
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
        if (!read(n) || n < 0 || static_cast<size_t>(mEnd - mAt) / sizeof(float) < static_cast<size_t>(n))
            return false;
        values.resize(static_cast<size_t>(n));
        if (n)
            std::memcpy(values.data(), mAt, static_cast<size_t>(n) * sizeof(float));
        mAt += static_cast<size_t>(n) * sizeof(float);
        return true;
    }

    bool atEnd() const { return mAt == mEnd; }

private:
    char const* mAt;
    char const* mEnd;
};

bool isIntField(std::string const& name)
{
    return name == "nc" || name == "num_anchors" || name == "input_h" || name == "input_w" || name == "max_det"
        || name == "class_agnostic" || name == "pre_nms_top_k";
}

} // namespace

std::string YoloDecodeNmsConfig::validate() const
{
    std::ostringstream why;
    if (nc < 1)
        why << "field nc must be >= 1, got " << nc;
    else if (num_levels < 1 || num_levels > YDN_MAX_LEVELS)
        why << "field strides must be 1.." << YDN_MAX_LEVELS << " values, got " << num_levels;
    else if (num_anchors < 0 || anchors.size() != static_cast<size_t>(num_levels) * num_anchors * 2)
        why << "field anchors must hold levels*num_anchors*2 = " << num_levels << "*" << num_anchors
            << "*2 values, got " << anchors.size();
    else if (num_anchors < 1 || num_anchors > YDN_MAX_ANCHORS_PER_LEVEL)
        why << "field num_anchors must be 1.." << YDN_MAX_ANCHORS_PER_LEVEL << ", got " << num_anchors;
    else if (strides.size() != static_cast<size_t>(num_levels))
        why << "field strides must hold " << num_levels << " values, got " << strides.size();
    else
    {
        for (float a : anchors)
            if (why.tellp() == 0 && !finitePositive(a))
                why << "field anchors must be finite and > 0, got " << a;
        for (float s : strides)
            if (why.tellp() == 0 && !finitePositive(s))
                why << "field strides must be finite and > 0, got " << s;
        if (why.tellp() != 0)
            return why.str();
        if (input_h < 1 || input_w < 1)
            why << "field input_h/input_w must be >= 1, got " << input_h << "x" << input_w;
        else if (!(conf_thres >= 0.0f && conf_thres < 1.0f)) // NaN fails both comparisons
            why << "field conf_thres must be in [0, 1), got " << conf_thres;
        else if (!(iou_thres >= 0.0f && iou_thres <= 1.0f))
            why << "field iou_thres must be in [0, 1], got " << iou_thres;
        else if (max_det < 1)
            why << "field max_det must be >= 1, got " << max_det;
        else if (pre_nms_top_k < 1 || pre_nms_top_k > kMaxPreNmsTopK)
            why << "field pre_nms_top_k must be 1.." << kMaxPreNmsTopK << ", got " << pre_nms_top_k;
    }
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
        p.strides[l] = strides[static_cast<size_t>(l)];
        for (int a = 0; a < num_anchors; ++a)
        {
            size_t const at = static_cast<size_t>((l * num_anchors + a) * 2);
            p.anchors[l][a][0] = anchors[at];
            p.anchors[l][a][1] = anchors[at + 1];
        }
    }
    p.conf_thres = conf_thres;
    p.iou_thres = iou_thres;
    p.max_det = max_det;
    p.class_agnostic = class_agnostic ? 1 : 0;
    p.pre_nms_top_k = pre_nms_top_k;
    return p;
}

std::vector<char> YoloDecodeNmsConfig::serialize() const
{
    std::vector<char> out;
    writeValue(out, kSerialVersion);
    writeValue(out, static_cast<int32_t>(nc));
    writeValue(out, static_cast<int32_t>(num_anchors));
    writeValue(out, static_cast<int32_t>(num_levels));
    writeFloats(out, anchors);
    writeFloats(out, strides);
    writeValue(out, static_cast<int32_t>(input_h));
    writeValue(out, static_cast<int32_t>(input_w));
    writeValue(out, conf_thres);
    writeValue(out, iou_thres);
    writeValue(out, static_cast<int32_t>(max_det));
    writeValue(out, static_cast<int32_t>(class_agnostic));
    writeValue(out, static_cast<int32_t>(pre_nms_top_k));
    return out;
}

std::string YoloDecodeNmsConfig::deserialize(void const* data, size_t length)
{
    Reader r(data, length);
    int32_t version = 0;
    YoloDecodeNmsConfig c;
    bool const readable = r.read(version) && version == kSerialVersion && r.read(c.nc) && r.read(c.num_anchors)
        && r.read(c.num_levels) && r.readFloats(c.anchors) && r.readFloats(c.strides) && r.read(c.input_h)
        && r.read(c.input_w) && r.read(c.conf_thres) && r.read(c.iou_thres) && r.read(c.max_det)
        && r.read(c.class_agnostic) && r.read(c.pre_nms_top_k) && r.atEnd();
    if (!readable)
        return "the engine holds unreadable plugin data (version or size mismatch): rebuild the engine";
    std::string const why = c.validate();
    if (!why.empty())
        return "the engine holds invalid plugin data (" + why + "): rebuild the engine";
    *this = c;
    return "";
}

std::vector<nvinfer1::PluginField> creationFields()
{
    using nvinfer1::PluginField;
    using nvinfer1::PluginFieldType;
    return {
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
}

std::string configFromFields(nvinfer1::PluginFieldCollection const* fc, YoloDecodeNmsConfig& config)
{
    YoloDecodeNmsConfig c;
    bool seenNc = false;
    bool seenAnchors = false;
    bool seenStrides = false;
    bool seenNumAnchors = false;
    for (int32_t i = 0; fc && i < fc->nbFields; ++i)
    {
        nvinfer1::PluginField const& f = fc->fields[i];
        std::string const field = f.name ? f.name : "";
        bool const isArray = field == "anchors" || field == "strides";
        bool const isFloat = isArray || field == "conf_thres" || field == "iou_thres";
        if (!isFloat && !isIntField(field))
            return "unknown field '" + field + "'";
        if (f.type != (isFloat ? nvinfer1::PluginFieldType::kFLOAT32 : nvinfer1::PluginFieldType::kINT32))
            return "field " + field + (isFloat ? " must be float32" : " must be int32");
        // Arrays may be empty (validate() then names the count); scalars hold exactly one value.
        if (f.length < 0 || (!isArray && f.length != 1) || (f.length > 0 && !f.data))
            return "field " + field + (isArray ? " has no data" : " must hold one value");
        float const* fv = static_cast<float const*>(f.data);
        int32_t const* iv = static_cast<int32_t const*>(f.data);
        if (field == "anchors")
            c.anchors.assign(fv, fv + f.length), seenAnchors = true;
        else if (field == "strides")
            c.strides.assign(fv, fv + f.length), seenStrides = true;
        else if (field == "conf_thres")
            c.conf_thres = fv[0];
        else if (field == "iou_thres")
            c.iou_thres = fv[0];
        else if (field == "nc")
            c.nc = iv[0], seenNc = true;
        else if (field == "num_anchors")
            c.num_anchors = iv[0], seenNumAnchors = true;
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
    if (!(seenNc && seenNumAnchors && seenAnchors && seenStrides))
        return "fields nc, num_anchors, anchors and strides are required";
    c.num_levels = static_cast<int>(c.strides.size());
    std::string const why = c.validate();
    if (why.empty())
        config = c;
    return why;
}

void logError(std::string const& message)
{
    std::cerr << kPluginName << ": " << message << std::endl;
}

} // namespace jetson_detect
