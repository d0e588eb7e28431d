"""``python -m models.train NAME ...``: the command-line entry of the shared training loop
(:mod:`models.core.train`), kept at this short path because every checkpoint card quotes it."""
from models.core.train import main

if __name__ == "__main__":
    main()
