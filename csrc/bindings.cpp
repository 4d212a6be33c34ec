// The only pybind11 file of pydl._C. Every binding checks dtypes, shapes,
// contiguity and sizes before any kernel touches memory, raising TypeError or
// ValueError that names the argument; kernels run with the GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <string>
#include <vector>

#include "common.h"
#include "conv.h"
#include "elementwise.h"
#include "gemm.h"
#include "loss.h"
#include "peak.h"
#include "pool.h"

namespace py = pybind11;
using namespace pydl;

namespace {

// ---- argument checks and output arrays ------------------------------------

std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) {
    if (i) s += ", ";
    s += std::to_string(a.shape(i));
  }
  return s + (a.ndim() == 1 ? ",)" : ")");
}

template <class T>
const char* dtype_name() {
  if (std::is_same_v<T, float>) return "float32";
  if (std::is_same_v<T, double>) return "float64";
  if (std::is_same_v<T, std::int64_t>) return "int64";
  return "?";
}

// Checks that `a` holds T; returns it as a py::array without copying.
template <class T>
py::array checked(const py::handle& obj, const char* name) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(std::string(name) + " must be a numpy array, got " +
                         std::string(py::str(py::type::of(obj))));
  py::array a = py::reinterpret_borrow<py::array>(obj);
  if (!a.dtype().is(py::dtype::of<T>()))
    throw py::type_error(std::string(name) + " must be " + dtype_name<T>() + ", got " +
                         std::string(py::str(a.dtype())));
  return a;
}

// As checked(), and also C-contiguous.
template <class T>
py::array contiguous(const py::handle& obj, const char* name) {
  py::array a = checked<T>(obj, name);
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(std::string(name) + " must be C-contiguous (shape " +
                          shape_str(a) + "); call numpy.ascontiguousarray first");
  return a;
}

template <class T>
py::array writable_contiguous(const py::handle& obj, const char* name) {
  py::array a = contiguous<T>(obj, name);
  if (!a.writeable()) throw py::value_error(std::string(name) + " must be writable");
  return a;
}

void require_same_shape(const py::array& a, const char* a_name, const py::array& b,
                        const char* b_name) {
  bool same = a.ndim() == b.ndim();
  for (py::ssize_t i = 0; same && i < a.ndim(); ++i) same = a.shape(i) == b.shape(i);
  if (!same)
    throw py::value_error(std::string(a_name) + " has shape " + shape_str(a) + " but " +
                          b_name + " has shape " + shape_str(b) + "; they must match");
}

std::vector<py::ssize_t> shape_of(const py::array& a) {
  return std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim());
}

// A new C-contiguous array whose buffer comes from the caching allocator and
// goes back to it when NumPy frees the array.
template <class T>
py::array_t<T> new_array(const std::vector<py::ssize_t>& shape) {
  std::size_t count = 1;
  for (auto d : shape) count *= static_cast<std::size_t>(d);
  void* ptr = cached_alloc(std::max<std::size_t>(count, 1) * sizeof(T));
  py::capsule owner(ptr, [](void* p) { cached_free(p); });
  return py::array_t<T>(shape, static_cast<T*>(ptr), owner);
}

template <class T>
const T* cptr(const py::array& a) { return static_cast<const T*>(a.data()); }
template <class T>
T* mptr(py::array& a) { return static_cast<T*>(a.mutable_data()); }

// ---- runtime ---------------------------------------------------------------

void bind_runtime(py::module_& m) {
  m.def("set_num_threads", &set_num_threads, py::arg("n"),
        "Threads the CPU kernels may use (small ops still run on one).");
  m.def("get_num_threads", &num_threads);
  m.def("isa", [] { return active_isa() == Isa::avx2 ? "avx2" : "portable"; },
        "The instruction set the kernels run: 'avx2' (AVX2+FMA) or 'portable'.");
  m.def("set_isa", [](const std::string& name) {
        if (name == "avx2") set_isa(Isa::avx2);
        else if (name == "portable") set_isa(Isa::portable);
        else throw py::value_error("set_isa: expected 'avx2' or 'portable', got '" + name + "'");
      }, py::arg("name"));
  m.def("allocator_stats", [] {
    AllocatorStats s = allocator_stats();
    py::dict d;
    d["bytes_in_use"] = s.bytes_in_use;
    d["bytes_cached"] = s.bytes_cached;
    d["hits"] = s.hits;
    d["misses"] = s.misses;
    return d;
  });
  m.def("allocator_release_cache", &allocator_release_cache);
  m.def("empty", [](const std::vector<py::ssize_t>& shape, const std::string& dtype) -> py::array {
        for (auto d : shape)
          if (d < 0) throw py::value_error("empty: negative dimension in shape");
        if (dtype == "float32") return new_array<float>(shape);
        if (dtype == "float64") return new_array<double>(shape);
        if (dtype == "int64") return new_array<std::int64_t>(shape);
        throw py::value_error("empty: unsupported dtype '" + dtype + "'");
      }, py::arg("shape"), py::arg("dtype") = "float32",
      "An uninitialized array from the caching allocator.");
}

