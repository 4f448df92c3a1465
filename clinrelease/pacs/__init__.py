"""From PACS to research archive: studies come in over DICOMweb, released instances go out over it.

``servers`` names the servers and their credentials, ``source`` selects studies and stages them,
``target`` pushes released instances, and ``flow`` runs source -> :func:`run_release` -> audit
verify -> target. ``orthanc_plugin`` is a stand-alone orthanc-python script that runs ``flow``
through the CLI in a worker process.
"""
