// The only pybind11 file of the CUDA kernels; it serves two modules:
//  - pydl._cuda (PYDL_CUDA_MODULE=_cuda): arrays are device arrays read through
//    __cuda_array_interface__ (CuPy), kernels are enqueued on `stream`;
//  - pydl._cuda_emu (PYDL_CUDA_EMULATE): the same kernels run on the host by
//    the emulator, on NumPy arrays read through __array_interface__.
// Outputs are passed in by the caller (no allocation here), except for the
// recurrent layers' (see "rnn" below). Every binding
// checks dtypes, shapes, contiguity and sizes as pydl._C does, raising
// TypeError or ValueError that names the argument, before any kernel runs.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>  // (h, w) pairs

#include <algorithm>
#include <array>
#include <cmath>  // NAN
#include <string>
#include <vector>

#include "../csrc/optim_math.h"  // require_step
#include "../csrc/shapes.h"      // RnnSizes, parse_reduction, check_probability
#include "conv.cuh"
#include "dropout.cuh"
#include "elementwise.cuh"
#include "embedding.cuh"
#include "gemm.cuh"
#include "loss.cuh"
#include "norm.cuh"
#include "optim.cuh"
#include "pool.cuh"
#include "rnn.cuh"

namespace py = pybind11;
#if defined(PYDL_CUDA_EMULATE)
namespace pydl::cuda::emu_selftest {
void bind(py::module_& m);  // cuda/emu/selftest.cpp
}
#endif
using namespace pydl;

