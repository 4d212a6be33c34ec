"""The differentiable ops, one module per kernel family, as autograd Functions.

They see only arrays; pydl.tensor turns tensors and Python scalars into the
arrays they take.
"""
