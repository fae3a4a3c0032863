#!/usr/bin/env python3
"""fmnist_distill_table.py OUTDIR - Markdown tables (stdout) of
tools/fmnist_distill.sh's results: the teacher, each student configuration
(mean +- std over seeds of the trajectory MSE on the held-out test cache and
of FD-CLF), the paired differences config - sparse (same seed), the
validation curves, and the metric's draw-to-draw noise.  Students are named
n<NFE>_<cfg>_s<seed>; the row with the largest step of each name in
scores.csv is used (or, with STEPS="NFE:STEP,...", the row at that step).
Standard library only."""
import csv, math, os, re, sys
from collections import defaultdict

out = sys.argv[1]
CFG = {"k1": "sparse K=1", "k2": "B-DENSE K=2 uniform", "k4": "B-DENSE K=4 uniform (targets from the student, R=1)",
       "k4t": "B-DENSE K=4 uniform", "k4gt": "B-DENSE K=4 agree", "k4g": "B-DENSE K=4 agree (targets from the student, R=1)",
       "k4a": "B-DENSE K=4 adaptive", "k2t": "B-DENSE K=2 uniform", "k4an": "B-DENSE K=4 anneal",
       "k4ax": "B-DENSE K=4 aux (beta 0.1)",
       "cd1": "CD sparse K=1 (multistep consistency distillation)", "cd2": "CD + B-DENSE head K=2",
       "cd4": "CD + B-DENSE head K=4", "pd1": "PD sparse K=1 (one round)", "pd4": "PD B-DENSE K=4 (one round)"}
ORDER = ["k1", "k2", "k2t", "k4t", "k4gt", "k4", "k4g", "k4a", "k4an", "k4ax", "cd1", "cd2", "cd4", "pd1", "pd4"]
# the sparse baseline each configuration is paired with: its own method's K=1
def base_of(c):
    return "cd1" if c.startswith("cd") else "pd1" if c.startswith("pd") else "k1"
# PAIRS="cd1:k1,cd4:k4t": further paired comparisons across methods (a - b, same seed)
PAIRS = [tuple(x.split(":")) for x in os.environ.get("PAIRS", "").split(",") if x]


def ms(v):
    v = [x for x in v if x is not None]
    if not v:
        return None, None
    m = sum(v) / len(v)
    s = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else float("nan")
    return m, s


def fmt(v, f="%.4f"):
    m, s = ms(v)
    if m is None:
        return "-"
    return (f % m) + (" ± " + (f % s) if len(v) > 1 else "")


def rows(name):
    p = os.path.join(out, name)
    return list(csv.DictReader(open(p))) if os.path.exists(p) else []


teacher = rows("teacher.csv")
if teacher:
    print("### The teacher (FD-CLF n = 2000 vs test[0:2000]; trajectory MSE to the test cache's endpoints)\n")
    print("| sampler | steps | NFE | FD-CLF | trajectory MSE |")
    print("|---|---|---|---|---|")
    for r in teacher:
        print("| %s | %s | %s | %.3f | %.4g ± %.2g |" % (r["sampler"], r["steps"], r["nfe"], float(r["fd_clf"]),
                                                       float(r["traj_mse"]), float(r["traj_mse_se"])))
    print()

# STEPS="1:2000,2:1000,4:1400": the step of each NFE's rows (the budget every
# configuration and seed was trained to); otherwise the largest scored step
fixed = {int(a): int(b) for a, b in (x.split(":") for x in os.environ.get("STEPS", "").split(",") if x)}
scores = {}
for r in rows("scores.csv"):
    m = re.fullmatch(r"n(\d+)_(\w+?)_s(\d+)", r["name"])
    if m and int(m.group(1)) in fixed:
        if int(r["step"]) == fixed[int(m.group(1))]:
            scores[r["name"]] = r
        continue
    if r["name"] not in scores or int(r["step"]) > int(scores[r["name"]]["step"]):
        scores[r["name"]] = r
by = defaultdict(lambda: defaultdict(dict))  # nfe -> cfg -> seed -> row
for name, r in scores.items():
    m = re.fullmatch(r"n(\d+)_(\w+?)_s(\d+)", name)
    if m:
        by[int(m.group(1))][m.group(2)][int(m.group(3))] = r

