"""The paper's learned face swap: one shared encoder, one decoder per identity (Faceswap-style).

Zhu et al. (AIES 2020) trained an autoencoder on aligned face crops of the patient (identity A) and
of a consenting target (identity B): both identities share the encoder, each has its own decoder.
At release time each patient crop is encoded and decoded with B's decoder, which renders B's face
with the patient's pose and expression; the result is warped back into the frame and blended.

Training here uses warped-image augmentation (a random affine applied to input and target, a random
smooth grid warp to the input only), a reconstruction loss inside the face-hull mask (L1 plus an
optional SSIM term), AdamW, and mixed precision (``torch.autocast``) on CUDA. The model file is a
checkpoint written atomically every few steps; training resumes from it when it exists.

.. warning::
   A model trained on one patient's face is itself identifying data (decoder A reconstructs the
   patient). Store it with the same care as the original videos: escrow it to the custodians or
   delete it with :func:`secure_delete_model` after the run, as the release profile says. The
   checkpoint never records input file names, which may carry identifiers.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clinrelease.crypto.digest import sha256_file
from clinrelease.errors import ConfigError, InputError, MissingModelError
from clinrelease.face.base import FaceAnalysis, TrackedFace
from clinrelease.face.learned.crops import CropTemplate, FaceCrop, align_face, hull_mask, similarity_transform
from clinrelease.files import atomic_file

if TYPE_CHECKING:  # torch is heavy: imported where it is used
    import torch

#: format tag stored in every checkpoint
CHECKPOINT_FORMAT = "clinrelease-faceswap/1"


@dataclass(frozen=True)
class FaceSwapConfig:
    """Architecture and training settings; stored in the checkpoint.

    The encoder halves the crop ``len(encoder_channels)`` times, squeezes it through a dense
    bottleneck of ``latent_dim``, and upscales once; each decoder upscales the rest of the way
    (``len(decoder_channels) == len(encoder_channels) - 1``).
    """

    crop_size: int = 128
    padding: float = 0.15
    encoder_channels: tuple[int, ...] = (128, 256, 512, 1024)
    latent_dim: int = 512
    decoder_channels: tuple[int, ...] = (512, 256, 128)
    batch_size: int = 32
    learning_rate: float = 5e-5
    weight_decay: float = 1e-4
    ssim_weight: float = 0.5
    #: random affine: rotation (degrees), scale and shift (fraction of the crop)
    rotation: float = 10.0
    zoom: float = 0.05
    shift: float = 0.05
    #: standard deviation of the smooth grid warp, as a fraction of the crop
    warp: float = 0.02

    def __post_init__(self) -> None:
        depth = len(self.encoder_channels)
        if len(self.decoder_channels) != depth - 1:
            raise ConfigError(f"faceswap config: need {depth - 1} decoder channels for {depth} encoder stages")
        if self.crop_size % (2**depth):
            raise ConfigError(f"faceswap config: crop size {self.crop_size} is not divisible by {2**depth}")

    @classmethod
    def tiny(cls) -> FaceSwapConfig:
        """A configuration small enough to train a few dozen steps on a CPU in seconds (tests, smoke runs)."""
        return cls(
            crop_size=64,
            encoder_channels=(16, 32, 64, 128),
            latent_dim=128,
            decoder_channels=(64, 32, 16),
            batch_size=8,
            learning_rate=5e-4,
        )

    @classmethod
    def full(cls, crop_size: int = 128) -> FaceSwapConfig:
        """The GPU configuration for 128 px crops, or 256 px with one more stage (same bottleneck size)."""
        if crop_size == 128:
            return cls()
        if crop_size == 256:
            return cls(crop_size=256, encoder_channels=(64, 128, 256, 512, 1024), decoder_channels=(512, 256, 128, 64), batch_size=16)
        raise ConfigError(f"full faceswap models use 128 or 256 px crops, not {crop_size}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FaceSwapConfig:
        known = {f.name for f in fields(cls)}
        clean = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in known}
        return cls(**clean)

    @property
    def template(self) -> CropTemplate:
        return CropTemplate(self.crop_size, self.padding)


# --------------------------------------------------------------------------------------------- model


def _build_networks(config: FaceSwapConfig) -> tuple[torch.nn.Module, torch.nn.Module, torch.nn.Module]:
    """Encoder, decoder A (patient), decoder B (surrogate) for ``config``."""
    from torch import nn

    def down(cin: int, cout: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(cin, cout, 5, stride=2, padding=2), nn.LeakyReLU(0.1))

    def up(cin: int, cout: int) -> nn.Module:
        # sub-pixel upscaling (Faceswap's "upscale" block) avoids checkerboard artefacts
        return nn.Sequential(nn.Conv2d(cin, cout * 4, 3, padding=1), nn.LeakyReLU(0.1), nn.PixelShuffle(2))

    chans = config.encoder_channels
    side = config.crop_size // 2 ** len(chans)
    flat = chans[-1] * side * side
    encoder = nn.Sequential(
        *[down(cin, cout) for cin, cout in zip((3, *chans[:-1]), chans)],
        nn.Flatten(),
        nn.Linear(flat, config.latent_dim),
        nn.Linear(config.latent_dim, flat),
        nn.Unflatten(1, (chans[-1], side, side)),
        up(chans[-1], config.decoder_channels[0]),
    )

    def decoder() -> nn.Module:
        dec = config.decoder_channels
        blocks = [up(cin, cout) for cin, cout in zip(dec, (*dec[1:], dec[-1]))]
        return nn.Sequential(*blocks, nn.Conv2d(dec[-1], 3, 5, padding=2), nn.Sigmoid())

    return encoder, decoder(), decoder()


@dataclass
class FaceSwapModel:
    """A loaded faceswap model ready for inference."""

    config: FaceSwapConfig
    encoder: torch.nn.Module
    decoder_a: torch.nn.Module
    decoder_b: torch.nn.Module
    step: int
    device: str
    digest: str = ""
    #: who the model is for: ``pseudonym`` and ``surrogate_digest`` when trained with a release key
    identity: dict[str, str] = field(default_factory=dict)

    @property
    def template(self) -> CropTemplate:
        return self.config.template

    def swap(self, crops: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Render identity B for a stack of aligned patient crops.

        Parameters
        ----------
        crops:
            ``uint8`` ``(N, S, S, 3)`` RGB crops aligned with :attr:`template`.

        Returns
        -------
        numpy.ndarray
            ``uint8`` ``(N, S, S, 3)``: the same poses and expressions with the surrogate's face.
        """
        import torch

        out = np.empty_like(crops)
        use_amp = self.device.startswith("cuda")
        with torch.inference_mode():
            for start in range(0, len(crops), batch_size):
                batch = torch.from_numpy(np.ascontiguousarray(crops[start : start + batch_size])).to(self.device)
                x = batch.permute(0, 3, 1, 2).float() / 255.0
                with torch.autocast("cuda", dtype=_amp_dtype(), enabled=use_amp):
                    y = self.decoder_b(self.encoder(x))
                y = (y.float().clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).permute(0, 2, 3, 1)
                out[start : start + len(batch)] = y.cpu().numpy()
        return out


