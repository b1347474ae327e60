import os

import pytest
import torch

# Keep the suite predictable on the 2-core CI machine.
torch.set_num_threads(min(2, os.cpu_count() or 1))

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def devices():
    """CPU always; CUDA where a GPU is visible (the CUDA cases are skipped otherwise)."""
    return ["cpu", pytest.param("cuda", marks=requires_cuda)]


# Python source that hides the built extension from the import system, as on a checkout that
# was never built (prefix of a `python -c` program in the packaging tests).
HIDE_EXTENSION = (
    "import sys\n"
    "class Hide:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name == 'genint_fast._C':\n"
    "            raise ModuleNotFoundError(\"No module named 'genint_fast._C'\")\n"
    "sys.meta_path.insert(0, Hide())\n"
)
