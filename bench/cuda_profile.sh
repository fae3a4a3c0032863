#!/usr/bin/env bash
# bench/cuda_profile.sh - where a bdense CUDA training step spends its time,
# next to PyTorch eager's (a dev tool for a machine with a GPU, nvcc, ncu and
# PyTorch).  Builds bench/cuda_bench (make CUDA=1 cuda), runs one warm-up and
# one timed training step plus a few batch-1 calls under Nsight Compute
# (gpu__time_duration per kernel, clocks not locked), then prints the kernels
# grouped by name (count, total us, share, grid size) and the second
# training step alone, and the top CUDA kernels of three PyTorch training
# steps from torch.profiler.
# Writes ncu.csv, bd_kernels.txt and torch_kernels.txt to $REP (default
# build-cuda/cuda-profile) and, when $OUT is set, to $OUT.
set -u
cd "$(dirname "$0")/.." || exit 1
BUILD=${BUILD:-build-cuda}
REP=${REP:-$BUILD/cuda-profile}
BATCH=${BATCH:-128}
PYTHON=${PYTHON:-python3}
NCU=${NCU:-$(command -v ncu || echo /usr/local/cuda/bin/ncu)}
mkdir -p "$REP"
make -j"$(nproc)" CUDA=1 BUILD="$BUILD" cuda >"$REP/build.log" 2>&1 || { tail -n 30 "$REP/build.log"; exit 1; }
timeout 300 "$NCU" --clock-control none --metrics gpu__time_duration.sum,launch__grid_size,launch__block_size \
    --csv --print-units base "$BUILD/bench/cuda_bench" --batch "$BATCH" --iters 1 --warmup 1 --calls 3 --ddim 2 \
    >"$REP/ncu.csv" 2>"$REP/ncu.err"
echo "ncu exit $?"
"$PYTHON" - "$REP/ncu.csv" >"$REP/bd_kernels.txt" <<'EOF'
import csv, sys, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
if not rows:
    print("no ncu rows"); sys.exit(0)
h = rows[0]; rows = rows[1:]
iid, ikn, imn, imv = h.index("ID"), h.index("Kernel Name"), h.index("Metric Name"), h.index("Metric Value")
k = collections.OrderedDict()
for r in rows:
    d = k.setdefault(r[iid], {"name": r[ikn]})
    d[r[imn]] = r[imv]
ks = list(k.values())
# one training step = the kernels between the 2nd and 3rd bdense train steps is hard to cut;
# report the whole run grouped by name and the second half of the train-step kernels
tot = collections.defaultdict(lambda: [0, 0.0, set()])
for d in ks:
    t = float(d.get("gpu__time_duration.sum", "0").replace(",", "")) / 1e3
    e = tot[d["name"][:90]]
    e[0] += 1; e[1] += t; e[2].add(d.get("launch__grid_size", "?"))
all_us = sum(e[1] for e in tot.values())
print("kernels: %d, total %.1f us (whole run: 2 train steps, 3+ batch-1 calls, 2-step DDIM x7)" % (len(ks), all_us))
for name, e in sorted(tot.items(), key=lambda kv: -kv[1][1])[:45]:
    g = sorted(e[2])
    print("%9.1f us %5.1f%% %5d x  grid %-18s %s" % (e[1], 100 * e[1] / all_us, e[0], ",".join(g[:3]) + ("..." if len(g) > 3 else ""), name))
EOF
# the second training step alone (between the 1st and 2nd AdamW kernels), GEMMs pooled
"$PYTHON" - "$REP/ncu.csv" >>"$REP/bd_kernels.txt" <<'EOF'
import csv, collections, sys
rows=[r for r in csv.reader(open(sys.argv[1])) if len(r)>10]
h=rows[0]; rows=rows[1:]
iid, ikn, imn, imv = h.index("ID"), h.index("Kernel Name"), h.index("Metric Name"), h.index("Metric Value")
k=collections.OrderedDict()
for r in rows:
    d=k.setdefault(r[iid],{"name":r[ikn]}); d[r[imn]]=r[imv]
ks=list(k.values())
idx=[i for i,d in enumerate(ks) if 'adam' in d['name']]
step=ks[idx[0]+1:idx[1]+1]
tot=sum(float(d['gpu__time_duration.sum'].replace(',',''))/1e3 for d in step)
print('second training step: %d kernels, %.1f us of kernel time (ncu, each kernel alone)'%(len(step), tot))
agg=collections.defaultdict(lambda:[0,0.0])
for d in step:
    n=d['name'].split('(')[0].replace('void ','')
    if 'gemm' in n or 'sgemm' in n or 'splitK' in n or 'gemv' in n or 'internal::kernel' in n: n='cuBLAS (all GEMM kernels)'
    t=float(d['gpu__time_duration.sum'].replace(',',''))/1e3
    agg[n][0]+=1; agg[n][1]+=t
for n,(c,t) in sorted(agg.items(), key=lambda x:-x[1][1])[:16]:
    print("%8.1f us %5.1f%% %4d x %s"%(t,100*t/tot,c,n))
EOF
cat "$REP/bd_kernels.txt"
PYTHONPATH=bench "$PYTHON" - "$BATCH" >"$REP/torch_kernels.txt" 2>&1 <<'EOF'
import sys, torch, torch.nn.functional as F
import cuda_torch_ref as R
B = int(sys.argv[1])
torch.backends.cudnn.benchmark = True
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
dev = torch.device("cuda")
net = R.UNet().to(dev)
opt = torch.optim.AdamW(net.parameters(), lr=2e-4)
x = torch.rand(B, 1, 28, 28, device=dev) * 2 - 1
def step():
    t = (1 - torch.rand(B, device=dev)).clamp(min=1e-5)
    eps = torch.randn_like(x)
    a, s = R.cosine_alpha_sigma(t)
    a, s = a[:, None, None, None], s[:, None, None, None]
    opt.zero_grad(set_to_none=False)
    loss = F.mse_loss(net(a * x + s * eps, t), a * eps - s * x)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
    opt.step()
for _ in range(5): step()
torch.cuda.synchronize()
from torch.profiler import profile, ProfilerActivity
with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as p:
    for _ in range(3): step()
    torch.cuda.synchronize()
print(p.key_averages().table(sort_by="cuda_time_total", row_limit=40, max_name_column_width=70))
EOF
head -c 9000 "$REP/torch_kernels.txt"
if [ -n "${OUT:-}" ] && [ -d "${OUT:-}" ]; then cp "$REP/ncu.csv" "$REP/bd_kernels.txt" "$REP/torch_kernels.txt" "$REP/ncu.err" "$OUT/" 2>/dev/null; fi
