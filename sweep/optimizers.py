"""One spec per optimizer: its config schema, its per-run scalars, its update, its state seeding, whether a
preconditioner governs its stability, its threshold and its validation. Why: the engine, the eta_c
search, the plan, the config and the plots ask these questions; answered here, no optimizer name is
compared anywhere else (nanodo's `get_optimizer(c.opt)`). A new optimizer is one spec class registered
below (plus its test); a seeded state is `seeded` / `seed_nu` / `first_update_nu`.

jax and optax are imported inside the methods: the config, completion and plotting read the
registry's static facts without paying for them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Optional

from omegaconf import MISSING


# ----------------------------------------------------------------------------- config schemas
@dataclass
class OptimizerConfig:
    name: str = MISSING
    clip_norm: Optional[float] = None


@dataclass
class SGDConfig(OptimizerConfig):
    """SGD; momentum in the paper's form m = g + beta m, theta -= lr m."""

    name: str = "sgd"
    momentum: float = 0.0


@dataclass
class AdamConfig(OptimizerConfig):
    name: str = "adam"
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8


@dataclass
class GIAdamConfig(AdamConfig):
    """Adam with v0 = g0^2 from the first batch (Section 6.2), bias correction kept."""

    name: str = "gi_adam"
    # separate: g0 is the gradient of a batch B0 drawn before training and never trained on, so the
    # first update leaves v_1 = b2 g_B0^2 + (1 - b2) g_B1^2 (the authors' scripts; with it the initial
    # preconditioned sharpness of FCN SP on CIFAR falls ~100x, as in the paper); update: g0 is the
    # first update's own gradient, v_1 = g_B1^2 (a reduction of exactly sqrt(1 - b2) where |g| >> eps).
    v0_batch: str = "separate"


@dataclass
class RIAdamConfig(AdamConfig):
    """RI-Adam (Appendix I.3, Figure 31): Adam whose second moment starts at a random v0 "with the
    same norm as the gradients at initialization" -- v0 = |g_B0^2| u / |u|, u_i = z_i^2 with z ~ N(0, 1)
    drawn from the run's seed (non-negative, as a second moment must be), g_B0 the gradient of the
    batch GI-Adam seeds from (`v0_batch=separate`). Bias correction kept, as for GI-Adam. The paper
    does not say which norm or which distribution; these are our choices (docs/figures.md, fig31)."""

    name: str = "ri_adam"


# RI-Adam's random v0 is drawn from fold_in(PRNGKey(seed), this): a stream no other draw uses.
RI_ADAM_STREAM = 104729


# ----------------------------------------------------------------------------- specs
class OptimizerSpec:
    """SGD-like by default: no preconditioner, nothing seeded."""

    name: ClassVar[str]
    display: ClassVar[str]
    schema: ClassVar[type]
    adaptive: ClassVar[bool] = False  # stability governed by P^-1 H (a preconditioned sharpness exists)
    # the Hyper fields this optimizer reads from its config (a cohort varies them per member)
    scalars: ClassVar[tuple[str, ...]] = ()

    def transform(self, h: Any) -> Any:
        """The optax transformation whose output, times -lr_t, is the step (no learning rate inside)."""
        raise NotImplementedError

    def direction(self, h: Any, clip_norm: Optional[float]) -> Any:
        import optax

        parts = [optax.clip_by_global_norm(clip_norm)] if clip_norm else []
        return optax.chain(*parts, self.transform(h))

    def threshold(self, lr_t: Any, h: Any) -> Any:
        """The instability threshold of the curvature that governs this optimizer at lr_t."""
        return (2.0 + 2.0 * h.momentum) / lr_t

    def seeded(self, cfg: Any) -> bool:
        """Whether initialization puts a nonzero second moment v0 in the state (`seed_nu`)."""
        return False

    def seed_nu(self, g0: Any, seed: Any) -> Any:
        raise NotImplementedError(f"{self.name} seeds no state")

    def update_rule(self, cfg: Any) -> "OptimizerSpec":
        """The spec whose transform continues from the initialized state (a seeded state is plain Adam's)."""
        return self

    def first_update_nu(self, cfg: Any, nu: Any, g: Any, h: Any) -> Any:
        """The second moment the first update leaves when its gradient is g (`nu`: the state's)."""
        raise NotImplementedError(f"{self.name} has no second moment")

    def validate(self, cfg: Any) -> list[tuple[bool, str]]:
        return []


class SGD(OptimizerSpec):
    name, display, schema, scalars = "sgd", "SGD", SGDConfig, ("momentum",)

    def transform(self, h: Any) -> Any:
        import optax

        return optax.trace(decay=h.momentum)

    def validate(self, cfg: Any) -> list[tuple[bool, str]]:
        return [(0 <= cfg.momentum < 1, f"optimizer.momentum={cfg.momentum}: must be in [0, 1)")]


