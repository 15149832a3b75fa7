#!/usr/bin/env python3
"""Reference values for tests/train/test_optim.c, from torch.optim (float64).

Problem: theta in R^5, loss = sum(w * (theta - a)^2), 12 steps, fixed lr.  Prints C arrays of
the parameters after the last step for Adam, AdamW and Adam with gradient-norm clipping.
Run with Debian's python3-torch:  /usr/bin/python3 tests/train/adam_reference.py
"""
import torch

torch.set_default_dtype(torch.float64)
a = torch.tensor([0.3, -1.2, 2.5, 0.0, -0.7])
w = torch.tensor([1.0, 0.5, 2.0, 3.0, 0.25])
theta0 = torch.tensor([1.1, 0.4, -0.6, 2.2, 0.9])


def run(kind, clip=None):
    th = theta0.clone().requires_grad_()
    if kind == "adam":
        opt = torch.optim.Adam([th], lr=0.05, betas=(0.9, 0.999), eps=1e-8)
    else:
        opt = torch.optim.AdamW([th], lr=0.05, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
    for _ in range(12):
        opt.zero_grad()
        loss = (w * (th - a) ** 2).sum()
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_([th], clip)
        opt.step()
    return th.detach().tolist()


for name, vals in [("adam", run("adam")), ("adamw", run("adamw")),
                   ("adam_clip", run("adam", clip=0.5))]:
    print(f"static const double ref_{name}[5] = {{" + ", ".join(f"{v:.17g}" for v in vals) + "};")
