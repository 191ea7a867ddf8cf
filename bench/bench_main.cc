#include "bench/bench_main.h"

#include <iostream>
#include <optional>
#include <utility>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "bench/bench_request.h"
#include "bench/cli_usage.h"
#include "bench/gpu_run.h"
#include "bench/prediction.h"
#include "bench/report.h"
#include "workloads/gpu_datasheet.h"

ABSL_FLAG(std::string, model, "70b",
          "model: 8b, 70b, 405b, mistral-7b, a built-in file stem, or a path to a .textproto");
ABSL_FLAG(std::string, batch, "1..256",
          "batch sizes: 1..256 (doubling), 8..64:+8 (steps), 1..256:*4, or a list 1,3,8; a range "
          "includes its end (1..100: 1, 2, 4, ..., 64, 100)");
ABSL_FLAG(int64_t, tp, 1,
          "tensor-parallel degree: one shard's shapes run on one GPU; communication not modelled");
ABSL_FLAG(std::string, gpu, "",
          "datasheet to predict for (--predict) or compare against (default: the detected GPU)");
ABSL_FLAG(bool, predict, false, "print the roofline prediction only; needs no GPU");
ABSL_FLAG(bool, graph, true, "capture the whole step in a CUDA graph (false: eager launches)");
ABSL_FLAG(bool, verify, true, "check a reduced-size step, and each point's GEMMs as chosen, against references before timing");
ABSL_FLAG(std::string, profile, "step",
          "hardware counters (CUPTI), in a pass of their own after timing: off, step (one range "
          "per step) or ops (also one range per op kind)");
ABSL_FLAG(std::string, gemm, "auto",
          "projections: cublaslt, own (the project's skinny GEMM for GEMMs of <= 32 rows, "
          "cuBLASLt for larger), own_w8a8 (fp8 weights: the skinny GEMM on activations "
          "quantized per token to e4m3), or auto (where several can, all timed per shape at "
          "start-up on the step's buffers, the fastest runs; recorded per op)");
ABSL_FLAG(std::optional<double>, usd_per_gpu_hour, std::nullopt,
          "GPU price per hour for the $/Mtok column (default: the datasheet's public on-demand "
          "price; 0 for a GPU whose hours cost nothing; at most 1e6)");
ABSL_FLAG(std::string, ceilings, "",
          "bench_ceilings --json file of this GPU, the measured denominators of mbu_measured and "
          "mfu_measured; empty: measure at start-up the read and the bf16 GEMM rate (and fp8's "
          "for fp8 weights), burst and held (about 18 s for bf16 weights on an H200, longer for "
          "fp8); none: skip");
ABSL_FLAG(std::string, weights, "",
          "weight dtype of the blocks' linear layers: bf16 or fp8 (e4m3, per-output-channel "
          "fp32 scales; embedding and LM head stay bf16); default: the model spec's");
ABSL_FLAG(std::string, calibrate, "",
          "with --predict: a result JSON measured on another GPU; each point's bound is scaled "
          "by the roofline efficiency measured there (projected_tokens_per_s)");
ABSL_FLAG(std::string, csv, "", "write the points as CSV to this path");
ABSL_FLAG(std::string, json, "", "write the RunResult as JSON (protobuf mapping) to this path");
ABSL_FLAG(bool, overwrite, false, "replace existing --csv/--json files");

