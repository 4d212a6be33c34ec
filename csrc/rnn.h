// Recurrent layers (Elman RNN, LSTM, GRU), float32: one layer, one direction,
// the whole sequence per call. Stacking layers and the two directions of a
// bidirectional layer is the caller's job. Gate order and weight layout follow
// PyTorch: LSTM (i, f, g, o), GRU (r, z, n), weights (G*H, I) and (G*H, H).
#pragma once
#include "common.h"

namespace pydl {

enum class RnnMode { rnn_tanh, rnn_relu, lstm, gru };

// The layout rules below are inline: the CUDA kernels (cuda/rnn.cu) share them.

// Gates per hidden unit: G = 1 (RNN), 4 (LSTM), 3 (GRU).
inline index_t rnn_gate_count(RnnMode mode) {
  return mode == RnnMode::lstm ? 4 : mode == RnnMode::gru ? 3 : 1;
}
// Floats per (step, batch row) that forward saves for backward in `saved`:
// LSTM 4H (i, f, g, o after activation), GRU 4H (r, z, n, W_hn h + b_hn), RNN 0.
inline index_t rnn_saved_width(RnnMode mode, index_t H) {
  return mode == RnnMode::lstm || mode == RnnMode::gru ? 4 * H : 0;
}
// Width of the kernels' gate rows (pre-activations in forward, in `saved` or,
// for the RNN, in y itself; their gradients in backward).
inline index_t rnn_gate_width(RnnMode mode, index_t H) {
  return mode == RnnMode::lstm || mode == RnnMode::gru ? 4 * H : H;
}
// Processing step s runs time step t; its previous state is at time t_prev
// (only read for s > 0).
struct RnnStepTimes {
  index_t t, t_prev;
};
inline RnnStepTimes rnn_step_times(index_t s, index_t T, bool reverse) {
  return reverse ? RnnStepTimes{T - 1 - s, T - s} : RnnStepTimes{s, s - 1};
}

// The argument rules of rnn_layer_forward / rnn_layer_backward on either device
// (sizes >= 1, the pointers each mode needs); defined in shapes.cpp, which both
// kernel modules compile.
void check_rnn_layer_forward(RnnMode mode, const float* y, const float* c, const float* saved,
                             const float* x, const float* h0, const float* c0,
                             const float* w_ih, const float* w_hh, const float* b_ih,
                             const float* b_hh, index_t T, index_t B, index_t I, index_t H);
void check_rnn_layer_backward(RnnMode mode, const float* dh0, const float* dc0,
                              const float* dw_ih, const float* dw_hh, const float* db_ih,
                              const float* db_hh, const float* dy, const float* x,
                              const float* h0, const float* c0, const float* w_ih,
                              const float* w_hh, const float* y, const float* c,
                              const float* saved, index_t T, index_t B, index_t I, index_t H);

// x is (T, B, I) in time order, h0 (B, H); c0 (B, H) for LSTM only.
// w_ih is (G*H, I), w_hh (G*H, H); b_ih, b_hh are (G*H,) or both null (no bias).
// Outputs: y (T, B, H) the hidden state at every time step (time order even
// when `reverse`, which runs t = T-1 .. 0); c (T, B, H) the LSTM cell states
// (null for RNN/GRU); saved (T, B, rnn_saved_width) or null when it is 0.
void rnn_layer_forward(RnnMode mode, float* y, float* c, float* saved, const float* x,
                       const float* h0, const float* c0, const float* w_ih, const float* w_hh,
                       const float* b_ih, const float* b_hh, index_t T, index_t B, index_t I,
                       index_t H, bool reverse);

// Backward through time. dy (T, B, H) is the gradient of y (the gradient of
// the final h folded in at its step); dc_last (B, H) that of the final cell
// state (LSTM; null means zero). x, h0, c0, the weights, y, c and saved are
// the forward's (the biases are not needed: saved holds what depends on them). Outputs (overwritten, not accumulated): dx (T, B, I) or null when
// not wanted, dh0 (B, H), dc0 (B, H) for LSTM, dw_ih, dw_hh, and db_ih, db_hh
// (null when there is no bias).
void rnn_layer_backward(RnnMode mode, float* dx, float* dh0, float* dc0, float* dw_ih,
                        float* dw_hh, float* db_ih, float* db_hh, const float* dy,
                        const float* dc_last, const float* x, const float* h0, const float* c0,
                        const float* w_ih, const float* w_hh, const float* y, const float* c,
                        const float* saved,
                        index_t T, index_t B, index_t I, index_t H, bool reverse);

}  // namespace pydl
