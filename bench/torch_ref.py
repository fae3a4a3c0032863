#!/usr/bin/env python3
"""torch_ref.py - the bench/bench_unet.c measurements in PyTorch, on the same
docs/spec.md sec. 6 `small` UNet (tools/bdense_torch.py), one case per process:

    torch_ref.py CASE [threads] [reps]

CASE as bench_unet: train32 | train64 (fwd + bwd + grad clip + Adam + EMA),
pd64 (PD step, K = 2: Kt = 2 teacher DDIM sub-steps without grad, student
fwd + bwd + Adam + EMA), td8 (TD step, K = 2, N = 4 student steps on cached
trajectories, student input its own detached state), sample1 | sample64
(one network call in inference mode).  torch.set_num_threads(threads).
Prints one JSON line like bench_unet (median, p10, p90, min in ms, peak RSS).
"""
import json
import math
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
from bdense_torch import UNet, UNetConfig  # noqa: E402


def cosine_alpha_sigma(t):
    """docs/spec.md sec. 1 cosine schedule (s = 0.008, alpha >= 1e-4), float64."""
    s = 0.008
    t = t.to(torch.float64)
    a = torch.cos(math.pi / 2 * (t + s) / (1 + s)) / math.cos(math.pi / 2 * s / (1 + s))
    a = a.clamp(min=1e-4, max=1.0)
    return a, torch.sqrt((1 - a * a).clamp(min=0.0))


def col(v):
    return v.to(torch.float32)[:, None, None, None]


class Optim:
    """Adam (lr 2e-4 / 1e-4), global-norm clip 1.0, EMA 0.999: the trainer's step."""

    def __init__(self, model, lr):
        self.params = [p for p in model.parameters()]
        self.opt = torch.optim.Adam(self.params, lr=lr, betas=(0.9, 0.999), eps=1e-8)
        self.ema = [p.detach().clone() for p in self.params]

    def step(self):
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            torch._foreach_lerp_(self.ema, [p.detach() for p in self.params], 1 - 0.999)


