// Fused CPU loops for the LSTM, GRU and RNN kernels (rnnlab/nn/kernels/{lstm,gru,rnn}.py).
//
// The Python kernels do each step as ~8 separate tensor ops; on small sizes the per-op overhead is
// the cost, on large ones each op streams the gates through memory again. Here each step is one
// matmul (a direct BLAS call) and then ONE vectorised pass over the gates that applies every
// pointwise equation of the cell, and each thread runs its own block of the batch's rows through
// every step (for_row_blocks). The equations are the Python kernels'; σ and tanh are built on
// ATen's vectorised exp_u20 (as torch's CPU sigmoid), so results agree with torch.nn to float
// rounding (tests: 1e-10 in float64, 1e-5 in float32). at::parallel_for is an OpenMP pragma in a
// header, so this file is built with -fopenmp; at run time torch's own libgomp serves it.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <algorithm>
#include <atomic>
#include <type_traits>
#include <vector>

using at::Tensor;

namespace {

template <typename T>
using Vec = at::vec::Vectorized<T>;

// σ(x) = 1 / (1 + e^-x) with exp_u20, as torch's own CPU sigmoid: a cheaper exp, within 2 ulp
// (for double it is the full-precision exp).
template <typename T>
inline Vec<T> sigmoid(const Vec<T>& x) {
  const Vec<T> one(T(1));
  return (one + x.neg().exp_u20()).reciprocal();
}

// tanh(x) = 2σ(2x) - 1: the same exp, ~3x cheaper than Sleef's tanh; saturates to ±1 exactly.
template <typename T>
inline Vec<T> tanh(const Vec<T>& x) {
  const Vec<T> two(T(2));
  return two * sigmoid(two * x) - Vec<T>(T(1));
}

// ---------------------------------------------------------------- thread policy
//
// Each step is one (B, H) x (H, G) matmul and one pointwise pass, and the steps are sequential. Where
// a batch splits into row blocks (for_row_blocks, below) the threads never wait for each other; where
// it does not, each step's GEMM is split across threads, a barrier per step. Where a step is small
// that barrier costs more than the second thread saves, and under CPU contention (another process on
// the cores) it waits for a descheduled thread: the loop collapses. So a loop whose per-step matmul
// is below `serial_below` multiply-adds (B * G * H) runs on the calling thread alone: OpenMP and MKL
// are set to one thread for this thread (their thread-local settings, not at::set_num_threads,
// which is process-wide) and restored when the loop returns. The threshold is
// rnnlab.nn.threads.SERIAL_BELOW, set at load (native/__init__.py).

std::atomic<int64_t> serial_below{int64_t(1) << 20};

bool serial_for(int64_t B, int64_t G, int64_t H) {
  return B * G * H < serial_below.load(std::memory_order_relaxed);
}

// MKL keeps its own thread count (torch's BLAS on x86), which at::set_num_threads sets and OpenMP's
// does not change. Its thread-local setter is declared weak: it resolves from libtorch_cpu (which
// links MKL in) where torch was built with MKL, and is null elsewhere. Returns the previous local
// value (0: none, follow the global one).
extern "C" int MKL_Set_Num_Threads_Local(int) __attribute__((weak));

// One thread for OpenMP regions and MKL on this thread while alive (if `on`); restores both after.
class SerialScope {
 public:
  explicit SerialScope(bool on) : on_(on) {
    if (!on_) return;
#ifdef _OPENMP
    omp_threads_ = omp_get_max_threads();
    omp_set_num_threads(1);
#endif
    if (MKL_Set_Num_Threads_Local) mkl_prev_ = MKL_Set_Num_Threads_Local(1);
  }
  ~SerialScope() {
    if (!on_) return;
#ifdef _OPENMP
    omp_set_num_threads(omp_threads_);
#endif
    if (MKL_Set_Num_Threads_Local) MKL_Set_Num_Threads_Local(mkl_prev_);
  }
  SerialScope(const SerialScope&) = delete;
  SerialScope& operator=(const SerialScope&) = delete;

