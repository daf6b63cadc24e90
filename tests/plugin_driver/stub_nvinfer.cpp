// A stub libnvinfer.so: the one symbol the plugin imports (getPluginRegistry) backed by the release's WHOLE real
// IPluginRegistry (every pure virtual overridden, so this compiles only if it is complete), and a real
// IExprBuilder/IDimensionExpr pair whose apiv::VExprBuilder/VDimensionExpr (NvInferImpl.h) fold constants.
#include "stub_nvinfer.h"

#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace
{

using nvinfer1::AsciiChar;

#if NV_TENSORRT_MAJOR >= 10
// TensorRT 10/11 register IPluginCreatorInterface; name and version sit on the concrete creator kind.
using Creator = nvinfer1::IPluginCreatorInterface;

bool describe(Creator const& c, std::string& name, std::string& version, std::string& ns)
{
    nvinfer1::InterfaceInfo const info = c.getInterfaceInfo();
    if (std::strcmp(info.kind, "PLUGIN CREATOR_V3ONE") != 0)
        return false;
    auto const& v3 = static_cast<nvinfer1::IPluginCreatorV3One const&>(c);
    name = v3.getPluginName();
    version = v3.getPluginVersion();
    ns = v3.getPluginNamespace();
    return true;
}
#else
using Creator = nvinfer1::IPluginCreator;

bool describe(Creator const& c, std::string& name, std::string& version, std::string& ns)
{
    name = c.getPluginName();
    version = c.getPluginVersion();
    ns = c.getPluginNamespace();
    return true;
}
#endif

struct Entry
{
    Creator* creator;
    std::string ns;
};

class StubRegistry : public nvinfer1::IPluginRegistry
{
public:
    ~StubRegistry() noexcept override = default;

    void setErrorRecorder(nvinfer1::IErrorRecorder* const recorder) noexcept override { mRecorder = recorder; }
    nvinfer1::IErrorRecorder* getErrorRecorder() const noexcept override { return mRecorder; }

#if NV_TENSORRT_MAJOR < 11
    // 8.x: the only interface; 10.x: the deprecated V2 creator overloads, still pure virtual.
    bool registerCreator(nvinfer1::IPluginCreator& creator, AsciiChar const* const pluginNamespace) noexcept override
    {
        return add(creator, pluginNamespace);
    }
    nvinfer1::IPluginCreator* const* getPluginCreatorList(int32_t* const numCreators) const noexcept override
    {
#if NV_TENSORRT_MAJOR >= 10
        *numCreators = 0; // the V3 plugin registers no V2 creator
        return nullptr;
#else
        return list(numCreators);
#endif
    }
    nvinfer1::IPluginCreator* getPluginCreator(AsciiChar const* const pluginName, AsciiChar const* const pluginVersion,
        AsciiChar const* const pluginNamespace) noexcept override
    {
#if NV_TENSORRT_MAJOR >= 10
        (void) pluginName;
        (void) pluginVersion;
        (void) pluginNamespace;
        return nullptr; // the V3 plugin registers no V2 creator
#else
        return find(pluginName, pluginVersion, pluginNamespace);
#endif
    }
    bool deregisterCreator(nvinfer1::IPluginCreator const& creator) noexcept override { return remove(&creator); }
#endif

#if NV_TENSORRT_MAJOR >= 10
    bool isParentSearchEnabled() const override { return mParentSearch; }
    void setParentSearchEnabled(bool const enabled) override { mParentSearch = enabled; }
    PluginLibraryHandle loadLibrary(AsciiChar const* pluginPath) noexcept override
    {
        (void) pluginPath;
        return nullptr;
    }
    void deregisterLibrary(PluginLibraryHandle handle) noexcept override { (void) handle; }
    bool registerCreator(nvinfer1::IPluginCreatorInterface& creator, AsciiChar const* const pluginNamespace) noexcept
        override
    {
        return add(creator, pluginNamespace);
    }
    nvinfer1::IPluginCreatorInterface* const* getAllCreators(int32_t* const numCreators) const noexcept override
    {
        return list(numCreators);
    }
    nvinfer1::IPluginCreatorInterface* getCreator(AsciiChar const* const pluginName,
        AsciiChar const* const pluginVersion, AsciiChar const* const pluginNamespace) noexcept override
    {
        return find(pluginName, pluginVersion, pluginNamespace);
    }
    bool deregisterCreator(nvinfer1::IPluginCreatorInterface const& creator) noexcept override
    {
        return remove(&creator);
    }
    nvinfer1::IPluginResource* acquirePluginResource(
        AsciiChar const* key, nvinfer1::IPluginResource* resource) noexcept override
    {
        (void) key;
        return resource;
    }
    int32_t releasePluginResource(AsciiChar const* key) noexcept override
    {
        (void) key;
        return 0;
    }
    nvinfer1::IPluginCreatorInterface* const* getAllCreatorsRecursive(int32_t* const numCreators) noexcept override
    {
        return getAllCreators(numCreators);
    }
#endif

    int count() const { return static_cast<int>(mEntries.size()); }

private:
    Creator* const* list(int32_t* const numCreators) const
    {
        mList.clear();
        for (Entry const& e : mEntries)
            mList.push_back(e.creator);
        *numCreators = static_cast<int32_t>(mList.size());
        return mList.data();
    }

    template <typename C>
    bool add(C& creator, AsciiChar const* ns)
    {
        mEntries.push_back(Entry{&creator, ns ? ns : ""});
        return true;
    }

    template <typename C>
    bool remove(C const* creator)
    {
        for (auto it = mEntries.begin(); it != mEntries.end(); ++it)
            if (it->creator == creator)
            {
                mEntries.erase(it);
                return true;
            }
        return false;
    }

    Creator* find(AsciiChar const* name, AsciiChar const* version, AsciiChar const* ns)
    {
        for (Entry const& e : mEntries)
        {
            std::string n, v, cns;
            if (describe(*e.creator, n, v, cns) && n == name && v == version && e.ns == (ns ? ns : "")
                && cns == e.ns)
                return e.creator;
        }
        return nullptr;
    }

    std::vector<Entry> mEntries;
    mutable std::vector<Creator*> mList;
    nvinfer1::IErrorRecorder* mRecorder = nullptr;
    bool mParentSearch = true;
};

StubRegistry& registry()
{
    static StubRegistry instance;
    return instance;
}

// The real IDimensionExpr wraps an apiv::VDimensionExpr; this one holds a constant.
class ConstantValue : public nvinfer1::apiv::VDimensionExpr
{
public:
    explicit ConstantValue(stub::DimValue value)
        : mValue(value)
    {
    }
    bool isConstant() const override { return true; }
    stub::DimValue getConstantValue() const override { return mValue; }
#if NV_TENSORRT_MAJOR >= 10
    bool isSizeTensor() const override { return false; }
#endif

private:
    stub::DimValue mValue;
};

class ConstantExpr : public nvinfer1::IDimensionExpr
{
public:
    explicit ConstantExpr(stub::DimValue value)
        : mValue(value)
    {
        mImpl = &mValue;
    }
    ~ConstantExpr() noexcept override = default;

private:
    ConstantValue mValue;
};

class FoldingBuilder : public nvinfer1::apiv::VExprBuilder
{
public:
    nvinfer1::IDimensionExpr const* constant(stub::DimValue value) override
    {
        mMade.emplace_back(new ConstantExpr(value));
        return mMade.back().get();
    }
    nvinfer1::IDimensionExpr const* operation(nvinfer1::DimensionOperation op,
        nvinfer1::IDimensionExpr const& first, nvinfer1::IDimensionExpr const& second) override
    {
        stub::DimValue const a = first.getConstantValue();
        stub::DimValue const b = second.getConstantValue();
        switch (op)
        {
        case nvinfer1::DimensionOperation::kSUM: return constant(a + b);
        case nvinfer1::DimensionOperation::kPROD: return constant(a * b);
        case nvinfer1::DimensionOperation::kMAX: return constant(a > b ? a : b);
        case nvinfer1::DimensionOperation::kMIN: return constant(a < b ? a : b);
        case nvinfer1::DimensionOperation::kSUB: return constant(a - b);
        default: return nullptr;
        }
    }
#if NV_TENSORRT_MAJOR >= 10
    nvinfer1::IDimensionExpr const* declareSizeTensor(
        int32_t outputIndex, nvinfer1::IDimensionExpr const& opt, nvinfer1::IDimensionExpr const& upper) override
    {
        (void) outputIndex;
        (void) upper;
        return &opt;
    }
#endif

private:
    std::vector<std::unique_ptr<ConstantExpr>> mMade;
};

class StubExprBuilder : public nvinfer1::IExprBuilder
{
public:
    StubExprBuilder() { mImpl = &mFolding; }
    ~StubExprBuilder() noexcept override = default;

private:
    FoldingBuilder mFolding;
};

} // namespace

extern "C" __attribute__((visibility("default"))) nvinfer1::IPluginRegistry* getPluginRegistry() noexcept
{
    return &registry();
}

namespace stub
{

int registeredCount()
{
    return registry().count();
}

nvinfer1::IExprBuilder& exprBuilder()
{
    static StubExprBuilder builder;
    return builder;
}

nvinfer1::IDimensionExpr const* constant(DimValue value)
{
    return exprBuilder().constant(value);
}

} // namespace stub

// For ctypes (tests/test_plugin_build.py): creators registered so far.
extern "C" __attribute__((visibility("default"))) int stubRegisteredCount()
{
    return registry().count();
}
