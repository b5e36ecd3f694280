"""Compare a runtime's outputs with reference outputs, Polygraphy-style, plus the decision.

Kept apart from every runtime: it sees only named numpy arrays. Float outputs are judged by
their error relative to the reference's scale, `max|a - r| / max|r|` (a per-element relative
error explodes on features near zero and says nothing about the verification answer);
boolean outputs by the share of equal values. NaN or Inf in an output always fails.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Tolerance:
    rtol: float  # max|a - r| / max|r|
    agreement: float  # minimum share of equal boolean outputs (decisions)


# fp32 runtimes differ only by summation order; half precision loses ~3 (fp16) or ~2 (bf16)
# significant digits over the 131072-long FC dot product.
TOLERANCES = {
    "fp32": Tolerance(rtol=1e-4, agreement=1.0),
    "fp16": Tolerance(rtol=1e-2, agreement=0.98),
    "bf16": Tolerance(rtol=5e-2, agreement=0.95),
}


@dataclass
class OutputComparison:
    name: str
    passed: bool
    finite: bool
    max_abs: float = 0.0
    mean_abs: float = 0.0
    max_rel: float = 0.0
    min_cosine: float | None = None  # per-row cosine similarity, for 2-D outputs (embeddings)
    agreement: float | None = None  # for boolean outputs
    limit: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        if self.agreement is not None:
            return f"{self.name}: agreement {self.agreement:.2%} (need {self.limit:.2%})"
        status = "" if self.finite else " NON-FINITE"
        errors = f"max abs {self.max_abs:.3g}, rel {self.max_rel:.3g}"
        return f"{self.name}: {errors} (limit {self.limit:.3g}){status}"


def compare_output(name: str, actual: np.ndarray, reference: np.ndarray, tol: Tolerance) -> OutputComparison:
    actual, reference = np.asarray(actual), np.asarray(reference)
    if actual.shape != reference.shape:
        raise ValueError(f"{name}: shape {actual.shape} differs from the reference's {reference.shape}")
    if reference.dtype == np.bool_:
        agreement = float((actual.astype(bool) == reference).mean()) if reference.size else 1.0
        return OutputComparison(name, agreement >= tol.agreement, True, agreement=agreement, limit=tol.agreement)
    a, r = actual.astype(np.float64), reference.astype(np.float64)
    finite = bool(np.isfinite(a).all())
    diff = np.abs(a - r)
    scale = max(float(np.abs(r).max(initial=0.0)), 1e-12)
    result = OutputComparison(
        name,
        passed=False,
        finite=finite,
        max_abs=float(diff.max(initial=0.0)) if finite else float("inf"),
        mean_abs=float(diff.mean()) if finite and diff.size else 0.0,
        limit=tol.rtol,
    )
    result.max_rel = result.max_abs / scale
    if a.ndim == 2 and finite:
        norms = np.linalg.norm(a, axis=1) * np.linalg.norm(r, axis=1)
        result.min_cosine = float(((a * r).sum(axis=1) / np.maximum(norms, 1e-30)).min(initial=1.0))
    result.passed = finite and result.max_rel <= tol.rtol
    return result


def compare_outputs(actual: dict, reference: dict, tol: Tolerance) -> list[OutputComparison]:
    return [compare_output(name, actual[name], ref, tol) for name, ref in reference.items()]