for nfe in sorted(by):
    cfgs = [c for c in ORDER if c in by[nfe]] + [c for c in by[nfe] if c not in ORDER]
    ntest = sorted(set(r["n"] for d in by[nfe].values() for r in d.values()))
    print("### NFE %d students (EMA weights; trajectory MSE on the %s held-out test trajectories, FD-CLF of "
          "2000 samples from noise seed 1)\n" % (nfe, "/".join(ntest)))
    print("| model | seeds | steps | trajectory MSE (mean ± std over seeds) | FD-CLF (n = 2000) |")
    print("|---|---|---|---|---|")
    for c in cfgs:
        d = by[nfe][c]
        steps = sorted(set(r["step"] for r in d.values()))
        print("| %s | %d | %s | %s | %s |" % (CFG.get(c, c), len(d), "/".join(steps),
                                             fmt([float(r["traj_mse"]) for r in d.values()], "%.5f"),
                                             fmt([float(r["fd_clf"]) for r in d.values()], "%.3f")))
    print()
    pairs = [(c, base_of(c)) for c in cfgs if c != base_of(c) and base_of(c) in by[nfe]]
    pairs += [(a, b) for a, b in PAIRS if a in by[nfe] and b in by[nfe]]
    if pairs:
        print("Paired by seed, config − its sparse baseline (mean ± std over seeds; [min, max]; seeds where the "
              "first is better):\n")
        print("| model | against | Δ trajectory MSE | Δ FD-CLF |")
        print("|---|---|---|---|")
        for c, b in pairs:
            base = by[nfe][b]
            seeds = sorted(set(by[nfe][c]) & set(base))
            if not seeds:
                continue
            cells = []
            for key, f in (("traj_mse", "%+.5f"), ("fd_clf", "%+.3f")):
                dv = [float(by[nfe][c][s][key]) - float(base[s][key]) for s in seeds]
                m, sd = ms(dv)
                cells.append("%s ± %s [%s, %s] (%d/%d)" % (f % m, (f % sd).lstrip("+") if len(dv) > 1 else "-",
                                                          f % min(dv), f % max(dv), sum(x < 0 for x in dv), len(dv)))
            print("| %s | %s | %s | %s |" % (CFG.get(c, c), CFG.get(b, b), cells[0], cells[1]))
        print()

# validation curves
curves = {}
for fn in sorted(os.listdir(out)):
    m = re.fullmatch(r"(n\d+_\w+?_s\d+)\.val\.csv", fn)
    if m:
        curves[m.group(1)] = [(int(r["step"]), float(r["val_mse"]), int(r["wall_s"])) for r in rows(fn)]
if curves:
    steps = sorted(set(s for c in curves.values() for s, _, _ in c))
    print("### Validation curves (trajectory MSE ×1e3 of the EMA student on the 256 validation trajectories)\n")
    print("| student | " + " | ".join(str(s) for s in steps) + " | wall s/step (shared machine) |")
    print("|---|" + "---|" * len(steps) + "---|")
    for name in sorted(curves, key=lambda n: (int(n[1:n.index("_")]), ORDER.index(n.split("_")[1]) if n.split("_")[1] in ORDER else 99, n)):
        d = {s: v for s, v, _ in curves[name]}
        walls = [(s, w) for s, _, w in curves[name] if s > 0]
        per = sum(w for _, w in walls) / max(1, max((s for s, _ in walls), default=1))
        print("| %s | " % name + " | ".join("%.2f" % (1e3 * d[s]) if s in d else "" for s in steps) + " | %.2f |" % per)
    print()

draws = rows("draws.csv")
if draws:
    g = defaultdict(list)
    for r in draws:
        g[(r["name"], r["step"])].append(float(r["fd_clf"]))
    print("### FD-CLF draw-to-draw noise (the same student, other noise seeds and the table's seed 1; n = 2000)\n")
    print("| student | draws | FD-CLF values | std |")
    print("|---|---|---|---|")
    for (n, s), v in sorted(g.items()):
        test = scores.get(n)
        if test and test["step"] == s:
            v = v + [float(test["fd_clf"])]
        print("| %s (step %s) | %d | %s | %.4f |" % (n, s, len(v), ", ".join("%.3f" % x for x in v), ms(v)[1]))
    print()
