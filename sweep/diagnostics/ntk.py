"""Trace of the empirical neural tangent kernel, the quantity of the stochastic edge of stability
of Agarwala & Pennington 2024 (High dimensional analysis reveals conservative sharpening and a
stochastic edge of stability, arXiv:2404.19261; ../shared/papers/agarwala-pennington-stochastic-eos.txt).

The paper (Sec. 2.1) trains a D-dimensional output z(theta) (D = datapoints x outputs per datapoint)
with MSE, Eq. (1) L = (1/2D) ||z - y||^2, by minibatch SGD with batch size B, Eq. (2)-(4), and
linearizes z = z_0 + J (theta - theta_0) with J the D x P Jacobian. Averaging over batches,
Eq. (6): "where we define the (empirical) neural tangent kernel (NTK, [12]) as
Theta-hat = (1/D) J J^T"; the first moment converges iff eta lambda_max(Theta-hat) < 2 (the
deterministic EOS). Sec. 2.2-2.3: the second moments define the stochastic EOS (S-EOS) through the
noise kernel norm K, which "will range from 0 in the full batch SGD case to 1 at the stability
threshhold" (Theorem 2.1: the diagonal dynamics converge iff eta lambda_max < 2 and K < 1), with
the batch fraction beta = B/D. Sec. 2.4, Eq. (10): in the high-dimensional limit
K ~= (1/B - 1/D) sum_i eta lambda_i / (2 - eta lambda_i) over the eigenvalues lambda_i of Theta-hat,
and, Eq. (11), when eta lambda_i << 2 for all i,
    K ~= K-hat = (1 - beta) eta tr(Theta-hat) / (2B)
("depends on the ratio eta/B ... The dependence on the trace of the empirical NTK shows that the
noise depends on many eigendirections"). The experiments (Sec. 4, App. C-D) plot this estimator and
its stabilisation near the S-EOS K = 1; App. D.3 plots the raw NTK trace.
[The shared text file lost the paper's formulas (its words and equation numbers survive); the
expressions of Eqs. (6), (10), (11) above are reconstructed from those words and re-derived here:
for a linear model with per-mode decay (1 - eta lambda_j)^2 and, for delocalised eigenvectors, noise
injection (1/B - 1/D) eta^2 lambda_j^2 ||r||^2 into mode j, the diagonal dynamics are stable iff
(1/B - 1/D) sum_j eta lambda_j / (2 - eta lambda_j) < 1, i.e. Eq. (10), whose small-eta lambda
limit is Eq. (11). Check the constant against the published PDF before quoting it elsewhere.]

Recorded here: `ntk_trace` = tr(Theta-hat) = (1/(n m)) sum_i ||J_i||_F^2 over the first
n = probe.ntk_trace examples of the measurement batch, J_i = d f(x_i) / d theta the m x P Jacobian
of example i's outputs (m = classes, or tokens x vocabulary for language models), i.e. Eq. (6)'s
normalisation with D = n m. For the repo's default loss (mse_reduction=half_mean,
L = 1/(2 n C) sum ||f - y||^2, the paper's Eq. (1)) tr(Theta-hat) is also the trace of the loss's
Gauss-Newton matrix, the quantity App. A.7 uses beyond MSE. For `mse_reduction=mean` multiply by 2,
for `half_sum` by C (the Gauss-Newton matrix of that loss); for cross-entropy the Gauss-Newton
trace weights J_i by the softmax Hessian and is not this column (App. A.7/D.7; not formed here).

Threshold (docs/diagnostics.md): the S-EOS estimate at a probe step is
    K-hat = (1 - B / N_train) * lr * c_loss * ntk_trace / (2 B),   S-EOS at K-hat = 1,
i.e. ntk_trace crosses 2 B / ((1 - B / N_train) lr c_loss), with lr the trace's `lr` column,
B the run's `batch_size` (0 = full batch: K-hat = 0, no S-EOS), N_train the training-set size and
c_loss = 1 (half_mean), 2 (mean), C (half_sum). Plain SGD; the momentum/weight-decay estimator of
Eq. (18) is not formed.

How: per-example Jacobian norms, vmapped over micro-batches of examples (c x P numbers alive), each
||J_i||_F^2 = sum_k ||J_i^T e_k||^2 over the m output directions (m vjps of one forward pass,
sequential: exact) when m <= EXACT_OUTPUTS, else Hutchinson over the outputs with NTK_OUTPUT_VECTORS
fixed Rademacher vectors v (E ||J_i^T v||^2 = ||J_i||_F^2; language models).
Switch: `probe.ntk_trace=n` (0 = off). Cost per probe: n x min(m, NTK_OUTPUT_VECTORS or m)
single-example backward passes (digits, m = 10: ~10 backward passes of n examples).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from sweep.columns import Column
from sweep.diagnostics import per_example
from sweep.probes import ProbeInputs, ProbeMetric, register

if TYPE_CHECKING:
    import jax

EXACT_OUTPUTS = 64  # exact Jacobian norms up to this many outputs per example
NTK_OUTPUT_VECTORS = 8  # Rademacher output probes per example above it


def ntk_trace(outputs: Callable, flat: jax.Array, x: jax.Array, *, pe_chunk: int,
              directions: jax.Array | None = None) -> jax.Array:
    """(1/(n m)) sum_i ||d outputs(flat, x_i) / d flat||_F^2 for `outputs(flat, xb) -> (b, m)`.
    `directions`: (s, m) output probe vectors (Hutchinson); None = the m unit vectors (exact)."""
    import jax
    import jax.numpy as jnp

    n = x.shape[0]

    def one(xi):
        f = lambda g: outputs(g, xi[None])[0]  # noqa: E731
        out, pull = jax.vjp(f, flat)
        m = out.shape[0]
        if directions is None:
            sq = lambda k: jnp.sum(jnp.square(pull(jax.nn.one_hot(k, m, dtype=out.dtype))[0]))  # noqa: E731
            return jnp.sum(jax.lax.map(sq, jnp.arange(m)))
        sq = lambda v: jnp.sum(jnp.square(pull(v.astype(out.dtype))[0]))  # noqa: E731
        return jnp.mean(jax.lax.map(sq, directions))

    def body(acc, xc):
        return acc + jnp.sum(jax.vmap(one)(xc)), None

    total = jax.lax.scan(body, jnp.zeros((), flat.dtype), per_example.chunks(x, pe_chunk))[0]
    m = jax.eval_shape(lambda: outputs(flat, x[:1])).shape[1]
    return total / (n * m)


def flat_outputs(apply: Callable, unravel: Callable) -> Callable:
    """(flat, xb) -> (b, m): the model's outputs per example, flattened (tokens x vocabulary)."""
    def outputs(flat, xb):
        z = apply(unravel(flat), xb)
        return z.reshape(z.shape[0], -1)

    return outputs


