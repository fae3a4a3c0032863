#!/usr/bin/env python3
"""Dev-time study: accuracy of 2-D Winograd F(4x4, 3x3) in float32 for several
point sets and scalings of the transforms (docs/performance.md, "F(4x4, 3x3)").

Y = A^T [ sum_c (G g_c G^T) * (B^T d_c B) ] A, every step rounded to float32
(transform matrices included), against the float64 direct correlation of the
same float32 data.  Channel depth 64 (the products summed over 64 input
channels in order, as bd__wg_conv3 does).  Cases: "fwd" (iid normal input, a
smooth input with an offset, like activations), "dx" (dout: Laplace noise,
the flipped kernel).  Prints rel L2 (||err|| / ||ref||) and max|err| /
max|ref| per set, each the median over a few seeds.

    /usr/bin/python3 tools/winograd_points.py [tiles] [seeds] [--print]
    /usr/bin/python3 tools/winograd_points.py --scan   (all 0, +-a, +-b)
"""
import sys
from fractions import Fraction as F

import numpy as np
import sympy as sp


def toom_cook(points, m=4, r=3):
    """A^T (m x n), G (n x r), B^T (n x n) for the finite points + infinity,
    normalisation 1/N_j in G (wincnn / Lavin & Gray convention)."""
    n = m + r - 1
    assert len(points) == n - 1
    AT = [[F(p) ** i for p in points] + [F(1 if i == m - 1 else 0)] for i in range(m)]
    G = []
    for j, p in enumerate(points):
        N = F(1)
        for l, q in enumerate(points):
            if l != j:
                N *= F(p) - F(q)
        G.append([F(p) ** k / N for k in range(r)])
    G.append([F(1 if k == r - 1 else 0) for k in range(r)])
    # B^T from the identity sum_j AT[i][j] G[j][k] BT[j][t] = [t == i + k]
    X = sp.Matrix(n, n, lambda a, b: sp.Symbol("b%d_%d" % (a, b)))
    eqs = []
    for i in range(m):
        for k in range(r):
            for t in range(n):
                e = sum(sp.Rational(AT[i][j].numerator, AT[i][j].denominator) *
                        sp.Rational(G[j][k].numerator, G[j][k].denominator) * X[j, t] for j in range(n))
                eqs.append(sp.Eq(e, 1 if t == i + k else 0))
    sol = sp.solve(eqs, list(X), dict=True)[0]
    BT = [[F(str(sp.nsimplify(sol.get(X[a, b], 0)))) for b in range(n)] for a in range(n)]
    return AT, G, BT


def scaled(AT, G, BT, s, t):
    """G row j * s_j, B^T row j * t_j, A^T column j / (s_j t_j): the same
    product in exact arithmetic."""
    n = len(G)
    G2 = [[G[j][k] * s[j] for k in range(len(G[0]))] for j in range(n)]
    B2 = [[BT[j][k] * t[j] for k in range(n)] for j in range(n)]
    A2 = [[AT[i][j] / (s[j] * t[j]) for j in range(n)] for i in range(len(AT))]
    return A2, G2, B2


def f32(M):
    return np.array([[float(v) for v in row] for row in M], dtype=np.float32)


def fmt(M):
    def one(v):
        return str(v.numerator) if v.denominator == 1 else "%d/%d" % (v.numerator, v.denominator)
    return "[" + "; ".join(" ".join(one(v) for v in row) for row in M) + "]"


def direct(d, g):
    """float64 valid correlation: d (C, T, 6, 6), g (C, 3, 3) -> (T, 4, 4)"""
    out = np.zeros(d.shape[1:2] + (4, 4))
    for ky in range(3):
        for kx in range(3):
            out += np.einsum("ctyx,c->tyx", d[:, :, ky:ky + 4, kx:kx + 4], g[:, ky, kx])
    return out


def winograd32(d, g, AT, G, BT):
    d = d.astype(np.float32)
    g = g.astype(np.float32)
    U = np.matmul(np.matmul(G, g), G.T)  # (C, 6, 6) float32
    V = np.matmul(np.matmul(BT, d), BT.T)  # (C, T, 6, 6)
    M = np.zeros(V.shape[1:], dtype=np.float32)
    for c in range(d.shape[0]):  # in order, float32, like the product kernel
        M += U[c][None] * V[c]
    return np.matmul(np.matmul(AT, M), AT.T)


def make_case(kind, C, T, rng):
    if kind == "fwd-iid":
        d = rng.standard_normal((C, T, 6, 6))
    elif kind == "fwd-smooth":  # spatially correlated, positive offset (SiLU-like activations)
        z = rng.standard_normal((C, T, 8, 8))
        d = (z[:, :, :6, :6] + z[:, :, 1:7, 1:7] + z[:, :, 2:8, 2:8] + z[:, :, 1:7, :6] + z[:, :, :6, 1:7]) / 2.0
        d = d + 1.0
        d = d / (1.0 + np.exp(-d)) * 1.0
    else:  # dx: dout Laplace (heavier tails), flipped kernel (statistically the same)
        d = rng.laplace(size=(C, T, 6, 6))
    g = rng.standard_normal((C, 3, 3)) / np.sqrt(9 * C)
    d = d.astype(np.float32).astype(np.float64)
    g = g.astype(np.float32).astype(np.float64)
    return d, g


