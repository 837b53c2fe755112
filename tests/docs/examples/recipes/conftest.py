# The recipes' application, installed: `myapi` on the PATH, the myapp package importable.
import os
from pathlib import Path

os.environ["PATH"] = f"{Path(__file__).parent / 'bin'}{os.pathsep}{os.environ['PATH']}"
