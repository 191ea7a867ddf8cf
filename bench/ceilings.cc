#include "bench/ceilings.h"

#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime_api.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/build_info.h"
#include "bench/ceilings_io.h"
#include "bench/device_buffer.h"
#include "bench/device_info.h"
#include "bench/gpu_timer.h"
#include "bench/machine_info.h"
#include "bench/nvml_sampler.h"
#include "bench/prediction.h"
#include "bench/stats.h"
#include "bench/stream_gate.h"
#include "kernels/cublaslt_fp8_gemm.h"
#include "kernels/cublaslt_gemm.h"
#include "kernels/cuda_status.h"
#include "kernels/device_code.h"
#include "kernels/random_fill.h"
#include "kernels/stream_kernels.h"
#include "kernels/stream_read.h"
#include "workloads/gpu_datasheet.h"

namespace truthput {
namespace {

constexpr int64_t kMiB = int64_t{1} << 20;
constexpr int64_t kGiB = int64_t{1} << 30;
// Left free for cuBLASLt workspaces, graphs and the context beyond what we allocate.
constexpr int64_t kReserveBytes = kGiB;

absl::StatusOr<int64_t> FreeBytes() {
  size_t free = 0, total = 0;
  TP_CUDA_RETURN_IF_ERROR(cudaMemGetInfo(&free, &total));
  return static_cast<int64_t>(free) - kReserveBytes;
}

// What every measurement shares: where to log, where to note caveats, the stream.
struct Context {
  const CeilingsOptions& options;
  const DeviceIdentity& id;
  cudaStream_t stream;
  std::ostream& log;
  MeasuredCeilings& c;
  int64_t bandwidth_bytes = 0;  // Each bandwidth buffer's size, set by MeasureMemory.
  // The bursts' GEMMs, kept for the held phase, which then times the algorithm each shape was
  // tuned to in its burst instead of tuning it again (fp8's tuning, 32 candidates a shape, was
  // most of an fp8 run's start-up).
  std::unique_ptr<CublasLtGemm> bf16_gemm;
  std::unique_ptr<CublasLtFp8Gemm> fp8_gemm;

