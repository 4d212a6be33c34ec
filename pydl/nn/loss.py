"""Loss modules with torch's arguments; each calls its pydl.nn.functional form."""
from pydl.nn import functional as F
from pydl.nn.module import Module


class _Loss(Module):
    def __init__(self, reduction="mean"):
        super().__init__()
        F._check_reduction(reduction)
        self.reduction = reduction


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy of logits against class indices or probabilities, with
    optional class weights and label smoothing: the fused kernel (F.cross_entropy).

    >>> loss_fn = nn.CrossEntropyLoss(weight=pydl.tensor([1.0, 2.0]), label_smoothing=0.1)
    >>> print(f"{loss_fn(pydl.tensor([[1.0, -1.0], [0.5, 0.5]]), pydl.tensor([0, 1])).item():.4f}")
    0.5616
    """

    def __init__(self, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        super().__init__(reduction)
        self.weight = weight
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def forward(self, input, target):
        return F.cross_entropy(input, target, self.weight, self.ignore_index, self.reduction,
                               self.label_smoothing)


class NLLLoss(_Loss):
    """The negative log-likelihood of log-probabilities at the target classes.

    >>> log_probs = pydl.tensor([[0.0, -2.0], [-3.0, -0.5]])
    >>> nn.NLLLoss()(log_probs, pydl.tensor([0, 1])).item()
    0.25
    """
    def __init__(self, weight=None, ignore_index=-100, reduction="mean"):
        super().__init__(reduction)
        self.weight = weight
        self.ignore_index = ignore_index

    def forward(self, input, target):
        return F.nll_loss(input, target, self.weight, self.ignore_index, self.reduction)


class MSELoss(_Loss):
    """The mean (or summed) squared error.

    >>> nn.MSELoss()(pydl.tensor([1.0, 2.0]), pydl.tensor([1.0, 4.0])).item()
    2.0
    """
    def forward(self, input, target):
        return F.mse_loss(input, target, self.reduction)


class L1Loss(_Loss):
    """The mean (or summed) absolute error.

    >>> nn.L1Loss()(pydl.tensor([1.0, 2.0]), pydl.tensor([1.0, 4.0])).item()
    1.0
    """
    def forward(self, input, target):
        return F.l1_loss(input, target, self.reduction)


class BCELoss(_Loss):
    """Binary cross-entropy of probabilities against float targets.

    >>> loss = nn.BCELoss()(pydl.tensor([0.9, 0.2]), pydl.tensor([1.0, 0.0]))
    >>> print(f"{loss.item():.4f}")
    0.1643
    """
    def __init__(self, weight=None, reduction="mean"):
        super().__init__(reduction)
        self.weight = weight

    def forward(self, input, target):
        return F.binary_cross_entropy(input, target, self.weight, self.reduction)


class BCEWithLogitsLoss(_Loss):
    """Binary cross-entropy of sigmoid(logits), computed stably from the logits.

    >>> loss = nn.BCEWithLogitsLoss()(pydl.tensor([2.0, -1.0]), pydl.tensor([1.0, 0.0]))
    >>> print(f"{loss.item():.4f}")
    0.2201
    """
    def __init__(self, weight=None, reduction="mean", pos_weight=None):
        super().__init__(reduction)
        self.weight = weight
        self.pos_weight = pos_weight

    def forward(self, input, target):
        return F.binary_cross_entropy_with_logits(input, target, self.weight, self.reduction,
                                                  self.pos_weight)


class HuberLoss(_Loss):
    """0.5 d^2 inside |d| < delta, linear outside (F.huber_loss).

    >>> nn.HuberLoss()(pydl.tensor([0.5, 3.0]), pydl.tensor([0.0, 0.0])).item()
    1.3125
    """

    def __init__(self, reduction="mean", delta=1.0):
        super().__init__(reduction)
        self.delta = delta

    def forward(self, input, target):
        return F.huber_loss(input, target, self.reduction, self.delta)


class SmoothL1Loss(_Loss):
    """0.5 d^2 / beta inside |d| < beta, |d| - 0.5 beta outside (F.smooth_l1_loss).

    >>> nn.SmoothL1Loss(beta=0.5)(pydl.tensor([0.25, 3.0]), pydl.tensor([0.0, 0.0])).item()
    1.40625
    """

    def __init__(self, reduction="mean", beta=1.0):
        super().__init__(reduction)
        self.beta = beta

    def forward(self, input, target):
        return F.smooth_l1_loss(input, target, self.reduction, self.beta)
