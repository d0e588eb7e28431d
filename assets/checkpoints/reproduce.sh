#!/usr/bin/env bash
# Reproduces every shipped checkpoint in this folder, with its card. The shipped ones were trained
# on one NVIDIA H100 (about 3 minutes in all); on 2 CPU cores, expect about 25 minutes per
# book-preset VAE (use --preset cpu for a 5-minute version).
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
# Diffusion (DDPM U-Net at widths 32-64-128, a quarter of the book's 64-128-256, so sampling is
# interactive on a CPU: about 50 ms per denoising step at batch 16). The four ran side by side on the GPU.
python -m models.train diffusion --preset book --set dataset=mnist --set 'channels=[32,64,128]' --set steps=20000 --name diffusion_mnist &
python -m models.train diffusion --preset book --set dataset=fashion --set 'channels=[32,64,128]' --set steps=20000 --name diffusion_fashion &
python -m models.train diffusion --preset book --set dataset=mnist --set 'channels=[32,64,128]' --set steps=20000 --set conditional=true --name diffusion_mnist_cond &
python -m models.train diffusion --preset book --set dataset=fashion --set 'channels=[32,64,128]' --set steps=20000 --set conditional=true --name diffusion_fashion_cond &
wait