  // Times `enqueue` and notes it when the median did not settle within the time cap.
  absl::StatusOr<TimingStats> Time(const std::string& what,
                                   const std::function<absl::Status(cudaStream_t)>& enqueue,
                                   TimingOptions timing) {
    absl::StatusOr<TimingStats> t = TimeGpuWork(enqueue, stream, timing);
    if (!t.ok()) {
      return absl::Status(t.status().code(), absl::StrCat(what, ": ", t.status().message()));
    }
    if (!t->stable) {
      c.add_notes(absl::StrFormat(
          "%s: median not settled when the timing stopped at its time or repetition cap "
          "(+-%.2f%%, %d reps)",
          what, 100 * t->rel_ci, t->reps));
    }
    return t;
  }
};

TimingOptions BandwidthTiming(bool quick) {
  TimingOptions t;
  t.min_reps = 10;
  t.max_seconds = quick ? 1.0 : 3.0;
  t.target_rel_ci = 0.005;
  return t;
}

// A rate held for seconds (results.proto: read_sustained_gbps). One sample is `calls` calls
// captured in one graph, about 25 ms of work, so a gated round of 10 keeps the GPU busy for a
// quarter of a second between the host's waits. A lead-in of such rounds runs untimed first
// (TimingOptions::warmup_seconds), then a fixed number of samples, sized from the burst's time
// per call (where the clock falls they run longer than planned), are timed. The first hold of a
// kind (the read; the first shape of each dtype) has a lead-in of 5 s: the work before it drew
// less power, and a GPU driven to its power cap from below swings its clock for seconds (an
// H200: results/h200/p99_warmup_experiment.txt); the holds after it follow at the cap. On one
// H200 the later holds settled closer than with the old lead-ins (launches, no 5 s first one);
// the first holds did not, and which of the two changes helped is not known (section 5 there).
struct SustainedPlan {
  int calls = 1;
  TimingOptions timing;
};
SustainedPlan PlanSustained(double call_ms, bool quick, bool first_of_kind) {
  const double timed_ms = quick ? 1000 : 2000;
  SustainedPlan p;
  p.calls = std::max(1, static_cast<int>(std::ceil(25.0 / call_ms)));
  const double sample_ms = p.calls * call_ms;
  p.timing.warmup = 1;
  p.timing.warmup_seconds = first_of_kind ? 5.0 : quick ? 0.5 : 2.0;
  p.timing.min_reps = std::max(20, static_cast<int>(std::ceil(timed_ms / sample_ms)));
  p.timing.max_reps = p.timing.min_reps;
  p.timing.max_seconds = 2 * timed_ms / 1e3;
  p.timing.target_rel_ci = 0.005;
  return p;
}

// ---------------------------------------------------------------------------------------------
// DRAM bandwidth.

// The streaming kernels against the host, on a buffer small enough to copy back: 4.5 grid
// strides and 37 vectors, so the loop of 4 accesses in flight, the loop after it and a partial
// stride all run. A kernel that fails here is never timed. StreamRead writes its sink only where
// it read kStreamReadSinkTrigger: here one word of zeros in the first loop's second access, then
// the buffer's last (stream_read_test places it everywhere).
absl::Status CheckStreamKernels(cudaStream_t stream) {
  absl::StatusOr<int> sms = CurrentSmCount();
  if (!sms.ok()) return sms.status();
  const int64_t stride = int64_t{2048} * *sms;  // threads in StreamRead's grid, 16 bytes each
  const int64_t bytes = 16 * (stride * 9 / 2 + 37);
  absl::StatusOr<DeviceBuffer> a = DeviceBuffer::Allocate(bytes, "check src");
  if (!a.ok()) return a.status();
  absl::StatusOr<DeviceBuffer> b = DeviceBuffer::Allocate(bytes, "check dst");
  if (!b.ok()) return b.status();
  absl::StatusOr<DeviceBuffer> sink = DeviceBuffer::Allocate(16, "check sink");
  if (!sink.ok()) return sink.status();
  for (const int64_t at : {16 * (stride + 5) + 8, bytes - 4}) {
    TP_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(b->get(), 0, bytes, stream));
    TP_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(b->as<char>() + at, &kStreamReadSinkTrigger, 4,
                                            cudaMemcpyHostToDevice, stream));
    TP_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(sink->get(), 0, 16, stream));
    TP_RETURN_IF_ERROR(StreamRead(b->get(), bytes, sink->as<float>(), stream));
    uint32_t sunk = 0;
    TP_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(&sunk, sink->get(), sizeof(sunk), cudaMemcpyDeviceToHost, stream));
    TP_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
    if (sunk != kStreamReadSinkTrigger) {
      return absl::InternalError(absl::StrFormat(
          "StreamRead check failed: sink 0x%08x, not 0x%08x: byte %d of %d was not read", sunk,
          kStreamReadSinkTrigger, at, bytes));
    }
  }
  TP_RETURN_IF_ERROR(FillRandomBf16(a->as<__nv_bfloat16>(), bytes / 2, 7, 1.0f, stream));
  TP_RETURN_IF_ERROR(StreamCopyKernel(a->get(), b->get(), bytes, stream));
  std::vector<uint32_t> src(bytes / 4), dst(bytes / 4);
  TP_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(src.data(), a->get(), bytes, cudaMemcpyDeviceToHost, stream));
  TP_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(dst.data(), b->get(), bytes, cudaMemcpyDeviceToHost, stream));
  TP_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  if (src != dst) return absl::InternalError("StreamCopyKernel check failed: copy differs");
  constexpr uint32_t kPattern = 0x5A3C96E1u;
  TP_RETURN_IF_ERROR(StreamWriteKernel(b->get(), bytes, kPattern, stream));
  TP_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(dst.data(), b->get(), bytes, cudaMemcpyDeviceToHost, stream));
  TP_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  for (size_t i = 0; i < dst.size(); ++i) {
    if (dst[i] != kPattern) {
      return absl::InternalError(
          absl::StrFormat("StreamWriteKernel check failed: word %d is 0x%08x", i, dst[i]));
    }
  }
  return absl::OkStatus();
}

