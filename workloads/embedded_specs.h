// The textproto files under workloads/ (models, GPU datasheets), compiled into the binaries.
#ifndef TRUTHPUT_WORKLOADS_EMBEDDED_SPECS_H_
#define TRUTHPUT_WORKLOADS_EMBEDDED_SPECS_H_

#include "absl/strings/string_view.h"
#include <vector>

namespace truthput {

struct EmbeddedSpec {
  absl::string_view path;  // relative to the source root, e.g. "workloads/models/llama-3.1-70b.textproto"
  absl::string_view text;
};

const std::vector<EmbeddedSpec>& EmbeddedSpecs();

}  // namespace truthput

#endif  // TRUTHPUT_WORKLOADS_EMBEDDED_SPECS_H_
