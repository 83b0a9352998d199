"""Make the shared NumPy integer reference (blockconv_int_ref.py) importable."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
