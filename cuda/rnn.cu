// Recurrent layers over a whole sequence on the GPU, one direction, with the
// structure of csrc/rnn.cpp:
//
// Forward:   A = X W_ih^T                      one GEMM over all T*B rows
//            per step: A_t += h_prev W_hh^T    one GEMM (B x G*H)
//                      h_t = cell(A_t + b)     one fused gate kernel
// Backward:  per step (last to first): dA_t = fused gate backward(dh_t, ...),
//            dh_prev = dA_t W_hh               one GEMM (B x H)
//            then, over all steps at once: dW_hh = sum_t dA_t^T h_prev(t),
//            dW_ih = dA^T X, dX = dA W_ih (one GEMM each), db = column sums of dA.
// The GRU keeps the hidden part of its n gate apart (n = tanh(a_n + r * (W_hn h +
// b_hn))), so its per-step GEMM writes a (B, 3H) workspace, and its input and
// hidden gate gradients differ in the n block.
//
// A gate kernel gives one thread to each (batch row b, hidden unit j) and is
// written once, as a functor step(b, j); the biases are read as given (null:
// none), so the host never combines them. The step's carried gradients (dh,
// dc) live in the outputs dh0 and dc0, which end as the gradients of h_0, c_0.
// Everything, workspaces included (cudaMallocAsync), is ordered on one stream.
#include "rnn.cuh"

#include <algorithm>
#include <string>

#include "gemm.cuh"

