"""Product engines: Jacobian and Hessian products from autograd, with the graph built once.

Two ways to the same numbers (benchmark them per device, see ``analyses/benchmark.py``):

``"double-backprop"``
    One forward (and, for Hessians, one backward with ``create_graph=True``) at construction;
    every product then runs backward passes only, through the kept graph. Jacobian-vector
    products use the double-vjp identity ``J v = d/du <J^T u, v>`` (``J^T u`` is linear in u).
``"forward-over-reverse"``
    :mod:`torch.func`: ``jvp`` of the function (Gauss-Newton) or of its gradient (Hessian); the
    forward pass is re-run in forward mode for each product, nothing but the inputs is kept.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch.func import grad as func_grad
from torch.func import jvp as func_jvp
from torch.func import vjp as func_vjp

from hessiankit._precision import full_precision
from hessiankit.errors import OperatorError

__all__ = ["Backend", "GaussNewtonEngine", "HessianEngine", "check_backend", "flatten", "unflatten"]

Backend = Literal["double-backprop", "forward-over-reverse"]


def check_backend(backend: str) -> Backend:
    if backend not in ("double-backprop", "forward-over-reverse"):
        raise OperatorError(
            f"unknown product backend {backend!r}; use 'double-backprop' or 'forward-over-reverse'"
        )
    return backend  # type: ignore[return-value]


def unflatten(V: torch.Tensor, like: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Split a ``dim x k`` matrix into ``k x shape`` tensors, one per tensor in ``like``."""
    out = []
    offset = 0
    k = V.shape[1]
    for t in like:
        n = t.numel()
        out.append(V[offset : offset + n].T.reshape(k, *t.shape))
        offset += n
    return out


def flatten(parts: Sequence[torch.Tensor], k: int) -> torch.Tensor:
    """Inverse of :func:`unflatten`: ``k x shape`` tensors to a ``dim x k`` matrix."""
    return torch.cat([p.reshape(k, -1) for p in parts], dim=1).T


def _grad(
    outputs: Sequence[torch.Tensor],
    inputs: Sequence[torch.Tensor],
    grad_outputs: Sequence[torch.Tensor],
    batched: bool,
) -> list[torch.Tensor]:
    got = torch.autograd.grad(
        list(outputs),
        list(inputs),
        list(grad_outputs),
        retain_graph=True,
        allow_unused=True,
        is_grads_batched=batched,
    )
    k = grad_outputs[0].shape[0] if batched else None
    out = []
    for g, x in zip(got, inputs):
        if g is None:
            shape = (k, *x.shape) if batched else x.shape
            g = torch.zeros(shape, dtype=x.dtype, device=x.device)
        out.append(g)
    return out


class _Batched:
    """Runs products batched over columns when that is right and pays, column by column otherwise.

    Batched products (``is_grads_batched``) go through vmap batching rules. Those rules are not
    all right: in torch 2.13, vmapped second derivatives of batch norm in training mode are
    wrong through :mod:`torch.func`. So the first batched call is checked once against an
    unbatched product of its first column; on disagreement batching is switched off for good.

    Nor do they always pay: on a CPU a vmapped double backward of a convolution costs 1.5-2x
    more per column than a loop of plain ones (``analyses/benchmark.py`` measures it), so
    ``prefer="auto"`` loops on the CPU. On other devices the unbatched column of the first call
    is timed, the second batched call is timed too, and the cheaper way per column is kept from
    then on. ``prefer`` may also be set to ``"batched"`` or ``"loop"``.
    """

    def __init__(self, prefer: str = "auto") -> None:
        self._batch_ok: bool | None = None
        self._single_seconds: float | None = None
        self._batched_calls = 0
        self.prefer = prefer

    def run(
        self,
        fn: Callable[[list[torch.Tensor], bool], list[torch.Tensor]],
        parts: list[torch.Tensor],
    ) -> list[torch.Tensor]:
        k = parts[0].shape[0]
        if self.prefer == "auto" and parts[0].device.type == "cpu":
            self.prefer = "loop"
        if k > 1 and self._batch_ok is not False and self.prefer != "loop":
            start = time.perf_counter()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    out = fn(parts, True)
            except RuntimeError:
                self._batch_ok = False
            else:
                seconds = time.perf_counter() - start
                self._batched_calls += 1
                if self._batch_ok is None:
                    t0 = time.perf_counter()
                    single = fn([p[0] for p in parts], False)
                    self._single_seconds = time.perf_counter() - t0
                    self._batch_ok = _agrees([o[0] for o in out], single)
                elif (
                    self._batched_calls == 2
                    and self.prefer == "auto"
                    and self._single_seconds is not None
                    and seconds > k * self._single_seconds
                ):
                    self.prefer = "loop"
                if self._batch_ok:
                    return out
        cols = [fn([p[j] for p in parts], False) for j in range(k)]
        return [torch.stack([c[i] for c in cols]) for i in range(len(cols[0]))]


