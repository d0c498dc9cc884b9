"""The release pipeline as a hub-managed service at ``/services/pipeline/``.

* :mod:`.app`: the REST API (``openapi.json`` beside it) and the model endpoint routes;
* :mod:`.auth`: hub tokens and the platform's custom scopes;
* :mod:`.runner`: moves releases through registry, gates, staging and production;
* :mod:`.registry`: the MLflow Model Registry calls;
* :mod:`.holdout`: reading a team's hold-out set with DVC;
* :mod:`.service`: settings from the environment, start.
"""
