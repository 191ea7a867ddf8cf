// bench_kernels: Google Benchmark microbenchmarks of the decode-step kernels on the GPU, each
// held against the streaming-read ceiling at the same byte count.
//
// Families (names are --benchmark_filter friendly):
//   StreamRead/<bytes>                        StreamRead (kernels/stream_read.h): the ceiling.
//   Gemm/<model>/<proj>/b<batch>/<impl>       every projection of Llama-3.1 8B/70B/405B at TP 1
//       impl: own_bf16, own_fp8 (SkinnyGemm, batch <= 32), own_w8a8 (SkinnyGemmW8A8 after the
//             activations to e4m3 per token, batch <= 32), cublaslt (autotuned),
//             cublaslt_heuristic (the heuristic's first choice), cublas_default (cublasGemmEx,
//             CUBLAS_GEMM_DEFAULT), cublaslt_w8a8 (fp8 weights: activations to e4m3 per token,
//             then CublasLtFp8Gemm with per-row scales, autotuned: bench_decode's W8A8 path).
//   DecodeAttention/70b/b<batch>/ctx<context> DecodeAttention at Llama-3.1-70B's heads.
//   PrefillAttention/70b/b<batch>/s<seq>/<kernel>  causal PrefillAttention at Llama-3.1-70B's
//       heads over prompts of seq tokens (kernel: wgmma, mma_sync; see prefill_attention.h).
//
// Timing: each iteration is one call; its GPU time comes from a pair of CUDA events around it,
// with rounds of 16 calls enqueued behind a closed StreamGate so the GPU runs them back to back
// (no host launch time inside a sample). Manual time (UseManualTime), so rates are per GPU second.
// No point is served from L2: calls rotate over enough distinct weight (or KV) buffers that more
// than 4x the L2 size is read between two uses of one buffer.
//
// Counters: bytes_per_second (the minimum bytes the call must move: weights + activations, or
// K/V + q + out), flops (per second), stream_read_bytes_per_second (StreamRead over the same
// buffers' byte count) and pct_stream_read (bytes_per_second as a percentage of it). Prefill
// attention is held against compute instead: gemm_flops_per_second (cuBLASLt bf16 at
// 8192x8192x8192, autotuned, measured once in the run) and pct_gemm. JSON with
// the standard --benchmark_out=FILE --benchmark_out_format=json, for Google Benchmark's
// compare.py. Without --benchmark_min_time, each point runs for at least 0.05 s of GPU time.
// An existing output file (--benchmark_out or BENCHMARK_OUT) is replaced only with --overwrite.
//
// Where no CUDA GPU is usable, says so in one line and exits 1.
#include <benchmark/benchmark.h>
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <numeric>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "bench/build_info.h"
#include "bench/device_buffer.h"
#include "bench/device_info.h"
#include "bench/stream_gate.h"
#include "kernels/cublas_gemm.h"
#include "kernels/cublaslt_fp8_gemm.h"
#include "kernels/cublaslt_gemm.h"
#include "kernels/cuda_status.h"
#include "kernels/decode_attention.h"
#include "kernels/device_code.h"
#include "kernels/fp8_weights.h"
#include "kernels/gemv.h"
#include "kernels/prefill_attention.h"
#include "kernels/random_fill.h"
#include "kernels/stream_read.h"
#include "workloads/model_registry.h"
#include "workloads/workload.h"

// Google Benchmark 1.7 defines its flags in the library without declaring them in benchmark.h;
// this one, as it parsed it (flag or BENCHMARK_LIST_TESTS), says the run only lists names.
namespace benchmark {
extern bool FLAGS_benchmark_list_tests;
}  // namespace benchmark

namespace truthput {
namespace {

constexpr int64_t kBatches[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};
constexpr int64_t kAttentionBatches[] = {1, 2, 4, 8, 16, 32};
constexpr int64_t kMinContext = 512, kMaxContext = 32768;
struct PromptShape {
  int64_t batch, seq;
};
// bench_prefill's default (8 x 2048), the same 16384 tokens as fewer longer prompts, and one long
// prompt.
constexpr PromptShape kPrefillAttentionShapes[] = {{8, 2048}, {4, 4096}, {1, 8192}, {1, 32768}};
constexpr int64_t kGemmCeilingSize = 8192;
constexpr int kCallsPerRound = 16;
constexpr int64_t kGateTimeoutNs = 500'000'000;
constexpr int64_t kMaxRotation = 256;
constexpr int kAutotuneOperandSets = 8;
constexpr const char* kDefaultMinTime = "--benchmark_min_time=0.05";

// --- Process-wide GPU state -------------------------------------------------------------------

struct Gpu {
  int sms = 0;
  double dram_gbps = 0;  // peak, for the decode split policy
  int64_t l2_bytes = 0;
  cudaStream_t stream = nullptr;
  std::unique_ptr<StreamGate> gate;
  std::vector<cudaEvent_t> events;            // 2 per call of a round
  DeviceBuffer sink;                          // StreamRead's float
  std::unique_ptr<CublasLtGemm> tuned;        // Autotune per shape
  std::unique_ptr<CublasLtGemm> heuristic;    // the heuristic's first choice
  std::unique_ptr<CublasGemm> cublas;         // cublasGemmEx, CUBLAS_GEMM_DEFAULT
  std::unique_ptr<CublasLtFp8Gemm> fp8;       // W8A8, per-row scales, Autotune per shape
  std::map<int64_t, double> stream_read_bps;  // ceiling by byte count, measured once
  double gemm_flops = 0;                      // compute ceiling, measured once (0: not yet)

