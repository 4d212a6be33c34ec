// The shape rules of convolution, pooling and the recurrent layers (output
// sizes, argument checks, descriptions for messages). pydl._C and the CUDA
// modules both link this file, so the CPU and GPU kernels check their shapes
// the same way.
#include "shapes.h"

#include <array>
#include <string>

#include "conv.h"
#include "pool.h"

namespace pydl {

// ---- sizes ---------------------------------------------------------------------

namespace {

[[noreturn]] void size_overflow(const char* what) {
  fail(std::string(what) + ": the sizes are too large (their product or sum passes 2**63 - 1)");
}

}  // namespace

index_t size_mul(index_t a, index_t b, const char* what) {
  index_t r;
  if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &r)) size_overflow(what);
  return r;
}

index_t size_add(index_t a, index_t b, const char* what) {
  index_t r;
  if (a < 0 || b < 0 || __builtin_add_overflow(a, b, &r)) size_overflow(what);
  return r;
}

index_t size_product(const std::vector<index_t>& dims, index_t elem_bytes, const char* what) {
  index_t count = 1;
  for (index_t d : dims) {
    require(d >= 0, std::string(what) + ": negative dimension " + std::to_string(d));
    count = size_mul(count, d, what);
  }
  size_mul(std::max<index_t>(count, 1), elem_bytes, what);
  return count;
}

ByteRange byte_range(const void* data, const std::vector<index_t>& shape,
                     const std::vector<index_t>& strides, index_t item_bytes) {
  const char* base = static_cast<const char*>(data);
  index_t lo = 0, hi = item_bytes;  // offsets of the lowest and past the highest byte
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == 0) return {base, base};
    const index_t reach = (shape[i] - 1) * strides[i];
    (reach < 0 ? lo : hi) += reach;
  }
  return {base + lo, base + hi};
}

// ---- output sizes --------------------------------------------------------------

namespace {

void check_window(const char* fn, index_t size, index_t kernel, index_t stride, index_t pad,
                  index_t dilation) {
  const std::string name = std::string(fn) + ": ";
  require(size >= 0, name + "size must be >= 0, got " + std::to_string(size));
  require(kernel >= 1, name + "kernel must be >= 1, got " + std::to_string(kernel));
  require(stride >= 1, name + "stride must be >= 1, got " + std::to_string(stride));
  require(pad >= 0, name + "padding must be >= 0, got " + std::to_string(pad));
  require(dilation >= 1, name + "dilation must be >= 1, got " + std::to_string(dilation));
}

// size + 2 pad and the dilated kernel's extent dilation (kernel - 1) + 1, checked
// against overflow.
struct Extents {
  index_t padded, span;
};
Extents extents(index_t size, index_t kernel, index_t pad, index_t dilation) {
  const char* what = "output size: padded input or dilated kernel";
  return {size_add(size, size_mul(2, pad, what), what),
          size_add(size_mul(dilation, kernel - 1, what), 1, what)};
}

}  // namespace

index_t conv_output_size(index_t size, index_t kernel, index_t stride, index_t pad,
                         index_t dilation) {
  check_window("conv_output_size", size, kernel, stride, pad, dilation);
  const Extents e = extents(size, kernel, pad, dilation);
  return e.padded < e.span ? 0 : conv_windows(size, kernel, stride, pad, dilation);
}

index_t conv_transpose_output_size(index_t size, index_t kernel, index_t stride, index_t pad,
                                   index_t dilation, index_t output_padding) {
  check_window("conv_transpose_output_size", size, kernel, stride, pad, dilation);
  require(output_padding >= 0,
          "conv_transpose_output_size: output_padding must be >= 0, got " + std::to_string(output_padding));
  const char* what = "conv_transpose output size";
  // (size - 1) stride + span + output_padding, less the padding on both sides.
  const index_t full = size_add(size_add(size_mul(std::max<index_t>(size - 1, 0), stride, what),
                                         extents(size, kernel, pad, dilation).span, what),
                                output_padding, what);
  const index_t out = size == 0 ? 0 : std::max<index_t>(full - 2 * pad, 0);
  return out;
}

namespace {

// pool_output_size's formula, for settings already checked (Pool2dShape::H_out).
index_t pooled_size(index_t size, index_t kernel, index_t stride, index_t pad, index_t dilation,
                    bool ceil_mode) {
  // floor(numerator / stride) + 1, as PyTorch: in ceil_mode a dilated kernel
  // a little wider than the padded input still gives one (clipped) window.
  const index_t numerator = size + 2 * pad - dilation * (kernel - 1) - 1 +
                            (ceil_mode ? stride - 1 : 0);
  if (numerator < 0) return 0;
  index_t out = numerator / stride + 1;
  // A window that would start past the input and its left padding is dropped.
  if (ceil_mode && (out - 1) * stride >= size + pad) --out;
  return out;
}

}  // namespace

