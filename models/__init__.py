"""The registry of generative families, grouped by domain: adding a family is one file plus one line here.

``models.core`` holds what every family shares (the contract, checkpoints, data, the training loop
and the scoring classifiers); each domain package holds its families and what they share.
"""
from models.density import nade, pixelcnn, realnvp
from models.energy import deep_boltzmann, ebm, rbm
from models.image import diffusion, gan, gmmn, hvae, latent_diffusion, vae
from models.music import musegan, music_rnn, music_transformer, polyphony
from models.paint import cyclegan
from models.text import gpt, lstm, seq2seq

FAMILIES = {f.name: f for f in (
    vae.FAMILY, hvae.FAMILY, gan.FAMILY, diffusion.FAMILY, latent_diffusion.FAMILY,  # image
    lstm.FAMILY, gpt.FAMILY, seq2seq.FAMILY,  # text
    music_transformer.FAMILY, music_rnn.FAMILY, musegan.FAMILY, polyphony.FAMILY,  # music
    cyclegan.FAMILY,  # paint (image-to-image)
    pixelcnn.FAMILY, nade.FAMILY, realnvp.FAMILY,  # density (likelihood models)
    ebm.FAMILY, gmmn.FAMILY,  # energy-based and moment matching
    rbm.FAMILY, deep_boltzmann.DBN_FAMILY, deep_boltzmann.DBM_FAMILY,  # energy (Boltzmann machines)
)}
