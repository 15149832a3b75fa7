#!/usr/bin/python3
"""PyTorch reference timings for tradeflow's benchmarks (see bench/README.md).

    /usr/bin/python3 bench/torch_bench.py --list
    /usr/bin/python3 bench/torch_bench.py [options] NAME...

Runs the computation of each named benchmark exactly as bench_core does it, single-threaded,
and prints one line per case: ``case=NAME torch_ms=X min_ms=.. max_ms=.. steps=N reps=R ...``.
Takes the same timing options as bench_core (--reps, --rep-time, --min-steps, --warmup,
--seed), and times the same way: warm up, pick a step count so one repetition lasts at least
--rep-time seconds, report the median over --reps repetitions of the per-step time.

Exit status: 0 if every case ran; 1 if one failed (its line carries error=...); 2 on a usage
error; 3 if torch cannot be imported (the reason goes to stderr).

Adding a benchmark: write ``def bench_NAME(opts) -> dict`` and add it to CASES.
"""

import argparse
import math
import os
import statistics
import sys
import time


_torch = None


def _import_torch():
    """Import torch once and pin it to one thread (intra- and inter-op)."""
    global _torch
    if _torch is not None:
        return _torch
    try:
        import torch  # (Debian's python3-torch)
    except Exception as e:  # ImportError, or a broken install raising something else
        print(f"torch_bench: cannot import torch with {sys.executable}: "
              f"{type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(3)
    torch.set_num_threads(1)
    # Must come before any inter-op work and only once: a second call aborts the process.
    torch.set_num_interop_threads(1)
    _torch = torch
    return torch


def bench_time(opts, step):
    """Median per-step time in ms over opts.reps repetitions (same scheme as bench_core)."""
    n = 0
    t0 = time.perf_counter()  # CLOCK_MONOTONIC on Linux
    while True:
        step()
        n += 1
        t1 = time.perf_counter()
        if n >= 3 and t1 - t0 >= opts.warmup:
            break
    per_step = (t1 - t0) / n
    steps = opts.min_steps
    if per_step > 0 and opts.rep_time / per_step > steps:
        steps = math.ceil(opts.rep_time / per_step)
    v = []
    for _ in range(opts.reps):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        t1 = time.perf_counter()
        v.append(1e3 * (t1 - t0) / steps)
    return {"ms": statistics.median(v), "min_ms": min(v), "max_ms": max(v),
            "steps": steps, "reps": opts.reps}


# ---- mlp ------------------------------------------------------------------------------------

MLP_BATCH = 1024
MLP_DIMS = (33, 128, 128, 64)


def bench_mlp(opts):
    """MLP forward + backward: batch 1024, 33 -> 128 -> 128 -> 64, SiLU after the first two
    layers, y = x W^T + b (torch.nn.Linear layout, W (out, in)), loss = mean(y^2), gradients
    of all weights and biases (not of the input) with torch.autograd.grad."""
    torch = _import_torch()
    F = torch.nn.functional
    g = torch.Generator().manual_seed(opts.seed)
    x = torch.randn(MLP_BATCH, MLP_DIMS[0], generator=g, dtype=torch.float32)
    params = []
    for din, dout in zip(MLP_DIMS[:-1], MLP_DIMS[1:]):
        bound = 1.0 / math.sqrt(din)  # what nn.Linear's default init gives for W and b
        w = torch.empty(dout, din, dtype=torch.float32).uniform_(-bound, bound, generator=g)
        b = torch.empty(dout, dtype=torch.float32).uniform_(-bound, bound, generator=g)
        params += [w.requires_grad_(), b.requires_grad_()]
    n_layers = len(MLP_DIMS) - 1
    out = {}

    def step():
        h = x
        for layer in range(n_layers):
            h = F.linear(h, params[2 * layer], params[2 * layer + 1])
            if layer + 1 < n_layers:
                h = F.silu(h)
        loss = torch.square(h).mean()
        grads = torch.autograd.grad(loss, params)
        out["loss"] = loss
        out["grads"] = grads

    t = bench_time(opts, step)
    flops = 0
    for layer, (din, dout) in enumerate(zip(MLP_DIMS[:-1], MLP_DIMS[1:])):
        mm = 2 * MLP_BATCH * din * dout
        flops += 2 * mm if layer == 0 else 3 * mm
    return {"torch_ms": t["ms"], "min_ms": t["min_ms"], "max_ms": t["max_ms"],
            "steps": t["steps"], "reps": t["reps"],
            "gflops": flops / (t["ms"] * 1e-3) / 1e9, "flops": flops,
            "loss": float(out["loss"])}


FLOW_D, FLOW_BATCH, FLOW_BLOCKS, FLOW_HIDDEN = 64, 1024, 8, 128


def _flow(opts):
    """The flow of bench_core's nll_step/sample: 8 blocks of [fixed random permutation ->
    affine coupling], subnet (D/2 + 1) -> 128 -> 128 -> D with SiLU, s = 2 tanh(s_raw / 2),
    log c concatenated to the subnet input, base N(0, I).  Last subnet layer zero-initialised
    (identity flow), as in tradeflow."""
    torch = _import_torch()
    F = torch.nn.functional
    g = torch.Generator().manual_seed(opts.seed)
    da, db = FLOW_D // 2, FLOW_D - FLOW_D // 2
    blocks = []
    for _ in range(FLOW_BLOCKS):
        perm = torch.randperm(FLOW_D, generator=g)
        inv = torch.argsort(perm)
        layers = []
        dims = [da + 1, FLOW_HIDDEN, FLOW_HIDDEN, 2 * db]
        for li, (din, dout) in enumerate(zip(dims[:-1], dims[1:])):
            bound = 0.0 if li == len(dims) - 2 else 1.0 / math.sqrt(din)
            w = torch.empty(dout, din).uniform_(-bound, bound, generator=g).requires_grad_()
            b = torch.empty(dout).uniform_(-bound, bound, generator=g).requires_grad_()
            layers.append((w, b))
        blocks.append((perm, inv, layers))
    params = [t for _, _, ls in blocks for wb in ls for t in wb]

    def subnet(layers, h):
        for li, (w, b) in enumerate(layers):
            h = F.linear(h, w, b)
            if li + 1 < len(layers):
                h = F.silu(h)
        s = 2.0 * torch.tanh(h[:, :db] / 2.0)
        return s, h[:, db:]

    def log_prob(x, c):
        lc = torch.log(c)
        ld = 0.0
        for perm, _, layers in blocks:
            x = x[:, perm]
            xa, xb = x[:, :da], x[:, da:]
            s, t = subnet(layers, torch.cat([xa, lc], dim=1))
            x = torch.cat([xa, xb * torch.exp(s) + t], dim=1)
            ld = ld + s.sum(dim=1, keepdim=True)
        base = -0.5 * (x * x).sum(dim=1, keepdim=True) - 0.5 * FLOW_D * math.log(2 * math.pi)
        return base + ld

    def sample(c, n, gen):
        z = torch.randn(n, FLOW_D, generator=gen)
        lc = torch.log(c)
        x, ld = z, 0.0
        for perm, inv, layers in reversed(blocks):
            xa, zb = x[:, :da], x[:, da:]
            s, t = subnet(layers, torch.cat([xa, lc], dim=1))
            x = torch.cat([xa, (zb - t) * torch.exp(-s)], dim=1)[:, inv]
            ld = ld - s.sum(dim=1, keepdim=True)
        base = -0.5 * (z * z).sum(dim=1, keepdim=True) - 0.5 * FLOW_D * math.log(2 * math.pi)
        return x, base - ld

    x = torch.randn(FLOW_BATCH, FLOW_D, generator=g)
    c = torch.empty(FLOW_BATCH, 1).uniform_(0.5, 2.0, generator=g)
    return torch, params, log_prob, sample, x, c, g


def _flow_flops():
    fwd = FLOW_BLOCKS * 2 * FLOW_BATCH * ((FLOW_D // 2 + 1) * 128 + 128 * 128 + 128 * FLOW_D)
    return fwd


def _nll_step_case(opts, flow, flops):
    """-mean log p forward, backward, Adam on the flow that flow(opts) builds"""
    torch, params, log_prob, _, x, c, _ = flow(opts)
    opt = torch.optim.Adam(params, lr=1e-4)
    out = {}

    def step():
        opt.zero_grad(set_to_none=True)
        loss = -log_prob(x, c).mean()
        loss.backward()
        opt.step()
        out["loss"] = loss

    t = bench_time(opts, step)
    return {"torch_ms": t["ms"], "min_ms": t["min_ms"], "max_ms": t["max_ms"],
            "steps": t["steps"], "reps": t["reps"],
            "gflops": flops / (t["ms"] * 1e-3) / 1e9, "flops": flops,
            "loss": float(out["loss"])}


def _sample_case(opts, flow, n, flops):
    """n draws with log p, no gradients, from the flow that flow(opts) builds"""
    torch, _, _, sample, _, c, g = flow(opts)
    out = {}

    def step():
        with torch.no_grad():
            xs, lp = sample(c, n, g)
        out["lp"] = lp

    t = bench_time(opts, step)
    return {"torch_ms": t["ms"], "min_ms": t["min_ms"], "max_ms": t["max_ms"],
            "steps": t["steps"], "reps": t["reps"],
            "gflops": flops / (t["ms"] * 1e-3) / 1e9, "flops": flops}


def bench_nll_step(opts):
    return _nll_step_case(opts, _flow, 3 * _flow_flops())


def bench_trade_step(opts):
    torch, params, log_prob, _, x, c, g = _flow(opts)
    target = torch.randn(FLOW_BATCH, 1, generator=g)
    opt = torch.optim.Adam(params, lr=1e-4)
    out = {}

    def step():
        opt.zero_grad(set_to_none=True)
        cc = c.detach().clone().requires_grad_()
        lp = log_prob(x, cc)
        # d/dc log p at fixed x: each row's log p depends only on its own c
        (dlp,) = torch.autograd.grad(lp.sum(), cc, create_graph=True)
        loss = ((dlp - target) ** 2).mean()
        loss.backward()
        opt.step()
        out["loss"] = loss

    t = bench_time(opts, step)
    flops = 6 * _flow_flops()
    return {"torch_ms": t["ms"], "min_ms": t["min_ms"], "max_ms": t["max_ms"],
            "steps": t["steps"], "reps": t["reps"],
            "gflops": flops / (t["ms"] * 1e-3) / 1e9, "flops": flops,
            "loss": float(out["loss"])}


def bench_sample(opts):
    return _sample_case(opts, _flow, FLOW_BATCH, _flow_flops())


LAT_L, LAT_BATCH, LAT_BLOCKS, LAT_HIDDEN = 16, 64, 8, 32


def _lattice_flow(opts):
    """The flow of bench_core's lattice_*: a 16 x 16 periodic lattice, 8 checkerboard affine
    couplings (block k keeps the sites with (i + j) % 2 == k % 2 fixed), subnet of periodic
    3x3 convolutions 1 -> 32 -> 32 -> 2 with SiLU on the field with its active sites zeroed,
    log c added to the first layer's channels through a (32, 1) weight, channel 0 -> s =
    2 tanh(s_raw / 2), channel 1 -> t, base N(0, I).  Last layer zero-initialised."""
    torch = _import_torch()
    F = torch.nn.functional
    g = torch.Generator().manual_seed(opts.seed)
    L, H = LAT_L, LAT_HIDDEN
    ij = torch.arange(L)
    parity = (ij[:, None] + ij[None, :]) % 2
    blocks = []
    for k in range(LAT_BLOCKS):
        passive = (parity == k % 2).float()
        layers = []
        chans = [1, H, H, 2]
        for li, (cin, cout) in enumerate(zip(chans[:-1], chans[1:])):
            bound = 0.0 if li == len(chans) - 2 else 1.0 / math.sqrt(9 * cin)
            w = torch.empty(cout, cin, 3, 3).uniform_(-bound, bound, generator=g).requires_grad_()
            b = torch.empty(cout).uniform_(-bound, bound, generator=g).requires_grad_()
            layers.append((w, b))
        wc = torch.empty(H, 1).uniform_(-1.0, 1.0, generator=g).requires_grad_()
        blocks.append((passive, 1.0 - passive, layers, wc))
    params = [t for _, _, ls, wc in blocks for t in [wc] + [u for wb in ls for u in wb]]

    def subnet(x, passive, layers, wc, lc):
        h = (x * passive)[:, None]
        for li, (w, b) in enumerate(layers):
            h = F.conv2d(F.pad(h, (1, 1, 1, 1), mode="circular"), w, b)
            if li == 0:
                h = h + (lc @ wc.t())[:, :, None, None]
            if li + 1 < len(layers):
                h = F.silu(h)
        return 2.0 * torch.tanh(h[:, 0] / 2.0), h[:, 1]

    def log_prob(x, c):
        lc = torch.log(c)
        x = x.view(-1, L, L)
        ld = 0.0
        for passive, active, layers, wc in blocks:
            s, t = subnet(x, passive, layers, wc, lc)
            x = x * passive + active * (x * torch.exp(s) + t)
            ld = ld + (active * s).sum(dim=(1, 2))[:, None]
        base = -0.5 * (x * x).sum(dim=(1, 2))[:, None] - 0.5 * L * L * math.log(2 * math.pi)
        return base + ld

    def sample(c, n, gen):
        z = torch.randn(n, L, L, generator=gen)
        lc = torch.log(c)
        x, ld = z, 0.0
        for passive, active, layers, wc in reversed(blocks):
            s, t = subnet(x, passive, layers, wc, lc)
            x = x * passive + active * ((x - t) * torch.exp(-s))
            ld = ld - (active * s).sum(dim=(1, 2))[:, None]
        base = -0.5 * (z * z).sum(dim=(1, 2))[:, None] - 0.5 * L * L * math.log(2 * math.pi)
        return x.reshape(n, L * L), base - ld

    x = torch.randn(LAT_BATCH, L * L, generator=g)
    c = torch.empty(LAT_BATCH, 1).uniform_(0.5, 2.0, generator=g)
    return torch, params, log_prob, sample, x, c, g


def _lattice_flops():
    h = LAT_HIDDEN
    return LAT_BLOCKS * 2 * LAT_BATCH * LAT_L * LAT_L * 9 * (h + h * h + 2 * h)


def bench_lattice_sample(opts):
    return _sample_case(opts, _lattice_flow, LAT_BATCH, _lattice_flops())


def bench_lattice_nll_step(opts):
    return _nll_step_case(opts, _lattice_flow, 3 * _lattice_flops())


# ---- the case table -------------------------------------------------------------------------

CASES = {
    "mlp": (bench_mlp, "MLP fwd+bwd, batch 1024, 33-128-128-64, SiLU, loss mean(y^2)"),
    "nll_step": (bench_nll_step, "conditional affine-coupling flow D=64, 8 blocks: fwd, bwd, Adam"),
    "sample": (bench_sample, "the nll_step flow: 1024 samples through the inverse with log p"),
    "trade_step": (bench_trade_step, "the nll_step flow: TRADE residual d/dc log p, mean square, bwd, Adam"),
    "lattice_sample": (bench_lattice_sample,
                       "phi4-style conv flow 16x16, 8 checkerboard blocks, convs 1-32-32-2: 64 samples"),
    "lattice_nll_step": (bench_lattice_nll_step, "the lattice_sample flow, batch 64: fwd, bwd, Adam"),
    # next: mpi_weak
}


def _fmt(key, v):
    if isinstance(v, float):
        if key.endswith("_ms"):
            return f"{v:.4f}"
        if key == "gflops":
            return f"{v:.2f}"
        return f"{v:.6g}"
    return str(v)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--rep-time", type=float, default=0.3)
    ap.add_argument("--min-steps", type=int, default=20)
    ap.add_argument("--warmup", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-check", action="store_true", help="accepted for symmetry; unused")
    opts = ap.parse_args(argv)
    if opts.list:
        for name, (_, desc) in CASES.items():
            print(f"{name} bench {desc}")
        return 0
    if not opts.names:
        ap.print_usage(sys.stderr)
        return 2
    if opts.reps < 1 or opts.min_steps < 1 or opts.rep_time < 0 or opts.warmup < 0:
        print("torch_bench: --reps and --min-steps must be >= 1, times >= 0", file=sys.stderr)
        return 2
    for name in opts.names:
        if name not in CASES:
            print(f"torch_bench: unknown case '{name}' (see --list)", file=sys.stderr)
            return 2
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        if os.environ.get(var) != "1":
            print(f"torch_bench: note: {var} is not 1 (torch.set_num_threads(1) is used anyway)",
                  file=sys.stderr)
    _import_torch()  # fail early (exit 3) before any case line is printed
    failed = 0
    for name in opts.names:
        try:
            res = CASES[name][0](opts)
        except Exception as e:  # report and go on with the other cases
            print(f"torch_bench: {name}: {type(e).__name__}: {e}", file=sys.stderr)
            res = {"error": type(e).__name__}
            failed = 1
        print("case=" + name + "".join(f" {k}={_fmt(k, v)}" for k, v in res.items()), flush=True)
    return failed


if __name__ == "__main__":
    sys.exit(main())
