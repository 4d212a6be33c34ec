"""RMSprop: steps scaled by a running root mean square of the gradient."""
from pydl.optim.optimizer import Optimizer, check_lr, check_nonnegative


class RMSprop(Optimizer):
    """torch.optim.RMSprop: s = alpha s + (1 - alpha) g^2; avg = sqrt(s) + eps, or
    sqrt(s - a^2) + eps with a the running mean of g (centered); p -= lr g / avg, or
    through a momentum buffer buf = momentum buf + g / avg, p -= lr buf.

    >>> w = nn.Parameter(pydl.tensor([0.0]))
    >>> opt = pydl.optim.RMSprop([w], lr=0.01)
    >>> for _ in range(400):
    ...     opt.zero_grad()
    ...     ((w - 3) ** 2).sum().backward()
    ...     opt.step()
    >>> round(w.item(), 1)
    3.0
    """

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False, *, maximize=False, foreach=None):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered, maximize=maximize,
                                      foreach=foreach))

    def _validate(self, group):
        check_lr(group)
        check_nonnegative(group, "alpha", "eps", "weight_decay", "momentum")

    _kernel_name = "rmsprop_step"

    def _options(self, group):
        return dict(lr=group["lr"], alpha=group["alpha"], eps=group["eps"],
                    weight_decay=group["weight_decay"], momentum=group["momentum"],
                    centered=group["centered"], maximize=group["maximize"])

    def _prepare(self, param, state, group):
        state["step"] = state.get("step", 0) + 1
        square_avg = self._state_array(state, "square_avg", param)
        momentum_buffer = (self._state_array(state, "momentum_buffer", param)
                           if group["momentum"] > 0 else None)
        grad_avg = self._state_array(state, "grad_avg", param) if group["centered"] else None
        return (square_avg, grad_avg, momentum_buffer), {}
