"""Density models you can read a likelihood from: Gaussians and mixtures fitted by EM, autoregressive
models (PixelCNN, NADE) and normalising flows (RealNVP)."""