namespace pydl::cuda {
namespace rnn_detail {

constexpr int kGateThreads = 128;
// Column sums: 32 columns per block, each summed by kColumnSumRows threads.
constexpr int kColumnSumRows = 8;

// ---- device helpers ------------------------------------------------------------

// sigmoid(x) = 1 / (1 + e) for x >= 0 and e / (1 + e) for x < 0, e = exp(-|x|).
__device__ __forceinline__ float sigmoid_of(float x) {
  const float e = expf(-fabsf(x));
  return (x < 0 ? e : 1.0f) / (1.0f + e);
}
// Element j of an optional bias (0 when there is none).
__device__ __forceinline__ float bias_at(const float* b, index_t j) { return b ? b[j] : 0.0f; }
// Element k of an optional carried gradient (0 before the first step).
__device__ __forceinline__ float carried(const float* d, index_t k) { return d ? d[k] : 0.0f; }

// Runs step(b, j) for every (b, j) of a B x H grid, one thread each.
template <class Step>
__global__ void __launch_bounds__(kGateThreads) gate_kernel(Step step, index_t B, index_t H) {
  const index_t n = B * H;
  for (index_t k = index_t(blockIdx.x) * blockDim.x + threadIdx.x; k < n;
       k += index_t(gridDim.x) * blockDim.x)
    step(k / H, k % H);
}

template <class Step>
void launch_gates(const Step& step, index_t B, index_t H, cudaStream_t stream) {
  const index_t n = B * H;
  // Whole warps, no more than the rows need: small layers get one small block.
  const unsigned threads = static_cast<unsigned>(std::min<index_t>(kGateThreads, (n + 31) / 32 * 32));
  const unsigned blocks = static_cast<unsigned>(std::min<index_t>(ceil_div(n, threads), 1 << 16));
  PYDL_LAUNCH(gate_kernel<Step>, dim3(blocks), dim3(threads), 0, stream)(step, B, H);
}

// ---- gate kernels ---------------------------------------------------------------
// Row b of every (B, .) buffer starts at b * (its width); j is the hidden unit.
// The formulas, and their order of float operations, are csrc/rnn.cpp's.

// Elman RNN: h = act(a + (b_ih + b_hh)), in place on the pre-activation row (width H).
template <bool kRelu>
struct RnnForward {
  float* h;
  const float *b_ih, *b_hh;
  index_t H;
  __device__ void operator()(index_t b, index_t j) const {
    const index_t k = b * H + j;
    const float a = h[k] + (bias_at(b_ih, j) + bias_at(b_hh, j));
    h[k] = kRelu ? fmaxf(a, 0.0f) : tanhf(a);
  }
};

// dA = (dy + dh_next) act'(h): 1 - h^2 for tanh, [h > 0] for relu.
template <bool kRelu>
struct RnnBackward {
  float* dgates;
  const float *h, *dy, *dh_next;
  index_t H;
  __device__ void operator()(index_t b, index_t j) const {
    const index_t k = b * H + j;
    const float dh = dy[k] + carried(dh_next, k);
    const float hv = h[k];
    dgates[k] = kRelu ? dh * (hv > 0 ? 1.0f : 0.0f) : dh * (1.0f - hv * hv);
  }
};

// LSTM: with a = A_t + b (row of 4H: i, f, g, o blocks),
//   i, f, o = sigmoid(a_i, a_f, a_o), g = tanh(a_g), c = f c_prev + i g, h = o tanh(c).
// The gate row is overwritten by the activated gates (saved for backward).
struct LstmForward {
  float *gates, *c, *h;
  const float *c_prev, *b_ih, *b_hh;
  index_t H;
  __device__ float pre(const float* a, int gate, index_t j) const {
    const index_t col = gate * H + j;
    return a[gate * H] + (bias_at(b_ih, col) + bias_at(b_hh, col));
  }
  __device__ void operator()(index_t b, index_t j) const {
    float* a = gates + b * 4 * H + j;
    const float i = sigmoid_of(pre(a, 0, j)), f = sigmoid_of(pre(a, 1, j));
    const float g = tanhf(pre(a, 2, j)), o = sigmoid_of(pre(a, 3, j));
    const index_t k = b * H + j;
    const float ct = f * c_prev[k] + i * g;
    a[0] = i;
    a[H] = f;
    a[2 * H] = g;
    a[3 * H] = o;
    c[k] = ct;
    h[k] = o * tanhf(ct);
  }
};

// LSTM backward, dh = dy + dh_next, dc = dc_next + dh o (1 - tanh(c)^2):
//   do = dh tanh(c), di = dc g, df = dc c_prev, dg = dc i, dc_prev = dc f,
// each gate gradient times its activation's derivative (s(1-s) or 1-g^2).
// dc_next may be dc_prev_out itself (each thread reads its element first).
struct LstmBackward {
  float *dgates, *dc_prev_out;
  const float *dc_next, *gates, *c, *c_prev, *dy, *dh_next;
  index_t H;
  __device__ void operator()(index_t b, index_t j) const {
    const float* s = gates + b * 4 * H + j;
    float* d = dgates + b * 4 * H + j;
    const index_t k = b * H + j;
    const float i = s[0], f = s[H], g = s[2 * H], o = s[3 * H];
    const float tc = tanhf(c[k]);
    const float dh = dy[k] + carried(dh_next, k);
    const float dct = carried(dc_next, k) + dh * o * (1.0f - tc * tc);
    d[0] = dct * g * i * (1.0f - i);
    d[H] = dct * c_prev[k] * f * (1.0f - f);
    d[2 * H] = dct * i * (1.0f - g * g);
    d[3 * H] = dh * tc * o * (1.0f - o);
    dc_prev_out[k] = dct * f;
  }
};

// GRU, with x-part A_t (row of 4H: r, z, n blocks, 4th block free) and hidden
// part gh = h_prev W_hh^T (row of 3H):
//   r = sigmoid(a_r + b_ir + gh_r + b_hr), z likewise, hn = gh_n + b_hn,
//   n = tanh(a_n + b_in + r hn), h = n + z (h_prev - n).
// The gate row is overwritten by (r, z, n, hn), saved for backward.
struct GruForward {
  float *gates, *h;
  const float *gh, *h_prev, *b_ih, *b_hh;
  index_t H;
  __device__ void operator()(index_t b, index_t j) const {
    float* a = gates + b * 4 * H + j;
    const float* g = gh + b * 3 * H + j;
    const float r = sigmoid_of(a[0] + bias_at(b_ih, j) + g[0] + bias_at(b_hh, j));
    const float z = sigmoid_of(a[H] + bias_at(b_ih, H + j) + g[H] + bias_at(b_hh, H + j));
    const float hn = g[2 * H] + bias_at(b_hh, 2 * H + j);
    const float n = tanhf(a[2 * H] + bias_at(b_ih, 2 * H + j) + r * hn);
    const index_t k = b * H + j;
    a[0] = r;
    a[H] = z;
    a[2 * H] = n;
    a[3 * H] = hn;
    h[k] = n + z * (h_prev[k] - n);
  }
};

// GRU backward, dh = dy + dh_next:
//   dn' = dh (1 - z)(1 - n^2), dz' = dh (h_prev - n) z (1 - z),
//   dr' = dn' hn r (1 - r), d(hn) = dn' r, and dh_prev's direct part dh z.
// dgates row (4H): dr', dz', d(hn), dn' -- the first 3H blocks are the hidden
// gates' gradient (rows of W_hh), blocks 0, 1, 3 the input gates' (rows of W_ih).
// dh_next may be dh_direct itself (each thread reads its element first).
struct GruBackward {
  float *dgates, *dh_direct;
  const float *dh_next, *gates, *h_prev, *dy;
  index_t H;
  __device__ void operator()(index_t b, index_t j) const {
    const float* s = gates + b * 4 * H + j;
    float* d = dgates + b * 4 * H + j;
    const index_t k = b * H + j;
    const float r = s[0], z = s[H], n = s[2 * H], hn = s[3 * H];
    const float dh = dy[k] + carried(dh_next, k);
    const float dn = dh * (1.0f - z) * (1.0f - n * n);
    d[0] = dn * hn * r * (1.0f - r);
    d[H] = dh * (h_prev[k] - n) * z * (1.0f - z);
    d[2 * H] = dn * r;
    d[3 * H] = dn;
    dh_direct[k] = dh * z;
  }
};

// ---- column sums (bias gradients) -------------------------------------------------

// out[j] = sum_r a[r * lda + j] for j < cols, also written to out_copy unless
// null. Block (32, kColumnSumRows): threadIdx.x picks the column (a warp reads
// 32 consecutive floats of a row), threadIdx.y strides the rows, and the
// partial sums meet in shared memory.
__global__ void __launch_bounds__(32 * kColumnSumRows)
    column_sums_kernel(float* out, float* out_copy, const float* __restrict__ a, index_t rows,
                       index_t cols, index_t lda) {
  __shared__ float partial[kColumnSumRows][32];
  const index_t j = index_t(blockIdx.x) * 32 + threadIdx.x;
  float s = 0.0f;
  if (j < cols)
    for (index_t r = threadIdx.y; r < rows; r += kColumnSumRows) s += a[r * lda + j];
  partial[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && j < cols) {
    float total = partial[0][threadIdx.x];
    for (int i = 1; i < kColumnSumRows; ++i) total += partial[i][threadIdx.x];
    out[j] = total;
    if (out_copy) out_copy[j] = total;
  }
}

void column_sums(float* out, float* out_copy, const float* a, index_t rows, index_t cols,
                 index_t lda, cudaStream_t stream) {
  PYDL_LAUNCH(column_sums_kernel, dim3(ceil_div(cols, 32)), dim3(32, kColumnSumRows), 0,
              stream)(out, out_copy, a, rows, cols, lda);
}

// ---- host helpers ------------------------------------------------------------------

// A device workspace of n floats (none when n is 0), allocated and freed in
// order on `stream`, so it is free again only after the kernels that use it.
class DeviceWorkspace {
 public:
  DeviceWorkspace(index_t n, cudaStream_t stream) : stream_(stream) {
    if (n > 0)
      PYDL_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&ptr_),
                                      static_cast<size_t>(n) * sizeof(float), stream));
  }
  ~DeviceWorkspace() {
    if (ptr_) cudaFreeAsync(ptr_, stream_);
  }
  DeviceWorkspace(const DeviceWorkspace&) = delete;
  DeviceWorkspace& operator=(const DeviceWorkspace&) = delete;
  float* get() const { return ptr_; }

 private:
  float* ptr_ = nullptr;
  cudaStream_t stream_;
};

}  // namespace rnn_detail