def resolve_device(device: str = "auto") -> str:
    """``"auto"`` becomes ``"cuda"`` when a GPU is usable, else ``"cpu"``; an unusable choice is a ConfigError."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} was asked for but torch sees no CUDA GPU; use --device cpu")
    if not (device == "cpu" or device.startswith("cuda")):
        raise ConfigError(f"unknown device {device!r}: use cpu, cuda or cuda:N")
    return device


def _amp_dtype() -> torch.dtype:
    import torch

    return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float16


# ------------------------------------------------------------------------------------------ training


@dataclass
class TrainResult:
    """What a training run did; ``digest`` goes into the audit log."""

    path: Path
    start_step: int
    step: int
    loss: float
    digest: str
    seconds: float
    device: str
    resumed: bool
    patient_crops: int
    surrogate_crops: int
    history: list[tuple[int, float]] = field(default_factory=list)

    @property
    def steps_per_s(self) -> float:
        done = self.step - self.start_step
        return done / self.seconds if self.seconds > 0 else 0.0


def _crop_tensors(crops: Sequence[FaceCrop], device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images ``(N, 3, S, S)`` and masks ``(N, 1, S, S)`` on ``device`` (kept as uint8 to save memory)."""
    import torch

    images = torch.from_numpy(np.stack([c.image for c in crops])).permute(0, 3, 1, 2).contiguous()
    masks = torch.from_numpy(np.stack([c.mask for c in crops]))[:, None].contiguous()
    return images.to(device), masks.to(device)