namespace {

#if defined(PYDL_CUDA_EMULATE)
constexpr const char* kInterface = "__array_interface__";
constexpr const char* kArrayKind = "a NumPy array";
constexpr const char* kCopyHint = "numpy.ascontiguousarray";
// The tests' CuPy look-alike (tests/fake_cupy.py) refuses __array_interface__, as CuPy
// does, and hands its host memory out as __cuda_array_interface__: the emulated module
// reads that first, so the device path of pydl runs on it unchanged.
constexpr const char* kDeviceInterface = "__cuda_array_interface__";
#else
constexpr const char* kInterface = "__cuda_array_interface__";
constexpr const char* kArrayKind = "a CuPy array";
constexpr const char* kCopyHint = "cupy.ascontiguousarray";
#endif

// ---- array arguments ---------------------------------------------------------

std::string shape_str(const std::vector<index_t>& shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

// What the array interface tells about an argument; strides in bytes.
struct ArrayArg {
  std::string name;
  void* data = nullptr;
  bool readonly = false;
  std::string typestr;
  std::vector<index_t> shape, strides;

  index_t ndim() const { return static_cast<index_t>(shape.size()); }
  // Checked: an interface may describe any shape.
  index_t size() const { return size_product(shape, typestr_size(), name.c_str()); }
  bool c_contiguous() const {
    index_t expected = typestr_size();
    for (index_t i = ndim() - 1; i >= 0; --i) {
      if (shape[i] != 1 && strides[i] != expected) return false;
      expected *= shape[i];
    }
    return true;
  }
  index_t typestr_size() const { return std::stoll(typestr.substr(2)); }
  std::string shape_str() const { return ::shape_str(shape); }
  template <class T>
  T* ptr() const { return static_cast<T*>(data); }
};

std::string dtype_name(const std::string& typestr) {
  static const std::pair<const char*, const char*> names[] = {
      {"<f4", "float32"}, {"<f8", "float64"}, {"<f2", "float16"}, {"<i8", "int64"},
      {"<i4", "int32"}, {"|b1", "bool"}, {"|u1", "uint8"}, {"|i1", "int8"}};
  for (const auto& [code, name] : names)
    if (typestr == code) return name;
  return typestr;
}

// The array interface dict of obj, or None when obj has none.
py::object interface_of(const py::handle& obj) {
  if (obj.is_none()) return py::none();
#if defined(PYDL_CUDA_EMULATE)
  if (py::hasattr(obj, kDeviceInterface)) return obj.attr(kDeviceInterface);
#endif
  return py::getattr(obj, kInterface, py::none());
}

ArrayArg array_arg(const py::handle& obj, const char* name) {
  py::object interface = interface_of(obj);
  if (interface.is_none())
    throw py::type_error(std::string(name) + " must be " + kArrayKind + " (an object with " +
                         kInterface + "), got " + std::string(py::str(py::type::of(obj))));
  py::dict d = interface;
  if (d.contains("mask") && !d["mask"].is_none())
    throw py::type_error(std::string(name) + " is a masked array; masks are not supported");
  ArrayArg a;
  a.name = name;
  a.typestr = py::cast<std::string>(d["typestr"]);
  for (auto dim : py::tuple(d["shape"])) a.shape.push_back(py::cast<index_t>(dim));
  py::tuple data = d["data"];
  a.data = reinterpret_cast<void*>(py::cast<std::uintptr_t>(data[0]));
  a.readonly = py::cast<bool>(data[1]);
  if (d.contains("strides") && !d["strides"].is_none()) {
    for (auto s : py::tuple(d["strides"])) a.strides.push_back(py::cast<index_t>(s));
  } else {  // None means C-contiguous
    a.strides.resize(a.shape.size());
    index_t stride = a.typestr_size();
    for (index_t i = a.ndim() - 1; i >= 0; --i) a.strides[i] = stride, stride *= a.shape[i];
  }
  return a;
}

template <class T>
const char* typestr_of() {
  if (std::is_same_v<T, float>) return "<f4";
  if (std::is_same_v<T, std::int64_t>) return "<i8";
  if (std::is_same_v<T, std::uint8_t>) return "|u1";
  return "?";
}

// An argument holding T; TypeError naming it otherwise.
template <class T>
ArrayArg checked(const py::handle& obj, const char* name) {
  ArrayArg a = array_arg(obj, name);
  if (a.typestr != typestr_of<T>())
    throw py::type_error(std::string(name) + " must be " + dtype_name(typestr_of<T>()) +
                         ", got " + dtype_name(a.typestr));
  return a;
}

// As checked(), and also C-contiguous.
template <class T>
ArrayArg contiguous(const py::handle& obj, const char* name) {
  ArrayArg a = checked<T>(obj, name);
  if (!a.c_contiguous())
    throw py::value_error(std::string(name) + " must be C-contiguous (shape " + a.shape_str() +
                          "); call " + kCopyHint + " first");
  return a;
}

template <class T>
ArrayArg writable_contiguous(const py::handle& obj, const char* name) {
  ArrayArg a = contiguous<T>(obj, name);
  if (a.readonly) throw py::value_error(std::string(name) + " must be writable");
  return a;
}

void require_same_shape(const ArrayArg& a, const ArrayArg& b) {
  if (a.shape != b.shape)
    throw py::value_error(a.name + " has shape " + a.shape_str() + " but " + b.name +
                          " has shape " + b.shape_str() + "; they must match");
}

void require_shape(const ArrayArg& a, const std::vector<index_t>& shape, const char* what) {
  if (a.shape != shape)
    throw py::value_error(std::string(what) + ": " + a.name + " has shape " + a.shape_str() +
                          ", expected " + shape_str(shape));
}

// The arrays of one call, each added as read or written. A kernel's threads
// read inputs while others write outputs, so a written array may share memory
// with no other array of the call (ValueError naming both).
class CallArrays {
 public:
  explicit CallArrays(const char* fn) : fn_(fn) {}
  const ArrayArg& read(const ArrayArg& a) { return add(a, false); }
  const ArrayArg& write(const ArrayArg& a) { return add(a, true); }

 private:
  struct Seen {
    ByteRange bytes;
    bool written;
    std::string name;
  };
  const ArrayArg& add(const ArrayArg& a, bool written) {
    const ByteRange bytes = byte_range(a.data, a.shape, a.strides, a.typestr_size());
    for (const Seen& other : seen_)
      if ((written || other.written) && bytes.overlaps(other.bytes))
        throw py::value_error(std::string(fn_) + ": " + a.name + " shares memory with " +
                              other.name + "; pass a separate output array");
    seen_.push_back({bytes, written, a.name});
    return a;
  }
  const char* fn_;
  std::vector<Seen> seen_;
};

cudaStream_t as_stream(std::uintptr_t stream) { return reinterpret_cast<cudaStream_t>(stream); }

// ---- gemm ----------------------------------------------------------------------

// A 2-D float32 (batch of) matrix as (pointer, row stride, transposed?):
// row-major views pass as they are, column-major views (e.g. a.T) as the
// transposed operand. Anything else has no contiguous axis: ValueError (no
// device copies are made behind the caller's back).
struct MatrixArg {
  const float* ptr;
  index_t ld;
  bool trans;
  index_t batch_stride;  // elements; 0 when the batch has one matrix
};

MatrixArg matrix_arg(const ArrayArg& a, bool trans) {
  const index_t d = a.ndim(), f = sizeof(float);
  const index_t rows = a.shape[d - 2], cols = a.shape[d - 1];
  const index_t rs = a.strides[d - 2], cs = a.strides[d - 1];
  index_t batch_stride = 0;
  if (d == 3 && a.shape[0] > 1) {
    if (a.strides[0] % f != 0 || a.strides[0] < 0)
      throw py::value_error(a.name + ": the batch stride (" + std::to_string(a.strides[0]) +
                            " bytes) is not a non-negative multiple of 4; call " + kCopyHint);
    batch_stride = a.strides[0] / f;
  }
  if (rs % f == 0 && cs % f == 0) {
    if ((cols <= 1 || cs == f) && (rows <= 1 || rs >= cols * f))
      return {a.ptr<const float>(), rows <= 1 ? std::max<index_t>(cols, 1) : rs / f, trans,
              batch_stride};
    if ((rows <= 1 || rs == f) && (cols <= 1 || cs >= rows * f))
      return {a.ptr<const float>(), cols <= 1 ? std::max<index_t>(rows, 1) : cs / f, !trans,
              batch_stride};
  }
  throw py::value_error(a.name + " (shape " + a.shape_str() +
                        ") has neither a contiguous row nor column axis; call " + kCopyHint);
}

void gemm(const py::handle& a_obj, const py::handle& b_obj, bool trans_a, bool trans_b,
          float alpha, float beta, const py::handle& out_obj, std::uintptr_t stream, bool tf32) {
  ArrayArg a = checked<float>(a_obj, "a"), b = checked<float>(b_obj, "b");
  if (a.ndim() != b.ndim() || a.ndim() < 2 || a.ndim() > 3)
    throw py::value_error("gemm: a and b must both be 2-D, or both 3-D (batched); got a " +
                          a.shape_str() + " and b " + b.shape_str());
  const bool batched = a.ndim() == 3;
  const index_t batch = batched ? a.shape[0] : 1;
  if (batched && b.shape[0] != batch)
    throw py::value_error("gemm: batch sizes differ: a " + a.shape_str() + ", b " + b.shape_str());
  const index_t r = a.ndim() - 2;
  const index_t M = trans_a ? a.shape[r + 1] : a.shape[r];
  const index_t K = trans_a ? a.shape[r] : a.shape[r + 1];
  const index_t Kb = trans_b ? b.shape[r + 1] : b.shape[r];
  const index_t N = trans_b ? b.shape[r] : b.shape[r + 1];
  if (K != Kb)
    throw py::value_error("gemm: inner dimensions differ: op(a) is (" + std::to_string(M) + ", " +
                          std::to_string(K) + ") from a " + a.shape_str() + ", op(b) is (" +
                          std::to_string(Kb) + ", " + std::to_string(N) + ") from b " +
                          b.shape_str());
  ArrayArg out = writable_contiguous<float>(out_obj, "out");
  require_shape(out, batched ? std::vector<index_t>{batch, M, N} : std::vector<index_t>{M, N},
                "gemm");
  CallArrays arrays("gemm");
  arrays.read(a), arrays.read(b), arrays.write(out);
  const MatrixArg ma = matrix_arg(a, trans_a), mb = matrix_arg(b, trans_b);
  py::gil_scoped_release release;
  cuda::sgemm_batched(batch, ma.trans, mb.trans, M, N, K, alpha, ma.ptr, ma.ld, ma.batch_stride,
                      mb.ptr, mb.ld, mb.batch_stride, beta, out.ptr<float>(),
                      std::max<index_t>(N, 1), M * N, as_stream(stream), tf32);
}

void bind_gemm(py::module_& m) {
  m.def("gemm", &gemm, py::arg("a"), py::arg("b"), py::kw_only(), py::arg("trans_a") = false,
        py::arg("trans_b") = false, py::arg("alpha") = 1.0f, py::arg("beta") = 0.0f,
        py::arg("out"), py::arg("stream") = 0, py::arg("tf32") = false,
        "out = alpha * op(a) @ op(b) + beta * out for float32 matrices (2-D) or batches (3-D).\n"
        "Strided and transposed views are used in place when one axis is contiguous.\n"
        "tf32=True multiplies on the tensor cores (sm_80+) with a and b rounded to TF32\n"
        "(10-bit mantissa), accumulating in float32, as PyTorch's allow_tf32.");
}

// ---- elementwise ---------------------------------------------------------------

using Unary = void (*)(float*, const float*, index_t, cudaStream_t);
using UnaryGrad = void (*)(float*, const float*, const float*, index_t, cudaStream_t);
using Rowwise = void (*)(float*, const float*, index_t, index_t, cudaStream_t);
using RowwiseGrad = void (*)(float*, const float*, const float*, index_t, index_t, cudaStream_t);

void def_unary(py::module_& m, const char* name, Unary fwd, UnaryGrad bwd, const char* saved) {
  m.def((std::string(name) + "_forward").c_str(),
        [fwd](const py::handle& x_obj, const py::handle& out_obj, std::uintptr_t stream) {
    ArrayArg x = contiguous<float>(x_obj, "x"), out = writable_contiguous<float>(out_obj, "out");
    require_same_shape(out, x);
    CallArrays arrays("elementwise forward");
    arrays.read(x), arrays.write(out);
    py::gil_scoped_release release;
    fwd(out.ptr<float>(), x.ptr<const float>(), x.size(), as_stream(stream));
  }, py::arg("x"), py::kw_only(), py::arg("out"), py::arg("stream") = 0);
  m.def((std::string(name) + "_backward").c_str(),
        [bwd, saved](const py::handle& dy_obj, const py::handle& s_obj, const py::handle& out_obj,
                     std::uintptr_t stream) {
    ArrayArg dy = contiguous<float>(dy_obj, "dy"), s = contiguous<float>(s_obj, saved);
    ArrayArg out = writable_contiguous<float>(out_obj, "out");
    require_same_shape(dy, s);
    require_same_shape(out, dy);
    CallArrays arrays("elementwise backward");
    arrays.read(dy), arrays.read(s), arrays.write(out);
    py::gil_scoped_release release;
    bwd(out.ptr<float>(), dy.ptr<const float>(), s.ptr<const float>(), dy.size(), as_stream(stream));
  }, py::arg("dy"), py::arg(saved), py::kw_only(), py::arg("out"), py::arg("stream") = 0);
}

// Row-wise ops act on the last axis; leading axes are flattened into rows.
std::pair<index_t, index_t> rows_cols(const ArrayArg& a) {
  if (a.ndim() < 1) throw py::value_error(a.name + " must have at least 1 dimension");
  const index_t cols = a.shape.back();
  return {cols ? a.size() / cols : 0, cols};
}

void def_rowwise(py::module_& m, const char* name, Rowwise fwd, RowwiseGrad bwd) {
  m.def((std::string(name) + "_forward").c_str(),
        [fwd](const py::handle& x_obj, const py::handle& out_obj, std::uintptr_t stream) {
    ArrayArg x = contiguous<float>(x_obj, "x"), out = writable_contiguous<float>(out_obj, "out");
    auto [rows, cols] = rows_cols(x);
    require_same_shape(out, x);
    CallArrays arrays("row-wise forward");
    arrays.read(x), arrays.write(out);
    py::gil_scoped_release release;
    fwd(out.ptr<float>(), x.ptr<const float>(), rows, cols, as_stream(stream));
  }, py::arg("x"), py::kw_only(), py::arg("out"), py::arg("stream") = 0);
  m.def((std::string(name) + "_backward").c_str(),
        [bwd](const py::handle& dy_obj, const py::handle& y_obj, const py::handle& out_obj,
              std::uintptr_t stream) {
    ArrayArg dy = contiguous<float>(dy_obj, "dy"), y = contiguous<float>(y_obj, "y");
    ArrayArg out = writable_contiguous<float>(out_obj, "out");
    require_same_shape(dy, y);
    auto [rows, cols] = rows_cols(y);
    require_same_shape(out, y);
    CallArrays arrays("row-wise backward");
    arrays.read(dy), arrays.read(y), arrays.write(out);
    py::gil_scoped_release release;
    bwd(out.ptr<float>(), dy.ptr<const float>(), y.ptr<const float>(), rows, cols,
        as_stream(stream));
  }, py::arg("dy"), py::arg("y"), py::kw_only(), py::arg("out"), py::arg("stream") = 0);
}

void bind_elementwise(py::module_& m) {
  def_unary(m, "relu", cuda::relu_forward, cuda::relu_backward, "x");
  def_unary(m, "sigmoid", cuda::sigmoid_forward, cuda::sigmoid_backward, "y");
  def_unary(m, "tanh", cuda::tanh_forward, cuda::tanh_backward, "y");
  def_unary(m, "gelu", cuda::gelu_forward, cuda::gelu_backward, "x");
  def_rowwise(m, "softmax", cuda::softmax_forward, cuda::softmax_backward);
  def_rowwise(m, "log_softmax", cuda::log_softmax_forward, cuda::log_softmax_backward);
}

// ---- loss ----------------------------------------------------------------------

// Writes loss (one float32: the reduced loss), losses (N,) per row and, when
// given, grad (N, C) = d loss / d logits for the reduction.
void softmax_cross_entropy(const py::handle& logits_obj, const py::handle& target_obj,
                           const std::string& reduction_name, std::int64_t ignore_index,
                           const py::handle& loss_obj, const py::handle& losses_obj,
                           const py::handle& grad_obj, std::uintptr_t stream) {
  const Reduction reduction = parse_reduction(reduction_name);
  ArrayArg logits = contiguous<float>(logits_obj, "logits");
  if (logits.ndim() != 2)
    throw py::value_error("softmax_cross_entropy: logits must be 2-D (N, C), got " +
                          logits.shape_str());
  const index_t N = logits.shape[0], C = logits.shape[1];
  if (C == 0 && N > 0) throw py::value_error("softmax_cross_entropy: logits has 0 classes");
  ArrayArg target = array_arg(target_obj, "target");
  const bool by_index = target.typestr == typestr_of<std::int64_t>();
  if (by_index) {
    target = contiguous<std::int64_t>(target_obj, "target");
    if (target.shape != std::vector<index_t>{N})
      throw py::value_error("softmax_cross_entropy: class-index target must have shape (" +
                            std::to_string(N) + ",), got " + target.shape_str());
  } else {
    target = contiguous<float>(target_obj, "target (int64 indices or float32 probabilities)");
    target.name = "target";
    require_same_shape(target, logits);
  }
  ArrayArg loss = writable_contiguous<float>(loss_obj, "loss");
  if (loss.size() != 1)
    throw py::value_error("softmax_cross_entropy: loss must hold one element, got shape " +
                          loss.shape_str());
  ArrayArg losses = writable_contiguous<float>(losses_obj, "losses");
  require_shape(losses, {N}, "softmax_cross_entropy");
  CallArrays arrays("softmax_cross_entropy");
  arrays.read(logits), arrays.read(target), arrays.write(loss), arrays.write(losses);
  float* grad = nullptr;
  if (!grad_obj.is_none()) {
    ArrayArg g = writable_contiguous<float>(grad_obj, "grad");
    require_same_shape(g, logits);
    grad = arrays.write(g).ptr<float>();
  }
  py::gil_scoped_release release;
  if (by_index)
    cuda::softmax_cross_entropy_index(loss.ptr<float>(), losses.ptr<float>(), grad,
                                      logits.ptr<const float>(), target.ptr<const std::int64_t>(),
                                      N, C, reduction, ignore_index, as_stream(stream));
  else
    cuda::softmax_cross_entropy_prob(loss.ptr<float>(), losses.ptr<float>(), grad,
                                     logits.ptr<const float>(), target.ptr<const float>(), N, C,
                                     reduction, as_stream(stream));
}

void bind_loss(py::module_& m) {
  m.def("softmax_cross_entropy", &softmax_cross_entropy, py::arg("logits"), py::arg("target"),
        py::kw_only(), py::arg("reduction") = "mean", py::arg("ignore_index") = -100,
        py::arg("loss"), py::arg("losses"), py::arg("grad") = py::none(), py::arg("stream") = 0,
        "Fused softmax cross-entropy over (N, C) float32 logits with int64 class indices or\n"
        "float32 probabilities. Writes loss (1 element), losses (N,) and grad (N, C) if given.\n"
        "A class index outside [0, C) other than ignore_index gives NaN for its row.");
}

// ---- runtime -------------------------------------------------------------------

#if !defined(PYDL_CUDA_EMULATE)
void bind_runtime(py::module_& m) {
  m.def("device_count", [] {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
      cudaGetLastError();  // no driver or no device: clear the error, report none
      return 0;
    }
    return count;
  }, "Number of CUDA devices; 0 when there is no driver or device (never raises).");
}
#endif

// ---- conv and pool --------------------------------------------------------------

using Pair = std::array<index_t, 2>;

ArrayArg four_d(const py::handle& obj, const char* name, const char* layout, bool output = false) {
  ArrayArg a = output ? writable_contiguous<float>(obj, name) : contiguous<float>(obj, name);
  if (a.ndim() != 4)
    throw py::value_error(std::string(name) + " must be 4-D " + layout + ", got shape " +
                          a.shape_str());
  return a;
}

Conv2dShape conv_shape(const ArrayArg& input, const ArrayArg& weight, Pair stride, Pair padding,
                       Pair dilation, index_t groups) {
  Conv2dShape s{input.shape[0], input.shape[1], input.shape[2], input.shape[3],
                weight.shape[0], weight.shape[2], weight.shape[3],
                stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1], groups};
  if (groups >= 1 && weight.shape[1] * groups != input.shape[1])
    throw py::value_error("conv2d: weight " + weight.shape_str() + " with groups " +
                          std::to_string(groups) + " expects " +
                          std::to_string(weight.shape[1] * groups) + " input channels, but input " +
                          input.shape_str() + " has " + std::to_string(input.shape[1]));
  check_conv2d(s);
  return s;
}

