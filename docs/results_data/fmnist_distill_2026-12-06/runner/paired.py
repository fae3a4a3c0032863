#!/usr/bin/env python3
# paired per-sample trajectory-MSE differences (config - sparse, same seed, same 500 test noises), from
# traj_eval --samples-dir output: mean difference and its standard error over the test noises
import glob, os, re, sys
import numpy as np
sd, test = sys.argv[1], sys.argv[2]
ref = np.load(test, mmap_mode="r")[:, -1].astype(np.float64)
ms = {}
for f in sorted(glob.glob(os.path.join(sd, "n*_s*.s*.npy"))):
    name = os.path.basename(f).split(".s")[0]
    x = np.load(f).reshape(ref.shape[0], -1).astype(np.float64)
    ms[name] = ((x - ref) ** 2).mean(axis=1)
print("| NFE | config | seed | mean per-sample ΔMSE (config − sparse) | s.e. over the %d test noises |" % ref.shape[0])
print("|---|---|---|---|---|")
for name in sorted(ms):
    m = re.fullmatch(r"n(\d+)_(\w+?)_s(\d+)", name)
    if not m or m.group(2) == "k1":
        continue
    base = "n%s_k1_s%s" % (m.group(1), m.group(3))
    if base not in ms:
        continue
    d = ms[name] - ms[base]
    print("| %s | %s | %s | %+.5f | %.5f |" % (m.group(1), m.group(2), m.group(3), d.mean(), d.std(ddof=1) / np.sqrt(len(d))))
