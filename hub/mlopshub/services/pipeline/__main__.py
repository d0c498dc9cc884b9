"""``python -m mlopshub.services.pipeline``: the hub-managed release pipeline service."""

from .service import main

main()