// keep_weight_transform and weight_transform (conv2d_backward): the CPU module's
// Winograd weight reuse; the CUDA kernels have no Winograd path, so the transform
// is always None and one handed in is ignored.
void conv2d_forward(const py::handle& input_obj, const py::handle& weight_obj,
                    const py::handle& bias_obj, Pair stride, Pair padding, Pair dilation,
                    index_t groups, bool /*keep_weight_transform*/, const py::handle& out_obj,
                    std::uintptr_t stream) {
  ArrayArg input = four_d(input_obj, "input", "(N, C_in, H, W)");
  ArrayArg weight = four_d(weight_obj, "weight", "(C_out, C_in/groups, KH, KW)");
  const Conv2dShape s = conv_shape(input, weight, stride, padding, dilation, groups);
  CallArrays arrays("conv2d");
  arrays.read(input), arrays.read(weight);
  const float* bias = nullptr;
  if (!bias_obj.is_none()) {
    ArrayArg b = contiguous<float>(bias_obj, "bias");
    require_shape(b, {s.C_out}, "conv2d");
    bias = arrays.read(b).ptr<const float>();
  }
  ArrayArg out = four_d(out_obj, "out", "(N, C_out, H_out, W_out)", true);
  require_shape(out, {s.N, s.C_out, s.H_out(), s.W_out()}, "conv2d");
  arrays.write(out);
  py::gil_scoped_release release;
  cuda::conv2d_forward(out.ptr<float>(), input.ptr<const float>(), weight.ptr<const float>(), bias,
                       s, as_stream(stream));
}

