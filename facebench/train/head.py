"""The classification heads: the L2-constrained softmax and the plain softmax baseline.

L2-softmax (Ranjan, Castillo and Chellappa, 2017): the backbone's raw feature ``x`` is
scaled to the sphere of radius ``alpha``, ``y = alpha * x / ||x||_2``, and ``y`` goes into an
ordinary fully connected classifier (with bias) trained with plain softmax cross-entropy.
The classifier's weights are not normalized: normalizing them too is NormFace (Wang et al.
2017), a different method. ``alpha`` is either fixed or learned; a learned ``alpha`` is kept
positive by learning ``log(alpha)``. See PROTOCOLS.md, "The L2-constrained softmax layer".

State-dict keys: ``fc.weight``, ``fc.bias`` for both heads, plus ``l2.alpha_value`` (a
buffer, fixed alpha) or ``l2.log_alpha`` (a parameter, learned alpha) for L2-softmax.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from facebench.errors import FacebenchError
from facebench.train import alpha_low

__all__ = [
    "ALPHA_LEARNED",
    "DEFAULT_P",
    "HEADS",
    "HeadConfig",
    "HeadError",
    "L2Constraint",
    "L2Softmax",
    "SoftmaxHead",
    "alpha_low",
    "build_head",
    "l2_scale",
]

#: The value of ``alpha`` that asks for a learned scale.
ALPHA_LEARNED: Literal["learned"] = "learned"
#: The target probability behind the default ``alpha``: ``alpha_low(C, DEFAULT_P)``.
DEFAULT_P = 0.9
EPS = 1e-12


class HeadError(FacebenchError):
    """A head configuration is invalid (unknown head, alpha <= 0, alpha for softmax, ...)."""


def l2_scale(features: torch.Tensor, alpha: torch.Tensor | float, eps: float = EPS) -> torch.Tensor:
    """Scale every row to L2 norm ``alpha``: ``alpha * x / max(||x||_2, eps)``.

    Parameters
    ----------
    features : torch.Tensor, shape (N, D)
        Raw features, one per row.
    alpha : torch.Tensor (a scalar) or float
        The radius, > 0.
    eps : float
        Floor of the norm, so that an all-zero row gives zeros instead of NaN.

    Returns
    -------
    torch.Tensor, shape (N, D)
        Row i is ``alpha * features[i] / max(||features[i]||_2, eps)``.
    """
    norms = torch.linalg.vector_norm(features, dim=1, keepdim=True).clamp_min(eps)
    return features * (alpha / norms)


def _positive(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise HeadError(f"Expected {what} to be a number, but got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise HeadError(
            f"Expected {what} to be a finite number > 0, but got {value!r}: the L2 layer scales "
            "features to norm alpha, which must be positive (the paper's lower bound for C "
            "classes: `facebench alpha-bound --classes C`)"
        )
    return number


def _default_alpha(n_classes: int) -> float:
    if n_classes <= 2:
        raise HeadError(
            f"The default alpha is alpha_low(C, {DEFAULT_P}), which needs more than 2 classes, "
            f"but there are {n_classes}; give alpha explicitly (--alpha)"
        )
    return alpha_low(n_classes, DEFAULT_P)


class L2Constraint(nn.Module):
    """The L2-constraint layer ``y = alpha * x / ||x||_2``, alpha fixed or learned.

    Parameters
    ----------
    alpha : float
        The fixed value, or the initial value when ``learned``; > 0.
    learned : bool
        Learn ``alpha`` (as ``log_alpha``, so it stays positive) instead of fixing it.
    """

    log_alpha: torch.Tensor  # a Parameter, when learned
    alpha_value: torch.Tensor  # a buffer, when fixed

    def __init__(self, alpha: float, learned: bool = False) -> None:
        super().__init__()
        value = _positive(alpha, "alpha")
        self.learned = learned
        if learned:
            self.log_alpha = nn.Parameter(torch.tensor(math.log(value)))
        else:
            self.register_buffer("alpha_value", torch.tensor(value))

    @property
    def alpha(self) -> torch.Tensor:
        """The current scale, a 0-d tensor (differentiable when learned)."""
        return self.log_alpha.exp() if self.learned else self.alpha_value

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(N, D) raw features -> (N, D) rows of norm ``alpha``."""
        return l2_scale(features, self.alpha)

    def extra_repr(self) -> str:
        kind = "learned" if self.learned else "fixed"
        return f"alpha={float(self.alpha.detach()):.4g} ({kind})"


