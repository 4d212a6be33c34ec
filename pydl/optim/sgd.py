"""Stochastic gradient descent with momentum, Nesterov momentum and weight decay."""
from pydl.optim.optimizer import Optimizer, check_lr, check_nonnegative


class SGD(Optimizer):
    """torch.optim.SGD: g = grad + weight_decay p; with momentum,
    buf = momentum buf + (1 - dampening) g (buf = g on the first step) and
    g = g + momentum buf (nesterov) or buf; then p -= lr g.

    >>> w = nn.Parameter(pydl.tensor([0.0]))
    >>> opt = pydl.optim.SGD([w], lr=0.1, momentum=0.9, nesterov=True)
    >>> for _ in range(100):
    ...     opt.zero_grad()
    ...     ((w - 3) ** 2).sum().backward()
    ...     opt.step()
    >>> round(w.item(), 3)
    3.0
    """

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False, *, maximize=False, foreach=None):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov,
                                      maximize=maximize, foreach=foreach))

    def _validate(self, group):
        check_lr(group)
        check_nonnegative(group, "momentum", "weight_decay")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    _kernel_name = "sgd_step"

    def _options(self, group):
        return dict(lr=group["lr"], momentum=group["momentum"], dampening=group["dampening"],
                    weight_decay=group["weight_decay"], nesterov=group["nesterov"],
                    maximize=group["maximize"])

    def _prepare(self, param, state, group):
        if group["momentum"] == 0:
            return (None,), {}
        first_step = "momentum_buffer" not in state
        return (self._state_array(state, "momentum_buffer", param),), dict(first_step=first_step)
