"""Radio multi-crop augmentation, batched in torch.

Each crop of each image gets its own random affine map (area fraction, any rotation angle or
an exact quarter turn, a flip, a position inside the tile) applied with one
``grid_sample`` per crop set, then a beam-like Gaussian blur.

"percentile" tiles (already stretched) then take additive noise at a random S/N and an
intensity stretch ``sign(x) |x|^gamma``.

"snr" tiles (signal-to-noise, before the arcsinh) take the processing augmentations instead,
over what differs between surveys and pipelines, in the order a pipeline applies them: extra
noise correlated over a beam (then divided by the new noise, as a refit stretch would), a
clip that zeroes every pixel below a level (as stamp makers did; the "snr" fallback reads such
stamps at the same S/N), and a factor on the S/N (a noise estimate that is off). The crop then
goes through `radiofm.tiling.normalize`, the one stretch inference uses.

Colour jitter and solarisation have no meaning for radio maps and are absent.

Every random number comes from the step's CPU generator, except the noise fields: on the CPU
the generator draws them too; on an accelerator a generator of that device, seeded by one draw of
the CPU generator, draws them there (drawing, filtering and stretching the noise of a batch of
256 on the CPU cost about 37 ms a step on a 2-core machine, beside a 104 ms H100 step). A step
so repeats exactly on each device, and draws the same crops on CPU and GPU up to the noise
fields. Every image operation runs where the tiles are.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..tiling import Normalization, NormalizationSpec, normalize

__all__ = ["RadioMultiCrop", "stretch_snr"]


class RadioMultiCrop:
    """2 global and ``n_local`` local crops of a batch of tiles.

    Parameters
    ----------
    crops : `radiofm.train.CropConfig`
        Sizes, scales and augmentation ranges.
    normalization : `~radiofm.tiling.NormalizationSpec`, str or dict
        The run's normalisation: "snr" tiles are S/N, and take the processing augmentations
        and the arcsinh here.
    """

    def __init__(self, crops, normalization="percentile"):
        self.config = crops
        self.spec = NormalizationSpec.from_value(normalization)
        self.snr = self.spec.method == "snr"

    def __call__(self, tiles, generator):
        """Crops of ``tiles`` (B, 1, T, T): a list, the two global ones first.

        Parameters
        ----------
        tiles : `torch.Tensor`
            Normalised tiles.
        generator : `torch.Generator`
            Source of every random draw (so a step can be repeated exactly).

        Returns
        -------
        crops : list of `torch.Tensor`
            ``2 + n_local`` tensors (B, 1, size, size).
        """
        c = self.config
        views = [self._crop(tiles, c.global_size, c.global_scale, generator) for _ in range(2)]
        views += [self._crop(tiles, c.local_size, c.local_scale, generator)
                  for _ in range(c.n_local)]
        return views

    def _crop(self, tiles, size, scale, generator):
        batch = tiles.shape[0]

        def uniform(low, high):
            return low + (high - low) * torch.rand(batch, generator=generator)

        side = torch.sqrt(uniform(*scale))  # fraction of the tile side
        quarter = torch.randint(0, 4, (batch,), generator=generator) * (math.pi / 2)
        free = uniform(0.0, 2 * math.pi)
        angle = torch.where(torch.rand(batch, generator=generator) < 0.5, quarter, free)
        flip = torch.where(torch.rand(batch, generator=generator) < 0.5, -1.0, 1.0)
        cos, sin = torch.cos(angle), torch.sin(angle)
        # the rotated crop must stay inside the tile: |offset| <= 1 - side * (|cos| + |sin|)
        reach = (1 - side * (cos.abs() + sin.abs())).clamp(min=0.0)
        shift_x = uniform(-1.0, 1.0) * reach
        shift_y = uniform(-1.0, 1.0) * reach
        theta = torch.stack([
            torch.stack([side * cos * flip, -side * sin, shift_x], dim=1),
            torch.stack([side * sin * flip, side * cos, shift_y], dim=1),
        ], dim=1)
        grid = F.affine_grid(theta.to(tiles.device, tiles.dtype), (batch, 1, size, size),
                             align_corners=False)
        view = F.grid_sample(self._area_smoothed(tiles, side * tiles.shape[-1] / size), grid,
                             mode="bilinear", padding_mode="reflection", align_corners=False)
        view = self._blur(view, generator)
        if self.snr:
            return self._process(view, generator)
        view = self._noise(view, generator)
        return self._stretch(view, generator)

    def _area_smoothed(self, tiles, shrink):
        """``tiles`` smoothed, with ``area_average``, for crops that shrink them by
        ``shrink`` (tile pixels per crop pixel, per image): a Gaussian of variance
        (shrink^2 - 1) / 12 tile pixels^2, what a crop pixel's box adds to a tile pixel's
        own. Tiles are returned as they are where nothing shrinks."""
        if not self.config.area_average:
            return tiles
        sigma = torch.sqrt(((shrink**2 - 1) / 12).clamp(min=0.0))
        if not (sigma > 0).any():
            return tiles
        return _gaussian_filter(tiles, sigma, max(1, math.ceil(3 * float(sigma.max()))))[0]

    def _process(self, view, generator):
        """Processing augmentations of S/N crops, then the arcsinh stretch."""
        c = self.config
        batch = view.shape[0]

        def draw(bounds, log=False):
            low, high = (math.log(b) for b in bounds) if log else bounds
            values = low + (high - low) * torch.rand(batch, generator=generator)
            return torch.exp(values) if log else values

        def chosen(probability):
            return torch.rand(batch, generator=generator) < probability

        # extra noise, correlated over a Gaussian beam, in units of the tile's noise
        extra = torch.where(chosen(c.renoise_probability), draw(c.renoise_sigma, log=True),
                            torch.zeros(batch))
        beam = draw(c.noise_beam)
        white = _standard_normal(view.shape, generator, view.device)
        radius = max(1, math.ceil(3 * max(c.noise_beam)))
        correlated, norm = _gaussian_filter(white, beam, radius)
        correlated = correlated / norm.to(view.device)[:, None, None, None]  # unit variance
        extra = extra.to(view.device)
        view = (view + extra[:, None, None, None] * correlated) / torch.sqrt(
            1 + extra**2)[:, None, None, None]
        # the clip of stamp makers: every pixel below the level goes to zero
        level = torch.where(chosen(c.clip_probability), draw(c.clip_sigma),
                            torch.full((batch,), -math.inf)).to(view.device)
        view = torch.where(view >= level[:, None, None, None], view, torch.zeros_like(view))
        view = view * draw(c.snr_scale, log=True).to(view.device)[:, None, None, None]
        return stretch_snr(view, self.spec.softening)

    def _blur(self, view, generator):
        low, high = self.config.blur_sigma
        batch = view.shape[0]
        if high <= 0 or self.config.blur_probability <= 0:
            return view
        sigma = low + (high - low) * torch.rand(batch, generator=generator)
        chosen = torch.rand(batch, generator=generator) < self.config.blur_probability
        sigma = torch.where(chosen, sigma, torch.zeros_like(sigma))
        radius = max(1, math.ceil(3 * high))
        return _gaussian_filter(view, sigma, radius)[0]

    def _noise(self, view, generator):
        low, high = self.config.noise_snr
        batch = view.shape[0]
        snr = torch.exp(math.log(low) + (math.log(high) - math.log(low))
                        * torch.rand(batch, generator=generator))
        chosen = torch.rand(batch, generator=generator) < self.config.noise_probability
        peak = view.flatten(1).abs().amax(dim=1).clamp(min=1e-6)
        scale = torch.where(chosen, 1.0 / snr, torch.zeros_like(snr)).to(view.device)
        noise = _standard_normal(view.shape, generator, view.device)
        return view + (peak * scale)[:, None, None, None] * noise

    def _stretch(self, view, generator):
        low, high = self.config.stretch
        batch = view.shape[0]
        gamma = torch.exp(math.log(low) + (math.log(high) - math.log(low))
                          * torch.rand(batch, generator=generator))
        return torch.sign(view) * view.abs().pow(gamma.to(view.device)[:, None, None, None])


def _standard_normal(shape, generator, device):
    """Unit normal noise of ``shape`` on ``device``: drawn by the CPU ``generator`` on the CPU,
    elsewhere by a generator of ``device`` seeded by one draw of ``generator``."""
    if device.type == "cpu":
        return torch.randn(shape, generator=generator)
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return torch.randn(shape, generator=torch.Generator(device).manual_seed(seed), device=device)


def _gaussian_filter(view, sigma, radius):
    """Each image of (B, 1, H, W) ``view`` convolved with a unit-sum Gaussian of its own
    ``sigma`` (pixels; 0 is a delta), reflected at the edges; also the kernels' L2 norms (the
    standard deviation of filtered unit white noise)."""
    batch = view.shape[0]
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel_1d = torch.exp(-0.5 * (offsets / sigma.clamp(min=1e-3)[:, None]) ** 2)
    kernel_1d = kernel_1d / kernel_1d.sum(dim=1, keepdim=True)
    kernel = (kernel_1d[:, :, None] * kernel_1d[:, None, :])[:, None]
    norm = kernel.flatten(1).norm(dim=1)
    padded = F.pad(view.transpose(0, 1), (radius,) * 4, mode="reflect")
    filtered = F.conv2d(padded, kernel.to(view.device, view.dtype), groups=batch)
    return filtered.transpose(0, 1), norm


def stretch_snr(snr, softening):
    """The "snr" stretch of S/N values: `radiofm.tiling.normalize` itself on the CPU.

    On an accelerator the same arithmetic runs there in torch (``snr`` times the float32
    reciprocal of ``softening``, the arcsinh, NaN to 0), equal to ``normalize`` to float32
    rounding (tested), instead of copying every crop to the CPU and back.

    Parameters
    ----------
    snr : `torch.Tensor`
        Signal-to-noise ratios.
    softening : float
        The normalisation's softening.

    Returns
    -------
    stretched : `torch.Tensor`
        ``arcsinh(snr / softening)`` as float32, on ``snr``'s device.

    Examples
    --------
    >>> import torch
    >>> stretch_snr(torch.tensor([0.0, 5.0]), 1.0)
    tensor([0.0000, 2.3124])
    """
    if snr.device.type != "cpu":
        return _stretch_snr_torch(snr, softening)
    values = snr.detach().to(torch.float32).contiguous().numpy()
    out = normalize(values, Normalization("snr", 0.0, float(softening)), out=np.empty_like(values))
    return torch.from_numpy(out)


def _stretch_snr_torch(snr, softening):
    """`stretch_snr`'s arithmetic in torch, on ``snr``'s device."""
    stretched = torch.asinh(snr.detach().float() * (1.0 / float(softening)))
    return torch.where(torch.isnan(stretched), torch.zeros_like(stretched), stretched)
