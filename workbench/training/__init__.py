"""Training with masks: fine-tuning (with distillation), schedules (gradual/AGP, iterative, lottery tickets),
ADMM, learned masks (movement pruning), pruning at initialisation (iterative SynFlow) and the pre/during/post-training comparison.

Every procedure trains the bench's live model in place with its masks enforced after every optimizer step,
is deterministic with a seed, can be stopped (Ctrl-C or a progress callback raising KeyboardInterrupt: the state
reached is recorded), leaves no hooks, and records **one** history step (its ``kind`` names the procedure) that
undo reverses bit for bit, unpruned weights included. Results are `TrainingResult`s with curves per epoch.

>>> import workbench as wb
>>> sorted(wb.training.__all__)[:4]
['TimingResult', 'TrainingError', 'TrainingResult', 'admm']
"""

from . import compare as compare  # the old module name (a shim): wb.training.compare.METHODS
from ._loop import TrainingError, TrainingResult
from .admm import admm
from .at_init import synflow_prune
from .finetune import finetune
from .learned import learned_masks
from .prune_timing import TimingResult, compare_timing, plot_timing
from .schedules import agp_sparsity, gradual, iterative, lottery, round_sparsity

__all__ = [
    "TimingResult",
    "TrainingError",
    "TrainingResult",
    "admm",
    "agp_sparsity",
    "compare_timing",
    "finetune",
    "gradual",
    "iterative",
    "learned_masks",
    "lottery",
    "plot_timing",
    "round_sparsity",
    "synflow_prune",
]
