"""dlib's face recognition ResNet in torch, loaded from dlib's own ``.dat`` file.

dlib's ``face_recognition_model_v1`` runs ``dlib_face_recognition_resnet_model_v1.dat`` (shipped by
face_recognition_models) through dlib's own tensor code. The dlib wheel installed here is built
without BLAS, so one face costs ~75 ms on a 2-core CPU. This module reads the same weights straight
from dlib's binary serialization (pure Python/numpy, no dlib headers or C++ tool) and runs the same
network with torch: batched, on CPU or CUDA. On real faces the descriptors match dlib's to within
~4e-7 (max abs difference) on CPU, at ~6-8 ms per face at batch 1 and ~3 ms at batch 16.

The network is the one of dlib's ``examples/dnn_face_recognition_ex.cpp`` (``anet_type``)::

    loss_metric<fc_no_bias<128, avg_pool_everything<
        alevel0<alevel1<alevel2<alevel3<alevel4<
        max_pool<3,3,2,2, relu<affine<con<32,7,7,2,2, input_rgb_image_sized<150>>>>>>>>>>>>>

    alevel0 = ares_down<256>
    alevel1 = ares<256, ares<256, ares_down<256>>>
    alevel2 = ares<128, ares<128, ares_down<128>>>
    alevel3 = ares<64, ares<64, ares<64, ares_down<64>>>>
    alevel4 = ares<32, ares<32, ares<32>>>

    block<N, stride>  = affine<con<N,3,3,1,1, relu<affine<con<N,3,3,stride,stride, x>>>>>
    ares<N>           = relu<add_prev1<block<N,1, tag1<x>>>>          -> relu(x + block(x))
    ares_down<N>      = relu<add_prev2<avg_pool<2,2,2,2, skip1<tag2<block<N,2, tag1<x>>>>>>>
                                                                      -> relu(avgpool(x) + block(x))

Conventions taken from dlib's source (``dlib/dnn/layers.h``, ``cpu_dlib.cpp``):

* ``con``/``max_pool``/``avg_pool`` pad by ``size // 2`` when the stride is 1 and by 0 otherwise
  (the file also records the padding; it is read, not assumed).
* ``add_prev`` adds tensors of different shapes by zero-filling the smaller one at the end of each
  axis: the pooled skip path has fewer channels in every down block, and in ``alevel1`` the
  stride-2 block gives 3x3 against the pooled 4x4.
* the input layer feeds ``(pixel - mean) / 256`` per RGB channel, means stored in the file.
* ``fc_no_bias`` weights are stored ``(num_inputs, num_outputs)``; ``output = x @ W``.

File format (``dlib/serialize.h``, ``dlib/dnn/core.h``, ``dlib/cuda/tensor.h``): integers are a
control byte (low nibble: byte count, bit 7: negative) followed by the magnitude in little endian;
bools are the ASCII bytes ``'1'``/``'0'``; strings are a length then bytes; scalars (``float``,
``double``) are ``float_details``: an integer mantissa then an integer exponent, value
``mantissa * 2**exponent``. Tensors (version 2) are ``n, k, nr, nc`` then raw little-endian float32
data. Nested layers serialize outside-in as a chain of version numbers down to the input layer,
then each layer's details inside-out; tag and skip layers contribute only their version number.
Each ``add_layer`` follows its details with three bools and its training-time tensors (empty in
the shipped file): ``x_grad``, ``cached_output`` and, in the version 2 written by 2017's dlib,
``params_grad``; the innermost one (on the input layer) has ``grad_final`` and, from version 3,
``sample_expansion_factor``. Note that ``serialize.h``'s own comment says floats are written
exponent first; its code (and this file) writes the mantissa first.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from clinrelease.errors import ConfigError

#: chip side the network takes (``input_rgb_image_sized<150>``)
CHIP_SIZE = 150

#: padding around the face in a chip, as ``compute_face_descriptor(img, shape)`` crops it
CHIP_PADDING = 0.25

#: the residual levels of ``anet_type`` from the input outwards: (filters, number of ``ares``
#: blocks, whether the level starts with an ``ares_down``)
LEVELS: tuple[tuple[int, int, bool], ...] = (
    (32, 3, False),  # alevel4
    (64, 3, True),  # alevel3
    (128, 2, True),  # alevel2
    (256, 2, True),  # alevel1
    (256, 0, True),  # alevel0
)


# ---------------------------------------------------------------------------------------------
# dlib's serialization primitives


class _FormatError(Exception):
    """The byte stream is not what dlib's serializer would have written (position in message)."""