void rnn_layer_forward(RnnMode mode, float* y, float* c, float* saved, const float* x,
                       const float* h0, const float* c0, const float* w_ih, const float* w_hh,
                       const float* b_ih, const float* b_hh, index_t T, index_t B, index_t I,
                       index_t H, bool reverse, cudaStream_t stream) {
  using namespace rnn_detail;
  check_rnn_layer_forward(mode, y, c, saved, x, h0, c0, w_ih, w_hh, b_ih, b_hh, T, B, I, H);
  const bool gru = mode == RnnMode::gru;
  const index_t GH = rnn_gate_count(mode) * H, ld = rnn_gate_width(mode, H), BH = B * H;
  float* pre = rnn_saved_width(mode, H) == 0 ? y : saved;  // pre-activations, rows of ld

  sgemm(false, true, T * B, GH, I, 1.0f, x, I, w_ih, I, 0.0f, pre, ld, stream);
  const DeviceWorkspace gh(gru ? B * GH : 0, stream);
  for (index_t s = 0; s < T; ++s) {
    const auto [t, tp] = rnn_step_times(s, T, reverse);
    const float* h_prev = s == 0 ? h0 : y + tp * BH;
    float* pre_t = pre + t * B * ld;
    float* y_t = y + t * BH;
    switch (mode) {
      case RnnMode::rnn_tanh:
      case RnnMode::rnn_relu:
        sgemm(false, true, B, H, H, 1.0f, h_prev, H, w_hh, H, 1.0f, y_t, H, stream);
        if (mode == RnnMode::rnn_relu)
          launch_gates(RnnForward<true>{y_t, b_ih, b_hh, H}, B, H, stream);
        else
          launch_gates(RnnForward<false>{y_t, b_ih, b_hh, H}, B, H, stream);
        break;
      case RnnMode::lstm:
        sgemm(false, true, B, GH, H, 1.0f, h_prev, H, w_hh, H, 1.0f, pre_t, ld, stream);
        launch_gates(LstmForward{pre_t, c + t * BH, y_t, s == 0 ? c0 : c + tp * BH, b_ih, b_hh,
                                 H}, B, H, stream);
        break;
      case RnnMode::gru:
        sgemm(false, true, B, GH, H, 1.0f, h_prev, H, w_hh, H, 0.0f, gh.get(), GH, stream);
        launch_gates(GruForward{pre_t, y_t, gh.get(), h_prev, b_ih, b_hh, H}, B, H, stream);
        break;
    }
  }
}