// ---- gemm ------------------------------------------------------------------

// A 2-D float32 view as (pointer, row stride, transposed?): row-major views
// pass as they are, column-major views (e.g. a.T) pass as the transposed
// operand, anything else is copied to C order first.
struct MatrixArg {
  py::array keep;  // owns a copy when one was needed
  const float* ptr;
  index_t ld;
  bool trans;
};

MatrixArg matrix_arg(py::array a, bool trans) {
  const py::ssize_t d = a.ndim();
  const py::ssize_t rows = a.shape(d - 2), cols = a.shape(d - 1);
  const py::ssize_t rs = a.strides(d - 2), cs = a.strides(d - 1);
  const py::ssize_t f = sizeof(float);
  if (rs % f == 0 && cs % f == 0) {
    if ((cols <= 1 || cs == f) && (rows <= 1 || rs >= cols * f))
      return {a, cptr<float>(a), rows <= 1 ? std::max<index_t>(cols, 1) : rs / f, trans};
    if ((rows <= 1 || rs == f) && (cols <= 1 || cs >= rows * f))
      return {a, cptr<float>(a), cols <= 1 ? std::max<index_t>(rows, 1) : cs / f, !trans};
  }
  py::array c = py::array::ensure(a, py::array::c_style);
  return {c, cptr<float>(c), std::max<index_t>(cols, 1), trans};
}

py::array gemm(const py::handle& a_obj, const py::handle& b_obj, bool trans_a, bool trans_b,
               float alpha, float beta, const py::object& out_obj) {
  py::array a = checked<float>(a_obj, "a"), b = checked<float>(b_obj, "b");
  if (a.ndim() != b.ndim() || a.ndim() < 2 || a.ndim() > 3)
    throw py::value_error("gemm: a and b must both be 2-D, or both 3-D (batched); got a " +
                          shape_str(a) + " and b " + shape_str(b));
  const bool batched = a.ndim() == 3;
  const index_t batch = batched ? a.shape(0) : 1;
  if (batched && b.shape(0) != batch)
    throw py::value_error("gemm: batch sizes differ: a " + shape_str(a) + ", b " + shape_str(b));
  const int r = static_cast<int>(a.ndim()) - 2;
  const index_t M = trans_a ? a.shape(r + 1) : a.shape(r);
  const index_t K = trans_a ? a.shape(r) : a.shape(r + 1);
  const index_t Kb = trans_b ? b.shape(r + 1) : b.shape(r);
  const index_t N = trans_b ? b.shape(r) : b.shape(r + 1);
  if (K != Kb)
    throw py::value_error("gemm: inner dimensions differ: op(a) is (" + std::to_string(M) + ", " +
                          std::to_string(K) + ") from a " + shape_str(a) + ", op(b) is (" +
                          std::to_string(Kb) + ", " + std::to_string(N) + ") from b " +
                          shape_str(b));
  std::vector<py::ssize_t> out_shape = batched ? std::vector<py::ssize_t>{batch, M, N}
                                               : std::vector<py::ssize_t>{M, N};
  py::array out;
  if (out_obj.is_none()) {
    if (beta != 0.0f) throw py::value_error("gemm: beta != 0 needs out= to accumulate into");
    out = new_array<float>(out_shape);
  } else {
    out = writable_contiguous<float>(out_obj, "out");
    bool ok = out.ndim() == static_cast<py::ssize_t>(out_shape.size());
    for (std::size_t i = 0; ok && i < out_shape.size(); ++i) ok = out.shape(i) == out_shape[i];
    if (!ok) throw py::value_error("gemm: out has shape " + shape_str(out) + ", expected (" +
                                   (batched ? std::to_string(batch) + ", " : std::string()) +
                                   std::to_string(M) + ", " + std::to_string(N) + ")");
  }
  if (batched) {
    // Each operand's batch stride must be expressible as one element stride.
    auto batch_arg = [&](py::array x, bool t, index_t& stride) {
      if (x.strides(0) % 4 != 0 || x.strides(0) < 0) x = py::array::ensure(x, py::array::c_style);
      MatrixArg m = matrix_arg(x, t);
      stride = m.keep.shape(0) > 1 ? m.keep.strides(0) / 4 : 0;
      return m;
    };
    index_t sa, sb;
    MatrixArg ma = batch_arg(a, trans_a, sa), mb = batch_arg(b, trans_b, sb);
    float* c = mptr<float>(out);
    py::gil_scoped_release release;
    sgemm_batched(batch, ma.trans, mb.trans, M, N, K, alpha, ma.ptr, ma.ld, sa, mb.ptr, mb.ld,
                  sb, beta, c, std::max<index_t>(N, 1), M * N);
  } else {
    MatrixArg ma = matrix_arg(a, trans_a), mb = matrix_arg(b, trans_b);
    float* c = mptr<float>(out);
    py::gil_scoped_release release;
    sgemm(ma.trans, mb.trans, M, N, K, alpha, ma.ptr, ma.ld, mb.ptr, mb.ld, beta, c,
          std::max<index_t>(N, 1));
  }
  return out;
}