class _Reader:
    """Cursor over the bytes of a dlib ``.dat`` file, one primitive of ``dlib/serialize.h`` a call."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if n < 0:
            raise _FormatError(f"negative length {n} at byte {self.pos}")
        if self.pos + n > len(self.data):
            raise _FormatError(f"unexpected end of file at byte {self.pos} (wanted {n} more bytes)")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def integer(self) -> int:
        """dlib's integer: control byte (bit 7 negative, low nibble size) + little-endian magnitude."""
        control = self._take(1)[0]
        size = control & 0x0F
        if size > 8 or control & 0x70:
            raise _FormatError(f"bad integer control byte 0x{control:02x} at byte {self.pos - 1}")
        value = int.from_bytes(self._take(size), "little")
        return -value if control & 0x80 else value

    def boolean(self) -> bool:
        ch = self._take(1)
        if ch not in (b"0", b"1"):
            raise _FormatError(f"bad bool byte {ch!r} at byte {self.pos - 1}")
        return ch == b"1"

    def scalar(self) -> float:
        """A ``float``/``double`` as dlib's ``float_details``: mantissa, then exponent."""
        if self.pos < len(self.data) and self.data[self.pos] & 0x70:
            # dlib's pre-2013 ASCII float format; never written by the dnn code
            raise _FormatError(f"ASCII-format float at byte {self.pos} (not supported)")
        start = self.pos
        mantissa = self.integer()
        exponent = self.integer()
        if not -(2**15) <= exponent < 2**15:
            raise _FormatError(f"float exponent {exponent} at byte {start} does not fit dlib's int16")
        if exponent == 32000:
            return math.inf
        if exponent == 32001:
            return -math.inf
        if exponent == 32002:
            return math.nan
        try:
            return math.ldexp(mantissa, exponent)
        except OverflowError:  # as converting it back to a C++ double would
            return math.copysign(math.inf, mantissa)

    def string(self) -> str:
        start = self.pos
        n = self.integer()
        if not 0 <= n <= 256:
            raise _FormatError(f"implausible string length {n} at byte {start}")
        return self._take(n).decode("latin-1")

    def peek_string(self) -> str | None:
        """The string at the cursor without consuming it, or None when none can start here."""
        pos = self.pos
        try:
            return self.string()
        except _FormatError:
            return None
        finally:
            self.pos = pos

    def tensor(self) -> np.ndarray:
        """A ``resizable_tensor`` (version 2): ``n, k, nr, nc`` then raw little-endian float32."""
        start = self.pos
        version = self.integer()
        if version != 2:
            raise _FormatError(f"tensor version {version} at byte {start} (only version 2, raw float32, is supported)")
        shape = tuple(self.integer() for _ in range(4))
        count = math.prod(shape)
        if min(shape) < 0 or count * 4 > len(self.data) - self.pos:
            raise _FormatError(f"tensor of shape {shape} at byte {start} does not fit in the file")
        # one vectorized copy per tensor: the file is almost entirely these blocks
        values = np.frombuffer(self.data, dtype="<f4", count=count, offset=self.pos).astype(np.float32)
        self.pos += 4 * count
        return values.reshape(shape)

    def alias_tensor(self) -> tuple[int, int, int, int]:
        """An ``alias_tensor`` (version 1): just its shape ``n, k, nr, nc``."""
        start = self.pos
        version = self.integer()
        if version != 1:
            raise _FormatError(f"alias_tensor version {version} at byte {start}")
        return tuple(self.integer() for _ in range(4))  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------
# layer details


@dataclass
class Layer:
    """One dlib layer's details as parsed from the file.

    Attributes
    ----------
    kind:
        ``"con"``, ``"affine"``, ``"relu"``, ``"max_pool"``, ``"avg_pool"``, ``"add_prev"``,
        ``"fc"`` or ``"input"``.
    arrays:
        Its weights: ``weight``/``bias`` for ``con`` (weight ``(out, in, kh, kw)``), ``gamma``/``beta``
        for ``affine`` (per channel), ``weight`` ``(in, out)`` for ``fc``, ``mean`` (RGB) for the input.
    params:
        Its hyper-parameters (sizes, strides, paddings).
    """

    kind: str
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)


