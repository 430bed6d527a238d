"""GluonCV reference outputs for kseg's parity tests.

Runs ONLY under the side venv that has mxnet + gluoncv (it never imports kseg or
tensorflow)::

    .venv-gluoncv/bin/python tools/gluoncv_reference.py --model fcn_resnet50_ade \
        --seed 0 --inputs 480x480x1,97x131x2 --out DIR
    .venv-gluoncv/bin/python tools/gluoncv_reference.py --models a,b,c ...
    .venv-gluoncv/bin/python tools/gluoncv_reference.py --list

For every model it builds the GluonCV zoo network (``pretrained=False``,
``pretrained_base=False``, plain ``nn.BatchNorm``, float32, CPU, imperative,
aux head as the zoo entry has it), fills it with seeded random weights, runs it
on seeded random inputs and writes, atomically (temp file + ``os.replace``):

``DIR/<model>.params``
    ``net.save_parameters()``: the same key layout as GluonCV's published zoo
    files (``conv1.0.weight``, ``layer1.0.bn1.running_mean``, ...).
``DIR/<model>.npz``
    ``input_<i>``  float32 NHWC (B, H, W, 3), the image fed to GluonCV;
    ``output_<i>`` float32 NHWC (B, H, W, C), GluonCV's main logits;
    ``aux_<i>``    float32 NHWC (B, H, W, C), aux logits (models with an aux head);
    ``meta``       a JSON string (model, seed, versions, sizes, init scheme,
    every BilinearResize2D target used, self-check results, logit statistics).

An input spec ``HxWxB`` (``B`` optional, default 1) is height x width x batch.

Weight-init scheme (identical for every family)
-----------------------------------------------
All parameters are visited in sorted order of their ``save_parameters`` key and
drawn from ``numpy.random.default_rng([seed, 0])``:

* conv / dense ``weight``: He-normal, std = sqrt(2 / fan_in), fan_in = prod(shape[1:]);
* ``bias``: N(0, 0.1);
* BatchNorm ``gamma`` ~ U(0.5, 1.0), ``beta`` ~ N(0, 0.1),
  ``running_mean`` = 0.1 * z with z ~ N(0, 1), ``running_var`` ~ U(0.5, 2.0).
* after the BN calibration below, the last layer of every residual branch
  (ResNet's bn3 gamma/beta, WideResNet's last conv) is scaled by 0.3 (``damp_residual_branches``): with full-scale
  random branches GluonCV's own float32 output is ~1e-4 away from its float64
  output (the random network is chaotic), which would drown a 1e-5 parity test.

Random running statistics alone do not normalise anything, so activations drift
by orders of magnitude through 100+ layers (the pre-activation WideResNet of the
VPLR model, whose residual stream is never normalised, grows roughly 2x per
block).  The running statistics are therefore *calibrated* by one forward pass
over a seeded N(0, 1) batch (2x3x128x128, ``default_rng([seed, 1])``): a
pre-hook on every BatchNorm measures the per-channel mean ``m`` and variance
``v`` of the BN's actual input (pooled over all channels when a channel has fewer
than 16 samples, e.g. after global pooling; ``v`` floored at 1% of its channel
mean) and rewrites the random draws as ``running_mean = m + sqrt(v) * (0.1 z)``
and ``running_var = v * U(0.5, 2.0)``, so every BN is a non-trivial,
well-conditioned affine map (offset ~0.1 sigma, scale 0.5-1.4 times gamma)
instead of an identity or a blow-up.  Because hooks run in forward order,
downstream layers are calibrated on already-calibrated activations.  The result
is stored in the ``.params`` file, which is the source of truth.  Logits end up
with std of order 1-10 and a healthy spread across classes (printed per output).

Inputs are ``default_rng([seed, 2, i]).standard_normal((B, 3, H, W))`` (NCHW for
MXNet, written NHWC), so they depend only on the seed, index and size and are the
same for every model.

Dynamic sizes
-------------
GluonCV bakes sizes into the model at construction (crop_size=480): the model's
``_up_kwargs`` (final resize to input size), PSP ``_PyramidPooling._up_kwargs``
and DeepLabV3 ``_AsppPooling._up_kwargs`` (crop/8), and for the VPLR model
(``deeplabv3b_plus``) its head's ``_up_kwargs`` (crop/2: the ASPP output is
resized to the low-level feature ``m2``) and its ASPP pooling (crop/8).  Here a
forward pre-hook on every block that owns ``_up_kwargs`` sets it from the
tensor actually reaching it, exactly as GluonCV's ``predict``/``demo`` path does:
model -> (H, W) of the image; pyramid / ASPP pooling -> spatial size of their
input (the c4 feature); VPLR head -> spatial size of its ``c1`` input (``m2``).
Then the ordinary ``forward`` yields main and aux logits at input resolution
(``predict`` drops aux).  Self-check (``--check``, on by default): with the hooks
removed and every ``_up_kwargs`` reset to its construction value,
``net.predict(x)`` must reproduce the main output.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import json
import os
import platform
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import gluoncv
import mxnet as mx
import numpy as np
from gluoncv.model_zoo import deeplabv3, deeplabv3b_plus, pspnet

SUPPORTED_MODELS: tuple[str, ...] = (
    "fcn_resnet50_ade",
    "fcn_resnet101_ade",
    "fcn_resnet101_coco",
    "fcn_resnet101_voc",
    "psp_resnet50_ade",
    "psp_resnet101_ade",
    "psp_resnet101_coco",
    "psp_resnet101_voc",
    "psp_resnet101_citys",
    "deeplab_resnet50_ade",
    "deeplab_resnet101_ade",
    "deeplab_resnet101_coco",
    "deeplab_resnet101_voc",
    "deeplab_resnet152_voc",
    "deeplab_v3b_plus_wideresnet_citys",
)

CALIB_SHAPE = (2, 3, 128, 128)  # NCHW batch used to calibrate BN running stats
CALIB_MIN_SAMPLES = 16  # fewer samples per channel -> pool BN stats over channels
CHECK_RTOL = 1e-6  # predict() vs hooked forward, relative to max |logit|

FAMILY_NOTES: dict[str, str] = {
    "fcn": (
        "FCN: head(c4) and auxlayer(c3) are _FCNHead (3x3 conv in->in/4, BN, ReLU, "
        "Dropout(0.1), 1x1 conv with bias); both BilinearResize2D(align_corners=True) "
        "to (H, W)."
    ),
    "psp": (
        "PSP: _PyramidPooling concatenates [x, up(p1), up(p2), up(p3), up(p6)] where pK = "
        "1x1conv-BN-ReLU(AdaptiveAvgPooling2D(x, K)) and up() is BilinearResize2D("
        "align_corners=True) to the c4 size; then 3x3 conv 4096->512, BN, ReLU, "
        "Dropout(0.1), 1x1 conv with bias; resized to (H, W). aux = _FCNHead(1024) on c3."
    ),
    "deeplab": (
        "DeepLabV3: _ASPP concatenates [b0 (1x1), b1/b2/b3 (3x3, dilation 12/24/36), "
        "b4 pooling] (pooling LAST), each conv-BN-ReLU; b4 = GlobalAvgPool-1x1conv-BN-"
        "ReLU then BilinearResize2D(align_corners=True) from 1x1 to the c4 size "
        "(a broadcast); project 1x1 conv 1280->256, BN, ReLU, Dropout(0.5); then 3x3 "
        "conv 256->256, BN, ReLU, Dropout(0.1), 1x1 conv with bias; resized to (H, W). "
        "aux = _FCNHead(1024) on c3."
    ),
    "vplr": (
        "VPLR (DeepLabWV3Plus, WideResNet38-A2, dilated, no aux): mod1 (3x3 conv, "
        "stride 1) -> pool2 (max 3/2/1) -> mod2 = m2 (low-level feature, size "
        "ceil(H/2) x ceil(W/2)) -> pool3 -> mod3 -> mod4 (stride 2) -> mod5..mod7 "
        "-> head; the backbone's bn_out is NOT applied (the head sees mod7's raw "
        "residual sum). ASPP concatenates [pool, b0, b1, b2, b3] (pooling FIRST), "
        "project 'bot_aspp' = 1x1 conv 1280->256 without BN/ReLU; pool = GAP-1x1conv-"
        "BN-ReLU resized to the c4 size. The decoder resizes the ASPP output with "
        "BilinearResize2D(align_corners=True) to the exact m2 size (e.g. 49x66 for "
        "97x131, not H//2), concatenates [c1_block(m2) (1x1 conv 128->48, no BN), "
        "aspp], applies 3x3-BN-ReLU-3x3-BN-ReLU-1x1 (no bias, no dropout), and the "
        "model resizes to the exact input size (H, W) (also for odd sizes), as "
        "GluonCV's predict() does. The ordinary forward() with construction sizes "
        "only works at the crop size (480)."
    ),
}


def family_of(model: str) -> str:
    if model.startswith("deeplab_v3b_plus"):
        return "vplr"
    return model.split("_", 1)[0]


def parse_inputs(spec: str) -> list[tuple[int, int, int]]:
    """Parse ``HxWxB[,HxWxB...]`` (B optional) into (H, W, B) tuples."""
    result = []
    for item in spec.split(","):
        parts = [int(p) for p in item.strip().lower().split("x")]
        if len(parts) == 2:
            parts.append(1)
        if len(parts) != 3 or min(parts) < 1:
            raise argparse.ArgumentTypeError(f"bad input spec {item!r}, want HxWxB")
        result.append((parts[0], parts[1], parts[2]))
    return result


def walk(block: mx.gluon.Block, prefix: str = "") -> Iterator[tuple[str, mx.gluon.Block]]:
    """Yield (structural name, block) for ``block`` and all its descendants."""
    yield prefix, block
    for name, child in block._children.items():
        yield from walk(child, f"{prefix}.{name}" if prefix else name)


def build_model(model: str) -> mx.gluon.HybridBlock:
    # PSPNet prints 'self.crop_size ...' on construction; that noise is harmless.
    net = gluoncv.model_zoo.get_model(model, pretrained=False, pretrained_base=False)
    # Backbone convs have in_channels=0 (deferred init); give them placeholder
    # storage now, real values are set once shapes are known.
    for param in net.collect_params().values():
        if param._data is None and not param._deferred_init:
            param.initialize(init=mx.init.Zero(), ctx=mx.cpu())
    return net


class DynamicSizes:
    """Forward pre-hooks that point every BilinearResize2D at the true size."""

    def __init__(self, net: mx.gluon.HybridBlock) -> None:
        self.net = net
        self.targets: dict[str, list[int]] = {}
        self._handles: list[Any] = []
        self.defaults: dict[str, dict[str, int]] = {}
        for name, block in walk(net):
            if not hasattr(block, "_up_kwargs"):
                continue
            self.defaults[name] = dict(block._up_kwargs)
            if block is net:
                rule = 0  # the image itself
            elif isinstance(block, (pspnet._PyramidPooling, deeplabv3._AsppPooling,
                                    deeplabv3b_plus._AsppPooling)):
                rule = 0  # the c4 feature reaching the pooling branch
            elif isinstance(block, deeplabv3b_plus._DeepLabHead):
                rule = 1  # head(x, c1): ASPP output is resized to c1 (= m2)
            else:
                raise RuntimeError(f"no size rule for {name} ({type(block).__name__})")
            self._handles.append(block.register_forward_pre_hook(self._hook(name or "(model)", rule)))

    def _hook(self, name: str, arg: int) -> Callable[[mx.gluon.Block, tuple], None]:
        def hook(block: mx.gluon.Block, args: tuple) -> None:
            h, w = args[arg].shape[2:]
            block._up_kwargs["height"] = int(h)
            block._up_kwargs["width"] = int(w)
            self.targets[name] = [int(h), int(w)]

        return hook

    def remove(self) -> None:
        for handle in self._handles:
            handle.detach()
        self._handles = []

    def reset_defaults(self) -> None:
        """Restore every ``_up_kwargs`` to its construction value."""
        for name, block in walk(self.net):
            if name in self.defaults:
                block._up_kwargs.clear()
                block._up_kwargs.update(self.defaults[name])


def init_params(params: dict[str, mx.gluon.Parameter], seed: int) -> None:
    """Seeded random values for every parameter, in sorted key order."""
    rng = np.random.default_rng([seed, 0])
    for key in sorted(params):
        param = params[key]
        shape = param.shape
        kind = key.rsplit(".", 1)[-1]
        if kind == "weight":
            fan_in = int(np.prod(shape[1:]))
            value = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
        elif kind in ("bias", "beta"):
            value = rng.normal(0.0, 0.1, shape)
        elif kind == "gamma":
            value = rng.uniform(0.5, 1.0, shape)
        elif kind == "running_mean":
            value = 0.1 * rng.standard_normal(shape)
        elif kind == "running_var":
            value = rng.uniform(0.5, 2.0, shape)
        else:
            raise RuntimeError(f"unexpected parameter {key} {shape}")
        param.set_data(mx.nd.array(value.astype(np.float32), ctx=mx.cpu()))


RESIDUAL_BRANCH_SCALE = 0.3


def residual_branch_ends(params: dict[str, mx.gluon.Parameter]) -> list[str]:
    """Keys of the last layer of every residual branch.

    ResNet: bn3's gamma/beta (bottleneck) or bn2's (basic block); WideResNet:
    the last conv, ``convs.2`` or, in the mod6/mod7 bottlenecks, ``convs.5``.
    """
    bottleneck = any(".bn3." in key for key in params)
    bn_end = r"bn3" if bottleneck else r"bn2"
    ends = []
    for key in params:
        if re.fullmatch(rf"layer\d\.\d+\.{bn_end}\.(gamma|beta)", key):
            ends.append(key)
        elif match := re.fullmatch(r"(mod\d\.\d+\.convs\.)(2|5)\.weight", key):
            if match.group(2) == "5" or f"{match.group(1)}5.weight" not in params:
                ends.append(key)
    return ends


def damp_residual_branches(params: dict[str, mx.gluon.Parameter]) -> None:
    """Scale the end of every residual branch by RESIDUAL_BRANCH_SCALE.

    With full-scale random branches the network is chaotic: a float32 rounding
    error grows through the residual blocks, and GluonCV's own float32 output
    is ~1e-4 (relative) away from its float64 output, so a 1e-5 parity test
    would measure noise. Damped branches (as trained ResNets and zero-gamma
    inits have) keep GluonCV's float32-vs-float64 error near 1e-6 while every
    weight stays random and every BN stays non-trivial. Damping *after* the
    BN calibration matters: the BNs downstream then see inputs smaller than
    their statistics and contract, which keeps the network out of the chaotic
    regime (measured: fcn_resnet50 1.2e-6, deeplab_resnet152 0.7e-6; damping
    before calibration leaves 7e-6 to 9e-6).
    """
    for key in residual_branch_ends(params):
        params[key].set_data(params[key].data() * RESIDUAL_BRANCH_SCALE)


def calibrate_batchnorm(net: mx.gluon.HybridBlock, seed: int) -> None:
    """Rescale BN running stats to the statistics of their real inputs."""
    bns = {name: b for name, b in walk(net) if isinstance(b, mx.gluon.nn.BatchNorm)}
    seen: dict[str, int] = {}

    def make_hook(name: str) -> Callable[[mx.gluon.Block, tuple], None]:
        def hook(block: mx.gluon.Block, args: tuple) -> None:
            seen[name] = seen.get(name, 0) + 1
            x = args[0].asnumpy().astype(np.float64)
            n, c, h, w = x.shape
            if n * h * w >= CALIB_MIN_SAMPLES:
                mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
            else:
                mean, var = np.full(c, x.mean()), np.full(c, x.var())
            var = np.maximum(var, 0.01 * var.mean() + 1e-12)
            rm = block.running_mean.data().asnumpy().astype(np.float64)
            rv = block.running_var.data().asnumpy().astype(np.float64)
            block.running_mean.set_data(mx.nd.array((mean + np.sqrt(var) * rm).astype(np.float32)))
            block.running_var.set_data(mx.nd.array((var * rv).astype(np.float32)))

        return hook

    handles = [b.register_forward_pre_hook(make_hook(name)) for name, b in bns.items()]
    x = np.random.default_rng([seed, 1]).standard_normal(CALIB_SHAPE).astype(np.float32)
    try:
        net(mx.nd.array(x))
        mx.nd.waitall()
    finally:
        for handle in handles:
            handle.detach()
    bad = {name: seen.get(name, 0) for name in bns if seen.get(name, 0) != 1}
    if bad:
        raise RuntimeError(f"BatchNorm layers not called exactly once: {bad}")


def logit_stats(y: np.ndarray) -> dict[str, float]:
    """Summary of NCHW logits: magnitude, spread across classes, argmax variety."""
    y64 = y.astype(np.float64)
    return {
        "mean": float(y64.mean()),
        "std": float(y64.std()),
        "min": float(y64.min()),
        "max": float(y64.max()),
        "finite": bool(np.isfinite(y64).all()),
        "class_std": float(y64.std(axis=1).mean()),  # per-pixel spread over classes
        "argmax_classes": int(np.unique(y64.argmax(axis=1)).size),
    }


def atomic_write(path: str, writer: Callable[[str], None]) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; use normal permissions
        writer(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def fmt(stats: dict[str, float]) -> str:
    return (f"mean={stats['mean']:+.3f} std={stats['std']:.3f} "
            f"range=[{stats['min']:+.2f}, {stats['max']:+.2f}] "
            f"class_std={stats['class_std']:.3f} argmax_classes={stats['argmax_classes']}")


def run_model(model: str, seed: int, inputs: list[tuple[int, int, int]], out_dir: str,
              check: bool) -> dict[str, Any]:
    t0 = time.perf_counter()
    mx.random.seed(seed)
    np.random.seed(seed)
    net = build_model(model)
    sizes = DynamicSizes(net)
    # Resolve deferred shapes with a tiny pass, then draw and calibrate.
    net(mx.nd.zeros((1, 3, 33, 33)))
    mx.nd.waitall()
    params = net._collect_params_with_prefix()
    init_params(params, seed)
    calibrate_batchnorm(net, seed)
    damp_residual_branches(params)  # after calibration: see its docstring
    t_init = time.perf_counter() - t0
    print(f"[{model}] built + initialised {len(params)} param arrays in {t_init:.1f}s", flush=True)

    arrays: dict[str, np.ndarray] = {}
    input_meta = []
    nclass = None
    has_aux = False
    t_forward = t_check = 0.0
    for i, (h, w, b) in enumerate(inputs):
        x = np.random.default_rng([seed, 2, i]).standard_normal((b, 3, h, w)).astype(np.float32)
        xnd = mx.nd.array(x)
        t1 = time.perf_counter()
        sizes.targets.clear()
        outs = net(xnd)
        outs = outs if isinstance(outs, (tuple, list)) else (outs,)
        main = outs[0].asnumpy()
        aux = outs[1].asnumpy() if len(outs) > 1 else None
        dt = time.perf_counter() - t1
        t_forward += dt
        nclass = main.shape[1]
        has_aux = aux is not None
        if main.shape[2:] != (h, w) or (aux is not None and aux.shape[2:] != (h, w)):
            raise RuntimeError(f"{model}: output {main.shape} for input {h}x{w}")
        entry: dict[str, Any] = {
            "index": i, "batch": b, "height": h, "width": w,
            "output_shape": [b, h, w, nclass],
            "resize_targets": dict(sizes.targets),
            "output_stats": logit_stats(main),
            "forward_s": round(dt, 3),
        }
        print(f"[{model}] input_{i} {b}x{h}x{w}: forward {dt:.1f}s  resize targets "
              f"{sizes.targets}", flush=True)
        print(f"[{model}]   output_{i} {fmt(entry['output_stats'])}", flush=True)
        if aux is not None:
            entry["aux_stats"] = logit_stats(aux)
            print(f"[{model}]   aux_{i}    {fmt(entry['aux_stats'])}", flush=True)
        for name, st in [("output", entry["output_stats"])] + (
                [("aux", entry["aux_stats"])] if aux is not None else []):
            if not st["finite"] or st["std"] < 1e-2 or max(abs(st["min"]), abs(st["max"])) > 1e4:
                raise RuntimeError(f"{model}: unhealthy {name}_{i} logits {st}")
        if check:
            t2 = time.perf_counter()
            sizes.remove()
            sizes.reset_defaults()
            pred = net.predict(xnd).asnumpy()
            sizes = DynamicSizes(net)
            t_check += time.perf_counter() - t2
            diff = float(np.abs(pred - main).max()) if pred.shape == main.shape else float("inf")
            entry["predict_max_abs_diff"] = diff
            print(f"[{model}]   predict() max |diff| = {diff:.3g}", flush=True)
            if diff > CHECK_RTOL * float(np.abs(main).max()):
                raise RuntimeError(f"{model}: forward != predict() (max diff {diff}, "
                                   f"shapes {pred.shape} vs {main.shape})")
        arrays[f"input_{i}"] = x.transpose(0, 2, 3, 1)
        arrays[f"output_{i}"] = main.transpose(0, 2, 3, 1)
        if aux is not None:
            arrays[f"aux_{i}"] = aux.transpose(0, 2, 3, 1)
            entry["aux_shape"] = [b, h, w, aux.shape[1]]
        input_meta.append(entry)

    family = family_of(model)
    meta = {
        "model": model,
        "family": family,
        "seed": seed,
        "layout": "NHWC",
        "nclass": nclass,
        "has_aux": has_aux,
        "num_param_arrays": len(params),
        "versions": {"gluoncv": gluoncv.__version__,
                     "gluoncv_dist": importlib.metadata.version("gluoncv"),
                     "mxnet": mx.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        "construction_up_kwargs": sizes.defaults,
        "inputs": input_meta,
        "init": {
            "order": "sorted save_parameters keys, numpy default_rng([seed, 0])",
            "weight": "He-normal std=sqrt(2/prod(shape[1:]))",
            "bias": "N(0, 0.1)", "gamma": "U(0.5, 1.0)", "beta": "N(0, 0.1)",
            "running_mean": "m + sqrt(v) * 0.1 * N(0, 1)",
            "running_var": "v * U(0.5, 2.0)",
            "calibration": (f"m, v = per-channel mean/var of each BN input on a "
                            f"default_rng([seed, 1]) N(0,1) batch {list(CALIB_SHAPE)} (NCHW); "
                            f"pooled over channels if < {CALIB_MIN_SAMPLES} samples per "
                            f"channel; v floored at 1% of its mean"),
            "inputs": "default_rng([seed, 2, i]).standard_normal((B, 3, H, W)), NHWC in npz",
        },
        "bilinear_resize": "mx.nd.contrib.BilinearResize2D, mode='size', align_corners=True",
        "batchnorm": "mx.gluon.nn.BatchNorm inference (running stats), epsilon=1e-5",
        "notes": FAMILY_NOTES[family],
    }
    arrays["meta"] = np.array(json.dumps(meta, sort_keys=True))

    os.makedirs(out_dir, exist_ok=True)
    params_path = os.path.join(out_dir, f"{model}.params")
    npz_path = os.path.join(out_dir, f"{model}.npz")
    atomic_write(params_path, net.save_parameters)
    saved = len(mx.nd.load(params_path))
    if saved != len(params):
        raise RuntimeError(f"{model}: saved {saved} arrays, expected {len(params)}")

    def write_npz(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(npz_path, write_npz)
    total = time.perf_counter() - t0
    print(f"[{model}] wrote {params_path} ({saved} arrays) and {npz_path}; "
          f"init {t_init:.1f}s forward {t_forward:.1f}s check {t_check:.1f}s total {total:.1f}s",
          flush=True)
    sizes.remove()
    del net, params, sizes
    gc.collect()
    mx.nd.waitall()
    return {"model": model, "param_arrays": saved, "total_s": round(total, 1),
            "forward_s": round(t_forward, 1), "stats": [e["output_stats"] for e in input_meta]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", default=[], help="zoo name (repeatable)")
    parser.add_argument("--models", default="", help="comma-separated zoo names")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--inputs", type=parse_inputs, default=parse_inputs("480x480x1"),
                        help="comma-separated HxWxB specs (default 480x480x1)")
    parser.add_argument("--out", help="output directory")
    parser.add_argument("--check", action=argparse.BooleanOptionalAction, default=True,
                        help="assert forward == net.predict(x) for every input (default on)")
    parser.add_argument("--list", action="store_true", help="print supported model names")
    args = parser.parse_args(argv)

    if args.list:
        print("\n".join(SUPPORTED_MODELS))
        return 0
    models = list(args.model) + [m.strip() for m in args.models.split(",") if m.strip()]
    if models == ["all"]:
        models = list(SUPPORTED_MODELS)
    if not models or not args.out:
        parser.error("need --model/--models and --out (or --list)")
    unknown = [m for m in models if m not in SUPPORTED_MODELS]
    if unknown:
        parser.error(f"unsupported model(s) {unknown}; see --list")

    summary = []
    for model in models:
        summary.append(run_model(model, args.seed, args.inputs, args.out, args.check))
    print("\nsummary:")
    for s in summary:
        stats = ", ".join(f"{st['mean']:+.2f}/{st['std']:.2f}" for st in s["stats"])
        print(f"  {s['model']:36s} arrays={s['param_arrays']:4d} total={s['total_s']:6.1f}s "
              f"forward={s['forward_s']:6.1f}s logits mean/std: {stats}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