void bind_gemm(py::module_& m) {
  m.def("gemm", &gemm, py::arg("a"), py::arg("b"), py::kw_only(), py::arg("trans_a") = false,
        py::arg("trans_b") = false, py::arg("alpha") = 1.0f, py::arg("beta") = 0.0f,
        py::arg("out") = py::none(),
        "alpha * op(a) @ op(b) + beta * out for float32 matrices (2-D) or batches (3-D).\n"
        "Strided and transposed views are used in place when one axis is contiguous.");
  m.def("fma_peak_gflops", [](int threads, double seconds) {
        py::gil_scoped_release release;
        return fma_peak_gflops(threads, seconds);
      }, py::arg("threads"), py::arg("seconds") = 0.2,
      "GFLOP/s of a register-only FMA loop on `threads` threads for about `seconds`:\n"
      "the arithmetic peak that GEMM efficiency is measured against.");
}

// ---- elementwise -----------------------------------------------------------

using Unary = void (*)(float*, const float*, index_t);
using UnaryGrad = void (*)(float*, const float*, const float*, index_t);
using Rowwise = void (*)(float*, const float*, index_t, index_t);
using RowwiseGrad = void (*)(float*, const float*, const float*, index_t, index_t);

void def_unary(py::module_& m, const char* name, Unary fwd, UnaryGrad bwd, const char* saved) {
  m.def((std::string(name) + "_forward").c_str(), [fwd](const py::handle& x_obj) {
    py::array x = contiguous<float>(x_obj, "x");
    py::array y = new_array<float>(shape_of(x));
    const float* xp = cptr<float>(x);
    float* yp = mptr<float>(y);
    index_t n = x.size();
    py::gil_scoped_release release;
    fwd(yp, xp, n);
    return y;
  }, py::arg("x"));
  m.def((std::string(name) + "_backward").c_str(),
        [bwd, saved](const py::handle& dy_obj, const py::handle& s_obj) {
    py::array dy = contiguous<float>(dy_obj, "dy"), s = contiguous<float>(s_obj, saved);
    require_same_shape(dy, "dy", s, saved);
    py::array dx = new_array<float>(shape_of(dy));
    const float *dyp = cptr<float>(dy), *sp = cptr<float>(s);
    float* dxp = mptr<float>(dx);
    index_t n = dy.size();
    py::gil_scoped_release release;
    bwd(dxp, dyp, sp, n);
    return dx;
  }, py::arg("dy"), py::arg(saved));
}