def _read_con(r: _Reader, tag: str) -> Layer:
    if tag != "con_4":
        raise _FormatError(f"con layer version {tag!r} (only con_4 is supported)")
    params = r.tensor().reshape(-1)
    num_filters, nr, nc = r.integer(), r.integer(), r.integer()
    stride_y, stride_x, pad_y, pad_x = r.integer(), r.integer(), r.integer(), r.integer()
    filters = r.alias_tensor()
    biases = r.alias_tensor()
    for _ in range(4):  # learning-rate and weight-decay multipliers
        r.scalar()
    n_weights = math.prod(filters)
    if filters[0] != num_filters or filters[2:] != (nr, nc) or params.size != n_weights + math.prod(biases):
        raise _FormatError(f"con layer sizes disagree: filters {filters}, biases {biases}, {params.size} params")
    return Layer(
        "con",
        {"weight": params[:n_weights].reshape(filters), "bias": params[n_weights:].copy()},
        {"stride": (stride_y, stride_x), "padding": (pad_y, pad_x)},
    )


def _read_affine(r: _Reader, tag: str) -> Layer:
    if tag == "affine_":
        params = r.tensor().reshape(-1)
        gamma = r.alias_tensor()
        r.alias_tensor()  # beta has gamma's shape
        mode = r.integer()
        n = math.prod(gamma)
        return Layer("affine", {"gamma": params[:n].copy(), "beta": params[n : 2 * n].copy()}, {"mode": mode})
    if tag in ("bn_con2", "bn_fc2"):
        # a batch-norm layer saved from training: dlib's affine_(const bn_&) folds its running stats
        params = r.tensor().reshape(-1)
        gamma_shape = r.alias_tensor()
        r.alias_tensor()
        r.tensor(), r.tensor()  # batch means / inverse stds of the last training batch
        running_means = r.tensor().reshape(-1)
        running_variances = r.tensor().reshape(-1)
        r.integer(), r.integer()  # num_updates, running_stats_window_size
        for _ in range(4):
            r.scalar()
        eps = r.scalar()
        n = math.prod(gamma_shape)
        gamma = params[:n] / np.sqrt(running_variances + np.float32(eps))
        beta = params[n : 2 * n] - gamma * running_means
        return Layer("affine", {"gamma": gamma.astype(np.float32), "beta": beta.astype(np.float32)}, {"mode": 0 if tag == "bn_con2" else 1})
    raise _FormatError(f"unknown affine layer version {tag!r}")


def _read_pool(r: _Reader, tag: str) -> Layer:
    if tag not in ("max_pool_2", "avg_pool_2"):
        raise _FormatError(f"pooling layer version {tag!r} (only max_pool_2/avg_pool_2 are supported)")
    nr, nc, stride_y, stride_x, pad_y, pad_x = (r.integer() for _ in range(6))
    return Layer(tag[:-2], {}, {"size": (nr, nc), "stride": (stride_y, stride_x), "padding": (pad_y, pad_x)})


def _read_fc(r: _Reader, tag: str) -> Layer:
    if tag != "fc_2":
        raise _FormatError(f"fc layer version {tag!r} (only fc_2 is supported)")
    num_outputs, num_inputs = r.integer(), r.integer()
    params = r.tensor().reshape(-1)
    weights = r.alias_tensor()
    r.alias_tensor()  # biases (empty for fc_no_bias)
    bias_mode = r.integer()
    for _ in range(4):
        r.scalar()
    n = num_inputs * num_outputs
    if weights[:2] != (num_inputs, num_outputs) or params.size < n:
        raise _FormatError(f"fc layer sizes disagree: weights {weights}, {params.size} params")
    arrays = {"weight": params[:n].reshape(num_inputs, num_outputs)}
    if bias_mode == 0:
        arrays["bias"] = params[n : n + num_outputs].copy()
    return Layer("fc", arrays, {"bias": bias_mode == 0})


_DETAIL_READERS = {
    "con_4": _read_con,
    "affine_": _read_affine,
    "bn_con2": _read_affine,
    "bn_fc2": _read_affine,
    "max_pool_2": _read_pool,
    "avg_pool_2": _read_pool,
    "fc_2": _read_fc,
}


def _read_details(r: _Reader) -> Layer:
    start = r.pos
    tag = r.string()
    if tag == "relu_":
        return Layer("relu")
    if tag == "add_prev_":
        return Layer("add_prev")
    reader = _DETAIL_READERS.get(tag)
    if reader is None:
        raise _FormatError(f"unsupported layer {tag!r} at byte {start}")
    return reader(r, tag)


