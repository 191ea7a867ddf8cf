#include "bench/gpu_run.h"

#include <cuda_runtime_api.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/ceilings.h"
#include "bench/ceilings_io.h"
#include "bench/cupti_range_profiler.h"
#include "bench/device_info.h"
#include "bench/gpu_timer.h"
#include "bench/machine_info.h"
#include "bench/measured_columns.h"
#include "bench/nvml_sampler.h"
#include "bench/nvtx_range.h"
#include "bench/prediction.h"
#include "bench/stats.h"
#include "bench/step_runner.h"
#include "bench/step_verifier.h"
#include "bench/sweep.h"
#include "kernels/cublaslt_gemm.h"
#include "kernels/cuda_status.h"
#include "kernels/device_code.h"
#include "workloads/gpu_datasheet.h"

namespace truthput {
namespace {

// Memory left to cuBLASLt, graphs and the CUDA context beyond what the runner allocates.
constexpr int64_t kReserveBytes = int64_t{3} << 29;  // 1.5 GiB

absl::StatusOr<int64_t> FreeBytes() {
  size_t free = 0, total = 0;
  TP_CUDA_RETURN_IF_ERROR(cudaMemGetInfo(&free, &total));
  return static_cast<int64_t>(free) - kReserveBytes;
}

// The reduced-size step checked against the CPU reference before anything is timed.
absl::Status Verify(const BenchRequest& request, const DeviceIdentity& id, CublasLtGemm* gemm,
                    cudaStream_t stream, std::ostream& log) {
  absl::StatusOr<ModelSpec> reduced = ReducedForVerification(request.model);
  if (!reduced.ok()) return reduced.status();
  const StepConfig step = ReducedStepForVerification(request.Steps().front());
  absl::StatusOr<Workload> w = Workload::Build(*reduced, step);
  if (!w.ok()) return w.status();
  absl::StatusOr<int64_t> free = FreeBytes();
  if (!free.ok()) return free.status();
  // Every GEMM implementation the run may use is checked.
  const std::vector<std::string> variants =
      GemmVariantsToVerify(request.gemm, reduced->weight_dtype() == FP8_E4M3);
  for (const std::string& variant : variants) {
    absl::StatusOr<std::unique_ptr<StepRunner>> runner =
        StepRunner::Create(*w, gemm,
                           {.free_bytes = *free, .l2_bytes = id.l2_bytes,
                            .sm_count = id.sm_count, .dram_gbps = DramPeakGbps(id),
                            .seed = 99, .gemm = variant,
                            // VerifyStep checks these GEMMs itself, against the CPU.
                            .check_gemms = false},
                           stream);
    if (!runner.ok()) return runner.status();
    absl::Status st = VerifyStep(**runner, stream);
    if (!st.ok()) {
      return absl::InternalError(absl::StrCat(st.message(), " (projections: ", variant, ")"));
    }
  }
  log << absl::StrFormat(
      "verify: ok: every op of a reduced step (%s with %d layers, vocab %d, batch %d, context "
      "%d, %d new tokens; projections by %s) matches the CPU reference; each point's GEMMs, as "
      "chosen for its shape, are checked against a reference GEMM before it is timed\n",
      reduced->name(), reduced->num_layers(), reduced->vocab_size(), step.batch, step.context,
      step.seq_len, absl::StrJoin(variants, " and "));
  return absl::OkStatus();
}

// What nvidia-smi would have said: NVML sampled while steps run back to back for at least
// 1.5 s, apart from the timed pass, whose per-round gating would skew it. The same steps run
// 1 s unsampled first: NVML's utilization and power readings average about the last second, so
// sampled right away they would still weigh the work before the pass (a bf16 GEMM loop after
// idle read 389 W on an H200 whose energy counter said 663 W).
absl::Status NvmlPass(NvmlSampler& nvml, const std::function<absl::Status(cudaStream_t)>& step,
                      double step_ms, int gpus, cudaStream_t stream, BatchPoint& p,
                      std::set<std::string>& unavailable) {
  const int per_batch = std::max(2, static_cast<int>(250.0 / std::max(step_ms, 0.01)));
  // Runs steps back to back for `ms` and at least 3 steps; returns how many ran.
  auto run_for = [&](int64_t ms) -> absl::StatusOr<int64_t> {
    int64_t steps = 0;
    const absl::Time start = absl::Now();
    while (absl::Now() - start < absl::Milliseconds(ms) || steps < 3) {
      for (int i = 0; i < per_batch; ++i) TP_RETURN_IF_ERROR(step(stream));
      steps += per_batch;
      TP_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
    }
    return steps;
  };
  if (absl::StatusOr<int64_t> lead_in = run_for(1000); !lead_in.ok()) return lead_in.status();
  nvml.Start();
  const absl::StatusOr<int64_t> steps = run_for(1500);
  const NvmlSummary s = nvml.Stop();
  if (!steps.ok()) return steps.status();
  SetNvmlColumns(s, *steps, gpus, p);
  for (const std::string& u : s.unavailable) unavailable.insert(absl::StrCat("NVML ", u));
  return absl::OkStatus();
}

// The hardware counters of one step (and, for --profile=ops, of each op kind), each in a user
// range replayed once per counter pass. Work must be idempotent: a step overwrites its
// activations and appends K/V at the same position every time.
absl::Status CuptiPass(CuptiRangeProfiler& cupti, const Workload& w, const StepRunner& r,
                       const std::function<absl::Status(cudaStream_t)>& step, bool graph,
                       bool per_op, cudaStream_t stream, BatchPoint& p) {
  absl::StatusOr<RangeMetrics> m = cupti.Profile("step", step, stream);
  if (!m.ok()) return m.status();
  SetStepCounterColumns(ToTruthColumns(*m), w, p);
  if (!per_op) return absl::OkStatus();

  // One range per op kind, all its executions in it, in one session.
  std::vector<GraphExecPtr> graphs;
  std::vector<std::pair<std::string, RangeWork>> ranges;
  for (size_t i = 0; i < w.ops().size(); ++i) {
    auto enqueue = [&r, i](cudaStream_t s) { return r.EnqueueOp(i, s); };
    if (graph) {
      absl::StatusOr<GraphExecPtr> g = CaptureGraph(enqueue, stream);
      if (!g.ok()) return g.status();
      cudaGraphExec_t exec = g->get();
      graphs.push_back(*std::move(g));
      ranges.emplace_back(w.ops()[i].name, [exec](cudaStream_t s) {
        return CudaStatus(cudaGraphLaunch(exec, s), "cudaGraphLaunch");
      });
    } else {
      ranges.emplace_back(w.ops()[i].name, enqueue);
    }
  }
  absl::StatusOr<std::vector<RangeMetrics>> per = cupti.ProfileMany(ranges, stream);
  if (!per.ok()) return per.status();
  for (size_t i = 0; i < per->size(); ++i) {
    SetOpCounterColumns(ToTruthColumns((*per)[i]), *p.mutable_ops(static_cast<int>(i)));
  }
  return absl::OkStatus();
}

std::function<absl::Status(const StepConfig&)>& AfterRunnerMadeHook() {
  static auto* hook = new std::function<absl::Status(const StepConfig&)>;
  return *hook;
}

void AddMeasured(BatchPoint& p, const TimingStats& t, const GpuSpec& g, DType dtype,
                 std::optional<double> usd_per_hour, int gpus) {
  p.set_step_ms_p50(t.p50_ms);
  if (t.p99_ms) p.set_step_ms_p99(*t.p99_ms);
  p.set_step_rel_spread(t.rel_spread);
  if (std::isfinite(t.rel_ci)) p.set_step_ms_p50_rel_ci(t.rel_ci);
  p.set_reps(t.reps);
  for (double ms : t.samples_ms) p.add_step_ms_samples(std::round(ms * 1e4) / 1e4);
  SetMeasuredRates(p, g, dtype, usd_per_hour, gpus);
  for (std::string& note : StepTimingNotes(t)) p.add_notes(std::move(note));
}

}  // namespace

absl::StatusOr<GpuRun> RunOnGpu(const BenchRequest& request, std::ostream& log) {
  // The step runner's kernels: bf16 or fp8 block weights, bf16 everything else.
  const DType wt = request.model.weight_dtype();
  if ((wt != BF16 && wt != FP8_E4M3) || request.model.kv_dtype() != BF16) {
    return absl::UnimplementedError(absl::StrCat(
        "the GPU step runs bf16 or fp8 weights with a bf16 KV cache; this model has ",
        DType_Name(wt), " weights and a ", DType_Name(request.model.kv_dtype()),
        " KV cache (--predict models it)"));
  }
  // Without a GPU, or its code, only the roofline prediction can run: each error says how.
  absl::StatusOr<DeviceIdentity> id = ReadDeviceIdentity(0);
  if (absl::IsFailedPrecondition(id.status())) {
    return absl::FailedPreconditionError(
        absl::StrCat(id.status().message(),
                     "; for the roofline prediction without a GPU add --predict --gpu=h100-sxm"));
  }
  if (!id.ok()) return id.status();
  TP_CUDA_RETURN_IF_ERROR(cudaSetDevice(id->device));
  if (absl::Status code = CheckDeviceCode(); !code.ok()) {
    absl::StatusOr<GpuSpec> own = FindGpuByDeviceName(id->name);
    return absl::FailedPreconditionError(absl::StrCat(
        code.message(), own.ok() ? absl::StrCat("; --predict --gpu=", own->id(), " models it")
                                 : ""));
  }
  absl::StatusOr<GpuSpec> datasheet =
      request.gpu_arg.empty() ? FindGpuByDeviceName(id->name) : FindGpu(request.gpu_arg);
  if (!datasheet.ok()) return datasheet.status();

  RunResult result = NewRunResult(request, *datasheet);
  *result.mutable_machine() = ToMachineInfo(*id);
  result.mutable_config()->set_gemm(
      absl::StrCat(request.gemm, " (cuBLASLt ", CublasLtGemm::Version(), ")"));
  if (!request.graph) {
    result.mutable_config()->add_notes("--graph=false: eager launches, launch overhead included");
  }
  log << "GPU: " << id->name << " (" << id->sm_count << " SMs, " << id->memory_bytes / 1e9
      << " GB); datasheet " << datasheet->id() << "\n";

  cudaStream_t stream = nullptr;
  TP_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  absl::Cleanup destroy_stream = [stream] { cudaStreamDestroy(stream); };
  absl::StatusOr<std::unique_ptr<CublasLtGemm>> gemm = CublasLtGemm::Create();
  if (!gemm.ok()) return gemm.status();

  if (request.verify) {
    TP_RETURN_IF_ERROR(Verify(request, *id, gemm->get(), stream, log));
  } else {
    result.mutable_config()->add_notes("--verify=false: the correctness checks were skipped");
  }

  std::set<std::string> unavailable;
  // The measured roofline: this GPU's own ceilings, the second denominator of MBU and MFU.
  std::optional<MeasuredCeilings> measured;
  if (request.ceilings_path == "none") {
    unavailable.insert("mbu_measured, mfu_measured: --ceilings=none");
  } else {
    absl::StatusOr<MeasuredCeilings> m;
    if (request.ceilings_path.empty()) {
      log << "ceilings: no --ceilings file; measuring what this run divides by (bench_ceilings "
             "--quick, read and GEMM only)\n";
      std::ostringstream ceilings_log;
      const absl::Time start = absl::Now();
      m = MeasureCeilings({.quick = true,
                           .run_weights = wt,
                           .command_line = "bench_ceilings --quick (in-run)"},
                          ceilings_log);
      if (m.ok()) {
        log << absl::StrFormat("ceilings: measured in %.1f s\n",
                               absl::ToDoubleSeconds(absl::Now() - start));
      }
    } else if (!request.ceilings.has_value()) {
      return absl::FailedPreconditionError(
          absl::StrCat("--ceilings=", request.ceilings_path, ": the file was not loaded"));
    } else if (absl::Status st = CheckCeilingsGpu(*request.ceilings, id->name); !st.ok()) {
      return absl::Status(st.code(),
                          absl::StrCat("--ceilings=", request.ceilings_path, ": ", st.message()));
    } else {
      m = *request.ceilings;
    }
    if (!m.ok()) return m.status();
    measured = *std::move(m);
    result.mutable_config()->add_notes(absl::StrCat(
        "mbu_measured/mfu_measured against ",
        request.ceilings_path.empty() ? "ceilings measured at start-up" : request.ceilings_path,
        ": ", MeasuredDenominatorsText(*measured, wt)));
    if (std::string other = CeilingsFromAnotherCardNote(*measured, id->uuid); !other.empty()) {
      result.mutable_config()->add_notes(std::move(other));
    }
    // A co-tenant while the ceilings were measured lowered them (mbu_measured and mfu_measured
    // read too high), and an unsettled denominator is a loose one: only the ceilings' own notes
    // would say so.
    for (const std::string& note : DenominatorNotes(*measured, wt)) {
      result.mutable_config()->add_notes(absl::StrCat("ceilings: ", note));
    }
  }

  if (const std::string other = DatasheetMismatch(*datasheet, id->name, id->sm_count);
      !other.empty()) {
    result.mutable_config()->add_notes(absl::StrCat(
        "mbu, mfu and the bounds are against another GPU's peaks: ", other,
        measured ? "; mbu_measured and mfu_measured are against this GPU's own measured ceilings"
                 : ""));
  }

  // The truth columns' tools. Where one cannot work, its columns read n/a with the reason,
  // once, and the run goes on.
  std::unique_ptr<NvmlSampler> nvml;
  if (absl::StatusOr<std::unique_ptr<NvmlSampler>> n = NvmlSampler::Create(id->uuid); n.ok()) {
    nvml = *std::move(n);
  } else {
    unavailable.insert(absl::StrCat("smi_util_pct, smi_mem_util_pct, gpm_*, sm_clock_mhz, "
                                    "power_w, joules_per_token, throttle, gpu_temp_c: ",
                                    n.status().message()));
  }
  std::unique_ptr<CuptiRangeProfiler> cupti;
  const std::string kCuptiColumns =
      "sm_active_pct, tensor_active_pct, dram_*, hw_tflops, tensor_flops_over_model, "
      "occupancy_pct, l2_hit_pct";
  if (request.profile == "off") {
    unavailable.insert(absl::StrCat(kCuptiColumns, ": --profile=off"));
  } else if (absl::StatusOr<std::unique_ptr<CuptiRangeProfiler>> c =
                 CuptiRangeProfiler::Create(id->device, TruthMetricNames());
             c.ok()) {
    cupti = *std::move(c);
    for (const std::string& m : cupti->unsupported_metrics()) {
      unavailable.insert(absl::StrCat("CUPTI metric ", m, ": not supported on ", cupti->chip()));
    }
  } else {
    unavailable.insert(absl::StrCat(kCuptiColumns, ": ", c.status().message()));
  }

  // Other processes on this GPU, read as a point starts and after its last pass: a co-tenant
  // takes bandwidth and SMs from the timed steps, and nvidia-smi counts its kernels too.
  auto read_processes = [&nvml, &unavailable](std::vector<GpuProcess>& seen) {
    if (nvml == nullptr) return;
    absl::StatusOr<std::vector<GpuProcess>> now = nvml->ComputeProcesses();
    if (!now.ok()) {
      unavailable.insert(absl::StrCat("other processes on this GPU: ", now.status().message()));
      return;
    }
    seen.insert(seen.end(), now->begin(), now->end());
  };

  const DType dtype = request.model.weight_dtype();
  const std::optional<double> usd =
      result.config().has_usd_per_gpu_hour()
          ? std::optional<double>(result.config().usd_per_gpu_hour())
          : std::nullopt;
  const int tp = static_cast<int>(result.config().tp());
  // One point of the sweep measured into *p; ResourceExhausted where it does not fit.
  auto measure_point = [&](const StepConfig& step, BatchPoint* p) -> absl::Status {
    absl::StatusOr<Workload> w = Workload::Build(request.model, step);
    if (!w.ok()) return w.status();
    absl::StatusOr<int64_t> free = FreeBytes();
    if (!free.ok()) return free.status();
    absl::StatusOr<std::unique_ptr<StepRunner>> runner = StepRunner::Create(
        *w, gemm->get(),
        {.free_bytes = *free,
         .l2_bytes = id->l2_bytes,
         .sm_count = id->sm_count,
         .dram_gbps = DramPeakGbps(*id),
         .seed = 1,
         .gemm = request.gemm,
         .check_gemms = request.verify},
        stream);
    if (!runner.ok()) return runner.status();
    if (const auto hook = AfterRunnerMadeHook(); hook) TP_RETURN_IF_ERROR(hook(step));
    const StepRunner& r = **runner;
    // The runner's op list counts the activation bytes of the paths --gemm=auto chose.
    *p = PredictPoint(r.workload(), *datasheet, id->memory_bytes);
    p->set_residency(r.residency().Describe());
    std::vector<GpuProcess> processes;
    read_processes(processes);

    const NvtxRange point_range(absl::StrCat(PhaseName(step.phase), " batch=", step.batch,
                                             " context=", step.context));
    // A step bounded at 200 ms or less (decode, short prefills) is timed at least 100 times, so
    // its p99 is one (kMinSamplesForP99): 100 steps, at most 90 s after the warm-up. Longer
    // steps (large prefills, decode of thousands of tokens) get short rounds and 6 reps, a
    // median without a p99. The roofline bound decides before anything runs.
    const bool long_step = p->bound_ms() > 200;
    TimingOptions step_timing;
    step_timing.use_graph = request.graph;
    // 5 s of untimed rounds first: from idle, a step that meets the power cap runs its first
    // ~0.8 s fast (the power mean not yet at the cap), then the clock falls hard and swings for
    // seconds. Timed from the start, that swing was the p99 (H200, 70B batch 64 and 128: +7.9%
    // to +11.9% over the median; +0.8% and +2.3% after the warm-up;
    // results/h200/p99_warmup_experiment.txt).
    step_timing.warmup_seconds = 5;
    if (long_step) {
      step_timing.warmup = 1;
      step_timing.reps_per_round = 2;
      step_timing.min_reps = 6;
      step_timing.max_seconds = 20;
    } else {
      step_timing.min_reps = kMinSamplesForP99;
      step_timing.max_seconds = 30;
    }
    absl::StatusOr<TimingStats> t = TimeGpuWork(
        [&r](cudaStream_t s) {
          const NvtxRange range("step");
          return r.EnqueueStep(s);
        },
        stream, step_timing);
    if (!t.ok()) return t.status();
    AddMeasured(*p, *t, *datasheet, dtype, usd, tp);
    if (!t->p99_ms) {
      unavailable.insert(absl::StrCat("step_ms_p99: empty where fewer than ", kMinSamplesForP99,
                                      " steps were timed (see reps): of fewer, a 99th "
                                      "percentile is about their slowest"));
    }
    if (measured) AddMeasuredAgainstCeilings(*p, *measured, dtype);

    // Each op alone, all its executions in one graph: its share of the step and its own rates.
    TimingOptions op_timing;
    op_timing.use_graph = request.graph;
    op_timing.min_reps = 5;
    op_timing.max_seconds = 0.5;
    op_timing.target_rel_ci = 0.01;
    if (long_step) {
      op_timing.warmup = 1;
      op_timing.reps_per_round = 2;
      op_timing.min_reps = 2;
    }
    int unsettled_ops = 0;
    std::string worst_op;
    double worst_op_ci = 0;
    for (size_t i = 0; i < r.workload().ops().size(); ++i) {
      absl::StatusOr<TimingStats> ot =
          TimeGpuWork([&r, i](cudaStream_t s) { return r.EnqueueOp(i, s); }, stream, op_timing);
      if (!ot.ok()) return ot.status();
      SetOpTiming(r.workload(), i, ot->p50_ms, *p);
      p->mutable_ops(static_cast<int>(i))->set_implementation(r.Implementation(i));
      if (!ot->stable) {
        ++unsettled_ops;
        if (!(ot->rel_ci <= worst_op_ci)) {
          worst_op_ci = ot->rel_ci;
          worst_op = std::isfinite(ot->rel_ci)
                         ? absl::StrFormat("%s +-%.2f%%, %d reps", r.workload().ops()[i].name,
                                           100 * ot->rel_ci, ot->reps)
                         : absl::StrFormat("%s, %d reps: too few for an interval",
                                           r.workload().ops()[i].name, ot->reps);
        }
      }
    }
    if (unsettled_ops > 0) {
      p->add_notes(absl::StrFormat(
          "ops timed alone: %d of %d medians not settled within %.1f%% when their timing stopped "
          "(widest: %s)",
          unsettled_ops, r.workload().ops().size(), 100 * op_timing.target_rel_ci, worst_op));
    }
    if (std::string note = OpsTimedAloneNote(r.workload(), r.residency(), id->l2_bytes);
        !note.empty()) {
      p->add_notes(std::move(note));
    }
    // The NVML and CUPTI passes replay exactly what was timed: the step's graph, or (eager) the
    // step's launches.
    GraphExecPtr step_graph;
    if (request.graph) {
      absl::StatusOr<GraphExecPtr> g =
          CaptureGraph([&r](cudaStream_t s) { return r.EnqueueStep(s); }, stream);
      if (!g.ok()) return g.status();
      step_graph = *std::move(g);
    }
    const std::function<absl::Status(cudaStream_t)> step_work =
        [&r, exec = step_graph.get()](cudaStream_t s) {
          if (exec != nullptr) return CudaStatus(cudaGraphLaunch(exec, s), "cudaGraphLaunch");
          return r.EnqueueStep(s);
        };
    if (nvml != nullptr) {
      TP_RETURN_IF_ERROR(NvmlPass(*nvml, step_work, t->p50_ms, tp, stream, *p, unavailable));
    }
    if (cupti != nullptr) {
      absl::Status st = CuptiPass(*cupti, r.workload(), r, step_work, request.graph,
                                  request.profile == "ops", stream, *p);
      if (!st.ok()) {
        // A fault of the step itself while CUPTI replayed it is the run's error, not the
        // profiler's: the GPU's context is then unusable, and the next point would be blamed.
        if (absl::Status health = CudaStatus(cudaStreamSynchronize(stream),
                                             "cudaStreamSynchronize after the counter pass");
            !health.ok()) {
          return absl::Status(health.code(), absl::StrCat(health.message(), " (the pass said: ",
                                                          st.message(), ")"));
        }
        // Counters are an extra: a failing profiler pass costs its columns, not the run. The
        // columns this point already has (the step's, where only the per-op pass failed) stay.
        unavailable.insert(absl::StrCat(kCuptiColumns, ": ", st.message()));
        p->add_notes(absl::StrCat("counter pass failed here: ", st.message()));
        cupti.reset();
      }
    }
    read_processes(processes);
    if (std::string note = OtherProcessesNote(processes, static_cast<uint32_t>(getpid()));
        !note.empty()) {
      p->add_notes(std::move(note));
    }
    // An unsettled median is said by its note (StepTimingNotes), printed below.
    log << absl::StrFormat(
        "batch %d: %.3f ms p50, %.1f tok/s, MBU %.3f, MFU %.4f, %.0f%% of the roofline bound "
        "(%s; %d reps, median %s%s)\n",
        step.batch, t->p50_ms, p->tokens_per_s(), p->mbu(), p->mfu(), 100 * p->roofline_eff(),
        p->residency(), t->reps,
        !std::isfinite(t->rel_ci) ? std::string("CI n/a (too few reps)")
        : t->rel_ci > t->rel_ci_steps
            ? absl::StrFormat("+-%.2f%% (+-%.2f%% over steps alone)", 100 * t->rel_ci,
                              100 * t->rel_ci_steps)
            : absl::StrFormat("+-%.2f%%", 100 * t->rel_ci),
        t->gated && t->round_reps < std::min(step_timing.reps_per_round, step_timing.max_reps)
            ? absl::StrCat(", in gated rounds of ", t->round_reps,
                           t->graph_memset_nodes > 0
                               ? absl::StrCat(" (", MemsetNodesClause(*t), ")")
                               : "")
            : "");
    for (const std::string& note : p->notes()) log << "  note: " << note << "\n";
    return absl::OkStatus();
  };

  // A point that runs out of memory, in its buffers (it does not fit) or later (a graph, cuBLASLt,
  // another process taking memory meanwhile), is marked skipped with the reason and its
  // prediction, and the sweep goes on; its runner is gone with measure_point's frame.
  auto run_point = [&](const StepConfig& step, BatchPoint* p) -> absl::Status {
    const absl::Status measured_status = measure_point(step, p);
    if (!absl::IsResourceExhausted(measured_status)) return measured_status;
    absl::StatusOr<Workload> w = Workload::Build(request.model, step);
    if (!w.ok()) return w.status();
    *p = PredictPoint(*w, *datasheet, id->memory_bytes);
    p->set_skipped(true);
    std::string reason(measured_status.message());
    std::vector<GpuProcess> processes;
    read_processes(processes);
    if (std::string others = OtherProcessesNote(processes, static_cast<uint32_t>(getpid()));
        !others.empty()) {
      absl::StrAppend(&reason, "; ", others);
    }
    log << "batch " << step.batch << ": skipped: " << reason << "\n";
    p->set_skip_reason(std::move(reason));
    return absl::OkStatus();
  };

  GpuRun run;
  const SweepInterrupt interrupt;
  run.stopped = RunSweep(request.Steps(), run_point,
                         [&interrupt] { return interrupt.signal(); }, result);
  run.signal = interrupt.signal();
  // Nothing measured: the error alone, as before the sweep.
  if (!run.stopped.ok() && result.points_size() == 0) return run.stopped;
  for (const std::string& u : unavailable) result.add_unavailable(u);
  SetMeasuredKnee(result);
  run.result = std::move(result);
  return run;
}

void SetAfterRunnerMadeHookForTesting(std::function<absl::Status(const StepConfig&)> hook) {
  AfterRunnerMadeHook() = std::move(hook);
}

}  // namespace truthput
