// pydl._C's output-size rules of convolution and pooling (shapes.h), the ones
// the kernels check against: every Python caller (ops, the CUDA dispatch, Keras
// layers) asks these instead of restating the arithmetic. A bad argument is a
// ValueError naming it.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <vector>

#include "shapes.h"

namespace py = pybind11;
using namespace pydl;

void bind_shapes(py::module_& m) {
  m.def("conv_output_size", &conv_output_size, py::arg("size"), py::arg("kernel"),
        py::arg("stride") = 1, py::arg("padding") = 0, py::arg("dilation") = 1,
        "Output positions of a convolution along one axis: "
        "floor((size + 2 padding - dilation (kernel - 1) - 1) / stride) + 1, or 0 when the "
        "dilated kernel is larger than the padded input.");
  m.def("conv_transpose_output_size", &conv_transpose_output_size, py::arg("size"),
        py::arg("kernel"), py::arg("stride") = 1, py::arg("padding") = 0,
        py::arg("dilation") = 1, py::arg("output_padding") = 0,
        "Output positions of a transposed convolution along one axis: "
        "(size - 1) stride - 2 padding + dilation (kernel - 1) + output_padding + 1, or 0.");
  m.def("pool_output_size", &pool_output_size, py::arg("size"), py::arg("kernel"),
        py::arg("stride"), py::arg("padding") = 0, py::arg("dilation") = 1,
        py::arg("ceil_mode") = false,
        "Output positions of a pooling window along one axis (PyTorch's rule): "
        "conv_output_size's, rounded up in ceil_mode, where a last window starting at or "
        "past size + padding is dropped.");
  m.def(
      "pool2d_output_hw",
      [](const std::vector<index_t>& shape, const std::vector<index_t>& kernel,
         const std::vector<index_t>& stride, const std::vector<index_t>& padding,
         const std::vector<index_t>& dilation, bool ceil_mode) {
        require(shape.size() == 4, "pool2d_output_hw: shape must be (N, C, H, W)");
        for (auto [name, pair] : {std::pair{"kernel", &kernel}, std::pair{"stride", &stride},
                                  std::pair{"padding", &padding},
                                  std::pair{"dilation", &dilation}})
          require(pair->size() == 2,
                  std::string("pool2d_output_hw: ") + name + " must be a pair");
        return py::make_tuple(
            pool_output_size(shape[2], kernel[0], stride[0], padding[0], dilation[0], ceil_mode),
            pool_output_size(shape[3], kernel[1], stride[1], padding[1], dilation[1], ceil_mode));
      },
      py::arg("shape"), py::arg("kernel"), py::arg("stride"), py::arg("padding"),
      py::arg("dilation"), py::arg("ceil_mode"),
      "(H_out, W_out) of 2-D pooling over an (N, C, H, W) input: pool_output_size per axis.");
  m.def(
      "same_padding",
      [](index_t size, index_t kernel, index_t stride, index_t dilation) {
        const SamePadding p = same_padding(size, kernel, stride, dilation);
        return py::make_tuple(p.before, p.after);
      },
      py::arg("size"), py::arg("kernel"), py::arg("stride") = 1, py::arg("dilation") = 1,
      "(before, after) padding of Keras's 'same' (ceil(size / stride) outputs; an odd total "
      "puts the extra row or column after, as TensorFlow does).");
}
