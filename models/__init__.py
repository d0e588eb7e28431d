"""The registry of generative families: adding a family is one file plus one line here."""
from models import cyclegan, diffusion, vae

FAMILIES = {f.name: f for f in (vae.FAMILY, diffusion.FAMILY, cyclegan.FAMILY)}