  ~Gpu() {
    for (cudaEvent_t e : events) cudaEventDestroy(e);
    tuned.reset();
    heuristic.reset();
    cublas.reset();
    fp8.reset();
    gate.reset();
    if (stream != nullptr) cudaStreamDestroy(stream);
  }
};
Gpu* g_gpu = nullptr;

absl::Status InitGpu(Gpu* g) {
  // Device 0, the one the process starts on. First: without a usable GPU this gives the one
  // line "no CUDA GPU: ..." the run ends with.
  absl::StatusOr<DeviceIdentity> id = ReadDeviceIdentity(0);
  if (!id.ok()) return id.status();
  TP_RETURN_IF_ERROR(CheckDeviceCode());
  g->sms = id->sm_count;
  g->l2_bytes = id->l2_bytes;
  TP_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&g->stream, cudaStreamNonBlocking));
  absl::StatusOr<std::unique_ptr<StreamGate>> gate = StreamGate::Create();
  if (!gate.ok()) return gate.status();
  g->gate = *std::move(gate);
  for (int i = 0; i < 2 * kCallsPerRound; ++i) {
    cudaEvent_t e = nullptr;
    TP_CUDA_RETURN_IF_ERROR(cudaEventCreate(&e));
    g->events.push_back(e);
  }
  absl::StatusOr<DeviceBuffer> sink = DeviceBuffer::Allocate(sizeof(float), "sink");
  if (!sink.ok()) return sink.status();
  g->sink = *std::move(sink);
  absl::StatusOr<std::unique_ptr<CublasLtGemm>> tuned = CublasLtGemm::Create();
  if (!tuned.ok()) return tuned.status();
  g->tuned = *std::move(tuned);
  absl::StatusOr<std::unique_ptr<CublasLtGemm>> heuristic = CublasLtGemm::Create();
  if (!heuristic.ok()) return heuristic.status();
  g->heuristic = *std::move(heuristic);
  absl::StatusOr<std::unique_ptr<CublasGemm>> cublas = CublasGemm::Create();
  if (!cublas.ok()) return cublas.status();
  g->cublas = *std::move(cublas);
  absl::StatusOr<std::unique_ptr<CublasLtFp8Gemm>> fp8 = CublasLtFp8Gemm::Create();
  if (!fp8.ok()) return fp8.status();
  g->fp8 = *std::move(fp8);
  g->dram_gbps = DramPeakGbps(*id);
  // The machine's identity travels with the numbers (Google Benchmark's own context has the host).
  benchmark::AddCustomContext("gpu", id->name);
  benchmark::AddCustomContext("gpu_uuid", id->uuid);
  benchmark::AddCustomContext("gpu_driver", id->driver_version);
  benchmark::AddCustomContext("cuda_runtime", id->cuda_runtime_version);
  benchmark::AddCustomContext("gpu_sm_count", absl::StrCat(g->sms));
  benchmark::AddCustomContext("gpu_l2_bytes", absl::StrCat(g->l2_bytes));
  benchmark::AddCustomContext("gpu_dram_peak_gbps", absl::StrCat(std::lround(g->dram_gbps)));
  benchmark::AddCustomContext("cublaslt_version", CublasLtGemm::Version());
  benchmark::AddCustomContext("truthput_build", kTruthputBuild);
  return absl::OkStatus();
}

// Distinct buffers to rotate over so that more than 4x the L2 size is read between two uses of
// one of them (capped: tiny buffers would otherwise need thousands).
int64_t Rotation(int64_t bytes_per_buffer) {
  const int64_t want = (4 * g_gpu->l2_bytes) / std::max<int64_t>(1, bytes_per_buffer) + 1;
  return std::clamp<int64_t>(want, 1, kMaxRotation);
}

// --- Buffers resident between benchmark runs ----------------------------------------------------
//
// Google Benchmark calls a benchmark function several times while it settles the iteration
// count, and consecutive benchmarks mostly share a shape: the buffers of the last key stay
// allocated (one key at a time, so device memory holds one shape's buffers at most).

struct Resident {
  virtual ~Resident() = default;
};
std::string g_resident_key;
std::unique_ptr<Resident> g_resident;

template <typename T>
absl::StatusOr<T*> GetResident(const std::string& key,
                               const std::function<absl::Status(T*)>& make) {
  if (g_resident != nullptr && g_resident_key == key) return static_cast<T*>(g_resident.get());
  g_resident.reset();  // free before allocating the next
  g_resident_key.clear();
  auto fresh = std::make_unique<T>();
  TP_RETURN_IF_ERROR(make(fresh.get()));
  TP_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(g_gpu->stream));
  g_resident = std::move(fresh);
  g_resident_key = key;
  return static_cast<T*>(g_resident.get());
}

absl::Status Allocate(int64_t bytes, const char* what, DeviceBuffer* out) {
  absl::StatusOr<DeviceBuffer> b = DeviceBuffer::Allocate(bytes, what);
  if (!b.ok()) return b.status();
  *out = *std::move(b);
  return absl::OkStatus();
}

// --- Failures ---------------------------------------------------------------------------------

// Points that failed, and the first failure after which the GPU's context was unusable (a sticky
// error: an illegal address, a device fault). Every later point would fail with that error and be
// blamed for it, so none runs (Guarded), and the process exits 1 either way.
int g_failed = 0;
std::string g_gpu_fault;

void Fail(benchmark::State& state, const absl::Status& st) {
  state.SkipWithError(st.ToString().c_str());
  ++g_failed;
  if (!g_gpu_fault.empty()) return;
  if (const absl::Status health = CudaStatus(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
      !health.ok()) {
    g_gpu_fault = absl::StrCat(health.message(), ", after a point failed with: ", st.message());
  }
}

// A registered point's body, not run once the GPU's context has failed.
std::function<void(benchmark::State&)> Guarded(std::function<void(benchmark::State&)> body) {
  return [body = std::move(body)](benchmark::State& state) {
    if (!g_gpu_fault.empty()) {
      state.SkipWithError(absl::StrCat("not run: the GPU failed earlier: ", g_gpu_fault).c_str());
      return;
    }
    body(state);
  };
}

// --- Timing ---------------------------------------------------------------------------------

using Call = std::function<absl::Status(int64_t)>;  // enqueues call number i on g_gpu->stream

// Runs calls [0, count) eagerly and waits: lazy module loading and first-call setup happen here,
// never behind a closed gate.
absl::Status WarmUp(const Call& call, int64_t count) {
  for (int64_t i = 0; i < count; ++i) TP_RETURN_IF_ERROR(call(i));
  TP_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(g_gpu->stream));
  return CudaStatus(cudaGetLastError(), "cudaGetLastError (after warm-up)");
}

// GPU seconds of calls [first, first + kCallsPerRound), each between its own events, enqueued
// behind a closed gate so the GPU runs them back to back.
absl::Status TimeRound(const Call& call, int64_t first, std::vector<double>* seconds) {
  Gpu& g = *g_gpu;
  TP_RETURN_IF_ERROR(g.gate->Close(g.stream, kGateTimeoutNs));
  absl::Status enqueued;
  for (int i = 0; i < kCallsPerRound && enqueued.ok(); ++i) {
    enqueued = CudaStatus(cudaEventRecord(g.events[2 * i], g.stream), "cudaEventRecord");
    if (enqueued.ok()) enqueued = call(first + i);
    if (enqueued.ok()) {
      enqueued = CudaStatus(cudaEventRecord(g.events[2 * i + 1], g.stream), "cudaEventRecord");
    }
  }
  g.gate->Open();
  TP_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(g.stream));
  TP_RETURN_IF_ERROR(enqueued);
  if (g.gate->TimedOut()) {
    return absl::DeadlineExceededError("the host took longer than the gate's timeout to enqueue");
  }
  for (int i = 0; i < kCallsPerRound; ++i) {
    float ms = 0;
    TP_CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms, g.events[2 * i], g.events[2 * i + 1]));
    seconds->push_back(ms * 1e-3);
  }
  return absl::OkStatus();
}

