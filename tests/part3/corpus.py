"""Part 3's mutants: each is a realistic mistake in `frechet_distance` or `classifier_score`, made
by editing the lesson source, with the test that must catch it and a distinctive part of the
diagnosis that test must give."""

from __future__ import annotations

from mutants import Mutant

FD_MEANS = "mu_a, mu_b = features_a.mean(dim=0), features_b.mean(dim=0)"
FD_COVS = "cov_a, cov_b = t.cov(features_a.T), t.cov(features_b.T)"
FD_EIG = "eigenvalues = t.linalg.eigvals(cov_a @ cov_b).real.clamp(min=0)"
FD_CROSS = "trace_sqrt = eigenvalues.sqrt().sum()"
FD_TOTAL = "distance = ((mu_a - mu_b) ** 2).sum() + cov_a.trace() + cov_b.trace() - 2 * trace_sqrt"
FD_RETURN = "return distance.item()"
CS_MARGINAL = "marginal = probs.mean(dim=0, keepdim=True)"
CS_KL = "kl = (t.xlogy(probs, probs) - t.xlogy(probs, marginal)).sum(dim=1)"
CS_RETURN = "return kl.mean().exp().item()"
SQRT_EACH = (
    "va, ea = t.linalg.eigh(cov_a)\n    vb, eb = t.linalg.eigh(cov_b)\n    "
    "root_a, root_b = (ea * va.clamp(min=0).sqrt()) @ ea.T, (eb * vb.clamp(min=0).sqrt()) @ eb.T\n    "
    "trace_sqrt = (root_a @ root_b).trace()"
)

FD = "frechet_distance"
CS = "classifier_score"