# ---------------------------------------------------------------------------------------------
# the network's structure, as dlib nests it


def _anet_structure() -> list[str]:
    """The layers of ``anet_type`` from the input outwards: layer kinds, ``"tag"`` and ``"skip"``.

    This is the order in which their details appear in the file.
    """
    out = ["con", "affine", "relu", "max_pool"]

    def block() -> list[str]:
        return ["con", "affine", "relu", "con", "affine"]

    for _filters, n_ares, down in LEVELS:
        if down:  # relu<add_prev2<avg_pool<skip1<tag2<block<tag1<x>>>>>>>
            out += ["tag", *block(), "tag", "skip", "avg_pool", "add_prev", "relu"]
        for _ in range(n_ares):  # relu<add_prev1<block<tag1<x>>>>
            out += ["tag", *block(), "add_prev", "relu"]
    return out + ["avg_pool", "fc"]


@dataclass
class DlibNetFile:
    """The parsed contents of a dlib face recognition ``.dat``.

    Attributes
    ----------
    layers:
        Every layer with parameters or shape, from the input outwards (tags and skips left out).
    loss:
        The loss layer's version tag and its scalars (``margin``, ``dist_thresh`` for loss_metric).
    load_seconds:
        Wall time the parse took.
    """

    layers: list[Layer]
    loss: dict[str, Any]
    load_seconds: float


def parse_dlib_dat(path: str | Path) -> DlibNetFile:
    """Parse dlib's ``dlib_face_recognition_resnet_model_v1.dat`` into numpy arrays.

    Parameters
    ----------
    path:
        The ``.dat`` file (``model_path("dlib_face_recognition")``).

    Raises
    ------
    ConfigError
        When the file cannot be read or is not a serialized dlib ``anet_type``, naming the file and
        the byte where parsing stopped.
    """
    path = Path(path)
    start = time.perf_counter()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the dlib face recognition model: {exc}", path) from exc
    r = _Reader(data)
    structure = _anet_structure()
    try:
        # add_loss_layer: version 1, the loss details, then the network it sits on
        if (v := r.integer()) != 1:
            raise _FormatError(f"add_loss_layer version {v} (expected 1)")
        loss_tag = r.string()
        if loss_tag != "loss_metric_2":
            raise _FormatError(f"loss layer {loss_tag!r} (expected loss_metric_2)")
        loss = {"tag": loss_tag, "margin": r.scalar(), "dist_thresh": r.scalar()}

        # version numbers outside-in: add_layer 1 (current dlib) or 2 (2017, adds params_grad);
        # tag/skip layers 1; the innermost add_layer (on the input layer) 2 or 3
        versions: list[int] = []
        for kind in reversed(structure[1:]):
            at = r.pos
            v = r.integer()
            ok = (1, 2) if kind not in ("tag", "skip") else (1,)
            if v not in ok:
                raise _FormatError(f"version {v} at byte {at} for a {kind} layer (expected {ok})")
            versions.append(v)
        versions.reverse()
        at = r.pos
        input_version = r.integer()
        if input_version not in (2, 3):
            raise _FormatError(f"input add_layer version {input_version} at byte {at}")

        # the input layer itself
        tag = r.string()
        if tag != "input_rgb_image_sized":
            raise _FormatError(f"input layer {tag!r} (expected input_rgb_image_sized)")
        mean = np.array([r.scalar(), r.scalar(), r.scalar()], np.float32)
        size = (r.integer(), r.integer())
        if size != (CHIP_SIZE, CHIP_SIZE):
            raise _FormatError(f"input size {size} (expected {CHIP_SIZE}x{CHIP_SIZE})")
        layers = [Layer("input", {"mean": mean}, {"size": size})]

        # then each add_layer's details (and its training-time state) inside-out
        for i, kind in enumerate(structure):
            version = input_version if i == 0 else versions[i - 1]
            if kind in ("tag", "skip"):
                continue
            at = r.pos
            layer = _read_details(r)
            if layer.kind != kind:
                raise _FormatError(f"layer {i} at byte {at} is {layer.kind!r}, expected {kind!r}")
            for _ in range(3):  # setup called, gradient stale, getters disabled
                r.boolean()
            r.tensor(), r.tensor()  # x_grad, cached_output
            if i == 0:
                r.tensor()  # grad_final
                if version >= 3:
                    r.integer()  # sample_expansion_factor
            elif version == 2:
                r.tensor()  # params_grad
            layers.append(layer)
        if r.pos != len(data):
            raise _FormatError(f"{len(data) - r.pos} bytes left after the network")
    except _FormatError as exc:
        raise ConfigError(f"not a dlib face recognition ResNet (anet_type) that this parser reads: {exc}", path) from exc
    return DlibNetFile(layers, loss, time.perf_counter() - start)


