"""
Muon for the transformer's hidden weight matrices, AdamW for everything else, in one optimizer, so
that train.py steps, clips, saves and resumes a single object as it does with plain AdamW.
Muon (https://kellerjordan.github.io/posts/muon/) replaces each matrix's momentum by the nearest
semi-orthogonal matrix, found with a few Newton-Schulz iterations: every direction of the update
gets the same size, however lopsided the gradient. torch.optim.Muon runs those iterations in
bfloat16, which CPUs without native bf16 emulate about ten times slower than float32; here they
run in bfloat16 when the training run computes in bf16 (GPUs that have it, CPUs with AMX), else in
float32.
"""

import torch


def orthogonalize(G, steps=5, dtype=torch.float32):
    """Approximately U V^T for each G = U S V^T of a batch of matrices (batch, m, n); quintic Newton-Schulz
    with coefficients chosen to converge fast rather than exactly (singular values land in ~[0.7, 1.2])."""
    a, b, c = 3.4445, -4.7750, 2.0315
    X = G.to(dtype)
    tall = X.size(-2) > X.size(-1)
    if tall:  # iterate on the smaller Gram matrix
        X = X.mT
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + 1e-7)  # spectral norm <= Frobenius norm <= 1
    # the plain iteration X <- aX + (bA + cA^2)X, A = X X^T, for near-square matrices and in 16 bits, where the
    # Gram rewrite below falls apart: its products of m x m matrices pile up rounding (singular values up to ~100)
    if X.size(-1) < 2 * X.size(-2) or X.element_size() < 4:
        for _ in range(steps):
            A = X @ X.mT
            X = torch.baddbmm(X, torch.baddbmm(A, A, A, beta=b, alpha=c), X, beta=a)
        return (X.mT if tall else X).to(G.dtype)
    # wide (m x n, n >= 2m): each step multiplies X by P = aI + bR + cR^2, a polynomial in R = X X^T, so the
    # steps run on m x m matrices alone (R <- P R P = P^2 R: they commute) and X is multiplied once at the
    # end; half the flops of the plain iteration for the MLP's 1:4 matrices, the same result to rounding in float32
    R = X @ X.mT
    eye = torch.eye(R.size(-1), dtype=dtype, device=R.device)
    Q = None
    for step in range(steps):
        P = torch.baddbmm(R, R, R, beta=b, alpha=c).add_(eye, alpha=a)
        Q = P if Q is None else P @ Q
        if step < steps - 1:
            R = P @ (P @ R)
    X = Q @ X
    return (X.mT if tall else X).to(G.dtype)


class MuonAdamW(torch.optim.Optimizer):
    """Param groups with use_muon=True get Muon (lr, momentum, weight_decay); the others AdamW
    (lr, betas, eps, weight_decay). ns_dtype is the precision of the Newton-Schulz iterations."""

    def __init__(self, param_groups, lr=0.02, momentum=0.95, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0,
                 ns_dtype=torch.float32):
        super().__init__(param_groups, dict(lr=lr, momentum=momentum, betas=betas, eps=eps,
                                            weight_decay=weight_decay, use_muon=False))
        self.ns_dtype = ns_dtype

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            params = [p for p in group['params'] if p.grad is not None]
            lr, wd = group['lr'], group['weight_decay']
            if group['use_muon']:
                by_shape = {}  # same-shaped matrices are orthogonalized together, in one batched matmul
                for p in params:
                    state = self.state[p]
                    if not state:
                        state['momentum_buffer'] = torch.zeros_like(p)
                    state['momentum_buffer'].lerp_(p.grad, 1 - group['momentum'])
                    nesterov = p.grad.lerp(state['momentum_buffer'], group['momentum'])
                    by_shape.setdefault(p.shape, []).append((p, nesterov))
                for shape, pairs in by_shape.items():
                    updates = orthogonalize(torch.stack([g for _, g in pairs]), dtype=self.ns_dtype)
                    scale = max(1.0, shape[0] / shape[1]) ** 0.5  # keeps tall matrices' updates as large
                    for (p, _), update in zip(pairs, updates):
                        p.mul_(1 - lr * wd).add_(update, alpha=-lr * scale)
            else:
                beta1, beta2 = group['betas']
                for p in params:
                    state = self.state[p]
                    if not state:
                        state.update(step=torch.zeros(()), exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
                    state['step'] += 1
                    step = state['step'].item()
                    state['exp_avg'].lerp_(p.grad, 1 - beta1)
                    state['exp_avg_sq'].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                    denominator = (state['exp_avg_sq'] / (1 - beta2 ** step)).sqrt_().add_(group['eps'])
                    p.mul_(1 - lr * wd).addcdiv_(state['exp_avg'], denominator, value=-lr / (1 - beta1 ** step))
