#include "bench/gpu_run.h"

#include <cuda_runtime_api.h>

#include <memory>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/device_info.h"
#include "bench/gpu_timer.h"
#include "bench/prediction.h"
#include "bench/step_runner.h"
#include "bench/step_verifier.h"
#include "kernels/cublaslt_gemm.h"
#include "kernels/cuda_status.h"
#include "workloads/gpu_datasheet.h"

namespace truthput {
namespace {

// Memory left to cuBLASLt, graphs and the CUDA context beyond what the runner allocates.
constexpr int64_t kReserveBytes = int64_t{3} << 29;  // 1.5 GiB

MachineInfo ToMachineInfo(const DeviceIdentity& id) {
  MachineInfo m;
  m.set_gpu_name(id.name);
  m.set_sm_count(id.sm_count);
  m.set_memory_gbytes(id.memory_bytes / 1e9);
  m.set_l2_mbytes(id.l2_bytes / double{1 << 20});
  m.set_sm_clock_mhz_max(id.sm_clock_mhz_max);
  m.set_mem_clock_mhz_max(id.mem_clock_mhz_max);
  m.set_compute_capability(absl::StrCat(id.cc_major, ".", id.cc_minor));
  m.set_driver_version(id.driver_version);
  m.set_cuda_runtime_version(id.cuda_runtime_version);
  m.set_cublas_version(id.cublas_version);
  m.set_gpu_uuid(id.uuid);
  m.set_hostname(id.hostname);
  return m;
}

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
  StepConfig step = request.Steps().front();
  step.batch = std::min<int64_t>(step.batch, 3);
  step.context = std::min<int64_t>(step.context, 129);
  absl::StatusOr<Workload> w = Workload::Build(*reduced, step);
  if (!w.ok()) return w.status();
  absl::StatusOr<int64_t> free = FreeBytes();
  if (!free.ok()) return free.status();
  absl::StatusOr<std::unique_ptr<StepRunner>> runner = StepRunner::Create(
      *w, gemm, {.free_bytes = *free, .l2_bytes = id.l2_bytes, .sm_count = id.sm_count, .seed = 99},
      stream);
  if (!runner.ok()) return runner.status();
  TP_RETURN_IF_ERROR(VerifyStep(**runner, stream));
  log << absl::StrFormat(
      "verify: ok: every op of a reduced step (%s with %d layers, vocab %d, batch %d, context "
      "%d) matches the CPU reference\n",
      reduced->name(), reduced->num_layers(), reduced->vocab_size(), step.batch, step.context);
  return absl::OkStatus();
}

void AddMeasured(BatchPoint& p, const TimingStats& t, const GpuSpec& g, DType dtype,
                 double usd_per_hour) {
  const double s = t.p50_ms / 1e3;
  p.set_step_ms_p50(t.p50_ms);
  p.set_step_ms_p99(t.p99_ms);
  p.set_step_rel_spread(t.rel_spread);
  p.set_reps(t.reps);
  p.set_tokens_per_s(p.tokens() / s);
  p.set_achieved_gbps(p.model_gbytes() / s);
  p.set_mbu(p.achieved_gbps() / g.mem_bandwidth_gbps());
  p.set_achieved_tflops(p.model_gflops() / s / 1e3);
  p.set_mfu(p.achieved_tflops() * 1e12 / PeakFlopsPerSecond(g, dtype));
  p.set_roofline_eff(p.bound_ms() / t.p50_ms);
  p.set_usd_per_mtok(usd_per_hour / 3600.0 / p.tokens_per_s() * 1e6);
}

}  // namespace

absl::StatusOr<RunResult> RunOnGpu(const BenchRequest& request, std::ostream& log) {
  absl::StatusOr<DeviceIdentity> id = ReadDeviceIdentity(0);
  if (!id.ok()) return id.status();
  absl::StatusOr<GpuSpec> datasheet =
      request.gpu_arg.empty() ? FindGpuByDeviceName(id->name) : FindGpu(request.gpu_arg);
  if (!datasheet.ok()) return datasheet.status();
  TP_CUDA_RETURN_IF_ERROR(cudaSetDevice(id->device));

  RunResult result = NewRunResult(request, *datasheet);
  *result.mutable_machine() = ToMachineInfo(*id);
  result.mutable_config()->set_gemm(absl::StrCat("cublaslt ", CublasLtGemm::Version()));
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
    result.mutable_config()->add_notes("--verify=false: the correctness check was skipped");
  }

  const DType dtype = request.model.weight_dtype();
  const double usd = result.config().usd_per_gpu_hour();
  for (const StepConfig& step : request.Steps()) {
    absl::StatusOr<Workload> w = Workload::Build(request.model, step);
    if (!w.ok()) return w.status();
    BatchPoint* p = result.add_points();
    *p = PredictPoint(*w, *datasheet, id->memory_bytes);
    absl::StatusOr<int64_t> free = FreeBytes();
    if (!free.ok()) return free.status();
    absl::StatusOr<std::unique_ptr<StepRunner>> runner = StepRunner::Create(
        *w, gemm->get(),
        {.free_bytes = *free, .l2_bytes = id->l2_bytes, .sm_count = id->sm_count, .seed = 1},
        stream);
    if (absl::IsResourceExhausted(runner.status())) {
      p->set_skipped(true);
      p->set_skip_reason(std::string(runner.status().message()));
      log << "batch " << step.batch << ": skipped: " << runner.status().message() << "\n";
      continue;
    }
    if (!runner.ok()) return runner.status();
    const StepRunner& r = **runner;
    p->set_residency(r.residency().Describe());

    TimingOptions step_timing;
    step_timing.use_graph = request.graph;
    absl::StatusOr<TimingStats> t =
        TimeGpuWork([&r](cudaStream_t s) { return r.EnqueueStep(s); }, stream, step_timing);
    if (!t.ok()) return t.status();
    AddMeasured(*p, *t, *datasheet, dtype, usd);

    // Each op alone, all its executions in one graph: its share of the step and its own rates.
    TimingOptions op_timing;
    op_timing.use_graph = request.graph;
    op_timing.min_reps = 5;
    op_timing.max_seconds = 0.5;
    op_timing.target_rel_ci = 0.01;
    for (size_t i = 0; i < w->ops().size(); ++i) {
      absl::StatusOr<TimingStats> ot =
          TimeGpuWork([&r, i](cudaStream_t s) { return r.EnqueueOp(i, s); }, stream, op_timing);
      if (!ot.ok()) return ot.status();
      OpPoint* o = p->mutable_ops(static_cast<int>(i));
      const double s = ot->p50_ms / 1e3;
      o->set_measured_ms(ot->p50_ms);
      o->set_share(ot->p50_ms / t->p50_ms);
      o->set_achieved_gbps(o->gbytes() / s);
      o->set_achieved_tflops(o->gflops() / s / 1e3);
      o->set_implementation(r.Implementation(i));
    }
    log << absl::StrFormat(
        "batch %d: %.3f ms p50, %.1f tok/s, MBU %.3f, MFU %.4f, %.0f%% of the roofline bound "
        "(%s; %d reps%s)\n",
        step.batch, t->p50_ms, p->tokens_per_s(), p->mbu(), p->mfu(), 100 * p->roofline_eff(),
        p->residency(), t->reps, t->stable ? "" : ", not stable within the time cap");
  }
  SetMeasuredKnee(result);
  return result;
}

}  // namespace truthput