// Row-wise ops act on the last axis; leading axes are flattened into rows.
void def_rowwise(py::module_& m, const char* name, Rowwise fwd, RowwiseGrad bwd) {
  auto rows_cols = [](const py::array& a, const char* arg) {
    if (a.ndim() < 1) throw py::value_error(std::string(arg) + " must have at least 1 dimension");
    index_t cols = a.shape(a.ndim() - 1);
    return std::pair<index_t, index_t>(cols ? a.size() / cols : 0, cols);
  };
  m.def((std::string(name) + "_forward").c_str(), [fwd, rows_cols](const py::handle& x_obj) {
    py::array x = contiguous<float>(x_obj, "x");
    auto [rows, cols] = rows_cols(x, "x");
    py::array y = new_array<float>(shape_of(x));
    const float* xp = cptr<float>(x);
    float* yp = mptr<float>(y);
    py::gil_scoped_release release;
    fwd(yp, xp, rows, cols);
    return y;
  }, py::arg("x"));
  m.def((std::string(name) + "_backward").c_str(),
        [bwd, rows_cols](const py::handle& dy_obj, const py::handle& y_obj) {
    py::array dy = contiguous<float>(dy_obj, "dy"), y = contiguous<float>(y_obj, "y");
    require_same_shape(dy, "dy", y, "y");
    auto [rows, cols] = rows_cols(y, "y");
    py::array dx = new_array<float>(shape_of(y));
    const float *dyp = cptr<float>(dy), *yp = cptr<float>(y);
    float* dxp = mptr<float>(dx);
    py::gil_scoped_release release;
    bwd(dxp, dyp, yp, rows, cols);
    return dx;
  }, py::arg("dy"), py::arg("y"));
}

void bind_elementwise(py::module_& m) {
  def_unary(m, "relu", relu_forward, relu_backward, "x");
  def_unary(m, "sigmoid", sigmoid_forward, sigmoid_backward, "y");
  def_unary(m, "tanh", tanh_forward, tanh_backward, "y");
  def_unary(m, "gelu", gelu_forward, gelu_backward, "x");
  def_rowwise(m, "softmax", softmax_forward, softmax_backward);
  def_rowwise(m, "log_softmax", log_softmax_forward, log_softmax_backward);
}

// ---- loss ------------------------------------------------------------------

Reduction parse_reduction(const std::string& r) {
  if (r == "mean") return Reduction::mean;
  if (r == "sum") return Reduction::sum;
  if (r == "none") return Reduction::none;
  throw py::value_error("reduction must be 'mean', 'sum' or 'none', got '" + r + "'");
}

// Returns (loss, losses, grad): loss the reduced scalar, losses (N,) per row,
// grad (N, C) = d loss / d logits for the reduction, or None.
py::tuple softmax_cross_entropy(const py::handle& logits_obj, const py::handle& target_obj,
                                const std::string& reduction_name, std::int64_t ignore_index,
                                bool compute_grad) {
  Reduction reduction = parse_reduction(reduction_name);
  py::array logits = contiguous<float>(logits_obj, "logits");
  if (logits.ndim() != 2)
    throw py::value_error("softmax_cross_entropy: logits must be 2-D (N, C), got " +
                          shape_str(logits));
  const index_t N = logits.shape(0), C = logits.shape(1);
  if (C == 0 && N > 0) throw py::value_error("softmax_cross_entropy: logits has 0 classes");
  if (!py::isinstance<py::array>(target_obj))
    throw py::type_error("target must be a numpy array (int64 class indices or float32 "
                         "probabilities)");
  py::array target = py::reinterpret_borrow<py::array>(target_obj);
  const bool by_index = target.dtype().is(py::dtype::of<std::int64_t>());
  if (by_index) {
    target = contiguous<std::int64_t>(target, "target");
    if (target.ndim() != 1 || target.shape(0) != N)
      throw py::value_error("softmax_cross_entropy: class-index target must have shape (" +
                            std::to_string(N) + ",), got " + shape_str(target));
    const std::int64_t* t = cptr<std::int64_t>(target);
    for (index_t i = 0; i < N; ++i)
      if (t[i] != ignore_index && (t[i] < 0 || t[i] >= C))
        throw py::value_error("softmax_cross_entropy: target[" + std::to_string(i) + "] = " +
                              std::to_string(t[i]) + " is not a class index in [0, " +
                              std::to_string(C) + ")");
  } else {
    target = contiguous<float>(target, "target (int64 indices or float32 probabilities)");
    require_same_shape(target, "target", logits, "logits");
  }
  py::array losses = new_array<float>({N});
  py::object grad = py::none();
  float* gp = nullptr;
  if (compute_grad) {
    py::array g = new_array<float>({N, C});
    gp = mptr<float>(g);
    grad = g;
  }
  const float* zp = cptr<float>(logits);
  float* lp = mptr<float>(losses);
  double loss;
  {
    py::gil_scoped_release release;
    loss = by_index ? softmax_cross_entropy_index(lp, gp, zp, cptr<std::int64_t>(target), N, C,
                                                  reduction, ignore_index)
                    : softmax_cross_entropy_prob(lp, gp, zp, cptr<float>(target), N, C,
                                                 reduction);
  }
  return py::make_tuple(loss, losses, grad);
}