// TimeRound from call number *next on, advancing it. A round the host was too slow to enqueue
// (the gate timed out: the GPU may have waited for launches) is dropped and another run, a few
// times, as the harness's TimeGpuWork drops such rounds; a host stalled that long fails.
absl::Status TimeRoundRetrying(const Call& call, int64_t* next, std::vector<double>* seconds) {
  absl::Status st;
  for (int attempt = 0; attempt < 3; ++attempt) {
    st = TimeRound(call, *next, seconds);
    *next += kCallsPerRound;
    if (!absl::IsDeadlineExceeded(st)) break;
  }
  return st;
}

// The benchmark loop: one call per iteration, its GPU time as the iteration's manual time.
// Returns the mean seconds per call, or 0 after SkipWithError.
double RunLoop(benchmark::State& state, const Call& call, int64_t rotation) {
  if (absl::Status st = WarmUp(call, rotation); !st.ok()) {
    Fail(state, st);
    return 0;
  }
  std::vector<double> samples;
  size_t next = 0;
  int64_t issued = rotation;
  double total = 0;
  int64_t timed = 0;
  for (auto _ : state) {
    if (next == samples.size()) {
      samples.clear();
      next = 0;
      const absl::Status st = TimeRoundRetrying(call, &issued, &samples);
      if (!st.ok()) {
        Fail(state, st);
        break;
      }
    }
    state.SetIterationTime(samples[next]);
    total += samples[next];
    ++next;
    ++timed;
  }
  return timed > 0 ? total / static_cast<double>(timed) : 0;
}

// A ceiling's mean seconds per call (a mean, as every family's manual time is: RunLoop), so a
// point's pct_stream_read and pct_gemm compare like with like. A ceiling is measured once per
// size, when a point first needs it: right after the previous shape's buffers were freed and
// this one's made, and there the first calls run slow. On an H200 the first round of 16 reads
// ran up to 10% slow, and after 5 GB were freed the first 11 rounds (6.7 ms) 12% slow and the
// next 6%. Timed as it was (`warm_up` calls, then 4 rounds; 2 for the GEMM), the read came out
// up to 11% slow and kernels beat their "ceiling" by 3-10.5%
// (results/h200/bench_kernels_ceiling_experiment.txt). So calls run for kCeilingWarmUpSeconds
// untimed, then for at least kCeilingMinRounds rounds and kCeilingTimedSeconds timed.
constexpr double kCeilingWarmUpSeconds = 0.05;
constexpr double kCeilingTimedSeconds = 0.05;
constexpr int kCeilingMinRounds = 4;
constexpr int kCeilingMaxRounds = 2048;  // 16 calls of a 2 MB read take ~70 us

absl::StatusOr<double> CeilingSeconds(const Call& call, int64_t warm_up) {
  TP_RETURN_IF_ERROR(WarmUp(call, warm_up));
  int64_t next = warm_up;
  std::vector<double> seconds;
  double warm = 0;
  for (int round = 0; round < kCeilingMaxRounds && warm < kCeilingWarmUpSeconds; ++round) {
    seconds.clear();
    TP_RETURN_IF_ERROR(TimeRoundRetrying(call, &next, &seconds));
    warm += std::accumulate(seconds.begin(), seconds.end(), 0.0);
  }
  seconds.clear();
  double timed = 0;
  for (int round = 0; round < kCeilingMaxRounds &&
                      (round < kCeilingMinRounds || timed < kCeilingTimedSeconds);
       ++round) {
    const size_t before = seconds.size();
    TP_RETURN_IF_ERROR(TimeRoundRetrying(call, &next, &seconds));
    timed = std::accumulate(seconds.begin() + static_cast<std::ptrdiff_t>(before), seconds.end(),
                            timed);
  }
  return timed / static_cast<double>(seconds.size());
}

// StreamRead's bandwidth at `bytes`, over `buffers` (rotated): measured once per byte count, by
// CeilingSeconds, whether or not --benchmark_filter ran the StreamRead family. The family's own
// points do not stand in for it: they were timed as any point is (RunLoop, `rotation` calls of
// warm-up), and in a full run they come first, so they would have been every point's ceiling.
absl::StatusOr<double> StreamReadBandwidth(int64_t bytes, const std::vector<const void*>& buffers) {
  Gpu& g = *g_gpu;
  if (auto it = g.stream_read_bps.find(bytes); it != g.stream_read_bps.end()) return it->second;
  const Call call = [&](int64_t i) {
    return StreamRead(buffers[i % buffers.size()], bytes, g.sink.as<float>(), g.stream);
  };
  absl::StatusOr<double> seconds = CeilingSeconds(call, static_cast<int64_t>(buffers.size()));
  if (!seconds.ok()) return seconds.status();
  const double bps = static_cast<double>(bytes) / *seconds;
  g.stream_read_bps[bytes] = bps;
  return bps;
}

// What a family's rate is held against: a streaming read of the same bytes (memory-bound
// kernels), or a large GEMM's FLOP rate (prefill attention).
enum class Ceiling { kStreamRead, kGemm };

// Sets the counters every family reports: bytes and FLOPs per second, and the ceiling with the
// rate as a percentage of it (stream_read_bytes_per_second and pct_stream_read, or
// gemm_flops_per_second and pct_gemm).
void ReportCounters(benchmark::State& state, double mean_seconds, int64_t bytes_per_call,
                    int64_t flops_per_call, Ceiling kind, double ceiling) {
  state.SetBytesProcessed(state.iterations() * bytes_per_call);
  state.counters["flops"] = benchmark::Counter(static_cast<double>(flops_per_call),
                                               benchmark::Counter::kIsIterationInvariantRate);
  const bool read = kind == Ceiling::kStreamRead;
  state.counters[read ? "stream_read_bytes_per_second" : "gemm_flops_per_second"] = ceiling;
  if (mean_seconds > 0 && ceiling > 0) {
    const double per_call = static_cast<double>(read ? bytes_per_call : flops_per_call);
    state.counters[read ? "pct_stream_read" : "pct_gemm"] =
        100.0 * (per_call / mean_seconds) / ceiling;
  }
}

// The compute ceiling: cuBLASLt's bf16 rate on a kGemmCeilingSize^3 GEMM (autotuned over the
// heuristic's candidates), measured once per process. bench_ceilings sweeps more shapes; one
// large square is enough to say how far a tensor-core kernel is from what the card delivers now
// (a card held by its power cap gives both figures less).
absl::StatusOr<double> GemmCeilingFlops() {
  Gpu& g = *g_gpu;
  if (g.gemm_flops > 0) return g.gemm_flops;
  const int64_t n = kGemmCeilingSize, elems = n * n;
  DeviceBuffer x, w, y;
  TP_RETURN_IF_ERROR(Allocate(elems * 2, "gemm ceiling x", &x));
  TP_RETURN_IF_ERROR(Allocate(elems * 2, "gemm ceiling w", &w));
  TP_RETURN_IF_ERROR(Allocate(elems * 2, "gemm ceiling y", &y));
  TP_RETURN_IF_ERROR(FillRandomBf16(x.as<bf16>(), elems, 21, 1.0f, g.stream));
  TP_RETURN_IF_ERROR(FillRandomBf16(w.as<bf16>(), elems, 22, 0.05f, g.stream));
  TP_RETURN_IF_ERROR(g.tuned->Autotune(n, n, n, {{x.as<bf16>(), w.as<bf16>(), y.as<bf16>()}},
                                       g.stream));
  const Call call = [&](int64_t) {
    return g.tuned->Run(x.as<bf16>(), w.as<bf16>(), y.as<bf16>(), n, n, n, g.stream);
  };
  absl::StatusOr<double> seconds = CeilingSeconds(call, 4);
  if (!seconds.ok()) return seconds.status();
  g.gemm_flops = 2.0 * static_cast<double>(n) * n * n / *seconds;
  return g.gemm_flops;
}