 private:
  bool on_;
  int omp_threads_ = 1;
  int mkl_prev_ = 0;
};

// ---------------------------------------------------------------- GEMM: BLAS, or oneDNN for large float32
//
// torch's BLAS on x86 is MKL, which picks its kernels by CPU vendor: on AMD processors its sgemm runs
// at ~175 GFLOP/s on 2 cores, where oneDNN (built into torch; torch.nn's CPU LSTM runs on it) reaches
// ~400, and ~1.2x MKL on one core (scripts/bench_cells.py --gemm measures both). A oneDNN call costs
// ~12 µs of set-up, so float32 products of at least `onednn_from` multiply-adds (m·n·k) go to oneDNN
// through torch's own entry (at::native::mkldnn_matmul: plain float32 arithmetic, only the order of
// the sums differs), smaller ones and float64 (oneDNN has none) to BLAS. Inside a parallel region
// oneDNN runs on the calling thread alone, as BLAS does.
}  // namespace
namespace at::native {
TORCH_API void mkldnn_matmul(const Tensor& mat1, const Tensor& mat2, const Tensor& result, float beta, float alpha);
}
namespace {

std::atomic<int64_t> onednn_from{int64_t(1) << 22};

template <typename T>
bool use_onednn(int64_t m, int64_t n, int64_t k) {
  return std::is_same_v<T, float> && m * n * k >= onednn_from.load(std::memory_order_relaxed) && at::hasMKLDNN();
}

// Each step's matmul calls BLAS directly where torch links one that exports the Fortran symbols
// (MKL on x86: sgemm_ / dgemm_, LP64), else at::mm over views of the same memory: on small sizes
// dispatching at::mm (tensors, dispatcher, checks: a few µs) costs more than the matmul. The symbols
// are declared weak, so a torch built without them loads this file and takes at::mm.
// (MKL's packed GEMM, which packs W once per sequence instead of at every step, was measured here
// at the char-LM size: no faster than the plain call, so it is not used.)
extern "C" {
void sgemm_(const char*, const char*, const int*, const int*, const int*, const float*, const float*, const int*,
            const float*, const int*, const float*, float*, const int*) __attribute__((weak));
void dgemm_(const char*, const char*, const int*, const int*, const int*, const double*, const double*, const int*,
            const double*, const int*, const double*, double*, const int*) __attribute__((weak));
}

// float32 on AVX-512 (where the build enables it): a register-blocked kernel over W packed once per
// sequence. Each step's product is small (a batch's rows times gates·H), where BLAS and oneDNN
// spend much of a call on set-up and MKL on AMD processors runs its generic kernels; this one
// measures ~230 GFLOP/s on one core for (16..64) x 128..512 x 512..2048 against MKL's ~90 and
// oneDNN's ~160 (scripts/bench_cells.py --gemm). It sums over k in order, as a dot product does.
#ifdef __AVX512F__
constexpr int64_t kLanes = 16, kPanels = 4;  // a tile: kRows rows x kPanels·16 columns, 16 accumulators
constexpr int kRows = 4;

// op(W) (K, N) as panels of 16 columns, P[panel][k][16], zero past N and up to a whole tile of panels.
// transposed: W is (N, K) and op(W) = Wᵀ; else W is (K, N).
Tensor pack_panels(const Tensor& w, int64_t N, int64_t K, bool transposed) {
  const int64_t panels = (N + kLanes * kPanels - 1) / (kLanes * kPanels) * kPanels;
  Tensor packed = at::zeros({panels, K, kLanes}, w.options());
  const float* src = w.data_ptr<float>();
  float* dst = packed.data_ptr<float>();
  at::parallel_for(0, (N + kLanes - 1) / kLanes, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p)
      for (int64_t k = 0; k < K; ++k)
        for (int64_t l = 0, j = p * kLanes; l < kLanes && j < N; ++l, ++j)
          dst[(p * K + k) * kLanes + l] = transposed ? src[j * K + k] : src[k * N + j];
  });
  return packed;
}

// C[R rows, columns j0..j0+ncols) = beta C + A · op(W) for the tile's kPanels panels.
template <int R>
inline void micro_tile(const float* a, int64_t K, const float* panels, float* c, int64_t N, float beta, int64_t j0,
                       int64_t ncols) {
  __m512 acc[R][kPanels];
  for (int r = 0; r < R; ++r)
    for (int q = 0; q < kPanels; ++q) acc[r][q] = _mm512_setzero_ps();
  const float* p = panels + (j0 / kLanes) * K * kLanes;
  for (int64_t k = 0; k < K; ++k) {
    __m512 b[kPanels];
    for (int q = 0; q < kPanels; ++q) b[q] = _mm512_loadu_ps(p + (q * K + k) * kLanes);
    for (int r = 0; r < R; ++r) {
      const __m512 x = _mm512_set1_ps(a[r * K + k]);
      for (int q = 0; q < kPanels; ++q) acc[r][q] = _mm512_fmadd_ps(x, b[q], acc[r][q]);
    }
  }
  for (int q = 0; q < kPanels && q * kLanes < ncols; ++q) {
    const int64_t n = std::min<int64_t>(kLanes, ncols - q * kLanes);
    const __mmask16 mask = __mmask16((1u << n) - 1);
    for (int r = 0; r < R; ++r) {
      float* out = c + r * N + j0 + q * kLanes;
      __m512 v = acc[r][q];
      if (beta != 0.f) v = _mm512_fmadd_ps(_mm512_set1_ps(beta), _mm512_maskz_loadu_ps(mask, out), v);
      _mm512_mask_storeu_ps(out, mask, v);
    }
  }
}

