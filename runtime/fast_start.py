"""Imported first by the entry points (``train_joint.py``, ``python -m benchmark``, ``downstream.*``).

Tianshou compiles its numba kernels (buffer indexing, n-step and GAE returns) in every new process:
about 13 s of each start on 2 cores. The project's one-step episodes and buffers of a few hundred
episodes never need their speed, so the entry points run them as plain Python (the same results).
``NUMBA_DISABLE_JIT=0`` in the environment keeps the compiler. Importing the library (``import agents``)
changes nothing: only these commands set it, and only when the variable is not set already.
"""

import os

os.environ.setdefault("NUMBA_DISABLE_JIT", "1")