// --- StreamRead/<bytes> -------------------------------------------------------------------------

struct ReadBuffers : Resident {
  std::vector<DeviceBuffer> bufs;
};

void BM_StreamRead(benchmark::State& state, int64_t bytes) {
  const int64_t rotation = Rotation(bytes);
  absl::StatusOr<ReadBuffers*> r =
      GetResident<ReadBuffers>(absl::StrCat("read/", bytes), [&](ReadBuffers* b) -> absl::Status {
        b->bufs.resize(rotation);
        for (DeviceBuffer& buf : b->bufs) TP_RETURN_IF_ERROR(Allocate(bytes, "read buffer", &buf));
        return absl::OkStatus();
      });
  if (!r.ok()) {
    Fail(state, r.status());
    return;
  }
  Gpu& g = *g_gpu;
  const Call call = [&](int64_t i) {
    return StreamRead((*r)->bufs[i % rotation].get(), bytes, g.sink.as<float>(), g.stream);
  };
  const double mean = RunLoop(state, call, rotation);
  if (mean <= 0) return;
  const double bps = static_cast<double>(bytes) / mean;
  ReportCounters(state, mean, bytes, 0, Ceiling::kStreamRead, bps);
  state.SetLabel(absl::StrCat("rotation=", rotation));
}

// --- Gemm/<model>/<proj>/b<batch>/<impl> -------------------------------------------------------

enum class Impl {
  kOwnBf16,
  kOwnFp8,
  kOwnW8A8,
  kCublasLt,
  kCublasLtHeuristic,
  kCublasDefault,
  kCublasLtW8A8
};
bool IsOwn(Impl impl) {
  return impl == Impl::kOwnBf16 || impl == Impl::kOwnFp8 || impl == Impl::kOwnW8A8;
}
bool HasFp8Weights(Impl impl) {
  return impl == Impl::kOwnFp8 || impl == Impl::kOwnW8A8 || impl == Impl::kCublasLtW8A8;
}
const char* ImplName(Impl impl) {
  switch (impl) {
    case Impl::kOwnBf16:
      return "own_bf16";
    case Impl::kOwnFp8:
      return "own_fp8";
    case Impl::kOwnW8A8:
      return "own_w8a8";
    case Impl::kCublasLt:
      return "cublaslt";
    case Impl::kCublasLtHeuristic:
      return "cublaslt_heuristic";
    case Impl::kCublasDefault:
      return "cublas_default";
    case Impl::kCublasLtW8A8:
      return "cublaslt_w8a8";
  }
  return "?";
}

struct GemmShape {
  std::string model;  // "70b"
  std::string proj;   // "gate_up"
  int64_t n = 0, k = 0;
};

// One shape's operands: rotated bf16 weights (and, once asked for, their fp8 quantization and
// room for x quantized per token), x and y for the largest batch, and a zeroed SkinnyGemm
// workspace.
struct GemmBuffers : Resident {
  int64_t n = 0, k = 0;
  std::vector<DeviceBuffer> w;
  std::vector<DeviceBuffer> wq, scales;
  DeviceBuffer xq, x_scales;
  DeviceBuffer x, y, workspace;
  size_t workspace_bytes = 0;

  // Built aside and kept only whole: after a failure (out of memory) the next fp8 point of the
  // shape tries again and reports the same error, rather than finding half-made buffers.
  absl::Status EnsureFp8(cudaStream_t stream) {
    if (!wq.empty()) return absl::OkStatus();
    const int64_t rotation = Rotation(n * k);
    const int64_t max_batch = kBatches[std::size(kBatches) - 1];
    DeviceBuffer new_xq, new_x_scales;
    TP_RETURN_IF_ERROR(Allocate(max_batch * k, "x in e4m3", &new_xq));
    TP_RETURN_IF_ERROR(
        Allocate(max_batch * static_cast<int64_t>(sizeof(float)), "x scales", &new_x_scales));
    std::vector<DeviceBuffer> new_wq(rotation), new_scales(rotation);
    for (int64_t i = 0; i < rotation; ++i) {
      TP_RETURN_IF_ERROR(Allocate(n * k, "fp8 weights", &new_wq[i]));
      TP_RETURN_IF_ERROR(
          Allocate(n * static_cast<int64_t>(sizeof(float)), "scales", &new_scales[i]));
      TP_RETURN_IF_ERROR(QuantizeWeightsFp8(w[i % w.size()].as<bf16>(),
                                            new_wq[i].as<__nv_fp8_e4m3>(),
                                            new_scales[i].as<float>(), n, k, stream));
    }
    TP_RETURN_IF_ERROR(
        CudaStatus(cudaStreamSynchronize(stream), "cudaStreamSynchronize (fp8 weights)"));
    xq = std::move(new_xq);
    x_scales = std::move(new_x_scales);
    wq = std::move(new_wq);
    scales = std::move(new_scales);
    return absl::OkStatus();
  }
};

absl::StatusOr<GemmBuffers*> GetGemmBuffers(int64_t n, int64_t k) {
  Gpu& g = *g_gpu;
  const int64_t max_batch = kBatches[std::size(kBatches) - 1];
  return GetResident<GemmBuffers>(
      absl::StrCat("gemm/", n, "x", k), [&](GemmBuffers* b) -> absl::Status {
        b->n = n;
        b->k = k;
        const int64_t w_bytes = n * k * static_cast<int64_t>(sizeof(bf16));
        b->w.resize(Rotation(w_bytes));
        for (size_t i = 0; i < b->w.size(); ++i) {
          TP_RETURN_IF_ERROR(Allocate(w_bytes, "bf16 weights", &b->w[i]));
          TP_RETURN_IF_ERROR(FillRandomBf16(b->w[i].as<bf16>(), n * k, 1000 + i, 0.05f, g.stream));
        }
        TP_RETURN_IF_ERROR(Allocate(max_batch * k * 2, "x", &b->x));
        TP_RETURN_IF_ERROR(FillRandomBf16(b->x.as<bf16>(), max_batch * k, 7, 1.0f, g.stream));
        TP_RETURN_IF_ERROR(Allocate(max_batch * n * 2, "y", &b->y));
        for (int64_t m = 1; m <= kSkinnyGemmMaxM; ++m) {
          b->workspace_bytes =
              std::max(b->workspace_bytes, SkinnyGemmWorkspaceBytes(m, n, k, g.sms));
        }
        if (b->workspace_bytes > 0) {
          TP_RETURN_IF_ERROR(
              Allocate(static_cast<int64_t>(b->workspace_bytes), "workspace", &b->workspace));
          TP_CUDA_RETURN_IF_ERROR(
              cudaMemsetAsync(b->workspace.get(), 0, b->workspace_bytes, g.stream));
        }
        return absl::OkStatus();
      });
}

