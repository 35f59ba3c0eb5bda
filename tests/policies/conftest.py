import sys
from pathlib import Path

# Make the shared helper module importable from every test file of this folder.
sys.path.insert(0, str(Path(__file__).parent))