void bind_loss(py::module_& m) {
  m.def("softmax_cross_entropy", &softmax_cross_entropy, py::arg("logits"), py::arg("target"),
        py::kw_only(), py::arg("reduction") = "mean", py::arg("ignore_index") = -100,
        py::arg("compute_grad") = true,
        "Fused softmax cross-entropy over (N, C) float32 logits with int64 class indices\n"
        "or float32 probabilities. Returns (loss, per-row losses, d loss/d logits or None).");
}

// ---- conv and pool -----------------------------------------------------------

using Pair = std::array<index_t, 2>;

py::array four_d(const py::handle& obj, const char* name, const char* layout) {
  py::array a = contiguous<float>(obj, name);
  if (a.ndim() != 4)
    throw py::value_error(std::string(name) + " must be 4-D " + layout + ", got shape " +
                          shape_str(a));
  return a;
}

Conv2dShape conv_shape(const py::array& input, const py::array& weight, Pair stride,
                       Pair padding, Pair dilation, index_t groups) {
  Conv2dShape s{input.shape(0), input.shape(1), input.shape(2), input.shape(3),
                weight.shape(0), weight.shape(2), weight.shape(3),
                stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1], groups};
  if (groups >= 1 && weight.shape(1) * groups != input.shape(1))
    throw py::value_error("conv2d: weight " + shape_str(weight) + " with groups " +
                          std::to_string(groups) + " expects " +
                          std::to_string(weight.shape(1) * groups) +
                          " input channels, but input " + shape_str(input) + " has " +
                          std::to_string(input.shape(1)));
  check_conv2d(s);
  return s;
}

py::array conv2d_forward_py(const py::handle& input_obj, const py::handle& weight_obj,
                            const py::handle& bias_obj, Pair stride, Pair padding, Pair dilation,
                            index_t groups) {
  py::array input = four_d(input_obj, "input", "(N, C_in, H, W)");
  py::array weight = four_d(weight_obj, "weight", "(C_out, C_in/groups, KH, KW)");
  const Conv2dShape s = conv_shape(input, weight, stride, padding, dilation, groups);
  const float* bias = nullptr;
  py::array bias_array;
  if (!bias_obj.is_none()) {
    bias_array = contiguous<float>(bias_obj, "bias");
    if (bias_array.ndim() != 1 || bias_array.shape(0) != s.C_out)
      throw py::value_error("conv2d: bias must have shape (" + std::to_string(s.C_out) +
                            ",) for weight " + shape_str(weight) + ", got " +
                            shape_str(bias_array));
    bias = cptr<float>(bias_array);
  }
  py::array out = new_array<float>({s.N, s.C_out, s.H_out(), s.W_out()});
  float* out_ptr = mptr<float>(out);
  const float* in_ptr = cptr<float>(input);
  const float* w_ptr = cptr<float>(weight);
  {
    py::gil_scoped_release release;
    conv2d_forward(out_ptr, in_ptr, w_ptr, bias, s);
  }
  return out;
}