absl::Status MeasureMemory(Context& ctx) {
  TP_RETURN_IF_ERROR(CheckStreamKernels(ctx.stream));
  // At least 8x L2, so no pass finds its data in L2; a whole number of MiB.
  const int64_t min_bytes = (8 * ctx.id.l2_bytes + kMiB - 1) / kMiB * kMiB;
  absl::StatusOr<int64_t> free = FreeBytes();
  if (!free.ok()) return free.status();
  // Two buffers where copies are measured (a source and a target); a run's start-up reads only.
  const int buffers = ctx.options.run_weights ? 1 : 2;
  const int64_t fit = *free / buffers / kMiB * kMiB;
  const int64_t bytes = std::min(std::max(ctx.options.quick ? kGiB : 4 * kGiB, min_bytes), fit);
  if (bytes < min_bytes) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "bandwidth buffers: %d MiB free for %d buffer(s) of at least 8x L2 (%d MiB each)",
        *free / kMiB, buffers, min_bytes / kMiB));
  }
  ctx.c.set_buffer_gbytes(bytes / 1e9);
  ctx.bandwidth_bytes = bytes;
  absl::StatusOr<DeviceBuffer> a = DeviceBuffer::Allocate(bytes, "bandwidth src");
  if (!a.ok()) return a.status();
  absl::StatusOr<DeviceBuffer> b =
      DeviceBuffer::Allocate(buffers == 2 ? bytes : 0, "bandwidth dst");
  if (!b.ok()) return b.status();
  absl::StatusOr<DeviceBuffer> sink = DeviceBuffer::Allocate(16, "read sink");
  if (!sink.ok()) return sink.status();
  TP_RETURN_IF_ERROR(FillRandomBf16(a->as<__nv_bfloat16>(), bytes / 2, 1, 1.0f, ctx.stream));
  if (buffers == 2) {
    TP_RETURN_IF_ERROR(FillRandomBf16(b->as<__nv_bfloat16>(), bytes / 2, 2, 1.0f, ctx.stream));
  }
  TP_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(ctx.stream));

  const TimingOptions timing = BandwidthTiming(ctx.options.quick);
  const double gb = bytes / 1e9;
  struct Case {
    const char* what;
    double gbytes_moved;
    std::function<absl::Status(cudaStream_t)> enqueue;
    void (MeasuredCeilings::*set)(double);
  };
  const void* src = a->get();
  void* dst = b->get();
  float* sink_ptr = sink->as<float>();
  const Case cases[] = {
      {"read", gb, [=](cudaStream_t s) { return StreamRead(src, bytes, sink_ptr, s); },
       &MeasuredCeilings::set_read_gbps},
      {"write", gb, [=](cudaStream_t s) { return StreamWriteKernel(dst, bytes, 0x9E3779B9u, s); },
       &MeasuredCeilings::set_write_gbps},
      {"copy (read + write)", 2 * gb,
       [=](cudaStream_t s) { return StreamCopyKernel(src, dst, bytes, s); },
       &MeasuredCeilings::set_copy_gbps},
      {"cudaMemcpyAsync D2D (read + write)", 2 * gb,
       [=](cudaStream_t s) {
         return CudaStatus(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s),
                           "cudaMemcpyAsync(D2D)");
       },
       &MeasuredCeilings::set_memcpy_d2d_gbps},
  };
  for (const Case& k : cases) {
    if (ctx.options.run_weights && k.set != &MeasuredCeilings::set_read_gbps) continue;
    absl::StatusOr<TimingStats> t = ctx.Time(k.what, k.enqueue, timing);
    if (!t.ok()) return t.status();
    const double gbps = k.gbytes_moved / (t->p50_ms / 1e3);
    (ctx.c.*k.set)(gbps);
    ctx.log << absl::StrFormat("%-36s %8.1f GB/s  (p50 %.3f ms for %.2f GB, %d reps)\n", k.what,
                               gbps, t->p50_ms, k.gbytes_moved, t->reps);
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// GEMM rates.

// Random e4m3 codes: uniform values in (-scale, scale), quantized on the host into a block that
// is tiled over the buffer with device copies. For a rate measurement only "random, not zero,
// not constant" matters, and a 4 MiB period is far longer than any tile's reach along k.
class Fp8Filler {
 public:
  explicit Fp8Filler(uint64_t seed, float scale) : block_(4 * kMiB) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<float> dist(-scale, scale);
    for (uint8_t& b : block_) b = __nv_cvt_float_to_fp8(dist(rng), __NV_SATFINITE, __NV_E4M3);
  }
  absl::Status Fill(void* p, int64_t bytes, cudaStream_t stream) const {
    auto* dst = static_cast<uint8_t*>(p);
    const int64_t first = std::min<int64_t>(bytes, static_cast<int64_t>(block_.size()));
    TP_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(dst, block_.data(), first, cudaMemcpyHostToDevice, stream));
    // Doubling: each copy repeats everything filled so far.
    for (int64_t done = first; done < bytes;) {
      const int64_t n = std::min(done, bytes - done);
      TP_CUDA_RETURN_IF_ERROR(
          cudaMemcpyAsync(dst + done, dst, n, cudaMemcpyDeviceToDevice, stream));
      done += n;
    }
    // block_ is pageable: the first copy has been staged before cudaMemcpyAsync returned, but
    // synchronize anyway so the filler can be destroyed at once.
    TP_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
    return absl::OkStatus();
  }

 private:
  std::vector<uint8_t> block_;
};

TimingOptions GemmTiming(bool quick) {
  TimingOptions t;
  t.min_reps = 10;
  t.max_seconds = quick ? 0.5 : 1.5;
  t.target_rel_ci = 0.005;
  return t;
}

std::string ShapeText(const GemmShape& s) { return GemmShapeText(s.m, s.n, s.k); }

double Tflops(const GemmShape& s, double ms) {
  return 2.0 * static_cast<double>(s.m) * static_cast<double>(s.n) * static_cast<double>(s.k) /
         (ms / 1e3) / 1e12;
}

// Whether x, w and y of a shape fit the free memory, with `bytes_per_input` bytes per element
// of x and w and 2 per element of y.
absl::StatusOr<bool> Fits(const GemmShape& s, int64_t bytes_per_input) {
  absl::StatusOr<int64_t> free = FreeBytes();
  if (!free.ok()) return free.status();
  return (s.m * s.k + s.n * s.k) * bytes_per_input + s.m * s.n * 2 <= *free;
}

struct GemmResult {
  double tflops = 0;
  double ms = 0;
  std::string algo;
  double rel_ci = 0;  // TimingStats::rel_ci of the median; infinite where there is none.
};

