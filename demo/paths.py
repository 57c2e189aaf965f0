"""Where the project's non-Python folders live (the repository layout)."""
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"
STATIC = ROOT / "static"
CONFIG = ROOT / "config"
INSTANCE = ROOT / "instance"