class L2Softmax(nn.Module):
    """L2-constrained softmax head: :class:`L2Constraint`, then ``nn.Linear`` with bias.

    Train it with plain ``torch.nn.functional.cross_entropy`` on its logits.

    Parameters
    ----------
    feature_dim : int
        Length ``D`` of the backbone's feature.
    n_classes : int
        Number of classes ``C``.
    alpha : float, optional
        Fixed value, or initial value when ``learned``; default ``alpha_low(C, 0.9)``.
    learned : bool
        Learn alpha (kept positive through a log parametrization).
    """

    def __init__(
        self, feature_dim: int, n_classes: int, alpha: float | None = None, learned: bool = False
    ) -> None:
        super().__init__()
        value = _default_alpha(n_classes) if alpha is None else alpha
        self.l2 = L2Constraint(value, learned=learned)
        self.fc = nn.Linear(feature_dim, n_classes)

    @property
    def alpha(self) -> torch.Tensor:
        """The current scale, a 0-d tensor."""
        return self.l2.alpha

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(N, D) raw features -> (N, C) logits ``W (alpha x / ||x||) + b``."""
        logits: torch.Tensor = self.fc(self.l2(features))
        return logits


class SoftmaxHead(nn.Module):
    """The softmax baseline: ``nn.Linear`` (with bias) on the raw feature.

    Parameters
    ----------
    feature_dim : int
    n_classes : int
    """

    def __init__(self, feature_dim: int, n_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(feature_dim, n_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(N, D) raw features -> (N, C) logits ``W x + b``."""
        logits: torch.Tensor = self.fc(features)
        return logits


