"""`python -m genint_fast.cli ...` (e.g. under torchrun): the same as `genint-fast ...`."""
import sys

from . import main

sys.exit(main())
