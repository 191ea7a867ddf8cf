// The roofline prediction of a sweep, as a RunResult: what a run on the GPU will be measured
// against, and all that --predict prints.
#ifndef TRUTHPUT_BENCH_PREDICTION_H_
#define TRUTHPUT_BENCH_PREDICTION_H_

#include <cstdint>
#include <optional>

#include "absl/status/statusor.h"
#include "bench/bench_request.h"
#include "results/results.pb.h"
#include "workloads/model_spec.pb.h"
#include "workloads/workload.h"

namespace truthput {

// A RunResult with the config, the datasheet and the version filled, no points.
RunResult NewRunResult(const BenchRequest& request, const GpuSpec& datasheet);

// The predicted fields of one point: sizes, bytes, FLOPs, bound, footprint and whether it fits
// in `memory_bytes` (the GPU's memory, or its datasheet size), with per-op predictions.
BatchPoint PredictPoint(const Workload& workload, const GpuSpec& datasheet, int64_t memory_bytes);

// The rates of a point measured in step_ms_p50, against its predicted tokens, bytes, FLOPs and
// bound and the datasheet of `gpu`: tokens/s, achieved GB/s and MBU, achieved TFLOP/s and MFU
// (against the peak of `dtype`, the weights'), roofline_eff and, where a price is known, $/Mtok
// at `usd_per_hour` for each of `gpus` GPUs (the TP degree: every shard's GPU runs the step that
// makes the tokens).
void SetMeasuredRates(BatchPoint& p, const GpuSpec& gpu, DType dtype,
                      std::optional<double> usd_per_hour, int gpus);

// Sets result.measured_knee_batch when the sweep reaches past the predicted ridge: the ridge of
// the measured roofline, i.e. the batch whose step intensity equals the FLOP rate reached at
// the largest batch over the bandwidth reached at the smallest.
void SetMeasuredKnee(RunResult& result);

// Scales a prediction by the efficiency a real run measured: each point's bound tokens/s times
// the roofline_eff of the measured point at the same batch (or the nearest measured batch, on
// a log scale; the smaller of two as near), restated against the prediction's own count of
// that measured step (an fp8 run counts e4m3 activations where it chose W8A8 GEMMs; a
// prediction counts bf16). The model, phase, context or prompt length and TP must match;
// InvalidArgument says which does not. On any error `prediction` is left unchanged.
absl::Status ApplyCalibration(const RunResult& measured, const std::string& source,
                              RunResult& prediction);

// Every point of the request against the datasheet of `gpu`.
absl::StatusOr<RunResult> Predict(const BenchRequest& request, const GpuSpec& gpu);

}  // namespace truthput

#endif  // TRUTHPUT_BENCH_PREDICTION_H_
