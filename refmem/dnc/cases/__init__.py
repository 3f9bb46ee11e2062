"""Catalogue cases of SPEC §5 (family ``dnc``), one module per topic.

* [`refmem.dnc.cases.addressing`][refmem.dnc.cases.addressing]: every function of the DNC table of the golden format (docs/golden-format.md) but
  ``core_unroll`` (content weights ... the access step), in both conventions;
* [`refmem.dnc.cases.core`][refmem.dnc.cases.core]: ``dnc/core_unroll/*``, the core over time.

The catalogue ([`refmem.catalogue`][refmem.catalogue]) discovers every module of this package that
defines ``CASES``; a new topic is a new module here and nothing else.
"""

#: Place of this family in the catalogue listing (see [`refmem.catalogue`][refmem.catalogue]).
ORDER = 40
