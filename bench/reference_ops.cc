#include "bench/reference_ops.h"

#include <algorithm>
#include <cmath>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace truthput {
namespace ref {
namespace {

bool SizeIs(const std::vector<float>& v, int64_t n) {
  return n >= 0 && static_cast<int64_t>(v.size()) == n;
}

// Dot product of two float rows in double. Four partial sums break the add dependency chain so
// that the 70B-sized GEMMs of a verification run take seconds, not minutes.
double Dot(const float* a, const float* b, int64_t k) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t i = 0;
  for (; i + 4 <= k; i += 4) {
    s0 += static_cast<double>(a[i]) * b[i];
    s1 += static_cast<double>(a[i + 1]) * b[i + 1];
    s2 += static_cast<double>(a[i + 2]) * b[i + 2];
    s3 += static_cast<double>(a[i + 3]) * b[i + 3];
  }
  for (; i < k; ++i) s0 += static_cast<double>(a[i]) * b[i];
  return (s0 + s1) + (s2 + s3);
}

// "[0, 17]" for flat index i of `shape`, or "[i]" when the shape does not describe n elements.
std::string IndexString(int64_t i, absl::Span<const int64_t> shape, int64_t n) {
  int64_t product = 1;
  for (int64_t d : shape) product *= d;
  if (shape.empty() || product != n) return absl::StrCat("[", i, "]");
  std::vector<int64_t> idx(shape.size());
  for (size_t d = shape.size(); d-- > 0;) {
    idx[d] = i % shape[d];
    i /= shape[d];
  }
  return absl::StrCat("[", absl::StrJoin(idx, ", "), "]");
}

}  // namespace

std::vector<double> EmbeddingGather(const std::vector<float>& table,
                                    const std::vector<int32_t>& ids, int64_t cols) {
  if (cols < 1 || table.size() % cols != 0) return {};
  const int64_t vocab = static_cast<int64_t>(table.size()) / cols;
  std::vector<double> out(ids.size() * cols, 0.0);
  for (size_t r = 0; r < ids.size(); ++r) {
    if (ids[r] < 0 || ids[r] >= vocab) continue;
    const float* row = table.data() + ids[r] * cols;
    std::copy(row, row + cols, out.begin() + r * cols);
  }
  return out;
}

std::vector<double> RmsNorm(const std::vector<float>& x, const std::vector<float>& w, int64_t rows,
                            int64_t cols, double eps) {
  if (cols < 1 || !SizeIs(x, rows * cols) || !SizeIs(w, cols)) return {};
  std::vector<double> y(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x.data() + r * cols;
    double ss = 0;
    for (int64_t c = 0; c < cols; ++c) ss += static_cast<double>(xr[c]) * xr[c];
    const double inv = 1.0 / std::sqrt(ss / cols + eps);
    for (int64_t c = 0; c < cols; ++c) y[r * cols + c] = xr[c] * inv * w[c];
  }
  return y;
}

std::vector<double> Gemm(const std::vector<float>& x, const std::vector<float>& w, int64_t m,
                         int64_t n, int64_t k) {
  if (m < 0 || n < 0 || k < 0 || !SizeIs(x, m * k) || !SizeIs(w, n * k)) return {};
  std::vector<double> y(m * n);
  // Each thread owns a range of W's rows (output columns): W is read once in all.
  auto work = [&](int64_t n0, int64_t n1) {
    for (int64_t j = n0; j < n1; ++j) {
      const float* wj = w.data() + j * k;
      for (int64_t i = 0; i < m; ++i) y[i * n + j] = Dot(x.data() + i * k, wj, k);
    }
  };
  const int64_t macs = m * n * k;
  int64_t threads = std::max<int64_t>(1, std::thread::hardware_concurrency());
  threads = std::min<int64_t>({threads, 32, std::max<int64_t>(1, macs / (1 << 22)), n});
  if (threads <= 1) {
    work(0, n);
    return y;
  }
  std::vector<std::thread> pool;
  const int64_t per = (n + threads - 1) / threads;
  for (int64_t t = 0; t < threads; ++t) {
    const int64_t n0 = t * per, n1 = std::min(n, n0 + per);
    if (n0 < n1) pool.emplace_back(work, n0, n1);
  }
  for (std::thread& t : pool) t.join();
  return y;
}