index_t pool_output_size(index_t size, index_t kernel, index_t stride, index_t pad,
                         index_t dilation, bool ceil_mode) {
  check_window("pool_output_size", size, kernel, stride, pad, dilation);
  size_add(extents(size, kernel, pad, dilation).padded, stride, "output size: padded input");
  return pooled_size(size, kernel, stride, pad, dilation, ceil_mode);
}

SamePadding same_padding(index_t size, index_t kernel, index_t stride, index_t dilation) {
  check_window("same_padding", size, kernel, stride, 0, dilation);
  const index_t out = size / stride + (size % stride != 0);
  const index_t span = extents(size, kernel, 0, dilation).span;
  const index_t total = std::max<index_t>((out - 1) * stride + span - size, 0);
  return {total / 2, total - total / 2};
}

// ---- convolution and pooling ---------------------------------------------------

std::string Conv2dShape::describe() const {
  auto tuple = [](std::initializer_list<index_t> v) {
    std::string out;
    for (index_t d : v) {
      out += out.empty() ? "(" : ", ";
      out += std::to_string(d);
    }
    return out + ")";
  };
  return "input " + tuple({N, C_in, H, W}) + ", weight " +
         tuple({C_out, groups > 0 ? C_in / groups : C_in, KH, KW}) + ", stride " +
         tuple({stride_h, stride_w}) + ", padding " + tuple({pad_h, pad_w}) + ", dilation " +
         tuple({dilation_h, dilation_w}) + ", groups " + std::to_string(groups);
}

void check_conv2d(const Conv2dShape& s) {
  require(s.N >= 0 && s.C_in >= 1 && s.H >= 1 && s.W >= 1 && s.C_out >= 1 && s.KH >= 1 &&
              s.KW >= 1,
          "conv2d: empty input channels, spatial size, output channels or kernel: " +
              s.describe());
  require(s.stride_h >= 1 && s.stride_w >= 1, "conv2d: stride must be >= 1: " + s.describe());
  require(s.dilation_h >= 1 && s.dilation_w >= 1,
          "conv2d: dilation must be >= 1: " + s.describe());
  require(s.pad_h >= 0 && s.pad_w >= 0, "conv2d: padding must be >= 0: " + s.describe());
  require(s.groups >= 1, "conv2d: groups must be >= 1: " + s.describe());
  require(s.C_in % s.groups == 0 && s.C_out % s.groups == 0,
          "conv2d: input channels " + std::to_string(s.C_in) + " and output channels " +
              std::to_string(s.C_out) + " must both be divisible by groups " +
              std::to_string(s.groups) + ": " + s.describe());
  // H + 2 pad >= dilation (K - 1) + 1 per axis, in arithmetic that cannot wrap
  // (H_out() and W_out() are then exact).
  const char* what = "conv2d: padded input or dilated kernel";
  require(size_add(s.H, size_mul(2, s.pad_h, what), what) >=
                  size_add(size_mul(s.dilation_h, s.KH - 1, what), 1, what) &&
              size_add(s.W, size_mul(2, s.pad_w, what), what) >=
                  size_add(size_mul(s.dilation_w, s.KW - 1, what), 1, what),
          "conv2d: kernel (dilated) is larger than the padded input: " + s.describe());
  size_product({s.N, s.C_out, s.H_out(), s.W_out()}, sizeof(float), "conv2d: output");
}


index_t Pool2dShape::H_out() const {
  return pooled_size(H, KH, stride_h, pad_h, dilation_h, ceil_mode);
}
index_t Pool2dShape::W_out() const {
  return pooled_size(W, KW, stride_w, pad_w, dilation_w, ceil_mode);
}

std::string Pool2dShape::describe() const {
  auto pair = [](index_t a, index_t b) {
    return "(" + std::to_string(a) + ", " + std::to_string(b) + ")";
  };
  return "input (" + std::to_string(N) + ", " + std::to_string(C) + ", " + std::to_string(H) +
         ", " + std::to_string(W) + "), kernel_size " + pair(KH, KW) + ", stride " +
         pair(stride_h, stride_w) + ", padding " + pair(pad_h, pad_w) + ", dilation " +
         pair(dilation_h, dilation_w) + (ceil_mode ? ", ceil_mode" : "");
}