// C (rows, N) = beta C + A (rows, K) · op(W) over the tiles of columns [t0, t1) (a tile: kPanels·16).
void micro_gemm(const float* a, int64_t rows, int64_t K, const float* panels, float* c, int64_t N, float beta,
                int64_t t0, int64_t t1) {
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t j0 = t * kLanes * kPanels, ncols = std::min(kLanes * kPanels, N - j0);
    int64_t r = 0;
    for (; r + kRows <= rows; r += kRows) micro_tile<kRows>(a + r * K, K, panels, c + r * N, N, beta, j0, ncols);
    for (; r < rows; ++r) micro_tile<1>(a + r * K, K, panels, c + r * N, N, beta, j0, ncols);
  }
}
#endif

// C (rows, N) = beta C + A (rows, K) op(W), row-major, for one W over many steps.
// transposed: op(W) = Wᵀ with W (N, K) (the forward: gates = h W_hhᵀ); else op(W) = W with W (K, N)
// (the backward: dh = dgates W_hh).
template <typename T>
class StepGemm {
 public:
  StepGemm(const Tensor& w, int64_t B, int64_t N, int64_t K, bool transposed)
      : w_(w.data_ptr<T>()), N_(N), K_(K), transposed_(transposed), options_(w.options()) {
    const bool fits = std::max({B, N, K}) < (int64_t(1) << 31);
    blas_ = fits && K > 0 && (std::is_same_v<T, float> ? sgemm_ != nullptr : dgemm_ != nullptr);
#ifdef __AVX512F__
    if constexpr (std::is_same_v<T, float>) {
      micro_ = K > 0 && N > 0;
      if (micro_) packed_ = pack_panels(w, N, K, transposed);
      parallel_ = at::get_num_threads() > 1 && B * N * K >= serial_below.load();
    }
#endif
  }

  void operator()(const T* a, T* c, T beta, int64_t rows) const {
    if (rows == 0 || N_ == 0) return;
#ifdef __AVX512F__
    if constexpr (std::is_same_v<T, float>) {
      if (micro_) {
        const float* p = packed_.data_ptr<float>();
        const int64_t tiles = (N_ + kLanes * kPanels - 1) / (kLanes * kPanels);
        // Inside a row block (a parallel region) this thread does its rows alone; a whole batch
        // that did not split into row blocks splits its columns across the threads instead.
        if (parallel_ && !at::in_parallel_region()) {
          at::parallel_for(0, tiles, 1, [&](int64_t t0, int64_t t1) { micro_gemm(a, rows, K_, p, c, N_, beta, t0, t1); });
        } else {
          micro_gemm(a, rows, K_, p, c, N_, beta, 0, tiles);
        }
        return;
      }
    }
#endif
    const bool onednn = K_ > 0 && use_onednn<T>(rows, N_, K_);
    if (blas_ && !onednn) {  // row-major C = A op(W) is column-major Cᵀ = op(W)ᵀ Aᵀ: swapped operands
      const char ta = transposed_ ? 'T' : 'N', tb = 'N';
      const int m = N_, n = rows, k = K_, ldw = transposed_ ? K_ : N_, lda = K_, ldc = N_;
      const T one = 1;
      if constexpr (std::is_same_v<T, float>) sgemm_(&ta, &tb, &m, &n, &k, &one, w_, &ldw, a, &lda, &beta, c, &ldc);
      else dgemm_(&ta, &tb, &m, &n, &k, &one, w_, &ldw, a, &lda, &beta, c, &ldc);
      return;
    }
    Tensor C = at::from_blob(c, {rows, N_}, options_), A = at::from_blob(const_cast<T*>(a), {rows, K_}, options_);
    Tensor W = transposed_ ? at::from_blob(const_cast<T*>(w_), {N_, K_}, options_).t()
                           : at::from_blob(const_cast<T*>(w_), {K_, N_}, options_);
    if (onednn) at::native::mkldnn_matmul(A, W, C, float(beta), 1.0f);
    else if (beta == T(0)) at::mm_out(C, A, W);
    else C.addmm_(A, W);
  }

 private:
  const T* w_;
  int64_t N_, K_;
  bool transposed_, blas_ = false, micro_ = false, parallel_ = false;
  at::TensorOptions options_;
  Tensor packed_;  // op(W) in panels for micro_gemm
};

// a (M, K) @ b (K, N) (+ bias (N,) on every row), any strides: the GEMMs outside the loops (every
// step's input projection at once, the weight gradients) take the same route as the loops' own.
Tensor matmul(const Tensor& a, const Tensor& b, const std::optional<Tensor>& bias) {
  TORCH_CHECK(a.dim() == 2 && b.dim() == 2 && a.size(1) == b.size(0), "matmul: expected (M, K) @ (K, N), got ",
              a.sizes(), " @ ", b.sizes());
  const int64_t M = a.size(0), K = a.size(1), N = b.size(1);
  const bool onednn = a.scalar_type() == at::kFloat && b.scalar_type() == at::kFloat && a.device().is_cpu() &&
                      K > 0 && use_onednn<float>(M, N, K);
  if (!onednn) return bias.has_value() ? at::addmm(*bias, a, b) : at::mm(a, b);
  Tensor out = bias.has_value() ? bias->expand({M, N}).contiguous() : at::empty({M, N}, a.options());
  at::native::mkldnn_matmul(a, b, out, bias.has_value() ? 1.0f : 0.0f, 1.0f);
  return out;
}

