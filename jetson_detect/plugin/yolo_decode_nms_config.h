// The YoloDecodeNMS plugin's fields, their validation and their serialized form: one definition that the
// IPluginV2DynamicExt plugin (TensorRT 8.x) and the IPluginV3 plugin (TensorRT 10/11) both use, so both accept the
// same fields with the same ranges and write the same bytes into an engine.
// Contract (name, fields, ranges, outputs): jetson_detect/model/decode_nms.py; a test compares both sides.
#ifndef JETSON_DETECT_YOLO_DECODE_NMS_CONFIG_H
#define JETSON_DETECT_YOLO_DECODE_NMS_CONFIG_H

#include "yolo_decode_nms_launch.h"

#include <NvInfer.h>

#include <cstddef>
#include <string>
#include <vector>

namespace jetson_detect
{

extern char const* const kPluginName;      // "YoloDecodeNMS"
extern char const* const kPluginVersion;   // "1"
extern char const* const kPluginNamespace; // ""
int const kNbOutputs = 4;
int const kMaxPreNmsTopK = 16384;

// The plugin's state: the fields of DecodeNMSParams.
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

    // Empty when valid, else a one-line reason naming the field, in the order check_params checks them.
    std::string validate() const;
    YdnParams toLaunchParams() const;

    // The serialized form (versioned; the V2 plugin's serialize() and the V3 plugin's one serialized field).
    std::vector<char> serialize() const;
    // Parses `serialize()`'s bytes; empty when they are well formed and valid, else the reason.
    std::string deserialize(void const* data, size_t length);
};

// The creation fields (names, types, lengths) that getFieldNames() reports; data pointers are null.
std::vector<nvinfer1::PluginField> creationFields();

// Reads a creator's field collection into `config`: empty when every field is known, of the right type, the
// required ones (nc, anchors, strides) are present and the result validates; else the reason.
std::string configFromFields(nvinfer1::PluginFieldCollection const* fc, YoloDecodeNmsConfig& config);

// Every message the plugin gives: one line on stderr, prefixed with the plugin's name.
void logError(std::string const& message);

} // namespace jetson_detect

#endif
