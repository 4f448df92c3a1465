"""Batched torch renderer for the swap: the same warp, colour match and blend as
:func:`clinrelease.face.swap.render_plan`, with ``grid_sample`` over a batch of frames, on CPU or CUDA.

Geometry (warp maps, masks) is planned once on the CPU by :mod:`clinrelease.face.swap`; this module
only does the per-pixel work, which is what a GPU speeds up.
"""

from __future__ import annotations

import numpy as np

from clinrelease.face.skin import FIELD_SUPPORT, gaussian_taps
from clinrelease.face.surrogates import Surrogate
from clinrelease.face.swap_plan import CHROMA_GAIN, LUMA, LUMA_GAIN, FacePlan, detail_gain


def _sample(image, coords, torch):
    """Bilinear sampling of ``image`` (1|B, 3, H, W) at pixel ``coords`` (B, h, w, 2), border clamp."""
    h, w = image.shape[-2:]
    grid = torch.empty_like(coords)
    # align_corners=True maps -1/+1 to pixel centres 0 and size-1, as cv2.remap does
    grid[..., 0] = coords[..., 0] * (2.0 / max(w - 1, 1)) - 1.0
    grid[..., 1] = coords[..., 1] * (2.0 / max(h - 1, 1)) - 1.0
    if image.shape[0] != coords.shape[0]:
        image = image.expand(coords.shape[0], -1, -1, -1)
    return torch.nn.functional.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


def _shading_field(image, weight, taps, around, torch):
    """Normalized-convolution low-pass of ``image`` (c, h, w) over ``weight`` (h, w), fading towards
    ``around`` (c,), as :func:`clinrelease.face.skin.normalized_blur` does (zero padding = OpenCV's
    constant border)."""
    k = torch.from_numpy(taps).to(image.device)
    r = len(taps) // 2
    x = torch.cat([(image - around[:, None, None]) * weight, weight[None]], dim=0)[:, None]  # (c + 1, 1, h, w)
    x = torch.nn.functional.conv2d(x, k.view(1, 1, 1, -1), padding=(0, r))
    x = torch.nn.functional.conv2d(x, k.view(1, 1, -1, 1), padding=(r, 0))[:, 0]
    num, den = x[:-1], x[-1]
    return num / den.clamp(min=FIELD_SUPPORT) + around[:, None, None]


#: the 5-tap binomial kernel of OpenCV's pyrDown and pyrUp
_PYRAMID_TAPS = np.array([1.0, 4.0, 6.0, 4.0, 1.0], np.float32) / 16.0


def _binomial(x, torch):
    """``x`` (c, h, w) convolved with the 5x5 binomial kernel, reflected at the border (OpenCV's default)."""
    k = torch.from_numpy(_PYRAMID_TAPS).to(x.device)
    y = torch.nn.functional.pad(x[None], (2, 2, 2, 2), mode="reflect")[0][:, None]
    y = torch.nn.functional.conv2d(y, k.view(1, 1, 1, -1))
    return torch.nn.functional.conv2d(y, k.view(1, 1, -1, 1))[:, 0]


def _pyr_down(x, torch):
    return _binomial(x, torch)[:, ::2, ::2]


def _pyr_up(x, size, torch):
    c, h, w = x.shape
    z = x.new_zeros((c, 2 * h, 2 * w))
    z[:, ::2, ::2] = x
    return 4.0 * _binomial(z, torch)[:, : size[0], : size[1]]


def _blend_bands(sur, pat, weights, torch):
    """The surrogate over the patient band by band across the outline, as :func:`clinrelease.face.swap._blend` does."""
    bands = []
    for weight in weights[:-1]:
        down_s, down_p = _pyr_down(sur, torch), _pyr_down(pat, torch)
        size = sur.shape[1:]
        wt = torch.from_numpy(weight).to(sur.device)[None]
        bands.append(wt * (sur - _pyr_up(down_s, size, torch)) + (1.0 - wt) * (pat - _pyr_up(down_p, size, torch)))
        sur, pat = down_s, down_p
    wt = torch.from_numpy(weights[-1]).to(sur.device)[None]
    out = wt * sur + (1.0 - wt) * pat
    for band in reversed(bands):
        out = _pyr_up(out, band.shape[1:], torch) + band
    return out


