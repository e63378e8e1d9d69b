"""The sparse divergence of the logit method and the served-teacher on-policy method: a teacher known only by
its top-K logprobs per token, plus a tail bucket for the rest of its probability mass.

    per_token = sparse_divergence(student_logprobs, teacher_ids, teacher_logprobs, valid, beta)
"""

from __future__ import annotations


def sparse_divergence(student_logprobs, teacher_ids, teacher_logprobs, valid, beta: float):
    """Per-position generalized JSD between teacher and student on the teacher's top-K ids + a tail bucket.

    student_logprobs (N, V) log-softmax; teacher_ids / teacher_logprobs / valid (N, K). Returns (N,)."""
    import torch

    neg_inf = torch.tensor(float("-inf"), dtype=student_logprobs.dtype, device=student_logprobs.device)
    student_top = torch.where(valid, student_logprobs.gather(-1, teacher_ids), neg_inf)
    teacher_top = torch.where(valid, teacher_logprobs.to(student_logprobs.dtype), neg_inf)

    def with_tail(top):  # log(1 - sum exp(top)) as the (K+1)-th element
        mass = torch.logsumexp(top, dim=-1, keepdim=True).clamp(max=-1e-7)
        return torch.cat([top, torch.log(-torch.expm1(mass))], dim=-1)

    log_s, log_t = with_tail(student_top), with_tail(teacher_top)
    support = torch.cat([valid, torch.ones_like(valid[..., :1])], dim=-1)
    p_s, p_t = log_s.exp(), log_t.exp()

    def kl(p, log_p, log_q):
        return torch.where(support, p * (log_p - log_q), torch.zeros_like(p)).sum(-1)

    if beta == 0:
        return kl(p_t, log_t, log_s)
    if beta == 1:
        return kl(p_s, log_s, log_t)
    mixture = torch.log(((1 - beta) * p_s + beta * p_t).clamp_min(torch.finfo(p_s.dtype).tiny))
    return beta * kl(p_t, log_t, mixture) + (1 - beta) * kl(p_s, log_s, mixture)
