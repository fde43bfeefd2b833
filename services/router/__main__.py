"""`python -m services.router`: the router as its own process (the distributed mode)."""

from libs.runtime import main
from services.router.service import create

if __name__ == "__main__":
    main(create, "router")
