"""`python -m services.gateway`: the gateway as its own process (needs GATEWAY_JWT_SECRET)."""

from contracts.routing import GATEWAY
from libs.runtime import main
from services.gateway.service import create

main(create, GATEWAY)
