"""The registry of generative families: adding a family is one file plus one line here."""
from models import cyclegan, diffusion, gan, gpt, latent_diffusion, lstm, musegan, music_rnn, music_transformer, vae

FAMILIES = {f.name: f for f in (vae.FAMILY, gan.FAMILY, diffusion.FAMILY, latent_diffusion.FAMILY, lstm.FAMILY,
                                gpt.FAMILY, music_transformer.FAMILY, music_rnn.FAMILY, musegan.FAMILY, cyclegan.FAMILY)}