// Writes each gradient whose output array is given (not None).
void conv2d_backward(const py::handle& grad_obj, const py::handle& input_obj,
                     const py::handle& weight_obj, Pair stride, Pair padding, Pair dilation,
                     index_t groups, const py::handle& /*weight_transform*/,
                     const py::handle& grad_input_obj, const py::handle& grad_weight_obj,
                     const py::handle& grad_bias_obj, std::uintptr_t stream) {
  ArrayArg input = four_d(input_obj, "input", "(N, C_in, H, W)");
  ArrayArg weight = four_d(weight_obj, "weight", "(C_out, C_in/groups, KH, KW)");
  const Conv2dShape s = conv_shape(input, weight, stride, padding, dilation, groups);
  ArrayArg grad = four_d(grad_obj, "grad_output", "(N, C_out, H_out, W_out)");
  require_shape(grad, {s.N, s.C_out, s.H_out(), s.W_out()}, "conv2d_backward");
  CallArrays arrays("conv2d_backward");
  arrays.read(input), arrays.read(weight), arrays.read(grad);
  float *gi = nullptr, *gw = nullptr, *gb = nullptr;
  if (!grad_input_obj.is_none()) {
    ArrayArg a = writable_contiguous<float>(grad_input_obj, "grad_input");
    require_same_shape(a, input);
    gi = arrays.write(a).ptr<float>();
  }
  if (!grad_weight_obj.is_none()) {
    ArrayArg a = writable_contiguous<float>(grad_weight_obj, "grad_weight");
    require_same_shape(a, weight);
    gw = arrays.write(a).ptr<float>();
  }
  if (!grad_bias_obj.is_none()) {
    ArrayArg a = writable_contiguous<float>(grad_bias_obj, "grad_bias");
    require_shape(a, {s.C_out}, "conv2d_backward");
    gb = arrays.write(a).ptr<float>();
  }
  const float* dy = grad.ptr<const float>();
  py::gil_scoped_release release;
  if (gi) cuda::conv2d_backward_input(gi, dy, weight.ptr<const float>(), s, as_stream(stream));
  if (gw) cuda::conv2d_backward_weight(gw, dy, input.ptr<const float>(), s, as_stream(stream));
  if (gb) cuda::conv2d_backward_bias(gb, dy, s, as_stream(stream));
}

Pool2dShape pool_shape(const std::vector<index_t>& in, Pair kernel, Pair stride, Pair padding,
                       Pair dilation, bool ceil_mode, const char* op) {
  Pool2dShape s{in[0], in[1], in[2], in[3], kernel[0], kernel[1], stride[0], stride[1],
                padding[0], padding[1], dilation[0], dilation[1], ceil_mode};
  check_pool2d(s, op);
  return s;
}

std::vector<index_t> pooled_shape(const Pool2dShape& s) { return {s.N, s.C, s.H_out(), s.W_out()}; }

void bind_conv_pool(py::module_& m) {
  m.def("conv2d_forward", &conv2d_forward, py::arg("input"), py::arg("weight"),
        py::arg("bias") = py::none(), py::kw_only(), py::arg("stride") = Pair{1, 1},
        py::arg("padding") = Pair{0, 0}, py::arg("dilation") = Pair{1, 1},
        py::arg("groups") = 1, py::arg("keep_weight_transform") = false, py::arg("out"),
        py::arg("stream") = 0,
        "2-D convolution (cross-correlation), NCHW float32, into out (N, C_out, H_out, W_out).\n"
        "Returns the Winograd weight transform: always None (no Winograd path here).");
  m.def("conv2d_backward", &conv2d_backward, py::arg("grad_output"), py::arg("input"),
        py::arg("weight"), py::kw_only(), py::arg("stride") = Pair{1, 1},
        py::arg("padding") = Pair{0, 0}, py::arg("dilation") = Pair{1, 1},
        py::arg("groups") = 1, py::arg("weight_transform") = py::none(),
        py::arg("grad_input") = py::none(), py::arg("grad_weight") = py::none(),
        py::arg("grad_bias") = py::none(), py::arg("stream") = 0,
        "Gradients of conv2d into grad_input, grad_weight and grad_bias, each skipped when None.\n"
        "grad_weight sums over blocks with atomics when the batch is large: not bit-reproducible.");

  m.def("max_pool2d_forward", [](const py::handle& input_obj, Pair kernel, Pair stride,
                                 Pair padding, Pair dilation, bool ceil_mode,
                                 const py::handle& out_obj, const py::handle& indices_obj,
                                 std::uintptr_t stream) {
        ArrayArg input = four_d(input_obj, "input", "(N, C, H, W)");
        const Pool2dShape s = pool_shape(input.shape, kernel, stride, padding, dilation,
                                         ceil_mode, "max_pool2d");
        ArrayArg out = four_d(out_obj, "out", "(N, C, H_out, W_out)", true);
        require_shape(out, pooled_shape(s), "max_pool2d");
        ArrayArg indices = writable_contiguous<std::int64_t>(indices_obj, "indices");
        require_same_shape(indices, out);
        CallArrays arrays("max_pool2d");
        arrays.read(input), arrays.write(out), arrays.write(indices);
        py::gil_scoped_release release;
        cuda::max_pool2d_forward(out.ptr<float>(), indices.ptr<std::int64_t>(),
                                 input.ptr<const float>(), s, as_stream(stream));
      }, py::arg("input"), py::kw_only(), py::arg("kernel_size"), py::arg("stride"),
      py::arg("padding") = Pair{0, 0}, py::arg("dilation") = Pair{1, 1},
      py::arg("ceil_mode") = false, py::arg("out"), py::arg("indices"), py::arg("stream") = 0,
      "Max pooling, NCHW float32, into out and indices (int64 argmax within each H*W plane).");
  m.def("max_pool2d_backward", [](const py::handle& grad_obj, const py::handle& indices_obj,
                                  Pair kernel, Pair stride, Pair padding, Pair dilation,
                                  bool ceil_mode, const py::handle& grad_input_obj,
                                  std::uintptr_t stream) {
        ArrayArg grad = four_d(grad_obj, "grad_output", "(N, C, H_out, W_out)");
        ArrayArg indices = contiguous<std::int64_t>(indices_obj, "indices");
        require_same_shape(indices, grad);
        ArrayArg grad_input = four_d(grad_input_obj, "grad_input", "(N, C, H, W)", true);
        const Pool2dShape s = pool_shape(grad_input.shape, kernel, stride, padding, dilation,
                                         ceil_mode, "max_pool2d_backward");
        require_shape(grad, pooled_shape(s), "max_pool2d_backward");
        CallArrays arrays("max_pool2d_backward");
        arrays.read(grad), arrays.read(indices), arrays.write(grad_input);
        py::gil_scoped_release release;
        cuda::max_pool2d_backward(grad_input.ptr<float>(), grad.ptr<const float>(),
                                  indices.ptr<const std::int64_t>(), s, as_stream(stream));
      }, py::arg("grad_output"), py::arg("indices"), py::kw_only(), py::arg("kernel_size"),
      py::arg("stride"), py::arg("padding") = Pair{0, 0}, py::arg("dilation") = Pair{1, 1},
      py::arg("ceil_mode") = false, py::arg("grad_input"), py::arg("stream") = 0,
      "Scatters grad_output to the saved argmax positions of grad_input (N, C, H, W).\n"
      "An index outside [0, H*W) makes the first element of its plane's gradient NaN.");
  m.def("avg_pool2d_forward", [](const py::handle& input_obj, Pair kernel, Pair stride,
                                 Pair padding, bool ceil_mode, bool count_include_pad,
                                 const py::handle& out_obj, std::uintptr_t stream) {
        ArrayArg input = four_d(input_obj, "input", "(N, C, H, W)");
        const Pool2dShape s = pool_shape(input.shape, kernel, stride, padding, Pair{1, 1},
                                         ceil_mode, "avg_pool2d");
        ArrayArg out = four_d(out_obj, "out", "(N, C, H_out, W_out)", true);
        require_shape(out, pooled_shape(s), "avg_pool2d");
        CallArrays arrays("avg_pool2d");
        arrays.read(input), arrays.write(out);
        py::gil_scoped_release release;
        cuda::avg_pool2d_forward(out.ptr<float>(), input.ptr<const float>(), s,
                                 count_include_pad, as_stream(stream));
      }, py::arg("input"), py::kw_only(), py::arg("kernel_size"), py::arg("stride"),
      py::arg("padding") = Pair{0, 0}, py::arg("ceil_mode") = false,
      py::arg("count_include_pad") = true, py::arg("out"), py::arg("stream") = 0,
      "Average pooling, NCHW float32, into out.");
  m.def("avg_pool2d_backward", [](const py::handle& grad_obj, Pair kernel, Pair stride,
                                  Pair padding, bool ceil_mode, bool count_include_pad,
                                  const py::handle& grad_input_obj, std::uintptr_t stream) {
        ArrayArg grad = four_d(grad_obj, "grad_output", "(N, C, H_out, W_out)");
        ArrayArg grad_input = four_d(grad_input_obj, "grad_input", "(N, C, H, W)", true);
        const Pool2dShape s = pool_shape(grad_input.shape, kernel, stride, padding, Pair{1, 1},
                                         ceil_mode, "avg_pool2d_backward");
        require_shape(grad, pooled_shape(s), "avg_pool2d_backward");
        CallArrays arrays("avg_pool2d_backward");
        arrays.read(grad), arrays.write(grad_input);
        py::gil_scoped_release release;
        cuda::avg_pool2d_backward(grad_input.ptr<float>(), grad.ptr<const float>(), s,
                                  count_include_pad, as_stream(stream));
      }, py::arg("grad_output"), py::kw_only(), py::arg("kernel_size"), py::arg("stride"),
      py::arg("padding") = Pair{0, 0}, py::arg("ceil_mode") = false,
      py::arg("count_include_pad") = true, py::arg("grad_input"), py::arg("stream") = 0,
      "Gradient of avg_pool2d into grad_input (N, C, H, W).");
}

