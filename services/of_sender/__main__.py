from libs.runtime import main
from services.of_sender.service import create

main(create, "of-sender")
