# Generated from checks/w3d4_checks/evaluation.py by `python -m grader build`: edit that file, not this one.
"""Part 3's quality measures: the Frechet distance between two sets of features, and the
classifier score exp(mean KL(p(y|x) || p(y))). Inputs are seeded float64 features and probabilities;
the judges compute the float64 references themselves (an eigendecomposition for the matrix square
root) and name the likely mistake when the student's number matches a known wrong formula.

Both covariance conventions pass (divide by n or by n - 1), and any correct matrix square root.
"""

from __future__ import annotations

import math
import struct
from typing import Any, Callable, Optional

import torch

from .judging import judge_safely, raise_probe_error
from .probing import plain, run_probe
from .seeding import SEED, randn, uniform

REL_TOL = 1e-6  # relative agreement with the float64 reference
MISTAKE_TOL = 1e-7  # a known mistake, computed in float64 too, matches more closely than REL_TOL
RANK_DEFICIENT_TOL = 1e-4  # (images x images) covariances of rank < dims: their square roots lose digits
FLOAT32_TOL = 1e-4  # closer than this (relative to the covariances' size) but not within REL_TOL: float32 somewhere
# name -> (n_a, n_b, dims): equal sizes first (so that features passed transposed still give a
# number to diagnose), then unequal sizes, then a set against itself (distance 0).
FD_CASES = {"two sets": (40, 40, 6), "unequal sizes": (30, 45, 5), "a set and itself": (36, 36, 4)}
# name -> (images, classes): confident and unsure predictions, then rows with exact zeros.
SCORE_CASES = {"mixed predictions": (30, 7), "some probabilities exactly 0": (24, 6)}


# --- seeded inputs ---------------------------------------------------------------------------


def _mixing(seed: int, tag: str, dims: int) -> torch.Tensor:
    """(dims, dims): x @ it turns white noise into features of covariance Q diag(s^2) Q^T, a random
    rotation Q and standard deviations s in [0.5, 2]. Well conditioned on purpose: the square root
    of a nearly singular product loses half the digits in any correct code, and the checks want
    every correct answer within 1e-6."""
    rotation, _ = torch.linalg.qr(randn(seed, f"{tag}/rotation", (dims, dims)).double())
    return torch.diag(uniform(seed, f"{tag}/scales", (dims,), 0.5, 2.0).double()) @ rotation.T