// Records one measured GEMM in the sweep and the log.
void Record(Context& ctx, const char* dtype, const GemmShape& s, const GemmResult& r) {
  MeasuredCeilings::GemmPoint* p = ctx.c.add_gemms();
  p->set_dtype(dtype);
  p->set_m(static_cast<uint32_t>(s.m));
  p->set_n(static_cast<uint32_t>(s.n));
  p->set_k(static_cast<uint32_t>(s.k));
  p->set_ms_p50(r.ms);
  p->set_tflops(r.tflops);
  p->set_algo(r.algo);
  if (std::isfinite(r.rel_ci)) p->set_rel_ci(r.rel_ci);
  ctx.log << absl::StrFormat("%-14s %-28s %8.1f TFLOP/s  (p50 %.3f ms; %s)\n", dtype,
                             ShapeText(s), r.tflops, r.ms, r.algo);
}

// Allocates a shape's operands, fills x and w with `fill`, tunes the shape (once per gemm
// object: a shape already tuned keeps its algorithm) and times `calls` GEMMs per sample (one
// graph); the result is per GEMM. In is the inputs' element type; y is bf16.
template <typename Gemm, typename In>
absl::StatusOr<GemmResult> TimeGemm(Context& ctx, Gemm& gemm, const GemmShape& s,
                                    const std::function<absl::Status(In* x, In* w)>& fill,
                                    const std::string& what, const TimingOptions& timing,
                                    int calls) {
  const int64_t in_bytes = sizeof(In);
  absl::StatusOr<DeviceBuffer> x = DeviceBuffer::Allocate(s.m * s.k * in_bytes, "gemm x");
  if (!x.ok()) return x.status();
  absl::StatusOr<DeviceBuffer> w = DeviceBuffer::Allocate(s.n * s.k * in_bytes, "gemm w");
  if (!w.ok()) return w.status();
  absl::StatusOr<DeviceBuffer> y = DeviceBuffer::Allocate(s.m * s.n * 2, "gemm y");
  if (!y.ok()) return y.status();
  In* xp = x->as<In>();
  In* wp = w->as<In>();
  auto* yp = y->as<__nv_bfloat16>();
  TP_RETURN_IF_ERROR(fill(xp, wp));
  TP_RETURN_IF_ERROR(gemm.Autotune(s.m, s.n, s.k,
                                   std::vector<typename Gemm::Operands>{{xp, wp, yp}}, ctx.stream));
  absl::StatusOr<TimingStats> t = ctx.Time(
      absl::StrCat(what, " GEMM ", ShapeText(s)),
      [&](cudaStream_t st) {
        for (int i = 0; i < calls; ++i) TP_RETURN_IF_ERROR(gemm.Run(xp, wp, yp, s.m, s.n, s.k, st));
        return absl::OkStatus();
      },
      timing);
  if (!t.ok()) return t.status();
  const double ms = t->p50_ms / calls;
  return GemmResult{Tflops(s, ms), ms, gemm.AlgoDescription(s.m, s.n, s.k), t->rel_ci};
}

absl::StatusOr<GemmResult> TimeBf16Gemm(Context& ctx, CublasLtGemm& gemm, const GemmShape& s,
                                        const std::string& what, const TimingOptions& timing,
                                        int calls = 1) {
  return TimeGemm<CublasLtGemm, bf16>(
      ctx, gemm, s,
      [&](bf16* x, bf16* w) {
        TP_RETURN_IF_ERROR(FillRandomBf16(x, s.m * s.k, 11, 1.0f, ctx.stream));
        return FillRandomBf16(w, s.n * s.k, 12, 0.05f, ctx.stream);
      },
      what, timing, calls);
}

absl::StatusOr<GemmResult> TimeFp8Gemm(Context& ctx, CublasLtFp8Gemm& gemm, const GemmShape& s,
                                       const Fp8Filler& x_fill, const Fp8Filler& w_fill,
                                       const std::string& what, const TimingOptions& timing,
                                       int calls = 1) {
  // Prepare first: where the GPU has no fp8 GEMM this is NotFound, before any allocation.
  TP_RETURN_IF_ERROR(gemm.Prepare(s.m, s.n, s.k));
  return TimeGemm<CublasLtFp8Gemm, fp8_e4m3>(
      ctx, gemm, s,
      [&](fp8_e4m3* x, fp8_e4m3* w) {
        TP_RETURN_IF_ERROR(x_fill.Fill(x, s.m * s.k, ctx.stream));
        return w_fill.Fill(w, s.n * s.k, ctx.stream);
      },
      what, timing, calls);
}

