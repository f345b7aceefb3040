"""Ack processing: plain Python over the ports, free of Dagster.

- ``processor``: :class:`AckProcessor`, a pass over every org, each isolated under its deadline;
- ``folder``: one org's ack folder (read, decide, compare-and-set, move or park with a note);
- ``deadline``: SENT exports past their org's ack deadline become FAILED (ACK_TIMEOUT);
- ``isolation``: an org's pass in its own thread, abandoned when its dropzone hangs;
- ``memory``: the bounded state carried from one pass to the next;
- ``results``: what a pass reports; ``settings``: its bounds.
"""
