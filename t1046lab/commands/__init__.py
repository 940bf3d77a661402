"""Sub-commands of the ``t1046lab`` command, one module each (found by :mod:`t1046lab.cli`)."""
