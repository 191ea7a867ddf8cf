// Finding, parsing and validating model specs: built-in aliases ("70b") or a user's textproto.
#ifndef TRUTHPUT_WORKLOADS_MODEL_REGISTRY_H_
#define TRUTHPUT_WORKLOADS_MODEL_REGISTRY_H_

#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/statusor.h"
#include "workloads/model_spec.pb.h"

namespace truthput {

// Parses a ModelSpec textproto and validates it. `origin` names the text in errors.
// Unknown fields and syntax errors are errors, with the line and column.
absl::StatusOr<ModelSpec> ParseModelSpec(absl::string_view text, absl::string_view origin);

// Checks that every size is non-zero and the shapes are consistent (heads divisible by KV heads).
absl::Status ValidateModelSpec(const ModelSpec& spec);

// `name_or_path`: a built-in alias ("8b", "70b", "405b", "mistral-7b"), a built-in model's
// file stem ("llama-3.1-70b") or display name, or a path ending in ".textproto".
absl::StatusOr<ModelSpec> LoadModel(absl::string_view name_or_path);

// The aliases LoadModel accepts, for help and error messages.
std::vector<std::string> KnownModelNames();

}  // namespace truthput

#endif  // TRUTHPUT_WORKLOADS_MODEL_REGISTRY_H_