absl::Status MeasureGemms(Context& ctx) {
  const std::vector<GemmShape> shapes = CeilingsGemmShapes(ctx.options.quick);

  absl::StatusOr<std::unique_ptr<CublasLtGemm>> bf16_gemm = CublasLtGemm::Create();
  if (!bf16_gemm.ok()) return bf16_gemm.status();
  ctx.bf16_gemm = *std::move(bf16_gemm);
  const TimingOptions burst = GemmTiming(ctx.options.quick);
  GemmResult best;
  for (const GemmShape& s : shapes) {
    absl::StatusOr<bool> fits = Fits(s, 2);
    if (!fits.ok()) return fits.status();
    if (!*fits) {
      ctx.c.add_notes(absl::StrCat("bf16 GEMM ", ShapeText(s), ": skipped, does not fit"));
      continue;
    }
    absl::StatusOr<GemmResult> r = TimeBf16Gemm(ctx, *ctx.bf16_gemm, s, "bf16", burst);
    if (!r.ok()) return r.status();
    Record(ctx, "bf16", s, *r);
    if (r->tflops > best.tflops) {
      best = *r;
      ctx.c.set_bf16_tflops(r->tflops);
      ctx.c.set_bf16_best_shape(ShapeText(s));
    }
  }
  if (ctx.options.run_weights == BF16) return absl::OkStatus();
  if (ctx.id.cc_major * 10 + ctx.id.cc_minor < 89) {
    ctx.c.add_notes(absl::StrCat("fp8 GEMM: not measured: compute capability ", ctx.id.cc_major,
                                 ".", ctx.id.cc_minor, " has no fp8 tensor cores"));
    return absl::OkStatus();
  }
  const Fp8Filler x_fill(21, 4.0f), w_fill(22, 0.5f);
  absl::StatusOr<std::unique_ptr<CublasLtFp8Gemm>> fp8_gemm = CublasLtFp8Gemm::Create();
  if (!fp8_gemm.ok()) return fp8_gemm.status();
  ctx.fp8_gemm = *std::move(fp8_gemm);
  best = GemmResult{};
  GemmShape best_shape{0, 0, 0};
  for (const GemmShape& s : shapes) {
    absl::StatusOr<bool> fits = Fits(s, 1);
    if (!fits.ok()) return fits.status();
    if (!*fits) {
      ctx.c.add_notes(absl::StrCat("fp8 GEMM ", ShapeText(s), ": skipped, does not fit"));
      continue;
    }
    absl::StatusOr<GemmResult> r =
        TimeFp8Gemm(ctx, *ctx.fp8_gemm, s, x_fill, w_fill, "fp8", burst);
    if (absl::IsNotFound(r.status()) || absl::IsUnimplemented(r.status())) {
      // No fp8 GEMM for this GPU (or this shape): the field stays unset, with the reason.
      const std::string note =
          absl::StrCat("fp8 GEMM ", ShapeText(s), ": not measured: ", r.status().message());
      ctx.c.add_notes(note);
      ctx.log << note << "\n";
      continue;
    }
    if (!r.ok()) return r.status();
    Record(ctx, "fp8", s, *r);
    if (r->tflops > best.tflops) {
      best = *r;
      best_shape = s;
      ctx.c.set_fp8_tflops(r->tflops);
      ctx.c.set_fp8_best_shape(ShapeText(s));
    }
  }
  if (best.tflops == 0 || ctx.options.run_weights) return absl::OkStatus();

  // What giving up fast accumulation costs, at fp8's best shape.
  absl::StatusOr<std::unique_ptr<CublasLtFp8Gemm>> precise =
      CublasLtFp8Gemm::Create({.fast_accum = false});
  if (!precise.ok()) return precise.status();
  absl::StatusOr<GemmResult> r =
      TimeFp8Gemm(ctx, **precise, best_shape, x_fill, w_fill, "fp8 precise", burst);
  if (absl::IsNotFound(r.status()) || absl::IsUnimplemented(r.status())) {
    ctx.c.add_notes(
        absl::StrCat("fp8 GEMM without fast accumulation: not measured: ", r.status().message()));
    return absl::OkStatus();
  }
  if (!r.ok()) return r.status();
  Record(ctx, "fp8 precise", best_shape, *r);
  ctx.c.set_fp8_precise_accum_tflops(r->tflops);
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Sustained rates, after every burst: a GPU still hot from seconds of work would lower the
// bursts measured after it.

struct Burst {
  GemmShape shape;
  double ms;
};

// Holds each burst shape with `time(shape, plan)`, records each, and returns the rate and shape
// the ceiling takes (SurestGemm), noting where that is not the highest median.
absl::StatusOr<std::pair<double, std::string>> HoldEach(
    Context& ctx, const char* dtype, const std::vector<Burst>& bursts,
    const std::function<absl::StatusOr<GemmResult>(const GemmShape&, const SustainedPlan&)>& time) {
  for (const Burst& b : bursts) {
    absl::StatusOr<GemmResult> r =
        time(b.shape, PlanSustained(b.ms, ctx.options.quick, &b == &bursts.front()));
    if (!r.ok()) return r.status();
    Record(ctx, dtype, b.shape, *r);
  }
  const MeasuredCeilings::GemmPoint* g = SurestGemm(ctx.c, dtype);
  if (g == nullptr) return absl::InternalError(absl::StrCat(dtype, ": no GEMM was held"));
  if (std::string note = SurestGemmNote(ctx.c, dtype); !note.empty()) {
    ctx.c.add_notes(std::move(note));
  }
  return std::make_pair(g->tflops(), GemmShapeText(*g));
}

absl::Status MeasureSustained(Context& ctx) {
  {
    const int64_t bytes = ctx.bandwidth_bytes;
    absl::StatusOr<DeviceBuffer> a = DeviceBuffer::Allocate(bytes, "sustained read src");
    if (!a.ok()) return a.status();
    absl::StatusOr<DeviceBuffer> sink = DeviceBuffer::Allocate(16, "sustained read sink");
    if (!sink.ok()) return sink.status();
    TP_RETURN_IF_ERROR(FillRandomBf16(a->as<__nv_bfloat16>(), bytes / 2, 1, 1.0f, ctx.stream));
    const SustainedPlan plan =
        PlanSustained(bytes / 1e6 / ctx.c.read_gbps(), ctx.options.quick, /*first_of_kind=*/true);
    const void* src = a->get();
    float* sink_ptr = sink->as<float>();
    absl::StatusOr<TimingStats> t = ctx.Time(
        "read, sustained",
        [&](cudaStream_t st) {
          for (int i = 0; i < plan.calls; ++i) {
            TP_RETURN_IF_ERROR(StreamRead(src, bytes, sink_ptr, st));
          }
          return absl::OkStatus();
        },
        plan.timing);
    if (!t.ok()) return t.status();
    ctx.c.set_read_sustained_gbps(bytes / 1e9 * plan.calls / (t->p50_ms / 1e3));
    ctx.log << absl::StrFormat("%-36s %8.1f GB/s  (%d reads a sample, %d samples after %.1f s)\n",
                               "read, sustained", ctx.c.read_sustained_gbps(), plan.calls, t->reps,
                               plan.timing.warmup_seconds);
  }

  // Every shape of the bursts again, each held for seconds, with the algorithm its burst chose:
  // the best burst (often the shortest calls, done before the clock fell) need not be the best
  // held.
  std::vector<Burst> bf16, fp8;
  for (const MeasuredCeilings::GemmPoint& g : ctx.c.gemms()) {
    std::vector<Burst>* to = g.dtype() == "bf16" ? &bf16 : g.dtype() == "fp8" ? &fp8 : nullptr;
    if (to != nullptr) to->push_back({{g.m(), g.n(), g.k()}, g.ms_p50()});
  }
  if (!bf16.empty()) {
    const auto best = HoldEach(ctx, "bf16 sustained", bf16,
                               [&](const GemmShape& s, const SustainedPlan& plan) {
                                 return TimeBf16Gemm(ctx, *ctx.bf16_gemm, s, "bf16 sustained",
                                                     plan.timing, plan.calls);
                               });
    if (!best.ok()) return best.status();
    ctx.c.set_bf16_sustained_tflops(best->first);
    ctx.c.set_bf16_sustained_shape(best->second);
  }
  if (!fp8.empty()) {
    const Fp8Filler x_fill(21, 4.0f), w_fill(22, 0.5f);
    const auto best = HoldEach(ctx, "fp8 sustained", fp8,
                               [&](const GemmShape& s, const SustainedPlan& plan) {
                                 return TimeFp8Gemm(ctx, *ctx.fp8_gemm, s, x_fill, w_fill,
                                                    "fp8 sustained", plan.timing, plan.calls);
                               });
    if (!best.ok()) return best.status();
    ctx.c.set_fp8_sustained_tflops(best->first);
    ctx.c.set_fp8_sustained_shape(best->second);
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Launch costs.

double Median(std::vector<double> v) { return Summarize(std::move(v)).p50; }

double MicrosSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
}

// GPU time per empty kernel launched eagerly back to back: a round of launches is enqueued
// behind a closed StreamGate, so the GPU runs them without waiting for the host, between two
// events. Median over rounds; rounds the gate timed out on are dropped.
absl::StatusOr<double> EagerKernelGpuMicros(cudaStream_t stream) {
  constexpr int kPerRound = 200;  // Well inside the launch queue, so the host never blocks.
  constexpr int kRounds = 21;
  absl::StatusOr<std::unique_ptr<StreamGate>> gate = StreamGate::Create();
  if (!gate.ok()) return gate.status();
  cudaEvent_t start = nullptr, stop = nullptr;
  TP_CUDA_RETURN_IF_ERROR(cudaEventCreate(&start));
  const absl::Cleanup destroy_start = [start] { cudaEventDestroy(start); };
  TP_CUDA_RETURN_IF_ERROR(cudaEventCreate(&stop));
  const absl::Cleanup destroy_stop = [stop] { cudaEventDestroy(stop); };
  std::vector<double> per_kernel_us;
  for (int attempt = 0; attempt < 2 * kRounds && static_cast<int>(per_kernel_us.size()) < kRounds;
       ++attempt) {
    TP_RETURN_IF_ERROR((*gate)->Close(stream, int64_t{200'000'000}));
    absl::Status enqueued = CudaStatus(cudaEventRecord(start, stream), "cudaEventRecord");
    if (enqueued.ok()) enqueued = StreamEmptyKernels(kPerRound, stream);
    if (enqueued.ok()) enqueued = CudaStatus(cudaEventRecord(stop, stream), "cudaEventRecord");
    (*gate)->Open();
    TP_RETURN_IF_ERROR(enqueued);
    TP_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(stop));
    if ((*gate)->TimedOut()) continue;
    float ms = 0;
    TP_CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms, start, stop));
    per_kernel_us.push_back(ms * 1e3 / kPerRound);
  }
  if (per_kernel_us.empty()) {
    return absl::DeadlineExceededError("every gated round of empty kernels timed out");
  }
  return Median(per_kernel_us);
}

