"""Adam and AdamW."""
from pydl.optim.optimizer import Optimizer, check_lr, check_nonnegative


class Adam(Optimizer):
    """torch.optim.Adam: m = beta1 m + (1 - beta1) g; v = beta2 v + (1 - beta2) g^2;
    p -= lr / (1 - beta1^t) m / (sqrt(v / (1 - beta2^t)) + eps), with v replaced by its
    running maximum under amsgrad. weight_decay adds weight_decay p to g.

    >>> model = nn.Linear(3, 1)
    >>> opt = pydl.optim.Adam(model.parameters(), lr=0.05)
    >>> x = pydl.randn(64, 3)
    >>> y = x @ pydl.tensor([[1.0], [-2.0], [0.5]])
    >>> for _ in range(300):
    ...     opt.zero_grad()
    ...     loss = F.mse_loss(model(x), y)
    ...     loss.backward()
    ...     opt.step()
    >>> loss.item() < 1e-4
    True
    """

    _decoupled_weight_decay = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False, *, maximize=False, foreach=None):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, amsgrad=amsgrad,
                                      maximize=maximize, foreach=foreach))

    def _validate(self, group):
        check_lr(group)
        check_nonnegative(group, "eps", "weight_decay")
        betas = group["betas"]
        if len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        for i, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"Invalid beta parameter at index {i}: {beta} (must be in [0, 1))")

    _kernel_name = "adam_step"

    def _options(self, group):
        beta1, beta2 = group["betas"]
        return dict(lr=group["lr"], beta1=beta1, beta2=beta2, eps=group["eps"],
                    weight_decay=group["weight_decay"], amsgrad=group["amsgrad"],
                    decoupled_weight_decay=self._decoupled_weight_decay,
                    maximize=group["maximize"])

    def _prepare(self, param, state, group):
        state["step"] = state.get("step", 0) + 1
        exp_avg = self._state_array(state, "exp_avg", param)
        exp_avg_sq = self._state_array(state, "exp_avg_sq", param)
        max_exp_avg_sq = (self._state_array(state, "max_exp_avg_sq", param)
                          if group["amsgrad"] else None)
        return (exp_avg, exp_avg_sq, max_exp_avg_sq), dict(step=state["step"])


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled weight decay, p *= 1 - lr weight_decay
    before the update instead of adding weight_decay p to the gradient.

    >>> w = nn.Parameter(pydl.tensor([0.0]))
    >>> opt = pydl.optim.AdamW([w], lr=0.1, weight_decay=0.01)
    >>> for _ in range(200):
    ...     opt.zero_grad()
    ...     ((w - 3) ** 2).sum().backward()
    ...     opt.step()
    >>> round(w.item(), 1)
    3.0
    """

    _decoupled_weight_decay = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False, foreach=None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         foreach=foreach)
