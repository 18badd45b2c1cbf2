"""Realistic mistakes in part 1, each made by a few text edits of the lesson source: the test that
must catch it and a distinctive part of the diagnosis that test must give."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mistake:
    name: str
    test: str  # an exercise of part 1
    edits: tuple[tuple[str, str], ...]
    message: str


Q2 = "x = (1 - beta).sqrt() * x + beta.sqrt() * t.randn_like(x)"
Q4_AB = "alpha_bar = t.prod(1 - betas[:num_steps])"
Q4_MIX = "return alpha_bar.sqrt() * x + (1 - alpha_bar).sqrt() * t.randn_like(x)"
AB_BUFFER = 'self.register_buffer("alpha_bars", t.cumprod(alphas, dim=0))'
RANDINT = "num_steps = t.randint(1, max_steps + 1, (img.shape[0],), device=img.device)"
NI_MIX = "noised = alpha_bar.sqrt() * img + (1 - alpha_bar).sqrt() * noise"
RC = "return (noisy_img - (1 - alpha_bar).sqrt() * noise) / alpha_bar.sqrt()"
TR_LOSS = "loss = nn.functional.mse_loss(model(noised, num_steps), noise)"
S_MEAN = "mean = (x - beta / (1 - alpha_bar).sqrt() * predicted_noise) / alpha.sqrt()"

MISTAKES = (
    # normalize_img
    Mistake("norm_to_unit_range", "normalize_img", (("return img * 2 - 1", "return (img - img.min()) / (img.max() - img.min())"),),
            "Your values end up in [0, 1]"),
    Mistake("norm_shift_only", "normalize_img", (("return img * 2 - 1", "return img - 0.5"),), "[-0.5, 0.5]"),
    Mistake("denorm_brackets", "normalize_img", (("return (img + 1) / 2", "return img / 2 + 1"),), "The brackets"),
    # linear_schedule
    Mistake("schedule_arange", "linear_schedule",
            (("return t.linspace(min_noise, max_noise, max_steps)",
              "return min_noise + (max_noise - min_noise) * t.arange(max_steps) / max_steps"),),
            "Your last beta is not max_noise"),
    Mistake("schedule_reversed", "linear_schedule",
            (("return t.linspace(min_noise, max_noise, max_steps)", "return t.linspace(max_noise, min_noise, max_steps)"),),
            "Your betas fall"),
    # q_eq2
    Mistake("q2_no_sqrt_scale", "q_eq2", ((Q2, "x = (1 - beta) * x + beta.sqrt() * t.randn_like(x)"),),
            "Scale by sqrt(1 - beta_t), not (1 - beta_t)"),
    Mistake("q2_no_sqrt_noise", "q_eq2", ((Q2, "x = (1 - beta).sqrt() * x + beta * t.randn_like(x)"),),
            "multiply it by sqrt(beta_t), not beta_t"),
    Mistake("q2_swapped", "q_eq2", ((Q2, "x = beta.sqrt() * x + (1 - beta).sqrt() * t.randn_like(x)"),),
            "The factors are swapped"),
    Mistake("q2_off_by_one", "q_eq2", (("for beta in betas[:num_steps]:", "for beta in betas[1 : num_steps + 1]:"),),
            "step 1 uses beta_1, which is betas[0]"),
    Mistake("q2_one_step_short", "q_eq2", (("for beta in betas[:num_steps]:", "for beta in betas[: num_steps - 1]:"),),
            "You apply 4 steps instead of 5"),
    Mistake("q2_same_noise", "q_eq2",
            (("for beta in betas[:num_steps]:", "noise = t.randn_like(x)\n    for beta in betas[:num_steps]:"),
             (Q2, "x = (1 - beta).sqrt() * x + beta.sqrt() * noise")),
            "same noise at every step"),
    # q_eq4
    Mistake("q4_sum_of_betas", "q_eq4", ((Q4_AB, "alpha_bar = 1 - t.sum(betas[:num_steps])"),), "You add the betas"),
    Mistake("q4_no_sqrt", "q_eq4", ((Q4_MIX, "return alpha_bar * x + (1 - alpha_bar) * t.randn_like(x)"),),
            "Both factors need a square root"),
    Mistake("q4_noise_no_sqrt", "q_eq4", ((Q4_MIX, "return alpha_bar.sqrt() * x + (1 - alpha_bar) * t.randn_like(x)"),),
            "The noise's standard deviation is sqrt(1 - alpha_bar)"),
    Mistake("q4_last_alpha_only", "q_eq4", ((Q4_AB, "alpha_bar = 1 - betas[num_steps - 1]"),), "You use only step 5's alpha"),
    Mistake("q4_one_step_extra", "q_eq4", ((Q4_AB, "alpha_bar = t.prod(1 - betas[: num_steps + 1])"),),
            "You apply 6 steps instead of 5"),
    Mistake("q4_product_of_betas", "q_eq4", ((Q4_AB, "alpha_bar = t.prod(betas[:num_steps])"),), "You multiply the betas"),
    # NoiseSchedule
    Mistake("schedule_cumsum", "noise_schedule",
            ((AB_BUFFER, 'self.register_buffer("alpha_bars", t.cumsum(alphas, dim=0))'),), "cumulative *product*"),
    Mistake("schedule_cumprod_betas", "noise_schedule",
            ((AB_BUFFER, 'self.register_buffer("alpha_bars", t.cumprod(betas, dim=0))'),), "not of the betas"),
    Mistake("schedule_lookup_off_by_one", "noise_schedule",
            (("return table[steps.long() - 1]", "return table[steps.long()]"),), "Off by one: step s is stored at index s - 1"),
    Mistake("schedule_no_range_check", "noise_schedule",
            (("        if ((steps < 1) | (steps > self.max_steps)).any():\n"
              "            raise IndexError(f\"num_steps must lie in 1..{self.max_steps}, got {steps.tolist()}\")\n"
              "        return table[steps.long() - 1]", "        return table[steps.long() - 1]"),),
            "raise IndexError for steps outside 1..10"),
    Mistake("schedule_attribute_not_buffer", "noise_schedule",
            (('self.register_buffer("betas", betas)', "self.betas = betas"),), "has no buffer betas"),
    # noise_img
    Mistake("noise_img_randint_excludes_top", "noise_img",
            ((RANDINT, "num_steps = t.randint(1, max_steps, (img.shape[0],), device=img.device)"),), "never drew step 50"),
    Mistake("noise_img_zero_based", "noise_img",
            ((RANDINT, "num_steps = t.randint(0, max_steps, (img.shape[0],), device=img.device)"),
             ("alpha_bar = _per_image(noise_schedule.alpha_bar(num_steps))\n    noised",
              "alpha_bar = _per_image(noise_schedule.alpha_bars[num_steps])\n    noised")),
            "drew steps from 0 to 49"),
    Mistake("noise_img_no_sqrt", "noise_img", ((NI_MIX, "noised = alpha_bar * img + (1 - alpha_bar) * noise"),),
            "Take square roots"),
    Mistake("noise_img_uniform_noise", "noise_img", (("noise = t.randn_like(img)", "noise = t.rand_like(img)"),),
            "Draw it with t.randn_like(img)"),
    Mistake("noise_img_returns_other_noise", "noise_img",
            ((NI_MIX, "noised = alpha_bar.sqrt() * img + (1 - alpha_bar).sqrt() * t.randn_like(img)"),),
            "Return the very noise you added"),
    Mistake("noise_img_ignores_max_steps", "noise_img",
            (("max_steps = len(noise_schedule) if max_steps is None else max_steps", "max_steps = len(noise_schedule)"),),
            "with max_steps given, draw from 1..max_steps"),
    # reconstruct
    Mistake("reconstruct_adds_noise", "reconstruct",
            ((RC, "return (noisy_img + (1 - alpha_bar).sqrt() * noise) / alpha_bar.sqrt()"),), "Subtract the noise"),
    Mistake("reconstruct_divides_by_alpha_bar", "reconstruct",
            ((RC, "return (noisy_img - (1 - alpha_bar).sqrt() * noise) / alpha_bar"),), "Divide by sqrt(alpha_bar), not alpha_bar"),
    # TinyDiffuser
    Mistake("tiny_ignores_steps", "tiny_diffuser",
            (("out = self.layers(t.cat([flat, steps], dim=1))", "out = self.layers(t.cat([flat, 0 * steps], dim=1))"),),
            "does not change with num_steps"),
    Mistake("tiny_centres_on_batch", "tiny_diffuser",
            (('flat = rearrange(images, "b c h w -> b (c h w)")',
              'flat = rearrange(images, "b c h w -> b (c h w)")\n        flat = flat - flat.mean(0)'),),
            "depends on the other images of the batch"),
    # train
    Mistake("train_loss_against_image", "train_loop",
            ((TR_LOSS, "loss = nn.functional.mse_loss(model(noised, num_steps), images)"),), "compares the prediction with the clean image"),
    Mistake("train_summed_loss", "train_loop",
            ((TR_LOSS, 'loss = nn.functional.mse_loss(model(noised, num_steps), noise, reduction="sum")'),), "Your loss is a sum"),
    Mistake("train_never_steps", "train_loop", (("            optimiser.step()\n", ""),), "parameters never changed"),
    Mistake("train_one_epoch", "train_loop", (("for _ in range(config.epochs):", "for _ in range(1):"),), "batches of sizes"),
    Mistake("train_forgets_schedule", "train_loop", (("    model.noise_schedule = schedule\n", ""),), "model.noise_schedule should be"),
    # sample
    Mistake("sample_sign_flipped", "ddpm_sample",
            ((S_MEAN, "mean = (x + beta / (1 - alpha_bar).sqrt() * predicted_noise) / alpha.sqrt()"),), "The sign of the noise term is flipped"),
    Mistake("sample_alpha_bar_divisor", "ddpm_sample",
            ((S_MEAN, "mean = (x - beta / (1 - alpha_bar).sqrt() * predicted_noise) / alpha_bar.sqrt()"),), "not sqrt(alpha_bar_t)"),
    Mistake("sample_no_sqrt_in_factor", "ddpm_sample",
            ((S_MEAN, "mean = (x - beta / (1 - alpha_bar) * predicted_noise) / alpha.sqrt()"),), "Take the square root of 1 - alpha_bar"),
    Mistake("sample_noise_at_last_step", "ddpm_sample", (("        if step > 1:\n            z =", "        if step >= 1:\n            z ="),),
            "The last step (t = 1) adds noise"),
    Mistake("sample_sigma_is_beta", "ddpm_sample", (("x = mean + beta.sqrt() * z", "x = mean + beta * z"),), "You multiply z by beta_t"),
    Mistake("sample_ignores_seed", "ddpm_sample",
            (("generator = None if seed is None else t.Generator(device=device).manual_seed(seed)", "generator = None"),),
            "start from different noise"),
    Mistake("sample_forgets_the_steps", "ddpm_sample", (("return steps if return_all_steps else x", "return x"),),
            "return the list of all the batches"),
    Mistake("sample_list_without_start", "ddpm_sample", (("    steps = [x]\n", "    steps = []\n"),),
            "should return 11 batches, the initial noise x_T first"),
    Mistake("tiny_steps_not_used_in_forward", "tiny_diffuser",
            (("steps = rearrange(num_steps.float() / self.max_steps, \"b -> b 1\")",
              "steps = rearrange(t.ones_like(num_steps).float(), \"b -> b 1\")"),), "does not change with num_steps"),
    Mistake("train_budget_checked_per_epoch", "train_loop",
            (("            if config.time_budget_s is not None and time.perf_counter() - start > config.time_budget_s:\n"
              "                return TrainLog(losses, time.perf_counter() - start)\n",
              ""),
             ("    return TrainLog(losses, time.perf_counter() - start)\n    ### END SOLUTION",
              "        if config.time_budget_s is not None and time.perf_counter() - start > config.time_budget_s:\n"
              "            break\n    return TrainLog(losses, time.perf_counter() - start)\n    ### END SOLUTION")),
            "With time_budget_s=0.0, train took 3 steps"),
    Mistake("sample_steps_from_zero", "ddpm_sample",
            (("for step in range(len(schedule), 0, -1):", "for step in range(len(schedule) - 1, -1, -1):"),),
            "num_steps must lie in 1..10"),
)