# ---------------------------------------------------------------------------------------------
# torch network


def _zero_fill_add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's ``add_prev``: the sum over the larger shape, each operand zero-filled at the ends.

    The skip path of a down block has fewer channels than the block (and in ``alevel1`` one more
    row and column: 4x4 pooled against the 3x3 of the stride-2 convolution), so the block output
    lands in the top-left corner and the first channels, as in dlib's ``tt::add``.
    """
    if a.shape == b.shape:
        return a + b
    c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def grow(t: torch.Tensor) -> torch.Tensor:
        if t.shape[1:] == (c, h, w):
            return t
        return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))

    return grow(a) + grow(b)


class _Block(nn.Module):
    """``ares``/``ares_down``: two 3x3 convolutions with folded affine, plus the skip path."""

    def __init__(self, conv1: nn.Conv2d, conv2: nn.Conv2d, down: bool) -> None:
        super().__init__()
        self.conv1, self.conv2, self.down = conv1, conv2, down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(F.relu(self.conv1(x)))
        skip = F.avg_pool2d(x, 2, 2) if self.down else x
        return F.relu(_zero_fill_add(skip, y))


def _conv_affine(con: Layer, affine: Layer) -> nn.Conv2d:
    """A ``con`` followed by an ``affine`` as one convolution (the affine folded into it)."""
    weight = con.arrays["weight"]
    out_ch, in_ch, kh, kw = weight.shape
    gamma, beta = affine.arrays["gamma"].astype(np.float64), affine.arrays["beta"].astype(np.float64)
    if gamma.shape != (out_ch,):
        raise ConfigError(f"affine layer has {gamma.shape} scales for {out_ch} filters")
    conv = nn.Conv2d(in_ch, out_ch, (kh, kw), stride=con.params["stride"], padding=con.params["padding"])
    # fold in float64 so that the only float32 rounding left is torch's own
    w = weight.astype(np.float64) * gamma[:, None, None, None]
    b = con.arrays["bias"].astype(np.float64) * gamma + beta
    conv.weight.data = torch.from_numpy(w.astype(np.float32))
    conv.bias.data = torch.from_numpy(b.astype(np.float32))
    return conv


class DlibResNet(nn.Module):
    """dlib's face recognition ResNet (``anet_type``) in torch, from parsed weights.

    Takes ``(n, 3, 150, 150)`` float tensors of RGB values 0..255 (see :func:`descriptors`) and
    returns ``(n, 128)`` descriptors; two faces are the same person when their Euclidean distance is
    below 0.6.

    Parameters
    ----------
    parsed:
        The file's contents from :func:`parse_dlib_dat`.
    """

    def __init__(self, parsed: DlibNetFile) -> None:
        super().__init__()
        # the parsed layers come from the input outwards, in the order of _anet_structure() less
        # its tags and skips, which the parser has already checked
        take = iter(parsed.layers)
        inp = next(take)
        self.register_buffer("mean", torch.from_numpy(inp.arrays["mean"]).view(1, 3, 1, 1))
        self.stem = _conv_affine(next(take), next(take))
        next(take)  # relu
        pool = next(take)
        self.pool_size, self.pool_stride, self.pool_padding = pool.params["size"], pool.params["stride"], pool.params["padding"]
        blocks = []
        for _filters, n_ares, down in LEVELS:
            for is_down in [True] * down + [False] * n_ares:
                con1, aff1, _relu, con2, aff2 = (next(take) for _ in range(5))
                if is_down:
                    avg = next(take)
                    if avg.params != {"size": (2, 2), "stride": (2, 2), "padding": (0, 0)}:
                        raise ConfigError(f"unexpected avg_pool {avg.params} on a down block's skip path")
                next(take), next(take)  # add_prev, relu
                blocks.append(_Block(_conv_affine(con1, aff1), _conv_affine(con2, aff2), is_down))
        self.blocks = nn.Sequential(*blocks)
        everything = next(take)
        if everything.kind != "avg_pool" or everything.params["size"] != (0, 0):
            raise ConfigError(f"expected avg_pool_everything before the fc layer, found {everything.kind} {everything.params}")
        fc = next(take)
        weight = fc.arrays["weight"]
        self.fc = nn.Linear(weight.shape[0], weight.shape[1], bias=fc.params["bias"])
        self.fc.weight.data = torch.from_numpy(np.ascontiguousarray(weight.T))
        if fc.params["bias"]:
            self.fc.bias.data = torch.from_numpy(fc.arrays["bias"])
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / 256.0
        x = F.relu(self.stem(x))
        x = F.max_pool2d(x, self.pool_size, self.pool_stride, self.pool_padding)
        x = self.blocks(x)
        x = x.mean(dim=(2, 3))
        return self.fc(x)


@lru_cache(maxsize=4)
def load_dlib_resnet(path: str | Path, device: str = "cpu") -> DlibResNet:
    """The torch ResNet for a dlib ``.dat`` on ``device``, parsed once per path and device.

    The network is put in channels-last memory format: on CPU (oneDNN) that is ~1.5x faster at
    batch 1 than the default layout, and it is cuDNN's preferred layout too.

    Raises
    ------
    ConfigError
        When the file cannot be parsed (see :func:`parse_dlib_dat`).
    """
    from clinrelease.pipeline_threads import limit_torch_threads

    limit_torch_threads()
    net = DlibResNet(parse_dlib_dat(path))
    return net.to(device=torch.device(device), memory_format=torch.channels_last)


@contextmanager
def _full_fp32(device: torch.device) -> Iterator[None]:
    """Keep CUDA convolutions and matmuls in IEEE float32 for the duration (TF32 off).

    torch lets cuDNN convolutions use TF32 by default (``torch.backends.cudnn.conv.fp32_precision``
    is ``"tf32"``), whose 10-bit mantissa moves descriptors by ~1e-3, the whole tolerance against
    dlib. The setting is process-global, so it is restored afterwards.
    """
    if device.type != "cuda":
        yield
        return
    conv, matmul = torch.backends.cudnn.conv, torch.backends.cuda.matmul
    if hasattr(conv, "fp32_precision"):
        saved = (conv.fp32_precision, matmul.fp32_precision)
        conv.fp32_precision, matmul.fp32_precision = "ieee", "ieee"
        try:
            yield
        finally:
            conv.fp32_precision, matmul.fp32_precision = saved
    else:  # torch < 2.9
        saved = (torch.backends.cudnn.allow_tf32, matmul.allow_tf32)
        torch.backends.cudnn.allow_tf32, matmul.allow_tf32 = False, False
        try:
            yield
        finally:
            torch.backends.cudnn.allow_tf32, matmul.allow_tf32 = saved


def descriptors(net: DlibResNet, chips: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """128-d descriptors of aligned face chips, as dlib's ``compute_face_descriptor(chip)`` gives.

    Parameters
    ----------
    net:
        From :func:`load_dlib_resnet`.
    chips:
        ``(n, 150, 150, 3)`` uint8 RGB chips from ``dlib.get_face_chip(img, shape, 150, 0.25)``,
        which is the chip ``compute_face_descriptor(img, shape)`` extracts itself (one
        ``(150, 150, 3)`` chip is accepted too).
    batch_size:
        Chips per forward pass.

    Returns
    -------
    numpy.ndarray
        ``(n, 128)`` float32; the same person when the Euclidean distance is below 0.6.

    Raises
    ------
    ValueError
        When ``chips`` is not uint8 of that shape.
    """
    chips = np.asarray(chips)
    if chips.ndim == 3:
        chips = chips[None]
    if chips.ndim != 4 or chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3) or chips.dtype != np.uint8:
        raise ValueError(f"chips must be uint8 (n, {CHIP_SIZE}, {CHIP_SIZE}, 3) RGB, got {chips.dtype} {chips.shape}")
    device = net.mean.device
    out = np.empty((len(chips), 128), np.float32)
    with torch.inference_mode(), _full_fp32(device):
        for i in range(0, len(chips), batch_size):
            # uint8 crosses to the device (4x less than float); NHWC permuted to NCHW is already
            # channels-last in memory, which .float() keeps
            batch = torch.from_numpy(np.ascontiguousarray(chips[i : i + batch_size])).to(device, non_blocking=True)
            x = batch.permute(0, 3, 1, 2).float()
            out[i : i + len(batch)] = net(x).cpu().numpy()
    return out