def _augment(
    images: torch.Tensor, masks: torch.Tensor, config: FaceSwapConfig, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sample a batch; return (warped input, target, target mask), all float in [0, 1].

    The same random affine (and horizontal flip) moves input, target and mask so the network learns
    pose-invariant features; a smooth random grid warp distorts the input only, so the decoder must
    reconstruct the undistorted face (the augmentation Faceswap depends on).
    """
    import torch
    import torch.nn.functional as F

    dev = images.device
    n = config.batch_size
    size = config.crop_size
    pick = torch.randint(0, images.shape[0], (n,), device=dev, generator=generator)
    x = images[pick].float() / 255.0
    m = masks[pick].float() / 255.0

    def uniform(scale: float) -> torch.Tensor:
        return (torch.rand(n, device=dev, generator=generator) * 2 - 1) * scale

    angle = uniform(math.radians(config.rotation))
    zoom = 1.0 + uniform(config.zoom)
    flip = torch.where(torch.rand(n, device=dev, generator=generator) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [
            torch.stack([cos * flip, -sin, uniform(2 * config.shift)], dim=1),
            torch.stack([sin * flip, cos, uniform(2 * config.shift)], dim=1),
        ],
        dim=1,
    )
    grid = F.affine_grid(theta, (n, 3, size, size), align_corners=False)
    target = F.grid_sample(x, grid, padding_mode="reflection", align_corners=False)
    target_mask = F.grid_sample(m, grid, padding_mode="zeros", align_corners=False)
    noise = torch.randn(n, 2, 5, 5, device=dev, generator=generator) * (2 * config.warp)
    offsets = F.interpolate(noise, size=(size, size), mode="bicubic", align_corners=True).permute(0, 2, 3, 1)
    warped = F.grid_sample(x, grid + offsets, padding_mode="reflection", align_corners=False)
    # widen the loss region a little past the hull so the blend border is learned too
    k = max(3, size // 16) | 1
    target_mask = F.max_pool2d(target_mask, k, stride=1, padding=k // 2)
    return warped, target, target_mask


def _ssim_map(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-pixel SSIM (Gaussian window 7, sigma 1.5) averaged over channels, shape ``(N, 1, H, W)``."""
    import torch
    import torch.nn.functional as F

    coords = torch.arange(7, device=a.device, dtype=a.dtype) - 3
    g = torch.exp(-(coords**2) / (2 * 1.5**2))
    g = g / g.sum()
    window = (g[:, None] * g[None, :]).expand(a.shape[1], 1, 7, 7).contiguous()

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, window, padding=3, groups=a.shape[1])

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    ssim = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return ssim.mean(dim=1, keepdim=True)


def masked_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, ssim_weight: float) -> torch.Tensor:
    """Reconstruction loss inside ``mask``: mean L1 plus ``ssim_weight`` x mean (1 - SSIM) / 2."""
    pred, target = pred.float(), target.float()
    denom = mask.sum().clamp_min(1.0)
    loss = ((pred - target).abs().mean(dim=1, keepdim=True) * mask).sum() / denom
    if ssim_weight:
        loss = loss + ssim_weight * (((1 - _ssim_map(pred, target)) / 2) * mask).sum() / denom
    return loss


def model_digest(path: str | Path) -> str:
    """``sha256:<hex>`` of a model file, for the audit log."""
    return "sha256:" + sha256_file(path)


def _atomic_save(obj: dict[str, Any], path: Path) -> None:
    """Write a checkpoint beside ``path`` and rename it into place, owner-readable only."""
    import torch

    with atomic_file(path, mode=0o600) as fh:
        torch.save(obj, fh)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_checkpoint(path: str | Path, device: str = "cpu") -> dict[str, Any]:
    """Load a faceswap checkpoint (tensors only, no pickled code).

    Raises
    ------
    MissingModelError
        When the file does not exist.
    InputError
        When it is not a faceswap checkpoint.
    """
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise MissingModelError(
            "faceswap model not found; train one with `clinrelease swap train --out MODEL` or fix the path", path
        )
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise InputError(f"not a readable faceswap checkpoint: {exc}", path) from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"not a faceswap checkpoint (expected format {CHECKPOINT_FORMAT})", path)
    return ckpt


