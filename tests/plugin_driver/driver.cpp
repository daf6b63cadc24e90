// Drives the YoloDecodeNMS plugin library the way TensorRT does, through the real API of the release it is
// compiled against: the V2 plugin (IPluginV2DynamicExt/IPluginCreator) on 8.x, the V3 plugin (IPluginV3,
// IPluginCreatorV3One) on 10/11. Prints one line per check; tests/test_plugin_cpp.py compares them.
//
//   driver PLUGIN.so CASES.txt
//
// CASES.txt: one case a line, "ID MODE N" then N fields "NAME i|f COUNT V1 .. VCOUNT"; MODE "create" only reports
// accept/reject (with the plugin's message), "deep" also runs every check on the created plugin.
#include "stub_nvinfer.h"

#include <NvInfer.h>

#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <new>
#include <sstream>
#include <string>
#include <vector>

using namespace nvinfer1;

// Live heap blocks of the whole process (the plugin's included), to show destroy() frees what create made.
static long gLiveBlocks = 0;

void* operator new(std::size_t size)
{
    void* p = std::malloc(size ? size : 1);
    if (!p)
        throw std::bad_alloc();
    ++gLiveBlocks;
    return p;
}

void operator delete(void* p) noexcept
{
    if (p)
        --gLiveBlocks;
    std::free(p);
}

void operator delete(void* p, std::size_t) noexcept
{
    operator delete(p);
}

namespace
{

char const* const kName = "YoloDecodeNMS";
char const* const kVersion = "1";
char const* const kNamespace = "";

char const* typeName(DataType t)
{
    switch (t)
    {
    case DataType::kFLOAT: return "float32";
    case DataType::kHALF: return "float16";
    case DataType::kINT32: return "int32";
    case DataType::kINT8: return "int8";
    default: return "other";
    }
}

char const* fieldTypeName(PluginFieldType t)
{
    switch (t)
    {
    case PluginFieldType::kFLOAT32: return "float32";
    case PluginFieldType::kINT32: return "int32";
    case PluginFieldType::kUNKNOWN: return "unknown";
    default: return "other";
    }
}

// Everything the plugin writes to std::cerr while `capture` lives.
class CaptureErrors
{
public:
    CaptureErrors()
        : mOld(std::cerr.rdbuf(mText.rdbuf()))
    {
    }
    ~CaptureErrors() { std::cerr.rdbuf(mOld); }
    std::string text() const
    {
        std::string t = mText.str();
        while (!t.empty() && (t.back() == '\n' || t.back() == '\r'))
            t.pop_back();
        for (char& c : t)
            if (c == '\n')
                c = '|';
        return t;
    }

private:
    std::ostringstream mText;
    std::streambuf* mOld;
};

struct Case
{
    std::string id;
    std::string mode;
    std::vector<std::string> names;
    std::vector<bool> isInt;
    std::vector<std::vector<int32_t>> ints;
    std::vector<std::vector<float>> floats;
    std::vector<PluginField> fields;

