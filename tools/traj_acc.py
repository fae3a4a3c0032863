#!/usr/bin/env python3
"""traj_acc.py FINE.npy N LABEL=FILE... - accuracy of cached teacher
trajectories (bdense trajectories .npy, (n, S+1, D)) against a finer solve
from the same noises: for each FILE, the MSE per pixel over the first N
trajectories of every recorded state against FINE's, printed as a Markdown
table (state j sits at t = 1 - j/S on the uniform-t grid).  The files must
share their starting noise (same --seed and --n order); this is checked.
Dev-time tool (numpy), used by tools/fmnist_distill.sh accuracy."""
import sys
import numpy as np

fine_path, n = sys.argv[1], int(sys.argv[2])
fine = np.load(fine_path, mmap_mode="r")[:n].astype(np.float64)
S = fine.shape[1] - 1
print("| cache (solver steps per recorded state) | NFE | " +
      " | ".join("MSE t=%.3g" % (1 - j / S) for j in range(1, S + 1)) + " | endpoint RMS |")
print("|---|---|" + "---|" * S + "---|")
for arg in sys.argv[3:]:
    label, path = arg.split("=", 1)
    a = np.load(path, mmap_mode="r")[:n].astype(np.float64)
    if a.shape != fine.shape:
        sys.exit("traj_acc: %s has shape %s, %s has %s" % (path, a.shape, fine_path, fine.shape))
    if np.abs(a[:, 0] - fine[:, 0]).max() != 0:
        sys.exit("traj_acc: %s does not start from %s's noise" % (path, fine_path))
    mse = ((a - fine) ** 2).mean(axis=(0, 2))
    print("| %s | %s | " % (label, label.split()[0]) + " | ".join("%.3g" % m for m in mse[1:]) +
          " | %.3g |" % np.sqrt(mse[-1]))
print("\n(reference: %s, first %d trajectories; MSE per pixel, images in [-1, 1])\n" % (fine_path, n))
