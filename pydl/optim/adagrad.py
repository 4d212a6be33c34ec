"""Adagrad: per-element step sizes from the sum of squared gradients."""
from pydl.optim.optimizer import Optimizer, check_lr, check_nonnegative


class Adagrad(Optimizer):
    """torch.optim.Adagrad: sum += g^2 (sum starts at initial_accumulator_value);
    p -= clr g / (sqrt(sum) + eps), clr = lr / (1 + (step - 1) lr_decay).

    >>> w = nn.Parameter(pydl.tensor([0.0]))
    >>> opt = pydl.optim.Adagrad([w], lr=1.0)
    >>> for _ in range(200):
    ...     opt.zero_grad()
    ...     ((w - 3) ** 2).sum().backward()
    ...     opt.step()
    >>> round(w.item(), 3)
    3.0
    """

    def __init__(self, params, lr=1e-2, lr_decay=0.0, weight_decay=0.0,
                 initial_accumulator_value=0.0, eps=1e-10, *, maximize=False, foreach=None):
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value,
                                      eps=eps, maximize=maximize, foreach=foreach))

    def _validate(self, group):
        check_lr(group)
        check_nonnegative(group, "lr_decay", "weight_decay", "initial_accumulator_value", "eps")

    _kernel_name = "adagrad_step"

    def _options(self, group):
        return dict(lr=group["lr"], lr_decay=group["lr_decay"],
                    weight_decay=group["weight_decay"], eps=group["eps"],
                    maximize=group["maximize"])

    def _prepare(self, param, state, group):
        state["step"] = state.get("step", 0) + 1
        state_sum = self._state_array(state, "sum", param, group["initial_accumulator_value"])
        return (state_sum,), dict(step=state["step"])