absl::Status MeasureLaunch(Context& ctx) {
  cudaStream_t stream = ctx.stream;
  // Loads the module and warms the launch path.
  TP_RETURN_IF_ERROR(StreamEmptyKernels(100, stream));
  TP_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));

  // Host enqueue time per eager launch, with the queue empty at the start of each batch.
  constexpr int kBatch = 100;
  std::vector<double> enqueue_us;
  for (int r = 0; r < 31; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    TP_RETURN_IF_ERROR(StreamEmptyKernels(kBatch, stream));
    enqueue_us.push_back(MicrosSince(t0) / kBatch);
    TP_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  }
  ctx.c.set_launch_latency_us(Median(enqueue_us));

  absl::StatusOr<double> gpu_us = EagerKernelGpuMicros(stream);
  if (!gpu_us.ok()) return gpu_us.status();
  ctx.c.set_empty_kernel_gpu_us(*gpu_us);

  // One launch and the wait for it: what a host that synchronizes after every kernel pays.
  std::vector<double> sync_us;
  for (int r = 0; r < 201; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    TP_RETURN_IF_ERROR(StreamEmptyKernels(1, stream));
    TP_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
    sync_us.push_back(MicrosSince(t0));
  }
  ctx.c.set_launch_sync_us(Median(sync_us));

  // Graph nodes: the slope between a short and a long chain of empty kernels removes the
  // graph's own launch cost and the timing events from the per-node figure.
  constexpr int kShort = 100, kLong = 1100;
  TimingOptions timing;
  timing.min_reps = 20;
  timing.max_seconds = 1.0;
  timing.target_rel_ci = 0.01;
  double graph_ms[2] = {0, 0};
  const int lengths[2] = {kShort, kLong};
  for (int i = 0; i < 2; ++i) {
    const int n = lengths[i];
    absl::StatusOr<TimingStats> t = ctx.Time(
        absl::StrCat("graph of ", n, " empty kernels"),
        [n](cudaStream_t s) { return StreamEmptyKernels(n, s); }, timing);
    if (!t.ok()) return t.status();
    graph_ms[i] = t->p50_ms;
  }
  ctx.c.set_graph_node_us((graph_ms[1] - graph_ms[0]) * 1e3 / (kLong - kShort));
  if (!(ctx.c.graph_node_us() > 0)) {
    ctx.c.clear_graph_node_us();
    ctx.c.add_notes(absl::StrFormat(
        "graph_node_us: not measured: a graph of %d nodes took %.4f ms, of %d nodes %.4f ms",
        kShort, graph_ms[0], kLong, graph_ms[1]));
  }

  ctx.log << absl::StrFormat(
      "launch: host enqueue %.2f us, GPU per back-to-back kernel %.2f us, launch + sync %.2f "
      "us, graph node %.3f us\n",
      ctx.c.launch_latency_us(), ctx.c.empty_kernel_gpu_us(), ctx.c.launch_sync_us(),
      ctx.c.graph_node_us());
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Host <-> device.