def scan(T=1500):
    """every set 0, +-a, +-b over simple fractions: mean rel L2 over 2 dx and
    2 fwd-smooth cases, the 25 best"""
    C = 64
    data = [make_case("dx", C, T, np.random.default_rng(s)) for s in range(2)]
    data += [make_case("fwd-smooth", C, T, np.random.default_rng(7 + s)) for s in range(2)]
    refs = [direct(d, g) for d, g in data]
    cands = [F(1), F(2), F(1, 2), F(3, 2), F(2, 3), F(4, 3), F(3, 4), F(5, 4), F(4, 5), F(5, 3), F(3, 5),
             F(7, 4), F(4, 7), F(5, 2), F(2, 5), F(6, 5), F(5, 6), F(7, 5), F(5, 7)]
    res = []
    for i, a in enumerate(cands):
        for b in cands[i + 1:]:
            AT, G, BT = toom_cook([0, a, -a, b, -b])
            A32, G32, B32 = f32(AT), f32(G), f32(BT)
            e = [np.linalg.norm(winograd32(d, g, A32, G32, B32) - r) / np.linalg.norm(r)
                 for (d, g), r in zip(data, refs)]
            res.append((float(np.mean(e)), str(a), str(b)))
    res.sort()
    for r in res[:25]:
        print("%.3e  0, +-%s, +-%s" % r)


def main():
    if "--scan" in sys.argv:
        scan()
        return
    T = int(sys.argv[1]) if len(sys.argv) > 1 else 4000
    seeds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    C = 64
    h = F(1, 2)
    sets = {
        "0,+-1,+-2 (Lavin & Gray)": [0, 1, -1, 2, -2],
        "0,+-1,+-1/2": [0, 1, -1, h, -h],
        "0,+-1,1/2,-2": [0, 1, -1, h, -2],
        "0,+-1,-1/2,2": [0, 1, -1, -h, 2],
        "0,+-2,+-1/2": [0, 2, -2, h, -h],
        "0,+-1,+-3/2": [0, 1, -1, F(3, 2), F(-3, 2)],
        "0,+-1,+-3/4": [0, 1, -1, F(3, 4), F(-3, 4)],
        "0,+-3/4,+-4/3": [0, F(3, 4), F(-3, 4), F(4, 3), F(-4, 3)],
        "0,+-2/3,+-3/2": [0, F(2, 3), F(-2, 3), F(3, 2), F(-3, 2)],
        "0,+-1/2,+-3/2": [0, h, -h, F(3, 2), F(-3, 2)],
    }
    variants = []
    for name, pts in sets.items():
        AT, G, BT = toom_cook(pts)
        one = [F(1)] * 6
        Nj = []  # N_j = prod_{l != j} (p_j - p_l)
        for j, p in enumerate(pts):
            N = F(1)
            for l, q in enumerate(pts):
                if l != j:
                    N *= F(p) - F(q)
            Nj.append(N)
        Nj.append(F(1))
        variants.append((name + " | 1/N in G", (AT, G, BT)))
        variants.append((name + " | 1/N in A^T", scaled(AT, G, BT, Nj, one)))
        variants.append((name + " | 1/N in B^T", scaled(AT, G, BT, Nj, [1 / v for v in Nj])))
    cases = ["fwd-iid", "fwd-smooth", "dx"]
    print("T=%d tiles, C=%d channels, median of %d seeds; rel L2 / max-rel per case" % (T, C, seeds))
    print("%-42s" % "set | scaling" + "".join("%22s" % c for c in cases) + "   max|entry| A,G,B")
    data = {}
    for c in cases:
        data[c] = [make_case(c, C, T, np.random.default_rng(1000 * s + cases.index(c))) for s in range(seeds)]
    for name, (AT, G, BT) in variants:
        A32, G32, B32 = f32(AT), f32(G), f32(BT)
        row = "%-42s" % name
        for c in cases:
            l2s, mxs = [], []
            for d, g in data[c]:
                ref = direct(d, g)
                y = winograd32(d, g, A32, G32, B32).astype(np.float64)
                l2s.append(np.linalg.norm(y - ref) / np.linalg.norm(ref))
                mxs.append(np.abs(y - ref).max() / np.abs(ref).max())
            row += "   %8.2e / %8.2e" % (np.median(l2s), np.median(mxs))
        row += "   %g,%g,%g" % (abs(A32).max(), abs(G32).max(), abs(B32).max())
        print(row, flush=True)
    # baseline: direct float32 (sum over c and taps in float32)
    row = "%-42s" % "direct float32 (reference kernel order)"
    for c in cases:
        l2s, mxs = [], []
        for d, g in data[c]:
            ref = direct(d, g)
            acc = np.zeros_like(ref, dtype=np.float32)
            d32, g32 = d.astype(np.float32), g.astype(np.float32)
            for ci in range(C):
                for ky in range(3):
                    for kx in range(3):
                        acc += d32[ci, :, ky:ky + 4, kx:kx + 4] * g32[ci, ky, kx]
            l2s.append(np.linalg.norm(acc - ref) / np.linalg.norm(ref))
            mxs.append(np.abs(acc - ref).max() / np.abs(ref).max())
        row += "   %8.2e / %8.2e" % (np.median(l2s), np.median(mxs))
    print(row)
    if "--print" in sys.argv:
        for name, (AT, G, BT) in variants:
            print(name)
            print("  A^T =", fmt(AT))
            print("  G   =", fmt(G))
            print("  B^T =", fmt(BT))


if __name__ == "__main__":
    main()
