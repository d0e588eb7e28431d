"""The registry of generative families: adding a family is one file plus one line here."""
from models import diffusion, vae

FAMILIES = {f.name: f for f in (vae.FAMILY, diffusion.FAMILY)}
from models import gpt, lstm  # noqa: E402  (text families)

FAMILIES.update({f.name: f for f in (lstm.FAMILY, gpt.FAMILY)})