RopeKvAppendResult RopeKvAppend(const std::vector<float>& qkv, int64_t batch, int64_t q_len,
                                int64_t start_pos, int64_t num_q_heads, int64_t num_kv_heads,
                                int64_t head_dim, double rope_theta) {
  const int64_t d = head_dim, hq = num_q_heads, hkv = num_kv_heads;
  const int64_t row_len = (hq + 2 * hkv) * d;
  if (batch < 0 || q_len < 0 || hq < 1 || hkv < 1 || d < 2 || d % 2 != 0 ||
      !SizeIs(qkv, batch * q_len * row_len)) {
    return {};
  }
  const int64_t half = d / 2;
  RopeKvAppendResult out;
  out.q.resize(batch * q_len * hq * d);
  out.k.resize(batch * hkv * q_len * d);
  out.v.resize(batch * hkv * q_len * d);
  std::vector<double> cos_t(half), sin_t(half);
  // Rotates head `src` (head_dim values) into dst.
  auto rotate = [&](const float* src, double* dst) {
    for (int64_t i = 0; i < half; ++i) {
      const double x1 = src[i], x2 = src[i + half];
      dst[i] = x1 * cos_t[i] - x2 * sin_t[i];
      dst[i + half] = x2 * cos_t[i] + x1 * sin_t[i];
    }
  };
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t t = 0; t < q_len; ++t) {
      const double pos = static_cast<double>(start_pos + t);
      for (int64_t i = 0; i < half; ++i) {
        const double angle = pos * std::pow(rope_theta, -2.0 * i / d);
        cos_t[i] = std::cos(angle);
        sin_t[i] = std::sin(angle);
      }
      const int64_t token = b * q_len + t;
      const float* row = qkv.data() + token * row_len;
      for (int64_t h = 0; h < hq; ++h) rotate(row + h * d, out.q.data() + (token * hq + h) * d);
      for (int64_t h = 0; h < hkv; ++h) {
        const int64_t at = ((b * hkv + h) * q_len + t) * d;
        rotate(row + (hq + h) * d, out.k.data() + at);
        const float* v = row + (hq + hkv + h) * d;
        std::copy(v, v + d, out.v.begin() + at);
      }
    }
  }
  return out;
}

std::vector<double> DecodeAttention(const std::vector<float>& q, const std::vector<float>& k_cache,
                                    const std::vector<float>& v_cache, int64_t batch,
                                    int64_t num_q_heads, int64_t num_kv_heads, int64_t head_dim,
                                    int64_t kv_len, int64_t cache_capacity, double scale) {
  // One query per sequence, at the last cached position, seeing every key.
  if (kv_len < 1) return {};
  return Attention(q, k_cache, v_cache, batch, /*q_len=*/1, /*start_pos=*/kv_len - 1, num_q_heads,
                   num_kv_heads, head_dim, cache_capacity, scale, /*causal=*/false);
}

std::vector<double> Attention(const std::vector<float>& q, const std::vector<float>& k_cache,
                              const std::vector<float>& v_cache, int64_t batch, int64_t q_len,
                              int64_t start_pos, int64_t num_q_heads, int64_t num_kv_heads,
                              int64_t head_dim, int64_t cache_capacity, double scale,
                              bool causal) {
  const int64_t d = head_dim, hq = num_q_heads, hkv = num_kv_heads;
  const int64_t kv_len = start_pos + q_len;
  if (batch < 0 || q_len < 1 || start_pos < 0 || hq < 1 || hkv < 1 || hq % hkv != 0 || d < 1 ||
      kv_len > cache_capacity || !SizeIs(q, batch * q_len * hq * d) ||
      !SizeIs(k_cache, batch * hkv * cache_capacity * d) ||
      !SizeIs(v_cache, batch * hkv * cache_capacity * d)) {
    return {};
  }
  const int64_t group = hq / hkv;
  std::vector<double> out(batch * q_len * hq * d, 0.0);
  std::vector<double> p(kv_len);
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t t = 0; t < q_len; ++t) {
      const int64_t keys = causal ? start_pos + t + 1 : kv_len;
      for (int64_t h = 0; h < hq; ++h) {
        const float* qh = q.data() + ((b * q_len + t) * hq + h) * d;
        const int64_t base = (b * hkv + h / group) * cache_capacity * d;
        double max_s = -INFINITY;
        for (int64_t j = 0; j < keys; ++j) {
          p[j] = scale * Dot(qh, k_cache.data() + base + j * d, d);
          max_s = std::max(max_s, p[j]);
        }
        double sum = 0;
        for (int64_t j = 0; j < keys; ++j) sum += (p[j] = std::exp(p[j] - max_s));
        double* o = out.data() + ((b * q_len + t) * hq + h) * d;
        for (int64_t j = 0; j < keys; ++j) {
          const float* vj = v_cache.data() + base + j * d;
          const double pj = p[j] / sum;
          for (int64_t i = 0; i < d; ++i) o[i] += pj * vj[i];
        }
      }
    }
  }
  return out;
}

