// libFuzzer target for the GGUF reader and the hyperparameter reader on top of it (fuzz/run.sh builds it
// with -fsanitize=fuzzer,address,undefined). Feeds the input as a whole file to gguf_file::from_buffer,
// then reads every metadata value through every typed getter, touches the first and last byte of every
// tensor, reads the model hyperparameters, checks the whole tensor set and binds every weight. The contract
// checked: a malformed file raises a typed error (gguf_error, model_error, unsupported_type,
// std::invalid_argument); anything else is a finding (an uncaught or untyped exception aborts here, and
// ASan/UBSan report memory and arithmetic faults). Owns no parsing logic.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <string>

#include "common/error.h"
#include "gguf/gguf-reader.h"
#include "model/hparams.h"
#include "model/weights.h"

namespace {

using namespace pipeinfer;

// Runs f; a typed error is an accepted outcome, any other exception aborts (a finding).
template <class F>
void expect_typed(const char* what, F&& f) {
    try {
        f();
    } catch (const gguf_error&) {
    } catch (const model_error&) {
    } catch (const std::invalid_argument&) {  // shape_error, unsupported_type
    } catch (const std::exception& e) {
        std::fprintf(stderr, "untyped exception from %s: %s\n", what, e.what());
        std::abort();
    }
}

volatile uint8_t sink;

void read_everything(const gguf_file& f) {
    for (const auto& kv : f.kv()) {
        const std::string& key = kv.first;
        sink = static_cast<uint8_t>(gguf_type_spelling(kv.second).size());
        expect_typed("get_str", [&] { sink = static_cast<uint8_t>(f.get_str(key).size()); });
        expect_typed("get_int", [&] { sink = static_cast<uint8_t>(f.get_int(key)); });
        expect_typed("get_float", [&] { sink = static_cast<uint8_t>(f.get_float(key) > 0.0); });
        expect_typed("get_bool", [&] { sink = static_cast<uint8_t>(f.get_bool(key)); });
        expect_typed("get_str_array", [&] { sink = static_cast<uint8_t>(f.get_str_array(key).size()); });
        expect_typed("get_f32_array", [&] { sink = static_cast<uint8_t>(f.get_f32_array(key).size()); });
        expect_typed("get_i32_array", [&] { sink = static_cast<uint8_t>(f.get_i32_array(key).size()); });
    }
    for (const auto& t : f.tensors()) {
        if (f.find_tensor(t.name) != &t) std::abort();  // the index must find every tensor
        if (t.nbytes > 0) sink = static_cast<uint8_t>(t.data[0] ^ t.data[t.nbytes - 1]);
    }
    expect_typed("model", [&] {
        const llama_hparams hp = hparams_from_gguf(f);
        check_model_tensors(f, hp);  // the whole tensor set and the vocabulary metadata
        const stage_weights w = bind_stage_weights(f, hp, 0, hp.n_layer);  // every weight bound
        sink = static_cast<uint8_t>(w.layers.size());
    });
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::unique_ptr<gguf_file> f;
    expect_typed("from_buffer", [&] { f = gguf_file::from_buffer(data, size, "fuzz input"); });
    if (f) read_everything(*f);
    return 0;
}
