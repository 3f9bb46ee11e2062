"""refmem's benchmarks: refmem beside torch eager autograd and ``jax.jit(jax.grad(...))``.

Run them with ``refmem bench`` (``--quick`` for a smoke run, ``--json PATH`` for
the records). Importing this package imports neither torch nor jax; each
implementation is loaded when its benchmark runs and reported as skipped when
its framework, or the refmem model, is missing.

Modules:

* ``benchmarks.configs``: the benchmark sizes (full and ``--quick``);
* ``benchmarks.problems``: seeded inputs, parameters and cotangents shared by
  every implementation, so all of them differentiate the same numbers;
* ``benchmarks.impl_refmem``, ``benchmarks.impl_torch``,
  ``benchmarks.impl_jax``: one forward+backward per implementation;
* ``benchmarks.gradcheck_bench``: a full element-wise ``refmem`` check per
  module beside ``torch.autograd.gradcheck`` of the same function;
* ``benchmarks.memory``: peak memory of BPTT against ``T`` and ``N``;
* ``benchmarks.profiling``: cProfile of a refmem forward+backward;
* ``benchmarks.run``: the driver behind ``refmem bench``.
"""