absl::Status MeasureHostCopies(Context& ctx) {
  const int64_t bytes = ctx.options.quick ? 256 * kMiB : kGiB;
  void* host = nullptr;
  if (const cudaError_t err = cudaMallocHost(&host, bytes); err != cudaSuccess) {
    const absl::Status st = CudaStatus(err, "cudaMallocHost");
    ctx.c.add_notes(absl::StrCat("h2d_gbps, d2h_gbps: not measured: ", st.message()));
    return absl::OkStatus();
  }
  const absl::Cleanup free_host = [host] { cudaFreeHost(host); };
  std::memset(host, 0x5A, bytes);  // Touch every page before timing.
  absl::StatusOr<DeviceBuffer> dev = DeviceBuffer::Allocate(bytes, "host copy target");
  if (!dev.ok()) return dev.status();
  void* d = dev->get();
  // Eager: each copy takes milliseconds, so enqueue gaps do not matter.
  TimingOptions timing;
  timing.use_graph = false;
  timing.min_reps = 5;
  timing.max_seconds = ctx.options.quick ? 1.0 : 2.0;
  timing.target_rel_ci = 0.01;
  absl::StatusOr<TimingStats> h2d = ctx.Time(
      "host to device",
      [=](cudaStream_t s) {
        return CudaStatus(cudaMemcpyAsync(d, host, bytes, cudaMemcpyHostToDevice, s),
                          "cudaMemcpyAsync(H2D)");
      },
      timing);
  if (!h2d.ok()) return h2d.status();
  absl::StatusOr<TimingStats> d2h = ctx.Time(
      "device to host",
      [=](cudaStream_t s) {
        return CudaStatus(cudaMemcpyAsync(host, d, bytes, cudaMemcpyDeviceToHost, s),
                          "cudaMemcpyAsync(D2H)");
      },
      timing);
  if (!d2h.ok()) return d2h.status();
  ctx.c.set_h2d_gbps(bytes / 1e9 / (h2d->p50_ms / 1e3));
  ctx.c.set_d2h_gbps(bytes / 1e9 / (d2h->p50_ms / 1e3));
  ctx.log << absl::StrFormat("host <-> device (pinned, %.2f GB): H2D %.1f GB/s, D2H %.1f GB/s\n",
                             bytes / 1e9, ctx.c.h2d_gbps(), ctx.c.d2h_gbps());
  return absl::OkStatus();
}

}  // namespace