def _compute(inputs: ProbeInputs) -> dict[str, jax.Array]:
    import jax

    n = max(1, min(int(inputs.probe.ntk_trace), int(inputs.x.shape[0])))
    x, flat = inputs.x[:n], inputs.flat
    outputs = flat_outputs(inputs.apply, inputs.unravel)
    m = jax.eval_shape(lambda: outputs(flat, x[:1])).shape[1]
    directions = None
    if m > EXACT_OUTPUTS:
        directions = jax.random.rademacher(jax.random.fold_in(inputs.key, 0x47C), (NTK_OUTPUT_VECTORS, m),
                                           dtype=flat.dtype)
    pe_chunk = per_example.per_example_chunk(n, flat.shape[0], flat.dtype.itemsize, inputs.probe, inputs.microbatch)
    return {"ntk_trace": ntk_trace(outputs, flat, x, pe_chunk=pe_chunk, directions=directions)}


NTK_TRACE = register(ProbeMetric(
    name="ntk_trace",
    columns=(Column("ntk_trace", "trace", "NTK trace tr(Θ̂)", "(1/nm) Σ‖J_i‖²", None, log_scale=True,
                    summaries=("max", "final")),),
    enabled=lambda probe: int(probe.get("ntk_trace", 0) or 0) > 0,
    compute=_compute,
))
