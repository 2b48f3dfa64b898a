"""Training with the L2-constrained softmax loss (Ranjan, Castillo and Chellappa, 2017).

``head``
    The heads: :class:`~facebench.train.head.L2Softmax` (``y = alpha * x / ||x||_2``, then
    an ordinary linear classifier with softmax cross-entropy) and the plain softmax
    baseline, registered in :data:`~facebench.train.head.HEADS`.
``datasets``
    What ``facebench train DATA`` reads: a class-per-folder image tree or a built-in data
    set (``digits``, ``fashion-mnist``), with held-out classes for verification.
``loop``
    The training loop and the checkpoint that ``facebench extract --arch --weights`` loads.

This module itself imports no torch: :func:`alpha_low` is plain arithmetic and the names
below are the command line's choices; ``facebench --help`` and ``facebench alpha-bound``
must not pay for importing torch.
"""

from __future__ import annotations

import math

from facebench.errors import FacebenchError

__all__ = ["HEAD_NAMES", "OPTIMIZERS", "SCHEDULES", "alpha_low"]

# The choices of ``facebench train``, here so that the command line can offer them without
# importing torch; ``head.HEADS`` and ``loop`` use exactly these names.
#: The heads (:data:`facebench.train.head.HEADS`).
HEAD_NAMES: tuple[str, ...] = ("softmax", "l2softmax")
#: Optimizers: SGD with momentum 0.9, or Adam.
OPTIMIZERS: tuple[str, ...] = ("sgd", "adam")
#: LR schedules, as a factor of the step number s of S steps in all: ``cosine``
#: ``(1 + cos(pi s / S)) / 2``; ``step`` 1, then 0.1 from 50 % and 0.01 from 75 % of S;
#: ``none`` 1.
SCHEDULES: tuple[str, ...] = ("cosine", "step", "none")


def alpha_low(n_classes: int, p: float = 0.9) -> float:
    """The paper's lower bound on the scale ``alpha`` of the L2-constrained softmax.

    With features of norm ``alpha`` and ``C`` classes, the softmax probability of the right
    class can reach ``p`` only when ``alpha >= log(p * (C - 2) / (1 - p))`` (Ranjan et al.
    2017, "Bounds on parameter alpha"; PROTOCOLS.md).

    Parameters
    ----------
    n_classes : int
        The number of classes ``C``, at least 3 (the bound is undefined for ``C <= 2``).
    p : float
        The target probability of the right class, in (0, 1).

    Returns
    -------
    float
        ``log(p * (C - 2) / (1 - p))``. For ``p = 0.9``: 4.28 for C = 10, 11.46 for
        C = 10,575 (CASIA-WebFace), 13.17 for C = 58,207 (the paper's MS-Celeb subset).

    Raises
    ------
    FacebenchError
        ``n_classes`` is not an integer above 2, or ``p`` is not in (0, 1).
    """
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes <= 2:
        raise FacebenchError(
            f"Expected argument `n_classes` to be an integer > 2 (the bound "
            f"log(p (C - 2) / (1 - p)) needs C > 2), but got {n_classes!r}"
        )
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 < p < 1.0:
        raise FacebenchError(f"Expected argument `p` to be a probability in (0, 1), but got {p!r}")
    return math.log(p * (n_classes - 2) / (1.0 - p))