// ---- rnn -------------------------------------------------------------------------
// rnn_forward and rnn_backward take pydl._C's arguments (plus `stream`) and,
// unlike the other bindings, allocate their outputs (CuPy arrays; NumPy under
// emulation) and return the same tuples, so pydl's recurrent layers call either
// module alike. The shape rules are csrc/shapes.cpp's (RnnSizes), as pydl._C's.
// The outputs come from CuPy's pool for its current stream, so `stream` should
// be that stream (0, the default, is CuPy's default); the kernels' workspaces
// are ordered on `stream` itself.

// A new float32 array on the module's device: uninitialized (cupy.empty), or
// under emulation filled with NaN, so an element the kernels never write shows up.
py::object new_float32(const std::vector<index_t>& shape) {
  const py::tuple dims(py::cast(shape));
#if defined(PYDL_CUDA_EMULATE)
  return py::module_::import("numpy").attr("full")(dims, NAN, "float32");
#else
  return py::module_::import("cupy").attr("empty")(dims, "float32");
#endif
}

// The float32 C-contiguous array `name` of the call, checked against its shape
// in `z`, or null for None when `optional`.
const float* rnn_arg(const RnnSizes& z, const py::handle& obj, const char* name,
                     bool optional = false) {
  if (obj.is_none()) {
    if (optional) return nullptr;
    throw py::type_error(z.missing(name));
  }
  const ArrayArg a = contiguous<float>(obj, name);
  z.check(name, a.shape);
  return a.ptr<const float>();
}

// A new output shaped as `name` in `z` when `wanted`, with `ptr` set to its
// data; otherwise None, with `ptr` null (the kernel then skips that output).
py::object rnn_output(const RnnSizes& z, const char* name, bool wanted, float*& ptr) {
  ptr = nullptr;
  if (!wanted) return py::none();
  py::object a = new_float32(z.shape(name).dims);
  ptr = array_arg(a, name).ptr<float>();
  return a;
}

RnnSizes rnn_sizes(const std::string& fn, const std::string& mode_name, const py::handle& x_obj,
                   const py::handle& w_hh_obj) {
  return RnnSizes(fn, mode_name, contiguous<float>(x_obj, "x").shape,
                  contiguous<float>(w_hh_obj, "w_hh").shape);
}

// Returns (y, c or None, saved or None).
py::tuple rnn_forward(const std::string& mode_name, const py::handle& x_obj,
                      const py::handle& h0_obj, const py::handle& c0_obj,
                      const py::handle& w_ih_obj, const py::handle& w_hh_obj,
                      const py::handle& b_ih_obj, const py::handle& b_hh_obj, bool reverse,
                      std::uintptr_t stream) {
  const RnnSizes z = rnn_sizes("rnn_forward", mode_name, x_obj, w_hh_obj);
  z.check_presence(!c0_obj.is_none(), !b_ih_obj.is_none(), !b_hh_obj.is_none());
  const float* x = rnn_arg(z, x_obj, "x");
  const float* h0 = rnn_arg(z, h0_obj, "h0");
  const float* c0 = z.lstm() ? rnn_arg(z, c0_obj, "c0") : nullptr;
  const float* w_ih = rnn_arg(z, w_ih_obj, "w_ih");
  const float* w_hh = rnn_arg(z, w_hh_obj, "w_hh");
  const float* b_ih = rnn_arg(z, b_ih_obj, "b_ih", true);
  const float* b_hh = rnn_arg(z, b_hh_obj, "b_hh", true);
  float *yp, *cp, *sp;
  py::object y = rnn_output(z, "y", true, yp);
  py::object c = rnn_output(z, "c", z.lstm(), cp);
  py::object saved = rnn_output(z, "saved", z.saved_width() > 0, sp);
  {
    py::gil_scoped_release release;
    cuda::rnn_layer_forward(z.mode, yp, cp, sp, x, h0, c0, w_ih, w_hh, b_ih, b_hh, z.T, z.B, z.I,
                            z.H, reverse, as_stream(stream));
  }
  return py::make_tuple(y, c, saved);
}

// Returns (dx or None, dh0, dc0 or None, dw_ih, dw_hh, db_ih or None, db_hh or None).
py::tuple rnn_backward(const std::string& mode_name, const py::handle& dy_obj,
                       const py::handle& dc_last_obj, const py::handle& x_obj,
                       const py::handle& h0_obj, const py::handle& c0_obj,
                       const py::handle& w_ih_obj, const py::handle& w_hh_obj,
                       const py::handle& y_obj, const py::handle& c_obj,
                       const py::handle& saved_obj, bool reverse, bool has_bias, bool need_dx,
                       std::uintptr_t stream) {
  const RnnSizes z = rnn_sizes("rnn_backward", mode_name, x_obj, w_hh_obj);
  const float* x = rnn_arg(z, x_obj, "x");
  const float* h0 = rnn_arg(z, h0_obj, "h0");
  const float* w_ih = rnn_arg(z, w_ih_obj, "w_ih");
  const float* w_hh = rnn_arg(z, w_hh_obj, "w_hh");
  const float* dy = rnn_arg(z, dy_obj, "dy");
  const float* y = rnn_arg(z, y_obj, "y");
  const float *c0 = nullptr, *c = nullptr, *dc_last = nullptr, *saved = nullptr;
  if (z.lstm()) {
    c0 = rnn_arg(z, c0_obj, "c0");
    c = rnn_arg(z, c_obj, "c");
    dc_last = rnn_arg(z, dc_last_obj, "dc_last", true);
  }
  if (z.saved_width() > 0) saved = rnn_arg(z, saved_obj, "saved");
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
    cuda::rnn_layer_backward(z.mode, dxp, dh0p, dc0p, dw_ihp, dw_hhp, db_ihp, db_hhp, dy, dc_last,
                             x, h0, c0, w_ih, w_hh, y, c, saved, z.T, z.B, z.I, z.H, reverse,
                             as_stream(stream));
  }
  return py::make_tuple(dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh);
}

void bind_rnn(py::module_& m) {
  m.def("rnn_forward", &rnn_forward, py::arg("mode"), py::arg("x"), py::arg("h0"),
        py::arg("c0"), py::arg("w_ih"), py::arg("w_hh"), py::arg("b_ih"), py::arg("b_hh"),
        py::kw_only(), py::arg("reverse") = false, py::arg("stream") = 0,
        "One recurrent layer, one direction, over a whole float32 sequence x (T, B, I), as\n"
        "pydl._C's: returns new arrays (y, c for LSTM else None, saved for LSTM/GRU else None).");
  m.def("rnn_backward", &rnn_backward, py::arg("mode"), py::arg("dy"), py::arg("dc_last"),
        py::arg("x"), py::arg("h0"), py::arg("c0"), py::arg("w_ih"), py::arg("w_hh"),
        py::arg("y"), py::arg("c"), py::arg("saved"), py::kw_only(), py::arg("reverse") = false,
        py::arg("has_bias") = true, py::arg("need_dx") = true, py::arg("stream") = 0,
        "Backward through time of rnn_forward, as pydl._C's: returns new arrays (dx or None,\n"
        "dh0, dc0 or None, dw_ih, dw_hh, db_ih or None, db_hh or None).");
}

// ---- layers: optimizers, dropout, embedding, normalization --------------------

