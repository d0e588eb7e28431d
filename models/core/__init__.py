"""What every family shares: the contract (family), checkpoints, data, the training loop and scoring."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository: assets/ and runs/ live here
ASSETS = ROOT / "assets"
RUNS = ROOT / "runs"  # ignored by git: the user's checkpoints, uploads and exports
