// The only pybind11 file of pydl._C. Every binding checks dtypes, shapes,
// contiguity and sizes before any kernel touches memory, raising TypeError or
// ValueError that names the argument; kernels run with the GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "bf16.h"
#include "common.h"
#include "conv.h"
#include "dropout.h"
#include "elementwise.h"
#include "embedding.h"
#include "gemm.h"
#include "loss.h"
#include "norm.h"
#include "optim.h"
#include "optim_math.h"
#include "peak.h"
#include "philox.h"
#include "pool.h"
#include "quant.h"
#include "rnn.h"
#include "shapes.h"

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
  if (std::is_same_v<T, std::uint8_t>) return "uint8";
  if (std::is_same_v<T, std::int8_t>) return "int8";
  if (std::is_same_v<T, std::int32_t>) return "int32";
  if (std::is_same_v<T, std::uint32_t>) return "uint32";
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

ByteRange bytes_of(const py::array& a) {
  return byte_range(a.data(), std::vector<index_t>(a.shape(), a.shape() + a.ndim()),
                    std::vector<index_t>(a.strides(), a.strides() + a.ndim()), a.itemsize());
}

// Kernels read their inputs while they write their outputs, so an output that
// shares memory with an input would read values already overwritten.
void refuse_overlap(const char* fn, const py::array& out, const char* out_name,
                    const py::array& in, const char* in_name) {
  if (bytes_of(out).overlaps(bytes_of(in)))
    throw py::value_error(std::string(fn) + ": " + out_name + " shares memory with " + in_name +
                          "; pass a separate output array");
}

std::vector<py::ssize_t> shape_of(const py::array& a) {
  return std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim());
}

// A new C-contiguous array whose buffer comes from the caching allocator and
// goes back to it when NumPy frees the array.
template <class T>
py::array_t<T> new_array(const std::vector<py::ssize_t>& shape) {
  const index_t count = size_product(std::vector<index_t>(shape.begin(), shape.end()),
                                     sizeof(T), "output array");
  void* ptr = cached_alloc(std::max<index_t>(count, 1) * sizeof(T));
  py::capsule owner(ptr, [](void* p) { cached_free(p); });
  return py::array_t<T>(shape, static_cast<T*>(ptr), owner);
}

// A new float32 output of `shape` when `wanted`, with `ptr` set to its data;
// otherwise None, with `ptr` null (the kernel then skips that output).
py::object optional_output(bool wanted, const std::vector<py::ssize_t>& shape, float*& ptr) {
  ptr = nullptr;
  if (!wanted) return py::none();
  py::array a = new_array<float>(shape);
  ptr = static_cast<float*>(a.mutable_data());
  return a;
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
  m.def("isa", [] { return isa_name(active_isa()); },
        "The instruction set the kernels run: 'avx512' (AVX-512 F/BW/DQ/VL), 'avx2'\n"
        "(AVX2+FMA) or 'portable'.");
  m.def("best_isa", [] { return isa_name(best_isa()); },
        "The highest instruction set this CPU and its OS support.");
  m.def("set_isa", [](const std::string& name) { set_isa(parse_isa(name)); }, py::arg("name"),
        "Runs the kernels on `name`, at or below best_isa() (a higher one is a ValueError).");
  m.def("cpu_features", [] {
    const CpuFeatures& f = cpu_features();
    py::dict d;
    d["avx2"] = f.avx2;
    d["avx512"] = f.avx512;
    d["avx512_vnni"] = f.avx512_vnni;
    d["avx512_bf16"] = f.avx512_bf16;
    d["avx_vnni"] = f.avx_vnni;
    return d;
  }, "What the CPU and OS support, beyond the instruction set in use.");
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

// bf16: the products take bfloat16-rounded operands (gemm_bf16: alpha 1, beta 0 or 1).
py::array gemm(const py::handle& a_obj, const py::handle& b_obj, bool trans_a, bool trans_b,
               float alpha, float beta, const py::object& out_obj, bool bf16) {
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
  refuse_overlap("gemm", out, "out", a, "a");
  refuse_overlap("gemm", out, "out", b, "b");
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
    if (bf16) {
      for (index_t i = 0; i < batch; ++i)
        gemm_bf16(ma.trans, mb.trans, M, N, K, alpha, ma.ptr + i * sa, ma.ld, mb.ptr + i * sb,
                  mb.ld, beta, c + i * M * N, std::max<index_t>(N, 1));
      return out;
    }
    sgemm_batched(batch, ma.trans, mb.trans, M, N, K, alpha, ma.ptr, ma.ld, sa, mb.ptr, mb.ld,
                  sb, beta, c, std::max<index_t>(N, 1), M * N);
  } else {
    MatrixArg ma = matrix_arg(a, trans_a), mb = matrix_arg(b, trans_b);
    float* c = mptr<float>(out);
    py::gil_scoped_release release;
    (bf16 ? gemm_bf16 : sgemm)(ma.trans, mb.trans, M, N, K, alpha, ma.ptr, ma.ld, mb.ptr, mb.ld,
                               beta, c, std::max<index_t>(N, 1));
  }
  return out;
}

