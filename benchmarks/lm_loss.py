"""Large-vocabulary smoothed cross-entropy: smoothflip.kernels vs PyTorch eager, torch.compile, Liger-Kernel.

Two problems, forward + backward, side by side in one run:

- **fused linear**: ``hidden [N, D] @ weight[V, D].T`` then label-smoothed cross-entropy
  (``eps``), gradients for ``hidden`` and ``weight``. Rows: PyTorch eager (logits upcast to
  float32, as Hugging Face models do), ``torch.compile`` of the same function, Liger-Kernel's
  ``LigerFusedLinearCrossEntropyLoss``, ``smoothflip.kernels.linear_cross_entropy``, and ours with
  the confidence penalty on as well (``beta``, which no peer fuses).
- **given logits** ``[N, V]``: PyTorch eager (float32 upcast, and fed the low-precision logits
  directly), ``torch.compile``, Liger-Kernel's ``LigerCrossEntropyLoss`` (writes the gradient over
  the logits), ``smoothflip.kernels.cross_entropy`` (one gradient buffer, and
  ``inplace_backward=True``), the confidence penalty written by hand (eager and compiled) and ours
  with ``beta``.

Every implementation runs in a fresh child process (no allocator or compile-cache carry-over).
Time is the median of ``--reps`` timed repetitions after warm-up (CUDA events on a GPU); *extra
memory* is the peak allocated during one forward + backward minus what was allocated before it
(inputs; the gradients themselves count, as in Liger's own benchmarks). On CPU the memory column is
the growth of the process's peak resident set instead. Each row also reports the largest error of
its loss and gradients against a float32 reference (the exact chunked torch fallback run on
float32 copies), relative to the largest reference gradient.

Usage::

    python benchmarks/lm_loss.py           # CUDA: N = 8192 and 16384, D = 4096, V = 128256, bf16
    python benchmarks/lm_loss.py --small   # CPU-sized smoke run: N = 1024, D = 256, V = 16000, fp32
    python benchmarks/lm_loss.py --only ours-linear liger-linear --n 8192

Liger-Kernel is a benchmark-only dependency (``pip install liger-kernel``); its rows say
"not installed" without it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

LINEAR = ["eager-linear", "compile-linear", "liger-linear", "ours-linear", "ours-linear-cp"]
GIVEN = [
    "eager-given",
    "eager-given-lowp",
    "compile-given",
    "liger-given",
    "ours-given",
    "ours-given-inplace",
    "eager-given-cp",
    "compile-given-cp",
    "ours-given-cp",
]
LABELS = {
    "eager-linear": "PyTorch eager (h @ W.T, float32 CE)",
    "compile-linear": "torch.compile",
    "liger-linear": "Liger-Kernel fused linear CE",
    "ours-linear": "smoothflip linear_cross_entropy",
    "ours-linear-cp": "smoothflip linear_cross_entropy + confidence penalty",
    "eager-given": "PyTorch eager (float32 upcast)",
    "eager-given-lowp": "PyTorch eager (fed low precision)",
    "compile-given": "torch.compile",
    "liger-given": "Liger-Kernel cross-entropy (in place)",
    "ours-given": "smoothflip cross_entropy",
    "ours-given-inplace": "smoothflip cross_entropy, inplace_backward",
    "eager-given-cp": "confidence penalty by hand, eager",
    "compile-given-cp": "confidence penalty by hand, compiled",
    "ours-given-cp": "smoothflip cross_entropy + confidence penalty",
}
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


# ----------------------------------------------------------------------------- implementations


def _eager_linear(eps: float) -> Callable[..., torch.Tensor]:
    def fn(h, w, y):
        return F.cross_entropy((h @ w.t()).float(), y, label_smoothing=eps)

    return fn


def _eager_given(eps: float, *, upcast: bool) -> Callable[..., torch.Tensor]:
    def fn(z, y):
        return F.cross_entropy(z.float() if upcast else z, y, label_smoothing=eps)

    return fn


def _eager_given_cp(beta: float) -> Callable[..., torch.Tensor]:
    def fn(z, y):
        logp = torch.log_softmax(z.float(), dim=1)
        entropy = -(logp.exp() * logp).sum(dim=1)
        valid = y != -100
        return F.nll_loss(logp, y) - beta * entropy[valid].mean()

    return fn


def build(name: str, eps: float, beta: float) -> Callable[..., torch.Tensor]:
    """The loss function of one row: ``fn(h, w, y)`` (linear) or ``fn(z, y)`` (given logits)."""
    from smoothflip.kernels import cross_entropy, linear_cross_entropy

    if name == "eager-linear":
        return _eager_linear(eps)
    if name == "compile-linear":
        return torch.compile(_eager_linear(eps))
    if name == "liger-linear":
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

        module = LigerFusedLinearCrossEntropyLoss(label_smoothing=eps)
        return lambda h, w, y: module(w, h, y)
    if name == "ours-linear":
        return lambda h, w, y: linear_cross_entropy(h, w, y, eps=eps)
    if name == "ours-linear-cp":
        return lambda h, w, y: linear_cross_entropy(h, w, y, eps=eps, beta=beta)
    if name == "eager-given":
        return _eager_given(eps, upcast=True)
    if name == "eager-given-lowp":
        return _eager_given(eps, upcast=False)
    if name == "compile-given":
        return torch.compile(_eager_given(eps, upcast=True))
    if name == "liger-given":
        from liger_kernel.transformers import LigerCrossEntropyLoss

        return LigerCrossEntropyLoss(label_smoothing=eps)
    if name == "ours-given":
        return lambda z, y: cross_entropy(z, y, eps=eps)
    if name == "ours-given-inplace":
        return lambda z, y: cross_entropy(z, y, eps=eps, inplace_backward=True)
    if name == "eager-given-cp":
        return _eager_given_cp(beta)
    if name == "compile-given-cp":
        return torch.compile(_eager_given_cp(beta))
    if name == "ours-given-cp":
        return lambda z, y: cross_entropy(z, y, beta=beta)
    raise ValueError(f"unknown implementation {name!r}; choose from {LINEAR + GIVEN}")


# ------------------------------------------------------------------------------------ one child


def _inputs(args: argparse.Namespace, n: int, device: torch.device, linear: bool):
    g = torch.Generator(device=device).manual_seed(0)
    dtype = DTYPES[args.dtype]
    y = torch.randint(0, args.v, (n,), device=device, generator=g)
    y[:: args.ignore_every] = -100
    if linear:
        h = (torch.randn(n, args.d, device=device, generator=g) * 0.5).to(dtype)
        w = (torch.randn(args.v, args.d, device=device, generator=g) * args.d**-0.5).to(dtype)
        return (h, w), y
    z = (torch.randn(n, args.v, device=device, generator=g) * 2).to(dtype)
    return (z,), y


def _proc_status(key: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))


def _peak_rss_growth(run: Callable[[], Any]) -> tuple[Any, int]:
    """``run()`` and how far the resident set rose above its size at the start (bytes).

    On Linux the peak (VmHWM) is reset to the current size first (``/proc/self/clear_refs``), so
    only this call counts; elsewhere the process's lifetime peak is used (``ru_maxrss``), which only
    sees growth beyond every earlier peak.
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = _proc_status("VmRSS")
        result = run()
        return result, max(0, _proc_status("VmHWM") - before)
    except OSError:
        scale = 1 if sys.platform == "darwin" else 1024
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
        result = run()
        return result, max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale - before)