void BM_Gemm(benchmark::State& state, const GemmShape& shape, int64_t m, Impl impl) {
  Gpu& g = *g_gpu;
  const int64_t n = shape.n, k = shape.k;
  absl::StatusOr<GemmBuffers*> got = GetGemmBuffers(n, k);
  absl::Status st = got.status();
  if (st.ok() && HasFp8Weights(impl)) {
    st = (*got)->EnsureFp8(g.stream);
  }
  if (!st.ok()) {
    Fail(state, st);
    return;
  }
  // The own kernels read W in their packed layout (gemv.h). Here they read the random weight
  // buffers as if packed: the same bytes, random either way; bench_kernels times, gemv_test
  // checks the products. That needs the packed form to have W's size.
  const int own_bytes = impl == Impl::kOwnBf16 ? 2 : 1;
  if (IsOwn(impl) &&
      SkinnyGemmPackedBytes(n, k, own_bytes) != static_cast<size_t>(n * k * own_bytes)) {
    Fail(state, absl::FailedPreconditionError(absl::StrCat(
                    "n=", n, " k=", k,
                    ": the packed weights would be larger than W (n % 128 != 0 or k * bytes % 64 "
                    "!= 0)")));
    return;
  }
  GemmBuffers& b = **got;
  const bf16* x = b.x.as<bf16>();
  bf16* y = b.y.as<bf16>();
  Call call;
  int64_t rotation = 0;
  int64_t weight_bytes = 0;  // what the ceiling is measured at
  int64_t extra_bytes = 0;   // per-channel scales
  std::vector<const void*> weights;
  std::string label;
  switch (impl) {
    case Impl::kOwnBf16:
      rotation = static_cast<int64_t>(b.w.size());
      weight_bytes = n * k * 2;
      call = [&](int64_t i) {
        return SkinnyGemmBf16(x, b.w[i % rotation].as<bf16>(), y, m, n, k, b.workspace.get(),
                              b.workspace_bytes, g.stream);
      };
      label = SkinnyGemmPlanDescription(PlanSkinnyGemm(m, n, k, 2, g.sms));
      break;
    case Impl::kOwnFp8:
      rotation = static_cast<int64_t>(b.wq.size());
      weight_bytes = n * k;
      extra_bytes = n * static_cast<int64_t>(sizeof(float));
      call = [&](int64_t i) {
        return SkinnyGemmFp8(x, b.wq[i % rotation].as<__nv_fp8_e4m3>(),
                             b.scales[i % rotation].as<float>(), y, m, n, k, b.workspace.get(),
                             b.workspace_bytes, g.stream);
      };
      label = SkinnyGemmPlanDescription(PlanSkinnyGemm(m, n, k, 1, g.sms));
      break;
    case Impl::kOwnW8A8: {
      rotation = static_cast<int64_t>(b.wq.size());
      weight_bytes = n * k;
      extra_bytes = n * static_cast<int64_t>(sizeof(float));
      auto* xq = b.xq.as<__nv_fp8_e4m3>();
      float* x_scales = b.x_scales.as<float>();
      // Each call quantizes x first (as cublaslt_w8a8 is timed): in the step only o_proj does;
      // qkv, gate_up and down get x quantized by the op before them (StepRunner).
      call = [&, xq, x_scales](int64_t i) -> absl::Status {
        TP_RETURN_IF_ERROR(QuantizeWeightsFp8(x, xq, x_scales, m, k, g.stream));
        return SkinnyGemmW8A8(xq, x_scales, b.wq[i % rotation].as<__nv_fp8_e4m3>(),
                              b.scales[i % rotation].as<float>(), y, m, n, k, b.workspace.get(),
                              b.workspace_bytes, g.stream);
      };
      label = absl::StrCat("activations to e4m3 per token, then ",
                           SkinnyGemmPlanDescription(PlanSkinnyGemm(m, n, k, 1, g.sms)));
      break;
    }
    case Impl::kCublasLt:
    case Impl::kCublasLtHeuristic: {
      rotation = static_cast<int64_t>(b.w.size());
      weight_bytes = n * k * 2;
      CublasLtGemm* gemm = impl == Impl::kCublasLt ? g.tuned.get() : g.heuristic.get();
      if (impl == Impl::kCublasLt) {
        std::vector<CublasLtGemm::Operands> operands;
        for (int64_t i = 0; i < std::min<int64_t>(rotation, kAutotuneOperandSets); ++i) {
          operands.push_back({x, b.w[i].as<bf16>(), y});
        }
        st = gemm->Autotune(m, n, k, operands, g.stream);
      } else {
        st = gemm->Prepare(m, n, k);
      }
      if (!st.ok()) {
        Fail(state, st);
        return;
      }
      call = [&, gemm](int64_t i) {
        return gemm->Run(x, b.w[i % rotation].as<bf16>(), y, m, n, k, g.stream);
      };
      label = gemm->AlgoDescription(m, n, k);
      break;
    }
    case Impl::kCublasDefault:
      rotation = static_cast<int64_t>(b.w.size());
      weight_bytes = n * k * 2;
      call = [&](int64_t i) {
        return g.cublas->Run(x, b.w[i % rotation].as<bf16>(), y, m, n, k, g.stream);
      };
      label = "cublasGemmEx CUBLAS_GEMM_DEFAULT";
      break;
    case Impl::kCublasLtW8A8: {
      rotation = static_cast<int64_t>(b.wq.size());
      weight_bytes = n * k;
      extra_bytes = n * static_cast<int64_t>(sizeof(float));
      auto* xq = b.xq.as<__nv_fp8_e4m3>();
      float* x_scales = b.x_scales.as<float>();
      // Tuned on x's own quantization, as the step does.
      st = QuantizeWeightsFp8(x, xq, x_scales, m, k, g.stream);
      std::vector<CublasLtFp8Gemm::ScaledOperands> operands;
      for (int64_t i = 0; i < std::min<int64_t>(rotation, kAutotuneOperandSets); ++i) {
        operands.push_back(
            {xq, x_scales, b.wq[i].as<__nv_fp8_e4m3>(), b.scales[i].as<float>(), y});
      }
      if (st.ok()) st = g.fp8->Autotune(m, n, k, operands, g.stream);
      if (!st.ok()) {
        Fail(state, st);
        return;
      }
      call = [&, xq, x_scales](int64_t i) -> absl::Status {
        TP_RETURN_IF_ERROR(QuantizeWeightsFp8(x, xq, x_scales, m, k, g.stream));
        return g.fp8->Run(xq, x_scales, b.wq[i % rotation].as<__nv_fp8_e4m3>(),
                          b.scales[i % rotation].as<float>(), y, m, n, k, g.stream);
      };
      label = absl::StrCat("activations to e4m3 per token, then ",
                           g.fp8->AlgoDescription(m, n, k, CublasLtFp8Gemm::Scaling::kPerRow));
      break;
    }
  }
  for (int64_t i = 0; i < rotation; ++i) {
    // The buffers `call` reads: fp8 rotations hold more buffers than bf16 ones of the shape.
    weights.push_back(HasFp8Weights(impl) ? b.wq[i].get() : b.w[i].get());
  }
  const absl::StatusOr<double> ceiling = StreamReadBandwidth(weight_bytes, weights);
  if (!ceiling.ok()) {
    Fail(state, ceiling.status());
    return;
  }
  const double mean = RunLoop(state, call, rotation);
  if (mean <= 0) return;
  const int64_t bytes = weight_bytes + extra_bytes + (m * k + m * n) * 2;
  ReportCounters(state, mean, bytes, 2 * m * n * k, Ceiling::kStreamRead, *ceiling);
  state.SetLabel(label);
}

