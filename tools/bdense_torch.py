#!/usr/bin/env python3
"""bdense_torch.py - an independent PyTorch implementation of the bdense
reference UNet (docs/spec.md sec. 6) plus pure-Python load/save of bdense safetensors
checkpoints (docs/spec.md sec. 7).  Needs only torch and the standard library (works with
Debian's python3-torch: run it with /usr/bin/python3).

    from bdense_torch import UNet, UNetConfig, load_checkpoint, save_checkpoint
    model, meta = load_checkpoint("teacher.safetensors")   # model in eval mode
    out = model(z, t)        # z (N,C,H,W) float32, t (N,) in [0,1]; c_noise = 1000 t
    save_checkpoint("m.safetensors", model, meta)

Command line:
    bdense_torch.py forward CKPT IN.npy T OUT.npy   one network call (all branches)
    bdense_torch.py info CKPT                       config and parameter count
"""
import json
import math
import struct
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class UNetConfig:
    in_ch: int = 1
    image_size: int = 28
    ch: int = 32
    ch_mult: Tuple[int, ...] = (1, 2, 2)
    nres: int = 1
    attn_levels: Tuple[int, ...] = (2,)
    groups: int = 8
    heads: int = 1
    branches: int = 1

    def to_metadata(self) -> Dict[str, str]:
        return {
            "in_ch": str(self.in_ch),
            "image_size": str(self.image_size),
            "ch": str(self.ch),
            "ch_mult": ",".join(str(m) for m in self.ch_mult),
            "nres": str(self.nres),
            "attn_levels": ",".join(str(a) for a in self.attn_levels),
            "groups": str(self.groups),
            "heads": str(self.heads),
            "branches": str(self.branches),
        }

    @staticmethod
    def from_metadata(meta: Dict[str, str]) -> "UNetConfig":
        def ints(s):
            return tuple(int(v) for v in s.split(",")) if s else ()
        return UNetConfig(
            in_ch=int(meta["in_ch"]), image_size=int(meta["image_size"]), ch=int(meta["ch"]),
            ch_mult=ints(meta["ch_mult"]), nres=int(meta["nres"]),
            attn_levels=ints(meta.get("attn_levels", "")), groups=int(meta["groups"]),
            heads=int(meta["heads"]), branches=int(meta["branches"]))


def timestep_embedding(c_noise: torch.Tensor, dim: int) -> torch.Tensor:
    """[cos(c f_i), sin(c f_i)], f_i = exp(-ln(1e4) i / half).  Computed in
    float64 and rounded once to float32 (as bdense does)."""
    half = dim // 2
    i = torch.arange(half, dtype=torch.float64)
    f = torch.exp(-math.log(10000.0) * i / half)
    a = c_noise.to(torch.float64)[:, None] * f[None, :]
    return torch.cat([torch.cos(a), torch.sin(a)], dim=1).to(torch.float32)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, tdim: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=1e-5)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.temb = nn.Linear(tdim, cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=1e-5)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, stemb):  # stemb = SiLU(temb)
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.temb(stemb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.skip(x) if self.skip is not None else x) + h


class Attention(nn.Module):
    def __init__(self, c: int, heads: int, groups: int):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(groups, c, eps=1e-5)
        self.qkv = nn.Conv2d(c, 3 * c, 1)
        self.proj = nn.Conv2d(c, c, 1)

    def forward(self, h):
        N, C, H, W = h.shape
        ch = C // self.heads
        qkv = self.qkv(self.norm(h)).reshape(N, 3, self.heads, ch, H * W)
        q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]            # (N, heads, ch, HW)
        a = torch.einsum("nhci,nhcj->nhij", q, k) / math.sqrt(ch)
        a = torch.softmax(a, dim=-1)                          # over keys j
        o = torch.einsum("nhij,nhcj->nhci", a, v).reshape(N, C, H, W)
        return h + self.proj(o)


class Level(nn.Module):
    """down.{l} or up.{l}: res.{j}, attn.{j} (attention levels), down/up."""

    def __init__(self):
        super().__init__()


class Mid(nn.Module):
    def __init__(self, c, tdim, heads, groups):
        super().__init__()
        self.res1 = ResBlock(c, c, tdim, groups)
        self.attn = Attention(c, heads, groups)
        self.res2 = ResBlock(c, c, tdim, groups)


