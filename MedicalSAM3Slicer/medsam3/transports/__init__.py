"""Transports: how a caller reaches a session, in this process or on a server. Imports interaction and below.

- :mod:`.backend`: the one interface (:class:`~.backend.SegmentationBackend`) and the in-process
  :class:`~.backend.LocalBackend`; :mod:`.model_loading` turns a model source and a device into a LocalBackend.
- :mod:`.remote_client` (:class:`~.remote_client.RemoteBackend`), :mod:`.wire_format`,
  :mod:`.version_compatibility`: the same interface over HTTP to ``medsam3 serve``.
- :mod:`.backend_choice`: ``--server URL`` or a local model, one function for every application.
"""
