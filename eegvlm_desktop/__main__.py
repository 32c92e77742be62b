"""``python -m eegvlm_desktop`` -> the CLI (``gui`` by default)."""
from eegvlm_desktop.cli import main

raise SystemExit(main())
