"""One exact Hessian-vector product of the benchmark's models in four variants (issue 16).

The loss Hessian's product by double backprop (as PyHessian computes it), with batch norm in
eval mode written by PyTorch or as the per-channel affine map hessiankit uses
(:mod:`hessiankit.operators._eval_bn`), in contiguous and channels-last memory format. Medians
of the timed repeats (the first, warm-up, dropped), one thread, float32, batch 128.

Run: ``OMP_NUM_THREADS=1 python analyses/product_variants.py [--repeats 4]``. Measured on
2026-12-01 (2-core CPU, another job on the second core), seconds per product:

=======  ==========  ==========  ============  ==================
model    contiguous  + affine    channels-last  channels-last + affine
=======  ==========  ==========  ============  ==================
CNN      0.252       0.209       0.341         0.195
ResNet   1.415       1.335       1.858         1.384
=======  ==========  ==========  ============  ==================
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark import build  # noqa: E402

from hessiankit.operators._eval_bn import EvalBatchNormAsAffine  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(1)
    for model in ("cnn", "resnet"):
        net, x, y = build(model, "full", 128, 0, "cpu")
        setups = {}
        for fmt in ("contiguous", "channels_last"):
            for affine in (False, True):
                n2, x2 = copy.deepcopy(net), x
                if fmt == "channels_last":
                    n2 = n2.to(memory_format=torch.channels_last)
                    x2 = x.contiguous(memory_format=torch.channels_last)
                params = list(n2.parameters())
                if affine:
                    with EvalBatchNormAsAffine():
                        loss = torch.nn.functional.cross_entropy(n2(x2), y)
                else:
                    loss = torch.nn.functional.cross_entropy(n2(x2), y)
                g = torch.autograd.grad(loss, params, create_graph=True)
                setups[(fmt, affine)] = (g, params, [torch.randn_like(p) for p in params])
        times: dict[tuple[str, bool], list[float]] = {}
        for _ in range(args.repeats):
            for key, (g, params, vs) in setups.items():
                t = time.perf_counter()
                torch.autograd.grad(g, params, grad_outputs=vs, retain_graph=True)
                times.setdefault(key, []).append(time.perf_counter() - t)
        for (fmt, affine), ts in times.items():
            label = fmt + (" + affine BN" if affine else "")
            print(f"{model:7s} {label:28s} {statistics.median(ts[1:]):.3f} s")


if __name__ == "__main__":
    main()
