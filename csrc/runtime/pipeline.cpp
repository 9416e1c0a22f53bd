#include "runtime/pipeline.h"

#include <numeric>
#include <stdexcept>

#include "common/error.h"
#include "gguf/gguf-reader.h"

namespace pipeinfer {

pipeline::pipeline(const pipeline_config& cfg) : n_seq_max_(cfg.n_seq_max) {
    if (cfg.n_threads < 1) throw std::invalid_argument(format("n_threads must be >= 1, got %d", cfg.n_threads));
    if (cfg.n_seq_max < 1) throw std::invalid_argument(format("n_seq_max must be >= 1, got %d", cfg.n_seq_max));
    if (cfg.n_ctx < 0) throw std::invalid_argument(format("n_ctx must be >= 0, got %lld", (long long)cfg.n_ctx));
    file_ = std::shared_ptr<const gguf_file>(gguf_file::from_path(cfg.model_path));
    const llama_hparams hp = hparams_from_gguf(*file_);
    n_ctx_ = cfg.n_ctx > 0 ? cfg.n_ctx : std::min<int64_t>(hp.n_ctx_train, 4096);
    std::vector<int64_t> split = cfg.stage_layers;
    if (split.empty()) split.push_back(hp.n_layer);
    int64_t total = 0;
    for (int64_t n : split) {
        if (n <= 0) throw std::invalid_argument(format("every stage needs at least one layer, got %lld", (long long)n));
        total += n;
    }
    if (total != hp.n_layer) {
        throw std::invalid_argument(format("stage layer counts sum to %lld, the model has %lld layers",
                                           (long long)total, (long long)hp.n_layer));
    }
    int64_t begin = 0;
    for (int64_t n : split) {
        stages_.push_back(std::make_unique<llama_stage>(file_, begin, begin + n, n_ctx_, n_seq_max_, cfg.n_threads));
        begin += n;
    }
}

pipeline::~pipeline() = default;

const std::vector<float>& pipeline::decode(const batch& b) {
    const float* in = nullptr;
    for (size_t s = 0; s < stages_.size(); ++s) {
        std::vector<float>& out = (s + 1 == stages_.size()) ? logits_ : act_[s % 2];
        stages_[s]->forward(b, in, out);
        in = out.data();
    }
    return logits_;
}

void pipeline::kv_seq_rm(int32_t seq, int32_t p0, int32_t p1) {
    for (auto& s : stages_) s->kv().seq_rm(seq, p0, p1);
}
void pipeline::kv_seq_cp(int32_t src, int32_t dst, int32_t p0, int32_t p1) {
    for (auto& s : stages_) s->kv().seq_cp(src, dst, p0, p1);
}
void pipeline::kv_seq_keep(int32_t seq) {
    for (auto& s : stages_) s->kv().seq_keep(seq);
}
void pipeline::kv_clear() {
    for (auto& s : stages_) s->kv().clear();
}
int32_t pipeline::kv_seq_pos_max(int32_t seq) const { return stages_.front()->kv().seq_pos_max(seq); }
int64_t pipeline::kv_n_used() const { return stages_.front()->kv().n_used(); }

std::vector<int64_t> split_layers_by_bytes(const std::vector<size_t>& layer_bytes, int n_stages) {
    const int64_t n_layer = static_cast<int64_t>(layer_bytes.size());
    if (n_stages < 1 || n_stages > n_layer) {
        throw std::invalid_argument(format("cannot split %lld layers into %d stages (need 1..%lld stages)",
                                           (long long)n_layer, n_stages, (long long)n_layer));
    }
    const double total = static_cast<double>(std::accumulate(layer_bytes.begin(), layer_bytes.end(), size_t{0}));
    std::vector<int64_t> out;
    int64_t begin = 0;
    double acc = 0.0;
    for (int s = 0; s < n_stages; ++s) {
        const int remaining_stages = n_stages - s - 1;
        const double target = total * static_cast<double>(s + 1) / n_stages;
        int64_t end = begin + 1;
        acc += static_cast<double>(layer_bytes[static_cast<size_t>(begin)]);
        while (end < n_layer - remaining_stages &&
               acc + 0.5 * static_cast<double>(layer_bytes[static_cast<size_t>(end)]) <= target) {
            acc += static_cast<double>(layer_bytes[static_cast<size_t>(end)]);
            ++end;
        }
        if (s == n_stages - 1) {
            for (int64_t l = end; l < n_layer; ++l) acc += static_cast<double>(layer_bytes[static_cast<size_t>(l)]);
            end = n_layer;
        }
        out.push_back(end - begin);
        begin = end;
    }
    return out;
}

} // namespace pipeinfer
