"""Coupled channel groups for structured pruning, from Torch-Pruning's DependencyGraph.

Removing output channel *c* of a conv also removes *c* from the BatchNorm after it, from every layer
that reads it (their input channel *c*), and from every other layer whose output is added to or
concatenated with it. Torch-Pruning traces the model once and gives us those groups; this module turns
each group into plain slices of parameters (`Member`) so that a structured mask zeroes exactly what a
physical shrink would remove, and marks groups we cannot mask exactly as unsupported, with the reason.

Why not trust every group Torch-Pruning returns: it treats any operator it does not know as
element-wise, so channels that flow through an LSTM (traced as ``MkldnnRnnLayerBackward0`` in eval
mode) or attention are silently coupled to the wrong layers (tests/masks/test_units.py shows it: the
Linear before an LSTM gets coupled to the Linear after it, and pruning that group breaks the model). We
accept only groups whose operators are on a list of channel-wise ops and whose modules we know how to mask.

Two units get rules of our own instead (no tracing needed):

- **heads** of an `nn.MultiheadAttention` (``unit="head"``): head h is rows ``h*d:(h+1)*d`` of each of the
  q, k and v projections (and their biases, and ``bias_k``/``bias_v``) and columns ``h*d:(h+1)*d`` of
  ``out_proj``. Zeroing them makes the head's queries and keys zero (uniform attention) over zero values, so
  the head adds exactly nothing: the masked module computes what the module without that head computes.
- **hidden units** of an `nn.LSTM` / `nn.GRU` / `nn.RNN` layer (``unit="lstm-unit"``, one group per layer
  and direction): unit j is row ``g*H + j`` of every gate of ``weight_ih``/``weight_hh`` and the biases, plus
  the columns that read it (``weight_hh`` of its layer, ``weight_ih`` of the next layer). Its gate inputs are
  then zero, so with the default zero initial state its cell and hidden state stay exactly zero. Layers
  after the recurrent module that read the unit are not traced: their weights are left as they are
  (they read zeros).
"""

from __future__ import annotations

from .analyze import TRACE_SECONDS, analyze_groups, trace_call
from .timebound import TraceTimeout, time_bound
from .trace import CHANNELWISE_OPS, custom_pruners, traced_output
from .types import ChannelGroup, GroupAnalysis, Member

__all__ = [
    "CHANNELWISE_OPS",
    "TRACE_SECONDS",
    "ChannelGroup",
    "GroupAnalysis",
    "Member",
    "TraceTimeout",
    "analyze_groups",
    "custom_pruners",
    "time_bound",
    "trace_call",
    "traced_output",
]
