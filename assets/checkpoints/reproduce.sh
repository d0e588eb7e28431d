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