// --- DecodeAttention/70b/b<batch>/ctx<context> -------------------------------------------------

struct AttentionHeads {
  int64_t q_heads = 0, kv_heads = 0, head_dim = 0;
};

// Rotated KV caches ([K | V] in one buffer, capacity = context), q, out and the split workspace.
struct AttentionBuffers : Resident {
  std::vector<DeviceBuffer> kv;
  DeviceBuffer q, out, workspace;
};

int64_t KvBytes(const AttentionHeads& a, int64_t batch, int64_t context) {
  return 2 * batch * a.kv_heads * context * a.head_dim * static_cast<int64_t>(sizeof(bf16));
}

void BM_DecodeAttention(benchmark::State& state, const AttentionHeads& a, int64_t batch,
                        int64_t context) {
  Gpu& g = *g_gpu;
  const int64_t kv_bytes = KvBytes(a, batch, context);
  const int64_t rotation = Rotation(kv_bytes);
  const int splits = ChooseDecodeSplits(static_cast<int>(batch), static_cast<int>(a.kv_heads),
                                        static_cast<int>(context), g.sms, g.dram_gbps);
  const size_t ws_bytes = DecodeAttentionWorkspaceBytes(
      static_cast<int>(batch), static_cast<int>(a.q_heads), static_cast<int>(a.head_dim), splits);
  const int64_t q_elems = batch * a.q_heads * a.head_dim;
  absl::StatusOr<AttentionBuffers*> got = GetResident<AttentionBuffers>(
      absl::StrCat("attention/", batch, "/", context), [&](AttentionBuffers* b) -> absl::Status {
        b->kv.resize(rotation);
        for (int64_t i = 0; i < rotation; ++i) {
          TP_RETURN_IF_ERROR(Allocate(kv_bytes, "kv cache", &b->kv[i]));
          TP_RETURN_IF_ERROR(
              FillRandomBf16(b->kv[i].as<bf16>(), kv_bytes / 2, 500 + i, 1.0f, g.stream));
        }
        TP_RETURN_IF_ERROR(Allocate(q_elems * 2, "q", &b->q));
        TP_RETURN_IF_ERROR(FillRandomBf16(b->q.as<bf16>(), q_elems, 3, 1.0f, g.stream));
        TP_RETURN_IF_ERROR(Allocate(q_elems * 2, "out", &b->out));
        return Allocate(static_cast<int64_t>(ws_bytes), "attention workspace", &b->workspace);
      });
  if (!got.ok()) {
    Fail(state, got.status());
    return;
  }
  AttentionBuffers& b = **got;
  const int64_t k_elems = kv_bytes / 4;  // K is the first half of [K | V]
  const float scale = 1.0f / std::sqrt(static_cast<float>(a.head_dim));
  const Call call = [&](int64_t i) {
    const bf16* k_cache = b.kv[i % rotation].as<bf16>();
    return DecodeAttention(b.q.as<bf16>(), k_cache, k_cache + k_elems, b.out.as<bf16>(),
                           static_cast<int>(batch), static_cast<int>(a.q_heads),
                           static_cast<int>(a.kv_heads), static_cast<int>(a.head_dim),
                           static_cast<int>(context), static_cast<int>(context), scale, splits,
                           b.workspace.as<float>(), g.stream);
  };
  std::vector<const void*> caches;
  for (const DeviceBuffer& kv : b.kv) caches.push_back(kv.get());
  const absl::StatusOr<double> ceiling = StreamReadBandwidth(kv_bytes, caches);
  if (!ceiling.ok()) {
    Fail(state, ceiling.status());
    return;
  }
  const double mean = RunLoop(state, call, rotation);
  if (mean <= 0) return;
  const int64_t bytes = kv_bytes + 2 * q_elems * 2;
  const int64_t flops = 4 * batch * a.q_heads * a.head_dim * context;
  ReportCounters(state, mean, bytes, flops, Ceiling::kStreamRead, *ceiling);
  state.SetLabel(absl::StrCat("splits=", splits, " rotation=", rotation));
}

// --- PrefillAttention/70b/b<batch>/s<seq>/<kernel> ------------------------------------------

const char* PrefillKernelName(PrefillAttentionKernel kernel) {
  return kernel == PrefillAttentionKernel::kWgmma ? "wgmma" : "mma_sync";
}

// Rotated q, K and V (the cache's capacity is the prompt), and out.
struct PrefillAttentionBuffers : Resident {
  std::vector<DeviceBuffer> q, k, v;
  DeviceBuffer out;
};

