"""Hand-written BPTT for each cell family.

Each kernel is a `torch.autograd.Function` over the whole sequence: the forward loop stores what
the backward needs; the backward walks time in reverse, carrying dh (and dc) through W, and then
computes the weight gradient dW = Σ_t dgates_tᵀ h_{t-1} as ONE matmul over all steps instead of
T small ones. Everything that depends only on forward values (the gate derivatives) is computed
for all steps at once before the reverse loop, so each step does the few ops that must be
sequential. The loops exist twice, with one contract and the same math: in PyTorch ops (any
device) and, for LSTM and GRU (and the RNN's forward) on CPU, in C++ (`native/`, compiled on
first use) where each step is one matmul and one vectorised pass over the gates. A fused CUDA kernel would be a third.
"""

from rnnlab.nn.kernels.gru import gru_sequence
from rnnlab.nn.kernels.lstm import lstm_sequence
from rnnlab.nn.kernels.rnn import rnn_sequence

__all__ = ["gru_sequence", "lstm_sequence", "rnn_sequence"]
