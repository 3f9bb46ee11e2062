"""The reference solutions of the exercises (`refmem exercise`), one module per exercise.

Each module is what a learner's file looks like when it is done: the given forward, and the
backward between the lines `# --- solution ---` and `# --- end of solution ---`.
`refmem exercise start` writes the module with that region replaced by its comments (the
derivation's headings) and a `raise NotImplementedError`, so the solution is never in the
starter; `refmem exercise check` runs this module beside the learner's to name the first wrong
intermediate, and its one-line variants (the catalogue of mistakes of
[`refmem.teaching.exercises`][refmem.teaching.exercises]) to recognise a known mistake.
"""