// Returns (grad_input, grad_weight, grad_bias), None for those not asked for.
py::tuple conv2d_backward_py(const py::handle& grad_obj, const py::handle& input_obj,
                             const py::handle& weight_obj, Pair stride, Pair padding,
                             Pair dilation, index_t groups, bool input_grad, bool weight_grad,
                             bool bias_grad) {
  py::array input = four_d(input_obj, "input", "(N, C_in, H, W)");
  py::array weight = four_d(weight_obj, "weight", "(C_out, C_in/groups, KH, KW)");
  const Conv2dShape s = conv_shape(input, weight, stride, padding, dilation, groups);
  py::array grad = four_d(grad_obj, "grad_output", "(N, C_out, H_out, W_out)");
  if (grad.shape(0) != s.N || grad.shape(1) != s.C_out || grad.shape(2) != s.H_out() ||
      grad.shape(3) != s.W_out())
    throw py::value_error("conv2d_backward: grad_output must have shape (" +
                          std::to_string(s.N) + ", " + std::to_string(s.C_out) + ", " +
                          std::to_string(s.H_out()) + ", " + std::to_string(s.W_out()) +
                          ") for " + s.describe() + ", got " + shape_str(grad));
  py::object gi = py::none(), gw = py::none(), gb = py::none();
  float *gi_ptr = nullptr, *gw_ptr = nullptr, *gb_ptr = nullptr;
  if (input_grad) {
    py::array a = new_array<float>(shape_of(input));
    gi_ptr = mptr<float>(a);
    gi = a;
  }
  if (weight_grad) {
    py::array a = new_array<float>(shape_of(weight));
    gw_ptr = mptr<float>(a);
    gw = a;
  }
  if (bias_grad) {
    py::array a = new_array<float>({s.C_out});
    gb_ptr = mptr<float>(a);
    gb = a;
  }
  const float* dy = cptr<float>(grad);
  const float* x = cptr<float>(input);
  const float* w = cptr<float>(weight);
  {
    py::gil_scoped_release release;
    if (gi_ptr) conv2d_backward_input(gi_ptr, dy, w, s);
    if (gw_ptr) conv2d_backward_weight(gw_ptr, dy, x, s);
    if (gb_ptr) conv2d_backward_bias(gb_ptr, dy, s);
  }
  return py::make_tuple(gi, gw, gb);
}

Pool2dShape pool_shape(index_t N, index_t C, index_t H, index_t W, Pair kernel, Pair stride,
                       Pair padding, Pair dilation, bool ceil_mode, const char* op) {
  Pool2dShape s{N, C, H, W, kernel[0], kernel[1], stride[0], stride[1], padding[0], padding[1],
                dilation[0], dilation[1], ceil_mode};
  check_pool2d(s, op);
  return s;
}

// grad_output must be (N, C, H_out, W_out) for an input (N, C, H, W) = input_shape.
Pool2dShape pool_backward_shape(const py::array& grad, const std::vector<index_t>& input_shape,
                                Pair kernel, Pair stride, Pair padding, Pair dilation,
                                bool ceil_mode, const char* op) {
  if (input_shape.size() != 4)
    throw py::value_error(std::string(op) + ": input_shape must have 4 entries (N, C, H, W)");
  Pool2dShape s = pool_shape(input_shape[0], input_shape[1], input_shape[2], input_shape[3],
                             kernel, stride, padding, dilation, ceil_mode, op);
  if (grad.shape(0) != s.N || grad.shape(1) != s.C || grad.shape(2) != s.H_out() ||
      grad.shape(3) != s.W_out())
    throw py::value_error(std::string(op) + ": grad_output must have shape (" +
                          std::to_string(s.N) + ", " + std::to_string(s.C) + ", " +
                          std::to_string(s.H_out()) + ", " + std::to_string(s.W_out()) +
                          ") for " + s.describe() + ", got " + shape_str(grad));
  return s;
}