namespace {

// The first output position along one axis whose window (taps start +
// t*dilation, t in [0, k), start = o*stride - pad) holds no input position in
// [0, size), or -1. Only windows starting left of the input can be empty (the
// last one starts inside it), so at most pad/stride + 1 windows are looked at.
index_t first_padding_only_window(index_t out, index_t size, index_t k, index_t stride,
                                  index_t pad, index_t dilation) {
  for (index_t o = 0; o < out && o * stride < pad; ++o) {
    const index_t start = o * stride - pad;
    const index_t first_tap = (-start + dilation - 1) / dilation;  // first tap at >= 0
    if (first_tap >= k || start + first_tap * dilation >= size) return o;
  }
  return -1;
}

}  // namespace

void check_pool2d(const Pool2dShape& s, const char* op) {
  const std::string name(op);
  require(s.N >= 0 && s.C >= 0 && s.H >= 1 && s.W >= 1,
          name + ": input must have a non-empty plane: " + s.describe());
  require(s.KH >= 1 && s.KW >= 1, name + ": kernel_size must be >= 1: " + s.describe());
  require(s.stride_h >= 1 && s.stride_w >= 1, name + ": stride must be >= 1: " + s.describe());
  require(s.dilation_h >= 1 && s.dilation_w >= 1,
          name + ": dilation must be >= 1: " + s.describe());
  // PyTorch's rule: pad <= kernel_size / 2 (undilated, so also <= half the
  // dilated kernel).
  require(s.pad_h >= 0 && s.pad_w >= 0 && s.pad_h <= s.KH / 2 && s.pad_w <= s.KW / 2,
          name + ": padding must be >= 0 and at most half the kernel size: " + s.describe());
  // The output-size rule's terms, in arithmetic that cannot wrap: H_out() and
  // W_out() are then exact.
  const std::string what_s = name + ": padded input, dilated kernel or stride";
  const char* what = what_s.c_str();
  for (auto [in, k, stride, pad, dilation] :
       {std::array<index_t, 5>{s.H, s.KH, s.stride_h, s.pad_h, s.dilation_h},
        std::array<index_t, 5>{s.W, s.KW, s.stride_w, s.pad_w, s.dilation_w}}) {
    size_add(size_add(in, size_mul(2, pad, what), what), stride, what);
    size_mul(dilation, k - 1, what);
  }
  require(s.H_out() >= 1 && s.W_out() >= 1,
          name + ": the output would be empty (kernel larger than the padded input): " +
              s.describe());
  size_product({s.N, s.C, s.H_out(), s.W_out()}, sizeof(std::int64_t), what);
  // With dilation a window can fall wholly in the padding (its taps stepping
  // over the input). PyTorch returns -inf and an index outside the window
  // there; no model wants either, so such a window is an error here.
  if (s.N * s.C == 0) return;  // no window is read
  const index_t oh = first_padding_only_window(s.H_out(), s.H, s.KH, s.stride_h, s.pad_h,
                                               s.dilation_h);
  const index_t ow = first_padding_only_window(s.W_out(), s.W, s.KW, s.stride_w, s.pad_w,
                                               s.dilation_w);
  require(oh < 0 && ow < 0,
          name + ": the window of output " + (oh >= 0 ? "row " + std::to_string(oh)
                                                        : "column " + std::to_string(ow)) +
              " lies wholly in the padding (its dilated taps step over the input); "
              "use less padding or dilation: " + s.describe());
}
// ---- recurrent layers ----------------------------------------------------------

Reduction parse_reduction(const std::string& name) {
  if (name == "mean") return Reduction::mean;
  if (name == "sum") return Reduction::sum;
  if (name == "none") return Reduction::none;
  fail("reduction must be 'mean', 'sum' or 'none', got '" + name + "'");
}

void check_probability(double p) {
  require(p >= 0.0 && p <= 1.0,
          "dropout probability p must be in [0, 1], got " + std::to_string(p));
}

RnnMode parse_rnn_mode(const std::string& mode) {
  if (mode == "rnn_tanh") return RnnMode::rnn_tanh;
  if (mode == "rnn_relu") return RnnMode::rnn_relu;
  if (mode == "lstm") return RnnMode::lstm;
  if (mode == "gru") return RnnMode::gru;
  fail("mode must be 'rnn_tanh', 'rnn_relu', 'lstm' or 'gru', got '" + mode + "'");
}

namespace {

std::string dims_str(const std::vector<index_t>& dims) {
  std::string s = "(";
  for (std::size_t i = 0; i < dims.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(dims[i]);
  }
  return s + (dims.size() == 1 ? ",)" : ")");
}

}  // namespace

