"""`python -m services.openai_worker`: the openai-worker as its own process."""

from contracts.routing import OPENAI_WORKER
from libs.runtime import main
from services.openai_worker.service import create

main(create, OPENAI_WORKER)
