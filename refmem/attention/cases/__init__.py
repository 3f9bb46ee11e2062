"""Catalogue cases of SPEC §2 and §3 (family `attention`), one module per topic.

* `refmem.attention.cases.decoder_and_luong`: the Bahdanau decoder variants and every
  Luong score × alignment;
* `refmem.attention.cases.keras_scores`: the scaled dot and additive scores of Keras 3's
  attention layers (`refmem.attention.keras_scores`).

The catalogue discovers every module of this package that defines `CASES`.
"""

#: Place of this family in the catalogue listing (see [`refmem.catalogue`][refmem.catalogue]).
ORDER = 30
