// Recurrent layers (Elman RNN, LSTM, GRU) on the GPU, float32: one layer, one
// direction, the whole sequence per call, with the semantics, gate order and
// saved layout of csrc/rnn.h. Pointers are device pointers; each call only
// enqueues work on `stream` (its workspace is allocated and freed there too).
#pragma once
#include "../csrc/rnn.h"  // RnnMode, rnn_gate_count, rnn_saved_width
#include "common.cuh"

namespace pydl::cuda {

// x (T, B, I), h0 (B, H), c0 (B, H) for LSTM; w_ih (G*H, I), w_hh (G*H, H);
// b_ih, b_hh (G*H,) or both null. Writes y (T, B, H), c (T, B, H) for LSTM
// and saved (T, B, rnn_saved_width) for LSTM/GRU, as csrc/rnn.h describes.
void rnn_layer_forward(RnnMode mode, float* y, float* c, float* saved, const float* x,
                       const float* h0, const float* c0, const float* w_ih, const float* w_hh,
                       const float* b_ih, const float* b_hh, index_t T, index_t B, index_t I,
                       index_t H, bool reverse, cudaStream_t stream);

// Backward through time of rnn_layer_forward, as csrc/rnn.h's: dy (T, B, H),
// dc_last (B, H) or null (zero). Writes dx (T, B, I) unless null, dh0, dc0 (LSTM),
// dw_ih, dw_hh, and db_ih, db_hh unless null.
void rnn_layer_backward(RnnMode mode, float* dx, float* dh0, float* dc0, float* dw_ih,
                        float* dw_hh, float* db_ih, float* db_hh, const float* dy,
                        const float* dc_last, const float* x, const float* h0, const float* c0,
                        const float* w_ih, const float* w_hh, const float* y, const float* c,
                        const float* saved, index_t T, index_t B, index_t I, index_t H,
                        bool reverse, cudaStream_t stream);

}  // namespace pydl::cuda
