"""refmem: reference memory and attention networks with hand-derived gradients.

Every equation of the specification is a forward/backward pair, checked by
finite differences (``refmem check``) and exported as golden tensors.
"""

__version__ = "0.2.0"
