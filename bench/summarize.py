#!/usr/bin/env python3
"""Table of bench/run.sh results (JSON lines from bench_unet and torch_ref)."""
import json
import statistics
import sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
gemm = [r for r in rows if r["case"] == "gemm"]
machine = [r for r in rows if r["case"] == "machine"]
rows = [r for r in rows if r["case"] != "machine"]
cases = []
for r in rows:
    if r["case"] != "gemm" and r["case"] not in cases:
        cases.append(r["case"])


def agg(impl, case):
    rs = [r for r in rows if r["impl"] == impl and r["case"] == case]
    if not rs:
        return None
    med = statistics.median(r["median_ms"] for r in rs)
    return {
        "ms": med,
        "lo": min(r["p10_ms"] for r in rs), "hi": max(r["p90_ms"] for r in rs),
        "cpu": statistics.median(r.get("cpu_ms", float("nan")) for r in rs),
        "rss": max(r["rss_mb"] for r in rs),
        "gf": statistics.median(r.get("gflops", 0.0) for r in rs),
        "flop": rs[0].get("gflop_per_step"), "batch": rs[0]["batch"], "n": len(rs),
    }


thr = rows[0]["threads"] if rows else "?"
if machine:
    m = machine[0]
    print(f"\nCPU: {m['cpu']} (family {m['family']} model {m['model']}), {m['cpus']} logical CPUs; "
          f"vector units: {m['vector']}; bdense kernels: {m['bdense_path']}")
print(f"\nthreads = {thr}; times: median over rounds of per-process medians, [p10..p90] over all reps")
hdr = ("case", "bdense ms", "[p10..p90]", "torch ms", "[p10..p90]", "speed-up", "cpu-time x",
       "RSS bd MB", "RSS torch MB", "bd GFLOP/s")
print("| " + " | ".join(hdr) + " |")
print("|" + "---|" * len(hdr))
for c in cases:
    b, t = agg("bdense", c), agg("torch", c)
    if b is None:
        continue
    tm = f"{t['ms']:.2f}" if t else "-"
    tsp = f"[{t['lo']:.1f}..{t['hi']:.1f}]" if t else "-"
    sp = f"{t['ms'] / b['ms']:.2f}x" if t else "-"
    cpu = f"{t['cpu'] / b['cpu']:.2f}x" if t and b["cpu"] == b["cpu"] and t["cpu"] == t["cpu"] else "-"
    trss = f"{t['rss']:.0f}" if t else "-"
    print(f"| {c} | {b['ms']:.2f} | [{b['lo']:.1f}..{b['hi']:.1f}] | {tm} | {tsp} | {sp} | {cpu} | "
          f"{b['rss']:.0f} | {trss} | {b['gf']:.1f} |")
if gemm:
    g = gemm[0]
    print(f"\nGEMM ceiling (64x784x576, same run): cblas_sgemm {g['cblas_gflops']:.1f} GFLOP/s, "
          f"bdense built-in {g['builtin_gflops']:.1f} GFLOP/s;  512^3: cblas {g['cblas_512']:.1f}, "
          f"built-in {g['builtin_512']:.1f}")
for c in cases:
    b = agg("bdense", c)
    if b and b["flop"]:
        print(f"  {c}: {b['flop']:.2f} GFLOP per step (batch {b['batch']}), bdense {b['gf']:.1f} GFLOP/s")
print("speed-up = torch time / bdense time (> 1: bdense faster); cpu-time x = the same on process CPU time")