def resumed_identity(ckpt: dict[str, Any], wanted: dict[str, str] | None, path: Path) -> dict[str, str]:
    """The identity a resumed model keeps; a ConfigError when ``wanted`` names someone else."""
    stored = dict(ckpt.get("identity") or {})
    if wanted and stored and dict(wanted) != stored:
        raise ConfigError(f"the model was trained for {stored}, not {dict(wanted)}; use another --out", path)
    return stored or dict(wanted or {})


def train(
    patient: Sequence[FaceCrop],
    surrogate: Sequence[FaceCrop],
    out: str | Path,
    steps: int,
    config: FaceSwapConfig | None = None,
    device: str = "auto",
    checkpoint_every: int = 500,
    seed: int = 0,
    on_step: Callable[[int, float], None] | None = None,
    identity: dict[str, str] | None = None,
) -> TrainResult:
    """Train (or resume training) a faceswap model until it has done ``steps`` steps in total.

    Parameters
    ----------
    patient, surrogate:
        Aligned crops of identity A (the patient) and B (the surrogate), made with ``config.template``.
    out:
        The model file. When it exists training resumes from it (its configuration wins).
    steps:
        Total number of optimizer steps the finished model has.
    checkpoint_every:
        Steps between atomic checkpoint writes; the last step is always written.
    on_step:
        Called as ``on_step(step, loss)`` after each step (progress display).
    identity:
        Whom the model is for, e.g. ``{"pseudonym": ..., "surrogate_digest": ...}``; stored so that
        :class:`FaceSwapAnonymizer` refuses to use the model for another patient or key.

    Returns
    -------
    TrainResult
        Including the sha256 digest of the final model file.
    """
    import torch

    out = Path(out)
    device = resolve_device(device)
    if not patient or not surrogate:
        raise InputError("training needs face crops of both the patient and the surrogate", out)
    ckpt = read_checkpoint(out, device) if out.exists() else None
    if ckpt is not None:
        config = FaceSwapConfig.from_dict(ckpt["config"])
    config = config or FaceSwapConfig()
    for crops in (patient, surrogate):
        if crops[0].image.shape[0] != config.crop_size:
            raise ConfigError(
                f"crops are {crops[0].image.shape[0]} px but the model uses {config.crop_size} px", out
            )

    with torch.random.fork_rng(devices=[]):  # reproducible initial weights, global RNG left alone
        torch.manual_seed(seed)
        encoder, decoder_a, decoder_b = (net.to(device) for net in _build_networks(config))
    params = [*encoder.parameters(), *decoder_a.parameters(), *decoder_b.parameters()]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, betas=(0.5, 0.999), weight_decay=config.weight_decay)
    use_amp = device.startswith("cuda")
    amp_dtype = _amp_dtype() if use_amp else torch.float32
    # float16 needs loss scaling; bfloat16 has float32's range and does not
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    start, history = 0, []
    if ckpt is not None:
        encoder.load_state_dict(ckpt["encoder"])
        decoder_a.load_state_dict(ckpt["decoder_a"])
        decoder_b.load_state_dict(ckpt["decoder_b"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        start = int(ckpt["step"])
        history = [tuple(h) for h in ckpt.get("history", [])]
        identity = resumed_identity(ckpt, identity, out)

    data = [_crop_tensors(patient, device), _crop_tensors(surrogate, device)]
    generator = torch.Generator(device=device)
    generator.manual_seed(seed * 1_000_003 + start)  # a resumed run does not replay the same batches
    decoders = (decoder_a, decoder_b)
    encoder.train(), decoder_a.train(), decoder_b.train()

    def checkpoint(step: int, loss: float) -> None:
        _atomic_save(
            {
                "format": CHECKPOINT_FORMAT,
                "config": asdict(config),
                "template": {**config.template.to_dict(), "points": config.template.points.tolist()},
                "step": step,
                "loss": loss,
                "history": [list(h) for h in history],
                "identity": dict(identity or {}),
                "encoder": encoder.state_dict(),
                "decoder_a": decoder_a.state_dict(),
                "decoder_b": decoder_b.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict() if scaler.is_enabled() else None,
                # counts only: file names of the inputs may carry identifiers
                "trained": {
                    "patient_crops": len(patient),
                    "surrogate_crops": len(surrogate),
                    "device": torch.cuda.get_device_name(device) if use_amp else "cpu",
                    "torch": str(torch.__version__),
                    "mixed_precision": str(amp_dtype).removeprefix("torch.") if use_amp else "off",
                },
            },
            out,
        )

    t0 = time.perf_counter()
    loss_value = float(ckpt["loss"]) if ckpt is not None else float("nan")
    for step in range(start + 1, steps + 1):
        optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=device)
        for (images, masks), decoder in zip(data, decoders):
            warped, target, mask = _augment(images, masks, config, generator)
            with torch.autocast("cuda", dtype=amp_dtype, enabled=use_amp):
                pred = decoder(encoder(warped))
            total = total + masked_loss(pred, target, mask, config.ssim_weight)
        scaler.scale(total).backward()
        scaler.step(optimizer)
        scaler.update()
        loss_value = float(total.detach())
        if not math.isfinite(loss_value):
            raise ConfigError(f"training diverged at step {step} (loss {loss_value}); lower the learning rate", out)
        if step % max(1, min(checkpoint_every, 100)) == 0 or step == steps:
            history.append((step, loss_value))
        if on_step is not None:
            on_step(step, loss_value)
        if step % checkpoint_every == 0 or step == steps:
            checkpoint(step, loss_value)
    if ckpt is None and steps <= 0:
        checkpoint(0, loss_value)
    seconds = time.perf_counter() - t0
    final_step = max(start, steps)
    return TrainResult(
        path=out,
        start_step=start,
        step=final_step,
        loss=loss_value,
        digest=model_digest(out),
        seconds=seconds,
        device=device,
        resumed=ckpt is not None,
        patient_crops=len(patient),
        surrogate_crops=len(surrogate),
        history=history,
    )


def load_model(path: str | Path, device: str = "auto") -> FaceSwapModel:
    """Load a trained model for inference (encoder and both decoders, evaluation mode)."""
    device = resolve_device(device)
    ckpt = read_checkpoint(path, device)
    config = FaceSwapConfig.from_dict(ckpt["config"])
    encoder, decoder_a, decoder_b = (net.to(device).eval() for net in _build_networks(config))
    try:
        encoder.load_state_dict(ckpt["encoder"])
        decoder_a.load_state_dict(ckpt["decoder_a"])
        decoder_b.load_state_dict(ckpt["decoder_b"])
    except (RuntimeError, KeyError) as exc:
        raise InputError(f"checkpoint weights do not match its configuration: {exc}", path) from exc
    identity = {str(k): str(v) for k, v in (ckpt.get("identity") or {}).items()}
    return FaceSwapModel(
        config, encoder, decoder_a, decoder_b, int(ckpt["step"]), device, model_digest(path), identity
    )


def model_info(path: str | Path) -> dict[str, Any]:
    """What ``clinrelease swap info`` shows: format, step, loss, configuration, template, digest, size."""
    import torch

    path = Path(path)
    ckpt = read_checkpoint(path, "cpu")
    n_params = sum(
        int(t.numel()) for key in ("encoder", "decoder_a", "decoder_b") for t in ckpt[key].values() if torch.is_tensor(t)
    )
    return {
        "path": str(path),
        "format": ckpt["format"],
        "step": int(ckpt["step"]),
        "loss": float(ckpt["loss"]),
        "parameters": n_params,
        "bytes": path.stat().st_size,
        "digest": model_digest(path),
        "config": ckpt["config"],
        "template": ckpt["template"],
        "trained": ckpt.get("trained", {}),
        "identity": ckpt.get("identity", {}),
        "history": ckpt.get("history", []),
    }


def secure_delete_model(path: str | Path, passes: int = 1) -> None:
    """Overwrite a model file with random bytes, flush it to disk, and unlink it.

    A patient-specific model is identifying data. Overwriting defeats casual recovery on ordinary
    filesystems; copy-on-write filesystems, SSD wear levelling and backups can still hold old
    blocks, so sites should keep models on encrypted storage (or escrow them) as well.
    """
    path = Path(path)
    if not path.is_file():
        return
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        for _ in range(passes):
            fh.seek(0)
            left = size
            while left:
                chunk = min(left, 1 << 20)
                fh.write(os.urandom(chunk))
                left -= chunk
            fh.flush()
            os.fsync(fh.fileno())
    path.unlink()


# ----------------------------------------------------------------------------------------- inference


def _points_from_box(box: np.ndarray, template: CropTemplate) -> np.ndarray:
    """Five stand-in points for a face with no landmarks: the template scaled into its box."""
    x0, y0, x1, y1 = (float(v) for v in box)
    unit = (CropTemplate(template.size, 0.0).points / template.size - 0.5) * 0.9 + 0.5
    return (unit * [x1 - x0, y1 - y0] + [x0, y0]).astype(np.float32)


def _colour_match(src: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Move ``src``'s per-channel LAB mean and spread inside ``mask`` to ``ref``'s (Reinhard transfer)."""
    import cv2

    inside = mask > 127
    if inside.sum() < 16:
        return src
    a = cv2.cvtColor(src, cv2.COLOR_RGB2LAB).astype(np.float32)
    b = cv2.cvtColor(ref, cv2.COLOR_RGB2LAB).astype(np.float32)
    mu_a, sd_a = a[inside].mean(axis=0), a[inside].std(axis=0) + 1e-3
    mu_b, sd_b = b[inside].mean(axis=0), b[inside].std(axis=0)
    out = (a - mu_a) * (sd_b / sd_a) + mu_b
    return cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)


def paste_back(frame: np.ndarray, swapped: np.ndarray, crop: FaceCrop, feather: float = 0.06) -> None:
    """Blend an aligned ``swapped`` crop into ``frame`` in place through the inverse alignment.

    Only the region the crop covers is warped (not the whole frame), so many faces stay cheap.
    The blend mask is the face hull, eroded and blurred by ``feather`` x crop size.
    """
    import cv2

    size = swapped.shape[0]
    k = max(3, int(size * feather)) | 1
    mask = cv2.erode(crop.mask, np.ones((k, k), np.uint8))
    mask = cv2.GaussianBlur(mask, (2 * k + 1, 2 * k + 1), 0)
    inverse = cv2.invertAffineTransform(crop.matrix)
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], np.float32) @ inverse[:, :2].T + inverse[:, 2]
    h, w = frame.shape[:2]
    x0, y0 = np.floor(corners.min(axis=0)).astype(int).clip(0, [w, h])
    x1, y1 = np.ceil(corners.max(axis=0)).astype(int).clip(0, [w, h])
    if x1 <= x0 or y1 <= y0:
        return
    local = inverse.copy()
    local[:, 2] -= (x0, y0)
    dsize = (int(x1 - x0), int(y1 - y0))
    face = cv2.warpAffine(swapped, local, dsize, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpAffine(mask, local, dsize, flags=cv2.INTER_LINEAR).astype(np.float32)[..., None] / 255.0
    roi = frame[y0:y1, x0:x1].astype(np.float32)
    frame[y0:y1, x0:x1] = (alpha * face + (1 - alpha) * roi + 0.5).astype(np.uint8)


class FaceSwapAnonymizer:
    """The ``faceswap`` anonymizer: every face it is given is re-rendered by the surrogate's decoder.

    Parameters
    ----------
    model:
        Path of a model made by ``clinrelease swap train`` (or :func:`train`).
    device:
        ``auto`` (CUDA when available), ``cpu`` or ``cuda[:N]``.
    batch_size:
        Crops per forward pass in :meth:`anonymize_frames`.
    colour_match:
        Match the rendered face's LAB colour statistics to the original face (lighting changes).
    feather:
        Width of the blend border as a fraction of the crop.
    key, pseudonym:
        The release key and the patient's pseudonym (the release passes both). ``model`` may name
        the file with a ``{pseudonym}`` placeholder (one model per patient). A model trained with a
        key (``swap train --keys``) is refused unless it was made for this pseudonym and the
        surrogate this key chooses for it.
    k:
        Donors per composite surrogate (as in the default ``swap`` anonymizer).
    """

    name = "faceswap"

    def __init__(
        self,
        model: str | Path,
        device: str = "auto",
        batch_size: int = 64,
        colour_match: bool = True,
        feather: float = 0.06,
        key: bytes | str | None = None,
        pseudonym: str | None = None,
        k: int = 3,
    ) -> None:
        if "{pseudonym}" in str(model):
            if not pseudonym:
                raise ConfigError(f"the faceswap model path {model} needs the patient's pseudonym")
            model = str(model).replace("{pseudonym}", pseudonym)
        self.model = load_model(model, device)
        self._check_identity(Path(model), key, pseudonym, k)
        self.batch_size = batch_size
        self.colour_match = colour_match
        self.feather = feather
        self.tracks: set[int] = set()

    @property
    def digest(self) -> str:
        """sha256 digest of the model file, for the audit record."""
        return self.model.digest

    def _check_identity(self, path: Path, key: bytes | str | None, pseudonym: str | None, k: int) -> None:
        """Refuse a model made for another patient, or for a surrogate this key would not choose."""
        from clinrelease.face.learned.crops import keyed_surrogate

        made_for = self.model.identity.get("pseudonym")
        if made_for and pseudonym and made_for != pseudonym:
            raise ConfigError(f"this faceswap model was trained for patient {made_for}, not {pseudonym}", path)
        expected = self.model.identity.get("surrogate_digest")
        if expected and key is not None and pseudonym:
            if keyed_surrogate(key, pseudonym, k)[2] != expected:
                raise ConfigError("this faceswap model was trained for another release key's surrogate", path)

    def prepare(self, analysis: FaceAnalysis, track_id: int) -> None:
        """Nothing to fit per track (the model is trained beforehand); remember the track."""
        self.tracks.add(track_id)

    def _crop(self, frame: np.ndarray, face: TrackedFace) -> FaceCrop:
        template = self.model.template
        if face.landmarks is not None:
            return align_face(frame, face.landmarks, template, face.frame_index)
        # no mesh: align by the box and blend an ellipse, so the face is still replaced
        import cv2

        matrix = similarity_transform(_points_from_box(face.box, template), template.points)
        image = cv2.warpAffine(frame, matrix, (template.size, template.size), borderMode=cv2.BORDER_REFLECT)
        s = template.size
        ellipse = cv2.ellipse2Poly((s // 2, s // 2), (int(s * 0.36), int(s * 0.46)), 0, 0, 360, 10)
        return FaceCrop(image, hull_mask(ellipse.astype(np.float32), s), matrix, face.frame_index)

    def anonymize_frames(self, frames: Sequence[np.ndarray], faces: Sequence[Sequence[TrackedFace]]) -> list[np.ndarray]:
        """Anonymize several frames with one batched forward pass over all their faces (in place)."""
        crops = [(i, self._crop(frame, face)) for i, frame in enumerate(frames) for face in faces[i]]
        if not crops:
            return list(frames)
        rendered = self.model.swap(np.stack([c.image for _, c in crops]), self.batch_size)
        for (i, crop), face in zip(crops, rendered):
            if self.colour_match:
                face = _colour_match(face, crop.image, crop.mask)
            paste_back(frames[i], face, crop, self.feather)
        return list(frames)

    def anonymize_frame(self, frame: np.ndarray, faces: list[TrackedFace]) -> np.ndarray:
        """Return ``frame`` (RGB uint8) with each face replaced by the surrogate's; modifies in place."""
        return self.anonymize_frames([frame], [faces])[0]


def faceswap_anonymizer(**params: Any) -> FaceSwapAnonymizer:
    """Entry-point factory: ``faceswap_anonymizer(model=PATH, device="auto", batch_size=64, ...)``.

    Raises
    ------
    ConfigError
        When the profile names no model or an unknown parameter.
    MissingModelError
        When the model file does not exist.
    """
    from clinrelease.face.learned._params import check_params

    check_params(FaceSwapAnonymizer, params, required=("model",), what="faceswap")
    return FaceSwapAnonymizer(**params)
