#include "workloads/model_registry.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"
#include "workloads/embedded_specs.h"

namespace truthput {
namespace {

// Short names users type, mapped to files under workloads/models/.
struct Alias {
  const char* alias;
  const char* file;
};
constexpr Alias kAliases[] = {
    {"8b", "workloads/models/llama-3.1-8b.textproto"},
    {"70b", "workloads/models/llama-3.1-70b.textproto"},
    {"405b", "workloads/models/llama-3.1-405b.textproto"},
    {"mistral-7b", "workloads/models/mistral-7b-v0.3.textproto"},
};

// Keeps the first parse error, with its position, for a one-line message.
class FirstErrorCollector : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, google::protobuf::io::ColumnNumber column,
                const std::string& message) override {
    if (error_.empty()) error_ = absl::StrCat(line + 1, ":", column + 1, ": ", message);
  }
  const std::string& error() const { return error_; }

 private:
  std::string error_;
};

}  // namespace

absl::StatusOr<ModelSpec> ParseModelSpec(absl::string_view text, absl::string_view origin) {
  ModelSpec spec;
  FirstErrorCollector errors;
  google::protobuf::TextFormat::Parser parser;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(std::string(text), &spec)) {
    return absl::InvalidArgumentError(
        absl::StrCat("model spec ", origin, ":", errors.error()));
  }
  if (absl::Status st = ValidateModelSpec(spec); !st.ok()) {
    // The code stays ValidateModelSpec's: a model not modelled yet (Unimplemented) is not a typo.
    return absl::Status(st.code(), absl::StrCat("model spec ", origin, ": ", st.message()));
  }
  return spec;
}

absl::Status ValidateModelSpec(const ModelSpec& s) {
  // The name heads every table and names the results; a blank one leaves them unlabeled.
  if (absl::StripAsciiWhitespace(s.name()).empty()) {
    return absl::InvalidArgumentError("name must not be empty");
  }
  const std::pair<const char*, uint64_t> sizes[] = {
      {"hidden_size", s.hidden_size()}, {"num_layers", s.num_layers()},
      {"num_heads", s.num_heads()},     {"num_kv_heads", s.num_kv_heads()},
      {"head_dim", s.head_dim()},       {"ffn_size", s.ffn_size()},
      {"vocab_size", s.vocab_size()},
  };
  for (const auto& [field, value] : sizes) {
    if (value == 0) return absl::InvalidArgumentError(absl::StrCat(field, " must be > 0"));
  }
  if (s.num_heads() % s.num_kv_heads() != 0) {
    return absl::InvalidArgumentError(absl::StrCat("num_heads (", s.num_heads(),
                                                   ") is not divisible by num_kv_heads (",
                                                   s.num_kv_heads(), ")"));
  }
  if (s.head_dim() % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat("head_dim (", s.head_dim(),
                                                   ") must be even for rotary embeddings"));
  }
  if (s.weight_dtype() != BF16 && s.weight_dtype() != FP16 && s.weight_dtype() != FP8_E4M3) {
    return absl::InvalidArgumentError("weight_dtype must be BF16, FP16 or FP8_E4M3");
  }
  if (s.kv_dtype() != BF16 && s.kv_dtype() != FP16 && s.kv_dtype() != FP8_E4M3) {
    return absl::InvalidArgumentError("kv_dtype must be BF16, FP16 or FP8_E4M3");
  }
  // 0 (left out) means the usual default (theta 10000, eps 1e-5); anything else must be usable.
  if (!std::isfinite(s.rope_theta()) || s.rope_theta() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("rope_theta must be a positive number (or 0 for 10000), got ", s.rope_theta()));
  }
  if (!std::isfinite(s.rms_norm_eps()) || s.rms_norm_eps() < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rms_norm_eps must be a positive number (or 0 for 1e-5), got ", s.rms_norm_eps()));
  }
  if (s.num_experts() != 0) {
    return absl::UnimplementedError("mixture-of-experts models (num_experts > 0) are not modelled yet");
  }
  return absl::OkStatus();
}

absl::StatusOr<ModelSpec> LoadModel(absl::string_view name_or_path) {
  if (absl::EndsWith(name_or_path, ".textproto")) {
    // A folder opens as a stream that reads nothing, which would parse as an empty spec.
    if (std::error_code ec; std::filesystem::is_directory(std::string(name_or_path), ec)) {
      return absl::InvalidArgumentError(
          absl::StrCat(name_or_path, " is a folder; name a model's .textproto file"));
    }
    std::ifstream in{std::string(name_or_path)};
    if (!in) {
      return absl::NotFoundError(absl::StrCat("cannot read model file ", name_or_path));
    }
    std::stringstream text;
    text << in.rdbuf();
    return ParseModelSpec(text.str(), name_or_path);
  }
  const std::string wanted = absl::AsciiStrToLower(name_or_path);
  std::string file;
  for (const Alias& a : kAliases) {
    if (wanted == a.alias) file = a.file;
  }
  for (const EmbeddedSpec& e : EmbeddedSpecs()) {
    if (!absl::StartsWith(e.path, "workloads/models/")) continue;
    const absl::string_view stem = e.path.substr(17, e.path.size() - 17 - 10);
    if (file.empty() && wanted == stem) file = std::string(e.path);
    if (file == e.path) return ParseModelSpec(e.text, e.path);
  }
  // Display names ("Llama-3.1-70B") match too.
  for (const EmbeddedSpec& e : EmbeddedSpecs()) {
    if (!absl::StartsWith(e.path, "workloads/models/")) continue;
    absl::StatusOr<ModelSpec> spec = ParseModelSpec(e.text, e.path);
    if (spec.ok() && absl::AsciiStrToLower(spec->name()) == wanted) return spec;
  }
  return absl::NotFoundError(absl::StrCat("unknown model '", name_or_path, "'; known: ",
                                          absl::StrJoin(KnownModelNames(), ", "),
                                          ", or a path to a .textproto"));
}

std::vector<std::string> KnownModelNames() {
  std::vector<std::string> names;
  for (const Alias& a : kAliases) names.push_back(a.alias);
  for (const EmbeddedSpec& e : EmbeddedSpecs()) {
    if (absl::StartsWith(e.path, "workloads/models/")) {
      names.emplace_back(e.path.substr(17, e.path.size() - 17 - 10));
    }
  }
  return names;
}

}  // namespace truthput