// The arrays of one optimizer call. Each array argument is one array, or a
// list/tuple with one array per parameter (a multi-tensor update: one launch
// for up to 32 parameters); a state argument may be None, or hold None
// entries, where the options leave it unused. All are float32, C-contiguous
// and shaped like their param; no written array may overlap another array.
class UpdateArgs {
 public:
  UpdateArgs(const char* kernel, const py::handle& param, const py::handle& grad)
      : kernel_(kernel), listed_(is_sequence(param)) {
    const std::vector<py::handle> params = items(param, "param");
    count_ = params.size();
    const std::vector<py::handle> grads = items(grad, "grad");
    for (std::size_t i = 0; i < params.size(); ++i) {
      ArrayArg p = writable_contiguous<float>(params[i], name("param", i).c_str());
      ArrayArg g = contiguous<float>(grads[i], name("grad", i).c_str());
      require_same_shape(g, p);
      tensors_.push_back({p.ptr<float>(), g.ptr<const float>(), {nullptr, nullptr, nullptr}, p.size()});
      shapes_.push_back(p.shape);
      claim(p, Role::param);
      claim(g, Role::grad);
    }
  }

  // The state arguments of optimizer Op, in the order of Op::states (and of
  // UpdateTensor::state); those the options use are required.
  template <class Op, class Options>
  void states(const Options& options, const std::array<py::handle, Op::arrays - 2>& objs) {
    const auto used = Op::used(options);
    for (int k = 0; k < Op::arrays - 2; ++k) state(k, objs[k], Op::states[k], used[k]);
  }

  // State array k (in the order of UpdateTensor::state) from argument `obj`.
  void state(int k, const py::handle& obj, const char* arg, bool needed) {
    if (obj.is_none()) {
      if (needed && !tensors_.empty()) missing(arg);
      return;
    }
    const std::vector<py::handle> arrays = items(obj, arg);
    for (std::size_t i = 0; i < arrays.size(); ++i) {
      if (arrays[i].is_none()) {
        if (needed) missing(name(arg, i).c_str());
        continue;
      }
      ArrayArg a = writable_contiguous<float>(arrays[i], name(arg, i).c_str());
      if (a.shape != shapes_[i])
        throw py::value_error(std::string(kernel_) + ": " + a.name + " has shape " +
                              a.shape_str() + " but " + name("param", i) + " has shape " +
                              shape_str(shapes_[i]) + "; they must match");
      tensors_[i].state[k] = a.ptr<float>();
      claim(a, Role::state);
    }
  }