class Adam(OptimizerSpec):
    """m_hat / (sqrt(v_hat) + eps); the preconditioner is optim.adam_preconditioner."""

    name, display, schema, scalars, adaptive = "adam", "Adam", AdamConfig, ("b1", "b2", "eps"), True

    def transform(self, h: Any) -> Any:
        import optax

        return optax.scale_by_adam(b1=h.b1, b2=h.b2, eps=h.eps)

    def threshold(self, lr_t: Any, h: Any) -> Any:
        return (2.0 + 2.0 * h.b1) / (lr_t * (1.0 - h.b1))

    def update_rule(self, cfg: Any) -> OptimizerSpec:
        return SPECS["adam"] if self.seeded(cfg) else self

    def first_update_nu(self, cfg: Any, nu: Any, g: Any, h: Any) -> Any:
        """Adam v_1 = (1 - b2) g^2; from a seeded v_0, v_1 = b2 v_0 + (1 - b2) g^2."""
        import jax
        import jax.numpy as jnp

        if self.seeded(cfg):
            return jax.tree.map(lambda n, x: h.b2 * n + (1.0 - h.b2) * jnp.square(x), nu, g)
        return jax.tree.map(lambda x: (1.0 - h.b2) * jnp.square(x), g)

    def validate(self, cfg: Any) -> list[tuple[bool, str]]:
        return [(0 <= cfg.b1 < 1, f"optimizer.b1={cfg.b1}: must be in [0, 1)"),
                (0 <= cfg.b2 < 1, f"optimizer.b2={cfg.b2}: must be in [0, 1)"),
                (cfg.eps >= 0, f"optimizer.eps={cfg.eps}: must be >= 0")]


class GIAdam(Adam):
    """GI-Adam (Section 6.2): v0 = g0^2, from a separate batch B0 at initialization (`v0_batch=separate`)
    or from the first update's own gradient (`update`, optim.scale_by_gi_adam)."""

    name, display, schema = "gi_adam", "GI-Adam", GIAdamConfig

    def transform(self, h: Any) -> Any:
        from sweep.optim import scale_by_gi_adam

        return scale_by_gi_adam(b1=h.b1, b2=h.b2, eps=h.eps)

    def seeded(self, cfg: Any) -> bool:
        return str(cfg.get("v0_batch", "update")) == "separate"

    def seed_nu(self, g0: Any, seed: Any) -> Any:
        import jax
        import jax.numpy as jnp

        return jax.tree.map(jnp.square, g0)

    def first_update_nu(self, cfg: Any, nu: Any, g: Any, h: Any) -> Any:
        """Seeded by the update itself: v_1 = g^2."""
        if self.seeded(cfg):
            return super().first_update_nu(cfg, nu, g, h)
        import jax
        import jax.numpy as jnp

        return jax.tree.map(jnp.square, g)

    def validate(self, cfg: Any) -> list[tuple[bool, str]]:
        return [*super().validate(cfg), (cfg.v0_batch in ("separate", "update"),
                                         f"optimizer.v0_batch={cfg.v0_batch}: allowed separate, update")]


class RIAdam(Adam):
    name, display, schema = "ri_adam", "RI-Adam", RIAdamConfig

    def seeded(self, cfg: Any) -> bool:
        return True

    def seed_nu(self, g0: Any, seed: Any) -> Any:
        import jax

        from sweep.optim import random_second_moment

        return random_second_moment(g0, jax.random.fold_in(jax.random.PRNGKey(seed), RI_ADAM_STREAM))


SPECS: dict[str, OptimizerSpec] = {spec.name: spec for spec in (SGD(), Adam(), GIAdam(), RIAdam())}
HYPER_DEFAULTS = {"momentum": 0.0, "b1": 0.9, "b2": 0.999, "eps": 1e-8}  # of scalars an optimizer lacks


def get(name: Any) -> OptimizerSpec:
    """The spec of an optimizer (a name, a config node with `.name`, or a spec)."""
    from sweep.errors import registered

    return name if isinstance(name, OptimizerSpec) else registered(SPECS, str(getattr(name, "name", name)),
                                                                   "optimizer")


def hyper_scalars(cfg: Any) -> dict[str, float]:
    """The Hyper optimizer fields of one run: its optimizer's own from the config, defaults for the rest."""
    spec = get(cfg)
    return {key: float(cfg[key]) if key in spec.scalars else default for key, default in HYPER_DEFAULTS.items()}


def adaptive_names() -> tuple[str, ...]:
    return tuple(name for name, spec in SPECS.items() if spec.adaptive)
