from libs.runtime import main
from services.rate_limiter.service import create

main(create, "rate-limiter")