// The rows of a batch are independent sequences, so each thread can run every step for its own block
// of rows (one single-threaded GEMM and one pointwise pass per step; BLAS runs serially inside a
// parallel region) and no thread waits for another between steps: one parallel region per
// sequence, not two barriers per step, which is also what keeps a loop going when another program
// takes a core. Where a block would hold fewer than kMinRows rows, or the loop runs serially, the
// whole batch is one block and BLAS splits each step's GEMM across threads itself.
constexpr int64_t kMinRows = 8;

template <typename F>
void for_row_blocks(int64_t B, bool serial, const F& f) {  // f(first row, end row)
  const int64_t threads = serial ? 1 : at::get_num_threads();
  if (threads <= 1 || B < threads * kMinRows) return f(0, B);
  at::parallel_for(0, B, (B + threads - 1) / threads, f);
}

// Run f(row) for rows [0, B), split across threads only when a row range holds enough work.
template <typename F>
inline void for_rows(int64_t B, int64_t work_per_row, const F& f) {
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(1, work_per_row));
  at::parallel_for(0, B, grain, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) f(b);
  });
}

// Apply `f(j, n)` to column blocks of one row: full vectors, then one partial vector.
template <typename T, typename F>
inline void for_cols(int64_t H, const F& f) {
  constexpr int64_t V = Vec<T>::size();
  int64_t j = 0;
  for (; j + V <= H; j += V) f(j, V);
  if (j < H) f(j, H - j);
}

template <typename T>
inline Vec<T> load(const T* p, int64_t n) {
  return n == Vec<T>::size() ? Vec<T>::loadu(p) : Vec<T>::loadu(p, n);
}

template <typename T>
inline void store(const Vec<T>& v, T* p, int64_t n) {
  v.store(p, n);
}

// ---------------------------------------------------------------- Elman RNN

// h = φ(x + a) in place of a, φ = tanh or relu.
template <typename T>
void rnn_step(const T* x, T* a, int64_t B, int64_t H, bool relu) {
  for_rows(B, H, [&](int64_t b) {
    const T* xb = x + b * H;
    T* ab = a + b * H;
    for_cols<T>(H, [&](int64_t j, int64_t n) {
      Vec<T> pre = load(xb + j, n) + load(ab + j, n);
      store(relu ? at::vec::clamp_min(pre, Vec<T>(T(0))) : tanh(pre), ab + j, n);
    });
  });
}

// xw: (T, B, H) = U x + b; returns hs (T+1, B, H) with h0 in slot 0 (the backward reads φ' from them).
Tensor rnn_forward(const Tensor& xw, const Tensor& h0, const Tensor& w_hh, bool relu) {
  TORCH_CHECK(xw.is_contiguous(), "rnn_forward: xw must be contiguous");
  const int64_t T = xw.size(0), B = xw.size(1), H = xw.size(2);
  const bool one_thread = serial_for(B, H, H);
  SerialScope serial(one_thread);
  const Tensor w = w_hh.contiguous();
  Tensor hs = at::empty({T + 1, B, H}, xw.options());
  hs[0].copy_(h0);
  AT_DISPATCH_FLOATING_TYPES(xw.scalar_type(), "rnn_forward", [&] {
    using S = scalar_t;
    const StepGemm<S> pre_of(w, B, H, H, /*transposed=*/true);  // W h_{t-1}
    const S* x = xw.data_ptr<S>();
    S* h = hs.data_ptr<S>();
    for_row_blocks(B, one_thread, [&](int64_t b0, int64_t b1) {
      const int64_t n = b1 - b0;
      for (int64_t t = 0; t < T; ++t) {
        const int64_t r = t * B * H + b0 * H;
        pre_of(h + r, h + r + B * H, S(0), n);
        rnn_step<S>(x + r, h + r + B * H, n, H, relu);
      }
    });
  });
  return hs;
}

// ---------------------------------------------------------------- LSTM (gates i, f, g, o)

// gates holds W h_{t-1}; x is U x_t + b, one row of 4H every x_stride values (0: the same row, a
// bias, for every batch row). Their sum is activated in place.
template <typename T>
void lstm_step(const T* x, int64_t x_stride, T* gates, const T* c_prev, T* c_new, T* tanh_c, T* h_new, int64_t B,
               int64_t H) {
  for_rows(B, 4 * H, [&](int64_t b) {
    const T* xb = x + b * x_stride;
    T* a = gates + b * 4 * H;
    const T* cp = c_prev + b * H;
    T *cn = c_new + b * H, *hn = h_new + b * H, *tc = tanh_c ? tanh_c + b * H : nullptr;
    for_cols<T>(H, [&](int64_t j, int64_t n) {
      auto pre = [&](int64_t k) { return load(xb + k * H + j, n) + load(a + k * H + j, n); };
      Vec<T> i = sigmoid(pre(0)), f = sigmoid(pre(1)), g = tanh(pre(2)), o = sigmoid(pre(3));
      store(i, a + j, n), store(f, a + H + j, n), store(g, a + 2 * H + j, n), store(o, a + 3 * H + j, n);
      Vec<T> c = f * load(cp + j, n) + i * g;  // c_t = f c_{t-1} + i g
      Vec<T> t = tanh(c);
      store(c, cn + j, n), store(o * t, hn + j, n);  // h_t = o tanh(c_t)
      if (tc) store(t, tc + j, n);
    });
  });
}

