"""``medsam3 web``: the annotation page in a browser, on Slicer's own core (slicer-core MRML and slice views served
by Kitware's trame-slicer), with the model behind the same bridge the Slicer module uses.

- :mod:`.options`: the command line (``medsam3 web --help``) and the API-key rule off loopback; imports no Slicer.
- :mod:`.annotation`: one user's scene and the bridge's prepare / predict / apply, the model on a worker thread.
- :mod:`.page`: the page (views, text box, point tools, segment list, export) built with trame-vuetify.
- :mod:`.access`: the API-key check on every HTTP and websocket request, and the test-only state endpoint.
- :mod:`.app`: start-up in the order that works (torch before any VTK view) and the server.

Layer: an application over the bridge (``MedicalSAM3SlicerLib``) and the engine; the engine never imports it
(``medsam3 web`` starts it as a separate program), the bridge never imports it (tests/test_layers.py).
"""
