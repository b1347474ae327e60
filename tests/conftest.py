import os

import pytest
import torch

# Keep the suite predictable on the 2-core CI machine.
torch.set_num_threads(min(2, os.cpu_count() or 1))

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def devices():
    """CPU always; CUDA where a GPU is visible (the CUDA cases are skipped otherwise)."""
    return ["cpu", pytest.param("cuda", marks=requires_cuda)]