void rnn_layer_backward(RnnMode mode, float* dx, float* dh0, float* dc0, float* dw_ih,
                        float* dw_hh, float* db_ih, float* db_hh, const float* dy,
                        const float* dc_last, const float* x, const float* h0, const float* c0,
                        const float* w_ih, const float* w_hh, const float* y, const float* c,
                        const float* saved, index_t T, index_t B, index_t I, index_t H,
                        bool reverse, cudaStream_t stream) {
  using namespace rnn_detail;
  check_rnn_layer_backward(mode, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dy, x, h0, c0, w_ih,
                           w_hh, y, c, saved, T, B, I, H);
  const bool gru = mode == RnnMode::gru;
  const index_t GH = rnn_gate_count(mode) * H, ld = rnn_gate_width(mode, H), BH = B * H;

  const DeviceWorkspace dgates_ws(T * B * ld, stream);
  float* dgates = dgates_ws.get();
  for (index_t s = T - 1; s >= 0; --s) {
    const auto [t, tp] = rnn_step_times(s, T, reverse);
    float* dg = dgates + t * B * ld;
    const float* dy_t = dy + t * BH;
    const float* y_t = y + t * BH;
    // The gradients carried from the later step: none yet at the first one.
    const bool first = s == T - 1;
    const float* dh_next = first ? nullptr : dh0;
    switch (mode) {
      case RnnMode::rnn_tanh:
        launch_gates(RnnBackward<false>{dg, y_t, dy_t, dh_next, H}, B, H, stream);
        break;
      case RnnMode::rnn_relu:
        launch_gates(RnnBackward<true>{dg, y_t, dy_t, dh_next, H}, B, H, stream);
        break;
      case RnnMode::lstm:
        launch_gates(LstmBackward{dg, dc0, first ? dc_last : dc0, saved + t * B * ld, c + t * BH,
                                  s == 0 ? c0 : c + tp * BH, dy_t, dh_next, H}, B, H, stream);
        break;
      case RnnMode::gru:
        launch_gates(GruBackward{dg, dh0, dh_next, saved + t * B * ld,
                                 s == 0 ? h0 : y + tp * BH, dy_t, H}, B, H, stream);
        break;
    }
    // dh_prev = dA_t W_hh (+ the GRU's direct path dh z, already in dh0).
    sgemm(false, false, B, H, GH, 1.0f, dg, ld, w_hh, H, gru ? 1.0f : 0.0f, dh0, H, stream);
  }

  // dW_hh = sum_t dA_t^T h_prev(t): steps 1.. read h_prev from y (one GEMM over
  // T-1 stacked steps, the rows of dA and y offset by one step), step 0 from h0.
  const float* dg_later = reverse ? dgates : dgates + B * ld;
  const float* y_prev = reverse ? y + BH : y;
  sgemm(true, false, GH, H, (T - 1) * B, 1.0f, dg_later, ld, y_prev, H, 0.0f, dw_hh, H, stream);
  const float* dg_first = dgates + (reverse ? T - 1 : 0) * B * ld;
  sgemm(true, false, GH, H, B, 1.0f, dg_first, ld, h0, H, 1.0f, dw_hh, H, stream);

  // The input gates' gradient: the first GH columns of dA, except for the GRU,
  // whose n block comes from column block 3 (dn') rather than 2 (d(hn)).
  struct Block { index_t column, rows; };
  const Block whole[] = {{0, GH}};
  const Block gru_blocks[] = {{0, 2 * H}, {3 * H, H}};
  const Block* blocks = gru ? gru_blocks : whole;
  const int block_count = gru ? 2 : 1;
  index_t row = 0;  // first row of W_ih the block belongs to
  for (int k = 0; k < block_count; ++k) {
    const Block& bk = blocks[k];
    sgemm(true, false, bk.rows, I, T * B, 1.0f, dgates + bk.column, ld, x, I, 0.0f,
          dw_ih + row * I, I, stream);
    if (dx)
      sgemm(false, false, T * B, I, bk.rows, 1.0f, dgates + bk.column, ld, w_ih + row * I, I,
            k == 0 ? 0.0f : 1.0f, dx, I, stream);
    // Without a GRU the two biases enter the same sum: one reduction fills both.
    if (db_ih)
      column_sums(db_ih + row, gru ? nullptr : db_hh, dgates + bk.column, T * B, bk.rows, ld,
                  stream);
    row += bk.rows;
  }
  if (db_hh && gru) column_sums(db_hh, nullptr, dgates, T * B, GH, ld, stream);
}

}  // namespace pydl::cuda