void bind_conv_pool(py::module_& m) {
  m.def("conv2d_forward", &conv2d_forward_py, py::arg("input"), py::arg("weight"),
        py::arg("bias") = py::none(), py::kw_only(), py::arg("stride") = Pair{1, 1},
        py::arg("padding") = Pair{0, 0}, py::arg("dilation") = Pair{1, 1},
        py::arg("groups") = 1,
        "2-D convolution (cross-correlation), NCHW float32: (N, C_out, H_out, W_out).");
  m.def("conv2d_backward", &conv2d_backward_py, py::arg("grad_output"), py::arg("input"),
        py::arg("weight"), py::kw_only(), py::arg("stride") = Pair{1, 1},
        py::arg("padding") = Pair{0, 0}, py::arg("dilation") = Pair{1, 1},
        py::arg("groups") = 1, py::arg("input_grad") = true, py::arg("weight_grad") = true,
        py::arg("bias_grad") = true,
        "Gradients of conv2d: (grad_input, grad_weight, grad_bias), None where not asked.");

  m.def("max_pool2d_forward", [](const py::handle& input_obj, Pair kernel, Pair stride,
                                 Pair padding, Pair dilation, bool ceil_mode) {
        py::array input = four_d(input_obj, "input", "(N, C, H, W)");
        const Pool2dShape s = pool_shape(input.shape(0), input.shape(1), input.shape(2),
                                         input.shape(3), kernel, stride, padding, dilation,
                                         ceil_mode, "max_pool2d");
        py::array out = new_array<float>({s.N, s.C, s.H_out(), s.W_out()});
        py::array indices = new_array<std::int64_t>({s.N, s.C, s.H_out(), s.W_out()});
        float* y = mptr<float>(out);
        std::int64_t* arg = mptr<std::int64_t>(indices);
        const float* x = cptr<float>(input);
        {
          py::gil_scoped_release release;
          max_pool2d_forward(y, arg, x, s);
        }
        return py::make_tuple(out, indices);
      }, py::arg("input"), py::kw_only(), py::arg("kernel_size"), py::arg("stride"),
      py::arg("padding") = Pair{0, 0}, py::arg("dilation") = Pair{1, 1},
      py::arg("ceil_mode") = false,
      "Max pooling, NCHW float32: (output, int64 argmax indices within each H*W plane).");
  m.def("max_pool2d_backward", [](const py::handle& grad_obj, const py::handle& indices_obj,
                                  const std::vector<index_t>& input_shape, Pair kernel,
                                  Pair stride, Pair padding, Pair dilation, bool ceil_mode) {
        py::array grad = four_d(grad_obj, "grad_output", "(N, C, H_out, W_out)");
        py::array indices = contiguous<std::int64_t>(indices_obj, "indices");
        require_same_shape(indices, "indices", grad, "grad_output");
        const Pool2dShape s = pool_backward_shape(grad, input_shape, kernel, stride, padding,
                                                  dilation, ceil_mode, "max_pool2d_backward");
        py::array out = new_array<float>({s.N, s.C, s.H, s.W});
        float* dx = mptr<float>(out);
        const float* dy = cptr<float>(grad);
        const std::int64_t* arg = cptr<std::int64_t>(indices);
        {
          py::gil_scoped_release release;
          max_pool2d_backward(dx, dy, arg, s);
        }
        return out;
      }, py::arg("grad_output"), py::arg("indices"), py::arg("input_shape"), py::kw_only(),
      py::arg("kernel_size"), py::arg("stride"), py::arg("padding") = Pair{0, 0},
      py::arg("dilation") = Pair{1, 1}, py::arg("ceil_mode") = false);
  m.def("avg_pool2d_forward", [](const py::handle& input_obj, Pair kernel, Pair stride,
                                 Pair padding, bool ceil_mode, bool count_include_pad) {
        py::array input = four_d(input_obj, "input", "(N, C, H, W)");
        const Pool2dShape s = pool_shape(input.shape(0), input.shape(1), input.shape(2),
                                         input.shape(3), kernel, stride, padding, Pair{1, 1},
                                         ceil_mode, "avg_pool2d");
        py::array out = new_array<float>({s.N, s.C, s.H_out(), s.W_out()});
        float* y = mptr<float>(out);
        const float* x = cptr<float>(input);
        {
          py::gil_scoped_release release;
          avg_pool2d_forward(y, x, s, count_include_pad);
        }
        return out;
      }, py::arg("input"), py::kw_only(), py::arg("kernel_size"), py::arg("stride"),
      py::arg("padding") = Pair{0, 0}, py::arg("ceil_mode") = false,
      py::arg("count_include_pad") = true, "Average pooling, NCHW float32.");
  m.def("avg_pool2d_backward", [](const py::handle& grad_obj,
                                  const std::vector<index_t>& input_shape, Pair kernel,
                                  Pair stride, Pair padding, bool ceil_mode,
                                  bool count_include_pad) {
        py::array grad = four_d(grad_obj, "grad_output", "(N, C, H_out, W_out)");
        const Pool2dShape s = pool_backward_shape(grad, input_shape, kernel, stride, padding,
                                                  Pair{1, 1}, ceil_mode, "avg_pool2d_backward");
        py::array out = new_array<float>({s.N, s.C, s.H, s.W});
        float* dx = mptr<float>(out);
        const float* dy = cptr<float>(grad);
        {
          py::gil_scoped_release release;
          avg_pool2d_backward(dx, dy, s, count_include_pad);
        }
        return out;
      }, py::arg("grad_output"), py::arg("input_shape"), py::kw_only(), py::arg("kernel_size"),
      py::arg("stride"), py::arg("padding") = Pair{0, 0}, py::arg("ceil_mode") = false,
      py::arg("count_include_pad") = true);
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "pydl CPU kernels";
  bind_runtime(m);
  bind_gemm(m);
  bind_elementwise(m);
  bind_loss(m);
  bind_conv_pool(m);
}