def main():
    case = sys.argv[1] if len(sys.argv) > 1 else "train64"
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    reps = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    torch.manual_seed(1234)
    cfg = UNetConfig()
    net = UNet(cfg)
    n_params = sum(p.numel() for p in net.parameters())
    D = cfg.in_ch * cfg.image_size * cfg.image_size
    shape = (cfg.in_ch, cfg.image_size, cfg.image_size)

    if case.startswith("train"):
        B = int(case[5:])
        reps = reps or 15
        net.train()
        opt = Optim(net, 2e-4)
        x = torch.rand(B, *shape) * 2 - 1

        def step():
            t = torch.clamp(1 - torch.rand(B, dtype=torch.float64), min=1e-5)
            eps = torch.randn(B, *shape)
            a, s = cosine_alpha_sigma(t)
            z = col(a) * x + col(s) * eps
            target = col(a) * eps - col(s) * x  # v
            out = net(z, t.to(torch.float32))
            loss = F.mse_loss(out, target)
            loss.backward()
            opt.step()
    elif case.startswith("pd") or case.startswith("td"):
        td = case.startswith("td")
        B = int(case[2:])
        K, Kt = 2, 2
        N = 4 if td else 8
        reps = reps or (10 if td else 15)
        scfg = UNetConfig(branches=K)
        student = UNet(scfg)
        with torch.no_grad():  # every branch starts as the teacher's output
            sd = net.state_dict()
            for k, v in student.state_dict().items():
                v.copy_(sd[k] if sd[k].shape == v.shape else sd[k].repeat(K, *([1] * (v.dim() - 1))))
        net.eval()
        student.train()
        opt = Optim(student, 1e-4)
        grid = torch.linspace(1.0, 0.0, N + 1, dtype=torch.float64)
        tgrid = torch.linspace(1.0, 0.0, N * Kt + 1, dtype=torch.float64)
        x = torch.rand(B, *shape) * 2 - 1

        def x_hat_of(o, z, a, s):  # v parametrisation
            return col(a) * z - col(s) * o

        def branch_loss(o, z, t_idx_t, zs_list, a_t, s_t, s_list):
            """x-space B-DENSE loss, uniform weights, lambda = max(SNR, 1)."""
            lam = torch.clamp(a_t * a_t / (s_t * s_t), min=1.0).to(torch.float32)
            total = 0.0
            for k in range(K):
                a_k, s_k = s_list[k]
                r = (s_k / s_t)
                denom = (a_k - r * a_t)
                xt = (zs_list[k] - col(r) * z) / col(torch.where(denom.abs() > 0, denom, torch.ones_like(denom)))
                xh = x_hat_of(o[:, k * cfg.in_ch:(k + 1) * cfg.in_ch], z, a_t, s_t)
                total = total + (lam * ((xh - xt) ** 2).mean(dim=(1, 2, 3))).mean() / K
            return total

        if not td:
            def step():
                i = torch.randint(0, N, (B,))
                t = grid[i]
                a_t, s_t = cosine_alpha_sigma(t)
                z = col(a_t) * x + col(s_t) * torch.randn(B, *shape)
                zs, sl = [], []
                with torch.no_grad():
                    zc, tc = z, t
                    for j in range(1, Kt + 1):
                        tn = tgrid[i * Kt + j]
                        a_c, s_c = cosine_alpha_sigma(tc)
                        a_n, s_n = cosine_alpha_sigma(tn)
                        o = net(zc, tc.to(torch.float32))
                        xh = x_hat_of(o, zc, a_c, s_c)
                        eh = col(s_c) * zc + col(a_c) * o
                        zc = col(a_n) * xh + col(s_n) * eh
                        tc = tn
                        if j % (Kt // K) == 0:
                            zs.append(zc)
                            sl.append((a_n, s_n))
                o = student(z, t.to(torch.float32))
                loss = branch_loss(o, z, i, zs, a_t, s_t, sl)
                loss.backward()
                opt.step()
        else:
            # cached teacher trajectories (B, S+1, ...) solved once with DDIM
            S = N * Kt
            with torch.no_grad():
                zc = torch.randn(B, *shape)
                traj = [zc]
                for j in range(S):
                    tc = tgrid[j].repeat(B)
                    tn = tgrid[j + 1].repeat(B)
                    a_c, s_c = cosine_alpha_sigma(tc)
                    a_n, s_n = cosine_alpha_sigma(tn)
                    o = net(zc, tc.to(torch.float32))
                    zc = col(a_n) * x_hat_of(o, zc, a_c, s_c) + col(s_n) * (col(s_c) * zc + col(a_c) * o)
                    traj.append(zc)

            def step():
                z = traj[0]
                for i in range(N):
                    t = grid[i].repeat(B)
                    a_t, s_t = cosine_alpha_sigma(t)
                    zs = [traj[i * Kt + (k + 1) * (Kt // K)] for k in range(K)]
                    sl = [cosine_alpha_sigma(tgrid[i * Kt + (k + 1) * (Kt // K)].repeat(B)) for k in range(K)]
                    o = student(z, t.to(torch.float32))
                    loss = branch_loss(o, z, i, zs, a_t, s_t, sl) / N
                    loss.backward()
                    with torch.no_grad():  # own detached state, final branch's DDIM jump
                        a_u, s_u = cosine_alpha_sigma(grid[i + 1].repeat(B))
                        ol = o[:, (K - 1) * cfg.in_ch:].detach()
                        xh = x_hat_of(ol, z, a_t, s_t)
                        eh = col(s_t) * z + col(a_t) * ol
                        z = col(a_u) * xh + col(s_u) * eh
                opt.step()
    elif case.startswith("sample"):
        B = int(case[6:])
        reps = reps or (300 if B == 1 else 30)
        net.eval()
        z = torch.randn(B, *shape)
        tt = (torch.arange(B, dtype=torch.float32) + 0.5) / B

        def step():
            with torch.inference_mode():
                net(z, tt)
    else:
        print("unknown case", case, file=sys.stderr)
        return 2

    times, ctimes = [], []
    for r in range(-3, reps):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        if r >= 0:
            times.append(time.perf_counter() - t0)
            ctimes.append(time.process_time() - c0)
    times.sort()
    ctimes.sort()
    med = times[reps // 2]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({
        "impl": "torch", "case": case, "threads": threads, "batch": B, "reps": reps,
        "median_ms": round(1e3 * med, 3), "p10_ms": round(1e3 * times[reps // 10], 3),
        "p90_ms": round(1e3 * times[min(reps * 9 // 10, reps - 1)], 3),
        "min_ms": round(1e3 * times[0], 3), "cpu_ms": round(1e3 * ctimes[reps // 2], 3),
        "rss_mb": round(rss, 1),
        "torch": torch.__version__, "params": n_params}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