// xw: (T, B, 4H); returns hs (T+1, B, H) and cs (T+1, B, H) with the initial state in slot 0,
// and, if keep, the activated gates (T, B, 4H) and tanh(c) (T, B, H) for the backward.
// Steps walk raw pointers: no tensor (view) is made per step.
std::vector<Tensor> lstm_forward(const Tensor& xw, const Tensor& h0, const Tensor& c0, const Tensor& w_hh, bool keep) {
  TORCH_CHECK(xw.is_contiguous(), "lstm_forward: xw must be contiguous");
  const int64_t T = xw.size(0), B = xw.size(1), H = xw.size(2) / 4, G = 4 * H;
  const bool one_thread = serial_for(B, G, H);
  SerialScope serial(one_thread);
  const Tensor w = w_hh.contiguous();
  Tensor hs = at::empty({T + 1, B, H}, xw.options()), cs = at::empty({T + 1, B, H}, xw.options());
  hs[0].copy_(h0), cs[0].copy_(c0);
  Tensor acts = keep ? at::empty_like(xw) : at::empty({B, G}, xw.options());  // U x_t + b is added in the pointwise pass
  Tensor tcs = at::empty({keep ? T : 0, B, H}, xw.options());  // tanh(c_t), kept for the backward
  AT_DISPATCH_FLOATING_TYPES(xw.scalar_type(), "lstm_forward", [&] {
    using S = scalar_t;
    const StepGemm<S> gates_of(w, B, G, H, /*transposed=*/true);  // W h_{t-1}
    const S* x = xw.data_ptr<S>();
    S *h = hs.data_ptr<S>(), *c = cs.data_ptr<S>(), *a = acts.data_ptr<S>(), *tc = keep ? tcs.data_ptr<S>() : nullptr;
    for_row_blocks(B, one_thread, [&](int64_t b0, int64_t b1) {
      const int64_t n = b1 - b0;
      for (int64_t t = 0; t < T; ++t) {
        S* a_t = (keep ? a + t * B * G : a) + b0 * G;
        const int64_t r = t * B * H + b0 * H, r1 = r + B * H;  // rows b0.. of step t, of step t + 1
        gates_of(h + r, a_t, S(0), n);
        lstm_step<S>(x + t * B * G + b0 * G, G, a_t, c + r, c + r1, tc ? tc + r : nullptr, h + r1, n, H);
      }
    });
  });
  return {hs, cs, acts, tcs};
}

// Whether the float32 step kernel (and so lstm_forward_input) is built.
bool has_step_kernel() {
#ifdef __AVX512F__
  return true;
#else
  return false;
#endif
}

