#include "model/arch.h"

#include "common/error.h"
#include "gguf/gguf-reader.h"

namespace pipeinfer {

namespace {

const arch_def* const k_archs[] = {&arch_llama, &arch_qwen2, &arch_qwen2moe, &arch_qwen3,
                                   &arch_qwen3moe, &arch_gemma3, &arch_phi3};

} // namespace

const arch_def& find_arch(const gguf_file& f, const std::string& name) {
    std::string names;
    for (const arch_def* a : k_archs) {
        if (name == a->name) return *a;
        names += names.empty() ? a->name : std::string(", ") + a->name;
    }
    throw unsupported_type(format("%s: architecture '%s' is not supported (supported: %s)", f.source().c_str(),
                                  name.c_str(), names.c_str()));
}

const arch_def& arch_of(llm_arch arch) {
    for (const arch_def* a : k_archs) {
        if (a->arch == arch) return *a;
    }
    throw std::logic_error("arch_of: an llm_arch without a table entry");
}

} // namespace pipeinfer
