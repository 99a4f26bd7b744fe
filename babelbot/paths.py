"""Where the project's data lives. babelbot runs from its source tree (an editable install),
so data, prompts and shipped adapters are found beside the code."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT / "data"
ADAPTERS_DIR = REPO_ROOT / "adapters"
