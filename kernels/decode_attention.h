// Grouped-query attention for the decode step: one new query token per sequence attends over
// kv_len cached keys/values ("flash-decoding").
//
// Each CTA owns one (sequence, KV head, context split) and all query heads of that KV head's
// group (up to 16 per CTA; larger groups take several CTAs), so each K/V byte is read from memory
// once per group rather than once per query head. Scores and the P.V product run on tensor cores
// (mma.sync bf16, fp32 accumulation) with an online softmax in fp32; K/V tiles stream through
// shared memory with cp.async. With num_splits > 1 the context is cut into num_splits ranges whose
// partial (max, sum, numerator) go to `workspace`, and a second small kernel merges them
// (launched as a programmatic dependent of the first, so its launch overlaps it). The attention
// kernel itself is a programmatic dependent of the kernel before it in the stream (pdl.cuh).
//
// No allocation, no synchronization: safe to capture in a CUDA graph (the workspace is the
// caller's, sized by DecodeAttentionWorkspaceBytes).
#ifndef TRUTHPUT_KERNELS_DECODE_ATTENTION_H_
#define TRUTHPUT_KERNELS_DECODE_ATTENTION_H_

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>

#include "absl/status/status.h"

namespace truthput {

// How many context splits to use. None when batch * num_kv_heads CTAs already stream K/V near
// the ceiling, for a split costs a merge: from kDecodeNoSplitCtas CTAs (on the H100, batch 8 and
// 16 of a 70B model at context 4096: 90-95% of the streaming-read ceiling unsplit against 85-90%
// in 2-4 splits), and more where the memory is faster than that many CTAs drain at
// kDecodeCtaGbps each (an H200's 4917 GB/s needs 87: its batch 8 went from 79-81% unsplit to
// 88-97% from context 4096 in 2 splits). Below that, about one CTA per SM (batch * num_kv_heads
// * splits <= sm_count), every split at least kDecodeMinKeysPerSplit keys long (where only the
// faster memory needs them, kDecodeMinKeysPerDrainSplit) and at most kDecodeMaxSplits splits
// (results/h100-sxm/decode_attention_experiment.txt). Deterministic; pure host code (no CUDA
// calls). dram_gbps is the device's peak memory bandwidth (bench/device_info.h's DramPeakGbps).
// Non-positive arguments give 1 split, except sm_count <= 0, taken as 132 (an H100 SXM), and
// dram_gbps <= 0, which leaves kDecodeNoSplitCtas alone.
inline constexpr int kDecodeNoSplitCtas = 64;
// What one unsplit CTA streams at most: 64 of them read 3.67 TB/s of K/V on an H200 at batch 8,
// context 32768 (57.3 GB/s each; decode_attention_experiment.txt, ninth session).
inline constexpr double kDecodeCtaGbps = 57.0;
inline constexpr int kDecodeMinKeysPerSplit = 64;
// The same from kDecodeNoSplitCtas CTAs, where only memory faster than an H100's needs more: on
// an H200, batch 8 in 2 splits of 256 keys lost 0.9 us per call to the merge (10.4 -> 11.3 us),
// 2 of 512 broke even, 2 of 1024 gained 1 us.
inline constexpr int kDecodeMinKeysPerDrainSplit = 512;
// Bounds the merge kernel's registers: it holds every split's partial so as to read them all at
// once.
inline constexpr int kDecodeMaxSplits = 16;
int ChooseDecodeSplits(int batch, int num_kv_heads, int kv_len, int sm_count, double dram_gbps);

// Bytes of fp32 workspace DecodeAttention needs for num_splits; 0 when num_splits <= 1 (a single
// split writes `out` directly and never touches the workspace).
size_t DecodeAttentionWorkspaceBytes(int batch, int num_q_heads, int head_dim, int num_splits);

// out[b, h, :] = softmax(scale * q[b, h, :] . K[b, h / G, j, :] over j < kv_len) . V[b, h / G, :, :]
// with G = num_q_heads / num_kv_heads.
//
// q, out:           [batch, num_q_heads, head_dim]
// k_cache, v_cache: [batch, num_kv_heads, cache_capacity, head_dim]; positions [0, kv_len) used.
// workspace:        DecodeAttentionWorkspaceBytes(batch, num_q_heads, head_dim, num_splits)
//                   bytes (may be null when num_splits == 1).
// Requirements (else InvalidArgument): head_dim 64 or 128; num_q_heads a multiple of
// num_kv_heads; 1 <= kv_len <= cache_capacity; 1 <= num_splits <= kDecodeMaxSplits; k_cache,
// v_cache, out and workspace 16-byte aligned, q 4-byte aligned; scale finite. num_splits may
// exceed what the context can use (empty splits are harmless).
absl::Status DecodeAttention(const __nv_bfloat16* q, const __nv_bfloat16* k_cache,
                             const __nv_bfloat16* v_cache, __nv_bfloat16* out, int batch,
                             int num_q_heads, int num_kv_heads, int head_dim, int kv_len,
                             int cache_capacity, float scale, int num_splits, float* workspace,
                             cudaStream_t stream);

}  // namespace truthput

#endif  // TRUTHPUT_KERNELS_DECODE_ATTENTION_H_
