"""The launcher's backends: where a run's stages execute, behind one interface (``base.Backend``).

``base`` holds the interface, the ``Plan`` a submit creates, and ``BACKENDS`` (name -> class);
``choose`` decides which backend a command talks to; ``done`` says when a run is Complete;
``pulling`` copies a Complete run out. The implementations: ``local`` (this machine, and any
run read from its storage alone) and ``kubernetes`` (Jobs on a cluster).
"""