PART3_MUTANTS = (
    # The Frechet distance
    Mutant("fd_no_matrix_sqrt", FD, ((FD_CROSS, "trace_sqrt = eigenvalues.sum()"),), "missing its matrix square root"),
    Mutant("fd_elementwise_sqrt", FD, ((FD_CROSS, "trace_sqrt = (cov_a @ cov_b).sqrt().trace()"),),
           "torch.sqrt of a matrix"),
    Mutant("fd_cross_term_plus", FD, ((FD_TOTAL, FD_TOTAL.replace("- 2 *", "+ 2 *")),), "wrong sign"),
    Mutant("fd_cross_term_without_2", FD, ((FD_TOTAL, FD_TOTAL.replace("- 2 *", "-")),), "factor 2"),
    Mutant("fd_means_not_squared", FD, ((FD_TOTAL, FD_TOTAL.replace("((mu_a - mu_b) ** 2).sum()", "(mu_a - mu_b).norm()")),),
           "is not squared"),
    Mutant("fd_means_term_missing", FD, ((FD_TOTAL, FD_TOTAL.replace("((mu_a - mu_b) ** 2).sum() + ", "")),),
           "||mu_a - mu_b||^2 is missing"),
    Mutant("fd_only_means", FD, ((FD_TOTAL, "distance = ((mu_a - mu_b) ** 2).sum()"),), "Only the means"),
    Mutant("fd_square_root_returned", FD, ((FD_RETURN, "return distance.sqrt().item()"),), "square root of the distance"),
    Mutant("fd_product_of_roots", FD, ((FD_CROSS, SQRT_EACH),), "sqrt(C_a) sqrt(C_b)"),
    Mutant("fd_variances_only", FD, ((FD_COVS, "cov_a, cov_b = t.diag(features_a.var(dim=0)), t.diag(features_b.var(dim=0))"),),
           "Only the variance of each feature"),
    Mutant("fd_std_as_covariance", FD, ((FD_COVS, "cov_a, cov_b = t.diag(features_a.std(dim=0)), t.diag(features_b.std(dim=0))"),),
           "Standard deviations are used"),
    Mutant("fd_uncentred_covariance", FD,
           ((FD_COVS, "cov_a = features_a.T @ features_a / (len(features_a) - 1)\n    "
                      "cov_b = features_b.T @ features_b / (len(features_b) - 1)"),),
           "does not subtract the mean"),
    Mutant("fd_np_cov_rows", FD, ((FD_COVS, "cov_a, cov_b = t.cov(features_a), t.cov(features_b)"),),
           "over the images instead of the features"),
    Mutant("fd_transposed_features", FD,
           ((FD_MEANS, "mu_a, mu_b = features_a.mean(dim=1), features_b.mean(dim=1)"),
            (FD_COVS, "cov_a, cov_b = t.cov(features_a), t.cov(features_b)")),
           "read transposed"),
    Mutant("fd_complex_left_over", FD, ((FD_EIG, "eigenvalues = t.linalg.eigvals(cov_a @ cov_b)"),), "complex number"),
    Mutant("fd_in_float32", FD, ((FD_MEANS, "features_a, features_b = features_a.float(), features_b.float()\n    " + FD_MEANS),),
           "float32"),
    Mutant("fd_centres_in_place", FD, ((FD_MEANS, FD_MEANS + "\n    features_a -= mu_a\n    features_b -= mu_b"),),
           "modifies its inputs in place"),
    Mutant("fd_float32_tensor", FD, ((FD_RETURN, "return distance.float()"),), "(a float32 tensor)"),
    Mutant("fd_returns_vector", FD, ((FD_RETURN, "return distance * t.ones(2, dtype=t.float64)"),), "return one number"),
    # The classifier score
    Mutant("cs_no_exp", CS, ((CS_RETURN, "return kl.mean().item()"),), "the score is its exponential"),
    Mutant("cs_bits_no_exp", CS, ((CS_RETURN, "import math\n    return kl.mean().item() / math.log(2)"),), "(in bits)"),
    Mutant("cs_log2", CS, ((CS_KL, "kl = (probs * (probs.log2() - marginal.log2())).sum(dim=1)"),), "in bits (log2)"),
    Mutant("cs_log10", CS, ((CS_KL, "import math\n    kl = (t.xlogy(probs, probs) - t.xlogy(probs, marginal)).sum(dim=1) / math.log(10)"),),
           "log10"),
    Mutant("cs_kl_swapped", CS, ((CS_KL, "kl = (t.xlogy(marginal, marginal) - t.xlogy(marginal, probs)).sum(dim=1)"),),
           "wrong way round"),
    Mutant("cs_geometric_marginal", CS, ((CS_MARGINAL, "marginal = probs.log().mean(dim=0, keepdim=True).exp()"),),
           "mean of the LOG probabilities"),
    Mutant("cs_normalised_geometric_marginal", CS,
           ((CS_MARGINAL, "marginal = probs.log().mean(dim=0, keepdim=True).exp()\n    marginal = marginal / marginal.sum()"),),
           "normalised geometric mean"),
    Mutant("cs_sum_over_images", CS, ((CS_RETURN, "return kl.sum().exp().item()"),), "summed over the images: average"),
    Mutant("cs_mean_of_exp", CS, ((CS_RETURN, "return kl.exp().mean().item()"),), "not the mean of exp"),
    Mutant("cs_marginal_over_classes", CS, ((CS_MARGINAL, "marginal = probs.mean(dim=1, keepdim=True)"),),
           "averaged over the classes of each image"),
    Mutant("cs_kl_over_images", CS, ((CS_KL, CS_KL.replace(".sum(dim=1)", ".sum(dim=0)")),),
           "summed over the images and averaged over the classes"),
    Mutant("cs_inverted", CS, ((CS_RETURN, "return (-kl.mean()).exp().item()"),), "1 / exp(mean KL)"),
    Mutant("cs_in_float32", CS, ((CS_MARGINAL, "probs = probs.float()\n    " + CS_MARGINAL),), "computed in float32"),
    Mutant("cs_zero_log_zero", CS, ((CS_KL, "kl = (probs * (probs.log() - marginal.log())).sum(dim=1)"),), "0 * log 0 = 0"),
)