// lstm_forward with the input projection inside the loop, where the float32 step kernel is built:
// each step's gates are ONE product [x_t, h_{t-1}] [W_ih, W_hh]ᵀ over weights packed once, plus b in
// the pointwise pass. The hoisted projection (lstm_forward's U x + b for all steps) writes a (T, B, 4H)
// tensor per layer into fresh memory and reads it back, and oneDNN runs that big product slower than
// this kernel runs the steps' (bench_cells.py --profile). x: (T, B, I); bias: (4H,) = b_ih + b_hh or
// None. Returns what lstm_forward returns.
std::vector<Tensor> lstm_forward_input(const Tensor& x, const Tensor& w_ih, const std::optional<Tensor>& bias,
                                       const Tensor& h0, const Tensor& c0, const Tensor& w_hh, bool keep) {
  const int64_t T = x.size(0), B = x.size(1), I = x.size(2), H = w_hh.size(1), G = 4 * H, K = I + H;
  TORCH_CHECK(x.scalar_type() == at::kFloat && w_ih.size(0) == G && w_ih.size(1) == I && w_hh.size(0) == G,
              "lstm_forward_input: expected float32 x (T, B, I), w_ih (4H, I), w_hh (4H, H)");
  TORCH_CHECK(has_step_kernel(), "lstm_forward_input: built without the AVX-512 step kernel");
  const bool one_thread = serial_for(B, G, H);
  SerialScope serial(one_thread);
  const Tensor xc = x.contiguous(), w = at::cat({w_ih, w_hh}, 1).contiguous();  // [U W]: (4H, I + H)
  const Tensor b = bias.has_value() ? bias->contiguous() : at::zeros({G}, x.options());
  Tensor hs = at::empty({T + 1, B, H}, x.options()), cs = at::empty({T + 1, B, H}, x.options());
  hs[0].copy_(h0), cs[0].copy_(c0);
  Tensor acts = at::empty({keep ? T : 1, B, G}, x.options()), tcs = at::empty({keep ? T : 0, B, H}, x.options());
  Tensor xh = at::empty({B, K}, x.options());  // per row: [x_t, h_{t-1}]
  const StepGemm<float> gates_of(w, B, G, K, /*transposed=*/true);
  const float *xp = xc.data_ptr<float>(), *bp = b.data_ptr<float>();
  float *h = hs.data_ptr<float>(), *c = cs.data_ptr<float>(), *a = acts.data_ptr<float>(), *in = xh.data_ptr<float>();
  float* tc = keep ? tcs.data_ptr<float>() : nullptr;
  for_row_blocks(B, one_thread, [&](int64_t b0, int64_t b1) {
    const int64_t n = b1 - b0;
    for (int64_t t = 0; t < T; ++t) {
      const int64_t r = t * B * H + b0 * H, r1 = r + B * H;  // rows b0.. of step t, of step t + 1
      float* a_t = (keep ? a + t * B * G : a) + b0 * G;
      for (int64_t row = 0; row < n; ++row) {
        std::copy_n(xp + (t * B + b0 + row) * I, I, in + (b0 + row) * K);
        std::copy_n(h + r + row * H, H, in + (b0 + row) * K + I);
      }
      gates_of(in + b0 * K, a_t, 0.f, n);
      lstm_step<float>(bp, 0, a_t, c + r, c + r1, tc ? tc + r : nullptr, h + r1, n, H);
    }
  });
  return {hs, cs, acts, tcs};
}


template <typename T>
void lstm_step_back(const T* acts, const T* c_prev, const T* tanh_c, const T* dh_out, const T* dc_out,
                    T* dh, T* dc, T* dgates, int64_t B, int64_t H) {
  const Vec<T> one(T(1));
  for_rows(B, 4 * H, [&](int64_t b) {
    const T* a = acts + b * 4 * H;
    T* d = dgates + b * 4 * H;
    const int64_t r = b * H;
    for_cols<T>(H, [&](int64_t j, int64_t n) {
      Vec<T> i = load(a + j, n), f = load(a + H + j, n), g = load(a + 2 * H + j, n), o = load(a + 3 * H + j, n);
      Vec<T> tc = load(tanh_c + r + j, n);
      Vec<T> dh_t = load(dh_out + r + j, n) + load(dh + r + j, n);
      Vec<T> dc_t = load(dc_out + r + j, n) + load(dc + r + j, n) + dh_t * (o * (one - tc * tc));
      store(dc_t * (g * (i - i * i)), d + j, n);                             // d i_pre
      store(dc_t * (load(c_prev + r + j, n) * (f - f * f)), d + H + j, n);  // d f_pre
      store(dc_t * (i * (one - g * g)), d + 2 * H + j, n);                  // d g_pre
      store(dh_t * (tc * (o - o * o)), d + 3 * H + j, n);                   // d o_pre
      store(dc_t * f, dc + r + j, n);                                       // to c_{t-1}
    });
  });
}

// Returns d(gates) (T, B, 4H), dh0, dc0. cs: (T+1, B, H) from the forward.
std::vector<Tensor> lstm_backward(const Tensor& dhs, const Tensor& dcs, const Tensor& w_hh, const Tensor& acts,
                                  const Tensor& cs, const Tensor& tcs) {
  const int64_t T = acts.size(0), B = acts.size(1), H = acts.size(2) / 4, G = 4 * H;
  const bool one_thread = serial_for(B, G, H);
  SerialScope serial(one_thread);
  const Tensor w = w_hh.contiguous(), dhs_c = dhs.contiguous(), dcs_c = dcs.contiguous();
  Tensor dgates = at::empty_like(acts);
  Tensor dh = at::zeros({B, H}, acts.options()), dc = at::zeros({B, H}, acts.options());
  AT_DISPATCH_FLOATING_TYPES(acts.scalar_type(), "lstm_backward", [&] {
    using S = scalar_t;
    const StepGemm<S> back_through_w(w, B, H, G, /*transposed=*/false);  // dgates W
    const S *a = acts.data_ptr<S>(), *c = cs.data_ptr<S>(), *tc = tcs.data_ptr<S>();
    const S *gh = dhs_c.data_ptr<S>(), *gc = dcs_c.data_ptr<S>();
    S *d = dgates.data_ptr<S>(), *dhp = dh.data_ptr<S>(), *dcp = dc.data_ptr<S>();
    for_row_blocks(B, one_thread, [&](int64_t b0, int64_t b1) {
      const int64_t n = b1 - b0;
      for (int64_t t = T - 1; t >= 0; --t) {
        const int64_t r = t * B * H + b0 * H, g = t * B * G + b0 * G;  // rows b0.. of step t
        lstm_step_back<S>(a + g, c + r, tc + r, gh + r, gc + r, dhp + b0 * H, dcp + b0 * H, d + g, n, H);
        back_through_w(d + g, dhp + b0 * H, S(0), n);  // to h_{t-1}
      }
    });
  });
  return {dgates, dh, dc};
}

