#!/usr/bin/python3
"""PyTorch references for every bdense layer: writes tests/ref/data/layers.bdref.

Run from the repository root with Debian's torch:
    /usr/bin/python3 tests/ref/make_layer_refs.py
tests/test_torch_layers.c reads the file (it needs no Python).

File format "BDREF001" (all integers and floats little-endian):
    magic     8 bytes  b"BDREF001"
    count     uint32   number of records
    count records, each:
        name_len  uint32   length of the name in bytes
        name      bytes    ASCII, no terminator, "<case>.<tensor>"
        ndim      uint32   0..8
        dims      ndim x int64
        data      prod(dims) x float32, C order (row-major)
Each case <case> has the records <case>.cfg (integer hyper-parameters stored
as float32, see below), its inputs and parameters, its outputs and, where the
layer has a backward, <case>.dout (a random upstream gradient) and the
gradients d<input> = autograd of sum(dout * out).

Inputs are drawn in float32; the forward and backward are then evaluated in
float64 with torch's own ops (F.conv2d, F.group_norm, F.interpolate nearest,
torch.cat, F.silu, F.linear, torch.softmax) and rounded to float32 once, so
the file holds float32-rounded exact values and the C test's differences are
its own rounding only.

Cases and their cfg:
    linear      cfg []               x (N,In) w (Out,In) b (Out)
    silu        cfg []               x (N,C,H,W)
    conv_*      cfg [stride, pad]    x (N,Cin,H,W) w (Cout,Cin,k,k) b (Cout)
    gn_*        cfg [G]              x (N,C,H,W) weight (C) bias (C); also mean, rstd (N,G)
    up          cfg []               x (N,C,H,W) -> out (N,C,2H,2W)
    cat         cfg []               a (N,C1,H,W) b (N,C2,H,W)
    addch       cfg []               x (N,C,H,W) e (N,C): out = x + e[:,:,None,None]
    add         cfg []               a, b (same shape)
    attn_*      cfg [heads]          qkv (N,3C,HW) per docs/spec.md sec. 6; out (N,C,HW), att (N,heads,HW,HW)
    temb        cfg [dim]            c_noise (N) -> out (N,dim)   (forward only)
    mse_*       cfg [weighted]       pred, target (N,D), w (N); out = loss (1); dpred (upstream 1)
"""
import math
import os
import struct

import torch
import torch.nn.functional as F

torch.manual_seed(20261126)
RECORDS = []


def rec(name, t):
    t = t.detach().to(torch.float32).contiguous()
    RECORDS.append((name, list(t.shape), t.numpy().astype("<f4").tobytes()))


def randn(*shape, scale=1.0):
    return (torch.randn(*shape, dtype=torch.float32) * scale)


def leaf(t32):
    """float32 draw -> float64 leaf that requires grad"""
    return t32.to(torch.float64).requires_grad_(True)


def case(name, cfg, inputs, fn, extra=None):
    """inputs: list of (tensor name, float32 tensor); fn(*float64 leaves) -> out"""
    rec(name + ".cfg", torch.tensor(cfg, dtype=torch.float32))
    leaves = []
    for tn, t in inputs:
        rec(name + "." + tn, t)
        leaves.append(leaf(t))
    out = fn(*leaves)
    rec(name + ".out", out)
    dout = randn(*out.shape)
    rec(name + ".dout", dout)
    (out * dout.to(torch.float64)).sum().backward()
    for (tn, _), l in zip(inputs, leaves):
        rec(name + ".d" + tn, l.grad)
    if extra:
        for en, et in extra(*[l.detach() for l in leaves]):
            rec(name + "." + en, et)