// `op` is the workload's attention op of a 70B prefill step of this shape: its FLOPs (the causal
// pairs) and bytes are the counters, so the benchmark and bench_prefill's prediction agree.
void BM_PrefillAttention(benchmark::State& state, const Op& op, PrefillAttentionKernel kernel) {
  Gpu& g = *g_gpu;
  const AttentionShape& a = op.attn;
  const absl::StatusOr<double> ceiling = GemmCeilingFlops();
  if (!ceiling.ok()) {
    Fail(state, ceiling.status());
    return;
  }
  const int64_t q_elems = a.batch * a.q_len * a.num_q_heads * a.head_dim;
  const int64_t cache_elems = a.batch * a.num_kv_heads * a.kv_len() * a.head_dim;
  const int64_t rotation = Rotation(2 * (q_elems + 2 * cache_elems));
  absl::StatusOr<PrefillAttentionBuffers*> got = GetResident<PrefillAttentionBuffers>(
      absl::StrCat("prefill_attention/", a.batch, "/", a.q_len),
      [&](PrefillAttentionBuffers* b) -> absl::Status {
        b->q.resize(rotation);
        b->k.resize(rotation);
        b->v.resize(rotation);
        for (int64_t i = 0; i < rotation; ++i) {
          TP_RETURN_IF_ERROR(Allocate(q_elems * 2, "q", &b->q[i]));
          TP_RETURN_IF_ERROR(Allocate(cache_elems * 2, "k cache", &b->k[i]));
          TP_RETURN_IF_ERROR(Allocate(cache_elems * 2, "v cache", &b->v[i]));
          TP_RETURN_IF_ERROR(FillRandomBf16(b->q[i].as<bf16>(), q_elems, 600 + i, 1.0f, g.stream));
          TP_RETURN_IF_ERROR(
              FillRandomBf16(b->k[i].as<bf16>(), cache_elems, 700 + i, 1.0f, g.stream));
          TP_RETURN_IF_ERROR(
              FillRandomBf16(b->v[i].as<bf16>(), cache_elems, 800 + i, 1.0f, g.stream));
        }
        return Allocate(q_elems * 2, "out", &b->out);
      });
  if (!got.ok()) {
    Fail(state, got.status());
    return;
  }
  PrefillAttentionBuffers& b = **got;
  const float scale = 1.0f / std::sqrt(static_cast<float>(a.head_dim));
  const Call call = [&](int64_t i) {
    const int64_t r = i % rotation;
    return PrefillAttentionWithKernel(
        kernel, b.q[r].as<bf16>(), b.k[r].as<bf16>(), b.v[r].as<bf16>(), b.out.as<bf16>(),
        static_cast<int>(a.batch), static_cast<int>(a.q_len), static_cast<int>(a.start_pos),
        static_cast<int>(a.num_q_heads), static_cast<int>(a.num_kv_heads),
        static_cast<int>(a.head_dim), static_cast<int>(a.kv_len()), scale, a.causal, g.stream);
  };
  const double mean = RunLoop(state, call, rotation);
  if (mean <= 0) return;
  ReportCounters(state, mean, op.bytes(), op.flops, Ceiling::kGemm, *ceiling);
  state.SetLabel(absl::StrCat(a.causal ? "causal" : "full", " rotation=", rotation,
                              "; pct_gemm against cuBLASLt bf16 ", kGemmCeilingSize, "^3"));
}

// --- Registration -----------------------------------------------------------------------------

absl::StatusOr<std::vector<GemmShape>> ModelGemmShapes(const std::string& alias) {
  absl::StatusOr<ModelSpec> model = LoadModel(alias);
  if (!model.ok()) return model.status();
  absl::StatusOr<Workload> w = Workload::Build(
      *model, StepConfig{.phase = Phase::kDecode, .batch = 1, .context = 0, .tp = 1});
  if (!w.ok()) return w.status();
  std::vector<GemmShape> shapes;
  for (const Op& op : w->ops()) {
    if (op.kind != OpKind::kGemm) continue;
    std::string proj = op.name;
    if (const size_t at = proj.rfind("_proj"); at != std::string::npos) proj.erase(at);
    shapes.push_back({alias, proj, op.n, op.k});
  }
  return shapes;
}

absl::Status RegisterAll() {
  std::vector<GemmShape> gemms;
  for (const char* alias : {"8b", "70b", "405b"}) {
    absl::StatusOr<std::vector<GemmShape>> shapes = ModelGemmShapes(alias);
    if (!shapes.ok()) return shapes.status();
    gemms.insert(gemms.end(), shapes->begin(), shapes->end());
  }
  absl::StatusOr<ModelSpec> m70 = LoadModel("70b");
  if (!m70.ok()) return m70.status();
  const AttentionHeads attention{m70->num_heads(), m70->num_kv_heads(), m70->head_dim()};

  // The ceiling at every byte count the other families read.
  std::set<int64_t> read_bytes;
  for (const GemmShape& s : gemms) {
    read_bytes.insert(s.n * s.k * 2);
    read_bytes.insert(s.n * s.k);
  }
  for (int64_t batch : kAttentionBatches) {
    for (int64_t ctx = kMinContext; ctx <= kMaxContext; ctx *= 2) {
      read_bytes.insert(KvBytes(attention, batch, ctx));
    }
  }
  for (int64_t bytes : read_bytes) {
    benchmark::RegisterBenchmark(
        absl::StrCat("StreamRead/", bytes).c_str(),
        Guarded([bytes](benchmark::State& st) { BM_StreamRead(st, bytes); }))
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond);
  }
  for (const GemmShape& s : gemms) {
    for (int64_t batch : kBatches) {
      for (Impl impl : {Impl::kOwnBf16, Impl::kOwnFp8, Impl::kOwnW8A8, Impl::kCublasLt,
                        Impl::kCublasLtHeuristic, Impl::kCublasDefault, Impl::kCublasLtW8A8}) {
        if (IsOwn(impl) && batch > kSkinnyGemmMaxM) continue;
        const std::string name =
            absl::StrCat("Gemm/", s.model, "/", s.proj, "/b", batch, "/", ImplName(impl));
        benchmark::RegisterBenchmark(
            name.c_str(),
            Guarded([s, batch, impl](benchmark::State& st) { BM_Gemm(st, s, batch, impl); }))
            ->UseManualTime()
            ->Unit(benchmark::kMicrosecond);
      }
    }
  }
  for (int64_t batch : kAttentionBatches) {
    for (int64_t ctx = kMinContext; ctx <= kMaxContext; ctx *= 2) {
      benchmark::RegisterBenchmark(
          absl::StrCat("DecodeAttention/70b/b", batch, "/ctx", ctx).c_str(),
          Guarded([attention, batch, ctx](benchmark::State& st) {
            BM_DecodeAttention(st, attention, batch, ctx);
          }))
          ->UseManualTime()
          ->Unit(benchmark::kMicrosecond);
    }
  }
  for (const PromptShape& p : kPrefillAttentionShapes) {
    absl::StatusOr<Workload> w = Workload::Build(
        *m70, StepConfig{.phase = Phase::kPrefill, .batch = p.batch, .context = 0,
                         .seq_len = p.seq, .tp = 1});
    if (!w.ok()) return w.status();
    const auto at = std::find_if(w->ops().begin(), w->ops().end(),
                                 [](const Op& op) { return op.kind == OpKind::kAttention; });
    if (at == w->ops().end()) return absl::InternalError("a prefill step without attention");
    // The wgmma kernel only where it can run (an sm_90 GPU, a build with sm_90a).
    std::vector<PrefillAttentionKernel> kernels = {PrefillAttentionKernel::kMmaSync};
    if (PrefillAttentionWgmmaAvailable()) {
      kernels.insert(kernels.begin(), PrefillAttentionKernel::kWgmma);
    }
    for (PrefillAttentionKernel kernel : kernels) {
      benchmark::RegisterBenchmark(
          absl::StrCat("PrefillAttention/70b/b", p.batch, "/s", p.seq, "/",
                       PrefillKernelName(kernel))
              .c_str(),
          Guarded([op = *at, kernel](benchmark::State& st) {
            BM_PrefillAttention(st, op, kernel);
          }))
          ->UseManualTime()
          ->Unit(benchmark::kMillisecond);
    }
  }
  return absl::OkStatus();
}

