// The VAE decoder's convolutions through cuDNN's graph API, channels-last bf16 with f32 accumulation,
// the bias add (and a resnet's residual add) fused into the convolution's epilogue. candle's own
// cuDNN path uses the legacy API in NCHW without tensor-op math, which is what made our decode ~6x
// slower than diffusers' (channels-first too, but with tensor cores).
//
// C ABI for src/model/vae/cuda.rs. Graphs are built once per shape and cached. When a fusion is not
// supported for a shape, a plainer graph is built instead and the caller is told which work is left
// to it. The caller owns all device memory.

#include <cudnn_frontend.h>

#include <cstdint>
#include <map>
#include <memory>
#include <tuple>
#include <unordered_map>

#include "cudnn_shim.h"

namespace fe = cudnn_frontend;

namespace {

constexpr int64_t X_UID = 1, W_UID = 2, B_UID = 3, R_UID = 4, Y_UID = 5;

// What the graph computes beyond the convolution.
enum Fused : int { CONV_ONLY = 0, BIAS = 1, BIAS_RESIDUAL = 2 };

// n, c (input channels), h, w, k (output channels), kernel side, padding, wanted fusion
using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int>;

struct Entry {
    std::shared_ptr<fe::graph::Graph> graph;
    int fused;
    int64_t workspace;
};

struct State {
    ShimCore core;
    std::map<Key, Entry> graphs;
};

State& state() {
    static State s;
    return s;
}

void set_error(const char* what, const std::string& detail) { state().core.set_error(what, detail); }

// dims [n, c, h, w] of a channels-last tensor
std::vector<int64_t> nhwc_strides(int64_t c, int64_t h, int64_t w) { return {c * h * w, 1, c * w, c}; }

std::shared_ptr<fe::graph::Graph> build(const Key& key, int fused, bool report) {
    auto [n, c, h, w, k, side, pad, wanted] = key;
    (void)wanted;
    auto g = std::make_shared<fe::graph::Graph>();
    g->set_io_data_type(fe::DataType_t::BFLOAT16)
        .set_intermediate_data_type(fe::DataType_t::FLOAT)
        .set_compute_data_type(fe::DataType_t::FLOAT);
    auto x = g->tensor(fe::graph::Tensor_attributes().set_name("X").set_uid(X_UID).set_dim({n, c, h, w}).set_stride(
        nhwc_strides(c, h, w)));
    auto wt = g->tensor(fe::graph::Tensor_attributes()
                            .set_name("W")
                            .set_uid(W_UID)
                            .set_dim({k, c, side, side})
                            .set_stride(nhwc_strides(c, side, side)));
    auto conv = fe::graph::Conv_fprop_attributes()
                    .set_name("conv")
                    .set_padding({pad, pad})
                    .set_stride({1, 1})
                    .set_dilation({1, 1});
    auto y = g->conv_fprop(x, wt, conv);
    if (fused >= BIAS) {
        auto b = g->tensor(
            fe::graph::Tensor_attributes().set_name("B").set_uid(B_UID).set_dim({1, k, 1, 1}).set_stride({k, 1, k, k}));
        y = g->pointwise(y, b, fe::graph::Pointwise_attributes().set_name("bias").set_mode(fe::PointwiseMode_t::ADD));
    }
    if (fused >= BIAS_RESIDUAL) {
        auto r = g->tensor(fe::graph::Tensor_attributes().set_name("R").set_uid(R_UID).set_dim({n, k, h, w}).set_stride(
            nhwc_strides(k, h, w)));
        y = g->pointwise(y, r,
                         fe::graph::Pointwise_attributes().set_name("residual").set_mode(fe::PointwiseMode_t::ADD));
    }
    y->set_output(true).set_uid(Y_UID).set_dim({n, k, h, w}).set_stride(nhwc_strides(k, h, w)).set_data_type(
        fe::DataType_t::BFLOAT16);
    cudnnHandle_t handle = state().core.handle;
    auto ok = [&](fe::error_t e, const char* step) {
        if (e.is_bad()) {
            if (report) set_error(step, e.get_message());
            return false;
        }
        return true;
    };
    if (!ok(g->validate(), "validate")) return nullptr;
    if (!ok(g->build_operation_graph(handle), "build_operation_graph")) return nullptr;
    if (!ok(g->create_execution_plans({fe::HeurMode_t::A, fe::HeurMode_t::FALLBACK}), "create_execution_plans"))
        return nullptr;
    if (!ok(g->check_support(handle), "check_support")) return nullptr;
    if (!ok(g->build_plans(handle, fe::BuildPlanPolicy_t::HEURISTICS_CHOICE), "build_plans")) return nullptr;
    return g;
}

// The cached graph for `key`: the wanted fusion if cuDNN supports it for this shape, else plainer.
const Entry* entry_for(const Key& key) {
    auto& s = state();
    if (!s.core.ensure_handle()) return nullptr;
    auto it = s.graphs.find(key);
    if (it != s.graphs.end()) return &it->second;
    const int wanted = std::get<7>(key);
    for (int fused = wanted; fused >= CONV_ONLY; --fused) {
        auto g = build(key, fused, fused == CONV_ONLY);
        if (!g) continue;
        int64_t bytes = 0;
        auto e = g->get_workspace_size(bytes);
        if (e.is_bad()) {
            set_error("get_workspace_size", e.get_message());
            return nullptr;
        }
        auto [pos, _] = s.graphs.emplace(key, Entry{g, fused, bytes});
        return &pos->second;
    }
    return nullptr;
}

}  // namespace

extern "C" {

// Builds (once) the graph for this convolution and says what it fuses: 2 = bias and residual,
// 1 = bias only, 0 = neither; *workspace gets the bytes it needs. -1 on error.
int zimage_conv_prepare(int64_t n, int64_t c, int64_t h, int64_t w, int64_t k, int64_t side, int64_t pad,
                        int wanted, int64_t* workspace) {
    std::lock_guard<std::mutex> guard(state().core.lock);
    const Entry* e = entry_for(Key{n, c, h, w, k, side, pad, wanted});
    if (!e) return -1;
    *workspace = e->workspace;
    return e->fused;
}

// y = conv(x, w) [+ bias] [+ residual] on `stream`; x, y, residual channels-last [n, h, w, c|k],
// w [k, side, side, c], bias [k]. Pointers a graph does not read may be null. 0 on success.
int zimage_conv_run(void* stream, const void* x, const void* w, const void* bias, const void* residual, void* y,
                    void* workspace, int64_t n, int64_t c, int64_t h, int64_t wd, int64_t k, int64_t side,
                    int64_t pad, int wanted) {
    auto& s = state();
    std::lock_guard<std::mutex> guard(s.core.lock);
    const Entry* e = entry_for(Key{n, c, h, wd, k, side, pad, wanted});
    if (!e) return 1;
    if (!s.core.use_stream(stream)) return 2;
    std::unordered_map<int64_t, void*> pack = {{X_UID, const_cast<void*>(x)}, {W_UID, const_cast<void*>(w)}, {Y_UID, y}};
    if (e->fused >= BIAS) pack[B_UID] = const_cast<void*>(bias);
    if (e->fused >= BIAS_RESIDUAL) pack[R_UID] = const_cast<void*>(residual);
    auto err = e->graph->execute(s.core.handle, pack, workspace);
    if (err.is_bad()) {
        set_error("execute", err.get_message());
        return 3;
    }
    return 0;
}

const char* zimage_conv_last_error() { return state().core.last_error; }

}  // extern "C"