def main():
    # linear
    case("linear", [], [("x", randn(3, 7)), ("w", randn(5, 7, scale=0.4)), ("b", randn(5))],
         lambda x, w, b: F.linear(x, w, b))
    # silu
    case("silu", [], [("x", randn(2, 3, 4, 5, scale=2.0))], lambda x: F.silu(x))
    # conv2d
    for name, (N, Cin, H, W, Cout, k, s, p) in [
            ("conv_k3s1p1", (2, 3, 6, 5, 4, 3, 1, 1)),
            ("conv_k3s2p1", (2, 3, 7, 8, 5, 3, 2, 1)),
            ("conv_k3s2p1_even", (1, 4, 8, 8, 4, 3, 2, 1)),
            ("conv_k1s1p0", (2, 6, 4, 4, 3, 1, 1, 0)),
            ("conv_k3s1p0", (1, 2, 5, 6, 3, 3, 1, 0))]:
        case(name, [s, p],
             [("x", randn(N, Cin, H, W)), ("w", randn(Cout, Cin, k, k, scale=1 / math.sqrt(Cin * k * k))),
              ("b", randn(Cout, scale=0.5))],
             lambda x, w, b, s=s, p=p: F.conv2d(x, w, b, stride=s, padding=p))
    # groupnorm (eps 1e-5)
    for name, (N, C, H, W, G, off) in [("gn_g4", (2, 8, 5, 5, 4, 0.0)),
                                        ("gn_g1", (2, 6, 3, 3, 1, 2.0)),
                                        ("gn_g8", (1, 8, 4, 3, 8, -1.0))]:
        def stats(x, w, b, G=G):
            xs = x.reshape(x.shape[0], G, -1)
            m = xs.mean(-1)
            v = xs.var(-1, unbiased=False)
            return [("mean", m), ("rstd", 1.0 / torch.sqrt(v + 1e-5))]
        case(name, [G],
             [("x", randn(N, C, H, W, scale=1.5) + off), ("weight", 1.0 + randn(C, scale=0.3)),
              ("bias", randn(C, scale=0.3))],
             lambda x, w, b, G=G: F.group_norm(x, G, w, b, eps=1e-5), extra=stats)
    # nearest x2 upsample
    case("up", [], [("x", randn(2, 3, 4, 5))],
         lambda x: F.interpolate(x, scale_factor=2, mode="nearest"))
    # concat [a | b]
    case("cat", [], [("a", randn(2, 3, 4, 4)), ("b", randn(2, 5, 4, 4))],
         lambda a, b: torch.cat([a, b], dim=1))
    # per-channel broadcast add
    case("addch", [], [("x", randn(2, 4, 3, 3)), ("e", randn(2, 4))],
         lambda x, e: x + e[:, :, None, None])
    # residual add
    case("add", [], [("a", randn(2, 3, 5)), ("b", randn(2, 3, 5))], lambda a, b: a + b)

    # attention core, docs/spec.md sec. 6 layout: qkv channels [q | k | v], head h owns
    # channels h*Ch..(h+1)*Ch-1 inside each block
    def attention(qkv, heads):
        N, C3, HW = qkv.shape
        C = C3 // 3
        Ch = C // heads
        q, k, v = qkv[:, :C], qkv[:, C:2 * C], qkv[:, 2 * C:]
        q = q.reshape(N, heads, Ch, HW)
        k = k.reshape(N, heads, Ch, HW)
        v = v.reshape(N, heads, Ch, HW)
        logits = torch.einsum("nhci,nhcj->nhij", q, k) / math.sqrt(Ch)
        att = torch.softmax(logits, dim=-1)
        out = torch.einsum("nhij,nhcj->nhci", att, v).reshape(N, C, HW)
        return out, att

    for name, (N, C, HW, heads, sc) in [("attn_h1", (2, 4, 9, 1, 1.0)),
                                         ("attn_h2", (2, 8, 12, 2, 1.0)),
                                         ("attn_h4_peaky", (1, 8, 16, 4, 3.0))]:
        case(name, [heads], [("qkv", randn(N, 3 * C, HW, scale=sc))],
             lambda qkv, heads=heads: attention(qkv, heads)[0],
             extra=lambda qkv, heads=heads: [("att", attention(qkv, heads)[1])])

    # timestep embedding (forward only), docs/spec.md sec. 6, computed in float64
    t = torch.tensor([0.0, 0.001, 0.37, 0.5, 0.999, 1.0], dtype=torch.float32)
    c_noise = (1000.0 * t).to(torch.float32)  # what the network sees, in float32
    dim = 32
    half = dim // 2
    f = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float64) / half)
    ang = c_noise.to(torch.float64)[:, None] * f[None, :]
    rec("temb.cfg", torch.tensor([dim], dtype=torch.float32))
    rec("temb.c_noise", c_noise)
    rec("temb.out", torch.cat([torch.cos(ang), torch.sin(ang)], dim=1))

    # weighted MSE: (1/N) sum_n w_n mean_d (pred - target)^2
    for name, weighted in [("mse_plain", 0), ("mse_weighted", 1)]:
        N, D = 3, 10
        pred, target = randn(N, D), randn(N, D)
        w = randn(N).abs() + 0.1 if weighted else torch.ones(N)
        rec(name + ".cfg", torch.tensor([weighted], dtype=torch.float32))
        rec(name + ".target", target)
        rec(name + ".w", w)
        rec(name + ".pred", pred)
        p = leaf(pred)
        loss = (w.to(torch.float64) * ((p - target.to(torch.float64)) ** 2).mean(1)).mean()
        loss.backward()
        rec(name + ".out", loss.reshape(1))
        rec(name + ".dpred", p.grad)

    here = os.path.dirname(os.path.abspath(__file__))
    os.makedirs(os.path.join(here, "data"), exist_ok=True)
    path = os.path.join(here, "data", "layers.bdref")
    with open(path, "wb") as fh:
        fh.write(b"BDREF001")
        fh.write(struct.pack("<I", len(RECORDS)))
        for name, dims, data in RECORDS:
            nb = name.encode("ascii")
            fh.write(struct.pack("<I", len(nb)))
            fh.write(nb)
            fh.write(struct.pack("<I", len(dims)))
            for d in dims:
                fh.write(struct.pack("<q", d))
            fh.write(data)
    print("wrote %s: %d records, %d bytes" % (path, len(RECORDS), os.path.getsize(path)))


if __name__ == "__main__":
    main()
