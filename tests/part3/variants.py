"""Correct answers to part 3's exercises, each written the way a different student might: numpy or
torch, scipy's sqrtm or eigenvalues or singular values or an iteration, covariance divided by n or
n - 1, a float or a 0-dimensional tensor returned, the score through KL or through entropies.

VARIANTS: name -> (frechet_distance, classifier_score)."""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg
import scipy.stats
import torch
import torch.nn.functional as F
from einops import reduce
from fancy_einsum import einsum


# 1. numpy and scipy, as in the reference FID code: sqrtm, then its real part; KL from scipy.stats.
def fd_scipy(a, b):
    a, b = a.numpy(), b.numpy()
    mu1, mu2 = a.mean(axis=0), b.mean(axis=0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1.dot(s2))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def score_scipy(probs):
    p = probs.numpy()
    py = p.mean(axis=0)
    return float(np.exp(np.mean([scipy.stats.entropy(row, py) for row in p])))


# 2. Symmetric route with a biased covariance (divide by n); score as exp(H(p(y)) - mean H(p(y|x))).
def fd_eigh_biased(a, b):
    def cov(x):
        c = x - x.mean(0)
        return c.T @ c / len(x)

    ca, cb = cov(a), cov(b)
    values, vectors = torch.linalg.eigh(ca)
    root = vectors @ torch.diag(values.clamp(min=0).sqrt()) @ vectors.T
    cross = torch.linalg.eigvalsh(root @ cb @ root).clamp(min=0).sqrt().sum()
    return ((a.mean(0) - b.mean(0)).pow(2).sum() + ca.trace() + cb.trace() - 2 * cross).item()


def score_entropies(probs):
    entropy = lambda p: -torch.special.xlogy(p, p).sum(-1)
    return math.exp(entropy(probs.mean(0)).item() - entropy(probs).mean().item())


# 3. Denman-Beavers iteration for the matrix square root, on the product scaled to norm 1 (an
# iteration converges in a few steps from there, whatever the features' size); the score in a
# Python loop with math.log.
def fd_denman_beavers(a, b):
    ca, cb = torch.cov(a.T), torch.cov(b.T)
    product = ca @ cb
    norm = torch.linalg.matrix_norm(product)
    y, z = product / norm, torch.eye(len(ca), dtype=torch.float64)
    for _ in range(40):
        y, z = (y + torch.linalg.inv(z)) / 2, (z + torch.linalg.inv(y)) / 2
    return float(torch.sum((a.mean(0) - b.mean(0)) ** 2) + torch.trace(ca + cb - 2 * y * norm.sqrt()))


def score_loops(probs):
    rows = probs.tolist()
    classes = len(rows[0])
    marginal = [sum(row[k] for row in rows) / len(rows) for k in range(classes)]
    total = 0.0
    for row in rows:
        total += sum(p * math.log(p / q) for p, q in zip(row, marginal) if p > 0)
    return math.exp(total / len(rows))


# 4. Nuclear norm: tr (C_a C_b)^(1/2) = ||C_a^(1/2) C_b^(1/2)||_*; the score with F.kl_div per row.
def fd_nuclear(a, b):
    def root(c):
        u, s, vh = torch.linalg.svd(c)
        return u @ torch.diag(s.sqrt()) @ vh

    ca, cb = torch.cov(a.T, correction=0), torch.cov(b.T, correction=0)
    cross = torch.linalg.matrix_norm(root(ca) @ root(cb), ord="nuc")
    return torch.dist(a.mean(0), b.mean(0)) ** 2 + torch.trace(ca) + torch.trace(cb) - 2 * cross  # a 0-d tensor


def score_kl_div(probs):
    log_marginal = probs.mean(0, keepdim=True).log().expand_as(probs)
    kl = F.kl_div(log_marginal, probs, reduction="none").sum(-1)  # target * (log target - input), 0 log 0 = 0
    return torch.exp(kl.mean())