// Google Benchmark 1.7 answers a bad --benchmark_format, --benchmark_out_format or time unit with
// its usage and exit status 0, takes any unknown boolean word for true, and answers a bad number
// in two lines, the second calling the flag unrecognized. Refused here first, in one line.
absl::Status CheckBenchmarkFlagValues(const std::vector<char*>& args) {
  const std::map<std::string, std::vector<std::string>> words = {
      {"benchmark_format", {"console", "json", "csv"}},
      {"benchmark_out_format", {"console", "json", "csv"}},
      {"benchmark_time_unit", {"ns", "us", "ms", "s"}},
      {"benchmark_color", {"auto", "true", "false", "yes", "no", "1", "0"}},
  };
  const std::set<std::string> bools = {
      "benchmark_list_tests",       "benchmark_report_aggregates_only",
      "benchmark_display_aggregates_only", "benchmark_counters_tabular",
      "benchmark_enable_random_interleaving"};
  const std::set<std::string> counts = {"benchmark_repetitions"};
  const std::set<std::string> seconds = {"benchmark_min_time", "benchmark_min_warmup_time"};
  for (size_t i = 1; i < args.size(); ++i) {
    const absl::string_view arg = args[i];
    if (!absl::StartsWith(arg, "--benchmark_")) continue;
    const size_t eq = arg.find('=');
    if (eq == absl::string_view::npos) continue;  // a bare flag: a boolean's true
    const std::string name(arg.substr(2, eq - 2));
    const std::string value(arg.substr(eq + 1));
    auto refuse = [&](absl::string_view want) {
      return absl::InvalidArgumentError(absl::StrCat("--", name, "=", value, ": ", want));
    };
    if (const auto it = words.find(name); it != words.end()) {
      if (std::find(it->second.begin(), it->second.end(), value) == it->second.end()) {
        return refuse(absl::StrCat("must be one of ", absl::StrJoin(it->second, ", ")));
      }
    } else if (bools.count(name) > 0) {
      if (value != "true" && value != "false" && value != "1" && value != "0") {
        return refuse("must be true or false");
      }
    } else if (counts.count(name) > 0) {
      int n = 0;
      if (!absl::SimpleAtoi(value, &n) || n < 1) return refuse("must be a whole number >= 1");
    } else if (seconds.count(name) > 0) {
      double t = 0;
      if (!absl::SimpleAtod(value, &t) || !std::isfinite(t) || t < 0) {
        return refuse("must be a number of seconds >= 0");
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace truthput

int main(int argc, char** argv) {
  // A shorter default minimum time than Google Benchmark's 0.5 s (the full run stays within a
  // few minutes); a --benchmark_min_time given on the command line comes later and wins.
  std::vector<char*> args(argv, argv + argc);
  std::string min_time = truthput::kDefaultMinTime;
  args.insert(args.begin() + 1, min_time.data());
  // Google Benchmark truncates an existing --benchmark_out file before the first point: a run's
  // results are never replaced without --overwrite (ours, taken out before it parses the rest),
  // as with bench_decode's --csv/--json. The last --benchmark_out= is the one it writes.
  // Its flags default to environment variables (BENCHMARK_OUT), which a flag overrides.
  constexpr absl::string_view kOut = "--benchmark_out=";
  bool overwrite = false;
  const char* env_out = std::getenv("BENCHMARK_OUT");
  std::string out_path = env_out != nullptr ? env_out : "";
  for (auto it = args.begin() + 1; it != args.end();) {
    const std::string arg = *it;
    if (arg == "--version") {
      std::fputs(truthput::VersionLine().c_str(), stdout);
      return 0;
    }
    if (arg == "--overwrite") {
      overwrite = true;
      it = args.erase(it);
      continue;
    }
    if (absl::StartsWith(arg, kOut)) out_path = arg.substr(kOut.size());
    ++it;
  }
  std::error_code ec;
  if (!out_path.empty() && std::filesystem::is_directory(out_path, ec)) {
    std::fprintf(stderr, "bench_kernels: --benchmark_out=%s is a folder; name a file\n",
                 out_path.c_str());
    return 1;
  }
  if (!out_path.empty() && !overwrite && std::filesystem::is_regular_file(out_path, ec)) {
    std::fprintf(stderr,
                 "bench_kernels: --benchmark_out=%s exists; pass --overwrite to replace it\n",
                 out_path.c_str());
    return 1;
  }
  if (const absl::Status st = truthput::CheckBenchmarkFlagValues(args); !st.ok()) {
    std::fprintf(stderr, "bench_kernels: %s\n", std::string(st.message()).c_str());
    return 2;
  }
  int args_count = static_cast<int>(args.size());
  benchmark::Initialize(&args_count, args.data());
  if (benchmark::ReportUnrecognizedArguments(args_count, args.data())) return 1;
  // Google Benchmark opens --benchmark_out before it lists, leaving an empty file for no results.
  if (benchmark::FLAGS_benchmark_list_tests && !out_path.empty()) {
    std::fprintf(stderr, "bench_kernels: --benchmark_list_tests writes no results; drop "
                         "--benchmark_out (or BENCHMARK_OUT)\n");
    return 1;
  }

  // After the flags, so that --help and a mistyped flag are answered on any machine, and
  // --benchmark_list_tests too: only the wgmma prefill points need the GPU to be named.
  auto gpu = std::make_unique<truthput::Gpu>();
  if (const absl::Status st = truthput::InitGpu(gpu.get()); !st.ok()) {
    if (!benchmark::FLAGS_benchmark_list_tests) {
      std::fprintf(stderr, "bench_kernels: %s\n", std::string(st.message()).c_str());
      return 1;
    }
    std::fprintf(stderr, "bench_kernels: %s%s\n", std::string(st.message()).c_str(),
                 truthput::PrefillAttentionWgmmaAvailable()
                     ? ""
                     : "; listing without the PrefillAttention wgmma points, which need an "
                       "sm_90 GPU");
  } else {
    truthput::g_gpu = gpu.get();
  }
  if (const absl::Status st = truthput::RegisterAll(); !st.ok()) {
    std::fprintf(stderr, "bench_kernels: %s\n", st.ToString().c_str());
    return 1;
  }
  // A filter that matches nothing is a typo, not a run (Google Benchmark says which regex).
  const size_t ran = benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  truthput::g_resident.reset();
  truthput::g_gpu = nullptr;
  if (!truthput::g_gpu_fault.empty()) {
    std::fprintf(stderr, "bench_kernels: the GPU failed: %s; the points after it were not run\n",
                 truthput::g_gpu_fault.c_str());
    return 1;
  }
  if (truthput::g_failed > 0) {
    std::fprintf(stderr, "bench_kernels: %d points failed (each one's error_message says why)\n",
                 truthput::g_failed);
    return 1;
  }
  return ran > 0 ? 0 : 1;
}
