"""Online serving on one machine: supervised MLflow scoring processes behind a reverse proxy.

* :mod:`.scoring`: the model server process (MLflow's scoring app under uvicorn);
* :mod:`.server`: :class:`ModelServer`, one supervised scoring process;
* :mod:`.endpoints`: :class:`Endpoints`, (model, stage) -> server, switched without dropping requests;
* :mod:`.proxy`: the tornado handler answering ``/services/models/{model}/{stage}/invocations``.
"""

from .endpoints import STAGES, Endpoint, Endpoints, UnknownStage
from .proxy import EndpointHandler, endpoint_routes
from .server import ModelServer, ServerFailed

__all__ = [
    "STAGES",
    "Endpoint",
    "EndpointHandler",
    "Endpoints",
    "ModelServer",
    "ServerFailed",
    "UnknownStage",
    "endpoint_routes",
]
