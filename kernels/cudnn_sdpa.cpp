// Fused attention through cuDNN's flash SDPA (the kernel PyTorch uses for Z-Image on Hopper), via
// the header-only cudnn-frontend graph API. One image needs no mask, so the whole attention
// (QK^T, softmax, PV) is one kernel that never materialises the score matrix.
//
// C ABI for src/model/fused.rs. Graphs are built once per shape and cached; the caller owns all
// device memory (q, k, v, o and the workspace), so allocation stays in candle's allocator.

#include <cudnn_frontend.h>

#include <cstdint>
#include <map>
#include <memory>
#include <tuple>

#include "cudnn_shim.h"

namespace fe = cudnn_frontend;

namespace {

constexpr int64_t Q_UID = 1, K_UID = 2, V_UID = 3, O_UID = 4;

// b, h, s_q, s_kv, d, q/k/o token stride, v token stride (elements)
using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, float>;

struct State {
    ShimCore core;
    std::map<Key, std::shared_ptr<fe::graph::Graph>> graphs;
};

State& state() {
    static State s;
    return s;
}

void set_error(const char* what, const std::string& detail) { state().core.set_error(what, detail); }

// Layout [b, s, h, d] in memory, exposed to cuDNN as dims [b, h, s, d] with strides.
std::shared_ptr<fe::graph::Tensor_attributes> bshd(fe::graph::Graph& g, const char* name, int64_t uid, int64_t b,
                                                   int64_t h, int64_t s, int64_t d, int64_t token_stride) {
    return g.tensor(fe::graph::Tensor_attributes()
                        .set_name(name)
                        .set_uid(uid)
                        .set_dim({b, h, s, d})
                        .set_stride({s * token_stride, d, token_stride, 1}));
}

std::shared_ptr<fe::graph::Graph> build(const Key& key) {
    auto [b, h, s_q, s_kv, d, qo_stride, v_stride, scale] = key;
    auto g = std::make_shared<fe::graph::Graph>();
    g->set_io_data_type(fe::DataType_t::BFLOAT16)
        .set_intermediate_data_type(fe::DataType_t::FLOAT)
        .set_compute_data_type(fe::DataType_t::FLOAT);
    auto q = bshd(*g, "Q", Q_UID, b, h, s_q, d, qo_stride);
    auto k = bshd(*g, "K", K_UID, b, h, s_kv, d, qo_stride);
    auto v = bshd(*g, "V", V_UID, b, h, s_kv, d, v_stride);
    auto options = fe::graph::SDPA_attributes().set_name("zimage_sdpa").set_generate_stats(false).set_attn_scale(scale);
    auto [o, stats] = g->sdpa(q, k, v, options);
    (void)stats;
    o->set_output(true).set_uid(O_UID).set_dim({b, h, s_q, d}).set_stride({s_q * h * d, d, h * d, 1});
    auto check = [](fe::error_t e, const char* step) {
        if (e.is_bad()) {
            set_error(step, e.get_message());
            return false;
        }
        return true;
    };
    cudnnHandle_t handle = state().core.handle;
    if (!check(g->validate(), "validate")) return nullptr;
    if (!check(g->build_operation_graph(handle), "build_operation_graph")) return nullptr;
    if (!check(g->create_execution_plans({fe::HeurMode_t::A}), "create_execution_plans")) return nullptr;
    if (!check(g->check_support(handle), "check_support")) return nullptr;
    if (!check(g->build_plans(handle), "build_plans")) return nullptr;
    return g;
}

std::shared_ptr<fe::graph::Graph> graph_for(const Key& key) {
    auto& s = state();
    if (!s.core.ensure_handle()) return nullptr;
    auto it = s.graphs.find(key);
    if (it != s.graphs.end()) return it->second;
    auto g = build(key);
    if (g) s.graphs.emplace(key, g);
    return g;
}

}  // namespace

extern "C" {

// Workspace bytes the graph for this shape needs (building it on first use). -1 on error.
int64_t zimage_sdpa_workspace(int64_t b, int64_t h, int64_t s_q, int64_t s_kv, int64_t d, int64_t qo_stride,
                              int64_t v_stride, float scale) {
    std::lock_guard<std::mutex> guard(state().core.lock);
    auto g = graph_for(Key{b, h, s_q, s_kv, d, qo_stride, v_stride, scale});
    if (!g) return -1;
    int64_t bytes = 0;
    auto e = g->get_workspace_size(bytes);
    if (e.is_bad()) {
        set_error("get_workspace_size", e.get_message());
        return -1;
    }
    return bytes;
}

// o = softmax(q k^T * scale) v on `stream`. q, k: [b, s, h, d] with token stride qo_stride; v: the
// same with v_stride (so v can be a view into a merged QKV buffer); o: [b, s_q, h, d] contiguous.
// Returns 0 on success; on error a message is kept for zimage_sdpa_last_error.
int zimage_sdpa_run(void* stream, const void* q, const void* k, const void* v, void* o, void* workspace, int64_t b,
                    int64_t h, int64_t s_q, int64_t s_kv, int64_t d, int64_t qo_stride, int64_t v_stride,
                    float scale) {
    auto& s = state();
    std::lock_guard<std::mutex> guard(s.core.lock);
    auto g = graph_for(Key{b, h, s_q, s_kv, d, qo_stride, v_stride, scale});
    if (!g) return 1;
    if (!s.core.use_stream(stream)) return 2;
    std::unordered_map<int64_t, void*> pack = {{Q_UID, const_cast<void*>(q)},
                                               {K_UID, const_cast<void*>(k)},
                                               {V_UID, const_cast<void*>(v)},
                                               {O_UID, o}};
    auto e = g->execute(s.core.handle, pack, workspace);
    if (e.is_bad()) {
        set_error("execute", e.get_message());
        return 3;
    }
    return 0;
}

const char* zimage_sdpa_last_error() { return state().core.last_error; }

}  // extern "C"
