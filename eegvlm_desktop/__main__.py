"""``python -m eegvlm_desktop`` -> the CLI (``gui`` by default)."""
from .cli import main

raise SystemExit(main())
