"""RealNVP log-likelihood speed on this CPU: test images scored per second by the shipped MNIST flow
(dequantise, logit, every coupling, prior), the sampling speed (the same layers run backwards), and a
same-size reference: the shipped hierarchical VAE's ELBO (one encoder and decoder pass) and its IWAE
bound with k = 50 on the same images.

    python bench/realnvp_speed.py
"""
import torch

from timing import ROOT, median_ms  # noqa: E402  (also puts the repository on sys.path)

from models.core import checkpoint  # noqa: E402
from models.core.family import last, seeded  # noqa: E402
from models.density import realnvp  # noqa: E402
from models.image import hvae  # noqa: E402

SHIPPED = ROOT / "assets" / "checkpoints"
BATCH = 500


def main():
    torch.set_num_threads(2)
    model, config, _ = checkpoint.load(SHIPPED / "realnvp_mnist.safetensors")
    (x, _), _ = realnvp.data(config, "test")
    x = x[:BATCH]
    params = sum(p.numel() for p in model.parameters())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; RealNVP {sum(config.scales)} couplings, "
          f"width {config.hidden}, {params / 1e6:.2f} M params; batch {BATCH}")
    ll = median_ms(lambda: realnvp.log_likelihood(model, x), runs=5) / 1000
    print(f"RealNVP log-likelihood: {BATCH / ll:8.0f} images/s")
    sample = median_ms(lambda: last(realnvp.sample(model, BATCH, generator=seeded(0))), runs=5) / 1000
    print(f"RealNVP sampling:       {BATCH / sample:8.0f} images/s")
    path = SHIPPED / "hvae_mnist.safetensors"
    if path.exists():
        vae, vconfig, _ = checkpoint.load(path)
        (b, _), _ = hvae.data(vconfig, "test")
        b = b[:BATCH]
        elbo = median_ms(lambda: hvae.log_likelihood(vae, b), runs=5) / 1000
        iwae = median_ms(lambda: hvae.log_likelihood(vae, b, k=50), runs=3) / 1000
        print(f"reference, hierarchical VAE ELBO: {BATCH / elbo:8.0f} images/s; IWAE k=50: {BATCH / iwae:6.0f} images/s")


if __name__ == "__main__":
    main()