@dataclass(frozen=True)
class HeadConfig:
    """Which head, with which alpha; recorded in the checkpoint (``"head"``).

    Attributes
    ----------
    name : str
        A key of :data:`HEADS`: ``"softmax"`` or ``"l2softmax"``.
    alpha : float, "learned" or None
        L2-softmax only: a fixed alpha (> 0), ``"learned"``, or None for a fixed
        ``alpha_low(C, 0.9)``.
    alpha_init : float or None
        With ``alpha="learned"`` only: the initial alpha (> 0); default
        ``alpha_low(C, 0.9)``.
    n_classes : int or None
        ``C``; None until the training data is known (see :meth:`with_shape`).
    feature_dim : int or None
        The backbone's feature length; None until the architecture is known.
    """

    name: str = "l2softmax"
    alpha: float | Literal["learned"] | None = None
    alpha_init: float | None = None
    n_classes: int | None = None
    feature_dim: int | None = None

    def __post_init__(self) -> None:
        if self.name not in HEADS:
            raise HeadError(f"Expected a head in {list(HEADS)}, but got {self.name!r}")
        if self.name != "l2softmax" and (self.alpha is not None or self.alpha_init is not None):
            raise HeadError(
                f"The {self.name} head has no alpha, but alpha/alpha_init were given; alpha "
                "belongs to the L2-constrained softmax (--head l2softmax)"
            )
        if self.alpha is not None and self.alpha != ALPHA_LEARNED:
            object.__setattr__(self, "alpha", _positive(self.alpha, "alpha (--alpha)"))
        if self.alpha_init is not None:
            if self.alpha != ALPHA_LEARNED:
                raise HeadError(
                    f"alpha_init (--alpha-init) sets the starting value of a learned alpha, "
                    f"but alpha is {self.alpha!r}; use --alpha learned, or give the fixed value "
                    "with --alpha"
                )
            value = _positive(self.alpha_init, "alpha_init (--alpha-init)")
            object.__setattr__(self, "alpha_init", value)
        for key in ("n_classes", "feature_dim"):
            value = getattr(self, key)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise HeadError(f"Expected {key} to be a positive integer, but got {value!r}")
        if self.n_classes is not None and self.n_classes < 2:
            raise HeadError(f"Expected at least 2 classes, but got {self.n_classes}")

    @property
    def learned(self) -> bool:
        """True when alpha is learned."""
        return self.alpha == ALPHA_LEARNED

    def initial_alpha(self) -> float | None:
        """The fixed or initial alpha (None for heads without one); needs ``n_classes``."""
        if self.name != "l2softmax":
            return None
        if isinstance(self.alpha, float):
            return self.alpha
        if self.alpha_init is not None:
            return self.alpha_init
        if self.n_classes is None:
            raise HeadError("The default alpha depends on the number of classes, which is unset")
        return _default_alpha(self.n_classes)

    def with_shape(self, n_classes: int, feature_dim: int) -> HeadConfig:
        """This configuration with ``n_classes`` and ``feature_dim`` set.

        Raises
        ------
        HeadError
            Either was already set to another value, or the default alpha is undefined.
        """
        for key, value in (("n_classes", n_classes), ("feature_dim", feature_dim)):
            own = getattr(self, key)
            if own is not None and own != value:
                raise HeadError(f"Expected {key} {own} (the head's), but got {value}")
        shaped = dataclasses.replace(self, n_classes=n_classes, feature_dim=feature_dim)
        shaped.initial_alpha()  # fail now on an undefined default alpha
        return shaped

    def describe(self) -> str:
        """One line: ``"l2softmax, alpha fixed at 4.277"``, ``"softmax"``, ..."""
        if self.name != "l2softmax":
            return self.name
        value = self.initial_alpha() if self.n_classes is not None else None
        shown = f"{value:.4g}" if value is not None else f"alpha_low(C, {DEFAULT_P})"
        return f"{self.name}, alpha {'learned from' if self.learned else 'fixed at'} {shown}"

    def to_dict(self) -> dict[str, Any]:
        """The configuration in plain Python types (str, float, int, None)."""
        return {
            "name": self.name,
            "alpha": self.alpha,
            "alpha_init": self.alpha_init,
            "n_classes": self.n_classes,
            "feature_dim": self.feature_dim,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HeadConfig:
        """Rebuild a configuration from :meth:`to_dict`'s output.

        Raises
        ------
        HeadError
            Not a mapping, unknown keys, or invalid values.
        """
        if not isinstance(data, Mapping):
            raise HeadError(f"Expected a head configuration dict, but got {type(data).__name__}")
        known = [field.name for field in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise HeadError(f"Expected head keys among {known}, but got unknown {unknown}")
        return cls(**dict(data))


def _build_l2softmax(config: HeadConfig) -> nn.Module:
    dim, n_classes = _shape(config)
    return L2Softmax(dim, n_classes, alpha=config.initial_alpha(), learned=config.learned)


def _build_softmax(config: HeadConfig) -> nn.Module:
    dim, n_classes = _shape(config)
    return SoftmaxHead(dim, n_classes)


def _shape(config: HeadConfig) -> tuple[int, int]:
    if config.feature_dim is None or config.n_classes is None:
        raise HeadError(
            "Expected a head configuration with n_classes and feature_dim set (with_shape), "
            f"but got {config.n_classes!r} and {config.feature_dim!r}"
        )
    return config.feature_dim, config.n_classes


#: The heads, by the name ``--head`` takes: each builds the module from a shaped config.
HEADS: dict[str, Callable[[HeadConfig], nn.Module]] = {
    "softmax": _build_softmax,
    "l2softmax": _build_l2softmax,
}


def build_head(config: HeadConfig) -> nn.Module:
    """A new head with random weights for ``config`` (``n_classes``, ``feature_dim`` set).

    The module maps (N, feature_dim) raw features to (N, n_classes) logits.
    """
    return HEADS[config.name](config)
