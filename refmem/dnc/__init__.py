"""SPEC §5: the Differentiable Neural Computer.

[`refmem.dnc.conventions`][refmem.dnc.conventions] (the `deepmind` / `paper` presets),
[`refmem.dnc.addressing`][refmem.dnc.addressing] (steps 1-9, one forward/backward pair each),
[`refmem.dnc.access`][refmem.dnc.access] (the whole access step),
[`refmem.dnc.controller`][refmem.dnc.controller] and [`refmem.dnc.core`][refmem.dnc.core] (the
controller and the core over time), [`refmem.dnc.params`][refmem.dnc.params] (configuration,
parameters, files), [`refmem.dnc.tasks`][refmem.dnc.tasks] and `refmem.dnc.train` (deepmind's copy
tasks and training), `refmem.dnc.cases` (the catalogue cases of module `dnc`).
"""