# 5. einsum for the covariances, numpy's general eigenvalues; the score with torch.special.entr.
def fd_einsum(a, b):
    def stats(x):
        centred = x - reduce(x, "n d -> d", "mean")
        return x.mean(0), einsum("n i, n j -> i j", centred, centred) / (x.shape[0] - 1)

    (m1, c1), (m2, c2) = stats(a), stats(b)
    eig = np.linalg.eigvals((c1 @ c2).numpy())
    cross = np.sqrt(np.clip(eig.real, 0, None)).sum()
    return float(((m1 - m2) ** 2).sum() + c1.diagonal().sum() + c2.diagonal().sum()) - 2.0 * float(cross)


def score_entr(probs):
    marginal = probs.mean(0)
    cross_entropy = -(probs * torch.where(probs > 0, marginal.log(), torch.zeros_like(marginal))).sum(1)
    kl = cross_entropy - torch.special.entr(probs).sum(1)
    return float(torch.exp(kl.mean()))


# 6. Cholesky factors: C_a C_b is similar to (L_a^T L_b)(L_a^T L_b)^T, so the cross term is the sum of
# the singular values of L_a^T L_b; the score with a clamped log.
def fd_cholesky(a, b):
    ca, cb = torch.cov(a.T), torch.cov(b.T)
    jitter = 1e-300 * torch.eye(len(ca), dtype=torch.float64)
    la, lb = torch.linalg.cholesky(ca + jitter), torch.linalg.cholesky(cb + jitter)
    cross = torch.linalg.svdvals(la.T @ lb).sum()
    return (torch.linalg.vector_norm(a.mean(0) - b.mean(0)) ** 2 + ca.trace() + cb.trace() - 2 * cross).item()


def score_clamped(probs):
    logs = probs.clamp(min=1e-300).log()
    marginal = probs.mean(0)
    return torch.exp(torch.mean(torch.sum(probs * (logs - marginal.log()), dim=1))).item()


# 7. numpy with np.where, a symmetric square root from np.linalg.eigh.
def fd_numpy_eigh(a, b):
    a, b = a.numpy(), b.numpy()
    ca, cb = np.cov(a.T, ddof=0), np.cov(b.T, ddof=0)
    w, v = np.linalg.eigh(ca)
    ra = (v * np.sqrt(np.maximum(w, 0))) @ v.T
    cross = np.sqrt(np.maximum(np.linalg.eigvalsh(ra @ cb @ ra), 0)).sum()
    return np.sum(np.square(a.mean(0) - b.mean(0))) + np.trace(ca) + np.trace(cb) - 2 * cross  # a numpy float64


def score_numpy_where(probs):
    p = probs.numpy()
    py = p.mean(0, keepdims=True)
    safe = np.where(p > 0, p, 1.0)
    kl = np.where(p > 0, p * np.log(safe / py), 0.0).sum(1)
    return np.exp(kl.mean())


# 8. scipy's sqrtm of the symmetric product C_a^(1/2) C_b C_a^(1/2); the score via log-sum-exp tricks.
def fd_scipy_symmetric(a, b):
    ca, cb = torch.cov(a.T).numpy(), torch.cov(b.T).numpy()
    ra = scipy.linalg.sqrtm(ca).real
    cross = np.trace(scipy.linalg.sqrtm(ra @ cb @ ra).real)
    diff = (a.mean(0) - b.mean(0)).numpy()
    return float(diff @ diff + np.trace(ca + cb) - 2 * cross)


def score_logmeanexp(probs):
    logp = torch.where(probs > 0, probs.log(), torch.full_like(probs, -math.inf))
    log_marginal = torch.logsumexp(logp, dim=0) - math.log(len(probs))
    terms = torch.where(probs > 0, probs * (logp - log_marginal), torch.zeros_like(probs))
    return terms.sum(1).mean().exp().item()


VARIANTS = {
    "scipy_sqrtm": (fd_scipy, score_scipy),
    "eigh_biased_entropies": (fd_eigh_biased, score_entropies),
    "denman_beavers_loops": (fd_denman_beavers, score_loops),
    "nuclear_norm_kl_div": (fd_nuclear, score_kl_div),
    "einsum_numpy_eigvals_entr": (fd_einsum, score_entr),
    "cholesky_svd_clamped_log": (fd_cholesky, score_clamped),
    "numpy_eigh_where": (fd_numpy_eigh, score_numpy_where),
    "scipy_symmetric_logsumexp": (fd_scipy_symmetric, score_logmeanexp),
}