void bind_gemm(py::module_& m) {
  m.def("gemm", [](const py::handle& a, const py::handle& b, bool trans_a, bool trans_b,
                   float alpha, float beta, const py::object& out) {
        return gemm(a, b, trans_a, trans_b, alpha, beta, out, false);
      }, py::arg("a"), py::arg("b"), py::kw_only(), py::arg("trans_a") = false,
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

// ---- rnn -------------------------------------------------------------------
// The shape rules live in shapes.cpp (RnnSizes), shared with the CUDA modules.

std::vector<index_t> dims_of(const py::array& a) {
  return std::vector<index_t>(a.shape(), a.shape() + a.ndim());
}

// The float32 C-contiguous array `name` of the call, checked against its shape
// in `z`, or null for None when `optional`; `keep` holds it for the call.
const float* rnn_arg(const RnnSizes& z, const py::handle& obj, const char* name,
                     std::vector<py::array>& keep, bool optional = false) {
  if (obj.is_none()) {
    if (optional) return nullptr;
    throw py::type_error(z.missing(name));
  }
  py::array a = contiguous<float>(obj, name);
  z.check(name, dims_of(a));
  keep.push_back(a);
  return cptr<float>(a);
}

RnnSizes rnn_sizes(const std::string& fn, const std::string& mode_name, const py::handle& x_obj,
                   const py::handle& w_hh_obj) {
  return RnnSizes(fn, mode_name, dims_of(contiguous<float>(x_obj, "x")),
                  dims_of(contiguous<float>(w_hh_obj, "w_hh")));
}

// The arrays both passes read: the input sequence, the weights and h0.
struct RnnLayer {
  const float *x, *w_ih, *w_hh, *h0;
};
RnnLayer rnn_layer(const RnnSizes& z, const py::handle& x_obj, const py::handle& w_ih_obj,
                   const py::handle& w_hh_obj, const py::handle& h0_obj,
                   std::vector<py::array>& keep) {
  return {rnn_arg(z, x_obj, "x", keep), rnn_arg(z, w_ih_obj, "w_ih", keep),
          rnn_arg(z, w_hh_obj, "w_hh", keep), rnn_arg(z, h0_obj, "h0", keep)};
}

// A new float32 output shaped as `name` in `z` when `wanted` (see optional_output).
py::object rnn_output(const RnnSizes& z, const char* name, bool wanted, float*& ptr) {
  const std::vector<index_t> dims = z.shape(name).dims;
  return optional_output(wanted, std::vector<py::ssize_t>(dims.begin(), dims.end()), ptr);
}

// Returns (y, c or None, saved or None).
py::tuple rnn_forward(const std::string& mode_name, const py::handle& x_obj,
                      const py::handle& h0_obj, const py::handle& c0_obj,
                      const py::handle& w_ih_obj, const py::handle& w_hh_obj,
                      const py::handle& b_ih_obj, const py::handle& b_hh_obj, bool reverse) {
  const RnnSizes z = rnn_sizes("rnn_forward", mode_name, x_obj, w_hh_obj);
  z.check_presence(!c0_obj.is_none(), !b_ih_obj.is_none(), !b_hh_obj.is_none());
  std::vector<py::array> keep;
  const auto [x, w_ih, w_hh, h0] = rnn_layer(z, x_obj, w_ih_obj, w_hh_obj, h0_obj, keep);
  const float* c0 = z.lstm() ? rnn_arg(z, c0_obj, "c0", keep) : nullptr;
  const float* b_ih = rnn_arg(z, b_ih_obj, "b_ih", keep, true);
  const float* b_hh = rnn_arg(z, b_hh_obj, "b_hh", keep, true);
  float *yp, *cp, *sp;
  py::object y = rnn_output(z, "y", true, yp);
  py::object c = rnn_output(z, "c", z.lstm(), cp);
  py::object saved = rnn_output(z, "saved", z.saved_width() > 0, sp);
  {
    py::gil_scoped_release release;
    rnn_layer_forward(z.mode, yp, cp, sp, x, h0, c0, w_ih, w_hh, b_ih, b_hh, z.T, z.B, z.I, z.H,
                      reverse);
  }
  return py::make_tuple(y, c, saved);
}

// Returns (dx or None, dh0, dc0 or None, dw_ih, dw_hh, db_ih or None, db_hh or None).
py::tuple rnn_backward(const std::string& mode_name, const py::handle& dy_obj,
                       const py::handle& dc_last_obj, const py::handle& x_obj,
                       const py::handle& h0_obj, const py::handle& c0_obj,
                       const py::handle& w_ih_obj, const py::handle& w_hh_obj,
                       const py::handle& y_obj, const py::handle& c_obj,
                       const py::handle& saved_obj, bool reverse, bool has_bias, bool need_dx) {
  const RnnSizes z = rnn_sizes("rnn_backward", mode_name, x_obj, w_hh_obj);
  std::vector<py::array> keep;
  const auto [x, w_ih, w_hh, h0] = rnn_layer(z, x_obj, w_ih_obj, w_hh_obj, h0_obj, keep);
  const float* dy = rnn_arg(z, dy_obj, "dy", keep);
  const float* y = rnn_arg(z, y_obj, "y", keep);
  const float *c0 = nullptr, *c = nullptr, *dc_last = nullptr, *saved = nullptr;
  if (z.lstm()) {
    c0 = rnn_arg(z, c0_obj, "c0", keep);
    c = rnn_arg(z, c_obj, "c", keep);
    dc_last = rnn_arg(z, dc_last_obj, "dc_last", keep, true);
  }
  if (z.saved_width() > 0) saved = rnn_arg(z, saved_obj, "saved", keep);
  float *dxp, *dh0p, *dc0p, *dw_ihp, *dw_hhp, *db_ihp, *db_hhp;
  py::object dx = rnn_output(z, "dx", need_dx, dxp);
  py::object dh0 = rnn_output(z, "dh0", true, dh0p);
  py::object dc0 = rnn_output(z, "dc0", z.lstm(), dc0p);
  py::object dw_ih = rnn_output(z, "dw_ih", true, dw_ihp);
  py::object dw_hh = rnn_output(z, "dw_hh", true, dw_hhp);
  py::object db_ih = rnn_output(z, "db_ih", has_bias, db_ihp);
  py::object db_hh = rnn_output(z, "db_hh", has_bias, db_hhp);
  {
    py::gil_scoped_release release;
    rnn_layer_backward(z.mode, dxp, dh0p, dc0p, dw_ihp, dw_hhp, db_ihp, db_hhp, dy, dc_last, x,
                       h0, c0, w_ih, w_hh, y, c, saved, z.T, z.B, z.I, z.H, reverse);
  }
  return py::make_tuple(dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh);
}

void bind_rnn(py::module_& m) {
  m.def("rnn_forward", &rnn_forward, py::arg("mode"), py::arg("x"), py::arg("h0"),
        py::arg("c0"), py::arg("w_ih"), py::arg("w_hh"), py::arg("b_ih"), py::arg("b_hh"),
        py::kw_only(), py::arg("reverse") = false,
        "One recurrent layer, one direction, over a whole float32 sequence x (T, B, I).\n"
        "mode: 'rnn_tanh', 'rnn_relu', 'lstm' (gates i, f, g, o) or 'gru' (r, z, n).\n"
        "Returns (y (T, B, H), c (T, B, H) for LSTM else None, saved state for backward\n"
        "(T, B, 4H) for LSTM/GRU else None). reverse runs t = T-1 .. 0.");
  m.def("rnn_backward", &rnn_backward, py::arg("mode"), py::arg("dy"), py::arg("dc_last"),
        py::arg("x"), py::arg("h0"), py::arg("c0"), py::arg("w_ih"), py::arg("w_hh"),
        py::arg("y"), py::arg("c"), py::arg("saved"), py::kw_only(), py::arg("reverse") = false,
        py::arg("has_bias") = true, py::arg("need_dx") = true,
        "Backward through time of rnn_forward: dy (T, B, H) and the final cell state's\n"
        "gradient dc_last (B, H) or None. Returns (dx or None, dh0, dc0 or None, dw_ih,\n"
        "dw_hh, db_ih or None, db_hh or None).");
}

// ---- optim -----------------------------------------------------------------

// The arrays of one in-place update. Each array argument is one array, or a
// list/tuple with one array per parameter (a multi-tensor update: one call for
// all of them, their elements shared out over the threads); a state argument
// may be None, or hold None entries, where the options leave it unused. All
// are float32, C-contiguous and shaped like their param. A written array (a
// param or a state) may share memory with no other array of the call.
class UpdateArrays {
 public:
  UpdateArrays(const char* kernel, const py::handle& param, const py::handle& grad)
      : kernel_(kernel), listed_(is_sequence(param)) {
    const std::vector<py::handle> params = items(param, "param");
    count_ = params.size();
    const std::vector<py::handle> grads = items(grad, "grad");
    for (std::size_t i = 0; i < params.size(); ++i) {
      const std::string p_name = name("param", i), g_name = name("grad", i);
      py::array p = writable_contiguous<float>(params[i], p_name.c_str());
      py::array g = contiguous<float>(grads[i], g_name.c_str());
      require_same_shape(g, g_name.c_str(), p, p_name.c_str());
      tensors_.push_back({mptr<float>(p), cptr<float>(g), {nullptr, nullptr, nullptr},
                          static_cast<index_t>(p.size())});
      claim(p, p_name, Role::param);
      claim(g, g_name, Role::grad);
      params_.push_back(p);
    }
  }

  // The state arguments of optimizer Op, in the order of Op::states (and of
  // UpdateTensor::state); those the options use are required.
  template <class Op, class Options>
  void states(const Options& options, const std::array<py::handle, Op::arrays - 2>& objs) {
    const auto used = Op::used(options);
    for (int k = 0; k < Op::arrays - 2; ++k) state(k, objs[k], Op::states[k], used[k]);
  }

  // Checks that no written array shares memory with another array, then
  // returns the parameters. Sorted by start address (ties in argument order),
  // an array overlaps an earlier one exactly when it starts before the
  // furthest end seen so far.
  const std::vector<UpdateTensor>& checked_tensors() {
    std::stable_sort(spans_.begin(), spans_.end(),
                     [](const Span& a, const Span& b) { return a.begin < b.begin; });
    const Span* furthest_any = nullptr;
    const Span* furthest_written = nullptr;
    for (const Span& s : spans_) {
      const Span* other = s.role == Role::grad ? furthest_written : furthest_any;
      if (other && s.begin < other->end) refuse_sharing(s, *other);
      if (!furthest_any || s.end > furthest_any->end) furthest_any = &s;
      if (s.role != Role::grad && (!furthest_written || s.end > furthest_written->end))
        furthest_written = &s;
    }
    return tensors_;
  }

 private:
  enum class Role { param, grad, state };  // grads are read, the others written
  struct Span {
    std::uintptr_t begin, end;
    Role role;
    std::size_t order;  // the argument order: params and grads, then the states
    std::string name;
  };

  static bool is_sequence(const py::handle& obj) {
    return py::isinstance<py::list>(obj) || py::isinstance<py::tuple>(obj);
  }
  // The entries of a list argument (as many as param has), or the one array.
  std::vector<py::handle> items(const py::handle& obj, const char* arg) const {
    if (is_sequence(obj) != listed_)
      throw py::type_error(std::string(kernel_) + ": " + arg + " must be " +
                           (listed_ ? "a list of arrays, as param is" : "one array, as param is"));
    if (!listed_) return {obj};
    std::vector<py::handle> out;
    for (auto item : py::reinterpret_borrow<py::sequence>(obj)) out.push_back(item);
    if (out.size() != count_ && count_ != kUncounted)
      throw py::value_error(std::string(kernel_) + ": " + arg + " has " +
                            std::to_string(out.size()) + " arrays but param has " +
                            std::to_string(count_));
    return out;
  }
  std::string name(const char* arg, std::size_t i) const {
    return listed_ ? std::string(arg) + "[" + std::to_string(i) + "]" : std::string(arg);
  }

  // State array k (in the order of UpdateTensor::state) from argument `obj`.
  void state(int k, const py::handle& obj, const char* arg, bool needed) {
    if (obj.is_none()) {
      if (needed && !tensors_.empty()) missing(arg);
      return;
    }
    const std::vector<py::handle> arrays = items(obj, arg);
    for (std::size_t i = 0; i < arrays.size(); ++i) {
      const std::string a_name = name(arg, i);
      if (arrays[i].is_none()) {
        if (needed) missing(a_name);
        continue;
      }
      py::array a = writable_contiguous<float>(arrays[i], a_name.c_str());
      require_same_shape(a, a_name.c_str(), params_[i], name("param", i).c_str());
      tensors_[i].state[k] = mptr<float>(a);
      claim(a, a_name, Role::state);
    }
  }
  [[noreturn]] void missing(const std::string& arg) const {
    throw py::value_error(std::string(kernel_) + ": " + arg +
                          " is required with these options, got None");
  }

  // Keeps `a` alive for the call (a list may change while the GIL is
  // released) and records its bytes.
  void claim(const py::array& a, const std::string& arg, Role role) {
    keep_.push_back(a);
    const auto begin = reinterpret_cast<std::uintptr_t>(a.data());
    const auto bytes = static_cast<std::uintptr_t>(a.nbytes());
    if (bytes > 0) spans_.push_back({begin, begin + bytes, role, spans_.size(), arg});
  }
  // "a shares memory with b" of spans x and y: a is the written one, or the
  // later argument when both are; a state is "another state array" to a state.
  [[noreturn]] void refuse_sharing(const Span& x, const Span& y) const {
    const bool y_named_first = x.role == Role::grad || (y.role != Role::grad && y.order > x.order);
    const Span& a = y_named_first ? y : x;
    const Span& b = y_named_first ? x : y;
    const std::string b_name = a.role == Role::state && b.role == Role::state
                                   ? "another state array (" + b.name + ")"
                                   : b.name;
    throw py::value_error(std::string(kernel_) + ": " + a.name + " shares memory with " + b_name);
  }

  static constexpr std::size_t kUncounted = ~std::size_t(0);
  const char* kernel_;
  bool listed_;
  std::size_t count_ = kUncounted;  // the number of parameters, once param is read
  std::vector<UpdateTensor> tensors_;
  std::vector<py::array> params_, keep_;
  std::vector<Span> spans_;
};

void bind_optim(py::module_& m) {
  m.def("sgd_step", [](const py::handle& param, const py::handle& grad,
                       const py::handle& momentum_buffer, double lr, double momentum,
                       double dampening, double weight_decay, bool nesterov, bool maximize,
                       bool first_step) {
    const SgdOptions o{lr, momentum, dampening, weight_decay, nesterov, maximize, first_step};
    UpdateArrays arrays("sgd_step", param, grad);
    arrays.states<optim_math::Sgd>(o, {momentum_buffer});
    const auto& tensors = arrays.checked_tensors();
    py::gil_scoped_release release;
    sgd_step(tensors.data(), static_cast<int>(tensors.size()), o);
  }, py::arg("param"), py::arg("grad"), py::arg("momentum_buffer") = py::none(), py::kw_only(),
     py::arg("lr"), py::arg("momentum") = 0.0, py::arg("dampening") = 0.0,
     py::arg("weight_decay") = 0.0, py::arg("nesterov") = false, py::arg("maximize") = false,
     py::arg("first_step") = false,
     "In-place SGD update of a float32 param (torch.optim.SGD's formula); first_step sets\n"
     "the momentum buffer to the gradient instead of updating it. Every array argument may\n"
     "instead be a list, one array per parameter: one call updates them all.");
  m.def("rmsprop_step", [](const py::handle& param, const py::handle& grad,
                           const py::handle& square_avg, const py::handle& grad_avg,
                           const py::handle& momentum_buffer, double lr, double alpha, double eps,
                           double weight_decay, double momentum, bool centered, bool maximize) {
    const RmspropOptions o{lr, alpha, eps, weight_decay, momentum, centered, maximize};
    UpdateArrays arrays("rmsprop_step", param, grad);
    arrays.states<optim_math::Rmsprop>(o, {square_avg, grad_avg, momentum_buffer});
    const auto& tensors = arrays.checked_tensors();
    py::gil_scoped_release release;
    rmsprop_step(tensors.data(), static_cast<int>(tensors.size()), o);
  }, py::arg("param"), py::arg("grad"), py::arg("square_avg"), py::arg("grad_avg") = py::none(),
     py::arg("momentum_buffer") = py::none(), py::kw_only(), py::arg("lr"),
     py::arg("alpha") = 0.99, py::arg("eps") = 1e-8, py::arg("weight_decay") = 0.0,
     py::arg("momentum") = 0.0, py::arg("centered") = false, py::arg("maximize") = false,
     "In-place RMSprop update of a float32 param (torch.optim.RMSprop's formula), or of\n"
     "lists of arrays as sgd_step.");
  m.def("adagrad_step", [](const py::handle& param, const py::handle& grad,
                           const py::handle& state_sum, double lr, double lr_decay,
                           double weight_decay, double eps, std::int64_t step, bool maximize) {
    optim_math::require_step(step, "adagrad_step");
    const AdagradOptions o{lr, lr_decay, weight_decay, eps, step, maximize};
    UpdateArrays arrays("adagrad_step", param, grad);
    arrays.states<optim_math::Adagrad>(o, {state_sum});
    const auto& tensors = arrays.checked_tensors();
    py::gil_scoped_release release;
    adagrad_step(tensors.data(), static_cast<int>(tensors.size()), o);
  }, py::arg("param"), py::arg("grad"), py::arg("state_sum"), py::kw_only(), py::arg("lr"),
     py::arg("lr_decay") = 0.0, py::arg("weight_decay") = 0.0, py::arg("eps") = 1e-10,
     py::arg("step"), py::arg("maximize") = false,
     "In-place Adagrad update of a float32 param (torch.optim.Adagrad's formula), or of\n"
     "lists of arrays as sgd_step; step counts this update (1 on the first).");
  m.def("adam_step", [](const py::handle& param, const py::handle& grad,
                        const py::handle& exp_avg, const py::handle& exp_avg_sq,
                        const py::handle& max_exp_avg_sq, double lr, double beta1, double beta2,
                        double eps, double weight_decay, std::int64_t step, bool amsgrad,
                        bool decoupled_weight_decay, bool maximize) {
    optim_math::require_step(step, "adam_step");
    const AdamOptions o{lr, beta1, beta2, eps, weight_decay, step, amsgrad,
                        decoupled_weight_decay, maximize};
    UpdateArrays arrays("adam_step", param, grad);
    arrays.states<optim_math::Adam>(o, {exp_avg, exp_avg_sq, max_exp_avg_sq});
    const auto& tensors = arrays.checked_tensors();
    py::gil_scoped_release release;
    adam_step(tensors.data(), static_cast<int>(tensors.size()), o);
  }, py::arg("param"), py::arg("grad"), py::arg("exp_avg"), py::arg("exp_avg_sq"),
     py::arg("max_exp_avg_sq") = py::none(), py::kw_only(), py::arg("lr"),
     py::arg("beta1") = 0.9, py::arg("beta2") = 0.999, py::arg("eps") = 1e-8,
     py::arg("weight_decay") = 0.0, py::arg("step"), py::arg("amsgrad") = false,
     py::arg("decoupled_weight_decay") = false, py::arg("maximize") = false,
     "In-place Adam update of a float32 param (torch.optim.Adam's formula; AdamW's with\n"
     "decoupled_weight_decay=True), or of lists of arrays as sgd_step; step counts this\n"
     "update (1 on the first).");
}

// ---- layers: dropout, embedding, normalization -----------------------------

// A float32 (n,) vector argument that may be None (returns nullptr).
const float* optional_vector(const py::handle& obj, const char* name, index_t n,
                             py::array& keep) {
  if (obj.is_none()) return nullptr;
  keep = contiguous<float>(obj, name);
  if (keep.ndim() != 1 || keep.shape(0) != n)
    throw py::value_error(std::string(name) + " must have shape (" + std::to_string(n) +
                          ",), got " + shape_str(keep));
  return cptr<float>(keep);
}

// The gradients of a normalization backward: dx shaped like the input when
// input_grad, dweight and dbias of n values when affine_grad; None otherwise.
struct NormGrads {
  float *dxp, *dwp, *dbp;  // declared first: the initializers below set them
  py::object dx, dw, db;

  NormGrads(const std::vector<py::ssize_t>& x_shape, index_t n, bool input_grad,
            bool affine_grad)
      : dx(optional_output(input_grad, x_shape, dxp)),
        dw(optional_output(affine_grad, {n}, dwp)),
        db(optional_output(affine_grad, {n}, dbp)) {}
  py::tuple result() const { return py::make_tuple(dx, dw, db); }
};

void bind_layers(py::module_& m) {
  m.def("philox4x32_10", [](std::array<std::uint32_t, 4> counter,
                            std::array<std::uint32_t, 2> key) {
        Philox4x32 r =
            philox4x32_10({{counter[0], counter[1], counter[2], counter[3]}}, key[0], key[1]);
        return std::array<std::uint32_t, 4>{r.v[0], r.v[1], r.v[2], r.v[3]};
      }, py::arg("counter"), py::arg("key"),
      "The Philox4x32-10 block function (four 32-bit counter words, two key words).");

  m.def("dropout_mask", [](const std::vector<py::ssize_t>& shape, double p, std::uint64_t seed,
                           std::uint64_t offset) {
        check_probability(p);
        for (auto d : shape)
          if (d < 0) throw py::value_error("dropout_mask: negative dimension in shape");
        py::array mask = new_array<std::uint8_t>(shape);
        std::uint8_t* mp = mptr<std::uint8_t>(mask);
        index_t n = mask.size();
        py::gil_scoped_release release;
        dropout_mask(mp, n, static_cast<float>(p), seed, offset);
        return mask;
      }, py::arg("shape"), py::arg("p"), py::arg("seed"), py::arg("offset"),
      "The uint8 keep mask (1 keep, 0 drop) of the dropout call named (seed, offset).");
  m.def("dropout_forward", [](const py::handle& x_obj, double p, std::uint64_t seed,
                              std::uint64_t offset) {
        check_probability(p);
        py::array x = contiguous<float>(x_obj, "x");
        py::array y = new_array<float>(shape_of(x));
        py::array mask = new_array<std::uint8_t>(shape_of(x));
        const float* xp = cptr<float>(x);
        float* yp = mptr<float>(y);
        std::uint8_t* mp = mptr<std::uint8_t>(mask);
        index_t n = x.size();
        {
          py::gil_scoped_release release;
          dropout_forward(yp, mp, xp, n, static_cast<float>(p), seed, offset);
        }
        return py::make_tuple(y, mask);
      }, py::arg("x"), py::arg("p"), py::arg("seed"), py::arg("offset"),
      "(y, mask): y = x * mask / (1 - p) with the mask of the call named (seed, offset).");
  m.def("dropout_backward", [](const py::handle& dy_obj, const py::handle& mask_obj, double p) {
        check_probability(p);
        py::array dy = contiguous<float>(dy_obj, "dy");
        py::array mask = contiguous<std::uint8_t>(mask_obj, "mask");
        require_same_shape(dy, "dy", mask, "mask");
        py::array dx = new_array<float>(shape_of(dy));
        const float* dyp = cptr<float>(dy);
        const std::uint8_t* mp = cptr<std::uint8_t>(mask);
        float* dxp = mptr<float>(dx);
        index_t n = dy.size();
        py::gil_scoped_release release;
        dropout_backward(dxp, dyp, mp, n, static_cast<float>(p));
        return dx;
      }, py::arg("dy"), py::arg("mask"), py::arg("p"), "dx = dy * mask / (1 - p).");

  m.def("embedding_forward", [](const py::handle& weight_obj, const py::handle& indices_obj) {
        py::array weight = contiguous<float>(weight_obj, "weight");
        py::array indices = contiguous<std::int64_t>(indices_obj, "indices");
        if (weight.ndim() != 2)
          throw py::value_error("embedding: weight must be 2-D (num_embeddings, embedding_dim), "
                                "got " + shape_str(weight));
        const index_t V = weight.shape(0), D = weight.shape(1), n = indices.size();
        const std::int64_t* ip = cptr<std::int64_t>(indices);
        embedding_check_indices(ip, n, V);
        std::vector<py::ssize_t> shape = shape_of(indices);
        shape.push_back(D);
        py::array out = new_array<float>(shape);
        const float* wp = cptr<float>(weight);
        float* op = mptr<float>(out);
        py::gil_scoped_release release;
        embedding_forward(op, wp, ip, n, V, D);
        return out;
      }, py::arg("weight"), py::arg("indices"),
      "weight[indices]: rows of the (V, D) table, shaped indices.shape + (D,).");
  m.def("embedding_backward", [](const py::handle& dy_obj, const py::handle& indices_obj,
                                 index_t num_embeddings, index_t padding_idx) {
        py::array dy = contiguous<float>(dy_obj, "dy");
        py::array indices = contiguous<std::int64_t>(indices_obj, "indices");
        if (num_embeddings < 0) throw py::value_error("num_embeddings must be >= 0");
        if (padding_idx < -1 || padding_idx >= num_embeddings)
          throw py::value_error("embedding_backward: padding_idx must be -1 (none) or in [0, " +
                                std::to_string(num_embeddings) + "), got " +
                                std::to_string(padding_idx));
        const index_t n = indices.size();
        const index_t D = dy.ndim() ? dy.shape(dy.ndim() - 1) : 0;
        if (dy.ndim() != indices.ndim() + 1 || dy.size() != n * D)
          throw py::value_error("embedding_backward: dy has shape " + shape_str(dy) +
                                " but indices has shape " + shape_str(indices) +
                                "; dy must be indices.shape + (embedding_dim,)");
        const std::int64_t* ip = cptr<std::int64_t>(indices);
        embedding_check_indices(ip, n, num_embeddings);
        py::array dweight = new_array<float>({num_embeddings, D});
        const float* dyp = cptr<float>(dy);
        float* dwp = mptr<float>(dweight);
        py::gil_scoped_release release;
        // With nothing to sum, no counting sort: its workspace is O(num_embeddings),
        // which a table of zero-width rows could make huge for an empty output.
        if (n == 0 || D == 0) std::fill(dwp, dwp + num_embeddings * D, 0.0f);
        else embedding_backward(dwp, dyp, ip, n, num_embeddings, D, padding_idx);
        return dweight;
      }, py::arg("dy"), py::arg("indices"), py::arg("num_embeddings"),
      py::arg("padding_idx") = -1,
      "d weight (num_embeddings, D): dy rows summed by index; row padding_idx (if >= 0) zero.");

  // Batch norm input is (N, C) or (N, C, d...): viewed as (N, C, S).
  auto ncs = [](const py::array& x) {
    if (x.ndim() < 2)
      throw py::value_error("batch_norm: input must be (N, C) or (N, C, H, W), got " +
                            shape_str(x));
    index_t S = 1;
    for (py::ssize_t i = 2; i < x.ndim(); ++i) S *= x.shape(i);
    return std::array<index_t, 3>{x.shape(0), x.shape(1), S};
  };
  m.def("batch_norm_forward", [ncs](const py::handle& x_obj, const py::handle& weight_obj,
                                    const py::handle& bias_obj, const py::handle& rm_obj,
                                    const py::handle& rv_obj, bool training, double momentum,
                                    double eps) {
        py::array x = contiguous<float>(x_obj, "input");
        auto [N, C, S] = ncs(x);
        if (training && N * S <= 1)
          throw py::value_error("batch_norm: expected more than 1 value per channel when "
                                "training, got input of shape " + shape_str(x));
        if (!(eps > 0) || std::isinf(eps))
          throw py::value_error("batch_norm: eps must be finite and > 0, got " +
                                std::to_string(eps));
        if (!std::isfinite(momentum))
          throw py::value_error("batch_norm: momentum must be finite, got " +
                                std::to_string(momentum));
        py::array keep_w, keep_b, keep_rm, keep_rv;
        const float* wp = optional_vector(weight_obj, "weight", C, keep_w);
        const float* bp = optional_vector(bias_obj, "bias", C, keep_b);
        if (rm_obj.is_none() != rv_obj.is_none())
          throw py::value_error("batch_norm: pass both running_mean and running_var, or neither");
        float *rmp = nullptr, *rvp = nullptr;
        if (!rm_obj.is_none()) {
          keep_rm = writable_contiguous<float>(rm_obj, "running_mean");
          keep_rv = writable_contiguous<float>(rv_obj, "running_var");
          for (auto* a : {&keep_rm, &keep_rv})
            if (a->ndim() != 1 || a->shape(0) != C)
              throw py::value_error("batch_norm: running statistics must have shape (" +
                                    std::to_string(C) + ",), got " + shape_str(*a));
          // The running statistics are written while x, weight and bias are read.
          refuse_overlap("batch_norm", keep_rm, "running_mean", keep_rv, "running_var");
          for (auto* stats : {&keep_rm, &keep_rv}) {
            const char* stats_name = stats == &keep_rm ? "running_mean" : "running_var";
            refuse_overlap("batch_norm", *stats, stats_name, x, "input");
            if (wp) refuse_overlap("batch_norm", *stats, stats_name, keep_w, "weight");
            if (bp) refuse_overlap("batch_norm", *stats, stats_name, keep_b, "bias");
          }
          rmp = mptr<float>(keep_rm);
          rvp = mptr<float>(keep_rv);
        } else if (!training) {
          throw py::value_error("batch_norm: evaluation needs running_mean and running_var");
        }
        py::array y = new_array<float>(shape_of(x));
        py::array mean = new_array<float>({C}), invstd = new_array<float>({C});
        const float* xp = cptr<float>(x);
        float *yp = mptr<float>(y), *meanp = mptr<float>(mean), *invp = mptr<float>(invstd);
        {
          py::gil_scoped_release release;
          if (training) {
            batch_norm_forward_train(yp, meanp, invp, rmp, rvp, xp, wp, bp, N, C, S,
                                     static_cast<float>(eps), static_cast<float>(momentum));
          } else {
            for (index_t c = 0; c < C; ++c) {
              meanp[c] = rmp[c];
              invp[c] = static_cast<float>(1.0 / std::sqrt(static_cast<double>(rvp[c]) + eps));
            }
            batch_norm_forward_eval(yp, xp, meanp, invp, wp, bp, N, C, S);
          }
        }
        return py::make_tuple(y, mean, invstd);
      }, py::arg("input"), py::arg("weight"), py::arg("bias"), py::arg("running_mean"),
      py::arg("running_var"), py::arg("training"), py::arg("momentum"), py::arg("eps"),
      "(y, mean, invstd). Training normalizes with batch statistics and updates the running\n"
      "statistics in place (unbiased var); evaluation uses the running statistics.");
  m.def("batch_norm_backward", [ncs](const py::handle& dy_obj, const py::handle& x_obj,
                                     const py::handle& mean_obj, const py::handle& invstd_obj,
                                     const py::handle& weight_obj, bool training,
                                     bool input_grad, bool affine_grad) {
        py::array dy = contiguous<float>(dy_obj, "dy"), x = contiguous<float>(x_obj, "input");
        require_same_shape(dy, "dy", x, "input");
        auto [N, C, S] = ncs(x);
        py::array keep_w, keep_mean, keep_inv;
        const float* wp = optional_vector(weight_obj, "weight", C, keep_w);
        const float* meanp = optional_vector(mean_obj, "mean", C, keep_mean);
        const float* invp = optional_vector(invstd_obj, "invstd", C, keep_inv);
        if (!meanp || !invp)
          throw py::value_error("batch_norm_backward: mean and invstd are needed");
        NormGrads grads(shape_of(x), C, input_grad, affine_grad);
        const float *dyp = cptr<float>(dy), *xp = cptr<float>(x);
        {
          py::gil_scoped_release release;
          batch_norm_backward(grads.dxp, grads.dwp, grads.dbp, dyp, xp, meanp, invp, wp, N, C,
                              S, training);
        }
        return grads.result();
      }, py::arg("dy"), py::arg("input"), py::arg("mean"), py::arg("invstd"), py::arg("weight"),
      py::arg("training"), py::arg("input_grad") = true, py::arg("affine_grad") = true,
      "(dx, dweight, dbias), each None when not asked for.");

  m.def("layer_norm_forward", [](const py::handle& x_obj, const py::handle& weight_obj,
                                 const py::handle& bias_obj, double eps) {
        py::array x = contiguous<float>(x_obj, "input");
        if (x.ndim() != 2)
          throw py::value_error("layer_norm_forward: input must be 2-D (rows, normalized size), "
                                "got " + shape_str(x));
        if (!(eps > 0) || std::isinf(eps))
          throw py::value_error("layer_norm: eps must be finite and > 0, got " +
                                std::to_string(eps));
        const index_t M = x.shape(0), D = x.shape(1);
        py::array keep_w, keep_b;
        const float* wp = optional_vector(weight_obj, "weight", D, keep_w);
        const float* bp = optional_vector(bias_obj, "bias", D, keep_b);
        py::array y = new_array<float>({M, D}), mean = new_array<float>({M}),
                  rstd = new_array<float>({M});
        const float* xp = cptr<float>(x);
        float *yp = mptr<float>(y), *meanp = mptr<float>(mean), *rp = mptr<float>(rstd);
        {
          py::gil_scoped_release release;
          layer_norm_forward(yp, meanp, rp, xp, wp, bp, M, D, static_cast<float>(eps));
        }
        return py::make_tuple(y, mean, rstd);
      }, py::arg("input"), py::arg("weight"), py::arg("bias"), py::arg("eps"),
      "(y, mean, rstd) of each row of a (M, D) input normalized over its D values.");
  m.def("layer_norm_backward", [](const py::handle& dy_obj, const py::handle& x_obj,
                                  const py::handle& mean_obj, const py::handle& rstd_obj,
                                  const py::handle& weight_obj, bool input_grad,
                                  bool affine_grad) {
        py::array dy = contiguous<float>(dy_obj, "dy"), x = contiguous<float>(x_obj, "input");
        require_same_shape(dy, "dy", x, "input");
        if (x.ndim() != 2)
          throw py::value_error("layer_norm_backward: input must be 2-D, got " + shape_str(x));
        const index_t M = x.shape(0), D = x.shape(1);
        py::array keep_w, keep_mean, keep_r;
        const float* wp = optional_vector(weight_obj, "weight", D, keep_w);
        const float* meanp = optional_vector(mean_obj, "mean", M, keep_mean);
        const float* rp = optional_vector(rstd_obj, "rstd", M, keep_r);
        if (!meanp || !rp) throw py::value_error("layer_norm_backward: mean and rstd are needed");
        NormGrads grads({M, D}, D, input_grad, affine_grad);
        const float *dyp = cptr<float>(dy), *xp = cptr<float>(x);
        {
          py::gil_scoped_release release;
          layer_norm_backward(grads.dxp, grads.dwp, grads.dbp, dyp, xp, meanp, rp, wp, M, D);
        }
        return grads.result();
      }, py::arg("dy"), py::arg("input"), py::arg("mean"), py::arg("rstd"), py::arg("weight"),
      py::arg("input_grad") = true, py::arg("affine_grad") = true,
      "(dx, dweight, dbias), each None when not asked for.");
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

// A Winograd weight transform handed back in (from conv2d_forward's
// keep_weight_transform): float32 (16, C_out, C_in / groups), or null for None.
const float* weight_transform_arg(const py::handle& obj, const Conv2dShape& s, py::array& keep) {
  if (obj.is_none()) return nullptr;
  keep = contiguous<float>(obj, "weight_transform");
  const index_t C_in = s.C_in / s.groups;
  if (keep.ndim() != 3 || keep.shape(0) != 16 || keep.shape(1) != s.C_out || keep.shape(2) != C_in)
    throw py::value_error("conv2d: weight_transform must have shape (16, " +
                          std::to_string(s.C_out) + ", " + std::to_string(C_in) + ") for " +
                          s.describe() + ", got " + shape_str(keep));
  return cptr<float>(keep);
}

// out, or (out, weight transform or None) with keep_weight_transform.
py::object conv2d_forward_py(const py::handle& input_obj, const py::handle& weight_obj,
                             const py::handle& bias_obj, Pair stride, Pair padding,
                             Pair dilation, index_t groups, bool bf16,
                             bool keep_weight_transform) {
  py::array input = four_d(input_obj, "input", "(N, C_in, H, W)");
  py::array weight = four_d(weight_obj, "weight", "(C_out, C_in/groups, KH, KW)");
  Conv2dShape s = conv_shape(input, weight, stride, padding, dilation, groups);
  s.bf16 = bf16;
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
  py::object transform = py::none();
  float* transform_ptr = nullptr;
  if (keep_weight_transform && conv2d_takes_winograd(s, false)) {
    py::array a = new_array<float>({16, s.C_out, s.C_in});
    transform_ptr = mptr<float>(a);
    transform = a;
  }
  {
    py::gil_scoped_release release;
    if (transform_ptr) winograd_transform_weights(transform_ptr, w_ptr, s);
    conv2d_forward(out_ptr, in_ptr, w_ptr, bias, s, transform_ptr);
  }
  if (!keep_weight_transform) return out;
  return py::make_tuple(out, transform);
}

// Returns (grad_input, grad_weight, grad_bias), None for those not asked for.
py::tuple conv2d_backward_py(const py::handle& grad_obj, const py::handle& input_obj,
                             const py::handle& weight_obj, Pair stride, Pair padding,
                             Pair dilation, index_t groups, bool input_grad, bool weight_grad,
                             bool bias_grad, bool bf16, const py::handle& weight_transform_obj) {
  py::array input = four_d(input_obj, "input", "(N, C_in, H, W)");
  py::array weight = four_d(weight_obj, "weight", "(C_out, C_in/groups, KH, KW)");
  Conv2dShape s = conv_shape(input, weight, stride, padding, dilation, groups);
  s.bf16 = bf16;
  py::array grad = four_d(grad_obj, "grad_output", "(N, C_out, H_out, W_out)");
  if (grad.shape(0) != s.N || grad.shape(1) != s.C_out || grad.shape(2) != s.H_out() ||
      grad.shape(3) != s.W_out())
    throw py::value_error("conv2d_backward: grad_output must have shape (" +
                          std::to_string(s.N) + ", " + std::to_string(s.C_out) + ", " +
                          std::to_string(s.H_out()) + ", " + std::to_string(s.W_out()) +
                          ") for " + s.describe() + ", got " + shape_str(grad));
  py::array transform_array;
  const float* transform = weight_transform_arg(weight_transform_obj, s, transform_array);
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
    if (gi_ptr) conv2d_backward_input(gi_ptr, dy, w, s, transform);
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
        py::arg("groups") = 1, py::arg("bf16") = false, py::arg("keep_weight_transform") = false,
        "2-D convolution (cross-correlation), NCHW float32: (N, C_out, H_out, W_out).\n"
        "bf16: the GEMMs take bfloat16-rounded operands (autocast).\n"
        "keep_weight_transform: return (out, transform), transform the weight's Winograd\n"
        "transform (16, C_out, C_in) when this convolution took the Winograd path, else\n"
        "None; conv2d_backward(weight_transform=) reuses it for the grad-input pass.");
  m.def("conv2d_backward", &conv2d_backward_py, py::arg("grad_output"), py::arg("input"),
        py::arg("weight"), py::kw_only(), py::arg("stride") = Pair{1, 1},
        py::arg("padding") = Pair{0, 0}, py::arg("dilation") = Pair{1, 1},
        py::arg("groups") = 1, py::arg("input_grad") = true, py::arg("weight_grad") = true,
        py::arg("bias_grad") = true, py::arg("bf16") = false,
        py::arg("weight_transform") = py::none(),
        "Gradients of conv2d: (grad_input, grad_weight, grad_bias), None where not asked.\n"
        "weight_transform: None, or what conv2d_forward(keep_weight_transform=True)\n"
        "returned for this weight, used instead of transforming it again.");

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

// ---- low precision: int8 and bfloat16 ----------------------------------------

// A 1-D float32 (n,) array `name` (checked, kept alive by the caller's copy).
const float* channel_vector(const py::array& a, const char* name, index_t n) {
  if (a.ndim() != 1 || a.shape(0) != n)
    throw py::value_error(std::string(name) + " must have shape (" + std::to_string(n) +
                          ",), got " + shape_str(a));
  return cptr<float>(a);
}

// Packed int8 weights as int8_pack_weights returns them: an int8 (N, K) view
// whose rows are 4*ceil(K/4) bytes apart and 4-byte aligned (quant.h). Returns
// its words and sets N.
const std::uint32_t* packed_rows(const py::array& rows, index_t K, const char* fn, index_t& N) {
  const bool packed = rows.ndim() == 2 && rows.strides(1) == 1 &&
                      (rows.shape(0) <= 1 || rows.strides(0) == 4 * int8_groups(rows.shape(1))) &&
                      reinterpret_cast<std::uintptr_t>(rows.data()) % 4 == 0;
  if (!packed)
    throw py::value_error(std::string(fn) + ": w_rows must come from int8_pack_weights (an "
                          "int8 (N, K) array with rows padded to 4 bytes), got shape " +
                          shape_str(rows));
  if (rows.shape(1) != K)
    throw py::value_error(std::string(fn) + ": w_rows " + shape_str(rows) + " has K = " +
                          std::to_string(rows.shape(1)) + " but the input has K = " +
                          std::to_string(K));
  N = rows.shape(0);
  return static_cast<const std::uint32_t*>(rows.data());
}

// Packed int8 weights with their per-channel scales, column sums and bias,
// checked against the input's K.
struct Int8Weights {
  Int8Weights(const py::handle& rows_obj, const py::handle& scale_obj,
              const py::handle& colsum_obj, const py::handle& bias_obj, index_t K, float a_scale,
              std::int64_t a_zero, const char* fn)
      : rows(checked<std::int8_t>(rows_obj, "w_rows")),
        scale(contiguous<float>(scale_obj, "w_scale")),
        colsum(contiguous<std::int32_t>(colsum_obj, "colsum")) {
    words = packed_rows(rows, K, fn, N);
    if (colsum.ndim() != 1 || colsum.shape(0) != N)
      throw py::value_error(std::string(fn) + ": colsum must have shape (" + std::to_string(N) +
                            ",), got " + shape_str(colsum));
    if (!(a_scale > 0.0f) || !std::isfinite(a_scale))
      throw py::value_error(std::string(fn) + ": a_scale must be positive and finite, got " +
                            std::to_string(a_scale));
    if (a_zero < 0 || a_zero > 255)
      throw py::value_error(std::string(fn) + ": a_zero must be in [0, 255], got " +
                            std::to_string(a_zero));
    if (!bias_obj.is_none()) bias = contiguous<float>(bias_obj, "bias");
    out = {channel_vector(scale, "w_scale", N), cptr<std::int32_t>(colsum),
           bias_obj.is_none() ? nullptr : channel_vector(bias, "bias", N), a_scale,
           static_cast<std::int32_t>(a_zero)};
  }
  py::array rows, scale, colsum, bias;
  const std::uint32_t* words;
  index_t N;
  Int8Output out;
};

void bind_low_precision(py::module_& m) {
  m.def("int8_pack_weights", [](const py::handle& qw_obj) {
        py::array qw = contiguous<std::int8_t>(qw_obj, "qw");
        if (qw.ndim() != 2)
          throw py::value_error("int8_pack_weights: qw must be 2-D (N, K), got " + shape_str(qw));
        const index_t N = qw.shape(0), K = qw.shape(1), row = 4 * int8_groups(K);
        py::array words = new_array<std::uint32_t>({N, row / 4});
        py::array colsum = new_array<std::int32_t>({N});
        int8_pack_weights(mptr<std::uint32_t>(words), mptr<std::int32_t>(colsum),
                          cptr<std::int8_t>(qw), N, K);
        py::array rows(py::dtype::of<std::int8_t>(), {N, K}, {row, py::ssize_t(1)},
                       words.data(), words);
        return py::make_tuple(rows, colsum);
      }, py::arg("qw"),
      "int8 weights qw (N, K) as the int8 kernels read them: (w_rows, an int8 (N, K) view\n"
      "of qw with rows padded to 4 bytes, colsum (N,) int32 = qw.sum(1)).");
  m.def("int8_gemm", [](const py::handle& rows_obj, const py::handle& x_obj) {
        py::array rows = checked<std::int8_t>(rows_obj, "w_rows");
        py::array x = contiguous<std::uint8_t>(x_obj, "x");
        if (x.ndim() != 2)
          throw py::value_error("int8_gemm: x must be 2-D (N, K), got " + shape_str(x));
        const index_t N = x.shape(0), K = x.shape(1);
        index_t M;
        const std::uint32_t* wp = packed_rows(rows, K, "int8_gemm", M);
        py::array c = new_array<std::int32_t>({M, N});
        std::int32_t* cp = mptr<std::int32_t>(c);
        const std::uint8_t* xp = cptr<std::uint8_t>(x);
        {
          py::gil_scoped_release release;
          int8_gemm(cp, wp, xp, M, N, K);
        }
        return c;
      }, py::arg("w_rows"), py::arg("x"),
      "Exact int32 c (M, N) = w (M, K) int8 @ x (N, K).T uint8, w packed by int8_pack_weights.");
  m.def("int8_linear", [](const py::handle& x_obj, const py::handle& rows, const py::handle& scale,
                          const py::handle& colsum, const py::handle& bias, float a_scale,
                          std::int64_t a_zero) {
        py::array x = contiguous<float>(x_obj, "x");
        if (x.ndim() != 2)
          throw py::value_error("int8_linear: x must be 2-D (M, K), got " + shape_str(x));
        const index_t M = x.shape(0), K = x.shape(1);
        const Int8Weights w(rows, scale, colsum, bias, K, a_scale, a_zero, "int8_linear");
        py::array y = new_array<float>({M, w.N});
        float* yp = mptr<float>(y);
        const float* xp = cptr<float>(x);
        {
          py::gil_scoped_release release;
          int8_linear(yp, xp, w.words, M, w.N, K, w.out);
        }
        return y;
      }, py::arg("x"), py::arg("w_rows"), py::arg("w_scale"), py::arg("colsum"),
      py::arg("bias") = py::none(), py::kw_only(), py::arg("a_scale"), py::arg("a_zero"),
      "y (M, N) float32 = the int8 linear map of x (M, K) float32 (quant.h): x quantized\n"
      "with a_scale and a_zero, weights packed by int8_pack_weights with scales w_scale.");
  m.def("int8_conv2d", [](const py::handle& x_obj, const py::handle& rows, const py::handle& scale,
                          const py::handle& colsum, const py::handle& bias, Pair kernel,
                          Pair stride, Pair padding, Pair dilation, float a_scale,
                          std::int64_t a_zero) {
        py::array x = four_d(x_obj, "input", "(N, C_in, H, W)");
        const index_t C_in = x.shape(1), K = C_in * kernel[0] * kernel[1];
        const Int8Weights w(rows, scale, colsum, bias, K, a_scale, a_zero, "int8_conv2d");
        const Conv2dShape s{x.shape(0), C_in, x.shape(2), x.shape(3), w.N, kernel[0], kernel[1],
                            stride[0], stride[1], padding[0], padding[1], dilation[0],
                            dilation[1], 1};
        check_conv2d(s);
        py::array y = new_array<float>({s.N, s.C_out, s.H_out(), s.W_out()});
        float* yp = mptr<float>(y);
        const float* xp = cptr<float>(x);
        {
          py::gil_scoped_release release;
          int8_conv2d(yp, xp, w.words, s, w.out);
        }
        return y;
      }, py::arg("input"), py::arg("w_rows"), py::arg("w_scale"), py::arg("colsum"),
      py::arg("bias") = py::none(), py::kw_only(), py::arg("kernel_size"),
      py::arg("stride") = Pair{1, 1}, py::arg("padding") = Pair{0, 0},
      py::arg("dilation") = Pair{1, 1}, py::arg("a_scale"), py::arg("a_zero"),
      "The int8 convolution (groups 1) of input (N, C_in, H, W) float32, weights packed by\n"
      "int8_pack_weights from (C_out, C_in * KH * KW): (N, C_out, H_out, W_out) float32.");
  m.def("int8_kernel", &int8_kernel_name,
        "The int8 micro-kernel on the active path: 'avx512_vnni', 'avx2' or 'portable'.");

  m.def("round_bf16", [](const py::handle& x_obj) {
        py::array x = contiguous<float>(x_obj, "x");
        py::array y = new_array<float>(shape_of(x));
        round_to_bf16(mptr<float>(y), cptr<float>(x), x.size());
        return y;
      }, py::arg("x"), "x rounded to bfloat16 (nearest, ties to even), as float32.");
  m.def("gemm_bf16", [](const py::handle& a, const py::handle& b, bool trans_a, bool trans_b,
                        float beta, const py::object& out) {
        return gemm(a, b, trans_a, trans_b, 1.0f, beta, out, true);
      }, py::arg("a"), py::arg("b"), py::kw_only(), py::arg("trans_a") = false,
      py::arg("trans_b") = false, py::arg("beta") = 0.0f, py::arg("out") = py::none(),
      "gemm with bfloat16-rounded operands and float32 accumulation (autocast); beta 0 or 1.");
  m.def("bf16_kernel", &bf16_kernel_name,
        "The bf16 GEMM path: 'avx512_bf16' (vdpbf16ps), else 'avx2' or 'portable' (rounded\n"
        "operands on the float32 kernels).");
  m.def("vnni_peak_gops", [](int threads, double seconds) {
        py::gil_scoped_release release;
        return vnni_peak_gops(threads, seconds);
      }, py::arg("threads"), py::arg("seconds") = 0.2,
      "GOP/s of a register-only vpdpbusd loop (AVX512_VNNI), a multiply-add counting two.");
  m.def("bf16_peak_gflops", [](int threads, double seconds) {
        py::gil_scoped_release release;
        return bf16_peak_gflops(threads, seconds);
      }, py::arg("threads"), py::arg("seconds") = 0.2,
      "GFLOP/s of a register-only vdpbf16ps loop (AVX512_BF16).");
}

}  // namespace

void bind_shapes(py::module_& m);  // bind_shapes.cpp

PYBIND11_MODULE(_C, m) {
  m.doc() = "pydl CPU kernels";
  bind_runtime(m);
  bind_gemm(m);
  bind_elementwise(m);
  bind_loss(m);
  bind_optim(m);
  bind_layers(m);
  bind_rnn(m);
  bind_conv_pool(m);
  bind_low_precision(m);
  bind_shapes(m);
}