// ---------------------------------------------------------------- GRU (gates r, z, n)

template <typename T>
void gru_step(const T* x, const T* hw, const T* h_prev, T* rz, T* n_out, T* h_new, int64_t B, int64_t H) {
  for_rows(B, 3 * H, [&](int64_t b) {
    const T *xr = x + b * 3 * H, *hr = hw + b * 3 * H, *hp = h_prev + b * H;
    T *rzb = rz + b * 2 * H, *nb = n_out + b * H, *hn = h_new + b * H;
    for_cols<T>(H, [&](int64_t j, int64_t n) {
      Vec<T> r = sigmoid(load(xr + j, n) + load(hr + j, n));
      Vec<T> z = sigmoid(load(xr + H + j, n) + load(hr + H + j, n));
      Vec<T> c = tanh(load(xr + 2 * H + j, n) + r * load(hr + 2 * H + j, n));
      store(r, rzb + j, n), store(z, rzb + H + j, n), store(c, nb + j, n);
      store(c + z * (load(hp + j, n) - c), hn + j, n);  // h_t = n + z (h_{t-1} - n)
    });
  });
}

// xw: (T, B, 3H) = U x + b_i. Returns hs (T+1, B, H) with h0 in slot 0, and, if keep, W h + b_h
// (T, B, 3H), r|z (T, B, 2H) and n (T, B, H) for the backward.
std::vector<Tensor> gru_forward(const Tensor& xw, const Tensor& h0, const Tensor& w_hh, const std::optional<Tensor>& b_hh,
                                bool keep) {
  TORCH_CHECK(xw.is_contiguous(), "gru_forward: xw must be contiguous");
  const int64_t T = xw.size(0), B = xw.size(1), H = xw.size(2) / 3, G = 3 * H;
  const bool one_thread = serial_for(B, G, H);
  SerialScope serial(one_thread);
  const Tensor w = w_hh.contiguous();
  const Tensor bias = b_hh.has_value() ? b_hh->contiguous() : Tensor();
  Tensor hs = at::empty({T + 1, B, H}, xw.options());
  hs[0].copy_(h0);
  Tensor hw = keep ? at::empty_like(xw) : at::empty({B, G}, xw.options());
  Tensor rz = at::empty({keep ? T : 1, B, 2 * H}, xw.options()), ns = at::empty({keep ? T : 1, B, H}, xw.options());
  AT_DISPATCH_FLOATING_TYPES(xw.scalar_type(), "gru_forward", [&] {
    using S = scalar_t;
    const StepGemm<S> gates_of(w, B, G, H, /*transposed=*/true);  // W h_{t-1}
    const S *x = xw.data_ptr<S>(), *bp = bias.defined() ? bias.data_ptr<S>() : nullptr;
    S *h = hs.data_ptr<S>(), *hwp = hw.data_ptr<S>(), *rzp = rz.data_ptr<S>(), *np = ns.data_ptr<S>();
    for_row_blocks(B, one_thread, [&](int64_t b0, int64_t b1) {
      const int64_t n = b1 - b0;
      for (int64_t t = 0; t < T; ++t) {
        const int64_t k = keep ? t : 0;
        S* hw_t = hwp + k * B * G + b0 * G;
        if (bp) for (int64_t b = 0; b < n; ++b) std::copy_n(bp, G, hw_t + b * G);  // W h + b_h: b_h first, beta 1
        const int64_t r = t * B * H + b0 * H;
        gates_of(h + r, hw_t, S(bp ? 1 : 0), n);
        gru_step<S>(x + t * B * G + b0 * G, hw_t, h + r, rzp + k * B * 2 * H + b0 * 2 * H, np + k * B * H + b0 * H,
                    h + r + B * H, n, H);
      }
    });
  });
  if (!keep) rz = rz[0], ns = ns[0];
  return {hs, hw, rz, ns};
}

template <typename T>
void gru_step_back(const T* hw, const T* rz, const T* n_in, const T* h_prev, const T* dh_out, T* dh, T* dhw,
                   T* dn_pre, int64_t B, int64_t H) {
  const Vec<T> one(T(1));
  for_rows(B, 3 * H, [&](int64_t b) {
    const T *hwb = hw + b * 3 * H, *rzb = rz + b * 2 * H;
    T* d = dhw + b * 3 * H;
    const int64_t q = b * H;
    for_cols<T>(H, [&](int64_t j, int64_t n) {
      Vec<T> r = load(rzb + j, n), z = load(rzb + H + j, n), c = load(n_in + q + j, n);
      Vec<T> dh_t = load(dh_out + q + j, n) + load(dh + q + j, n);
      Vec<T> d_n = dh_t * ((one - z) * (one - c * c));
      store(d_n * (load(hwb + 2 * H + j, n) * (r - r * r)), d + j, n);       // d r_pre
      store(dh_t * ((load(h_prev + q + j, n) - c) * (z - z * z)), d + H + j, n);  // d z_pre
      store(d_n * r, d + 2 * H + j, n);                                       // d (W_n h + b_hn)
      store(d_n, dn_pre + q + j, n);
      store(dh_t * z, dh + q + j, n);  // to h_{t-1} directly through z (in place: this element is read above)
    });
  });
}

