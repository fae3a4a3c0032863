#!/usr/bin/env python3
"""Conformance vectors for tests/test_unet.c (run with /usr/bin/python3 from
the repository root; needs torch, uses tools/bdense_torch.py).

    /usr/bin/python3 tests/ref/make_unet_refs.py          write the torch -> bdense vectors
    /usr/bin/python3 tests/ref/make_unet_refs.py --check  check bdense -> torch: load the
        checkpoint that test_unet wrote with bdense (tests/ref/data/unet_tiny_c*.safetensors,
        regenerate with BDENSE_WRITE_REFS=1 build/tests/test_unet) and compare torch's
        output with bdense's (relative L2 must be <= 1e-5)

Files (tests/ref/data/):
  unet_tiny.safetensors     a tiny UNet written by PyTorch, every weight random and non-zero
  unet_tiny_io.safetensors  z, t and PyTorch's output of that model
  unet_small_io.safetensors z, t and PyTorch's output of the `small` UNet whose weights come
                            from formula_weights() (C re-creates them: no 4 MB file committed)
  unet_deep_io.safetensors  the same for a config with nres 2, 3 levels, attention at 0 and 2, 4 heads
  unet_small_grad.safetensors  dout, dz and per-tensor gradient statistics of that model
                            (PyTorch autograd) for the backward-pass comparison
"""
import math
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
from bdense_torch import UNet, UNetConfig, load_checkpoint, read_safetensors, save_checkpoint, write_safetensors  # noqa: E402

DATA = os.path.join(HERE, "data")
TINY = UNetConfig(in_ch=2, image_size=16, ch=8, ch_mult=(1, 2), nres=1, attn_levels=(0, 1),
                  groups=2, heads=2, branches=2)
SMALL = UNetConfig()
DEEP = UNetConfig(in_ch=3, image_size=8, ch=8, ch_mult=(1, 1, 2), nres=2, attn_levels=(0, 2),
                  groups=4, heads=4, branches=1)


def fnv1a(s: str) -> int:
    h = 0xCBF29CE484222325
    for b in s.encode():
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def formula_weights(model: UNet) -> None:
    """Deterministic non-zero weights that C recomputes (test_unet.c
    formula_weights): phase = (fnv1a(name) % 1000) / 1000 * 2 pi;
    w_i = s * sin(phase + 0.37 i) in double, rounded to float32, with
    s = 1/sqrt(fan_in) for conv/linear weights, 0.1 for biases, and
    GroupNorm weights 1 + 0.1 sin(...)."""
    sd = model.state_dict()
    for name, p in sd.items():
        ph = (fnv1a(name) % 1000) / 1000.0 * 2.0 * math.pi
        i = torch.arange(p.numel(), dtype=torch.float64)
        v = torch.sin(ph + 0.37 * i)
        if p.dim() > 1:
            v = v / math.sqrt(p.numel() // p.shape[0])
        elif "norm" in name and name.endswith(".weight"):
            v = 1.0 + 0.1 * v
        else:
            v = 0.1 * v
        p.copy_(v.to(torch.float32).reshape(p.shape))


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.norm((a - b).double()) / torch.linalg.norm(b.double()))


def main() -> int:
    torch.set_num_threads(1)
    os.makedirs(DATA, exist_ok=True)
    if "--check" in sys.argv:
        model, meta = load_checkpoint(os.path.join(DATA, "unet_tiny_c.safetensors"))
        io, _ = read_safetensors(os.path.join(DATA, "unet_tiny_c_io.safetensors"))
        with torch.no_grad():
            out = model(io["z"], io["t"])
        e = rel_l2(out, io["out"])
        print(f"bdense -> torch (tiny, bdense-initialised, C-written checkpoint): rel L2 = {e:.3e}")
        return 0 if e <= 1e-5 else 1
    g = torch.Generator().manual_seed(20261126)
    # tiny: PyTorch default init, then every tensor (GN, zero-able ones too) made random
    torch.manual_seed(7)
    tiny = UNet(TINY)
    with torch.no_grad():
        for name, p in tiny.state_dict().items():
            if p.dim() == 1:
                base = 1.0 if ("norm" in name and name.endswith(".weight")) else 0.0
                p.copy_(base + 0.2 * torch.randn(p.shape, generator=g))
    save_checkpoint(os.path.join(DATA, "unet_tiny.safetensors"), tiny, {"param": "v", "schedule": "cosine"})
    N = 3
    z = torch.randn(N, TINY.in_ch, TINY.image_size, TINY.image_size, generator=g)
    t = torch.tensor([0.0, 0.37, 1.0], dtype=torch.float32)
    with torch.no_grad():
        out = tiny(z, t)
    write_safetensors(os.path.join(DATA, "unet_tiny_io.safetensors"), {"z": z, "t": t, "out": out},
                      {"note": "z, t -> out of unet_tiny.safetensors (PyTorch)"})
    # reload check (our own reader/writer round trip)
    m2, _ = load_checkpoint(os.path.join(DATA, "unet_tiny.safetensors"))
    with torch.no_grad():
        assert torch.equal(m2(z, t), out)
    # small with formula weights
    small = UNet(SMALL)
    with torch.no_grad():
        formula_weights(small)
    N = 2
    z = torch.randn(N, SMALL.in_ch, SMALL.image_size, SMALL.image_size, generator=g)
    t = torch.tensor([0.05, 0.73], dtype=torch.float32)
    with torch.no_grad():
        out = small(z, t)
    write_safetensors(os.path.join(DATA, "unet_small_io.safetensors"), {"z": z, "t": t, "out": out},
                      {"note": "z, t -> out of the small UNet with formula_weights (PyTorch)"})
    # deep: nres 2 (attention and skip indices beyond 0/1), 4 heads, formula weights
    deep = UNet(DEEP)
    with torch.no_grad():
        formula_weights(deep)
        zd = torch.randn(2, DEEP.in_ch, DEEP.image_size, DEEP.image_size, generator=g)
        td = torch.tensor([0.9, 0.2], dtype=torch.float32)
        write_safetensors(os.path.join(DATA, "unet_deep_io.safetensors"),
                          {"z": zd, "t": td, "out": deep(zd, td)},
                          {"note": "z, t -> out of the deep UNet with formula_weights (PyTorch)",
                           **DEEP.to_metadata()})
    # gradients of L = sum(dout * out) for the same small model: dz and, per
    # parameter tensor, [sum(g), |g|_2, sum(g_i cos(0.11 i))] (the full
    # gradients would be 4 MB)
    small.zero_grad()
    zg = z.clone().requires_grad_(True)
    out = small(zg, t)
    dout = torch.randn(out.shape, generator=g)
    out.backward(dout)
    gt = {"dout": dout, "dz": zg.grad.detach()}
    for name, p in small.named_parameters():
        gr = p.grad.detach().double().reshape(-1)
        u = torch.cos(0.11 * torch.arange(gr.numel(), dtype=torch.float64))
        gt["g." + name] = torch.tensor([float(gr.sum()), float(gr.norm()), float((gr * u).sum())],
                                       dtype=torch.float32)
    write_safetensors(os.path.join(DATA, "unet_small_grad.safetensors"), gt,
                      {"note": "gradients of sum(dout * out) for unet_small_io's z, t (PyTorch autograd)"})
    print("params tiny", sum(p.numel() for p in tiny.parameters()),
          "small", sum(p.numel() for p in small.parameters()))
    print("small out std %.4f" % float(out.std()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