def _reference(name: str, leaves, y, args) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The materializing float32 reference (autograd through ``smoothflip.losses``) of row ``name``."""
    from smoothflip.kernels.reference import reference_cross_entropy, reference_linear_cross_entropy

    eps = 0.0 if name in ("eager-given-cp", "compile-given-cp", "ours-given-cp") else args.eps
    beta = args.beta if name.endswith("-cp") else 0.0
    ref = [t.detach().float().requires_grad_() for t in leaves]
    if len(ref) == 2:
        loss = reference_linear_cross_entropy(ref[0], ref[1], y, eps=eps, beta=beta, dtype=None)
    else:
        loss = reference_cross_entropy(ref[0], y, eps=eps, beta=beta, dtype=None)
    loss.backward()
    return loss.detach(), [t.grad for t in ref]


def child(args: argparse.Namespace) -> dict[str, Any]:
    name, n = args.child, args.n[0]
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    linear = name in LINEAR
    try:
        fn = build(name, args.eps, args.beta)
    except ImportError as exc:
        return {"name": name, "skipped": f"not installed ({exc.name})"}
    base_inputs, y = _inputs(args, n, device, linear)

    def fresh():
        # Given logits are cloned every repetition: in-place kernels overwrite them.
        if linear:
            return [t.detach().requires_grad_() for t in base_inputs]
        return [base_inputs[0].detach().clone().requires_grad_()]

    def step(leaves):
        loss = fn(*leaves, y)
        loss.backward()
        return loss

    if not cuda:
        # CPU: peak resident-set growth of the first full-size step, after a small warm-up that
        # loads the lazily initialized kernels.
        small_inputs, small_y = _inputs(args, 64, device, linear)
        fn(*[t.detach().clone().requires_grad_() for t in small_inputs], small_y).backward()
        leaves = fresh()
        snapshot = [t.detach().clone() for t in leaves]
        loss, extra = _peak_rss_growth(lambda: step(leaves))
    for _ in range(args.warmup):
        step(fresh())
    times = []
    for _ in range(args.reps):
        timed = fresh()
        if cuda:
            torch.cuda.synchronize()
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step(timed)
            stop.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(stop))
        else:
            t0 = time.perf_counter()
            step(timed)
            times.append((time.perf_counter() - t0) * 1e3)
        del timed
    if cuda:
        # Memory of one more forward + backward, after the timed ones.
        leaves = fresh()
        snapshot = [t.detach().clone() for t in leaves]
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        loss = step(leaves)
        torch.cuda.synchronize()
        extra = torch.cuda.max_memory_allocated() - before
    ref_loss, ref_grads = _reference(name, snapshot, y, args)
    scale = max(float(g.abs().max()) for g in ref_grads)
    grad_err = max(float((a.grad.float() - r).abs().max()) for a, r in zip(leaves, ref_grads, strict=True))
    return {
        "name": name,
        "ms": statistics.median(times),
        "extra_gib": extra / 2**30,
        "loss_err": abs(float(loss.detach().float()) - float(ref_loss)),
        "grad_rel_err": grad_err / scale,
    }


# ---------------------------------------------------------------------------------------- parent


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    return f"{cpu} CPU, {torch.get_num_threads()} threads, torch {torch.__version__}"


def run_row(args: argparse.Namespace, name: str, n: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", name, "--n", str(n)]
    for key in ("d", "v", "eps", "beta", "dtype", "reps", "warmup", "device", "ignore_every"):
        cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        if "OutOfMemoryError" in proc.stderr or "out of memory" in proc.stderr:
            tail = "out of memory"
        return {"name": name, "skipped": tail[:120]}
    return json.loads(lines[-1])


def table(rows: list[dict[str, Any]], baseline: str | None) -> str:
    base = next((r for r in rows if r["name"] == baseline and "ms" in r), None)
    out = [
        "| implementation | time ms | vs Liger | extra memory GiB | loss error | grad error (rel.) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "ms" not in r:
            out.append(f"| {LABELS[r['name']]} | {r['skipped']} | | | | |")
            continue
        ratio = f"{r['ms'] / base['ms']:.2f}x" if base else "—"
        out.append(
            f"| {LABELS[r['name']]} | {r['ms']:.1f} | {ratio} | {r['extra_gib']:.3f} | "
            f"{r['loss_err']:.1e} | {r['grad_rel_err']:.1e} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=None, help="token counts (rows)")
    parser.add_argument("--d", type=int, default=4096)
    parser.add_argument("--v", type=int, default=128256)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--ignore-every", type=int, default=50, help="every k-th target is ignore_index")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--only", nargs="+", default=None, help=f"a subset of {LINEAR + GIVEN}")
    parser.add_argument("--small", action="store_true", help="CPU-sized shapes: N 1024, D 256, V 16000, fp32")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0
    if args.small:
        args.d, args.v, args.dtype = 256, 16000, "fp32"
        args.reps, args.warmup = min(args.reps, 3), 1
        args.n = args.n or [1024]
    args.n = args.n or [8192, 16384]
    names = args.only or LINEAR + GIVEN
    unknown = sorted(set(names) - set(LINEAR + GIVEN))
    if unknown:
        parser.error(f"unknown implementation(s) {unknown}; choose from {LINEAR + GIVEN}")
    device = torch.device(args.device)
    print(
        f"# {machine(device)}; D = {args.d}, V = {args.v}, {args.dtype}, eps = {args.eps}, beta = {args.beta}"
    )
    for n in args.n:
        for group, baseline in ((LINEAR, "liger-linear"), (GIVEN, "liger-given")):
            chosen = [name for name in group if name in names]
            if not chosen:
                continue
            rows = [run_row(args, name, n) for name in chosen]
            what = "fused linear" if group is LINEAR else "given logits"
            print(f"\n## {what}, N = {n} (forward + backward)\n")
            print(table(rows, baseline), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