  // Checks that no written array overlaps another array, then returns the
  // parameters. Sorted by start address (ties in argument order), an array
  // overlaps an earlier one exactly when it starts before the furthest end
  // seen so far.
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
  [[noreturn]] void missing(const char* arg) const {
    throw py::value_error(std::string(kernel_) + ": " + arg +
                          " is required with these options, got None");
  }
  void claim(const ArrayArg& a, Role role) {
    const auto begin = reinterpret_cast<std::uintptr_t>(a.data);
    const index_t bytes = a.size() * static_cast<index_t>(sizeof(float));
    if (bytes > 0)
      spans_.push_back({begin, begin + static_cast<std::uintptr_t>(bytes), role, spans_.size(), a.name});
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
  std::vector<std::vector<index_t>> shapes_;
  std::vector<Span> spans_;
};

void bind_optim(py::module_& m) {
  m.def("sgd_step", [](const py::handle& param, const py::handle& grad,
                       const py::handle& momentum_buffer, double lr, double momentum,
                       double dampening, double weight_decay, bool nesterov, bool maximize,
                       bool first_step, std::uintptr_t stream) {
    const SgdOptions o{lr, momentum, dampening, weight_decay, nesterov, maximize, first_step};
    UpdateArgs args("sgd_step", param, grad);
    args.states<optim_math::Sgd>(o, {momentum_buffer});
    const auto& tensors = args.checked_tensors();
    py::gil_scoped_release release;
    cuda::sgd_step(tensors.data(), static_cast<int>(tensors.size()), o, as_stream(stream));
  }, py::arg("param"), py::arg("grad"), py::arg("momentum_buffer") = py::none(), py::kw_only(),
     py::arg("lr"), py::arg("momentum") = 0.0, py::arg("dampening") = 0.0,
     py::arg("weight_decay") = 0.0, py::arg("nesterov") = false, py::arg("maximize") = false,
     py::arg("first_step") = false, py::arg("stream") = 0,
     "In-place SGD update of float32 params (one array, or lists of arrays), as pydl._C's.");
  m.def("rmsprop_step", [](const py::handle& param, const py::handle& grad,
                           const py::handle& square_avg, const py::handle& grad_avg,
                           const py::handle& momentum_buffer, double lr, double alpha, double eps,
                           double weight_decay, double momentum, bool centered, bool maximize,
                           std::uintptr_t stream) {
    const RmspropOptions o{lr, alpha, eps, weight_decay, momentum, centered, maximize};
    UpdateArgs args("rmsprop_step", param, grad);
    args.states<optim_math::Rmsprop>(o, {square_avg, grad_avg, momentum_buffer});
    const auto& tensors = args.checked_tensors();
    py::gil_scoped_release release;
    cuda::rmsprop_step(tensors.data(), static_cast<int>(tensors.size()), o, as_stream(stream));
  }, py::arg("param"), py::arg("grad"), py::arg("square_avg"), py::arg("grad_avg") = py::none(),
     py::arg("momentum_buffer") = py::none(), py::kw_only(), py::arg("lr"),
     py::arg("alpha") = 0.99, py::arg("eps") = 1e-8, py::arg("weight_decay") = 0.0,
     py::arg("momentum") = 0.0, py::arg("centered") = false, py::arg("maximize") = false,
     py::arg("stream") = 0,
     "In-place RMSprop update of float32 params (one array, or lists of arrays), as pydl._C's.");
  m.def("adagrad_step", [](const py::handle& param, const py::handle& grad,
                           const py::handle& state_sum, double lr, double lr_decay,
                           double weight_decay, double eps, std::int64_t step, bool maximize,
                           std::uintptr_t stream) {
    optim_math::require_step(step, "adagrad_step");
    const AdagradOptions o{lr, lr_decay, weight_decay, eps, step, maximize};
    UpdateArgs args("adagrad_step", param, grad);
    args.states<optim_math::Adagrad>(o, {state_sum});
    const auto& tensors = args.checked_tensors();
    py::gil_scoped_release release;
    cuda::adagrad_step(tensors.data(), static_cast<int>(tensors.size()), o, as_stream(stream));
  }, py::arg("param"), py::arg("grad"), py::arg("state_sum"), py::kw_only(), py::arg("lr"),
     py::arg("lr_decay") = 0.0, py::arg("weight_decay") = 0.0, py::arg("eps") = 1e-10,
     py::arg("step"), py::arg("maximize") = false, py::arg("stream") = 0,
     "In-place Adagrad update of float32 params (one array, or lists of arrays), as pydl._C's.");
  m.def("adam_step", [](const py::handle& param, const py::handle& grad,
                        const py::handle& exp_avg, const py::handle& exp_avg_sq,
                        const py::handle& max_exp_avg_sq, double lr, double beta1, double beta2,
                        double eps, double weight_decay, std::int64_t step, bool amsgrad,
                        bool decoupled_weight_decay, bool maximize, std::uintptr_t stream) {
    optim_math::require_step(step, "adam_step");
    const AdamOptions o{lr, beta1, beta2, eps, weight_decay, step, amsgrad,
                        decoupled_weight_decay, maximize};
    UpdateArgs args("adam_step", param, grad);
    args.states<optim_math::Adam>(o, {exp_avg, exp_avg_sq, max_exp_avg_sq});
    const auto& tensors = args.checked_tensors();
    py::gil_scoped_release release;
    cuda::adam_step(tensors.data(), static_cast<int>(tensors.size()), o, as_stream(stream));
  }, py::arg("param"), py::arg("grad"), py::arg("exp_avg"), py::arg("exp_avg_sq"),
     py::arg("max_exp_avg_sq") = py::none(), py::kw_only(), py::arg("lr"),
     py::arg("beta1") = 0.9, py::arg("beta2") = 0.999, py::arg("eps") = 1e-8,
     py::arg("weight_decay") = 0.0, py::arg("step"), py::arg("amsgrad") = false,
     py::arg("decoupled_weight_decay") = false, py::arg("maximize") = false,
     py::arg("stream") = 0,
     "In-place Adam (AdamW with decoupled_weight_decay) update of float32 params (one array,\n"
     "or lists of arrays), as pydl._C's.");
}

// A float32 (n,) vector argument that may be None (returns nullptr).
const float* optional_vector(CallArrays& arrays, const py::handle& obj, const char* name,
                             index_t n, const char* what) {
  if (obj.is_none()) return nullptr;
  ArrayArg a = contiguous<float>(obj, name);
  require_shape(a, {n}, what);
  return arrays.read(a).ptr<const float>();
}

// A float32 output of the given shape, or nullptr for None when `optional`.
float* output(CallArrays& arrays, const py::handle& obj, const char* name,
              const std::vector<index_t>& shape, const char* what, bool optional = false) {
  if (optional && obj.is_none()) return nullptr;
  ArrayArg a = writable_contiguous<float>(obj, name);
  require_shape(a, shape, what);
  return arrays.write(a).ptr<float>();
}

// Batch norm input is (N, C) or (N, C, d...): viewed as (N, C, S).
std::array<index_t, 3> ncs(const ArrayArg& x) {
  if (x.ndim() < 2)
    throw py::value_error("batch_norm: input must be (N, C) or (N, C, H, W), got " + x.shape_str());
  index_t S = 1;
  for (index_t i = 2; i < x.ndim(); ++i) S *= x.shape[i];
  return {x.shape[0], x.shape[1], S};
}

void bind_layers(py::module_& m) {
  bind_optim(m);
  m.def("dropout_mask", [](double p, std::uint64_t seed, std::uint64_t offset,
                           const py::handle& mask_obj, std::uintptr_t stream) {
    check_probability(p);
    ArrayArg mask = writable_contiguous<std::uint8_t>(mask_obj, "mask");
    py::gil_scoped_release release;
    cuda::dropout_mask(mask.ptr<std::uint8_t>(), mask.size(), static_cast<float>(p), seed, offset,
                       as_stream(stream));
  }, py::arg("p"), py::arg("seed"), py::arg("offset"), py::kw_only(), py::arg("mask"),
     py::arg("stream") = 0,
     "Writes the uint8 keep mask (1 keep, 0 drop) of the dropout call named (seed, offset);\n"
     "the same mask as pydl._C's.");
  m.def("dropout_forward", [](const py::handle& x_obj, double p, std::uint64_t seed,
                              std::uint64_t offset, const py::handle& y_obj,
                              const py::handle& mask_obj, std::uintptr_t stream) {
    check_probability(p);
    ArrayArg x = contiguous<float>(x_obj, "x"), y = writable_contiguous<float>(y_obj, "y");
    ArrayArg mask = writable_contiguous<std::uint8_t>(mask_obj, "mask");
    require_same_shape(y, x);
    require_same_shape(mask, x);
    CallArrays arrays("dropout_forward");
    arrays.read(x), arrays.write(y), arrays.write(mask);
    py::gil_scoped_release release;
    cuda::dropout_forward(y.ptr<float>(), mask.ptr<std::uint8_t>(), x.ptr<const float>(), x.size(),
                          static_cast<float>(p), seed, offset, as_stream(stream));
  }, py::arg("x"), py::arg("p"), py::arg("seed"), py::arg("offset"), py::kw_only(), py::arg("y"),
     py::arg("mask"), py::arg("stream") = 0,
     "y = x * mask / (1 - p), writing the mask of the call named (seed, offset) too.");
  m.def("dropout_backward", [](const py::handle& dy_obj, const py::handle& mask_obj, double p,
                               const py::handle& out_obj, std::uintptr_t stream) {
    check_probability(p);
    ArrayArg dy = contiguous<float>(dy_obj, "dy"), mask = contiguous<std::uint8_t>(mask_obj, "mask");
    ArrayArg out = writable_contiguous<float>(out_obj, "out");
    require_same_shape(mask, dy);
    require_same_shape(out, dy);
    CallArrays arrays("dropout_backward");
    arrays.read(dy), arrays.read(mask), arrays.write(out);
    py::gil_scoped_release release;
    cuda::dropout_backward(out.ptr<float>(), dy.ptr<const float>(), mask.ptr<const std::uint8_t>(),
                           dy.size(), static_cast<float>(p), as_stream(stream));
  }, py::arg("dy"), py::arg("mask"), py::arg("p"), py::kw_only(), py::arg("out"),
     py::arg("stream") = 0, "out = dy * mask / (1 - p).");

  m.def("embedding_forward", [](const py::handle& weight_obj, const py::handle& indices_obj,
                                const py::handle& out_obj, std::uintptr_t stream) {
    ArrayArg weight = contiguous<float>(weight_obj, "weight");
    ArrayArg indices = contiguous<std::int64_t>(indices_obj, "indices");
    if (weight.ndim() != 2)
      throw py::value_error("embedding: weight must be 2-D (num_embeddings, embedding_dim), got " +
                            weight.shape_str());
    const index_t V = weight.shape[0], D = weight.shape[1];
    std::vector<index_t> shape = indices.shape;
    shape.push_back(D);
    CallArrays arrays("embedding_forward");
    arrays.read(weight), arrays.read(indices);
    float* out = output(arrays, out_obj, "out", shape, "embedding_forward");
    py::gil_scoped_release release;
    cuda::embedding_forward(out, weight.ptr<const float>(), indices.ptr<const std::int64_t>(),
                            indices.size(), V, D, as_stream(stream));
  }, py::arg("weight"), py::arg("indices"), py::kw_only(), py::arg("out"), py::arg("stream") = 0,
     "out = weight[indices], shaped indices.shape + (D,). Indices are not checked on the host:\n"
     "an index outside [0, num_embeddings) gives a NaN row.");
  m.def("embedding_backward", [](const py::handle& dy_obj, const py::handle& indices_obj,
                                 index_t num_embeddings, index_t padding_idx,
                                 const py::handle& out_obj, std::uintptr_t stream) {
    ArrayArg dy = contiguous<float>(dy_obj, "dy");
    ArrayArg indices = contiguous<std::int64_t>(indices_obj, "indices");
    if (num_embeddings < 0) throw py::value_error("num_embeddings must be >= 0");
    if (padding_idx < -1 || padding_idx >= num_embeddings)
      throw py::value_error("embedding_backward: padding_idx must be -1 (none) or in [0, " +
                            std::to_string(num_embeddings) + "), got " +
                            std::to_string(padding_idx));
    const index_t n = indices.size(), D = dy.ndim() ? dy.shape.back() : 0;
    if (dy.ndim() != indices.ndim() + 1 || dy.size() != n * D)
      throw py::value_error("embedding_backward: dy has shape " + dy.shape_str() +
                            " but indices has shape " + indices.shape_str() +
                            "; dy must be indices.shape + (embedding_dim,)");
    CallArrays arrays("embedding_backward");
    arrays.read(dy), arrays.read(indices);
    float* out = output(arrays, out_obj, "out", {num_embeddings, D}, "embedding_backward");
    py::gil_scoped_release release;
    cuda::embedding_backward(out, dy.ptr<const float>(), indices.ptr<const std::int64_t>(), n,
                             num_embeddings, D, padding_idx, as_stream(stream));
  }, py::arg("dy"), py::arg("indices"), py::arg("num_embeddings"), py::arg("padding_idx") = -1,
     py::kw_only(), py::arg("out"), py::arg("stream") = 0,
     "out (num_embeddings, D) = dy rows summed by index (atomicAdd); row padding_idx (if >= 0)\n"
     "is zero, and indices outside [0, num_embeddings) are skipped.");

  m.def("batch_norm_forward", [](const py::handle& x_obj, const py::handle& weight_obj,
                                 const py::handle& bias_obj, const py::handle& rm_obj,
                                 const py::handle& rv_obj, bool training, double momentum,
                                 double eps, const py::handle& y_obj, const py::handle& mean_obj,
                                 const py::handle& invstd_obj, std::uintptr_t stream) {
    ArrayArg x = contiguous<float>(x_obj, "input");
    const auto [N, C, S] = ncs(x);
    CallArrays arrays("batch_norm");
    arrays.read(x);
    if (training && N * S <= 1)
      throw py::value_error("batch_norm: expected more than 1 value per channel when training, "
                            "got input of shape " + x.shape_str());
    if (!(eps > 0) || std::isinf(eps))
      throw py::value_error("batch_norm: eps must be finite and > 0, got " + std::to_string(eps));
    if (!std::isfinite(momentum))
      throw py::value_error("batch_norm: momentum must be finite, got " + std::to_string(momentum));
    const float* w = optional_vector(arrays, weight_obj, "weight", C, "batch_norm");
    const float* b = optional_vector(arrays, bias_obj, "bias", C, "batch_norm");
    if (rm_obj.is_none() != rv_obj.is_none())
      throw py::value_error("batch_norm: pass both running_mean and running_var, or neither");
    if (rm_obj.is_none() && !training)
      throw py::value_error("batch_norm: evaluation needs running_mean and running_var");
    float* rm = rm_obj.is_none() ? nullptr : output(arrays, rm_obj, "running_mean", {C}, "batch_norm");
    float* rv = rv_obj.is_none() ? nullptr : output(arrays, rv_obj, "running_var", {C}, "batch_norm");
    float* y = output(arrays, y_obj, "y", x.shape, "batch_norm");
    float* mean = output(arrays, mean_obj, "mean", {C}, "batch_norm");
    float* invstd = output(arrays, invstd_obj, "invstd", {C}, "batch_norm");
    py::gil_scoped_release release;
    if (training) {
      cuda::batch_norm_forward_train(y, mean, invstd, rm, rv, x.ptr<const float>(), w, b, N, C, S,
                                     static_cast<float>(eps), static_cast<float>(momentum),
                                     as_stream(stream));
    } else {
      cuda::batch_norm_eval_statistics(mean, invstd, rm, rv, C, static_cast<float>(eps),
                                       as_stream(stream));
      cuda::batch_norm_forward_eval(y, x.ptr<const float>(), mean, invstd, w, b, N, C, S,
                                    as_stream(stream));
    }
  }, py::arg("input"), py::arg("weight"), py::arg("bias"), py::arg("running_mean"),
     py::arg("running_var"), py::arg("training"), py::arg("momentum"), py::arg("eps"),
     py::kw_only(), py::arg("y"), py::arg("mean"), py::arg("invstd"), py::arg("stream") = 0,
     "Writes y, mean and invstd (C,). Training normalizes with batch statistics and updates\n"
     "the running statistics in place (unbiased var); evaluation uses the running statistics.");
  m.def("batch_norm_backward", [](const py::handle& dy_obj, const py::handle& x_obj,
                                  const py::handle& mean_obj, const py::handle& invstd_obj,
                                  const py::handle& weight_obj, bool training,
                                  const py::handle& dx_obj, const py::handle& dweight_obj,
                                  const py::handle& dbias_obj, std::uintptr_t stream) {
    ArrayArg dy = contiguous<float>(dy_obj, "dy"), x = contiguous<float>(x_obj, "input");
    require_same_shape(dy, x);
    const auto [N, C, S] = ncs(x);
    CallArrays arrays("batch_norm_backward");
    arrays.read(dy), arrays.read(x);
    const float* w = optional_vector(arrays, weight_obj, "weight", C, "batch_norm_backward");
    const float* mean = optional_vector(arrays, mean_obj, "mean", C, "batch_norm_backward");
    const float* invstd = optional_vector(arrays, invstd_obj, "invstd", C, "batch_norm_backward");
    if (!mean || !invstd) throw py::value_error("batch_norm_backward: mean and invstd are needed");
    float* dx = output(arrays, dx_obj, "dx", x.shape, "batch_norm_backward", true);
    float* dw = output(arrays, dweight_obj, "dweight", {C}, "batch_norm_backward", true);
    float* db = output(arrays, dbias_obj, "dbias", {C}, "batch_norm_backward", true);
    py::gil_scoped_release release;
    cuda::batch_norm_backward(dx, dw, db, dy.ptr<const float>(), x.ptr<const float>(), mean,
                              invstd, w, N, C, S, training, as_stream(stream));
  }, py::arg("dy"), py::arg("input"), py::arg("mean"), py::arg("invstd"), py::arg("weight"),
     py::arg("training"), py::kw_only(), py::arg("dx") = py::none(),
     py::arg("dweight") = py::none(), py::arg("dbias") = py::none(), py::arg("stream") = 0,
     "Writes each of dx, dweight, dbias that is given (None: not computed).");

  m.def("layer_norm_forward", [](const py::handle& x_obj, const py::handle& weight_obj,
                                 const py::handle& bias_obj, double eps, const py::handle& y_obj,
                                 const py::handle& mean_obj, const py::handle& rstd_obj,
                                 std::uintptr_t stream) {
    ArrayArg x = contiguous<float>(x_obj, "input");
    if (x.ndim() != 2)
      throw py::value_error("layer_norm_forward: input must be 2-D (rows, normalized size), got " +
                            x.shape_str());
    if (!(eps > 0) || std::isinf(eps))
      throw py::value_error("layer_norm: eps must be finite and > 0, got " + std::to_string(eps));
    const index_t M = x.shape[0], D = x.shape[1];
    CallArrays arrays("layer_norm");
    arrays.read(x);
    const float* w = optional_vector(arrays, weight_obj, "weight", D, "layer_norm_forward");
    const float* b = optional_vector(arrays, bias_obj, "bias", D, "layer_norm_forward");
    float* y = output(arrays, y_obj, "y", {M, D}, "layer_norm_forward");
    float* mean = output(arrays, mean_obj, "mean", {M}, "layer_norm_forward");
    float* rstd = output(arrays, rstd_obj, "rstd", {M}, "layer_norm_forward");
    py::gil_scoped_release release;
    cuda::layer_norm_forward(y, mean, rstd, x.ptr<const float>(), w, b, M, D,
                             static_cast<float>(eps), as_stream(stream));
  }, py::arg("input"), py::arg("weight"), py::arg("bias"), py::arg("eps"), py::kw_only(),
     py::arg("y"), py::arg("mean"), py::arg("rstd"), py::arg("stream") = 0,
     "Writes y, mean and rstd (M,) of each row of a (M, D) input normalized over its D values.");
  m.def("layer_norm_backward", [](const py::handle& dy_obj, const py::handle& x_obj,
                                  const py::handle& mean_obj, const py::handle& rstd_obj,
                                  const py::handle& weight_obj, const py::handle& dx_obj,
                                  const py::handle& dweight_obj, const py::handle& dbias_obj,
                                  std::uintptr_t stream) {
    ArrayArg dy = contiguous<float>(dy_obj, "dy"), x = contiguous<float>(x_obj, "input");
    require_same_shape(dy, x);
    if (x.ndim() != 2)
      throw py::value_error("layer_norm_backward: input must be 2-D, got " + x.shape_str());
    const index_t M = x.shape[0], D = x.shape[1];
    CallArrays arrays("layer_norm_backward");
    arrays.read(dy), arrays.read(x);
    const float* w = optional_vector(arrays, weight_obj, "weight", D, "layer_norm_backward");
    const float* mean = optional_vector(arrays, mean_obj, "mean", M, "layer_norm_backward");
    const float* rstd = optional_vector(arrays, rstd_obj, "rstd", M, "layer_norm_backward");
    if (!mean || !rstd) throw py::value_error("layer_norm_backward: mean and rstd are needed");
    float* dx = output(arrays, dx_obj, "dx", {M, D}, "layer_norm_backward", true);
    float* dw = output(arrays, dweight_obj, "dweight", {D}, "layer_norm_backward", true);
    float* db = output(arrays, dbias_obj, "dbias", {D}, "layer_norm_backward", true);
    py::gil_scoped_release release;
    cuda::layer_norm_backward(dx, dw, db, dy.ptr<const float>(), x.ptr<const float>(), mean, rstd,
                              w, M, D, as_stream(stream));
  }, py::arg("dy"), py::arg("input"), py::arg("mean"), py::arg("rstd"), py::arg("weight"),
     py::kw_only(), py::arg("dx") = py::none(), py::arg("dweight") = py::none(),
     py::arg("dbias") = py::none(), py::arg("stream") = 0,
     "Writes each of dx, dweight, dbias that is given (None: not computed).");
}

}  // namespace

PYBIND11_MODULE(PYDL_CUDA_MODULE, m) {
#if defined(PYDL_CUDA_EMULATE)
  m.doc() = "pydl CUDA kernels run on the host by the CUDA emulator (tests only)";
  cuda::emu_selftest::bind(m);
#else
  m.doc() = "pydl CUDA kernels";
  bind_runtime(m);
#endif
  bind_gemm(m);
  bind_elementwise(m);
  bind_loss(m);
  bind_conv_pool(m);
  bind_layers(m);
  bind_rnn(m);
}
