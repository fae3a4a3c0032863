#!/usr/bin/env python3
"""experiment_table.py OUTDIR - summarise tools/experiment.sh results as
Markdown (stdout): per student NFE and configuration, mean +- std over seeds
of the trajectory error to the teacher reference (MSE, PSNR), FD-RF, final
training loss and per-branch losses, and wall time.  Standard library only."""
import csv, glob, math, os, re, sys
from collections import defaultdict

out = sys.argv[1]
CFG = {"k1": "sparse K=1", "k2": "B-DENSE K=2 uniform", "k4": "B-DENSE K=4 uniform",
       "k2a": "B-DENSE K=2 adaptive", "k4a": "B-DENSE K=4 adaptive", "k4f": "K=4 final-only"}
ORDER = ["k1", "k4f", "k2", "k2a", "k4", "k4a"]

def ms(v):
    v = [x for x in v if x is not None and not math.isnan(x)]
    if not v:
        return None, None, 0
    m = sum(v) / len(v)
    s = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
    return m, s, len(v)

def fmt(v, digits=4, sci=False):
    m, s, n = ms(v)
    if m is None:
        return "-"
    f = "%.3e" if sci else "%%.%df" % digits
    return (f % m) + " ± " + (f % s) if n > 1 else (f % m)

runs = {}
if os.path.exists(os.path.join(out, "runs.csv")):
    for r in csv.DictReader(open(os.path.join(out, "runs.csv"))):
        runs[r["name"]] = r
settings = open(os.path.join(out, "settings.txt")).read().strip() if os.path.exists(os.path.join(out, "settings.txt")) else ""

print("## B-DENSE vs sparse: trajectory-distilled students\n")
print("Settings (tools/experiment.sh):\n\n```\n%s\n```\n" % settings)
print("MSE / PSNR: final samples of each student vs the teacher's reference sample from the same noise "
      "(DPM-Solver++(2M), see settings); FD-RF: Frechet distance in the fixed random-conv feature space "
      "against real test images (lower is better). mean ± std over seeds.\n")
for path in sorted(glob.glob(os.path.join(out, "compare_n*.csv")), key=lambda p: int(re.findall(r"n(\d+)", os.path.basename(p))[0])):
    N = int(re.findall(r"compare_n(\d+)", path)[0])
    rows = list(csv.DictReader(open(path)))
    agg = defaultdict(lambda: defaultdict(list))
    teach = []
    for r in rows:
        name = r["model"]
        m = re.match(r"n(\d+)_(\w+?)_s(\d+)", name)
        vals = {k: float(r[k]) for k in ("mse", "psnr_db", "fd_rf", "ms_per_image")}
        if m:
            cfg = m.group(2)
            base = "n%s_%s_s%s" % (m.group(1), cfg, m.group(3))
            for k, v in vals.items():
                agg[cfg][k].append(v)
            wall = runs.get(base, {}).get("wall_s")
            agg[cfg]["wall"].append(float(wall) if wall else None)
            lc = os.path.join(out, base + ".safetensors.loss.csv")
            if not os.path.exists(lc):
                lc = os.path.join(out, base + ".loss.csv")
            if os.path.exists(lc):
                lrows = list(csv.DictReader(open(lc)))
                if lrows:
                    last = lrows[-1]
                    agg[cfg]["loss"].append(float(last["loss"]))
                    K = len([c for c in last if re.fullmatch(r"branch\d+", c)])
                    agg[cfg]["final_branch"].append(float(last["branch%d" % (K - 1)]))
        elif not name.endswith("(reference)"):
            teach.append((name, int(r["nfe"]), vals))
    print("### %d-step students (NFE %d)\n" % (N, N))
    print("| model | seeds | MSE to teacher | PSNR dB | FD-RF | final loss | final-branch loss | train wall s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, nfe, v in teach:
        if nfe == N:
            print("| %s (no distillation) | - | %.4f | %.2f | %.3f | - | - | - |" % (name, v["mse"], v["psnr_db"], v["fd_rf"]))
    for cfg in ORDER + [c for c in agg if c not in ORDER]:
        if cfg not in agg:
            continue
        a = agg[cfg]
        print("| %s | %d | %s | %s | %s | %s | %s | %s |" % (
            CFG.get(cfg, cfg), len(a["mse"]), fmt(a["mse"]), fmt(a["psnr_db"], 2), fmt(a["fd_rf"], 3),
            fmt(a["loss"], sci=True), fmt(a["final_branch"], sci=True), fmt(a["wall"], 0)))
    print()
    if os.path.exists(os.path.join(out, "grid_n%d.png" % N)):
        print("Samples (rows: teacher reference, teacher DDIM at NFE %d, then each student in table order; "
              "columns share the noise): `grid_n%d.png`\n" % (N, N))
