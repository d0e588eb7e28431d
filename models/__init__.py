"""The registry of generative families: adding a family is one file plus one line here."""
from models import diffusion, vae
from models import music_transformer
from models import music_rnn

FAMILIES = {f.name: f for f in (vae.FAMILY, diffusion.FAMILY)}
FAMILIES[music_transformer.FAMILY.name] = music_transformer.FAMILY
FAMILIES[music_rnn.FAMILY.name] = music_rnn.FAMILY
from models import musegan  # noqa: E402
FAMILIES[musegan.FAMILY.name] = musegan.FAMILY
