#!/usr/bin/env python3
"""PyTorch eager CUDA reference for the bdense CUDA benchmark.

The docs/spec.md sec. 6 UNet written out plainly (standalone: no bdense import), timed
the way tests/cuda/run_all.sh times bdense:
  train  one teacher training step at batch B: draw t and eps, z_t, forward,
         v-target MSE, backward, grad-norm clip, AdamW, EMA  (median ms)
  sample one network call at batch 1 in no_grad (median ms per call, the
         cost of one NFE of a sampler)
float32 by default (TF32 off for matmul and cuDNN); --tf32 switches both on.
Prints one JSON line:  {"train_ms": ..., "sample_ms": ..., "params": ...}.
Without CUDA it prints "no GPU, skipped" and exits 0.

    /usr/bin/python3 bench/cuda_torch_ref.py --batch 128 --iters 30
"""
import argparse
import json
import math
import statistics
import sys
import time

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except Exception as e:  # pragma: no cover - no torch at all
    print("torch unavailable (%s), skipped" % e)
    sys.exit(0)


def timestep_embedding(c, dim):
    half = dim // 2
    f = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float64, device=c.device) / half)
    a = c.double()[:, None] * f[None, :]
    return torch.cat([torch.cos(a), torch.sin(a)], dim=1).float()


class ResBlock(nn.Module):
    def __init__(self, cin, cout, tdim, groups):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=1e-5)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.temb = nn.Linear(tdim, cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=1e-5)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.temb(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.skip(x) if self.skip is not None else x) + h


class Attention(nn.Module):
    def __init__(self, c, groups, heads):
        super().__init__()
        self.norm = nn.GroupNorm(groups, c, eps=1e-5)
        self.qkv = nn.Conv2d(c, 3 * c, 1)
        self.proj = nn.Conv2d(c, c, 1)
        self.heads = heads

    def forward(self, h):
        n, c, hh, ww = h.shape
        ch = c // self.heads
        qkv = self.qkv(self.norm(h)).reshape(n, 3, self.heads, ch, hh * ww)
        q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]  # (n, heads, ch, HW)
        a = torch.softmax(torch.einsum("nhci,nhcj->nhij", q, k) / math.sqrt(ch), dim=-1)
        o = torch.einsum("nhcj,nhij->nhci", v, a).reshape(n, c, hh, ww)
        return h + self.proj(o)


class UNet(nn.Module):
    def __init__(self, in_ch=1, ch=32, mult=(1, 2, 2), nres=1, attn=(2,), groups=8, heads=1, branches=1):
        super().__init__()
        self.ch, self.nres, self.attn, L = ch, nres, set(attn), len(mult)
        tdim = 4 * ch
        self.time_mlp = nn.Sequential(nn.Linear(ch, tdim), nn.SiLU(), nn.Linear(tdim, tdim))
        self.conv_in = nn.Conv2d(in_ch, ch, 3, padding=1)
        chans, c = [ch], ch
        self.down = nn.ModuleList()
        for l in range(L):
            lvl = nn.Module()
            lvl.res, lvl.attn = nn.ModuleList(), nn.ModuleDict()
            for j in range(nres):
                lvl.res.append(ResBlock(c, ch * mult[l], tdim, groups))
                c = ch * mult[l]
                if l in self.attn:
                    lvl.attn[str(j)] = Attention(c, groups, heads)
                chans.append(c)
            if l < L - 1:
                lvl.down = nn.Conv2d(c, c, 3, stride=2, padding=1)
                chans.append(c)
            self.down.append(lvl)
        self.mid = nn.Module()
        self.mid.res1 = ResBlock(c, c, tdim, groups)
        self.mid.attn = Attention(c, groups, heads)
        self.mid.res2 = ResBlock(c, c, tdim, groups)
        self.up = nn.ModuleList([None] * L)
        for l in reversed(range(L)):
            lvl = nn.Module()
            lvl.res, lvl.attn = nn.ModuleList(), nn.ModuleDict()
            for j in range(nres + 1):
                lvl.res.append(ResBlock(c + chans.pop(), ch * mult[l], tdim, groups))
                c = ch * mult[l]
                if l in self.attn:
                    lvl.attn[str(j)] = Attention(c, groups, heads)
            if l > 0:
                lvl.up = nn.Conv2d(c, c, 3, padding=1)
            self.up[l] = lvl
        self.norm_out = nn.GroupNorm(groups, c, eps=1e-5)
        self.conv_out = nn.Conv2d(c, branches * in_ch, 3, padding=1)

    def forward(self, z, t):
        temb = self.time_mlp(timestep_embedding(1000.0 * t, self.ch))
        h = self.conv_in(z)
        hs = [h]
        L = len(self.down)
        for l in range(L):
            lvl = self.down[l]
            for j in range(self.nres):
                h = lvl.res[j](h, temb)
                if str(j) in lvl.attn:
                    h = lvl.attn[str(j)](h)
                hs.append(h)
            if l < L - 1:
                h = lvl.down(h)
                hs.append(h)
        h = self.mid.res2(self.mid.attn(self.mid.res1(h, temb)), temb)
        for l in reversed(range(L)):
            lvl = self.up[l]
            for j in range(self.nres + 1):
                h = lvl.res[j](torch.cat([h, hs.pop()], dim=1), temb)
                if str(j) in lvl.attn:
                    h = lvl.attn[str(j)](h)
            if l > 0:
                h = lvl.up(F.interpolate(h, scale_factor=2, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))


def cosine_alpha_sigma(t):
    s = 0.008
    a = torch.cos(math.pi / 2 * (t + s) / (1 + s)) / math.cos(math.pi / 2 * s / (1 + s))
    a = a.clamp(min=1e-4, max=1.0)
    return a, torch.sqrt(1 - a * a)


def median_ms(fn, iters, warmup):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--sample-calls", type=int, default=200)
    ap.add_argument("--tf32", action="store_true")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("no GPU, skipped")
        return 0
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda")
    torch.manual_seed(0)
    net = UNet().to(dev)
    n_params = sum(p.numel() for p in net.parameters())
    ema = [p.detach().clone() for p in net.parameters()]
    opt = torch.optim.AdamW(net.parameters(), lr=2e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    x = torch.rand(args.batch, 1, 28, 28, device=dev) * 2 - 1

    def train_step():
        t = (1 - torch.rand(args.batch, device=dev)).clamp(min=1e-5)
        eps = torch.randn_like(x)
        a, s = cosine_alpha_sigma(t)
        a, s = a[:, None, None, None], s[:, None, None, None]
        z = a * x + s * eps
        target = a * eps - s * x
        opt.zero_grad(set_to_none=False)
        loss = F.mse_loss(net(z, t), target)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            torch._foreach_mul_(ema, 0.999)
            torch._foreach_add_(ema, [p.detach() for p in net.parameters()], alpha=0.001)

    train_ms = median_ms(train_step, args.iters, args.warmup)
    z1 = torch.randn(1, 1, 28, 28, device=dev)
    t1 = torch.full((1,), 0.5, device=dev)

    def sample_call():
        with torch.no_grad():
            net(z1, t1)

    sample_ms = median_ms(sample_call, args.sample_calls, 20)
    print(json.dumps({"train_ms": train_ms, "sample_ms": sample_ms, "params": n_params,
                      "batch": args.batch, "tf32": bool(args.tf32),
                      "device": torch.cuda.get_device_name(0), "torch": torch.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