namespace truthput {

int BenchMain(const std::string& tool, Phase phase, int argc, char** argv,
              const std::function<void(BenchFlagValues&)>& read_phase_flags) {
  SetCommandLineUsage(absl::StrCat(
      PhaseName(phase),
      " steps of an LLM, measured on the GPU against the roofline.\nExample: ", tool,
      " --model=70b --batch=1..256", phase == Phase::kDecode ? " --context=2048" : " --seq=512..8192",
      "\n         ", tool, " --model=70b --batch=1..256 --predict --gpu=h100-sxm"));
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  if (positional.size() > 1) {
    std::cerr << tool << ": unexpected argument '" << positional[1] << "' (flags are --name=value)\n";
    return 2;
  }
  BenchFlagValues f;
  f.model = absl::GetFlag(FLAGS_model);
  f.batch = absl::GetFlag(FLAGS_batch);
  f.tp = absl::GetFlag(FLAGS_tp);
  f.gpu = absl::GetFlag(FLAGS_gpu);
  f.predict = absl::GetFlag(FLAGS_predict);
  f.graph = absl::GetFlag(FLAGS_graph);
  f.verify = absl::GetFlag(FLAGS_verify);
  f.profile = absl::GetFlag(FLAGS_profile);
  f.gemm = absl::GetFlag(FLAGS_gemm);
  f.usd_per_gpu_hour = absl::GetFlag(FLAGS_usd_per_gpu_hour);
  f.ceilings = absl::GetFlag(FLAGS_ceilings);
  f.calibrate = absl::GetFlag(FLAGS_calibrate);
  f.weights = absl::GetFlag(FLAGS_weights);
  f.csv = absl::GetFlag(FLAGS_csv);
  f.json = absl::GetFlag(FLAGS_json);
  f.overwrite = absl::GetFlag(FLAGS_overwrite);
  read_phase_flags(f);

  absl::StatusOr<BenchRequest> request = MakeBenchRequest(tool, phase, f);
  if (!request.ok()) {
    std::cerr << tool << ": " << request.status().message() << "\n";
    return 2;
  }
  std::vector<std::string> args(argv, argv + argc);
  request->command_line = absl::StrJoin(args, " ");

  absl::StatusOr<RunResult> result;
  absl::Status stopped;  // a GPU sweep that ended early: its points are still printed and written
  int stop_signal = 0;   // the signal that ended it (SIGINT, SIGTERM, SIGHUP), or 0
  if (request->predict) {
    result = Predict(*request, *FindGpu(request->gpu_arg));
    if (result.ok() && !request->calibrate_path.empty()) {
      absl::StatusOr<RunResult> measured = LoadResultJson(request->calibrate_path);
      if (!measured.ok()) {
        std::cerr << tool << ": --calibrate=" << measured.status().message() << "\n";
        return 2;
      }
      if (absl::Status st = ApplyCalibration(*measured, request->calibrate_path, *result);
          !st.ok()) {
        std::cerr << tool << ": " << st.message() << "\n";
        return 2;
      }
    }
  } else {
    absl::StatusOr<GpuRun> run = RunOnGpu(*request, std::cout);
    if (run.ok()) {
      result = std::move(run->result);
      stopped = run->stopped;
      stop_signal = run->signal;
    } else {
      result = run.status();
    }
  }
  if (!result.ok()) {
    std::cerr << tool << ": " << result.status().message() << "\n";
    return 1;
  }
  PrintTable(*result, std::cout);

  int rc = 0;
  if (!request->csv_path.empty()) {
    absl::Status st = WriteFileAtomically(request->csv_path, FormatCsv(*result), request->overwrite);
    if (!st.ok()) {
      std::cerr << tool << ": " << st.message() << "\n";
      rc = 1;
    } else {
      std::cout << "wrote " << request->csv_path << "\n";
    }
  }
  if (!request->json_path.empty()) {
    absl::StatusOr<std::string> json = FormatJson(*result);
    absl::Status st = json.ok() ? WriteFileAtomically(request->json_path, *json, request->overwrite)
                                : json.status();
    if (!st.ok()) {
      std::cerr << tool << ": " << st.message() << "\n";
      rc = 1;
    } else {
      std::cout << "wrote " << request->json_path << "\n";
    }
  }
  // The table may be the only copy (no --csv or --json): a full disk or a closed pipe is said.
  if (!(std::cout << std::flush)) {
    std::cerr << tool << ": writing standard output failed\n";
    rc = 1;
  }
  if (!stopped.ok()) {
    std::cerr << tool << ": incomplete: " << stopped.message()
              << " (the points measured before it are kept)\n";
    // 128 + the signal is the shell's code for a process it ended: 130 for Ctrl-C, 143 for
    // SIGTERM.
    return absl::IsCancelled(stopped) && stop_signal > 0 ? 128 + stop_signal : 1;
  }
  return rc;
}

}  // namespace truthput