RnnSizes::RnnSizes(const std::string& fn_name, const std::string& mode_name,
                   const std::vector<index_t>& x_shape, const std::vector<index_t>& w_hh_shape)
    : mode(parse_rnn_mode(mode_name)), fn(fn_name + " (" + mode_name + ")"),
      G(rnn_gate_count(mode)) {
  const auto& x = x_shape;
  require(x.size() == 3 && x[0] >= 1 && x[1] >= 1 && x[2] >= 1,
          fn + ": x must be (seq_len, batch, input_size) with every size >= 1, got " +
              dims_str(x));
  const auto& w = w_hh_shape;
  require(w.size() == 2 && w[1] >= 1 && w[0] == G * w[1],
          fn + ": w_hh must be (" + std::to_string(G) + "*hidden_size, hidden_size), got " +
              dims_str(w));
  T = x[0];
  B = x[1];
  I = x[2];
  H = w[1];
}

RnnSizes::Shape RnnSizes::shape(const std::string& name) const {
  const index_t GH = G * H;
  if (name == "x" || name == "dx") return {{T, B, I}, "(T, B, I)"};
  if (name == "h0" || name == "c0" || name == "dc_last" || name == "dh0" || name == "dc0")
    return {{B, H}, "(B, H)"};
  if (name == "w_ih" || name == "dw_ih") return {{GH, I}, "(G*H, I)"};
  if (name == "w_hh" || name == "dw_hh") return {{GH, H}, "(G*H, H)"};
  if (name == "b_ih" || name == "b_hh" || name == "db_ih" || name == "db_hh")
    return {{GH}, "(G*H,)"};
  if (name == "y" || name == "dy" || name == "c") return {{T, B, H}, "(T, B, H)"};
  if (name == "saved") return {{T, B, saved_width()}, "(T, B, 4*H)"};
  fail(fn + ": no array named " + name);  // a binding's mistake, not the caller's
}

void RnnSizes::check(const std::string& name, const std::vector<index_t>& dims) const {
  const Shape s = shape(name);
  require(dims == s.dims, fn + ": " + name + " has shape " + dims_str(dims) + ", expected " +
                              s.meaning + " = " + dims_str(s.dims));
}

std::string RnnSizes::missing(const std::string& name) const {
  return fn + ": " + name + " must be a float32 array " + shape(name).meaning + ", got None";
}

void RnnSizes::check_presence(bool has_c0, bool has_b_ih, bool has_b_hh) const {
  require(lstm() || !has_c0, fn + ": c0 is for LSTM only");
  require(has_b_ih == has_b_hh, fn + ": give both b_ih and b_hh, or neither");
}

namespace {

void check_rnn_dims(const char* fn, index_t T, index_t B, index_t I, index_t H) {
  require(T >= 1 && B >= 1 && I >= 1 && H >= 1,
          std::string(fn) + ": sequence length, batch, input and hidden sizes must be >= 1, got "
          "T=" + std::to_string(T) + ", B=" + std::to_string(B) + ", I=" + std::to_string(I) +
          ", H=" + std::to_string(H));
}

}  // namespace

void check_rnn_layer_forward(RnnMode mode, const float* y, const float* c, const float* saved,
                             const float* x, const float* h0, const float* c0,
                             const float* w_ih, const float* w_hh, const float* b_ih,
                             const float* b_hh, index_t T, index_t B, index_t I, index_t H) {
  check_rnn_dims("rnn_layer_forward", T, B, I, H);
  require(y && x && h0 && w_ih && w_hh, "rnn_layer_forward: null y, x, h0 or weight");
  require(mode != RnnMode::lstm || (c && c0), "rnn_layer_forward: LSTM needs c and c0");
  require(rnn_saved_width(mode, H) == 0 || saved, "rnn_layer_forward: saved is null");
  require((b_ih == nullptr) == (b_hh == nullptr),
          "rnn_layer_forward: give both biases or neither");
}

void check_rnn_layer_backward(RnnMode mode, const float* dh0, const float* dc0,
                              const float* dw_ih, const float* dw_hh, const float* db_ih,
                              const float* db_hh, const float* dy, const float* x,
                              const float* h0, const float* c0, const float* w_ih,
                              const float* w_hh, const float* y, const float* c,
                              const float* saved, index_t T, index_t B, index_t I, index_t H) {
  check_rnn_dims("rnn_layer_backward", T, B, I, H);
  require(dh0 && dw_ih && dw_hh && dy && x && h0 && w_ih && w_hh && y,
          "rnn_layer_backward: null gradient output or forward input");
  require(mode != RnnMode::lstm || (dc0 && c0 && c),
          "rnn_layer_backward: LSTM needs dc0, c0 and c");
  require(rnn_saved_width(mode, H) == 0 || saved, "rnn_layer_backward: saved is null");
  require((db_ih == nullptr) == (db_hh == nullptr),
          "rnn_layer_backward: ask for both bias gradients or neither");
}

}  // namespace pydl