def fd_inputs(seed: int, case: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Two float64 feature matrices (n_a, dims) and (n_b, dims) with different means and correlated features."""
    n_a, n_b, dims = FD_CASES[case]
    mix_a = _mixing(seed, f"fd/{case}/mix_a", dims)
    a = randn(seed, f"fd/{case}/a", (n_a, dims)).double() @ mix_a + randn(seed, f"fd/{case}/mu_a", (dims,)).double()
    if case == "a set and itself":
        return a, a.clone()
    mix_b = _mixing(seed, f"fd/{case}/mix_b", dims)
    b = randn(seed, f"fd/{case}/b", (n_b, dims)).double() @ mix_b + randn(seed, f"fd/{case}/mu_b", (dims,)).double()
    return a, b


def score_inputs(seed: int, case: str) -> torch.Tensor:
    """p(y|x) as float64 (images, classes), rows summing to 1; in the second case half the rows are one-hot."""
    n, k = SCORE_CASES[case]
    probs = torch.softmax(2.5 * randn(seed, f"score/{case}/logits", (n, k)).double(), dim=-1)
    if case == "some probabilities exactly 0":
        labels = torch.arange(n // 2) % k
        probs[: n // 2] = torch.nn.functional.one_hot(labels, k).double()
    return probs


# --- float64 formulas ------------------------------------------------------------------------


def _cov(x: torch.Tensor, ddof: int) -> torch.Tensor:
    """x: (n, d) -> (d, d)"""
    centred = x - x.mean(0)
    return centred.T @ centred / (len(x) - ddof)


def _psd_sqrt(c: torch.Tensor) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(c)
    return vectors @ torch.diag(values.clamp(min=0).sqrt()) @ vectors.T


def trace_sqrt_product(c1: torch.Tensor, c2: torch.Tensor) -> float:
    """tr sqrt(c1 c2) for symmetric PSD c1, c2: the eigenvalues of c1 c2 are those of s c2 s, s = sqrt(c1)."""
    s = _psd_sqrt(c1)
    return torch.linalg.eigvalsh(s @ c2 @ s).clamp(min=0).sqrt().sum().item()


def frechet_from_stats(mu1, c1, mu2, c2) -> float:
    return ((mu1 - mu2) ** 2).sum().item() + (c1.trace() + c2.trace()).item() - 2 * trace_sqrt_product(c1, c2)


def frechet_reference(a: torch.Tensor, b: torch.Tensor, ddof: int = 1) -> float:
    """||mu_a - mu_b||^2 + tr(C_a + C_b - 2 (C_a C_b)^(1/2)), in float64."""
    return frechet_from_stats(a.mean(0), _cov(a, ddof), b.mean(0), _cov(b, ddof))


def _fd_mistakes(a: torch.Tensor, b: torch.Tensor, ddof: int) -> list[tuple[Callable[[], float], str]]:
    mu_a, mu_b, c_a, c_b = a.mean(0), b.mean(0), _cov(a, ddof), _cov(b, ddof)
    mean_term = ((mu_a - mu_b) ** 2).sum().item()
    traces = (c_a.trace() + c_b.trace()).item()
    cross = trace_sqrt_product(c_a, c_b)
    var_a, var_b = c_a.diagonal(), c_b.diagonal()
    second = lambda x: x.T @ x / (len(x) - ddof)
    return [
        (lambda: math.sqrt(max(mean_term + traces - 2 * cross, 0)),
         "You return the square root of the distance. The Frechet distance of FID is the squared one: "
         "||mu_a - mu_b||^2 + tr(...), with no square root around it."),
        (lambda: mean_term + traces - 2 * (c_a @ c_b).trace().item(),
         "The cross term is missing its matrix square root: use tr((C_a C_b)^(1/2)), not tr(C_a C_b)."),
        (lambda: mean_term + traces - 2 * (c_a @ c_b).sqrt().trace().item(),
         "torch.sqrt of a matrix takes the square root of each entry: you need the matrix square root of "
         "C_a C_b (scipy.linalg.sqrtm, or the square roots of its eigenvalues)."),
        (lambda: mean_term + traces + 2 * cross,
         "The cross term has the wrong sign: it is tr(C_a) + tr(C_b) MINUS 2 tr((C_a C_b)^(1/2))."),
        (lambda: mean_term + traces - cross,
         "The cross term needs its factor 2: tr(C_a) + tr(C_b) - 2 tr((C_a C_b)^(1/2))."),
        (lambda: math.sqrt(mean_term) + traces - 2 * cross,
         "The means' term is not squared: it is the squared distance ||mu_a - mu_b||^2 (the sum of the squared "
         "differences)."),
        (lambda: traces - 2 * cross,
         "The means' term ||mu_a - mu_b||^2 is missing: the distance compares the means as well as the covariances."),
        (lambda: mean_term,
         "Only the means are compared: add the covariances' term tr(C_a + C_b - 2 (C_a C_b)^(1/2))."),
        (lambda: mean_term + traces - 2 * _psd_sqrt(c_a).mm(_psd_sqrt(c_b)).trace().item(),
         "You use sqrt(C_a) sqrt(C_b): the formula takes the square root of the product, (C_a C_b)^(1/2), "
         "which differs unless the two matrices commute."),
        (lambda: mean_term + ((var_a.sqrt() - var_b.sqrt()) ** 2).sum().item(),
         "Only the variance of each feature is used (a diagonal covariance): use the full covariance matrices "
         "(torch.cov(features.T)), which also hold how features vary together."),
        (lambda: mean_term + (var_a.sqrt() + var_b.sqrt() - 2 * (var_a * var_b).sqrt().sqrt()).sum().item(),
         "Standard deviations are used where the formula needs covariances: C_a is the covariance matrix "
         "(dims, dims), not the per-feature std."),
        (lambda: frechet_from_stats(mu_a, second(a), mu_b, second(b)),
         "Your covariance does not subtract the mean: C = (x - mu)^T (x - mu) / (n - 1) (or / n), not x^T x / n."),
        (lambda: frechet_from_stats(mu_a, _cov(a.T, ddof), mu_b, _cov(b.T, ddof)),
         "The covariance is taken over the images instead of the features: torch.cov and np.cov treat each ROW "
         "as a variable, so pass features.T (or use np.cov(features, rowvar=False)). The result must be (dims, dims).",
         RANK_DEFICIENT_TOL),
        (lambda: frechet_from_stats(a.mean(1), _cov(a.T, ddof), b.mean(1), _cov(b.T, ddof)),
         "The features are read transposed: each row is one image and each column one feature, so the mean "
         "is over dim 0 and the covariance is (dims, dims).", RANK_DEFICIENT_TOL),
    ]


def classifier_score_reference(probs: torch.Tensor) -> float:
    """exp(mean over images of KL(p(y|x) || p(y))), with p(y) the mean of the rows and 0 log 0 = 0."""
    marginal = probs.mean(0, keepdim=True)
    kl = (torch.xlogy(probs, probs) - torch.xlogy(probs, marginal)).sum(1)
    return kl.mean().exp().item()


def _score_mistakes(p: torch.Tensor) -> list[tuple[Callable[[], float], str]]:
    def kl_rows(q: torch.Tensor) -> torch.Tensor:  # KL(p_i || q_i) per image
        return (torch.xlogy(p, p) - torch.xlogy(p, q)).sum(1)

    marginal = p.mean(0, keepdim=True)
    kl = kl_rows(marginal)
    geometric = p.log().mean(0, keepdim=True).exp()
    return [
        (lambda: kl.mean().item(), "You return the mean KL divergence: the score is its exponential, exp(mean KL)."),
        (lambda: kl.mean().item() / math.log(2),
         "You return the mean KL divergence (in bits): the score is exp(mean KL), with natural logarithms."),
        (lambda: math.exp(kl.mean().item() / math.log(2)),
         "The KL divergence is in bits (log2) but exponentiated with exp: use natural logarithms (torch.log)."),
        (lambda: math.exp(kl.mean().item() / math.log(10)),
         "The KL divergence uses log10: use natural logarithms (torch.log), so that exp undoes them."),
        (lambda: (marginal * (marginal.log() - p.log())).sum(1).mean().exp().item(),
         "The KL divergence is the wrong way round: the score uses KL(p(y|x) || p(y)), with p(y|x) in front, "
         "sum_y p(y|x) (log p(y|x) - log p(y))."),
        (lambda: kl_rows(geometric).mean().exp().item(),
         "p(y) is the mean of the LOG probabilities (a geometric mean): the marginal is the plain mean of the "
         "rows, probs.mean(0), and its log comes after."),
        (lambda: kl_rows(geometric / geometric.sum()).mean().exp().item(),
         "p(y) is a normalised geometric mean of the rows: the marginal is the plain mean, probs.mean(0)."),
        (lambda: kl.sum().exp().item(), "The KL divergences are summed over the images: average them (mean over dim 0)."),
        (lambda: kl.exp().mean().item(),
         "You average exp(KL) over the images: the score is exp of the mean KL, exp(mean KL), not the mean of exp."),
        (lambda: kl_rows(p.mean(1, keepdim=True)).mean().exp().item(),
         "p(y) is averaged over the classes of each image: it is the mean over the IMAGES, probs.mean(0)."),
        (lambda: (kl.sum() / p.shape[1]).exp().item(),
         "The KL terms are summed over the images and averaged over the classes: sum over the classes (dim 1) "
         "for each image, then average over the images."),
        (lambda: 1 / kl.mean().exp().item(), "Your score is 1 / exp(mean KL): check the sign of the exponent."),
    ]


# --- probes ----------------------------------------------------------------------------------


def scalar(value: Any) -> Any:
    """A returned number as a float; complex numbers as [real, imag]; anything else described."""
    if isinstance(value, torch.Tensor):
        value = plain(value)
        if value.numel() != 1:
            return f"a tensor of shape {tuple(value.shape)}"
        if value.is_complex():
            return [value.real.item(), value.imag.item()]
        return {"float": value.item(), "dtype": str(value.dtype).replace("torch.", "")}
    cls = type(value)
    if cls in (float, int) or (cls.__module__ == "numpy" and cls.__name__.startswith(("float", "int"))):
        return {"float": float(value), "dtype": "float64" if cls is float else cls.__name__}
    if cls is complex or (cls.__module__ == "numpy" and cls.__name__.startswith("complex")):
        return [float(value.real), float(value.imag)]
    return plain(value)


def probe_frechet_distance(frechet_distance, seed: int = SEED, device: Optional[str] = None) -> dict:
    def run(data: dict, device: str) -> None:
        for case in FD_CASES:
            a, b = fd_inputs(seed, case)
            data["stage"] = f"calling frechet_distance on features of shapes {tuple(a.shape)} and {tuple(b.shape)}"
            data[case] = scalar(frechet_distance(a, b))
            data[f"{case}/inputs unchanged"] = bool(torch.equal(a, fd_inputs(seed, case)[0]) and
                                                     torch.equal(b, fd_inputs(seed, case)[1]))

    return run_probe(run, seed, device)


def probe_classifier_score(classifier_score, seed: int = SEED, device: Optional[str] = None) -> dict:
    def run(data: dict, device: str) -> None:
        for case in SCORE_CASES:
            probs = score_inputs(seed, case)
            data["stage"] = f"calling classifier_score on probabilities of shape {tuple(probs.shape)} ({case})"
            data[case] = scalar(classifier_score(probs))
            data[f"{case}/inputs unchanged"] = bool(torch.equal(probs, score_inputs(seed, case)))

    return run_probe(run, seed, device)


# --- judges ----------------------------------------------------------------------------------


def _number(data: dict, case: str, what: str) -> Optional[float]:
    """The student's number for `case`, or AssertionError saying what came back instead; None if the
    probe stopped before this case with an error (which the caller then explains)."""
    if case not in data and "error" in data:
        return None
    value = data[case]
    if isinstance(value, list):
        raise AssertionError(
            f"{what} returns a complex number {complex(*value):.6g}. Matrix square roots and eigenvalues can come "
            "back complex (scipy.linalg.sqrtm, torch.linalg.eigvals), with an imaginary part that is 0 or rounding "
            "noise: keep the real part (.real) and return a real number."
        )
    if isinstance(value, str):
        raise AssertionError(f"{what} returns {value}: return one number (a float or a 0-dimensional tensor).")
    return float(value["float"])


FLOAT32_MESSAGE = ("{what} returns a number computed in float32 (it is exactly a float32 value, which a float64 "
                   "result almost never is). Keep the whole computation in float64: no .float(), no np.float32.")


def _is_float32(value: float) -> bool:
    """Whether a float is exactly representable in float32 (and not 0, which any code may return)."""
    try:
        return value != 0 and struct.unpack("f", struct.pack("f", value))[0] == value
    except (OverflowError, struct.error):
        return False


def check_float64(data: dict, cases, what: str) -> None:
    """Float32 code gives float32 values; a float64 result is one with probability 2^-29 per case, so
    two such cases (2^-58) say float32 for every seed, where the tolerance alone would only say so
    for some seeds."""
    values = [data.get(case) for case in list(cases)[:2]]
    if any(isinstance(v, dict) and v["dtype"] in ("float32", "float16", "bfloat16") for v in values):
        raise AssertionError(FLOAT32_MESSAGE.format(what=what).replace("(it is exactly a float32 value, which a "
                                                                       "float64 result almost never is)", "(a float32 tensor)"))
    if all(isinstance(v, dict) and _is_float32(float(v["float"])) for v in values):
        raise AssertionError(FLOAT32_MESSAGE.format(what=what))


def _close(actual: float, expected: float, scale: float, tol: float = REL_TOL) -> bool:
    return abs(actual - expected) <= tol * (abs(expected) + 1e-3 * scale)


def _named_mistake(actual: float, candidates, scale: float) -> Optional[str]:
    for compute, message, *tol in candidates:
        try:
            value = compute()
        except Exception:  # a candidate that cannot be computed for these inputs is simply not it
            continue
        if math.isfinite(value) and _close(actual, value, scale, tol[0] if tol else MISTAKE_TOL):
            return message
    return None


@judge_safely
def judge_frechet_distance(data: dict, seed: int = SEED) -> str:
    check_float64(data, FD_CASES, "frechet_distance")
    for case in FD_CASES:
        a, b = fd_inputs(seed, case)
        what = f"frechet_distance(features_a {tuple(a.shape)}, features_b {tuple(b.shape)})"
        actual = _number(data, case, what)
        if actual is None:
            raise_probe_error(data, "frechet_distance")
            raise AssertionError(f"the probe stopped before the case '{case}'")
        references = {ddof: frechet_reference(a, b, ddof) for ddof in (1, 0)}
        scale = (_cov(a, 1).trace() + _cov(b, 1).trace()).item()
        if math.isnan(actual):
            raise AssertionError(
                f"{what} is NaN. torch.sqrt of a matrix takes the square root of each entry (NaN for negative ones), "
                "and the eigenvalues of C_a C_b can come out slightly negative or complex from rounding: use "
                "scipy.linalg.sqrtm(...).real, or clamp the eigenvalues at 0 before their square root."
            )
        if not any(_close(actual, ref, scale) for ref in references.values()):
            diagnosis = next((m for ddof in (1, 0) if (m := _named_mistake(actual, _fd_mistakes(a, b, ddof), scale))), None)
            if diagnosis is None and any(abs(actual - ref) <= FLOAT32_TOL * (abs(ref) + scale) for ref in references.values()):
                diagnosis = ("It agrees only to about float32 precision: keep the whole computation in float64 "
                             "(no .float(), no np.float32), and add nothing to the covariances.")
            raise AssertionError(
                f"{what} = {actual:.8g} on the case '{case}', expected {references[1]:.8g} (covariance divided by "
                f"n - 1) or {references[0]:.8g} (by n). "
                + (diagnosis or "The formula is ||mu_a - mu_b||^2 + tr(C_a + C_b - 2 (C_a C_b)^(1/2)).")
            )
        if not data[f"{case}/inputs unchanged"]:
            raise AssertionError("frechet_distance modifies its inputs in place: work on copies (x - mean, not x -= mean).")
    return "frechet_distance agrees with the float64 formula on sets of equal and unequal sizes, and gives 0 for a set against itself"


@judge_safely
def judge_classifier_score(data: dict, seed: int = SEED) -> str:
    check_float64(data, SCORE_CASES, "classifier_score")
    for case in SCORE_CASES:
        probs = score_inputs(seed, case)
        what = f"classifier_score(probs {tuple(probs.shape)})"
        actual = _number(data, case, what)
        if actual is None:
            raise_probe_error(data, "classifier_score")
            raise AssertionError(f"the probe stopped before the case '{case}'")
        expected = classifier_score_reference(probs)
        if not math.isfinite(actual):
            raise AssertionError(
                f"{what} is {actual} when some probabilities are exactly 0. By convention 0 * log 0 = 0: use "
                "torch.xlogy(p, p) for p log p (or add a tiny constant such as 1e-12 inside the log)."
            )
        if not _close(actual, expected, 0.0):
            diagnosis = _named_mistake(actual, _score_mistakes(probs), 0.0)
            raise AssertionError(
                f"{what} = {actual:.8g} on the case '{case}', expected exp(mean KL(p(y|x) || p(y))) = {expected:.8g}. "
                + (diagnosis or "Compute p(y) = probs.mean(0), the KL of each row from it, their mean, then exp.")
            )
        if not data[f"{case}/inputs unchanged"]:
            raise AssertionError("classifier_score modifies its input in place: work on a copy.")
    return ("classifier_score equals exp(mean KL(p(y|x) || p(y))) in float64, also when some probabilities are "
            "exactly 0")
