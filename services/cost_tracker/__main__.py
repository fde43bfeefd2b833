"""`python -m services.cost_tracker`: the cost-tracker as its own process (the distributed mode)."""

from libs.runtime import main
from services.cost_tracker.service import create

if __name__ == "__main__":
    main(create, "cost-tracker")
