"""Diagnostics of generators and the data they make, measured on the built-in digits or any
image set: what interventions do to the nuisance-label dependence (`nuisance`), whether CGN
masks draw the asked digit (`shape`), and the GenInt paper's nuisance-correlation and
causal-bound scores (`correlation`). `genint-fast analyze` and the demo report them; the
classifier protocols live in `genint_fast.eval`."""
