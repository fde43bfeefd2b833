"""`python -m services.azure_worker`: the azure-worker as its own process."""

from contracts.routing import AZURE_WORKER
from libs.runtime import main
from services.azure_worker.service import create

main(create, AZURE_WORKER)