def _agrees(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    eps = torch.finfo(a[0].dtype).eps
    scale = max(max(float(t.abs().max()) for t in b if t.numel()), 1e-300)
    return all(float((x - y).abs().max()) <= 1e3 * eps * scale for x, y in zip(a, b) if x.numel())


class _Engine:
    """What both engines share: the point, the constant, the backend and the column loop.

    A subclass builds what its products need at the point (``_build``) and gives the product
    with one set of tangents two ways: ``_product`` (through the kept graph, batched or not)
    and ``_product_func`` (:mod:`torch.func`, one column).

    Args:
        fn: the function of the primals (see the subclass).
        primals: the point; detached copies are differentiated.
        scale: constant factor applied to every product.
        backend: see module docstring.
        what: words for error messages ("block 3 w.r.t. its weights").
    """

    def __init__(
        self,
        fn: Callable[..., torch.Tensor],
        primals: Sequence[torch.Tensor],
        *,
        scale: float,
        backend: Backend,
        what: str,
    ) -> None:
        self.fn = fn
        self.scale = scale
        self.backend = backend
        self.primals = [p.detach().requires_grad_(True) for p in primals]
        self._batched = _Batched()
        self._build(what)

    def _build(self, what: str) -> None:
        raise NotImplementedError

    def _product(self, tangents: list[torch.Tensor], batched: bool) -> list[torch.Tensor]:
        raise NotImplementedError

    def _product_func(self, tangents: list[torch.Tensor]) -> list[torch.Tensor]:
        raise NotImplementedError

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        """The product with the ``dim x k`` matrix ``V`` (full float32, see ``_precision``)."""
        with full_precision():
            return self._matmat(V)

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        parts = unflatten(V, self.primals)
        k = V.shape[1]
        if self.backend == "double-backprop":
            out = self._batched.run(self._product, parts)
        else:
            cols = [self._product_func([p[j] for p in parts]) for j in range(k)]
            out = [torch.stack([c[i] for c in cols]) for i in range(len(parts))]
        return flatten(out, k) * self.scale


class GaussNewtonEngine(_Engine):
    """Products with ``c J^T J`` for ``J = d f / d primals`` at the given point.

    ``GaussNewtonEngine(f, primals, scale=c, backend=..., what=...)``, ``f`` the function
    (primals -> one tensor); the other arguments as in :class:`_Engine`.
    """

    def _build(self, what: str) -> None:
        f = self.fn
        with torch.enable_grad(), full_precision():
            if self.backend == "double-backprop":
                self.out = f(*self.primals)
                _require_grad(self.out, what)
                self._u = torch.zeros_like(self.out, requires_grad=True)
                jt_u = torch.autograd.grad(
                    self.out, self.primals, self._u, create_graph=True, allow_unused=True
                )
                # Only the parts that depend on u carry a J v contribution.
                self._jt_u = [
                    (i, g) for i, g in enumerate(jt_u) if g is not None and g.requires_grad
                ]
            else:
                got = func_vjp(f, *[p.detach() for p in self.primals])
                self.out, self._vjp = got[0], got[1]
                _require_grad_func(self.out, what)

    def _jvp(self, tangents: list[torch.Tensor], batched: bool) -> torch.Tensor:
        outs = [g for _, g in self._jt_u]
        tans = [tangents[i] for i, _ in self._jt_u]
        if not outs:
            shape = (tangents[0].shape[0], *self.out.shape) if batched else self.out.shape
            return torch.zeros(shape, dtype=self.out.dtype, device=self.out.device)
        return _grad(outs, [self._u], tans, batched)[0]

    def _product(self, tangents: list[torch.Tensor], batched: bool) -> list[torch.Tensor]:
        Jv = self._jvp(tangents, batched)
        return _grad([self.out], self.primals, [Jv], batched)

    def _product_func(self, tangents: list[torch.Tensor]) -> list[torch.Tensor]:
        primals = tuple(p.detach() for p in self.primals)
        Jv = func_jvp(self.fn, primals, tuple(tangents))[1]
        return list(self._vjp(Jv))


class HessianEngine(_Engine):
    """Products with ``scale * d^2 phi / d primals^2`` for a scalar function phi.

    ``HessianEngine(phi, primals, scale=..., backend=..., what=...)``, ``phi`` a scalar
    function of the primals; the other arguments as in :class:`_Engine`.
    """

    def _build(self, what: str) -> None:
        if self.backend == "double-backprop":
            with torch.enable_grad(), full_precision():
                value = self.fn(*self.primals)
                _require_grad(value, what)
                grads = torch.autograd.grad(
                    value, self.primals, create_graph=True, allow_unused=True
                )
            self._grads = [(i, g) for i, g in enumerate(grads) if g is not None and g.requires_grad]

    def gradient(self) -> torch.Tensor:
        """``scale * d phi / d primals`` at the point, flattened (one ``dim`` vector)."""
        with full_precision():
            return self._gradient()

    def _gradient(self) -> torch.Tensor:
        if self.backend == "double-backprop":
            got = dict(self._grads)
            parts = [
                got[i].detach() if i in got else torch.zeros_like(p)
                for i, p in enumerate(self.primals)
            ]
        else:
            n = len(self.primals)
            g = func_grad(self.fn, argnums=tuple(range(n)))
            parts = list(g(*[p.detach() for p in self.primals]))
        return torch.cat([t.reshape(-1) for t in parts]) * self.scale

    def _product(self, tangents: list[torch.Tensor], batched: bool) -> list[torch.Tensor]:
        if not self._grads:
            return [torch.zeros_like(t) for t in tangents]
        outs = [g for _, g in self._grads]
        tans = [tangents[i] for i, _ in self._grads]
        return _grad(outs, self.primals, tans, batched)

    def _product_func(self, tangents: list[torch.Tensor]) -> list[torch.Tensor]:
        n = len(self.primals)
        g = func_grad(self.fn, argnums=tuple(range(n)))
        primals = tuple(p.detach() for p in self.primals)
        hv = func_jvp(g, primals, tuple(tangents))[1]
        return list(hv)


def _require_grad(t: torch.Tensor, what: str) -> None:
    if not t.requires_grad:
        raise OperatorError(
            f"{what} is not differentiable (its output does not depend on the variables); "
            "pick another block or wrt"
        )


def _require_grad_func(t: torch.Tensor, what: str) -> None:
    if not t.is_floating_point():
        raise OperatorError(f"{what} does not return a floating-point tensor; not differentiable")
