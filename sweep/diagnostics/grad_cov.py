"""Gradient covariance K of Jastrzebski et al. 2020 (The Break-Even Point on Optimization
Trajectories of Deep Neural Networks, ICLR 2020; ../shared/papers/jastrzebski-break-even.txt):
its top eigenvalue lambda_1^K and its trace Tr(K).

Definition (Sec. 3 "Definitions", also footnote 1):
    "the covariance of gradients K = (1/N) sum_{i=1}^N (g_i - g)^T (g_i - g), where
     g_i = g(x_i, y_i; theta) is the gradient of L with respect to theta calculated on i-th
     example, N is the number of training examples, and g is the full-batch gradient."
(the transpose is on the wrong factor in the paper's typesetting: K is the D x D outer-product
covariance, normalised by 1/N, not 1/(N-1).) App. C: "Tr(K) is related to the variance in gradients
as (1/D) Tr(K) = (1/D)(1/N) sum_i ||g - g_i||^2", and the eigenvalues are computed from the Gram
matrix "K^M_ij = (1/L) <g_i - g, g_j - g>, where g is the full-batch gradient, which we estimate
based on the L mini-batches" -- i.e. over a probe subset, with g its mean; the paper's M = 1 case
(per-example gradients; App. C, Fig. 9) is what is computed here. Conjecture 1 (Sec. 3): "the
maximum attained values of lambda_1^H and lambda_1^K are smaller for a larger learning rate or a
smaller batch size"; Conjecture 2: the same for the maximum of Tr(K) (hence max/final summaries).

Here N = probe.grad_cov examples (the first N of the fixed measurement batch, clamped to its
size), g_i the gradient of the per-example loss (the mean over a sequence's tokens for language
models), g = (1/N) sum_i g_i, so K = (1/N) sum_i (g_i - g)(g_i - g)^T exactly as above.

How, without an N x P matrix of per-example gradients:
  Tr(K) = (1/N) sum_i ||g_i - g||^2: g from one batched gradient, then per-example gradients in
    micro-batches of c examples (c x P numbers alive; c from probe.microbatch_bytes or
    per_example.PER_EXAMPLE_BYTES), each centred before its squared norm (no cancellation).
  lambda_1^K: K = A^T A with A = C J / sqrt(N) (J the N x P Jacobian of the per-example losses,
    C = I - 11^T/N), so K's non-zero eigenvalues are those of the N x N centred Gram matrix
    A A^T = (1/N) C J J^T C (the paper's App. C route). Lanczos runs in R^N on its matvec
    u -> (1/N) C J (J^T (C u)): J^T w is ONE vjp of the vector of per-example losses and J v ONE
    jvp (both batched over the N examples, micro-batched like the probe when bounded), so a matvec
    costs about one forward + one backward pass on N examples and no per-example gradient. With
    min(N, probe.lanczos_iters) iterations and probe.lanczos_tol; N <= lanczos_iters is exact
    (the Krylov space is all of R^N).
  Why not the explicit Gram matrix: forming it costs 2 N^2 P flops, i.e. ~N forward passes of
  N examples (a forward pass is ~2 N P flops), against ~3 per Lanczos iteration; it is cheaper
  only for N below ~3 x iterations, and it needs N x P memory or recomputation per block pair.

Switch: `probe.grad_cov=N` (0 = off). Columns `grad_cov_top`, `grad_cov_trace` (summaries
max_/final_). Cost per probe: one batched gradient + N per-example gradients (Tr K) + up to
min(N, lanczos_iters) x (jvp + vjp) on N examples (lambda_1^K).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, NamedTuple

from sweep.columns import Column
from sweep.diagnostics import per_example
from sweep.probes import ProbeInputs, ProbeMetric, register

if TYPE_CHECKING:
    import jax


class GradCov(NamedTuple):
    top: jax.Array  # lambda_1^K
    trace: jax.Array  # Tr(K)
    matvecs: jax.Array  # Lanczos iterations used


def grad_cov(losses: Callable, flat: jax.Array, x: jax.Array, y: jax.Array, *, chunk: int, pe_chunk: int,
             iters: int, tol: float, v0: jax.Array) -> GradCov:
    """lambda_1^K and Tr(K) of the per-example gradients of `losses(flat, xb, yb) -> (b,)` over the
    N examples of (x, y). `chunk`: examples per batched jvp/vjp; `pe_chunk`: per micro-batch of
    per-example gradients (both divide N). `v0`: (N,) Lanczos start."""
    import jax
    import jax.numpy as jnp

    from sweep import curvature

    n = x.shape[0]
    xb, yb = per_example.chunks(x, chunk), per_example.chunks(y, chunk)
    single = xb.shape[0] == 1

    def batch_fn(xc, yc):
        return lambda f: losses(f, xc, yc)

    if single:  # one linearization serves every matvec (the forward pass runs once)
        _, jv_lin = jax.linearize(batch_fn(x, y), flat)
        jt_lin = jax.linear_transpose(jv_lin, flat)
        jv = jv_lin

        def jtw(w):
            return jt_lin(w)[0]
    else:  # bounded memory: each micro-batch recomputed per product
        def jv(v):
            out = jax.lax.map(lambda b: jax.jvp(batch_fn(b[0], b[1]), (flat,), (v,))[1], (xb, yb))
            return out.reshape(n)

        def jtw(w):
            wb = w.reshape(xb.shape[0], chunk)

            def body(acc, b):
                _, pull = jax.vjp(batch_fn(b[0], b[1]), flat)
                return acc + pull(b[2])[0], None

            return jax.lax.scan(body, jnp.zeros_like(flat), (xb, yb, wb))[0]

    mean = jtw(jnp.full((n,), 1.0 / n, flat.dtype))  # g = (1/N) sum_i g_i

    def centre(u):
        return u - jnp.mean(u)

    def matvec(u):  # (1/N) C J J^T C u
        return centre(jv(jtw(centre(u)))) / n

    eig = curvature.lanczos_top(matvec, v0.astype(flat.dtype), min(int(iters), n), float(tol), stop="gap")

    one_grad = jax.grad(lambda f, xi, yi: losses(f, xi[None], yi[None])[0])
    pxb, pyb = per_example.chunks(x, pe_chunk), per_example.chunks(y, pe_chunk)

    def sq_dev(acc, b):
        g = jax.vmap(one_grad, (None, 0, 0))(flat, b[0], b[1])  # (pe_chunk, P)
        return acc + jnp.sum(jnp.square(g - mean[None, :])), None

    total = jax.lax.scan(sq_dev, jnp.zeros((), flat.dtype), (pxb, pyb))[0]
    return GradCov(jnp.maximum(eig.value, 0.0), total / n, eig.matvecs)


def examples(inputs: ProbeInputs, requested: int) -> int:
    """The N examples measured: the first `requested` of the measurement batch (clamped to it)."""
    return max(1, min(int(requested), int(inputs.x.shape[0])))


def _compute(inputs: ProbeInputs) -> dict[str, jax.Array]:
    import jax

    n = examples(inputs, inputs.probe.grad_cov)
    x, y = inputs.x[:n], inputs.y[:n]
    flat = inputs.flat
    losses = per_example.example_losses(inputs.loss_and_accuracy, inputs.unravel, flat.dtype)
    chunk = per_example.largest_divisor(n, inputs.microbatch)
    pe_chunk = per_example.per_example_chunk(n, flat.shape[0], flat.dtype.itemsize, inputs.probe, inputs.microbatch)
    v0 = jax.random.normal(jax.random.fold_in(inputs.key, 0xC0F), (n,), flat.dtype)
    res = grad_cov(losses, flat, x, y, chunk=chunk, pe_chunk=pe_chunk, iters=int(inputs.probe.lanczos_iters),
                   tol=float(inputs.probe.lanczos_tol), v0=v0)
    return {"grad_cov_top": res.top, "grad_cov_trace": res.trace}


GRAD_COV = register(ProbeMetric(
    name="grad_cov",
    columns=(
        Column("grad_cov_top", "trace", "gradient covariance λ₁ᴷ", "top eigenvalue of K", None,
               log_scale=True, summaries=("max", "final")),
        Column("grad_cov_trace", "trace", "gradient covariance Tr(K)", "trace of K", None,
               log_scale=True, summaries=("max", "final")),
    ),
    enabled=lambda probe: int(probe.get("grad_cov", 0) or 0) > 0,
    compute=_compute,
))
