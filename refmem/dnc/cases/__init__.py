"""Catalogue cases of SPEC §5 (family ``dnc``), one module per topic.

* :mod:`refmem.dnc.cases.addressing`: every function of GOLDEN.md's DNC table but
  ``core_unroll`` (content weights ... the access step), in both conventions;
* :mod:`refmem.dnc.cases.core`: ``dnc/core_unroll/*``, the core over time.

The catalogue (:mod:`refmem.catalogue`) discovers every module of this package that
defines ``CASES``; a new topic is a new module here and nothing else.
"""

#: Place of this family in the catalogue listing (see :mod:`refmem.catalogue`).
ORDER = 40
