"""Pruning language models the way the field does it: layer-wise calibration, magnitude, Wanda, SparseGPT and OWL.

`Workbench.prune_llm` is the entry point on a bench (one undoable history step); `prune_` prunes a plain model in
place. Methods are registered like criteria (`register_method`, `available_methods`); calibration runs one block at a
time (`layerwise`), holding one block's activations.

>>> import workbench as wb
>>> {"magnitude", "wanda", "sparsegpt"} <= set(wb.llm.available_methods())
True
"""

from .blocks import BlockCall, block_layers, find_blocks, first_inputs
from .calibrate import Block, LayerStats, calibration_inputs, layerwise
from .methods import Method, Pattern, available_methods, get_method, parse_pattern, register_method
from .owl import outlier_ratio, owl_ratios
from .prune import PruneResult, prune_
from .sparsegpt import sparsegpt_

__all__ = [
    "Block",
    "BlockCall",
    "LayerStats",
    "Method",
    "Pattern",
    "PruneResult",
    "available_methods",
    "block_layers",
    "calibration_inputs",
    "find_blocks",
    "first_inputs",
    "get_method",
    "layerwise",
    "outlier_ratio",
    "owl_ratios",
    "parse_pattern",
    "prune_",
    "register_method",
    "sparsegpt_",
]
