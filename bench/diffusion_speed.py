"""Diffusion sampling speed on this CPU: seconds per denoising step at batch 16 for the shipped
U-Net (plain and with classifier-free guidance, which doubles the batch), and, when the
`diffusers` package is installed (pip install diffusers; not needed by the studio), a diffusers
UNet2DModel with about as many parameters, timed in the same run. We aim to be no slower.
Then the text-to-image model: a guided denoising step on its 4×7×7 latents, plus the decode.

    python bench/diffusion_speed.py
"""

import torch

from timing import ROOT, median_ms  # noqa: E402  (also puts the repository on sys.path)

from models.core import checkpoint  # noqa: E402

CKPT = ROOT / "assets" / "checkpoints" / "diffusion_mnist_cond.safetensors"
LDM = ROOT / "assets" / "checkpoints" / "ldm_mnist.safetensors"


def latent(pixel_guided_s: float):
    """Seconds per guided step of the latent model at batch 16, against the pixel U-Net's."""
    from models.image import latent_diffusion as ldm

    if not LDM.exists():
        print("ldm_mnist not shipped in this checkout: no latent-diffusion figure")
        return
    model, _, _ = checkpoint.load(LDM)
    ids = ldm.batch_tokens([ldm.tokenize("a thick seven", "mnist")] * 16 + [[1]] * 16)
    z = torch.randn(32, model.latent_channels, 7, 7)
    t = torch.full((32,), 500)
    with torch.inference_mode():
        context, pad = model.context(ids)
        step = median_ms(lambda: model.denoiser(z, t, context, pad), runs=20) / 1000
        decode = median_ms(lambda: model.decode(z[:16]), runs=20) / 1000
    print(f"latent diffusion, guided step, batch 16: {step * 1000:6.1f} ms  "
          f"({pixel_guided_s / step:.1f}× faster than the pixel U-Net); decode 16 images {decode * 1000:.1f} ms")


def main():
    torch.set_num_threads(2)
    model, config, _ = checkpoint.load(CKPT)
    params = sum(p.numel() for p in model.parameters())
    x = torch.randn(16, 1, 28, 28)
    t = torch.full((16,), 500)
    y = torch.arange(16) % 10
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; U-Net {config.channels}, {params / 1e6:.2f} M params")
    with torch.inference_mode():
        ours = median_ms(lambda: model(x, t, y), runs=20) / 1000
        guided = median_ms(lambda: model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, torch.full_like(y, 10)])),
                           runs=20) / 1000
    print(f"denoising step, batch 16:            {ours * 1000:6.1f} ms  (50-step DDIM ≈ {50 * ours:.1f} s)")
    print(f"denoising step, batch 16 + guidance: {guided * 1000:6.1f} ms")
    latent(guided)
    try:
        from diffusers import UNet2DModel
    except ImportError:
        print("diffusers not installed: pip install diffusers for the side-by-side figure")
        return
    def peer_of(w):  # diffusers' own DDPM U-Net, three stages (28 -> 14 -> 7) of widths w, 2w, 4w
        return UNet2DModel(sample_size=28, in_channels=1, out_channels=1, block_out_channels=(w, 2 * w, 4 * w),
                           layers_per_block=1, down_block_types=("DownBlock2D",) * 3,
                           up_block_types=("UpBlock2D",) * 3, norm_num_groups=8).eval()

    count = lambda m: sum(p.numel() for p in m.parameters())
    width = min(range(8, 65, 8), key=lambda w: abs(count(peer_of(w)) - params))  # the same size as ours
    peer = peer_of(width)
    peer_params = count(peer)
    with torch.inference_mode():
        theirs = median_ms(lambda: peer(x, t).sample, runs=20) / 1000
    print(f"diffusers UNet2DModel ({peer_params / 1e6:.2f} M params): {theirs * 1000:6.1f} ms per step; "
          f"ours / theirs = {ours / theirs:.2f}")


if __name__ == "__main__":
    main()