std::vector<GemmShape> CeilingsGemmShapes(bool quick) {
  if (quick) return {{4096, 4096, 4096}, {8192, 8192, 8192}, {8192, 57344, 8192}};
  return {
      {4096, 4096, 4096},
      {6144, 6144, 6144},
      {8192, 8192, 8192},
      {12288, 12288, 12288},
      {16384, 16384, 16384},
      // Llama-3-70B projections at 8192 tokens: fused gate+up, down, fused qkv.
      {8192, 57344, 8192},
      {8192, 8192, 28672},
      {8192, 10240, 8192},
  };
}

absl::StatusOr<MeasuredCeilings> MeasureCeilings(const CeilingsOptions& options,
                                                 std::ostream& log) {
  absl::StatusOr<DeviceIdentity> id = ReadDeviceIdentity(0);
  if (!id.ok()) return id.status();
  TP_CUDA_RETURN_IF_ERROR(cudaSetDevice(id->device));
  TP_RETURN_IF_ERROR(CheckDeviceCode());

  MeasuredCeilings c;
  c.set_truthput_version(kTruthputVersion);
  c.set_truthput_build(kTruthputBuild);
  c.set_started_at(absl::FormatTime(absl::RFC3339_sec, absl::Now(), absl::UTCTimeZone()));
  c.set_command_line(options.command_line);
  *c.mutable_machine() = ToMachineInfo(*id);
  if (absl::StatusOr<GpuSpec> sheet = FindGpuByDeviceName(id->name); sheet.ok()) {
    *c.mutable_datasheet() = *sheet;
  } else {
    c.add_notes(absl::StrCat("no datasheet for '", id->name, "': no percentages"));
  }
  log << "GPU: " << id->name << " (" << id->sm_count << " SMs, " << id->memory_bytes / 1e9
      << " GB, L2 " << id->l2_bytes / kMiB << " MiB)"
      << (c.has_datasheet() ? absl::StrCat("; datasheet ", c.datasheet().id()) : "") << "\n";

  cudaStream_t stream = nullptr;
  TP_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  const absl::Cleanup destroy_stream = [stream] { cudaStreamDestroy(stream); };
  // Another process on the GPU lowers the ceilings, and every figure measured against them
  // would read too high: its processes are read before and after (NvmlSampler::ComputeProcesses).
  std::vector<GpuProcess> processes;
  absl::StatusOr<std::unique_ptr<NvmlSampler>> nvml = NvmlSampler::Create(id->uuid);
  auto read_processes = [&] {
    if (!nvml.ok()) return;
    if (absl::StatusOr<std::vector<GpuProcess>> now = (*nvml)->ComputeProcesses(); now.ok()) {
      processes.insert(processes.end(), now->begin(), now->end());
    }
  };
  read_processes();
  Context ctx{options, *id, stream, log, c, 0, nullptr, nullptr};
  TP_RETURN_IF_ERROR(MeasureMemory(ctx));
  TP_RETURN_IF_ERROR(MeasureGemms(ctx));
  TP_RETURN_IF_ERROR(MeasureSustained(ctx));
  if (!options.run_weights) {
    TP_RETURN_IF_ERROR(MeasureLaunch(ctx));
    TP_RETURN_IF_ERROR(MeasureHostCopies(ctx));
  }
  read_processes();
  if (std::string note = OtherProcessesNote(processes, static_cast<uint32_t>(getpid()));
      !note.empty()) {
    log << "note: " << note << "\n";
    c.add_notes(std::move(note));
  }
  return c;
}

}  // namespace truthput
