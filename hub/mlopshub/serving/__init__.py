"""Online serving on one machine: supervised MLflow scoring processes behind a reverse proxy.

* :mod:`.scoring`: the model server process (MLflow's scoring protocol under uvicorn);
* :mod:`.zygote`: :class:`Zygotes`, one warm parent per team that forks model servers;
* :mod:`.server`: :class:`ModelServer`, one supervised model server process (forked or spawned) on a Unix socket;
* :mod:`.integrity`: a model folder's content digest, checked by every model server before it loads;
* :mod:`.endpoints`: :class:`Endpoints`, (model, stage) -> server, switched without dropping requests;
* :mod:`.proxy`: the tornado handler answering ``/services/models/{model}/{stage}/invocations``;
* :mod:`.kserve_endpoints`: :class:`KServeEndpoints`, the same registry in Kubernetes (KServe InferenceServices).
"""

from .endpoints import STAGES, Endpoint, Endpoints, UnknownStage
from .integrity import IntegrityError
from .kserve_endpoints import KServeEndpoints, NotReady, Predictor
from .proxy import EndpointHandler, endpoint_routes
from .server import ModelServer, ServerFailed
from .zygote import PRELOAD, Zygote, ZygoteFailed, Zygotes

__all__ = [
    "STAGES",
    "Endpoint",
    "EndpointHandler",
    "Endpoints",
    "IntegrityError",
    "KServeEndpoints",
    "ModelServer",
    "NotReady",
    "PRELOAD",
    "Predictor",
    "ServerFailed",
    "UnknownStage",
    "Zygote",
    "ZygoteFailed",
    "Zygotes",
    "endpoint_routes",
]
