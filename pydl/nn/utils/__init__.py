"""pydl.nn.utils, as torch.nn.utils: gradient clipping and pruning (pydl.nn.utils.prune)."""
from pydl.nn.utils import prune
from pydl.nn.utils.clip_grad import clip_grad_norm_, clip_grad_value_

__all__ = ["clip_grad_norm_", "clip_grad_value_", "prune"]