// Returns d(W h + b_h) (T, B, 3H), d n_pre (T, B, H), dh0. hs: (T+1, B, H) from the forward.
std::vector<Tensor> gru_backward(const Tensor& dhs, const Tensor& w_hh, const Tensor& hw, const Tensor& rz,
                                 const Tensor& ns, const Tensor& hs) {
  const int64_t T = hw.size(0), B = hw.size(1), H = hw.size(2) / 3, G = 3 * H;
  const bool one_thread = serial_for(B, G, H);
  SerialScope serial(one_thread);
  const Tensor w = w_hh.contiguous(), dhs_c = dhs.contiguous();
  Tensor dhw = at::empty_like(hw), dn = at::empty_like(ns);
  Tensor dh = at::zeros({B, H}, hw.options());
  AT_DISPATCH_FLOATING_TYPES(hw.scalar_type(), "gru_backward", [&] {
    using S = scalar_t;
    const S *hwp = hw.data_ptr<S>(), *rzp = rz.data_ptr<S>(), *np = ns.data_ptr<S>(), *h = hs.data_ptr<S>();
    const StepGemm<S> back_through_w(w, B, H, G, /*transposed=*/false);  // dhw W
    const S* gh = dhs_c.data_ptr<S>();
    S *d = dhw.data_ptr<S>(), *dnp = dn.data_ptr<S>(), *dhp = dh.data_ptr<S>();
    for_row_blocks(B, one_thread, [&](int64_t b0, int64_t b1) {
      const int64_t n = b1 - b0;
      for (int64_t t = T - 1; t >= 0; --t) {
        const int64_t r = t * B * H + b0 * H, g = t * B * G + b0 * G;  // rows b0.. of step t
        gru_step_back<S>(hwp + g, rzp + t * B * 2 * H + b0 * 2 * H, np + r, h + r, gh + r, dhp + b0 * H, d + g, dnp + r,
                         n, H);
        back_through_w(d + g, dhp + b0 * H, S(1), n);  // to h_{t-1}: through z (above), and through W
      }
    });
  });
  return {dhw, dn, dh};
}

// Sets the threshold (multiply-adds of one step's matmul) below which loops run serially; returns the
// previous one. A negative value only reads it.
int64_t set_serial_below(int64_t n) {
  return n < 0 ? serial_below.load() : serial_below.exchange(n);
}

bool runs_serial(int64_t B, int64_t G, int64_t H) { return serial_for(B, G, H); }

// a (rows, K) @ w (N, K)ᵀ as a loop's step makes it (StepGemm: the AVX-512 kernel, BLAS or oneDNN),
// `repeats` times over one packing of w, as a sequence's steps are, for the bench and the tests.
Tensor step_matmul(const Tensor& a, const Tensor& w, int64_t repeats) {
  TORCH_CHECK(a.dim() == 2 && w.dim() == 2 && a.size(1) == w.size(1), "step_matmul: expected (rows, K) and (N, K)");
  const Tensor ac = a.contiguous(), wc = w.contiguous();
  Tensor c = at::empty({a.size(0), w.size(0)}, a.options());
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "step_matmul", [&] {
    const StepGemm<scalar_t> gemm(wc, a.size(0), w.size(0), w.size(1), /*transposed=*/true);
    for (int64_t i = 0; i < repeats; ++i) gemm(ac.data_ptr<scalar_t>(), c.data_ptr<scalar_t>(), scalar_t(0), a.size(0));
  });
  return c;
}

// Sets the size (multiply-adds) from which float32 products go to oneDNN; returns the previous one. A
// negative value only reads it.
int64_t set_onednn_from(int64_t n) {
  return n < 0 ? onednn_from.load() : onednn_from.exchange(n);
}


}  // namespace

TORCH_LIBRARY(rnnlab_native, m) {
  m.def("set_serial_below", &set_serial_below);
  m.def("runs_serial", &runs_serial);
  m.def("set_onednn_from", &set_onednn_from);
  m.def("matmul", &matmul);
  m.def("step_matmul", &step_matmul);
  m.def("rnn_forward", &rnn_forward);
  m.def("lstm_forward", &lstm_forward);
  m.def("lstm_forward_input", &lstm_forward_input);
  m.def("has_step_kernel", &has_step_kernel);
  m.def("lstm_backward", &lstm_backward);
  m.def("gru_forward", &gru_forward);
  m.def("gru_backward", &gru_backward);
}
