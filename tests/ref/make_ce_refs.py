#!/usr/bin/python3
"""Writes tests/ref/data/cross_entropy.txt: PyTorch reference vectors for
bd_cross_entropy_forward/backward (tests/test_cross_entropy.c reads them).

Run with Debian's torch:  /usr/bin/python3 tests/ref/make_ce_refs.py

Format (text, one case after the other):
    case N C
    logits  N*C floats (float32 values, printed with %.9g)
    labels  N ints
    loss    1 float   (float64 evaluation of the float32 logits)
    dlogits N*C floats (d loss / d logits, float64)
"""
import os
import torch

torch.manual_seed(15)


def case(f, N, C, scale):
    logits = (torch.randn(N, C) * scale).to(torch.float32)
    labels = torch.randint(0, C, (N,))
    x = logits.to(torch.float64).requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(x, labels, reduction="mean")
    loss.backward()
    f.write("case %d %d\n" % (N, C))
    f.write(" ".join("%.9g" % v for v in logits.flatten().tolist()) + "\n")
    f.write(" ".join("%d" % v for v in labels.tolist()) + "\n")
    f.write("%.17g\n" % loss.item())
    f.write(" ".join("%.17g" % v for v in x.grad.flatten().tolist()) + "\n")


here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "data", "cross_entropy.txt"), "w") as f:
    case(f, 4, 10, 1.0)
    case(f, 7, 3, 3.0)
    case(f, 2, 10, 40.0)  # peaky: needs the max shift
