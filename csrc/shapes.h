// Argument rules shared by the bindings of pydl._C (csrc/bindings.cpp) and of
// the CUDA modules (cuda/bindings.cpp). The bindings differ in how they read an
// array (NumPy buffer or __cuda_array_interface__); what its shape must be and
// the message when it is not are decided here, once. Errors are
// std::invalid_argument (a Python ValueError). shapes.cpp is linked into both.
#pragma once
#include <string>
#include <vector>

#include "common.h"
#include "loss.h"
#include "rnn.h"

namespace pydl {

// ---- sizes -------------------------------------------------------------------
// Size arithmetic that cannot wrap: every size a binding allocates or a shape
// rule computes from caller-given numbers goes through these, so a huge
// argument is a ValueError naming `what`, never a short buffer.

// a * b and a + b for non-negative sizes, or a ValueError when the exact
// result passes 2**63 - 1.
index_t size_mul(index_t a, index_t b, const char* what);
index_t size_add(index_t a, index_t b, const char* what);
// The element count of an array of shape `dims`, checked so that it times
// elem_bytes (the buffer's size in bytes) fits in an index_t; a negative
// dimension is a ValueError too.
index_t size_product(const std::vector<index_t>& dims, index_t elem_bytes, const char* what);

// ---- output sizes ------------------------------------------------------------
// The output-size rules of convolution and pooling along one axis: the kernels'
// shape structs (Conv2dShape, Pool2dShape) and, through bind_shapes.cpp, every
// Python caller use these. A kernel, stride or dilation below 1, a negative size
// or padding is a ValueError naming the argument; sizes that would overflow too.

// floor((size + 2 pad - dilation (kernel - 1) - 1) / stride) + 1, the windows
// of a dilated kernel in the padded input; 0 when the kernel is the larger.
// The formula alone, for settings already checked (Conv2dShape::H_out):
inline index_t conv_windows(index_t size, index_t kernel, index_t stride, index_t pad,
                            index_t dilation) {
  return (size + 2 * pad - dilation * (kernel - 1) - 1) / stride + 1;
}
index_t conv_output_size(index_t size, index_t kernel, index_t stride, index_t pad,
                         index_t dilation);
// The adjoint's: (size - 1) stride - 2 pad + dilation (kernel - 1) + output_padding + 1,
// the input size a convolution with these settings maps to `size` (output_padding
// picks among the sizes that all map there); 0 when the padding eats it all.
index_t conv_transpose_output_size(index_t size, index_t kernel, index_t stride, index_t pad,
                                   index_t dilation, index_t output_padding);
// Pooling's, as PyTorch: conv_output_size's with the division rounded up in
// ceil_mode, where a last window starting at or past size + pad is dropped.
index_t pool_output_size(index_t size, index_t kernel, index_t stride, index_t pad,
                         index_t dilation, bool ceil_mode);
// Keras's (TensorFlow's) "same" padding: ceil(size / stride) outputs, and the
// (before, after) padding that gives them, the odd row or column after.
struct SamePadding {
  index_t before, after;
};
SamePadding same_padding(index_t size, index_t kernel, index_t stride, index_t dilation);

// ---- aliasing ----------------------------------------------------------------
// The bytes [begin, end) an array of this shape and these byte strides can
// touch from `data`; empty for an array of no elements.
struct ByteRange {
  const char* begin;
  const char* end;
  bool overlaps(const ByteRange& other) const {
    return begin < end && other.begin < other.end && begin < other.end && other.begin < end;
  }
};
ByteRange byte_range(const void* data, const std::vector<index_t>& shape,
                     const std::vector<index_t>& strides, index_t item_bytes);

// ---- softmax_cross_entropy, dropout ------------------------------------------

// "mean", "sum" or "none".
Reduction parse_reduction(const std::string& name);
// A dropout probability: p in [0, 1].
void check_probability(double p);

// ---- rnn_forward / rnn_backward ----------------------------------------------

// "rnn_tanh", "rnn_relu", "lstm" or "gru".
RnnMode parse_rnn_mode(const std::string& mode);

// The sizes of one recurrent layer call, read from x (T, B, I) and w_hh
// (G*H, H), and the shape every other array of the call must have.
struct RnnSizes {
  RnnMode mode;
  std::string fn;  // "rnn_forward (lstm)", for messages
  index_t G, T, B, I, H;

  // Checks the mode, x and w_hh (fn names the binding in messages).
  RnnSizes(const std::string& fn, const std::string& mode_name,
           const std::vector<index_t>& x_shape, const std::vector<index_t>& w_hh_shape);

  bool lstm() const { return mode == RnnMode::lstm; }
  index_t saved_width() const { return rnn_saved_width(mode, H); }

  // The shape of the argument or output `name` (x, h0, c0, w_ih, w_hh, b_ih,
  // b_hh, dy, dc_last, y, c, saved, and the gradients dx, dh0, dc0, dw_ih,
  // dw_hh, db_ih, db_hh), and how it reads in T, B, I, H, G: "(T, B, I)".
  struct Shape {
    std::vector<index_t> dims;
    std::string meaning;
  };
  Shape shape(const std::string& name) const;

  // Throws unless an array `name` of shape `dims` has shape(name).dims.
  void check(const std::string& name, const std::vector<index_t>& dims) const;
  // The message for a required array `name` given as None (a TypeError).
  std::string missing(const std::string& name) const;
  // c0 is given exactly for LSTM, and both biases or neither.
  void check_presence(bool has_c0, bool has_b_ih, bool has_b_hh) const;
};

}  // namespace pydl