std::vector<double> ResidualAdd(const std::vector<float>& x, const std::vector<float>& r) {
  if (x.size() != r.size()) return {};
  std::vector<double> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = static_cast<double>(x[i]) + r[i];
  return y;
}

std::vector<double> SiluMul(const std::vector<float>& gate_up, int64_t rows, int64_t ffn) {
  if (ffn < 1 || !SizeIs(gate_up, rows * 2 * ffn)) return {};
  std::vector<double> out(rows * ffn);
  for (int64_t r = 0; r < rows; ++r) {
    const float* g = gate_up.data() + r * 2 * ffn;
    for (int64_t c = 0; c < ffn; ++c) {
      const double x = g[c];
      out[r * ffn + c] = x / (1.0 + std::exp(-x)) * g[ffn + c];
    }
  }
  return out;
}

Comparison Compare(const std::vector<float>& got, const std::vector<double>& ref, double rtol,
                   absl::Span<const int64_t> shape) {
  Comparison c;
  if (got.size() != ref.size()) {
    c.worst = absl::StrCat("size mismatch: got ", got.size(), " elements, want ", ref.size());
    return c;
  }
  if (ref.empty()) {
    // Nothing checked is no pass: an empty reference is a reference given a wrong shape.
    c.worst = "nothing to compare: got and want are both empty";
    return c;
  }
  const int64_t n = static_cast<int64_t>(ref.size());
  double ss = 0;
  for (double r : ref) ss += r * r;
  c.ref_rms = std::sqrt(ss / n);
  int64_t first_nan = -1;
  double se = 0;
  int64_t finite = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(got[i])) {
      ++c.nan_count;
      ++c.fail_count;
      if (first_nan < 0) first_nan = i;
      continue;
    }
    const double err = std::abs(got[i] - ref[i]);
    const double scale = std::abs(ref[i]) + c.ref_rms;
    // A NaN in the reference (never expected: inputs are checked) fails through !(err <= ...).
    const double rel = scale > 0 ? err / scale : (err == 0 ? 0.0 : INFINITY);
    if (!(err <= rtol * scale)) ++c.fail_count;
    c.max_abs_err = std::max(c.max_abs_err, err);
    se += err * err;
    ++finite;
    if (c.worst_index < 0 || rel > c.max_rel_err_vs_scale) {
      c.max_rel_err_vs_scale = std::max(c.max_rel_err_vs_scale, rel);
      c.worst_index = i;
    }
  }
  if (first_nan >= 0) c.worst_index = first_nan;
  c.err_rms = finite > 0 ? std::sqrt(se / finite) : 0.0;
  c.ok = c.fail_count == 0;
  if (c.worst_index >= 0) {
    const int64_t i = c.worst_index;
    c.worst = absl::StrFormat("|err| %.4g at %s (got %.6g, want %.6g)", std::abs(got[i] - ref[i]),
                              IndexString(i, shape, n), got[i], ref[i]);
  }
  return c;
}

Comparison CompareGemm(const std::vector<float>& got, const std::vector<double>& ref, int64_t k,
                       bool fast_accumulation, absl::Span<const int64_t> shape) {
  Comparison c = Compare(got, ref, RtolGemm(k, fast_accumulation), shape);
  if (c.ok && !(c.err_rms <= kRtolGemm * c.ref_rms)) {
    c.ok = false;
    c.worst = absl::StrFormat("rms |err| %.4g is %.2f%% of rms(ref) %.4g, past %.0f%%", c.err_rms,
                              100 * c.err_rms / c.ref_rms, c.ref_rms, 100 * kRtolGemm);
  }
  return c;
}

}  // namespace ref
}  // namespace truthput