def render_batch(
    frames: list[np.ndarray], planned: list[list[tuple[FacePlan, Surrogate]]], *, device: str = "cpu"
) -> list[np.ndarray]:
    """Render the planned faces of a batch of frames; returns new RGB uint8 frames.

    Faces are rendered in rounds (first face of every frame, then the second, ...) so every round is
    one batched ``grid_sample`` over frames, padded to the largest face region of the round.
    """
    import torch

    dev = torch.device(device)
    out = [np.array(f, copy=True) for f in frames]
    rounds = max((len(p) for p in planned), default=0)
    for r in range(rounds):
        members = [(i, p[r]) for i, p in enumerate(planned) if len(p) > r]
        hh = max(plan.alpha.shape[0] for _, (plan, _) in members)
        ww = max(plan.alpha.shape[1] for _, (plan, _) in members)
        b = len(members)
        map_s = torch.zeros((b, hh, ww, 2), dtype=torch.float32)
        map_p = torch.zeros((b, hh, ww, 2), dtype=torch.float32)
        alpha = torch.zeros((b, hh, ww), dtype=torch.float32)
        stats = torch.zeros((b, hh, ww), dtype=torch.bool)
        for j, (_, (plan, _)) in enumerate(members):
            h, w = plan.alpha.shape
            map_s[j, :h, :w] = torch.from_numpy(plan.map_surrogate)
            map_p[j, :h, :w] = torch.from_numpy(plan.map_patient)
            alpha[j, :h, :w] = torch.from_numpy(plan.alpha)
            stats[j, :h, :w] = torch.from_numpy(plan.stats)
        textures = torch.stack([torch.from_numpy(s.texture) for _, (_, s) in members]).permute(0, 3, 1, 2).float()
        images = torch.stack([torch.from_numpy(out[i]) for i, _ in members]).permute(0, 3, 1, 2).float()
        textures, images = textures.to(dev), images.to(dev)
        map_s, map_p, alpha, stats = map_s.to(dev), map_p.to(dev), alpha.to(dev), stats.to(dev)
        sur = _sample(textures, map_s, torch)  # (b, 3, hh, ww)
        pat = _sample(images, map_p, torch)
        # per-frame colour statistics over the skin pixels, as colour_gain does
        wgt = stats.unsqueeze(1).float()
        n = wgt.sum(dim=(2, 3)).clamp(min=1.0)
        mu_s = (sur * wgt).sum(dim=(2, 3)) / n
        mu_p = (pat * wgt).sum(dim=(2, 3)) / n
        luma = torch.from_numpy(LUMA).to(dev)

        def spreads(image: torch.Tensor, mean: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """Weighted spreads of brightness and of colour difference (see colour_gain)."""
            dev_ = image - mean[..., None, None]
            y = torch.einsum("c,bchw->bhw", luma, dev_).unsqueeze(1)
            sd_y = ((y**2 * wgt).sum(dim=(1, 2, 3)) / n[:, 0]).sqrt()
            sd_c = ((((dev_ - y) ** 2).sum(dim=1, keepdim=True) * wgt).sum(dim=(1, 2, 3)) / n[:, 0]).sqrt()
            return sd_y, sd_c

        (sy_s, sc_s), (sy_p, sc_p) = spreads(sur, mu_s), spreads(pat, mu_p)
        luma_gain = ((sy_p + 1.0) / (sy_s + 1.0)).clamp(*LUMA_GAIN)
        chroma_gain = ((sc_p + 1.0) / (sc_s + 1.0)).clamp(*CHROMA_GAIN)
        to_luma = torch.outer(torch.ones(3, device=dev), luma)
        matrix = luma_gain[:, None, None] * to_luma + chroma_gain[:, None, None] * (torch.eye(3, device=dev) - to_luma)
        few = wgt.sum(dim=(1, 2, 3)) < 16
        matrix[few], mu_s[few], mu_p[few] = torch.eye(3, device=dev), 0.0, 0.0
        sur = torch.einsum("bij,bjhw->bihw", matrix, sur - mu_s[..., None, None]) + mu_p[..., None, None]
        for j, (_, (plan, _)) in enumerate(members):
            if plan.lighting_sigma >= 1.0 and not few[j]:
                taps = gaussian_taps(plan.lighting_sigma)
                w = stats[j].float()
                shade_s, shade_p = _shading_field(sur[j], w, taps, mu_p[j], torch), _shading_field(pat[j], w, taps, mu_p[j], torch)
                detail_s, detail_p = sur[j] - shade_s, pat[j] - shade_p
                rms = lambda d: float(torch.einsum("c,chw->hw", luma, d)[stats[j]].square().mean().sqrt())  # noqa: E731
                rms_s, rms_p = rms(detail_s), rms(detail_p)
                gain = detail_gain(rms_s, rms_p)
                if plan.detail_sigma >= 1.0:
                    # per pixel, as render_plan does
                    near = gaussian_taps(plan.detail_sigma)
                    energy = lambda d, r: _shading_field(torch.einsum("c,chw->hw", luma, d).square()[None], w, near, d.new_tensor([r**2]), torch)[0].sqrt()  # noqa: E731
                    gain = detail_gain(energy(detail_s, rms_s), energy(detail_p, rms_p), ceiling=gain)
                sur[j] = shade_p + gain * detail_s
        a = alpha.unsqueeze(1)
        mixed = a * sur + (1.0 - a) * pat
        for j, (_, (plan, _)) in enumerate(members):
            if plan.blend:
                h, w = plan.alpha.shape
                kept = torch.from_numpy(plan.kept).to(dev)[None]
                across = _blend_bands(sur[j, :, :h, :w], pat[j, :, :h, :w], plan.blend, torch)
                mixed[j, :, :h, :w] = kept * across + (1.0 - kept) * pat[j, :, :h, :w]
        blended = (mixed + 0.5).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        for j, (i, (plan, _)) in enumerate(members):
            x0, y0, x1, y1 = plan.region
            h, w = plan.alpha.shape
            patch = out[i][y0:y1, x0:x1]
            patch[plan.inside] = blended[j, :h, :w][plan.inside]
    return out
