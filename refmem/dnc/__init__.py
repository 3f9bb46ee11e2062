"""SPEC §5: the Differentiable Neural Computer.

:mod:`refmem.dnc.conventions` (the ``deepmind`` / ``paper`` presets),
:mod:`refmem.dnc.addressing` (steps 1-9, one forward/backward pair each),
:mod:`refmem.dnc.access` (the whole access step), :mod:`refmem.dnc.cases`
(the catalogue cases of module ``dnc``).
"""
