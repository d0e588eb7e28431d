"""The registry of generative families: adding a family is one file plus one line here."""
from models import diffusion, gpt, lstm, vae

FAMILIES = {f.name: f for f in (vae.FAMILY, diffusion.FAMILY, lstm.FAMILY, gpt.FAMILY)}
