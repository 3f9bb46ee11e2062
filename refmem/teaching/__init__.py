"""Teaching: backward passes a learner writes and refmem grades (`refmem exercise`).

* [`refmem.teaching.exercises`][refmem.teaching.exercises]: the exercises, their starter files,
  the grader and its catalogue of known mistakes;
* `refmem.teaching.solutions`: one reference solution per exercise (never copied into a starter);
* [`refmem.teaching.pictures`][refmem.teaching.pictures]: the figures of the documentation
  (the DNC's memory on the copy task, frame by frame; the attention of the reversal task).

The tutorials (executable Markdown under `docs/tutorials/`) use the public API only.
"""
