"""What every family shares: the contract (family), checkpoints, data, the training loop and scoring."""
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository: assets/ lives here
ASSETS = ROOT / "assets"
# the user's checkpoints, training state and uploads: runs/ (ignored by git) unless STUDIO_RUNS says
RUNS = Path(os.environ.get("STUDIO_RUNS") or ROOT / "runs")