    std::vector<float> floatField(char const* name) const
    {
        for (size_t i = 0; i < names.size(); ++i)
            if (names[i] == name)
                return floats[i];
        return {};
    }
    int intField(char const* name) const
    {
        for (size_t i = 0; i < names.size(); ++i)
            if (names[i] == name && !ints[i].empty())
                return ints[i][0];
        return 0;
    }
};

bool readCase(std::istream& in, Case& c)
{
    int n = 0;
    if (!(in >> c.id >> c.mode >> n))
        return false;
    for (int i = 0; i < n; ++i)
    {
        std::string name, kind;
        int count = 0;
        in >> name >> kind >> count;
        std::vector<int32_t> iv;
        std::vector<float> fv;
        for (int k = 0; k < count; ++k)
        {
            std::string v;
            in >> v;
            if (kind == "i")
                iv.push_back(static_cast<int32_t>(std::strtol(v.c_str(), nullptr, 10)));
            else
                fv.push_back(std::strtof(v.c_str(), nullptr));
        }
        c.names.push_back(name);
        c.isInt.push_back(kind == "i");
        c.ints.push_back(iv);
        c.floats.push_back(fv);
    }
    for (size_t i = 0; i < c.names.size(); ++i)
    {
        bool const isInt = c.isInt[i];
        void const* data = isInt ? static_cast<void const*>(c.ints[i].data()) : c.floats[i].data();
        int32_t const len = static_cast<int32_t>(isInt ? c.ints[i].size() : c.floats[i].size());
        c.fields.emplace_back(
            c.names[i].c_str(), data, isInt ? PluginFieldType::kINT32 : PluginFieldType::kFLOAT32, len);
    }
    return true;
}

#if NV_TENSORRT_MAJOR >= 10
// ---- TensorRT 10/11: IPluginV3 ------------------------------------------------------------------------------
using Creator = IPluginCreatorV3One;
using Plugin = IPluginV3;

Creator* lookup(char const* name, char const* version, char const* ns)
{
    IPluginCreatorInterface* c = getPluginRegistry()->getCreator(name, version, ns);
    if (!c || std::strcmp(c->getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") != 0)
        return nullptr;
    return static_cast<Creator*>(c);
}
char const* creatorNamespace(Creator& c)
{
    return c.getPluginNamespace();
}
Plugin* create(Creator& c, PluginFieldCollection const& fc)
{
    return c.createPlugin("yolo", &fc, TensorRTPhase::kBUILD);
}
IPluginV3OneCore* core(Plugin* p)
{
    return static_cast<IPluginV3OneCore*>(p->getCapabilityInterface(PluginCapabilityType::kCORE));
}
IPluginV3OneBuild* build(Plugin* p)
{
    return static_cast<IPluginV3OneBuild*>(p->getCapabilityInterface(PluginCapabilityType::kBUILD));
}
IPluginV3OneRuntime* runtime(Plugin* p)
{
    return static_cast<IPluginV3OneRuntime*>(p->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
}
std::string identity(Plugin* p)
{
    return std::string(core(p)->getPluginName()) + " " + core(p)->getPluginVersion() + " '"
        + core(p)->getPluginNamespace() + "' outputs " + std::to_string(build(p)->getNbOutputs());
}
// What an engine stores for the plugin: the fields getFieldsToSerialize() gives.
struct Stored
{
    std::string name;
    PluginFieldType type = PluginFieldType::kUNKNOWN;
    std::vector<char> bytes;
    int nbFields = 0;
};
Stored serialize(Plugin* p)
{
    Stored s;
    PluginFieldCollection const* fc = runtime(p)->getFieldsToSerialize();
    s.nbFields = fc->nbFields;
    if (fc->nbFields >= 1)
    {
        PluginField const& f = fc->fields[0];
        s.name = f.name;
        s.type = f.type;
        s.bytes.assign(static_cast<char const*>(f.data), static_cast<char const*>(f.data) + f.length);
    }
    return s;
}
Plugin* deserialize(Creator& c, Stored const& s, size_t length)
{
    // A copy of exactly `length` bytes, so that reading past it is a heap overflow the sanitizer reports.
    std::vector<char> data(s.bytes.begin(), s.bytes.begin() + static_cast<long>(length));
    PluginField f(s.name.c_str(), data.data(), s.type, static_cast<int32_t>(length));
    PluginFieldCollection fc{1, &f};
    return c.createPlugin("yolo", &fc, TensorRTPhase::kRUNTIME);
}
void destroy(Plugin* p)
{
    delete p;
}
Plugin* clonePlugin(Plugin* p)
{
    return p->clone();
}
bool outputShapes(Plugin* p, DimsExprs const* in, int nbInputs, DimsExprs* out)
{
    return build(p)->getOutputShapes(in, nbInputs, nullptr, 0, out, 4, stub::exprBuilder()) == 0;
}
std::vector<DynamicPluginTensorDesc> dynamic(PluginTensorDesc const* io, int n)
{
    std::vector<DynamicPluginTensorDesc> d(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i)
    {
        d[static_cast<size_t>(i)].desc = io[i];
        d[static_cast<size_t>(i)].min = io[i].dims;
        d[static_cast<size_t>(i)].opt = io[i].dims;
        d[static_cast<size_t>(i)].max = io[i].dims;
    }
    return d;
}
bool formats(Plugin* p, int pos, PluginTensorDesc const* io, int nbIn, int nbOut)
{
    std::vector<DynamicPluginTensorDesc> d = dynamic(io, nbIn + nbOut);
    return build(p)->supportsFormatCombination(pos, d.data(), nbIn, nbOut);
}
std::string outputTypes(Plugin* p, int nbInputs)
{
    DataType in[4] = {DataType::kHALF, DataType::kHALF, DataType::kHALF, DataType::kHALF};
    DataType out[4] = {DataType::kINT8, DataType::kINT8, DataType::kINT8, DataType::kINT8};
    int const rc = build(p)->getOutputDataTypes(out, 4, in, nbInputs);
    return std::string(rc == 0 ? "" : "error ") + typeName(out[0]) + " " + typeName(out[1]) + " " + typeName(out[2])
        + " " + typeName(out[3]);
}
size_t workspace(Plugin* p, PluginTensorDesc const* io, int nbIn, int nbOut)
{
    std::vector<DynamicPluginTensorDesc> d = dynamic(io, nbIn + nbOut);
    // Only the profile's largest shapes size the workspace: give smaller current and smallest shapes.
    for (int i = 0; i < nbIn; ++i)
    {
        d[static_cast<size_t>(i)].min.d[0] = 1;
        d[static_cast<size_t>(i)].desc.dims.d[0] = 1;
    }
    return build(p)->getWorkspaceSize(d.data(), nbIn, d.data() + nbIn, nbOut);
}
// configurePlugin + onShapeChange refuse (non-zero) and say why.
bool refusesShapes(Plugin* p, PluginTensorDesc const* io, int nbIn, int nbOut)
{
    std::vector<DynamicPluginTensorDesc> d = dynamic(io, nbIn + nbOut);
    CaptureErrors errors;
    int const a = build(p)->configurePlugin(d.data(), nbIn, d.data() + nbIn, nbOut);
    int const b = runtime(p)->onShapeChange(io, nbIn, io + nbIn, nbOut);
    return a != 0 && b != 0 && !errors.text().empty();
}
bool acceptsShapes(Plugin* p, PluginTensorDesc const* io, int nbIn, int nbOut)
{
    std::vector<DynamicPluginTensorDesc> d = dynamic(io, nbIn + nbOut);
    CaptureErrors errors;
    int const a = build(p)->configurePlugin(d.data(), nbIn, d.data() + nbIn, nbOut);
    int const b = runtime(p)->onShapeChange(io, nbIn, io + nbIn, nbOut);
    return a == 0 && b == 0 && errors.text().empty();
}
int32_t enqueue(Plugin* p, PluginTensorDesc const* io, int nbIn, void const* const* ins, void* const* outs)
{
    return runtime(p)->enqueue(io, io + nbIn, ins, outs, nullptr, nullptr);
}
void apiSpecific(std::string const& id, Creator& c, Plugin* p)
{
    (void) c;
    IPluginCapability* caps[3] = {p->getCapabilityInterface(PluginCapabilityType::kCORE),
        p->getCapabilityInterface(PluginCapabilityType::kBUILD),
        p->getCapabilityInterface(PluginCapabilityType::kRUNTIME)};
    std::printf("%s capabilities %s %s %s\n", id.c_str(), caps[0]->getInterfaceInfo().kind,
        caps[1]->getInterfaceInfo().kind, caps[2]->getInterfaceInfo().kind);
    Plugin* attached = runtime(p)->attachToContext(nullptr);
    std::printf("%s attach_to_context %s same_bytes %d\n", id.c_str(), attached ? "clone" : "null",
        attached && serialize(attached).bytes == serialize(p).bytes);
    destroy(attached);
    Stored const s = serialize(p);
    std::printf("%s serialized_fields %d %s %s\n", id.c_str(), s.nbFields, s.name.c_str(),
        fieldTypeName(s.type));
}
#else
// ---- TensorRT 8.x: IPluginV2DynamicExt -----------------------------------------------------------------------
using Creator = IPluginCreator;
using Plugin = IPluginV2DynamicExt;

Creator* lookup(char const* name, char const* version, char const* ns)
{
    return getPluginRegistry()->getPluginCreator(name, version, ns);
}
char const* creatorNamespace(Creator& c)
{
    return c.getPluginNamespace();
}
Plugin* create(Creator& c, PluginFieldCollection const& fc)
{
    return static_cast<Plugin*>(c.createPlugin("yolo", &fc));
}
std::string identity(Plugin* p)
{
    return std::string(p->getPluginType()) + " " + p->getPluginVersion() + " '" + p->getPluginNamespace()
        + "' outputs " + std::to_string(p->getNbOutputs());
}
struct Stored
{
    std::vector<char> bytes;
};
Stored serialize(Plugin* p)
{
    Stored s;
    s.bytes.resize(p->getSerializationSize());
    p->serialize(s.bytes.data());
    return s;
}
Plugin* deserialize(Creator& c, Stored const& s, size_t length)
{
    std::vector<char> data(s.bytes.begin(), s.bytes.begin() + static_cast<long>(length));
    return static_cast<Plugin*>(c.deserializePlugin("yolo", data.data(), length));
}
void destroy(Plugin* p)
{
    p->destroy();
}
Plugin* clonePlugin(Plugin* p)
{
    return p->clone();
}
bool outputShapes(Plugin* p, DimsExprs const* in, int nbInputs, DimsExprs* out)
{
    for (int i = 0; i < p->getNbOutputs(); ++i)
        out[i] = p->getOutputDimensions(i, in, nbInputs, stub::exprBuilder());
    return true;
}
bool formats(Plugin* p, int pos, PluginTensorDesc const* io, int nbIn, int nbOut)
{
    return p->supportsFormatCombination(pos, io, nbIn, nbOut);
}
std::string outputTypes(Plugin* p, int nbInputs)
{
    DataType in[4] = {DataType::kHALF, DataType::kHALF, DataType::kHALF, DataType::kHALF};
    std::string s;
    for (int i = 0; i < 4; ++i)
        s += std::string(i ? " " : "") + typeName(p->getOutputDataType(i, in, nbInputs));
    return s;
}
size_t workspace(Plugin* p, PluginTensorDesc const* io, int nbIn, int nbOut)
{
    return p->getWorkspaceSize(io, nbIn, io + nbIn, nbOut);
}
std::vector<DynamicPluginTensorDesc> dynamic(PluginTensorDesc const* io, int n)
{
    std::vector<DynamicPluginTensorDesc> d(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i)
    {
        d[static_cast<size_t>(i)].desc = io[i];
        d[static_cast<size_t>(i)].min = io[i].dims;
        d[static_cast<size_t>(i)].max = io[i].dims;
    }
    return d;
}
// IPluginV2DynamicExt::configurePlugin returns nothing: the plugin can only say why.
bool refusesShapes(Plugin* p, PluginTensorDesc const* io, int nbIn, int nbOut)
{
    std::vector<DynamicPluginTensorDesc> d = dynamic(io, nbIn + nbOut);
    CaptureErrors errors;
    p->configurePlugin(d.data(), nbIn, d.data() + nbIn, nbOut);
    return !errors.text().empty();
}
bool acceptsShapes(Plugin* p, PluginTensorDesc const* io, int nbIn, int nbOut)
{
    std::vector<DynamicPluginTensorDesc> d = dynamic(io, nbIn + nbOut);
    CaptureErrors errors;
    p->configurePlugin(d.data(), nbIn, d.data() + nbIn, nbOut);
    return errors.text().empty() && p->initialize() == 0;
}
int32_t enqueue(Plugin* p, PluginTensorDesc const* io, int nbIn, void const* const* ins, void* const* outs)
{
    return p->enqueue(io, io + nbIn, ins, outs, nullptr, nullptr);
}
void apiSpecific(std::string const& id, Creator& c, Plugin* p)
{
    Plugin* q = clonePlugin(p);
    q->setPluginNamespace("ns");
    std::printf("%s clone_namespace %s original '%s' creator '%s'\n", id.c_str(), q->getPluginNamespace(),
        p->getPluginNamespace(), c.getPluginNamespace());
    q->terminate();
    destroy(q);
}
#endif

std::string dimsText(DimsExprs const& d)
{
    std::string s = "(";
    for (int i = 0; i < d.nbDims; ++i)
        s += (i ? "," : "") + std::to_string(static_cast<long long>(d.d[i]->getConstantValue()));
    return s + ")";
}

void deepChecks(Case const& c, Creator& creator, Plugin* p)
{
    char const* id = c.id.c_str();
    std::vector<float> const strides = c.floatField("strides");
    int const levels = static_cast<int>(strides.size());
    int const nc = c.intField("nc");
    int const na = c.intField("num_anchors");
    int const inH = c.intField("input_h");
    int const inW = c.intField("input_w");
    std::printf("%s identity %s\n", id, identity(p).c_str());

    // Serialize -> deserialize -> serialize gives the same bytes; every truncation is refused.
    Stored const s = serialize(p);
    Plugin* q = deserialize(creator, s, s.bytes.size());
    bool const same = q && serialize(q).bytes == s.bytes;
    std::printf("%s roundtrip %d bytes %zu\n", id, same, s.bytes.size());
    int refused = 0;
    {
        CaptureErrors errors;
        for (size_t n = 0; n < s.bytes.size(); ++n)
        {
            Plugin* t = deserialize(creator, s, n);
            refused += t == nullptr;
            if (t)
                destroy(t);
        }
    }
    std::printf("%s truncated_refused %d of %zu\n", id, refused, s.bytes.size());
    {
        Stored bad = s;
        bad.bytes[0] = 2; // the serial format's version
        CaptureErrors errors;
        Plugin* t = deserialize(creator, bad, bad.bytes.size());
        std::printf("%s other_version_refused %d: %s\n", id, t == nullptr, errors.text().c_str());
        if (t)
            destroy(t);
    }

    // Output dimensions for batch 1 and 4: the batch expression is passed through, the rest are constants.
    int const batches[2] = {1, 4};
    for (int b : batches)
    {
        DimsExprs in[4];
        for (int l = 0; l < levels; ++l)
        {
            in[l].nbDims = 4;
            in[l].d[0] = stub::constant(b);
            in[l].d[1] = stub::constant(na * (5 + nc));
            in[l].d[2] = stub::constant(inH / static_cast<int>(strides[static_cast<size_t>(l)]));
            in[l].d[3] = stub::constant(inW / static_cast<int>(strides[static_cast<size_t>(l)]));
        }
        DimsExprs out[4];
        bool const ok = outputShapes(q, in, levels, out);
        bool const batchPassed = out[0].d[0] == in[0].d[0] && out[1].d[0] == in[0].d[0];
        std::printf("%s output_dims batch %d ok %d batch_expr_passed %d %s %s %s %s\n", id, b, ok, batchPassed,
            dimsText(out[0]).c_str(), dimsText(out[1]).c_str(), dimsText(out[2]).c_str(), dimsText(out[3]).c_str());
    }

    // Formats: linear FP32 or FP16 heads of one type; int32/float32/float32/int32 outputs.
    PluginTensorDesc io[8];
    std::memset(io, 0, sizeof(io));
    int const batch = 4;
    for (int l = 0; l < levels; ++l)
    {
        io[l].dims.nbDims = 4;
        io[l].dims.d[0] = batch;
        io[l].dims.d[1] = na * (5 + nc);
        io[l].dims.d[2] = inH / static_cast<int>(strides[static_cast<size_t>(l)]);
        io[l].dims.d[3] = inW / static_cast<int>(strides[static_cast<size_t>(l)]);
        io[l].format = TensorFormat::kLINEAR;
        io[l].type = DataType::kHALF;
        io[l].scale = 1.0f;
    }
    DataType const outTypes[4] = {DataType::kINT32, DataType::kFLOAT, DataType::kFLOAT, DataType::kINT32};
    for (int o = 0; o < 4; ++o)
    {
        io[levels + o].type = outTypes[o];
        io[levels + o].format = TensorFormat::kLINEAR;
    }
    auto all = [&]() {
        int ok = 1;
        for (int pos = 0; pos < levels + 4; ++pos)
            ok &= formats(q, pos, io, levels, 4) ? 1 : 0;
        return ok;
    };
    int const half = all();
    for (int l = 0; l < levels; ++l)
        io[l].type = DataType::kFLOAT;
    int const single = all();
    io[levels - 1].type = DataType::kHALF;
    int const mixed = formats(q, levels - 1, io, levels, 4);
    io[levels - 1].type = DataType::kFLOAT;
    io[0].type = DataType::kINT8;
    int const int8 = formats(q, 0, io, levels, 4);
    io[0].type = DataType::kFLOAT;
    io[0].format = TensorFormat::kCHW2;
    int const chw2 = formats(q, 0, io, levels, 4);
    io[0].format = TensorFormat::kLINEAR;
    io[levels + 1].type = DataType::kHALF;
    int const halfBoxes = formats(q, levels + 1, io, levels, 4);
    io[levels + 1].type = DataType::kFLOAT;
    io[levels + 3].type = DataType::kFLOAT;
    int const floatClasses = formats(q, levels + 3, io, levels, 4);
    io[levels + 3].type = DataType::kINT32;
    int const fewerInputs = formats(q, 0, io + 1, levels - 1, 4);
    int const outOfRange = formats(q, levels + 4, io, levels, 4);
    std::printf("%s formats float16 %d float32 %d mixed %d int8 %d chw2 %d half_boxes %d float_classes %d "
                "fewer_inputs %d pos_out_of_range %d\n",
        id, half, single, mixed, int8, chw2, halfBoxes, floatClasses, fewerInputs, outOfRange);
    std::printf("%s output_types %s\n", id, outputTypes(q, levels).c_str());

    // Shapes: the heads' channels must be num_anchors*(5+nc).
    int const shapesOk = acceptsShapes(q, io, levels, 4);
    io[levels - 1].dims.d[1] += 1;
    int const badChannels = refusesShapes(q, io, levels, 4);
    io[levels - 1].dims.d[1] -= 1;
    std::printf("%s shapes accepted %d wrong_channels_refused %d\n", id, shapesOk, badChannels);

    size_t const bytes = workspace(q, io, levels, 4);
    StubLaunch const* launch = stubLastLaunch();
    std::printf("%s workspace batch %d positions %d top_k %d bytes %zu\n", id, launch->ws_batch,
        launch->ws_positions, launch->ws_top_k, bytes);

    void const* ins[4] = {nullptr, nullptr, nullptr, nullptr};
    void* outs[4] = {nullptr, nullptr, nullptr, nullptr};
    io[0].type = DataType::kHALF;
    for (int l = 1; l < levels; ++l)
        io[l].type = DataType::kHALF;
    int const callsBefore = launch->calls;
    int const rc = enqueue(q, io, levels, ins, outs);
    std::string hw;
    for (int l = 0; l < launch->num_levels; ++l)
        hw += " " + std::to_string(launch->heights[l]) + "x" + std::to_string(launch->widths[l]);
    std::printf("%s enqueue rc %d calls %d batch %d half %d max_det %d levels %d:%s\n", id, rc,
        launch->calls - callsBefore, launch->batch, launch->heads_are_half, launch->max_det, launch->num_levels,
        hw.c_str());
    stubSetEnqueueStatus(700);
    {
        CaptureErrors errors;
        int const failed = enqueue(q, io, levels, ins, outs);
        std::printf("%s enqueue_cuda_error rc %d: %s\n", id, failed, errors.text().c_str());
    }
    stubSetEnqueueStatus(0);

    Plugin* r = clonePlugin(q);
    std::printf("%s clone %d same_bytes %d\n", id, r != nullptr, r && serialize(r).bytes == s.bytes);
    destroy(r);
    apiSpecific(c.id, creator, q);
    destroy(q);

    // create + clone + destroy leaves no heap block behind.
    PluginFieldCollection fc{static_cast<int32_t>(c.fields.size()), c.fields.data()};
    long const before = gLiveBlocks;
    Plugin* a = create(creator, fc);
    Plugin* b = clonePlugin(a);
    long const held = gLiveBlocks - before;
    destroy(b);
    destroy(a);
    std::printf("%s destroy_frees_all %d (blocks held while alive > 0: %d)\n", id, gLiveBlocks == before, held > 0);
}

} // namespace

int main(int argc, char** argv)
{
    if (argc != 3)
    {
        std::fprintf(stderr, "usage: driver PLUGIN.so CASES.txt\n");
        return 2;
    }
    std::printf("registered_before_load %d\n", stub::registeredCount());
    void* library = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!library)
    {
        std::printf("dlopen failed: %s\n", dlerror());
        return 1;
    }
    std::printf("registered_after_load %d\n", stub::registeredCount());
    Creator* creator = lookup(kName, kVersion, kNamespace);
    std::printf("lookup %s version %s namespace '%s': %d\n", kName, kVersion, kNamespace, creator != nullptr);
    std::printf("lookup other_version %d other_namespace %d other_name %d\n", lookup(kName, "2", kNamespace) != nullptr,
        lookup(kName, kVersion, "other") != nullptr, lookup("YoloDecodeNMSX", kVersion, kNamespace) != nullptr);
    if (!creator)
        return 1;
    int32_t listed = 0;
#if NV_TENSORRT_MAJOR >= 10
    IPluginCreatorInterface* const* all = getPluginRegistry()->getAllCreators(&listed);
#else
    IPluginCreator* const* all = getPluginRegistry()->getPluginCreatorList(&listed);
#endif
    std::printf("registry_lists %d ours %d\n", listed, listed == 1 && all[0] == creator);
    std::printf("creator %s %s '%s'\n", creator->getPluginName(), creator->getPluginVersion(),
        creatorNamespace(*creator));
    PluginFieldCollection const* names = creator->getFieldNames();
    for (int32_t i = 0; i < names->nbFields; ++i)
        std::printf("field %s %s %d\n", names->fields[i].name, fieldTypeName(names->fields[i].type),
            names->fields[i].length);

    std::ifstream in(argv[2]);
    Case c;
    while (readCase(in, c))
    {
        PluginFieldCollection fc{static_cast<int32_t>(c.fields.size()), c.fields.data()};
        Plugin* p = nullptr;
        std::string why;
        {
            CaptureErrors errors;
            p = create(*creator, fc);
            why = errors.text();
        }
        if (p)
            std::printf("case %s accept\n", c.id.c_str());
        else
            std::printf("case %s reject %s\n", c.id.c_str(), why.c_str());
        if (p && c.mode == "deep")
            deepChecks(c, *creator, p);
        if (p)
            destroy(p);
        std::fflush(stdout);
        c = Case();
    }
    return 0;
}