class UNet(nn.Module):
    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.cfg = cfg
        C, ch, L, G = cfg.in_ch, cfg.ch, len(cfg.ch_mult), cfg.groups
        tdim = 4 * ch
        self.time_mlp = nn.Sequential(nn.Linear(ch, tdim), nn.SiLU(), nn.Linear(tdim, tdim))
        self.conv_in = nn.Conv2d(C, ch, 3, padding=1)
        chans = [ch]
        cur = ch
        self.down = nn.ModuleList()
        for l in range(L):
            lev = Level()
            co = ch * cfg.ch_mult[l]
            lev.res = nn.ModuleList()
            for j in range(cfg.nres):
                lev.res.append(ResBlock(cur, co, tdim, G))
                cur = co
                chans.append(cur)
            if l in cfg.attn_levels:
                lev.attn = nn.ModuleList([Attention(cur, cfg.heads, G) for _ in range(cfg.nres)])
            if l < L - 1:
                lev.down = nn.Conv2d(cur, cur, 3, stride=2, padding=1)
                chans.append(cur)
            self.down.append(lev)
        self.mid = Mid(cur, tdim, cfg.heads, G)
        ups = [None] * L
        for l in reversed(range(L)):
            lev = Level()
            co = ch * cfg.ch_mult[l]
            lev.res = nn.ModuleList()
            for j in range(cfg.nres + 1):
                lev.res.append(ResBlock(cur + chans.pop(), co, tdim, G))
                cur = co
            if l in cfg.attn_levels:
                lev.attn = nn.ModuleList([Attention(cur, cfg.heads, G) for _ in range(cfg.nres + 1)])
            if l > 0:
                lev.up = nn.Conv2d(cur, cur, 3, padding=1)
            ups[l] = lev
        self.up = nn.ModuleList(ups)
        self.norm_out = nn.GroupNorm(G, cur, eps=1e-5)
        self.conv_out = nn.Conv2d(cur, cfg.branches * C, 3, padding=1)

    def forward(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        L = len(cfg.ch_mult)
        c_noise = 1000.0 * t.to(torch.float32)
        stemb = F.silu(self.time_mlp(timestep_embedding(c_noise, cfg.ch)))
        h = self.conv_in(z)
        hs = [h]
        for l in range(L):
            lev = self.down[l]
            for j in range(cfg.nres):
                h = lev.res[j](h, stemb)
                if hasattr(lev, "attn"):
                    h = lev.attn[j](h)
                hs.append(h)
            if l < L - 1:
                h = lev.down(h)
                hs.append(h)
        h = self.mid.res1(h, stemb)
        h = self.mid.attn(h)
        h = self.mid.res2(h, stemb)
        for l in reversed(range(L)):
            lev = self.up[l]
            for j in range(cfg.nres + 1):
                h = lev.res[j](torch.cat([h, hs.pop()], dim=1), stemb)
                if hasattr(lev, "attn"):
                    h = lev.attn[j](h)
            if l > 0:
                h = lev.up(F.interpolate(h, scale_factor=2, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))


# --------------------------------------------------------------------------
# safetensors (pure Python): 8-byte little-endian header length, JSON header,
# raw little-endian data.  Tensors sorted by name, header padded with spaces
# to a multiple of 8.
# --------------------------------------------------------------------------
def read_safetensors(path: str) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    with open(path, "rb") as f:
        buf = f.read()
    if len(buf) < 8:
        raise ValueError(f"{path}: shorter than 8 bytes")
    (n,) = struct.unpack("<Q", buf[:8])
    if 8 + n > len(buf):
        raise ValueError(f"{path}: header length {n} exceeds the file")
    header = json.loads(buf[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {}) or {}
    data = buf[8 + n:]
    tensors = {}
    for name, info in header.items():
        if info["dtype"] != "F32":
            raise ValueError(f"{name}: dtype {info['dtype']} (bdense files are F32)")
        b, e = info["data_offsets"]
        shape = list(info["shape"])
        numel = 1
        for s in shape:
            numel *= s
        if e - b != 4 * numel or e > len(data):
            raise ValueError(f"{name}: data_offsets {b},{e} do not match shape {shape}")
        arr = torch.frombuffer(bytearray(data[b:e]), dtype=torch.float32) if numel else torch.zeros(0)
        if sys.byteorder != "little":
            arr = arr.byteswap()
        tensors[name] = arr.reshape(shape).clone()
    return tensors, meta


def write_safetensors(path: str, tensors: Dict[str, torch.Tensor], meta: Dict[str, str]) -> None:
    header = {}
    blobs = []
    off = 0
    for name in sorted(tensors):
        t = tensors[name].detach().to(torch.float32).contiguous().cpu()
        raw = t.numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    if meta:
        header = {"__metadata__": {str(k): str(v) for k, v in meta.items()}, **header}
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for b in blobs:
            f.write(b)


def load_checkpoint(path: str, strict: bool = True):
    """Returns (model, metadata).  Tensors named optim.* / train.* (optimiser
    and resume state) are ignored; every model tensor must match."""
    tensors, meta = read_safetensors(path)
    if meta.get("arch", "unet") != "unet":
        raise ValueError(f"{path}: arch {meta['arch']!r}: only the docs/spec.md sec. 6 UNet is implemented here")
    cfg = UNetConfig.from_metadata(meta)
    model = UNet(cfg)
    sd = {k: v for k, v in tensors.items() if not (k.startswith("optim.") or k.startswith("train."))}
    model.load_state_dict(sd, strict=strict)
    model.eval()
    return model, meta


def save_checkpoint(path: str, model: UNet, meta: Optional[Dict[str, str]] = None) -> None:
    m = {"bdense.version": "0.1.0", "param": "v", "schedule": "cosine"}
    if meta:
        m.update(meta)
    m.update(model.cfg.to_metadata())
    write_safetensors(path, dict(model.state_dict()), m)


def _main(argv: List[str]) -> int:
    if len(argv) >= 2 and argv[1] == "info":
        model, meta = load_checkpoint(argv[2])
        for k in sorted(meta):
            print(f"{k} = {meta[k]}")
        print("parameters =", sum(p.numel() for p in model.parameters()))
        return 0
    if len(argv) == 6 and argv[1] == "forward":
        import numpy as np
        model, _ = load_checkpoint(argv[2])
        z = torch.from_numpy(np.load(argv[3]).astype(np.float32))
        t = torch.full((z.shape[0],), float(argv[4]), dtype=torch.float32)
        with torch.no_grad():
            out = model(z, t)
        np.save(argv[5], out.numpy().astype(np.float32))
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
